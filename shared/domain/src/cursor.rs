//! Opaque, tamper-evident pagination cursors (SPEC §6).
//!
//! A cursor is `base64url(position) "." base64url(HMAC-SHA256(tenant, listing, position))`.
//! The tag binds it to the tenant and the listing it came from, so a cursor edited by
//! hand, or carried to another tenant or listing, is refused as `invalid_cursor`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::auth::TenantId;
use crate::error::DomainError;
use crate::secret::Secret;

const VERSION: u8 = 1;
const MAX_POSITION_BYTES: usize = 512;

/// The signing key, derived once per process (see the adapters' KMS key source).
pub struct CursorKey(Secret<[u8; 32]>);

impl CursorKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self(Secret::new(key))
    }

    fn mac(&self, tenant: &TenantId, listing: &str, position: &[u8]) -> Hmac<Sha256> {
        // new_from_slice accepts any key length for HMAC; 32 bytes always fit.
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.0.expose()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        for part in [tenant.as_str().as_bytes(), listing.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&[VERSION]);
        mac.update(position);
        mac
    }

    /// Seals a listing position (for example the last id of a page).
    pub fn seal(&self, tenant: &TenantId, listing: &str, position: &str) -> String {
        let tag = self.mac(tenant, listing, position.as_bytes()).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(position), URL_SAFE_NO_PAD.encode(tag))
    }

    /// Opens a cursor of this tenant and listing, in constant time for the tag.
    pub fn open(&self, tenant: &TenantId, listing: &str, cursor: &str) -> Result<String, DomainError> {
        if cursor.len() > 2 * MAX_POSITION_BYTES {
            return Err(DomainError::InvalidCursor);
        }
        let (position, tag) = cursor.split_once('.').ok_or(DomainError::InvalidCursor)?;
        let position = URL_SAFE_NO_PAD
            .decode(position)
            .map_err(|_| DomainError::InvalidCursor)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| DomainError::InvalidCursor)?;
        self.mac(tenant, listing, &position)
            .verify_slice(&tag)
            .map_err(|_| DomainError::InvalidCursor)?;
        String::from_utf8(position).map_err(|_| DomainError::InvalidCursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(t: &str) -> TenantId {
        TenantId::parse(t).unwrap()
    }

    #[test]
    fn a_sealed_cursor_opens_for_its_own_tenant_and_listing_only() {
        let key = CursorKey::new([7; 32]);
        let cursor = key.seal(&tenant("t1"), "accounts", "acct_x");
        assert_eq!(key.open(&tenant("t1"), "accounts", &cursor).unwrap(), "acct_x");
        assert_eq!(
            key.open(&tenant("t2"), "accounts", &cursor),
            Err(DomainError::InvalidCursor)
        );
        assert_eq!(
            key.open(&tenant("t1"), "transfers", &cursor),
            Err(DomainError::InvalidCursor)
        );
        assert_eq!(
            CursorKey::new([8; 32]).open(&tenant("t1"), "accounts", &cursor),
            Err(DomainError::InvalidCursor)
        );
    }

    #[test]
    fn any_edit_to_a_cursor_is_detected() {
        let key = CursorKey::new([7; 32]);
        let cursor = key.seal(&tenant("t1"), "accounts", "acct_x");
        for i in 0..cursor.len() {
            let mut bytes = cursor.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let edited = String::from_utf8(bytes).unwrap();
            if edited != cursor {
                assert!(
                    key.open(&tenant("t1"), "accounts", &edited).is_err(),
                    "edit at {i} accepted"
                );
            }
        }
        for garbage in ["", ".", "abc", "a.b.c", "%%%.%%%"] {
            assert!(key.open(&tenant("t1"), "accounts", garbage).is_err());
        }
    }
}
