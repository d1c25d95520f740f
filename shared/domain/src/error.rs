//! Every way a fintx request can fail, with one table from failure to HTTP status and
//! stable machine code (SPEC §4).

use std::fmt;

/// The stable machine codes of SPEC §4. Clients match on these; never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidAmount,
    InvalidCurrency,
    UnknownField,
    PayloadTooLarge,
    Unauthenticated,
    Forbidden,
    NotFound,
    AccountNotFound,
    CurrencyMismatch,
    SameAccount,
    InsufficientFunds,
    InvalidTransition,
    ReversalExceedsAmount,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    IdempotencyKeyInUse,
    ManagedByPayment,
    ClearingAccount,
    VersionConflict,
    LimitBelowUsage,
    AccountFrozen,
    AccountClosed,
    AccountNotEmpty,
    HoldExpired,
    InvalidCursor,
    InvalidSignature,
    TimestampOutOfTolerance,
    UnknownConnector,
    EncryptionUnavailable,
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 31] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidAmount,
        ErrorCode::InvalidCurrency,
        ErrorCode::UnknownField,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::AccountNotFound,
        ErrorCode::CurrencyMismatch,
        ErrorCode::SameAccount,
        ErrorCode::InsufficientFunds,
        ErrorCode::InvalidTransition,
        ErrorCode::ReversalExceedsAmount,
        ErrorCode::IdempotencyKeyMissing,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::IdempotencyKeyInUse,
        ErrorCode::ManagedByPayment,
        ErrorCode::ClearingAccount,
        ErrorCode::VersionConflict,
        ErrorCode::LimitBelowUsage,
        ErrorCode::AccountFrozen,
        ErrorCode::AccountClosed,
        ErrorCode::AccountNotEmpty,
        ErrorCode::HoldExpired,
        ErrorCode::InvalidCursor,
        ErrorCode::InvalidSignature,
        ErrorCode::TimestampOutOfTolerance,
        ErrorCode::UnknownConnector,
        ErrorCode::EncryptionUnavailable,
        ErrorCode::Unavailable,
    ];

    /// `(HTTP status, code, title)`: the one place where a failure becomes HTTP.
    pub const fn describe(self) -> (u16, &'static str, &'static str) {
        use ErrorCode::*;
        match self {
            InvalidRequest => (400, "invalid_request", "The request is not valid"),
            InvalidAmount => (400, "invalid_amount", "The amount is not valid"),
            InvalidCurrency => (400, "invalid_currency", "The currency is not supported"),
            UnknownField => (
                400,
                "unknown_field",
                "The request has a field this route does not accept",
            ),
            PayloadTooLarge => (413, "payload_too_large", "The request body is too large"),
            Unauthenticated => (401, "unauthenticated", "Authentication is required"),
            Forbidden => (403, "forbidden", "The credentials lack a required scope"),
            NotFound => (404, "not_found", "Not found"),
            AccountNotFound => (404, "account_not_found", "Account not found"),
            CurrencyMismatch => (422, "currency_mismatch", "The currencies do not match"),
            SameAccount => (422, "same_account", "Debit and credit account are the same"),
            InsufficientFunds => (422, "insufficient_funds", "Insufficient funds"),
            InvalidTransition => (409, "invalid_transition", "The record cannot make that transition"),
            ReversalExceedsAmount => (422, "reversal_exceeds_amount", "The reversal exceeds the posted amount"),
            IdempotencyKeyMissing => (400, "idempotency_key_missing", "An Idempotency-Key header is required"),
            IdempotencyKeyReused => (
                422,
                "idempotency_key_reused",
                "The idempotency key was used for a different request",
            ),
            IdempotencyKeyInUse => (
                409,
                "idempotency_key_in_use",
                "A request with this idempotency key is in progress",
            ),
            ManagedByPayment => (
                409,
                "managed_by_payment",
                "The transfer belongs to a payment and changes only through it",
            ),
            ClearingAccount => (
                422,
                "clearing_account",
                "Clearing accounts move only through payments and bank webhooks",
            ),
            VersionConflict => (
                409,
                "version_conflict",
                "The record changed since the version the request names",
            ),
            LimitBelowUsage => (
                422,
                "limit_below_usage",
                "The account already uses more than the new limit allows",
            ),
            AccountFrozen => (422, "account_frozen", "The account is frozen"),
            AccountClosed => (422, "account_closed", "The account is closed"),
            AccountNotEmpty => (
                422,
                "account_not_empty",
                "The account still has a balance or pending amounts",
            ),
            HoldExpired => (409, "hold_expired", "The hold has expired"),
            InvalidCursor => (400, "invalid_cursor", "The cursor is not valid"),
            InvalidSignature => (401, "invalid_signature", "The webhook signature does not verify"),
            TimestampOutOfTolerance => (
                401,
                "timestamp_out_of_tolerance",
                "The webhook timestamp is too old or too new",
            ),
            UnknownConnector => (404, "unknown_connector", "Unknown connector"),
            EncryptionUnavailable => (503, "encryption_unavailable", "Encryption is temporarily unavailable"),
            Unavailable => (503, "unavailable", "The service is temporarily unavailable"),
        }
    }

    pub const fn status(self) -> u16 {
        self.describe().0
    }

    pub const fn as_str(self) -> &'static str {
        self.describe().1
    }

    pub const fn title(self) -> &'static str {
        self.describe().2
    }

    /// Whether retrying the same request may succeed. Transient outcomes are never
    /// recorded under an idempotency key or a webhook's dedup record.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::EncryptionUnavailable | ErrorCode::Unavailable | ErrorCode::IdempotencyKeyInUse
        )
    }

    /// Whether this is a business outcome that is recorded under an idempotency key
    /// (SPEC §5): the refusals of a well-formed request (404, 409, 422). Malformed
    /// requests (400, 413), authentication failures and transient failures are not, so
    /// a corrected retry with the same key can succeed.
    pub const fn is_business_refusal(self) -> bool {
        !self.is_transient() && matches!(self.status(), 404 | 409 | 422)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a dependency did not serve a call. Kept with the failure so that retrying follows
/// from the cause, never from a guess: a write whose effect is unknown may have applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Refused for capacity before anything was done (throttling): nothing applied.
    Throttled,
    /// Sent, and no answer came in time or the connection broke: it may have applied.
    Timeout,
    /// The service failed while handling it (a 5xx, an unreadable answer): it may have
    /// applied.
    ServerError,
    /// Refused as sent (validation, a missing table or key, a request that could not be
    /// built): nothing applied, and sending it again cannot help.
    Refused,
}

impl Cause {
    /// Whether the call may have taken effect although it failed.
    pub const fn effect_unknown(self) -> bool {
        matches!(self, Cause::Timeout | Cause::ServerError)
    }

    /// Whether sending the same call again can succeed.
    pub const fn retryable(self) -> bool {
        !matches!(self, Cause::Refused)
    }
}

/// A failure with its code and a client-safe detail. Details are written by fintx, never
/// copied from input, so they cannot carry PII or secrets back out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidAmount(&'static str),
    #[error("the currency is not an ISO 4217 code with minor units")]
    InvalidCurrency,
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("the request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("no verified tenant and scope claims")]
    Unauthenticated,
    #[error("the scope `{0}` is required")]
    Forbidden(&'static str),
    #[error("no such resource")]
    NotFound,
    #[error("no such account")]
    AccountNotFound,
    #[error("the currencies do not match")]
    CurrencyMismatch,
    #[error("the debit and credit account are the same")]
    SameAccount,
    #[error("the debit account's available balance and overdraft limit do not cover the amount")]
    InsufficientFunds,
    #[error("cannot {action} a transfer that is {from}")]
    InvalidTransition { from: &'static str, action: &'static str },
    #[error("the reversals would exceed the posted amount")]
    ReversalExceedsAmount,
    #[error("the computation would overflow a balance")]
    Overflow,
    #[error("this request requires an Idempotency-Key header")]
    IdempotencyKeyMissing,
    #[error("the idempotency key was first used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this idempotency key is still in progress")]
    IdempotencyKeyInUse,
    #[error("the transfer belongs to a payment: it changes only through the payment's bank outcomes")]
    ManagedByPayment,
    #[error("a clearing account mirrors money at a bank and moves only through payments and bank webhooks")]
    ClearingAccount,
    #[error("the account's version is not the one the request names")]
    VersionConflict,
    #[error("the account's available balance is below the new overdraft limit's floor")]
    LimitBelowUsage,
    #[error("the account is frozen: it refuses debits and the posting of its holds")]
    AccountFrozen,
    #[error("the account is closed: it refuses every new transfer")]
    AccountClosed,
    #[error("only an account with a zero posted balance and no pending amounts can be closed")]
    AccountNotEmpty,
    #[error("the hold expired: its amount is released and it can no longer post")]
    HoldExpired,
    #[error("the cursor is malformed, tampered with or from another listing")]
    InvalidCursor,
    #[error("the signature does not verify")]
    InvalidSignature,
    #[error("the timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
    #[error("unknown connector")]
    UnknownConnector,
    #[error("encryption is temporarily unavailable")]
    EncryptionUnavailable,
    #[error("a dependency is temporarily unavailable")]
    Unavailable,
    /// A call to a dependency (DynamoDB, KMS) that did not succeed, with why: what may be
    /// sent again follows from the cause.
    #[error("a dependency is temporarily unavailable ({0:?})")]
    Dependency(Cause),
    /// The transfer at `index` of a batch refused the whole batch: its own failure, with
    /// its position (SPEC §6).
    #[error("{error}")]
    InBatch { index: usize, error: Box<DomainError> },
    /// A write whose balance changes do not sum to zero: a programming error, refused
    /// before it reaches storage and answered as opaque unavailability.
    #[error("a ledger write does not balance")]
    Unbalanced,
}

impl DomainError {
    pub fn code(&self) -> ErrorCode {
        use DomainError as E;
        match self {
            E::InvalidRequest(_) => ErrorCode::InvalidRequest,
            E::InvalidAmount(_) | E::Overflow => ErrorCode::InvalidAmount,
            E::InvalidCurrency => ErrorCode::InvalidCurrency,
            E::UnknownField(_) => ErrorCode::UnknownField,
            E::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            E::Unauthenticated => ErrorCode::Unauthenticated,
            E::Forbidden(_) => ErrorCode::Forbidden,
            E::NotFound => ErrorCode::NotFound,
            E::AccountNotFound => ErrorCode::AccountNotFound,
            E::CurrencyMismatch => ErrorCode::CurrencyMismatch,
            E::SameAccount => ErrorCode::SameAccount,
            E::InsufficientFunds => ErrorCode::InsufficientFunds,
            E::InvalidTransition { .. } => ErrorCode::InvalidTransition,
            E::ReversalExceedsAmount => ErrorCode::ReversalExceedsAmount,
            E::IdempotencyKeyMissing => ErrorCode::IdempotencyKeyMissing,
            E::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            E::IdempotencyKeyInUse => ErrorCode::IdempotencyKeyInUse,
            E::ManagedByPayment => ErrorCode::ManagedByPayment,
            E::ClearingAccount => ErrorCode::ClearingAccount,
            E::VersionConflict => ErrorCode::VersionConflict,
            E::LimitBelowUsage => ErrorCode::LimitBelowUsage,
            E::AccountFrozen => ErrorCode::AccountFrozen,
            E::AccountClosed => ErrorCode::AccountClosed,
            E::AccountNotEmpty => ErrorCode::AccountNotEmpty,
            E::HoldExpired => ErrorCode::HoldExpired,
            E::InvalidCursor => ErrorCode::InvalidCursor,
            E::InvalidSignature => ErrorCode::InvalidSignature,
            E::TimestampOutOfTolerance => ErrorCode::TimestampOutOfTolerance,
            E::UnknownConnector => ErrorCode::UnknownConnector,
            E::EncryptionUnavailable => ErrorCode::EncryptionUnavailable,
            E::Unavailable | E::Unbalanced | E::Dependency(_) => ErrorCode::Unavailable,
            E::InBatch { error, .. } => error.code(),
        }
    }

    pub fn invalid_request(detail: impl Into<String>) -> Self {
        DomainError::InvalidRequest(detail.into())
    }
}

/// An RFC 9457 problem document. 5xx problems carry only the generic title as detail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    /// The position of the refused transfer in a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl From<&DomainError> for Problem {
    fn from(error: &DomainError) -> Self {
        let code = error.code();
        let (status, code_str, title) = code.describe();
        let detail = if status >= 500 {
            title.to_owned()
        } else {
            error.to_string()
        };
        Problem {
            type_uri: format!("https://fintx.dev/problems/{code_str}"),
            title,
            status,
            detail,
            code: code_str,
            index: match error {
                DomainError::InBatch { index, .. } => Some(*index),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            assert!(code.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!((400..600).contains(&code.status()));
        }
    }

    #[test]
    fn server_errors_say_nothing_internal() {
        let problem = Problem::from(&DomainError::Unavailable);
        assert_eq!(problem.status, 503);
        assert_eq!(problem.detail, "The service is temporarily unavailable");
        let problem = Problem::from(&DomainError::UnknownField("colour".into()));
        assert_eq!((problem.status, problem.code), (400, "unknown_field"));
        assert!(problem.detail.contains("colour"));
    }
}
