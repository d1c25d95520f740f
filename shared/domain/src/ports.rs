//! What the domain needs from the outside world. Adapters implement these traits for
//! DynamoDB and KMS; in-memory versions serve unit tests and benchmarks.

use async_trait::async_trait;

use crate::account::Account;
use crate::auth::TenantId;
use crate::cursor::CursorKey;
use crate::error::DomainError;
use crate::idempotency::IdempotencyRecord;
use crate::ids::{AccountId, PaymentId, TransferId};
use crate::money::Currency;
use crate::payment::{ConnectorName, Payment};
use crate::transfer::{AccountDelta, Transfer};

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

/// Identifies the clearing account of a connector for a tenant and currency.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClearingKey {
    pub tenant: TenantId,
    pub connector: ConnectorName,
    pub currency: Currency,
}

/// What one money-moving request reads, in one round trip, before it decides.
#[derive(Clone, Debug, Default)]
pub struct Reads {
    pub idempotency: Option<String>,
    pub accounts: Vec<AccountId>,
    pub transfer: Option<TransferId>,
    pub payment: Option<PaymentId>,
    pub clearing: Option<ClearingKey>,
}

/// The state a request decides on. Records of other tenants read as absent.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub idempotency: Option<IdempotencyRecord>,
    pub accounts: Vec<Option<Account>>,
    pub transfer: Option<Transfer>,
    pub payment: Option<Payment>,
    pub clearing: Option<AccountId>,
}

/// Everything one request changes, committed atomically or not at all. Every part
/// carries its condition: new records must not exist, updated records must still be at
/// the version that was read, and debits with `cover` must still be covered.
#[derive(Clone, Debug, Default)]
pub struct LedgerWrite {
    pub idempotency: Option<IdempotencyRecord>,
    pub deltas: Vec<AccountDelta>,
    pub new_accounts: Vec<Account>,
    pub new_clearing: Option<(ClearingKey, AccountId)>,
    pub new_transfers: Vec<Transfer>,
    pub transfer_updates: Vec<(Transfer, u64)>,
    pub new_payments: Vec<Payment>,
    pub payment_updates: Vec<(Payment, u64)>,
}

/// Why a store refused a write; nothing of it was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The idempotency key was recorded meanwhile: replay it.
    IdempotencyRecorded,
    /// A transaction still in flight holds the idempotency record: the first request
    /// with this key is running.
    IdempotencyInFlight,
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

    /// Transfers touching an account (debit or credit), newest first.
    async fn list_account_transfers(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        limit: usize,
        before: Option<TransferId>,
    ) -> Result<Page<Transfer, TransferId>, DomainError>;
}
