//! Idempotency keys (SPEC §5): a retried request gets the first response again.

use sha2::{Digest, Sha256};

use crate::auth::TenantId;
use crate::error::DomainError;

/// How long a key is remembered. SPEC: at least 24 hours.
pub const RETENTION_SECONDS: i64 = 24 * 60 * 60;

/// The `Idempotency-Key` header: 1 to 255 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        if (1..=255).contains(&text.len()) && text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            Ok(Self(text.to_owned()))
        } else {
            Err(DomainError::invalid_request(
                "Idempotency-Key is 1 to 255 printable ASCII characters",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a key lives: tenant + route + key. The same key on another route or of another
/// tenant is a different key.
pub fn scope_key(tenant: &TenantId, route: &str, key: &IdempotencyKey) -> String {
    // Hash the client's key so arbitrary printable text makes a bounded, safe store key.
    let digest = hex(&Sha256::digest(key.as_str().as_bytes()));
    ["IDEM#", tenant.as_str(), "#", route, "#", &digest].concat()
}

/// The fingerprint of a request: route and canonical body. Equal fingerprints mean "the
/// same request" for replay; different ones make the key `idempotency_key_reused`.
pub fn fingerprint(route: &str, canonical_body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update((route.len() as u64).to_be_bytes());
    hasher.update(route.as_bytes());
    hasher.update(canonical_body);
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Bytes first, one UTF-8 check at the end: pushing `char`s encodes each one.
    let mut digits = Vec::with_capacity(bytes.len().saturating_mul(2));
    for byte in bytes {
        digits.extend_from_slice(&[DIGITS[usize::from(byte >> 4)], DIGITS[usize::from(byte & 0x0f)]]);
    }
    // Hex digits are ASCII, so this never falls back; if it did, the same bytes would
    // still make the same text, never an empty digest shared by every key.
    String::from_utf8(digits).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A recorded outcome: the response to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub scope_key: String,
    pub fingerprint: String,
    pub status: u16,
    /// The exact response body (JSON text) of the first request.
    pub body: String,
    pub created_at_ms: i64,
    /// Unix seconds after which the store may forget the key (DynamoDB TTL).
    pub expires_at: i64,
}

impl IdempotencyRecord {
    pub fn new(scope_key: String, fingerprint: String, status: u16, body: String, now_ms: i64) -> Self {
        Self {
            scope_key,
            fingerprint,
            status,
            body,
            created_at_ms: now_ms,
            expires_at: (now_ms / 1000).saturating_add(RETENTION_SECONDS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse("order-1234").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("tab\there").is_err());
        assert!(IdempotencyKey::parse("naïve").is_err());
    }

    #[test]
    fn scopes_separate_tenants_and_routes() {
        let k = IdempotencyKey::parse("k1").unwrap();
        let t1 = TenantId::parse("t1").unwrap();
        let t2 = TenantId::parse("t2").unwrap();
        assert_ne!(
            scope_key(&t1, "POST /v1/transfers", &k),
            scope_key(&t2, "POST /v1/transfers", &k)
        );
        assert_ne!(
            scope_key(&t1, "POST /v1/transfers", &k),
            scope_key(&t1, "POST /v1/payments", &k)
        );
        assert_ne!(fingerprint("a", b"{}"), fingerprint("a", b"{\"x\":1}"));
    }

    #[test]
    fn digests_are_lowercase_hex() {
        assert_eq!(
            hex(&Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    /// Stored records are found by this key for 24 hours, across deployments: its form is
    /// fixed (the digest is FIPS 180-2's "abc" example).
    #[test]
    fn the_scope_key_keeps_its_stored_form() {
        let key = IdempotencyKey::parse("abc").unwrap();
        let tenant = TenantId::parse("t1").unwrap();
        assert_eq!(
            scope_key(&tenant, "POST /v1/transfers", &key),
            "IDEM#t1#POST /v1/transfers#ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
