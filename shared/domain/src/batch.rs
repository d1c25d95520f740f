//! Linked transfers (SPEC §6): up to [`BATCH_MAX`] transfers committed all or nothing in
//! one DynamoDB transaction, applied in order (each sees the balances the ones before it
//! left), every transfer balancing on its own. Accounts shared by several transfers get
//! one combined balance change, since a transaction touches an item once.

use std::collections::HashMap;

use rust_decimal::Decimal;

use crate::account::Account;
use crate::auth::TenantId;
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::ids::{AccountId, BatchId, TransferId};
use crate::money::Amount;
use crate::transfer::{
    apply_delta, open_api_transfer, plan_api_transfer, AccountDelta, NewTransfer, Requires, Transfer,
};

/// Most transfers one batch may hold.
pub const BATCH_MAX: usize = 20;

/// DynamoDB's limit on the actions of one `TransactWriteItems`.
pub const TRANSACTION_ACTIONS_MAX: usize = 100;

/// The actions a batch's write takes: each transfer's item and its two listing entries,
/// one balance update per distinct account, and the idempotency record. Only a batch of
/// 20 transfers between 40 different accounts would exceed DynamoDB's 100.
pub fn batch_actions(transfers: usize, distinct_accounts: usize) -> usize {
    transfers
        .saturating_mul(3)
        .saturating_add(distinct_accounts)
        .saturating_add(1)
}

/// The distinct accounts a batch names, in the order they first appear.
pub fn batch_accounts(requests: &[NewTransfer]) -> Vec<AccountId> {
    let mut seen = Vec::new();
    for r in requests {
        for id in [r.debit_account_id, r.credit_account_id] {
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
    }
    seen
}

/// Checks a batch's size: 1 to [`BATCH_MAX`] transfers whose write fits one transaction.
pub fn check_batch_size(requests: &[NewTransfer]) -> Result<(), DomainError> {
    if requests.is_empty() || requests.len() > BATCH_MAX {
        return Err(DomainError::invalid_request(format!(
            "a batch holds 1 to {BATCH_MAX} transfers"
        )));
    }
    if batch_actions(requests.len(), batch_accounts(requests).len()) > TRANSACTION_ACTIONS_MAX {
        return Err(DomainError::invalid_request(format!(
            "a batch of {BATCH_MAX} transfers may name at most {} different accounts",
            TRANSACTION_ACTIONS_MAX.saturating_sub(1 + 3 * BATCH_MAX)
        )));
    }
    Ok(())
}

/// A batch's transfers and the combined balance change of each account it moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchWrite {
    pub transfers: Vec<Transfer>,
    pub deltas: Vec<AccountDelta>,
}

fn in_batch(index: usize) -> impl Fn(DomainError) -> DomainError {
    move |error| DomainError::InBatch {
        index,
        error: Box::new(error),
    }
}

/// The batch decided from its accounts as read (`None`: not the tenant's or missing),
/// transfer by transfer in order: the first refused transfer refuses the batch, with its
/// index.
pub fn open_batch(
    batch_id: BatchId,
    ids: &[TransferId],
    tenant: &TenantId,
    requests: &[NewTransfer],
    accounts: &HashMap<AccountId, Account>,
    now: Timestamp,
) -> Result<BatchWrite, DomainError> {
    let mut state = accounts.clone();
    let mut transfers = Vec::with_capacity(requests.len());
    let mut deltas = Vec::with_capacity(requests.len().saturating_mul(2));
    for (index, (request, id)) in requests.iter().zip(ids).enumerate() {
        let fail = in_batch(index);
        let (Some(debit), Some(credit)) = (
            state.get(&request.debit_account_id),
            state.get(&request.credit_account_id),
        ) else {
            return Err(fail(DomainError::AccountNotFound));
        };
        let (mut transfer, parts) =
            open_api_transfer(*id, tenant, request.clone(), debit, credit, now).map_err(&fail)?;
        for delta in &parts {
            if let Some(account) = state.get_mut(&delta.account_id) {
                apply_delta(account, delta).map_err(&fail)?;
            }
        }
        transfer.batch_id = Some(batch_id);
        transfers.push(transfer);
        deltas.extend(parts);
    }
    Ok(BatchWrite {
        transfers,
        deltas: combine(deltas).ok_or(DomainError::Unavailable)?,
    })
}

/// The batch decided without reading its accounts (SPEC §10): every account is the
/// tenant's customer account in its transfer's currency, and each debit is covered by
/// what the account holds after the transfers before it, all stated as the write's
/// conditions. `None` when a read is needed to tell which rule refuses (an account on
/// both sides of a transfer, or named in two currencies).
pub fn plan_batch(
    batch_id: BatchId,
    ids: &[TransferId],
    tenant: &TenantId,
    requests: &[NewTransfer],
    now: Timestamp,
    unlimited: &dyn Fn(AccountId) -> bool,
) -> Option<BatchWrite> {
    let mut transfers = Vec::with_capacity(requests.len());
    let mut deltas = Vec::with_capacity(requests.len().saturating_mul(2));
    for (request, id) in requests.iter().zip(ids) {
        let (mut transfer, parts) = plan_api_transfer(*id, tenant, request.clone(), now, unlimited)?;
        transfer.batch_id = Some(batch_id);
        transfers.push(transfer);
        deltas.extend(parts);
    }
    Some(BatchWrite {
        transfers,
        deltas: combine(deltas)?,
    })
}

/// One balance change per account, in the order accounts first appear, for changes
/// applied in sequence. A combined debit's cover is the most the account needs at any
/// point of the sequence: covered then, it is covered at every step. `None` when two
/// changes of one account assume different facts of it (their currencies differ).
pub fn combine(deltas: Vec<AccountDelta>) -> Option<Vec<AccountDelta>> {
    let mut combined: Vec<AccountDelta> = Vec::new();
    // Per combined delta: the running change of its headroom.
    let mut running: Vec<Decimal> = Vec::new();
    for delta in deltas {
        let headroom = delta.headroom_change().ok()?;
        let Some(i) = combined.iter().position(|c| c.account_id == delta.account_id) else {
            running.push(headroom);
            combined.push(delta);
            continue;
        };
        let c = &mut combined[i];
        if c.open.is_some() || delta.open.is_some() {
            return None;
        }
        match (&c.expect, &delta.expect) {
            (Some(a), Some(b)) if a != b => return None,
            (None, Some(b)) => c.expect = Some(b.clone()),
            _ => {}
        }
        if let Some(cover) = delta.cover {
            // This debit needs `cover` on top of what the changes before it took.
            let need = cover.less(running[i])?;
            if need.value() > c.cover.map_or(Decimal::ZERO, Amount::value) {
                c.cover = Some(need);
            }
        }
        running[i] = running[i].checked_add(headroom)?;
        let c = &mut combined[i];
        c.posted = c.posted.checked_add(delta.posted)?;
        c.pending_debits = c.pending_debits.checked_add(delta.pending_debits)?;
        c.pending_credits = c.pending_credits.checked_add(delta.pending_credits)?;
        c.requires = match (c.requires, delta.requires) {
            (Some(Requires::Open), _) | (_, Some(Requires::Open)) => Some(Requires::Open),
            (a, b) => a.or(b),
        };
        c.holds.extend(delta.holds);
        // One item takes the combined change: a slot only if every part could go to one
        // (an expiring hold's change stays on the account's own item).
        c.spread = c.spread && delta.spread && c.holds.is_empty();
    }
    Some(combined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Balance, Metadata, NewAccount};
    use crate::money::Currency;
    use crate::ports::LedgerWrite;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn account(n: u128, posted: i64, limit: i64) -> Account {
        let mut a = Account::open(
            AccountId::from_ulid(ulid::Ulid::from_parts(1, n)),
            TenantId::parse("t1").unwrap(),
            NewAccount {
                currency: usd(),
                holder: None,
                name: None,
                overdraft_limit: crate::account::OverdraftLimit::parse(&limit.to_string(), usd()).unwrap(),
                metadata: Metadata::default(),
            },
            None,
            Timestamp::from_unix_ms(0).unwrap(),
        );
        a.balance = Balance {
            posted: Decimal::from(posted),
            ..Balance::ZERO
        };
        a
    }

    fn move_(from: &Account, to: &Account, amount: i64) -> NewTransfer {
        NewTransfer {
            debit_account_id: from.id,
            credit_account_id: to.id,
            amount: Amount::parse(&amount.to_string(), usd()).unwrap(),
            currency: usd(),
            pending: false,
            expires_in: None,
            description: None,
            metadata: Metadata::default(),
        }
    }

    fn ids(n: usize) -> Vec<TransferId> {
        (0..n)
            .map(|i| TransferId::from_ulid(ulid::Ulid::from_parts(2, i as u128)))
            .collect()
    }

    fn batch() -> BatchId {
        BatchId::from_ulid(ulid::Ulid::from_parts(3, 0))
    }

    #[test]
    fn a_shared_account_gets_one_change_covering_its_deepest_point() {
        let (a, b, c) = (account(1, 10, 0), account(2, 0, 0), account(3, 4, 0));
        // a pays 10 to b, receives 4 from c, then pays 4 more: at most 10 below its start.
        let requests = [move_(&a, &b, 10), move_(&c, &a, 4), move_(&a, &b, 4)];
        let t = TenantId::parse("t1").unwrap();
        let now = Timestamp::from_unix_ms(5).unwrap();
        let planned = plan_batch(batch(), &ids(3), &t, &requests, now, &|_| false).unwrap();
        assert_eq!(planned.deltas.len(), 3, "one change per account");
        let da = &planned.deltas[0];
        assert_eq!((da.account_id, da.posted), (a.id, Decimal::from(-10)));
        assert_eq!(da.cover.map(Amount::value), Some(Decimal::from(10)));
        // The combined changes are exactly what the transfers' own entries say.
        let write = LedgerWrite {
            deltas: planned.deltas.clone(),
            new_transfers: planned.transfers.clone(),
            ..LedgerWrite::default()
        };
        assert_eq!(write.check_balanced(), Ok(()));
        assert!(planned.transfers.iter().all(|t| t.batch_id == Some(batch())));

        // With the accounts read, the same write; and each transfer sees the ones before.
        let accounts: HashMap<_, _> = [a.clone(), b.clone(), c.clone()]
            .into_iter()
            .map(|x| (x.id, x))
            .collect();
        assert_eq!(open_batch(batch(), &ids(3), &t, &requests, &accounts, now), Ok(planned));
        let too_much = [move_(&a, &b, 10), move_(&a, &b, 1), move_(&c, &a, 5)];
        let refused = open_batch(batch(), &ids(3), &t, &too_much, &accounts, now);
        assert_eq!(
            refused,
            Err(DomainError::InBatch {
                index: 1,
                error: Box::new(DomainError::InsufficientFunds)
            })
        );
    }

    #[test]
    fn the_largest_batch_that_passes_fits_one_transaction() {
        let accounts: Vec<Account> = (0..40).map(|n| account(n, 0, 0)).collect();
        let pairs = |n: usize| -> Vec<NewTransfer> {
            (0..n)
                .map(|i| move_(&accounts[2 * i], &accounts[2 * i + 1], 1))
                .collect()
        };
        assert!(check_batch_size(&[]).is_err());
        assert!(check_batch_size(&pairs(19)).is_ok());
        // 20 transfers between 40 accounts would take 101 actions.
        assert_eq!(batch_actions(20, 40), 101);
        assert!(check_batch_size(&pairs(20)).is_err());
        let mut shared = pairs(20);
        shared[19].credit_account_id = accounts[0].id;
        assert_eq!(batch_accounts(&shared).len(), 39);
        assert!(check_batch_size(&shared).is_ok());
        assert_eq!(batch_actions(20, 39), TRANSACTION_ACTIONS_MAX);
        let mut too_many = pairs(20);
        too_many.push(move_(&accounts[0], &accounts[1], 1));
        assert!(check_batch_size(&too_many).is_err());
    }
}
