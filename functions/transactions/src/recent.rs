//! Transfers this execution environment wrote or read lately.
//!
//! A post, void or reversal names only the transfer; the accounts it moves and the amount
//! are in the transfer's record. When the environment has seen that record, the route
//! plans its write from it and the write's conditions check that the transfer is still
//! the version remembered, so the common path (the hold created here, then posted here) is
//! one `TransactWriteItems` (SPEC §10). An entry is used only for its own tenant.

use fintx_adapters::recent::Recent;
use fintx_domain::auth::TenantId;
use fintx_domain::ids::TransferId;
use fintx_domain::transfer::Transfer;

/// Transfers remembered per environment: about 1 KiB each at most, so a few MiB.
pub const CAPACITY: usize = 4096;

/// The latest version of each transfer seen.
pub struct RecentTransfers(Recent<TransferId, Transfer>);

impl Default for RecentTransfers {
    fn default() -> Self {
        Self(Recent::new(CAPACITY))
    }
}

impl RecentTransfers {
    /// The transfer as last seen, if it is the tenant's.
    pub fn get(&self, tenant: &TenantId, id: TransferId) -> Option<Transfer> {
        self.0.get(&id).filter(|t| &t.tenant == tenant)
    }

    /// Remembers `transfer` unless a later version of it is already known.
    pub fn remember(&self, transfer: &Transfer) {
        self.0
            .remember(transfer.id, transfer.clone(), |known| known.version >= transfer.version);
    }
}
