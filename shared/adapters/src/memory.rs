//! In-memory stores with the same contract as the DynamoDB adapter, for unit tests and
//! benchmarks.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use fintx_domain::account::Account;
use fintx_domain::auth::TenantId;
use fintx_domain::ids::AccountId;
use fintx_domain::ports::{AccountStore, Page};
use fintx_domain::DomainError;

#[derive(Default)]
pub struct MemoryStore {
    accounts: Mutex<BTreeMap<AccountId, Account>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn accounts(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<AccountId, Account>>, DomainError> {
        self.accounts.lock().map_err(|_| DomainError::Unavailable)
    }
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn insert_account(&self, account: &Account) -> Result<(), DomainError> {
        let mut accounts = self.accounts()?;
        if accounts.contains_key(&account.id) {
            return Err(DomainError::Unavailable);
        }
        accounts.insert(account.id, account.clone());
        Ok(())
    }

    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> Result<Option<Account>, DomainError> {
        Ok(self.accounts()?.get(id).filter(|a| &a.tenant == tenant).cloned())
    }

    async fn list_accounts(
        &self,
        tenant: &TenantId,
        limit: usize,
        before: Option<AccountId>,
    ) -> Result<Page<Account, AccountId>, DomainError> {
        let accounts = self.accounts()?;
        let mut items: Vec<Account> = accounts
            .values()
            .rev()
            .filter(|a| &a.tenant == tenant && before.is_none_or(|b| a.id < b))
            .take(limit + 1)
            .cloned()
            .collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|a| a.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }
}
