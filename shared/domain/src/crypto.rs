//! The envelope-encryption port: what a ciphertext is bound to, and the cipher trait.

use std::fmt;

use async_trait::async_trait;

use crate::auth::TenantId;
use crate::error::DomainError;
use crate::secret::Secret;

/// Tenant used in the context of records that belong to no tenant (connector secrets).
pub const SYSTEM_TENANT: &str = "-";

/// Binds a ciphertext to one field of one record of one tenant. Decrypting under any
/// other context fails, so a ciphertext copied into another record, field or tenant is
/// useless.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SealContext {
    tenant: String,
    kind: &'static str,
    record_id: String,
    field: &'static str,
}

impl SealContext {
    pub fn new(tenant: &TenantId, kind: &'static str, record_id: impl fmt::Display, field: &'static str) -> Self {
        Self {
            tenant: tenant.as_str().to_owned(),
            kind,
            record_id: record_id.to_string(),
            field,
        }
    }

    /// For records that belong to no tenant, such as the connector configuration.
    pub fn system(kind: &'static str, record_id: impl fmt::Display, field: &'static str) -> Self {
        Self {
            tenant: SYSTEM_TENANT.to_owned(),
            kind,
            record_id: record_id.to_string(),
            field,
        }
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn record_id(&self) -> &str {
        &self.record_id
    }

    pub fn field(&self) -> &'static str {
        self.field
    }

    /// An unambiguous byte encoding (each part length-prefixed), for associated data.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for part in [self.tenant.as_str(), self.kind, self.record_id.as_str(), self.field] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// A sealed value in the adapters' versioned envelope format. Opaque to the domain.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(Vec<u8>);

impl Sealed {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// Envelope encryption. Implementations fail closed: any key-service failure is
/// `EncryptionUnavailable`, and there is no plaintext fallback.
#[async_trait]
pub trait Cipher: Send + Sync {
    async fn seal(&self, plaintext: &[u8], context: &SealContext) -> Result<Sealed, DomainError>;

    async fn open(&self, sealed: &Sealed, context: &SealContext) -> Result<Secret<Vec<u8>>, DomainError>;
}
