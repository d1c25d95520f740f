//! What the domain needs from the outside world. Adapters implement these traits for
//! DynamoDB and KMS; in-memory versions serve unit tests and benchmarks.

use async_trait::async_trait;
use rust_decimal::Decimal;

use crate::account::{Account, Balance};
use crate::auth::TenantId;
use crate::clock::Timestamp;
use crate::crypto::Sealed;
use crate::cursor::CursorKey;
use crate::error::DomainError;
use crate::idempotency::IdempotencyRecord;
use crate::ids::{AccountId, EventId, PaymentId, TransferId};
use crate::money::Currency;
use crate::payment::{ConnectorName, Payment};
use crate::rollup::{Granularity, Movement, Scope, Totals};
use crate::statement::{Entry, EntryRange, Position};
use crate::transfer::{AccountDelta, Transfer};
use crate::webhook::Outcome;

/// One page of a listing, newest first, with the position after its last item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T, P> {
    pub items: Vec<T>,
    pub next: Option<P>,
}

impl<T, P> Page<T, P> {
    /// A page from a listing read with one item more than `limit`: the extra item only
    /// says that another page exists, and the position is the last item kept.
    pub fn from_overfetch(mut items: Vec<T>, limit: usize, position: impl Fn(&T) -> P) -> Self {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(position)
        } else {
            None
        };
        Page { items, next }
    }
}

/// Largest page any listing returns.
pub const PAGE_LIMIT_MAX: usize = 100;

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Stores a new account. Fails if the id exists (it never should: ids are ULIDs).
    async fn insert_account(&self, account: &Account) -> Result<(), DomainError>;

    /// The account if it exists **and belongs to the tenant**; another tenant's account
    /// is indistinguishable from a missing one.
    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> Result<Option<Account>, DomainError>;

    /// The tenant's accounts, newest first, strictly older than `before` when given.
    async fn list_accounts(
        &self,
        tenant: &TenantId,
        limit: usize,
        before: Option<AccountId>,
    ) -> Result<Page<Account, AccountId>, DomainError>;
}

/// Supplies the key that signs pagination cursors.
#[async_trait]
pub trait CursorKeySource: Send + Sync {
    async fn cursor_key(&self) -> Result<CursorKey, DomainError>;
}

/// Identifies the clearing account of a connector for a tenant and currency.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClearingKey {
    pub tenant: TenantId,
    pub connector: ConnectorName,
    pub currency: Currency,
}

impl ClearingKey {
    /// The clearing account's id, derived from its key so that a write can name the
    /// account without looking it up: 80 bits of SHA-256 over the key, under a zero
    /// timestamp (clearing accounts list after the tenant's own).
    pub fn account_id(&self) -> AccountId {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"fintx clearing account\0")
            .chain_update(self.tenant.as_str())
            .chain_update(b"\0")
            .chain_update(self.connector.as_str())
            .chain_update(b"\0")
            .chain_update(self.currency.code())
            .finalize();
        let mut random = [0u8; 16];
        random[6..].copy_from_slice(&digest[..10]);
        AccountId::from_ulid(ulid::Ulid::from_bytes(random))
    }

    /// The clearing account as its first movement opens it.
    pub fn opening(&self, now: Timestamp) -> Account {
        Account::clearing(
            self.account_id(),
            self.tenant.clone(),
            self.currency,
            self.connector.as_str(),
            now,
        )
    }
}

/// A received webhook event as archived, with its outcome (SPEC §7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub id: EventId,
    /// `<connector>#<event id>`: the dedup key.
    pub key: String,
    pub connector: ConnectorName,
    pub event_id: String,
    pub event_type: String,
    /// The tenant the event resolved to; `None` for events that resolve to no tenant.
    pub tenant: Option<TenantId>,
    pub outcome: Outcome,
    pub code: Option<&'static str>,
    pub raw_body: Sealed,
    pub received_at: Timestamp,
}

/// What one money-moving request reads, in one round trip, before it decides.
#[derive(Clone, Debug, Default)]
pub struct Reads {
    /// Webhooks resolve records by id before they know the tenant: read without the
    /// tenant filter (the caller checks what the connector may touch).
    pub any_tenant: bool,
    /// A webhook event's dedup key.
    pub event: Option<String>,
    pub idempotency: Option<String>,
    pub accounts: Vec<AccountId>,
    pub transfer: Option<TransferId>,
    pub payment: Option<PaymentId>,
}

/// The state a request decides on. Records of other tenants read as absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub idempotency: Option<IdempotencyRecord>,
    /// The webhook event archived under the read dedup key, if any.
    pub event: Option<EventRecord>,
    pub accounts: Vec<Option<Account>>,
    pub transfer: Option<Transfer>,
    pub payment: Option<Payment>,
}

/// Everything one request changes, committed atomically or not at all. Every part
/// carries its condition: new records must not exist, updated records must still be at
/// the version that was read, and debits with `cover` must still be covered.
#[derive(Clone, Debug, Default)]
pub struct LedgerWrite {
    pub idempotency: Option<IdempotencyRecord>,
    pub deltas: Vec<AccountDelta>,
    pub new_accounts: Vec<Account>,
    /// Accounts whose settings or lifecycle status change, written whole.
    pub account_updates: Vec<AccountUpdate>,
    pub new_transfers: Vec<Transfer>,
    pub transfer_updates: Vec<(Transfer, u64)>,
    /// Holds past their `expires_at` that this write releases, known only by their
    /// accounts' entries: each must still be pending, and becomes `expired` at the
    /// write's time (see [`crate::transfer::release_expired`]).
    pub expirations: Vec<(TransferId, Timestamp)>,
    /// The entries of the changes this write makes to existing transfers (posts, voids,
    /// expiries); a new transfer's entries follow from it ([`Entry::opened`]).
    pub entries: Vec<Entry>,
    pub new_payments: Vec<Payment>,
    pub payment_updates: Vec<(Payment, u64)>,
    /// The webhook event archived with this write; its key must be new.
    pub event: Option<EventRecord>,
    /// A deposit's `<connector>#<bank reference>`, which must be new.
    pub deposit_reference: Option<String>,
    /// A refused deposit's `<connector>#<bank reference>`, checked to be unapplied but not
    /// recorded: a deposit whose reference was applied is a duplicate, whatever its
    /// account says since.
    pub reference_unapplied: Option<String>,
}

impl LedgerWrite {
    /// Double entry, asserted before a write leaves the process: the balance changes it
    /// carries (its deltas and the opening balances of the accounts it creates) sum to
    /// zero posted, and its pending debits equal its pending credits. A write that fails
    /// this is a programming error; stores refuse it, so it never reaches the table.
    pub fn check_balanced(&self) -> Result<(), DomainError> {
        let mut posted = Decimal::ZERO;
        let mut pending_debits = Decimal::ZERO;
        let mut pending_credits = Decimal::ZERO;
        let opening = |a: &Account| (a.balance.posted, a.balance.pending_debits, a.balance.pending_credits);
        let changes = self
            .deltas
            .iter()
            .flat_map(|d| {
                [(d.posted, d.pending_debits, d.pending_credits)]
                    .into_iter()
                    .chain(d.open.as_deref().map(opening))
            })
            .chain(self.new_accounts.iter().map(opening))
            .chain(
                self.account_updates
                    .iter()
                    .map(|u| (u.change.posted, u.change.pending_debits, u.change.pending_credits)),
            );
        for (p, pd, pc) in changes {
            posted = posted.checked_add(p).ok_or(DomainError::Overflow)?;
            pending_debits = pending_debits.checked_add(pd).ok_or(DomainError::Overflow)?;
            pending_credits = pending_credits.checked_add(pc).ok_or(DomainError::Overflow)?;
        }
        if !posted.is_zero() || pending_debits != pending_credits {
            return Err(DomainError::Unbalanced);
        }
        self.check_entries()
    }

    /// Every balance change is explained by entries, so an account's history adds up to
    /// its balances (SPEC §6): per account, the entries of this write (its new
    /// transfers' and its explicit ones) sum to exactly its changes.
    fn check_entries(&self) -> Result<(), DomainError> {
        // A write touches a handful of accounts: a short list beats a map.
        let mut moves: Vec<(AccountId, Balance)> = Vec::with_capacity(self.deltas.len());
        let index = |moves: &mut Vec<(AccountId, Balance)>, account: AccountId| match moves
            .iter()
            .position(|(a, _)| *a == account)
        {
            Some(i) => i,
            None => {
                moves.push((account, Balance::ZERO));
                moves.len().saturating_sub(1)
            }
        };
        let changes = self
            .deltas
            .iter()
            .map(|d| (d.account_id, d.change()))
            .chain(self.account_updates.iter().map(|u| (u.account.id, u.change)));
        for (account, change) in changes {
            let i = index(&mut moves, account);
            let (_, sum) = moves.get_mut(i).ok_or(DomainError::Unavailable)?;
            *sum = sum.plus(&change)?;
        }
        let opened = self.new_transfers.iter().flat_map(Entry::opened);
        for e in opened.chain(self.entries.iter().cloned()) {
            let i = index(&mut moves, e.account_id);
            let (_, sum) = moves.get_mut(i).ok_or(DomainError::Unavailable)?;
            *sum = sum.minus(&e.change())?;
        }
        if moves.iter().all(|(_, b)| *b == Balance::ZERO) {
            Ok(())
        } else {
            Err(DomainError::Unbalanced)
        }
    }

    /// The transfer whose random bits pick the balance slot this write moves in every
    /// spread account it touches (see [`crate::transfer::balance_slot`]).
    pub fn slot_transfer(&self) -> Option<TransferId> {
        self.new_transfers
            .first()
            .map(|t| t.id)
            .or_else(|| self.transfer_updates.first().map(|(t, _)| t.id))
            .or_else(|| self.entries.first().map(|e| e.transfer_id))
    }

    pub fn is_empty(&self) -> bool {
        self.idempotency.is_none()
            && self.deltas.is_empty()
            && self.new_accounts.is_empty()
            && self.account_updates.is_empty()
            && self.new_transfers.is_empty()
            && self.transfer_updates.is_empty()
            && self.expirations.is_empty()
            && self.entries.is_empty()
            && self.new_payments.is_empty()
            && self.payment_updates.is_empty()
            && self.event.is_none()
    }
}

/// An account written whole (its settings or lifecycle status changed) on condition that
/// it still has the version read: every balance change moves the version too, so nothing
/// moved since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountUpdate {
    pub account: Account,
    pub version: u64,
    /// How its balances differ from the version read (the expired holds it releases),
    /// for the double-entry check.
    pub change: Balance,
}

impl AccountUpdate {
    /// Whether the store keeps the account's balance slots as they are (`Some`: its own
    /// item as it becomes, with its own share of the balances) instead of gathering them:
    /// an account that stays unlimited and open or frozen changes only what its slots
    /// copy (status, limit), so movements in flight do not hold the change back (a freeze
    /// must land on a busy account). Gathering is for when exact figures on one item are
    /// needed: a bounded limit's cover, a close's zero balance.
    pub fn keeping_slots(&self) -> Result<Option<Account>, DomainError> {
        let Some(parts) = self.account.parts.as_deref() else {
            return Ok(None);
        };
        if !self.account.spreads() || self.account.status == crate::account::AccountStatus::Closed {
            return Ok(None);
        }
        let mut own = self.account.clone();
        for part in &parts.slots {
            own.balance = own.balance.minus(&part.balance)?;
        }
        own.version = crate::transfer::next_version(parts.own_version)?;
        Ok(Some(own))
    }
}

/// Why a store refused a write; nothing of it was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The idempotency key was recorded meanwhile: replay it.
    IdempotencyRecorded,
    /// A transaction still in flight holds the idempotency record: the first request
    /// with this key is running.
    IdempotencyInFlight,
    /// The webhook event (or the deposit's bank reference) was recorded already.
    EventRecorded,
    /// A debit is no longer covered: a business outcome, not retried.
    InsufficientFunds,
    /// A record moved on since it was read: read again and decide again.
    Stale,
    /// A concurrent transaction held an item: back off and try again.
    Contention,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitError {
    Rejected(Rejection),
    /// The write's idempotency or event record exists: here it is, as the refusal
    /// returned it (DynamoDB's `ALL_OLD` image), to answer from without a read.
    Recorded(Box<Snapshot>),
    Failed(DomainError),
}

impl From<DomainError> for CommitError {
    fn from(error: DomainError) -> Self {
        CommitError::Failed(error)
    }
}

#[async_trait]
pub trait LedgerStore: AccountStore {
    /// Reads what a request needs in one consistent round trip.
    async fn read(&self, tenant: &TenantId, reads: &Reads) -> Result<Snapshot, DomainError>;

    /// Applies a write atomically, with its conditions, in one round trip.
    async fn commit(&self, write: &LedgerWrite) -> Result<(), CommitError>;

    /// Archived webhook events of a tenant (`None`: events that resolved to no tenant)
    /// with one outcome, newest first.
    async fn list_events(
        &self,
        tenant: Option<&TenantId>,
        outcome: Outcome,
        limit: usize,
        before: Option<String>,
    ) -> Result<Page<EventRecord, String>, DomainError>;

    /// Pending holds whose `expires_at` is at or before `now` (at most `limit`): what the
    /// sweep releases.
    async fn expired_holds(&self, now: Timestamp, limit: usize) -> Result<Vec<Transfer>, DomainError>;

    /// The entries of an account in `range`, newest first: at most `limit`, or all of
    /// them. The caller has checked that the account is the tenant's.
    async fn account_entries(
        &self,
        tenant: &TenantId,
        account: &Account,
        range: &EntryRange,
        limit: Option<usize>,
    ) -> Result<Page<Entry, Position>, DomainError>;

    /// Transfers touching an account (debit or credit), newest first.
    async fn list_account_transfers(
        &self,
        tenant: &TenantId,
        account: &Account,
        limit: usize,
        before: Option<TransferId>,
    ) -> Result<Page<Transfer, TransferId>, DomainError>;
}

/// Where rollups are kept.
#[async_trait]
pub trait RollupStore: Send + Sync {
    /// Adds the movements not counted before and returns how many were new. Each
    /// movement counts at most once, however often it is offered.
    async fn apply(&self, movements: &[Movement]) -> Result<usize, DomainError>;

    /// The rows of one scope between two periods (inclusive), oldest first.
    async fn rows(
        &self,
        tenant: &TenantId,
        scope: &Scope,
        currency: Currency,
        granularity: Granularity,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, Totals)>, DomainError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AccountId;
    use crate::transfer::AccountDelta;

    fn delta(n: u128, posted: i64, pending_debits: i64, pending_credits: i64) -> AccountDelta {
        AccountDelta {
            account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1, n)),
            posted: Decimal::from(posted),
            pending_debits: Decimal::from(pending_debits),
            pending_credits: Decimal::from(pending_credits),
            cover: None,
            expect: None,
            open: None,
            requires: None,
            holds: Vec::new(),
            spread: false,
        }
    }

    #[test]
    fn only_balanced_writes_pass() {
        let deltas = vec![delta(1, -5, 3, 0), delta(2, 5, 0, 3)];
        let explained = |deltas: &[AccountDelta]| -> Vec<Entry> {
            let transfer = TransferId::from_ulid(ulid::Ulid::from_parts(9, 9));
            let at = Timestamp::from_unix_ms(9).unwrap();
            deltas.iter().map(|d| Entry::resolved(transfer, at, d)).collect()
        };
        let balanced = LedgerWrite {
            entries: explained(&deltas),
            deltas: deltas.clone(),
            ..LedgerWrite::default()
        };
        assert_eq!(balanced.check_balanced(), Ok(()));
        // Balanced, but a change no entry explains: the account's history would not add
        // up to its balance.
        for entries in [
            vec![],
            explained(&deltas[..1]),
            explained(&[delta(1, -5, 3, 0), delta(2, 5, 0, 2)]),
        ] {
            let unexplained = LedgerWrite {
                deltas: deltas.clone(),
                entries,
                ..LedgerWrite::default()
            };
            assert_eq!(unexplained.check_balanced(), Err(DomainError::Unbalanced));
        }
        for deltas in [
            vec![delta(1, -5, 0, 0), delta(2, 4, 0, 0)],
            vec![delta(1, 0, 3, 0), delta(2, 0, 0, 2)],
            vec![delta(1, 1, 0, 0)],
        ] {
            let write = LedgerWrite {
                deltas,
                ..LedgerWrite::default()
            };
            assert_eq!(write.check_balanced(), Err(DomainError::Unbalanced));
        }
    }
}
