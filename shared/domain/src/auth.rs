//! Who is calling: a tenant and the scopes its token grants (SPEC §1).

use std::collections::BTreeSet;
use std::fmt;

use crate::error::DomainError;

/// A tenant identifier from a verified token. Restricted to a safe alphabet because it
/// becomes part of storage keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let ok = (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(DomainError::Unauthenticated)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    LedgerRead,
    LedgerWrite,
    PiiRead,
    OpsRead,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::LedgerRead => "ledger:read",
            Scope::LedgerWrite => "ledger:write",
            Scope::PiiRead => "pii:read",
            Scope::OpsRead => "ops:read",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Scope::LedgerRead, Scope::LedgerWrite, Scope::PiiRead, Scope::OpsRead]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// The verified caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    scopes: BTreeSet<Scope>,
    /// The token subject, for audit lines; never used for authorisation.
    pub subject: Option<String>,
}

impl Principal {
    /// Builds a principal from the `tenant_id` and space-separated `scope` claims.
    /// Scopes fintx does not know are ignored.
    pub fn from_claims(tenant: Option<&str>, scope: Option<&str>, subject: Option<&str>) -> Result<Self, DomainError> {
        let tenant = TenantId::parse(tenant.ok_or(DomainError::Unauthenticated)?)?;
        let scope = scope.ok_or(DomainError::Unauthenticated)?;
        let scopes = scope.split_ascii_whitespace().filter_map(Scope::parse).collect();
        Ok(Self {
            tenant,
            scopes,
            subject: subject.map(|s| s.chars().take(128).collect()),
        })
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn require(&self, scope: Scope) -> Result<(), DomainError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(scope.as_str()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_without_tenant_or_scope_are_unauthenticated() {
        assert_eq!(
            Principal::from_claims(None, Some("ledger:read"), None),
            Err(DomainError::Unauthenticated)
        );
        assert_eq!(
            Principal::from_claims(Some("t1"), None, None),
            Err(DomainError::Unauthenticated)
        );
        assert_eq!(
            Principal::from_claims(Some("t#1"), Some("ledger:read"), None),
            Err(DomainError::Unauthenticated)
        );
    }

    #[test]
    fn scopes_are_checked_one_by_one() {
        let p = Principal::from_claims(Some("t1"), Some("ledger:read  other"), None).unwrap();
        assert!(p.require(Scope::LedgerRead).is_ok());
        assert_eq!(
            p.require(Scope::LedgerWrite),
            Err(DomainError::Forbidden("ledger:write"))
        );
    }
}
