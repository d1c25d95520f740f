//! Payments to banks through a connector (SPEC §6, §7): a pending transfer from the
//! customer's account to the connector's clearing account, settled, failed or returned
//! by the bank's callbacks.

use crate::auth::TenantId;
use crate::clock::Timestamp;
use crate::crypto::Sealed;
use crate::error::DomainError;
use crate::holder::MaskedHolder;
use crate::ids::{AccountId, PaymentId, TransferId};
use crate::money::{Amount, Currency};

pub const REFERENCE_MAX_CHARS: usize = 140;
pub const COUNTERPARTY_SEAL_KIND: &str = "payment";
pub const COUNTERPARTY_SEAL_FIELD: &str = "counterparty";

/// A connector name: lower-case letters, digits and dashes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorName(String);

impl ConnectorName {
    pub fn parse(text: &str) -> Option<Self> {
        let ok = (1..=40).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Settled,
    Failed,
    Returned,
}

impl PaymentStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Settled => "settled",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Returned => "returned",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            PaymentStatus::Pending,
            PaymentStatus::Settled,
            PaymentStatus::Failed,
            PaymentStatus::Returned,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub tenant: TenantId,
    pub account_id: AccountId,
    pub transfer_id: TransferId,
    pub connector: ConnectorName,
    pub counterparty: Sealed,
    pub counterparty_masked: MaskedHolder,
    pub amount: Amount,
    pub currency: Currency,
    pub reference: Option<String>,
    pub status: PaymentStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

/// The bank-driven transitions: `pending → settled | failed`, `settled → returned`.
/// Anything else (settling a failed payment, returning an unsettled one) is
/// `invalid_transition`; repeating the transition a payment already made is `Ok(false)`.
pub fn transition(payment: &Payment, to: PaymentStatus) -> Result<bool, DomainError> {
    use PaymentStatus::*;
    match (payment.status, to) {
        (from, to) if from == to => Ok(false),
        (Pending, Settled) | (Pending, Failed) | (Settled, Returned) => Ok(true),
        (from, to) => Err(DomainError::InvalidTransition {
            from: from.as_str(),
            action: match to {
                Settled => "settle",
                Failed => "fail",
                Returned => "return",
                Pending => "reopen",
            },
        }),
    }
}

pub fn parse_reference(text: Option<String>) -> Result<Option<String>, DomainError> {
    match text {
        Some(t) if t.is_empty() || t.chars().count() > REFERENCE_MAX_CHARS || t.chars().any(char::is_control) => Err(
            DomainError::invalid_request(format!("reference is 1 to {REFERENCE_MAX_CHARS} printable characters")),
        ),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_names_are_plain() {
        assert!(ConnectorName::parse("demo-bank").is_some());
        assert!(ConnectorName::parse("Demo").is_none());
        assert!(ConnectorName::parse("").is_none());
        assert!(ConnectorName::parse("a#b").is_none());
    }
}
