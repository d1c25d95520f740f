//! What the domain needs from the outside world. Adapters implement these traits for
//! DynamoDB and KMS; in-memory versions serve unit tests and benchmarks.

use async_trait::async_trait;

use crate::account::Account;
use crate::auth::TenantId;
use crate::cursor::CursorKey;
use crate::error::DomainError;
use crate::ids::AccountId;

/// One page of a listing, newest first, with the position after its last item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T, P> {
    pub items: Vec<T>,
    pub next: Option<P>,
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
