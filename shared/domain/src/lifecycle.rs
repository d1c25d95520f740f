//! An account's lifecycle and settings (SPEC §6): freeze, unfreeze, close, and changes of
//! name, overdraft limit and metadata under the account's `version`.

use crate::account::{Account, AccountKind, AccountName, AccountStatus, Balance, Metadata, OverdraftLimit};
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::ids::TransferId;
use crate::statement::Entry;
use crate::transfer::{apply_delta, next_version, release_expired, AccountDelta};

/// An account as a lifecycle change or patch leaves it. Rules are decided on the account
/// as it stands (holds past their `expires_at` do not count); the holds it still stores
/// past their `expires_at` are released by the same write: `expired` are their transfers
/// and `others` the changes of their other sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountChange {
    pub account: Account,
    /// How its balances moved from the stored ones (the holds released).
    pub released: Balance,
    pub expired: Vec<(TransferId, Timestamp)>,
    pub others: Vec<AccountDelta>,
    /// The released holds' entries, both sides.
    pub entries: Vec<Entry>,
}

/// `next` (the stored account with its new settings), with its expired holds released
/// and its version moved on by one.
fn finish(stored: &Account, mut next: Account, now: Timestamp) -> Result<AccountChange, DomainError> {
    let release = release_expired(stored, now, false);
    let mut released = Balance::ZERO;
    for own in &release.own {
        apply_delta(&mut next, own)?;
        released = released.plus(&own.change())?;
    }
    next.version = next_version(stored.version)?;
    Ok(AccountChange {
        account: next,
        released,
        expired: release.expired.into_iter().map(|id| (id, now)).collect(),
        entries: release.entries,
        // Two holds with one counterparty: one change of it (a transaction touches an
        // item once).
        others: crate::batch::combine(release.others).ok_or(DomainError::Unavailable)?,
    })
}

/// A status change a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusChange {
    Freeze,
    Unfreeze,
    Close,
}

impl StatusChange {
    pub const fn as_str(self) -> &'static str {
        match self {
            StatusChange::Freeze => "freeze",
            StatusChange::Unfreeze => "unfreeze",
            StatusChange::Close => "close",
        }
    }
}

/// The account after `change`, or `None` when it already is where the change leads (the
/// same request repeated answers the account unchanged). Clearing accounts mirror money
/// at a bank and have no lifecycle of their own.
pub fn change_status(
    account: &Account,
    change: StatusChange,
    now: Timestamp,
) -> Result<Option<AccountChange>, DomainError> {
    use AccountStatus::{Closed, Frozen, Open};
    if account.kind == AccountKind::Clearing {
        return Err(DomainError::ClearingAccount);
    }
    let to = match (change, account.status) {
        (StatusChange::Freeze, Frozen) | (StatusChange::Unfreeze, Open) | (StatusChange::Close, Closed) => {
            return Ok(None)
        }
        (StatusChange::Freeze | StatusChange::Unfreeze, Closed) => {
            return Err(DomainError::InvalidTransition {
                from: "closed",
                action: change.as_str(),
            })
        }
        (StatusChange::Freeze, Open) => Frozen,
        (StatusChange::Unfreeze, Frozen) => Open,
        (StatusChange::Close, Open | Frozen) => {
            let b = &account.at(now).balance;
            if !(b.posted.is_zero() && b.pending_debits.is_zero() && b.pending_credits.is_zero()) {
                return Err(DomainError::AccountNotEmpty);
            }
            Closed
        }
    };
    let mut next = account.clone();
    next.status = to;
    finish(account, next, now).map(Some)
}

/// A validated `PATCH /v1/accounts/{id}`: the version the client read and what changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountPatch {
    pub version: u64,
    pub name: Option<AccountName>,
    pub overdraft_limit: Option<OverdraftLimit>,
    pub metadata: Option<Metadata>,
}

/// The account after `patch`, or `None` when the patch changes nothing. The version must
/// be the account's own (409 `version_conflict`); a closed account takes no changes; a new
/// limit may not leave the account below its floor (`available < −limit`: 422
/// `limit_below_usage`).
pub fn apply_patch(
    account: &Account,
    patch: &AccountPatch,
    now: Timestamp,
) -> Result<Option<AccountChange>, DomainError> {
    if account.kind == AccountKind::Clearing {
        return Err(DomainError::ClearingAccount);
    }
    if patch.version != account.version {
        return Err(DomainError::VersionConflict);
    }
    if account.status == AccountStatus::Closed {
        return Err(DomainError::AccountClosed);
    }
    let mut next = account.clone();
    if let Some(name) = &patch.name {
        next.name = Some(name.clone());
    }
    if let Some(metadata) = &patch.metadata {
        next.metadata = metadata.clone();
    }
    if let Some(limit) = patch.overdraft_limit {
        next.overdraft_limit = limit;
        let mut current = account.at(now);
        current.overdraft_limit = limit;
        if current.headroom()?.is_sign_negative() {
            return Err(DomainError::LimitBelowUsage);
        }
    }
    if next == *account {
        return Ok(None);
    }
    finish(account, next, now).map(Some)
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::account::{Balance, NewAccount};
    use crate::auth::TenantId;
    use crate::ids::AccountId;
    use crate::money::Currency;

    fn t0() -> Timestamp {
        Timestamp::from_unix_ms(0).unwrap()
    }

    fn account(posted: i64, pending_debits: i64, limit: i64) -> Account {
        let usd = Currency::parse("USD").unwrap();
        let request = NewAccount {
            currency: usd,
            holder: None,
            name: None,
            overdraft_limit: OverdraftLimit::parse(&limit.to_string(), usd).unwrap(),
            metadata: Metadata::default(),
        };
        let mut a = Account::open(
            AccountId::from_ulid(ulid::Ulid::from_parts(1, 1)),
            TenantId::parse("t1").unwrap(),
            request,
            None,
            Timestamp::from_unix_ms(0).unwrap(),
        );
        a.balance = Balance {
            posted: Decimal::from(posted),
            pending_debits: Decimal::from(pending_debits),
            pending_credits: Decimal::ZERO,
        };
        a
    }

    #[test]
    fn statuses_move_as_the_spec_draws_them() {
        let open = account(0, 0, 0);
        let frozen = change_status(&open, StatusChange::Freeze, t0())
            .unwrap()
            .unwrap()
            .account;
        assert_eq!((frozen.status, frozen.version), (AccountStatus::Frozen, 2));
        assert_eq!(change_status(&frozen, StatusChange::Freeze, t0()), Ok(None));
        let reopened = change_status(&frozen, StatusChange::Unfreeze, t0())
            .unwrap()
            .unwrap()
            .account;
        assert_eq!(reopened.status, AccountStatus::Open);
        assert_eq!(change_status(&open, StatusChange::Unfreeze, t0()), Ok(None));
        let closed = change_status(&frozen, StatusChange::Close, t0())
            .unwrap()
            .unwrap()
            .account;
        assert_eq!(closed.status, AccountStatus::Closed);
        assert_eq!(change_status(&closed, StatusChange::Close, t0()), Ok(None));
        for change in [StatusChange::Freeze, StatusChange::Unfreeze] {
            assert!(matches!(
                change_status(&closed, change, t0()),
                Err(DomainError::InvalidTransition { from: "closed", .. })
            ));
        }
    }

    #[test]
    fn only_an_empty_account_closes() {
        for (posted, pending) in [(1, 0), (-1, 0), (0, 1)] {
            let a = account(posted, pending, 10);
            assert_eq!(
                change_status(&a, StatusChange::Close, t0()),
                Err(DomainError::AccountNotEmpty)
            );
        }
        let mut credited = account(0, 0, 0);
        credited.balance.pending_credits = Decimal::ONE;
        assert_eq!(
            change_status(&credited, StatusChange::Close, t0()),
            Err(DomainError::AccountNotEmpty)
        );
    }

    #[test]
    fn a_patch_needs_the_current_version_and_keeps_the_floor() {
        let a = account(-50, 20, 100);
        let usd = a.currency;
        let patch = |version, limit: &str| AccountPatch {
            version,
            name: None,
            overdraft_limit: Some(OverdraftLimit::parse(limit, usd).unwrap()),
            metadata: None,
        };
        assert_eq!(
            apply_patch(&a, &patch(2, "70"), t0()),
            Err(DomainError::VersionConflict)
        );
        // available −70: a limit of 70 is exactly the floor, 69 is below it.
        let lowered = apply_patch(&a, &patch(1, "70"), t0()).unwrap().unwrap().account;
        assert_eq!(
            (lowered.overdraft_limit.bound().unwrap().value(), lowered.version),
            (Decimal::from(70), 2)
        );
        assert_eq!(
            apply_patch(&a, &patch(1, "69"), t0()),
            Err(DomainError::LimitBelowUsage)
        );
        assert_eq!(apply_patch(&a, &patch(1, "100"), t0()), Ok(None));
        let mut closed = account(0, 0, 0);
        closed.status = AccountStatus::Closed;
        assert_eq!(
            apply_patch(&closed, &patch(1, "5"), t0()),
            Err(DomainError::AccountClosed)
        );
    }
}
