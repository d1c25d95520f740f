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

use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Whether any account was remembered unlimited: until one is, a lookup (two per
    /// transfer) costs no lock.
    any_unlimited: AtomicBool,
}

impl Default for RecentTransfers {
    fn default() -> Self {
        Self {
            transfers: Recent::new(CAPACITY),
            unlimited: Recent::new(ACCOUNTS_CAPACITY),
            any_unlimited: AtomicBool::new(false),
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
        self.any_unlimited.load(Ordering::Relaxed)
            && self
                .unlimited
                .get(&id)
                .is_some_and(|(owner, unlimited)| &owner == tenant && unlimited)
    }

    /// Remembers whether `account` is unlimited, as read or written.
    pub fn remember_account(&self, account: &Account) {
        let unlimited = account.overdraft_limit.is_unlimited();
        // Bounded accounts are the rule: only a change of belief is worth an entry.
        if unlimited {
            self.any_unlimited.store(true, Ordering::Relaxed);
        }
        if unlimited || (self.any_unlimited.load(Ordering::Relaxed) && self.unlimited.get(&account.id).is_some()) {
            self.unlimited
                .remember(account.id, (account.tenant.clone(), unlimited), |_| false);
        }
    }
}

#[cfg(test)]
mod tests {
    use fintx_domain::account::{Metadata, NewAccount, OverdraftLimit};
    use fintx_domain::clock::Timestamp;
    use fintx_domain::money::Currency;

    use super::*;

    #[test]
    fn it_believes_an_account_unlimited_only_for_its_tenant_and_until_read_bounded() {
        let usd = Currency::parse("USD").unwrap();
        let t1 = TenantId::parse("t1").unwrap();
        let id = AccountId::parse("acct_01m8bjxqy6bgk28sv0j8bs2264").unwrap();
        let account = |limit: &str| {
            Account::open(
                id,
                t1.clone(),
                NewAccount {
                    currency: usd,
                    holder: None,
                    name: None,
                    overdraft_limit: OverdraftLimit::parse(limit, usd).unwrap(),
                    metadata: Metadata::default(),
                },
                None,
                Timestamp::from_unix_ms(1_700_000_000_000).unwrap(),
            )
        };
        let recent = RecentTransfers::default();
        recent.remember_account(&account("0"));
        assert!(!recent.is_unlimited(&t1, id));
        recent.remember_account(&account("unlimited"));
        assert!(recent.is_unlimited(&t1, id));
        assert!(!recent.is_unlimited(&TenantId::parse("t2").unwrap(), id));
        recent.remember_account(&account("10"));
        assert!(!recent.is_unlimited(&t1, id), "read bounded again");
    }
}
