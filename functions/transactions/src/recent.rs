//! Transfers this execution environment wrote or read lately.
//!
//! A post, void or reversal names only the transfer; the accounts it moves and the amount
//! are in the transfer's record. When the environment has seen that record, the route
//! plans its write from it and the write's conditions check that the transfer is still
//! the version remembered, so the common path (the hold created here, then posted here) is
//! one `TransactWriteItems` (SPEC §10). The memory is a hint and never an authority: a
//! stale entry costs a refused write and a read, not a wrong effect, and an entry is used
//! only for its own tenant.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use fintx_domain::auth::TenantId;
use fintx_domain::ids::TransferId;
use fintx_domain::transfer::Transfer;
use lru::LruCache;

/// Transfers remembered per environment: about 1 KiB each at most, so a few MiB.
pub const CAPACITY: usize = 4096;

/// The latest version of each transfer seen, least recently used forgotten first.
pub struct RecentTransfers {
    transfers: Mutex<LruCache<TransferId, Transfer>>,
}

impl Default for RecentTransfers {
    fn default() -> Self {
        Self::with_capacity(NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN))
    }
}

impl RecentTransfers {
    pub fn with_capacity(capacity: NonZeroUsize) -> Self {
        Self {
            transfers: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The transfer as last seen, if it is the tenant's.
    pub fn get(&self, tenant: &TenantId, id: TransferId) -> Option<Transfer> {
        let mut transfers = self.transfers.lock().ok()?;
        transfers.get(&id).filter(|t| &t.tenant == tenant).cloned()
    }

    /// Remembers `transfer` unless a later version of it is already known.
    pub fn remember(&self, transfer: &Transfer) {
        let Ok(mut transfers) = self.transfers.lock() else {
            return;
        };
        match transfers.get_mut(&transfer.id) {
            Some(known) if known.version >= transfer.version => {}
            Some(known) => *known = transfer.clone(),
            None => {
                transfers.put(transfer.id, transfer.clone());
            }
        }
    }

    pub fn len(&self) -> usize {
        self.transfers.lock().map(|t| t.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
