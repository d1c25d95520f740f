//! In-memory stores with the same contract as the DynamoDB adapter (atomic writes with
//! the same conditions), for unit tests, property tests and benchmarks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use fintx_domain::account::{Account, Balance, SlotPart, StoredParts};
use fintx_domain::auth::TenantId;
use fintx_domain::clock::Timestamp;
use fintx_domain::idempotency::IdempotencyRecord;
use fintx_domain::ids::{AccountId, PaymentId, TransferId};
use fintx_domain::payment::Payment;
use fintx_domain::ports::{
    AccountStore, CommitError, EventRecord, LedgerStore, LedgerWrite, Page, Reads, Rejection, Snapshot,
};
use fintx_domain::statement::{Entry, EntryRange, Position};
use fintx_domain::transfer::{apply_delta, Transfer, TransferStatus};
use fintx_domain::webhook::Outcome;
use fintx_domain::DomainError;

#[derive(Default)]
struct State {
    accounts: BTreeMap<AccountId, Account>,
    transfers: BTreeMap<TransferId, Transfer>,
    payments: BTreeMap<PaymentId, Payment>,
    idempotency: HashMap<String, IdempotencyRecord>,
    events: BTreeMap<String, EventRecord>,
    deposit_references: std::collections::HashSet<String>,
    /// Every account's entries with their positions, in the order of its history
    /// (mostly appended).
    entries: HashMap<AccountId, Vec<(Position, Entry)>>,
    /// The balance slots of spread accounts: what each adds to its account's balances
    /// and version, kept apart as DynamoDB keeps them.
    slots: BTreeMap<(AccountId, u16), (Balance, u64)>,
    /// Every change of a transfer record, `(old image, new image)`, when kept.
    changes: Option<Vec<(Option<Transfer>, Transfer)>>,
}

pub struct MemoryStore {
    state: Mutex<State>,
    balance_slots: u16,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            balance_slots: crate::settings::BALANCE_SLOTS_DEFAULT,
        }
    }
}

impl State {
    /// The account with its balance slots summed in, as a read shows it.
    fn summed(&self, account: &Account) -> Account {
        let mut summed = account.clone();
        let mut parts = StoredParts {
            own_version: account.version,
            slots: Vec::new(),
        };
        for (&(_, slot), &(balance, version)) in self.slots.range((account.id, 0)..=(account.id, u16::MAX)) {
            // Sums of stored figures that each fit; an overflow would have refused the
            // write that made it.
            summed.balance = summed.balance.plus(&balance).unwrap_or(summed.balance);
            summed.version = summed.version.saturating_add(version);
            parts.slots.push(SlotPart { slot, balance, version });
        }
        // As the DynamoDB store reads it: with its parts when it has (or may have) slots.
        if account.spreads() || !parts.slots.is_empty() {
            summed.parts = Some(Box::new(parts));
        }
        summed
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Movements through spread accounts pick one of `slots` balance slots.
    pub fn with_balance_slots(mut self, slots: u16) -> Self {
        self.balance_slots = slots.clamp(1, fintx_domain::transfer::BALANCE_SLOTS_MAX);
        self
    }

    /// How many balance slots each spread account uses (for tests of the spreading).
    pub fn slots_used(&self, account: &AccountId) -> usize {
        self.state()
            .map(|s| s.slots.range((*account, 0)..=(*account, u16::MAX)).count())
            .unwrap_or(0)
    }

    /// A store that keeps every change of a transfer record in order, as the ledger
    /// table's stream carries it (new and old images), for stream consumers in tests.
    pub fn with_change_log() -> Self {
        let store = Self::default();
        if let Ok(mut state) = store.state.lock() {
            state.changes = Some(Vec::new());
        }
        store
    }

    /// The transfer changes logged since the last call, oldest first.
    pub fn take_transfer_changes(&self) -> Vec<(Option<Transfer>, Transfer)> {
        self.state()
            .ok()
            .and_then(|mut s| s.changes.as_mut().map(std::mem::take))
            .unwrap_or_default()
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, DomainError> {
        self.state.lock().map_err(|_| DomainError::Unavailable)
    }

    /// Every account (for invariant checks in tests).
    pub fn all_accounts(&self) -> Vec<Account> {
        self.state()
            .map(|s| s.accounts.values().map(|a| s.summed(a)).collect())
            .unwrap_or_default()
    }

    /// Every payment (for invariant checks in tests).
    pub fn all_payments(&self) -> Vec<Payment> {
        self.state()
            .map(|s| s.payments.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every transfer (for invariant checks in tests).
    pub fn all_transfers(&self) -> Vec<Transfer> {
        self.state()
            .map(|s| s.transfers.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn insert_account(&self, account: &Account) -> Result<(), DomainError> {
        let mut state = self.state()?;
        if state.accounts.contains_key(&account.id) {
            return Err(DomainError::Unavailable);
        }
        state.accounts.insert(account.id, account.clone());
        Ok(())
    }

    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> Result<Option<Account>, DomainError> {
        let state = self.state()?;
        Ok(state
            .accounts
            .get(id)
            .filter(|a| &a.tenant == tenant)
            .map(|a| state.summed(a)))
    }

    async fn list_accounts(
        &self,
        tenant: &TenantId,
        limit: usize,
        before: Option<AccountId>,
    ) -> Result<Page<Account, AccountId>, DomainError> {
        let state = self.state()?;
        let items = state
            .accounts
            .values()
            .rev()
            .filter(|a| &a.tenant == tenant && before.is_none_or(|b| a.id < b));
        Ok(page(items.map(|a| state.summed(a)), limit, |a| a.id))
    }
}

fn page<T, P>(items: impl Iterator<Item = T>, limit: usize, position: impl Fn(&T) -> P) -> Page<T, P> {
    Page::from_overfetch(items.take(limit + 1).collect(), limit, position)
}

#[async_trait]
impl LedgerStore for MemoryStore {
    async fn read(&self, tenant: &TenantId, reads: &Reads) -> Result<Snapshot, DomainError> {
        let state = self.state()?;
        let visible = |owner: &TenantId| reads.any_tenant || owner == tenant;
        Ok(Snapshot {
            idempotency: reads
                .idempotency
                .as_ref()
                .and_then(|k| state.idempotency.get(k).cloned()),
            event: reads.event.as_ref().and_then(|k| state.events.get(k).cloned()),
            accounts: reads
                .accounts
                .iter()
                .map(|id| {
                    state
                        .accounts
                        .get(id)
                        .filter(|a| visible(&a.tenant))
                        .map(|a| state.summed(a))
                })
                .collect(),
            transfer: reads
                .transfer
                .and_then(|id| state.transfers.get(&id).filter(|t| visible(&t.tenant)).cloned()),
            payment: reads
                .payment
                .and_then(|id| state.payments.get(&id).filter(|p| visible(&p.tenant)).cloned()),
        })
    }

    async fn commit(&self, write: &LedgerWrite) -> Result<(), CommitError> {
        write.check_balanced()?;
        let mut state = self.state()?;
        let reject = |r| Err(CommitError::Rejected(r));
        // Check every condition first, then apply: all or nothing, like a transaction. A
        // refusing record returns what it found, as DynamoDB's `ALL_OLD` does.
        if let Some(found) = write
            .idempotency
            .as_ref()
            .and_then(|r| state.idempotency.get(&r.scope_key))
        {
            return Err(CommitError::Recorded(Box::new(Snapshot {
                idempotency: Some(found.clone()),
                ..Snapshot::default()
            })));
        }
        if let Some(found) = write.event.as_ref().and_then(|e| state.events.get(&e.key)) {
            return Err(CommitError::Recorded(Box::new(Snapshot {
                event: Some(found.clone()),
                ..Snapshot::default()
            })));
        }
        if write
            .deposit_reference
            .iter()
            .chain(&write.reference_unapplied)
            .any(|r| state.deposit_references.contains(r))
        {
            return reject(Rejection::EventRecorded);
        }
        if write.new_accounts.iter().any(|a| state.accounts.contains_key(&a.id))
            || write.new_transfers.iter().any(|t| state.transfers.contains_key(&t.id))
            || write.new_payments.iter().any(|p| state.payments.contains_key(&p.id))
            || write
                .transfer_updates
                .iter()
                .any(|(t, v)| state.transfers.get(&t.id).is_none_or(|c| c.version != *v))
            || write
                .payment_updates
                .iter()
                .any(|(p, v)| state.payments.get(&p.id).is_none_or(|c| c.version != *v))
        {
            return reject(Rejection::Stale);
        }
        // DynamoDB refuses a transaction that names one item twice; so does this store.
        let mut touched: Vec<AccountId> = write.deltas.iter().map(|d| d.account_id).collect();
        touched.extend(write.account_updates.iter().map(|u| u.account.id));
        touched.sort();
        if touched.windows(2).any(|w| w[0] == w[1]) {
            tracing::error!("a write names one account twice");
            return Err(CommitError::Failed(DomainError::Unavailable));
        }
        let entries: Vec<(Position, Entry)> = write
            .new_transfers
            .iter()
            .flat_map(Entry::opened)
            .chain(write.entries.iter().cloned())
            .map(|e| (e.position(), e))
            .collect();
        // An account written whole must still have the version read: for a spread
        // account, the sum over its item and slots, as DynamoDB checks each of them.
        let mut kept = Vec::new();
        for u in &write.account_updates {
            kept.push(u.keeping_slots()?);
        }
        if write.account_updates.iter().zip(&kept).any(|(u, keeping)| {
            state
                .accounts
                .get(&u.account.id)
                .is_none_or(|c| match (keeping, &u.account.parts) {
                    // Its slots kept: only its own item must be as read.
                    (Some(_), Some(parts)) => c.version != parts.own_version,
                    _ => state.summed(c).version != u.version,
                })
        }) || entries.iter().any(|(position, e)| {
            state
                .entries
                .get(&e.account_id)
                .is_some_and(|history| history.binary_search_by_key(position, |(p, _)| *p).is_ok())
        }) {
            return reject(Rejection::Stale);
        }
        if write.expirations.iter().any(|(id, _)| {
            state
                .transfers
                .get(id)
                .is_none_or(|t| t.status != TransferStatus::Pending)
        }) {
            return reject(Rejection::Stale);
        }
        let mut updated: Vec<Account> = write
            .account_updates
            .iter()
            .zip(&kept)
            .map(|(u, keeping)| keeping.clone().unwrap_or_else(|| u.account.clone()))
            .map(|mut a| {
                // Stored as an item is: its parts are what a read finds.
                a.parts = None;
                a
            })
            .collect();
        let slot = write
            .slot_transfer()
            .map_or(0, |t| fintx_domain::transfer::balance_slot(t, self.balance_slots));
        let mut slot_changes = Vec::new();
        for delta in &write.deltas {
            let current = match (state.accounts.get(&delta.account_id), &delta.open) {
                (Some(current), _) => current,
                (None, Some(opening)) => opening.as_ref(),
                (None, None) => return reject(Rejection::Stale),
            };
            if delta.expect.as_ref().is_some_and(|e| !e.holds_for(current))
                || delta.requires.is_some_and(|r| !r.allows(current.status))
            {
                return reject(Rejection::Stale);
            }
            if let Some(cover) = delta.cover {
                if current.headroom()? < cover.value() {
                    return reject(Rejection::InsufficientFunds);
                }
            }
            if delta.spread {
                // A spread account moves one slot, never its own record (which the
                // movement opens if it is new).
                if delta.cover.is_some() || !delta.holds.is_empty() {
                    return Err(CommitError::Failed(DomainError::Unavailable));
                }
                // A customer account's slots carry its limit: a movement planned as
                // spread finds them only while it is unlimited.
                let customer = delta.requires.is_some()
                    || delta
                        .expect
                        .as_ref()
                        .is_some_and(|e| e.kind == fintx_domain::account::AccountKind::Customer);
                if customer && !current.overdraft_limit.is_unlimited() {
                    return reject(Rejection::Stale);
                }
                let (balance, version) = state
                    .slots
                    .get(&(delta.account_id, slot))
                    .cloned()
                    .unwrap_or((Balance::ZERO, 0));
                let balance = balance.plus(&delta.change())?;
                slot_changes.push(((delta.account_id, slot), (balance, version.saturating_add(1))));
                updated.push(current.clone());
                continue;
            }
            let mut next = current.clone();
            apply_delta(&mut next, delta)?;
            updated.push(next);
        }
        if let Some(record) = &write.idempotency {
            state.idempotency.insert(record.scope_key.clone(), record.clone());
        }
        if let Some(event) = &write.event {
            state.events.insert(event.key.clone(), event.clone());
        }
        if let Some(reference) = &write.deposit_reference {
            state.deposit_references.insert(reference.clone());
        }
        for (update, keeping) in write.account_updates.iter().zip(&kept) {
            // Written whole with the sums read: its slots are gathered into it (unless
            // it keeps them, its own item taking only its own share).
            if keeping.is_none() {
                let id = update.account.id;
                state.slots.retain(|(account, _), _| *account != id);
            }
        }
        for account in write.new_accounts.iter().cloned().chain(updated) {
            state.accounts.insert(account.id, account);
        }
        state.slots.extend(slot_changes);
        for transfer in write
            .new_transfers
            .iter()
            .chain(write.transfer_updates.iter().map(|(t, _)| t))
        {
            let old = state.transfers.insert(transfer.id, transfer.clone());
            if let Some(changes) = state.changes.as_mut() {
                changes.push((old, transfer.clone()));
            }
        }
        for (position, entry) in entries {
            let history = state.entries.entry(entry.account_id).or_default();
            if history.last().is_none_or(|(last, _)| *last < position) {
                history.push((position, entry));
            } else {
                let at = history.partition_point(|(p, _)| *p < position);
                history.insert(at, (position, entry));
            }
        }
        for (id, at) in &write.expirations {
            if let Some(old) = state.transfers.get(id).cloned() {
                let mut expired = old.clone();
                expired.status = TransferStatus::Expired;
                expired.updated_at = *at;
                expired.version = fintx_domain::transfer::next_version(old.version)?;
                state.transfers.insert(*id, expired.clone());
                if let Some(changes) = state.changes.as_mut() {
                    changes.push((Some(old), expired));
                }
            }
        }
        for payment in write
            .new_payments
            .iter()
            .chain(write.payment_updates.iter().map(|(p, _)| p))
        {
            state.payments.insert(payment.id, payment.clone());
        }
        Ok(())
    }

    async fn list_events(
        &self,
        tenant: Option<&TenantId>,
        outcome: Outcome,
        limit: usize,
        before: Option<String>,
    ) -> Result<Page<EventRecord, String>, DomainError> {
        let state = self.state()?;
        let mut events: Vec<&EventRecord> = state
            .events
            .values()
            .filter(|e| e.tenant.as_ref() == tenant && e.outcome == outcome)
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.id));
        let position = |e: &EventRecord| e.id.to_string();
        let items = events
            .into_iter()
            .filter(|e| before.as_ref().is_none_or(|b| position(e) < *b))
            .cloned();
        Ok(page(items, limit, position))
    }

    async fn expired_holds(&self, now: Timestamp, limit: usize) -> Result<Vec<Transfer>, DomainError> {
        let state = self.state()?;
        let mut expired: Vec<Transfer> = state
            .transfers
            .values()
            .filter(|t| t.status == TransferStatus::Pending && t.expires_at.is_some_and(|at| at <= now))
            .cloned()
            .collect();
        expired.sort_by_key(|t| (t.expires_at, t.id));
        expired.truncate(limit);
        Ok(expired)
    }

    async fn account_entries(
        &self,
        _tenant: &TenantId,
        account: &Account,
        range: &EntryRange,
        limit: Option<usize>,
    ) -> Result<Page<Entry, Position>, DomainError> {
        let state = self.state()?;
        let history = state.entries.get(&account.id).map_or(&[][..], Vec::as_slice);
        let low = range.from.map_or(0, |from| history.partition_point(|(p, _)| *p < from));
        let high = range
            .below
            .map_or(history.len(), |below| history.partition_point(|(p, _)| *p < below));
        let items: Vec<Entry> = history
            .get(low..high.max(low))
            .unwrap_or_default()
            .iter()
            .rev()
            .map(|(_, e)| e)
            .filter(|e| range.contains(e))
            .take(limit.map_or(usize::MAX, |l| l.saturating_add(1)))
            .cloned()
            .collect();
        Ok(match limit {
            Some(limit) => page(items.into_iter(), limit, Entry::position),
            None => Page { items, next: None },
        })
    }

    async fn list_account_transfers(
        &self,
        tenant: &TenantId,
        account: &Account,
        limit: usize,
        before: Option<TransferId>,
    ) -> Result<Page<Transfer, TransferId>, DomainError> {
        let state = self.state()?;
        let items = state.transfers.values().rev().filter(|t| {
            &t.tenant == tenant
                && (t.debit_account_id == account.id || t.credit_account_id == account.id)
                && before.is_none_or(|b| t.id < b)
        });
        Ok(page(items.cloned(), limit, |t| t.id))
    }
}
