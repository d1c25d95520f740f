//! In-memory stores with the same contract as the DynamoDB adapter (atomic writes with
//! the same conditions), for unit tests, property tests and benchmarks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use fintx_domain::account::Account;
use fintx_domain::auth::TenantId;
use fintx_domain::idempotency::IdempotencyRecord;
use fintx_domain::ids::{AccountId, PaymentId, TransferId};
use fintx_domain::payment::Payment;
use fintx_domain::ports::{
    AccountStore, ClearingKey, CommitError, LedgerStore, LedgerWrite, Page, Reads, Rejection, Snapshot,
};
use fintx_domain::transfer::{apply_delta, Transfer};
use fintx_domain::DomainError;

#[derive(Default, Clone)]
struct State {
    accounts: BTreeMap<AccountId, Account>,
    transfers: BTreeMap<TransferId, Transfer>,
    payments: BTreeMap<PaymentId, Payment>,
    idempotency: HashMap<String, IdempotencyRecord>,
    clearing: HashMap<ClearingKey, AccountId>,
}

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, DomainError> {
        self.state.lock().map_err(|_| DomainError::Unavailable)
    }

    /// Every account (for invariant checks in tests).
    pub fn all_accounts(&self) -> Vec<Account> {
        self.state()
            .map(|s| s.accounts.values().cloned().collect())
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
        Ok(self.state()?.accounts.get(id).filter(|a| &a.tenant == tenant).cloned())
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
        Ok(page(items.cloned(), limit, |a| a.id))
    }
}

fn page<T, P>(items: impl Iterator<Item = T>, limit: usize, position: impl Fn(&T) -> P) -> Page<T, P> {
    let mut items: Vec<T> = items.take(limit + 1).collect();
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(&position)
    } else {
        None
    };
    Page { items, next }
}

#[async_trait]
impl LedgerStore for MemoryStore {
    async fn read(&self, tenant: &TenantId, reads: &Reads) -> Result<Snapshot, DomainError> {
        let state = self.state()?;
        Ok(Snapshot {
            idempotency: reads
                .idempotency
                .as_ref()
                .and_then(|k| state.idempotency.get(k).cloned()),
            accounts: reads
                .accounts
                .iter()
                .map(|id| state.accounts.get(id).filter(|a| &a.tenant == tenant).cloned())
                .collect(),
            transfer: reads
                .transfer
                .and_then(|id| state.transfers.get(&id).filter(|t| &t.tenant == tenant).cloned()),
            payment: reads
                .payment
                .and_then(|id| state.payments.get(&id).filter(|p| &p.tenant == tenant).cloned()),
            clearing: reads.clearing.as_ref().and_then(|k| state.clearing.get(k).copied()),
        })
    }

    async fn commit(&self, write: &LedgerWrite) -> Result<(), CommitError> {
        let mut guard = self.state()?;
        // Apply to a copy and swap it in only if every condition held: all or nothing.
        let mut next = guard.clone();
        if let Some(record) = &write.idempotency {
            if next.idempotency.contains_key(&record.scope_key) {
                return Err(CommitError::Rejected(Rejection::IdempotencyRecorded));
            }
            next.idempotency.insert(record.scope_key.clone(), record.clone());
        }
        for account in &write.new_accounts {
            if next.accounts.insert(account.id, account.clone()).is_some() {
                return Err(CommitError::Rejected(Rejection::Stale));
            }
        }
        if let Some((key, id)) = &write.new_clearing {
            if next.clearing.insert(key.clone(), *id).is_some() {
                return Err(CommitError::Rejected(Rejection::Stale));
            }
        }
        for delta in &write.deltas {
            let account = next
                .accounts
                .get_mut(&delta.account_id)
                .ok_or(CommitError::Rejected(Rejection::Stale))?;
            if let Some(cover) = delta.cover {
                let headroom = account
                    .balance
                    .available()?
                    .checked_add(account.overdraft_limit.value())
                    .ok_or(DomainError::Overflow)?;
                if headroom < cover.value() {
                    return Err(CommitError::Rejected(Rejection::InsufficientFunds));
                }
            }
            apply_delta(account, delta)?;
        }
        for transfer in &write.new_transfers {
            if next.transfers.insert(transfer.id, transfer.clone()).is_some() {
                return Err(CommitError::Rejected(Rejection::Stale));
            }
        }
        for (transfer, expected) in &write.transfer_updates {
            match next.transfers.get(&transfer.id) {
                Some(current) if current.version == *expected => {
                    next.transfers.insert(transfer.id, transfer.clone());
                }
                _ => return Err(CommitError::Rejected(Rejection::Stale)),
            }
        }
        for payment in &write.new_payments {
            if next.payments.insert(payment.id, payment.clone()).is_some() {
                return Err(CommitError::Rejected(Rejection::Stale));
            }
        }
        for (payment, expected) in &write.payment_updates {
            match next.payments.get(&payment.id) {
                Some(current) if current.version == *expected => {
                    next.payments.insert(payment.id, payment.clone());
                }
                _ => return Err(CommitError::Rejected(Rejection::Stale)),
            }
        }
        *guard = next;
        Ok(())
    }

    async fn list_account_transfers(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        limit: usize,
        before: Option<TransferId>,
    ) -> Result<Page<Transfer, TransferId>, DomainError> {
        let state = self.state()?;
        let items = state.transfers.values().rev().filter(|t| {
            &t.tenant == tenant
                && (t.debit_account_id == *account || t.credit_account_id == *account)
                && before.is_none_or(|b| t.id < b)
        });
        Ok(page(items.cloned(), limit, |t| t.id))
    }
}
