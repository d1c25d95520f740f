//! Statements and balances in time (SPEC §6). Every change of an account's balances is
//! kept as an [`Entry`], written in the same transaction as the change itself: a new
//! transfer's two entries, and one per account when a hold posts, is voided or expires.
//! History is read back from the balances as they stand: the balance at an instant is
//! the stored balance less every entry after it, less the holds stored past their
//! `expires_at` by then, so a read needs no running figure kept at write time (which
//! would need a read before every write, SPEC §10).
//!
//! Entries are ordered by their instant (milliseconds), then by transfer id, a
//! transfer's creation before its resolution. A change takes effect at the instant its
//! request decided it (an expiry at the hold's `expires_at`), so an entry decided just
//! before another may commit just after it; history within a request's time budget of
//! now can still gain such an entry, and is final from then on.

use rust_decimal::Decimal;

use crate::account::{Account, Balance};
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::ids::{AccountId, TransferId};
use crate::transfer::{AccountDelta, Transfer, TransferStatus};

/// Whether an entry records a transfer's creation or its later resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// The transfer was created: posted at once, or held.
    Opened,
    /// A hold posted, was voided or expired.
    Resolved,
}

/// Where an entry sorts in its account's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub at_ms: i64,
    pub transfer_id: TransferId,
    pub phase: Phase,
}

impl Position {
    /// The first position of millisecond `ms`: every entry at `ms` or later sorts at or
    /// after it, every earlier one before it.
    pub fn start_of(ms: i64) -> Self {
        Position {
            at_ms: ms,
            transfer_id: TransferId::from_ulid(ulid::Ulid::nil()),
            phase: Phase::Opened,
        }
    }

    /// The position just after every entry at or before `at`.
    pub fn after(at: Timestamp) -> Self {
        Self::start_of(at.unix_ms().saturating_add(1))
    }

    /// `<ms>.<transfer id>.<o|r>`, as a cursor carries it.
    pub fn encode(&self) -> String {
        let phase = match self.phase {
            Phase::Opened => 'o',
            Phase::Resolved => 'r',
        };
        format!("{}.{}.{phase}", self.at_ms, self.transfer_id)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let at_ms = parts.next()?.parse().ok()?;
        let transfer_id = TransferId::parse(parts.next()?)?;
        let phase = match parts.next()? {
            "o" => Phase::Opened,
            "r" => Phase::Resolved,
            _ => return None,
        };
        parts.next().is_none().then_some(Position {
            at_ms,
            transfer_id,
            phase,
        })
    }
}

/// One change of one account's balances, caused by one transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub account_id: AccountId,
    pub transfer_id: TransferId,
    /// When the change took effect.
    pub at: Timestamp,
    pub phase: Phase,
    pub posted: Decimal,
    pub pending_debits: Decimal,
    pub pending_credits: Decimal,
}

impl Entry {
    /// The change of the account's balances.
    pub fn change(&self) -> Balance {
        Balance {
            posted: self.posted,
            pending_debits: self.pending_debits,
            pending_credits: self.pending_credits,
        }
    }

    pub fn position(&self) -> Position {
        Position {
            at_ms: self.at.unix_ms(),
            transfer_id: self.transfer_id,
            phase: self.phase,
        }
    }

    /// The entries of a new transfer: its creation moves both accounts, posted or held.
    pub fn opened(transfer: &Transfer) -> [Entry; 2] {
        let amount = transfer.amount.value();
        let pending = transfer.status == TransferStatus::Pending;
        let entry = |account_id, debit: bool| {
            let (posted, pending_debits, pending_credits) = match (pending, debit) {
                (true, true) => (Decimal::ZERO, amount, Decimal::ZERO),
                (true, false) => (Decimal::ZERO, Decimal::ZERO, amount),
                (false, true) => (crate::transfer::minus(amount), Decimal::ZERO, Decimal::ZERO),
                (false, false) => (amount, Decimal::ZERO, Decimal::ZERO),
            };
            Entry {
                account_id,
                transfer_id: transfer.id,
                at: transfer.created_at,
                phase: Phase::Opened,
                posted,
                pending_debits,
                pending_credits,
            }
        };
        [
            entry(transfer.debit_account_id, true),
            entry(transfer.credit_account_id, false),
        ]
    }

    /// The entry of a change of an existing transfer (a post, a void, an expiry) on the
    /// account `delta` moves, taking effect at `at`.
    pub fn resolved(transfer_id: TransferId, at: Timestamp, delta: &AccountDelta) -> Entry {
        Entry {
            account_id: delta.account_id,
            transfer_id,
            at,
            phase: Phase::Resolved,
            posted: delta.posted,
            pending_debits: delta.pending_debits,
            pending_credits: delta.pending_credits,
        }
    }

    /// Both entries of a change of an existing transfer.
    pub fn resolving(transfer_id: TransferId, at: Timestamp, deltas: &[AccountDelta; 2]) -> [Entry; 2] {
        [
            Entry::resolved(transfer_id, at, &deltas[0]),
            Entry::resolved(transfer_id, at, &deltas[1]),
        ]
    }
}

/// Which entries of an account a read wants, newest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryRange {
    /// Entries at or after this position.
    pub from: Option<Position>,
    /// Entries strictly before this position.
    pub below: Option<Position>,
    /// Only entries that change the posted balance: a statement's lines.
    pub posted_only: bool,
}

impl EntryRange {
    pub fn contains(&self, entry: &Entry) -> bool {
        let position = entry.position();
        self.from.is_none_or(|f| position >= f)
            && self.below.is_none_or(|b| position < b)
            && (!self.posted_only || !entry.posted.is_zero())
    }
}

/// The balances `stored` (an account as read) had at `at`, given every entry of it after
/// `at` (`later`, as read with the account unchanged meanwhile): each is taken back, and
/// holds stored past their `expires_at` by `at` no longer count.
pub fn balance_at(stored: &Account, later: &[Entry], at: Timestamp) -> Result<Balance, DomainError> {
    let mut then = stored.clone();
    for entry in later {
        then.balance = then.balance.minus(&entry.change())?;
    }
    Ok(then.at(at).balance)
}

/// The posted balance just before the entries of `later` (posted figures only), from
/// the posted balance after them all.
pub fn posted_before(posted: Decimal, later: &[Entry]) -> Result<Decimal, DomainError> {
    later
        .iter()
        .try_fold(posted, |p, e| p.checked_sub(e.posted).ok_or(DomainError::Overflow))
}

/// A statement line: an entry and the posted balance just after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub entry: Entry,
    pub posted_after: Decimal,
}

/// Statement lines of `entries` (newest first), the newest leaving the posted balance at
/// `posted_after`; returns them with the posted balance before the oldest.
pub fn lines(entries: Vec<Entry>, posted_after: Decimal) -> Result<(Vec<Line>, Decimal), DomainError> {
    let mut after = posted_after;
    let mut lines = Vec::with_capacity(entries.len());
    for entry in entries {
        let before = after.checked_sub(entry.posted).ok_or(DomainError::Overflow)?;
        lines.push(Line {
            entry,
            posted_after: after,
        });
        after = before;
    }
    Ok((lines, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TenantId;
    use crate::money::Currency;
    use crate::transfer::HeldEntry;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(ms).unwrap()
    }

    fn tid(ms: u64, n: u128) -> TransferId {
        TransferId::from_ulid(ulid::Ulid::from_parts(ms, n))
    }

    fn entry(ms: i64, n: u128, phase: Phase, posted: i64, pd: i64, pc: i64) -> Entry {
        Entry {
            account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1, 1)),
            transfer_id: tid(ms as u64, n),
            at: ts(ms),
            phase,
            posted: Decimal::from(posted),
            pending_debits: Decimal::from(pd),
            pending_credits: Decimal::from(pc),
        }
    }

    #[test]
    fn positions_order_by_instant_then_transfer_then_phase_and_round_trip() {
        let a = entry(5, 9, Phase::Opened, 0, 0, 0).position();
        let b = entry(5, 9, Phase::Resolved, 0, 0, 0).position();
        let c = entry(6, 1, Phase::Opened, 0, 0, 0).position();
        assert!(Position::start_of(5) < a && a < b && b < c && c < Position::start_of(7));
        assert!(b < Position::after(ts(5)) && Position::after(ts(5)) <= c);
        for p in [a, b, c] {
            assert_eq!(Position::decode(&p.encode()), Some(p));
        }
        for bad in [
            "",
            "5",
            "5.tr_x.o",
            "x.tr_01arz3ndektsv4rrffq69g5fav.o",
            "5.tr_01arz3ndektsv4rrffq69g5fav.q",
        ] {
            assert_eq!(Position::decode(bad), None, "{bad}");
        }
        let text = format!("{}.extra", a.encode());
        assert_eq!(Position::decode(&text), None);
    }

    #[test]
    fn lines_walk_back_from_the_posted_balance_after_the_newest() {
        let entries = vec![
            entry(9, 1, Phase::Resolved, -30, -40, 0),
            entry(7, 2, Phase::Opened, 100, 0, 0),
        ];
        let (lines, before) = lines(entries, Decimal::from(70)).unwrap();
        assert_eq!(lines[0].posted_after, Decimal::from(70));
        assert_eq!(lines[1].posted_after, Decimal::from(100));
        assert_eq!(before, Decimal::ZERO);
    }

    #[test]
    fn a_balance_at_takes_later_entries_back_and_expired_holds_out() {
        let mut account = Account::clearing(
            AccountId::from_ulid(ulid::Ulid::from_parts(1, 1)),
            TenantId::parse("t").unwrap(),
            Currency::parse("USD").unwrap(),
            "bank",
            ts(1),
        );
        // Stored now: 100 posted, a hold of 40 on it expiring at 50, another of 5 made
        // at 60.
        account.balance.posted = Decimal::from(100);
        account.balance.pending_debits = Decimal::from(45);
        account.holds.push(HeldEntry {
            transfer_id: tid(10, 1),
            amount: Decimal::from(40),
            expires_at: ts(50),
            debit: true,
            other: AccountId::from_ulid(ulid::Ulid::from_parts(1, 2)),
        });
        let later = [entry(60, 3, Phase::Opened, 0, 5, 0)];
        let at_40 = balance_at(&account, &later, ts(40)).unwrap();
        assert_eq!(
            (at_40.posted, at_40.pending_debits),
            (Decimal::from(100), Decimal::from(40))
        );
        let at_50 = balance_at(&account, &later, ts(50)).unwrap();
        assert_eq!(at_50.pending_debits, Decimal::ZERO);
        assert_eq!(posted_before(Decimal::from(100), &later).unwrap(), Decimal::from(100));
    }
}
