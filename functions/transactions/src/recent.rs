//! Transfers and account limits this execution environment wrote or read lately.
//!
//! A post, void or reversal names only the transfer; the accounts it moves and the amount
//! are in the transfer's record. When the environment has seen that record, the route
//! plans its write from it and the write's conditions check that the transfer is still
//! the version remembered, so the common path (the hold created here, then posted here) is
//! one `TransactWriteItems` (SPEC §10). An entry is used only for its own tenant.
//!
//! A transfer names its accounts but not their limits: an unlimited account's balance is
//! spread over balance slots, so a write planned without a read must know which accounts
//! are unlimited to move their slots. The environment remembers the limits it read; a
//! wrong belief is refused by the write's conditions, then read and remembered.

use fintx_adapters::recent::Recent;
use fintx_domain::account::Account;
use fintx_domain::auth::TenantId;
use fintx_domain::ids::{AccountId, TransferId};
use fintx_domain::transfer::Transfer;

/// Transfers remembered per environment: about 1 KiB each at most, so a few MiB.
pub const CAPACITY: usize = 4096;

/// Account limits remembered per environment: an id, a tenant and a flag each.
pub const ACCOUNTS_CAPACITY: usize = 4096;

/// The latest version of each transfer seen, and which accounts were unlimited.
pub struct RecentTransfers {
    transfers: Recent<TransferId, Transfer>,
    unlimited: Recent<AccountId, (TenantId, bool)>,
}

impl Default for RecentTransfers {
    fn default() -> Self {
        Self {
            transfers: Recent::new(CAPACITY),
            unlimited: Recent::new(ACCOUNTS_CAPACITY),
        }
    }
}

impl RecentTransfers {
    /// The transfer as last seen, if it is the tenant's.
    pub fn get(&self, tenant: &TenantId, id: TransferId) -> Option<Transfer> {
        self.transfers.get(&id).filter(|t| &t.tenant == tenant)
    }

    /// Remembers `transfer` unless a later version of it is already known.
    pub fn remember(&self, transfer: &Transfer) {
        self.transfers
            .remember(transfer.id, transfer.clone(), |known| known.version >= transfer.version);
    }

    /// Whether the tenant's account `id` was unlimited when last read here.
    pub fn is_unlimited(&self, tenant: &TenantId, id: AccountId) -> bool {
        self.unlimited
            .get(&id)
            .is_some_and(|(owner, unlimited)| &owner == tenant && unlimited)
    }

    /// Remembers whether `account` is unlimited, as read or written.
    pub fn remember_account(&self, account: &Account) {
        let unlimited = account.overdraft_limit.is_unlimited();
        // Bounded accounts are the rule: only a change of belief is worth an entry.
        if unlimited || self.unlimited.get(&account.id).is_some() {
            self.unlimited
                .remember(account.id, (account.tenant.clone(), unlimited), |_| false);
        }
    }
}
