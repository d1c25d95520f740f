//! Accounts and their balances (SPEC §6).

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::auth::TenantId;
use crate::clock::Timestamp;
use crate::crypto::Sealed;
use crate::error::DomainError;
use crate::holder::{Holder, MaskedHolder};
use crate::ids::AccountId;
use crate::money::{Amount, Currency};
use crate::transfer::HeldEntry;

pub const NAME_MAX_CHARS: usize = 200;
pub const METADATA_MAX_KEYS: usize = 20;
pub const METADATA_KEY_MAX_CHARS: usize = 40;
pub const METADATA_VALUE_MAX_CHARS: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountKind {
    /// A tenant's customer account, bound by its overdraft limit.
    Customer,
    /// A connector's settlement account for a tenant and currency; it has no limit
    /// because its balance mirrors money in flight at the bank.
    Clearing,
}

impl AccountKind {
    /// Whether every account of this kind keeps its balance spread over several items
    /// (SPEC §10). Customer accounts spread when their limit is unlimited
    /// ([`Account::spreads`]).
    pub const fn spreads(self) -> bool {
        matches!(self, AccountKind::Clearing)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            AccountKind::Customer => "customer",
            AccountKind::Clearing => "clearing",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "customer" => Some(AccountKind::Customer),
            "clearing" => Some(AccountKind::Clearing),
            _ => None,
        }
    }
}

/// How far below zero an account's available balance may go (SPEC §6): a bound, or none
/// (`"unlimited"`, an account such as a tenant's operating account whose balance is
/// spread so that it is never a single hot item, SPEC §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverdraftLimit {
    Bounded(Amount),
    Unlimited,
}

/// The wire value of an unlimited overdraft limit.
pub const UNLIMITED: &str = "unlimited";

impl OverdraftLimit {
    pub const ZERO: OverdraftLimit = OverdraftLimit::Bounded(Amount::ZERO);

    /// `"unlimited"` or a non-negative decimal string in the currency's exponent.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, DomainError> {
        if text == UNLIMITED {
            return Ok(OverdraftLimit::Unlimited);
        }
        Amount::parse(text, currency).map(OverdraftLimit::Bounded)
    }

    pub fn bound(self) -> Option<Amount> {
        match self {
            OverdraftLimit::Bounded(amount) => Some(amount),
            OverdraftLimit::Unlimited => None,
        }
    }

    pub fn is_unlimited(self) -> bool {
        self == OverdraftLimit::Unlimited
    }
}

/// The spending headroom stored for an unlimited account: larger than any balance can
/// reach (amounts have at most 15 integer digits), so a cover condition always holds.
pub fn unlimited_headroom() -> Decimal {
    Decimal::from_i128_with_scale(1_000_000_000_000_000_000_000_000, 0)
}

/// How a store keeps a spread account, as it read it: its own item's version and each
/// balance slot's share and version. Writing the account whole (a new setting or
/// status) gathers the slots into its own item, on condition that none moved since.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredParts {
    pub own_version: u64,
    pub slots: Vec<SlotPart>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotPart {
    pub slot: u16,
    pub balance: Balance,
    pub version: u64,
}

/// Where an account is in its lifecycle (SPEC §6): `open → frozen → open`,
/// `open | frozen → closed` (final).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    Open,
    /// Refuses new debits and the posting of its holds; credits and voids still apply.
    Frozen,
    /// Refuses every new transfer to or from it; stays readable with its history.
    Closed,
}

impl AccountStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Open => "open",
            AccountStatus::Frozen => "frozen",
            AccountStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(AccountStatus::Open),
            "frozen" => Some(AccountStatus::Frozen),
            "closed" => Some(AccountStatus::Closed),
            _ => None,
        }
    }
}

/// Free-form string pairs a client attaches to a record. Bounded, and never interpreted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub fn parse(pairs: BTreeMap<String, String>) -> Result<Self, DomainError> {
        if pairs.len() > METADATA_MAX_KEYS {
            return Err(DomainError::invalid_request(format!(
                "metadata may hold at most {METADATA_MAX_KEYS} keys"
            )));
        }
        for (key, value) in &pairs {
            let key_chars = key.chars().count();
            if key_chars == 0 || key_chars > METADATA_KEY_MAX_CHARS {
                return Err(DomainError::invalid_request(format!(
                    "metadata keys are 1 to {METADATA_KEY_MAX_CHARS} characters"
                )));
            }
            if value.chars().count() > METADATA_VALUE_MAX_CHARS {
                return Err(DomainError::invalid_request(format!(
                    "metadata values are at most {METADATA_VALUE_MAX_CHARS} characters"
                )));
            }
        }
        Ok(Self(pairs))
    }

    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// A display name for an account. Bounded and free of control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountName(String);

impl AccountName {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let chars = text.chars().count();
        if chars == 0 || chars > NAME_MAX_CHARS || text.chars().any(char::is_control) {
            return Err(DomainError::invalid_request(format!(
                "name is 1 to {NAME_MAX_CHARS} printable characters"
            )));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Balances of an account. `posted` is signed (credits − debits); the pending totals are
/// the sums of open holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balance {
    pub posted: Decimal,
    pub pending_debits: Decimal,
    pub pending_credits: Decimal,
}

impl Balance {
    pub const ZERO: Balance = Balance {
        posted: Decimal::ZERO,
        pending_debits: Decimal::ZERO,
        pending_credits: Decimal::ZERO,
    };

    /// These balances moved by `change`, every figure checked.
    pub fn plus(&self, change: &Balance) -> Result<Balance, DomainError> {
        Ok(Balance {
            posted: self.posted.checked_add(change.posted).ok_or(DomainError::Overflow)?,
            pending_debits: self
                .pending_debits
                .checked_add(change.pending_debits)
                .ok_or(DomainError::Overflow)?,
            pending_credits: self
                .pending_credits
                .checked_add(change.pending_credits)
                .ok_or(DomainError::Overflow)?,
        })
    }

    /// These balances with `change` taken back, every figure checked.
    pub fn minus(&self, change: &Balance) -> Result<Balance, DomainError> {
        Ok(Balance {
            posted: self.posted.checked_sub(change.posted).ok_or(DomainError::Overflow)?,
            pending_debits: self
                .pending_debits
                .checked_sub(change.pending_debits)
                .ok_or(DomainError::Overflow)?,
            pending_credits: self
                .pending_credits
                .checked_sub(change.pending_credits)
                .ok_or(DomainError::Overflow)?,
        })
    }

    /// `posted − pending_debits`: what the account can still spend before its limit.
    pub fn available(&self) -> Result<Decimal, DomainError> {
        self.posted
            .checked_sub(self.pending_debits)
            .ok_or(DomainError::Overflow)
    }
}

/// What a client asks for when it opens an account, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    pub currency: Currency,
    pub holder: Option<Holder>,
    pub name: Option<AccountName>,
    pub overdraft_limit: OverdraftLimit,
    pub metadata: Metadata,
}

/// A holder as stored: the sealed details and the mask that may be shown to anyone
/// with `ledger:read`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHolder {
    pub sealed: Sealed,
    pub masked: MaskedHolder,
}

/// The record kind and field a holder's ciphertext is bound to.
pub const HOLDER_SEAL_KIND: &str = "account";
pub const HOLDER_SEAL_FIELD: &str = "holder";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub tenant: TenantId,
    pub currency: Currency,
    pub name: Option<AccountName>,
    pub holder: Option<StoredHolder>,
    pub overdraft_limit: OverdraftLimit,
    pub balance: Balance,
    pub metadata: Metadata,
    pub kind: AccountKind,
    pub status: AccountStatus,
    /// Holds on this account that may expire, while storage still counts them.
    pub holds: Vec<HeldEntry>,
    pub created_at: Timestamp,
    pub version: u64,
    /// Set by a store whose reads sum balance slots (SPEC §10): the account has slots
    /// (a clearing account, or one that is or was unlimited), as read.
    pub parts: Option<Box<StoredParts>>,
}

impl Account {
    /// The account as it stands at `now`: a hold past its `expires_at` no longer counts
    /// in the pending balances, whether or not storage has released it yet (SPEC §6).
    pub fn at(&self, now: Timestamp) -> Account {
        let mut current = self.clone();
        current.holds.retain(|h| h.expires_at > now);
        for expired in self.holds.iter().filter(|h| h.expires_at <= now) {
            let side = if expired.debit {
                &mut current.balance.pending_debits
            } else {
                &mut current.balance.pending_credits
            };
            // Stored pending amounts include every unreleased hold, so this stays ≥ 0.
            *side = side.checked_sub(expired.amount).unwrap_or(*side);
        }
        current
    }

    /// The holds past their `expires_at` that storage still counts.
    pub fn expired_holds(&self, now: Timestamp) -> impl Iterator<Item = &HeldEntry> {
        self.holds.iter().filter(move |h| h.expires_at <= now)
    }

    /// `available + overdraft_limit`: how much more the account may be debited. A debit
    /// of `amount` is covered while `amount ≤ headroom`; an unlimited account's is
    /// [`unlimited_headroom`].
    pub fn headroom(&self) -> Result<Decimal, DomainError> {
        match self.overdraft_limit {
            OverdraftLimit::Bounded(limit) => self
                .balance
                .available()?
                .checked_add(limit.value())
                .ok_or(DomainError::Overflow),
            OverdraftLimit::Unlimited => Ok(unlimited_headroom()),
        }
    }

    /// Whether the account keeps its balance spread over balance slots (SPEC §10): a
    /// clearing account, or a customer account with no lower bound.
    pub fn spreads(&self) -> bool {
        self.kind.spreads() || self.overdraft_limit.is_unlimited()
    }

    /// A new customer account: zero balances, version 1. The holder in `request` must
    /// already be sealed into `holder` by the caller; its plaintext is dropped here.
    pub fn open(
        id: AccountId,
        tenant: TenantId,
        request: NewAccount,
        holder: Option<StoredHolder>,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            tenant,
            currency: request.currency,
            name: request.name,
            holder,
            overdraft_limit: request.overdraft_limit,
            balance: Balance::ZERO,
            metadata: request.metadata,
            kind: AccountKind::Customer,
            status: AccountStatus::Open,
            holds: Vec::new(),
            created_at: now,
            version: 1,
            parts: None,
        }
    }
}

impl Account {
    /// Whether the account may be debited now: only an open one (SPEC §6).
    pub fn check_debitable(&self) -> Result<(), DomainError> {
        match self.status {
            AccountStatus::Open => Ok(()),
            AccountStatus::Frozen => Err(DomainError::AccountFrozen),
            AccountStatus::Closed => Err(DomainError::AccountClosed),
        }
    }

    /// Whether the account may be credited now: anything but a closed one.
    pub fn check_creditable(&self) -> Result<(), DomainError> {
        match self.status {
            AccountStatus::Closed => Err(DomainError::AccountClosed),
            AccountStatus::Open | AccountStatus::Frozen => Ok(()),
        }
    }

    /// The clearing account of a connector for a tenant and currency: money in flight at
    /// the bank. It has no overdraft limit; its balance mirrors the bank's position.
    pub fn clearing(id: AccountId, tenant: TenantId, currency: Currency, connector: &str, now: Timestamp) -> Self {
        Self {
            id,
            tenant,
            currency,
            name: AccountName::parse(&format!("{connector} clearing")).ok(),
            holder: None,
            overdraft_limit: OverdraftLimit::ZERO,
            balance: Balance::ZERO,
            metadata: Metadata::default(),
            kind: AccountKind::Clearing,
            status: AccountStatus::Open,
            holds: Vec::new(),
            created_at: now,
            version: 1,
            parts: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_bounded() {
        let many: BTreeMap<_, _> = (0..21).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(Metadata::parse(many).is_err());
        let long_value = BTreeMap::from([("k".to_owned(), "x".repeat(501))]);
        assert!(Metadata::parse(long_value).is_err());
        let empty_key = BTreeMap::from([(String::new(), "v".to_owned())]);
        assert!(Metadata::parse(empty_key).is_err());
        assert!(Metadata::parse(BTreeMap::from([("k".to_owned(), "v".to_owned())])).is_ok());
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(AccountName::parse("Operating").is_ok());
        assert!(AccountName::parse("").is_err());
        assert!(AccountName::parse("a\u{0}b").is_err());
        assert!(AccountName::parse(&"x".repeat(201)).is_err());
    }

    #[test]
    fn available_subtracts_pending_debits_only() {
        let b = Balance {
            posted: Decimal::new(1000, 2),
            pending_debits: Decimal::new(300, 2),
            pending_credits: Decimal::new(5000, 2),
        };
        assert_eq!(b.available().unwrap(), Decimal::new(700, 2));
    }
}
