//! Envelope encryption: AES-256-GCM under data keys from KMS `GenerateDataKey`.
//!
//! # Format (version 1)
//!
//! ```text
//! 0x01 | u8 key-id length | key id | u16 wrapped-key length | wrapped data key | 12-byte nonce | ciphertext+tag
//! ```
//!
//! The associated data is a label, the whole header above and the [`SealContext`], so
//! any changed byte, and any other record, field or tenant, fails authentication. The KMS
//! encryption context carries the tenant and record kind, which is the scope a cached
//! data key is shared across; record id and field are bound by the associated data.
//!
//! # Data-key cache
//!
//! A data key encrypts for at most [`CacheLimits::max_age`] and [`CacheLimits::max_uses`]
//! messages, then a new one is generated. Concurrent requests for the same scope wait
//! for one `GenerateDataKey` rather than each calling KMS. Unwrapped keys are cached by
//! their wrapped form and scope, with a bound on entries. Plaintext keys are zeroized
//! when dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use fintx_domain::crypto::{Cipher, SealContext, Sealed};
use fintx_domain::secret::Secret;
use fintx_domain::DomainError;
use zeroize::Zeroizing;

const FORMAT_V1: u8 = 1;
const AAD_LABEL: &[u8] = b"fintx.sealed.v1";
const NONCE_BYTES: usize = 12;

/// Why a seal or open failed. `KeyService` is transient; the others mean the stored
/// bytes are not what was sealed under this context.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("the key service is unavailable")]
    KeyService,
    #[error("the sealed value is not in a known format")]
    Format,
    #[error("the sealed value does not authenticate under this context")]
    Integrity,
}

impl From<CipherError> for DomainError {
    fn from(error: CipherError) -> Self {
        match error {
            CipherError::KeyService => DomainError::EncryptionUnavailable,
            CipherError::Format | CipherError::Integrity => {
                tracing::error!(%error, "a stored ciphertext failed to open");
                DomainError::Unavailable
            }
        }
    }
}

/// The KMS encryption context of a data key: the scope it may be shared across.
pub type KeyScope = [(&'static str, String); 2];

fn key_scope(context: &SealContext) -> KeyScope {
    [
        ("fintx:tenant", context.tenant().to_owned()),
        ("fintx:kind", context.kind().to_owned()),
    ]
}

/// A fresh data key: plaintext (zeroized on drop), its wrapped form and the wrapping key id.
pub struct DataKey {
    pub plaintext: Secret<[u8; 32]>,
    pub wrapped: Vec<u8>,
    pub key_id: String,
}

/// Where data keys come from.
#[async_trait]
pub trait DataKeySource: Send + Sync {
    async fn generate(&self, scope: &KeyScope) -> Result<DataKey, CipherError>;
    async fn unwrap(&self, key_id: &str, wrapped: &[u8], scope: &KeyScope) -> Result<Secret<[u8; 32]>, CipherError>;
}

/// Data keys from AWS KMS.
pub struct KmsDataKeys {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsDataKeys {
    pub fn new(client: aws_sdk_kms::Client, key_id: String) -> Self {
        Self { client, key_id }
    }
}

fn into_key(bytes: Vec<u8>) -> Result<Secret<[u8; 32]>, CipherError> {
    let bytes = Zeroizing::new(bytes);
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| CipherError::KeyService)?;
    Ok(Secret::new(key))
}

#[async_trait]
impl DataKeySource for KmsDataKeys {
    async fn generate(&self, scope: &KeyScope) -> Result<DataKey, CipherError> {
        let mut request = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256);
        for (k, v) in scope {
            request = request.encryption_context(*k, v);
        }
        let output = request.send().await.map_err(|e| {
            tracing::error!(error = %aws_sdk_kms::error::DisplayErrorContext(&e), "KMS GenerateDataKey failed");
            CipherError::KeyService
        })?;
        let plaintext = into_key(output.plaintext.ok_or(CipherError::KeyService)?.into_inner())?;
        Ok(DataKey {
            plaintext,
            wrapped: output.ciphertext_blob.ok_or(CipherError::KeyService)?.into_inner(),
            key_id: output.key_id.unwrap_or_else(|| self.key_id.clone()),
        })
    }

    async fn unwrap(&self, key_id: &str, wrapped: &[u8], scope: &KeyScope) -> Result<Secret<[u8; 32]>, CipherError> {
        let mut request = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped));
        for (k, v) in scope {
            request = request.encryption_context(*k, v);
        }
        let output = request.send().await.map_err(|e| {
            // A wrapped key KMS rejects as invalid (or under another context) is a
            // tampered record, not an outage.
            let invalid = e
                .as_service_error()
                .is_some_and(|s| s.is_invalid_ciphertext_exception() || s.is_incorrect_key_exception());
            if invalid {
                CipherError::Integrity
            } else {
                tracing::error!(error = %aws_sdk_kms::error::DisplayErrorContext(&e), "KMS Decrypt failed");
                CipherError::KeyService
            }
        })?;
        into_key(output.plaintext.ok_or(CipherError::KeyService)?.into_inner())
    }
}

#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    pub max_age: Duration,
    pub max_uses: u64,
    /// Unwrapped keys kept for decryption.
    pub max_unwrapped: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(300),
            max_uses: 10_000,
            max_unwrapped: 1_000,
        }
    }
}

struct ActiveKey {
    cipher: Aes256Gcm,
    wrapped: Vec<u8>,
    key_id: String,
    created: Instant,
    uses: u64,
}

type ScopeSlot = Arc<tokio::sync::Mutex<Option<ActiveKey>>>;

struct Unwrapped {
    cipher: Arc<Aes256Gcm>,
    created: Instant,
}

#[derive(Default)]
struct UnwrappedCache {
    entries: HashMap<(Vec<u8>, KeyScope), Unwrapped>,
    order: VecDeque<(Vec<u8>, KeyScope)>,
}

/// The [`Cipher`] of fintx: envelope encryption over any [`DataKeySource`].
pub struct EnvelopeCipher<K> {
    keys: K,
    limits: CacheLimits,
    sealing: Mutex<HashMap<KeyScope, ScopeSlot>>,
    opening: Mutex<UnwrappedCache>,
    key_service_calls: AtomicU64,
}

impl<K: DataKeySource> EnvelopeCipher<K> {
    pub fn new(keys: K, limits: CacheLimits) -> Self {
        Self {
            keys,
            limits,
            sealing: Mutex::new(HashMap::new()),
            opening: Mutex::new(UnwrappedCache::default()),
            key_service_calls: AtomicU64::new(0),
        }
    }

    /// Calls made to the key service so far (for metrics).
    pub fn key_service_calls(&self) -> u64 {
        self.key_service_calls.load(Ordering::Relaxed)
    }

    fn slot(&self, scope: &KeyScope) -> Result<ScopeSlot, CipherError> {
        let mut slots = self.sealing.lock().map_err(|_| CipherError::KeyService)?;
        Ok(slots.entry(scope.clone()).or_default().clone())
    }

    pub async fn seal_bytes(&self, plaintext: &[u8], context: &SealContext) -> Result<Sealed, CipherError> {
        let scope = key_scope(context);
        let slot = self.slot(&scope)?;
        // Holding the scope's lock across GenerateDataKey makes concurrent sealers of the
        // same scope wait for one new key instead of each asking KMS for one.
        let mut active = slot.lock().await;
        let fresh = active
            .as_ref()
            .is_some_and(|k| k.created.elapsed() < self.limits.max_age && k.uses < self.limits.max_uses);
        if !fresh {
            self.key_service_calls.fetch_add(1, Ordering::Relaxed);
            crate::metrics::count("KmsCalls", Some(("Operation", "GenerateDataKey")));
            let key = self.keys.generate(&scope).await?;
            let cipher = Aes256Gcm::new_from_slice(key.plaintext.expose()).map_err(|_| CipherError::KeyService)?;
            *active = Some(ActiveKey {
                cipher,
                wrapped: key.wrapped,
                key_id: key.key_id,
                created: Instant::now(),
                uses: 0,
            });
        }
        let key = active.as_mut().ok_or(CipherError::KeyService)?;
        key.uses += 1;

        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| CipherError::KeyService)?;
        let key_id_len = u8::try_from(key.key_id.len()).map_err(|_| CipherError::Format)?;
        let wrapped_len = u16::try_from(key.wrapped.len()).map_err(|_| CipherError::Format)?;
        let mut out = Vec::with_capacity(4 + key.key_id.len() + key.wrapped.len() + NONCE_BYTES + plaintext.len() + 16);
        out.push(FORMAT_V1);
        out.push(key_id_len);
        out.extend_from_slice(key.key_id.as_bytes());
        out.extend_from_slice(&wrapped_len.to_be_bytes());
        out.extend_from_slice(&key.wrapped);
        out.extend_from_slice(&nonce);
        let aad = associated_data(&out, context);
        let ciphertext = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CipherError::Format)?;
        out.extend_from_slice(&ciphertext);
        Ok(Sealed::from_bytes(out))
    }

    pub async fn open_bytes(&self, sealed: &Sealed, context: &SealContext) -> Result<Secret<Vec<u8>>, CipherError> {
        let parts = parse(sealed.as_bytes())?;
        let scope = key_scope(context);
        let cipher = self.unwrapped(&parts, &scope).await?;
        let aad = associated_data(parts.header, context);
        let nonce: [u8; NONCE_BYTES] = parts.nonce.try_into().map_err(|_| CipherError::Format)?;
        let plaintext = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: parts.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CipherError::Integrity)?;
        Ok(Secret::new(plaintext))
    }

    async fn unwrapped(&self, parts: &Parts<'_>, scope: &KeyScope) -> Result<Arc<Aes256Gcm>, CipherError> {
        let cache_key = (parts.wrapped.to_vec(), scope.clone());
        {
            let cache = self.opening.lock().map_err(|_| CipherError::KeyService)?;
            if let Some(hit) = cache.entries.get(&cache_key) {
                if hit.created.elapsed() < self.limits.max_age {
                    return Ok(hit.cipher.clone());
                }
            }
        }
        self.key_service_calls.fetch_add(1, Ordering::Relaxed);
        crate::metrics::count("KmsCalls", Some(("Operation", "Decrypt")));
        let key = self.keys.unwrap(parts.key_id, parts.wrapped, scope).await?;
        let cipher = Arc::new(Aes256Gcm::new_from_slice(key.expose()).map_err(|_| CipherError::Integrity)?);
        let mut cache = self.opening.lock().map_err(|_| CipherError::KeyService)?;
        while cache.entries.len() >= self.limits.max_unwrapped.max(1) {
            match cache.order.pop_front() {
                Some(oldest) => {
                    cache.entries.remove(&oldest);
                }
                None => break,
            }
        }
        if cache
            .entries
            .insert(
                cache_key.clone(),
                Unwrapped {
                    cipher: cipher.clone(),
                    created: Instant::now(),
                },
            )
            .is_none()
        {
            cache.order.push_back(cache_key);
        }
        Ok(cipher)
    }
}

#[async_trait]
impl<K: DataKeySource> Cipher for EnvelopeCipher<K> {
    async fn seal(&self, plaintext: &[u8], context: &SealContext) -> Result<Sealed, DomainError> {
        Ok(self.seal_bytes(plaintext, context).await?)
    }

    async fn open(&self, sealed: &Sealed, context: &SealContext) -> Result<Secret<Vec<u8>>, DomainError> {
        Ok(self.open_bytes(sealed, context).await?)
    }
}

struct Parts<'a> {
    header: &'a [u8],
    key_id: &'a str,
    wrapped: &'a [u8],
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

fn parse(bytes: &[u8]) -> Result<Parts<'_>, CipherError> {
    let take = |at: usize, n: usize| {
        let end = at.checked_add(n).ok_or(CipherError::Format)?;
        bytes.get(at..end).ok_or(CipherError::Format)
    };
    if bytes.first() != Some(&FORMAT_V1) {
        return Err(CipherError::Format);
    }
    let key_id_len = usize::from(*bytes.get(1).ok_or(CipherError::Format)?);
    let key_id = std::str::from_utf8(take(2, key_id_len)?).map_err(|_| CipherError::Format)?;
    let at = 2 + key_id_len;
    let wrapped_len = take(at, 2)?;
    let wrapped_len = usize::from(u16::from_be_bytes([wrapped_len[0], wrapped_len[1]]));
    let wrapped = take(at + 2, wrapped_len)?;
    let nonce_at = at + 2 + wrapped_len;
    let nonce = take(nonce_at, NONCE_BYTES)?;
    let body_at = nonce_at + NONCE_BYTES;
    let ciphertext = bytes.get(body_at..).ok_or(CipherError::Format)?;
    if ciphertext.len() < 16 {
        return Err(CipherError::Format);
    }
    Ok(Parts {
        header: &bytes[..body_at],
        key_id,
        wrapped,
        nonce,
        ciphertext,
    })
}

fn associated_data(header: &[u8], context: &SealContext) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + header.len() + 64);
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(&(header.len() as u32).to_be_bytes());
    aad.extend_from_slice(header);
    aad.extend_from_slice(&context.canonical());
    aad
}

/// A data-key source that wraps keys with a fixed local key instead of KMS. For unit
/// tests and benchmarks only: production code has no path that builds one.
#[cfg(any(test, feature = "test-support"))]
pub mod local {
    use super::*;

    pub struct LocalDataKeys {
        master: Aes256Gcm,
    }

    impl LocalDataKeys {
        pub fn new(master: [u8; 32]) -> Self {
            Self {
                master: Aes256Gcm::new(&master.into()),
            }
        }

        fn scope_aad(scope: &KeyScope) -> Vec<u8> {
            scope
                .iter()
                .flat_map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes(), b";"].concat())
                .collect()
        }
    }

    #[async_trait]
    impl DataKeySource for LocalDataKeys {
        async fn generate(&self, scope: &KeyScope) -> Result<DataKey, CipherError> {
            let mut key = Zeroizing::new([0u8; 32]);
            let mut nonce = [0u8; NONCE_BYTES];
            getrandom::fill(key.as_mut()).map_err(|_| CipherError::KeyService)?;
            getrandom::fill(&mut nonce).map_err(|_| CipherError::KeyService)?;
            let aad = Self::scope_aad(scope);
            let mut wrapped = nonce.to_vec();
            wrapped.extend(
                self.master
                    .encrypt(
                        &Nonce::from(nonce),
                        Payload {
                            msg: key.as_ref(),
                            aad: &aad,
                        },
                    )
                    .map_err(|_| CipherError::KeyService)?,
            );
            Ok(DataKey {
                plaintext: Secret::new(*key),
                wrapped,
                key_id: "local".into(),
            })
        }

        async fn unwrap(
            &self,
            _key_id: &str,
            wrapped: &[u8],
            scope: &KeyScope,
        ) -> Result<Secret<[u8; 32]>, CipherError> {
            let nonce: [u8; NONCE_BYTES] = wrapped
                .get(..NONCE_BYTES)
                .and_then(|n| n.try_into().ok())
                .ok_or(CipherError::Integrity)?;
            let aad = Self::scope_aad(scope);
            let key = self
                .master
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &wrapped[NONCE_BYTES..],
                        aad: &aad,
                    },
                )
                .map_err(|_| CipherError::Integrity)?;
            into_key(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::local::LocalDataKeys;
    use super::*;
    use fintx_domain::auth::TenantId;
    use proptest::prelude::*;

    fn cipher() -> EnvelopeCipher<LocalDataKeys> {
        EnvelopeCipher::new(LocalDataKeys::new([9; 32]), CacheLimits::default())
    }

    fn ctx(tenant: &str, record: &str, field: &'static str) -> SealContext {
        SealContext::new(&TenantId::parse(tenant).unwrap(), "account", record, field)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[tokio::test]
    async fn sealed_values_open_only_under_their_own_context() {
        let c = cipher();
        let sealed = c
            .seal_bytes(b"Ada Lovelace", &ctx("t1", "acct_a", "holder"))
            .await
            .unwrap();
        assert_eq!(
            c.open_bytes(&sealed, &ctx("t1", "acct_a", "holder"))
                .await
                .unwrap()
                .expose(),
            b"Ada Lovelace"
        );
        for other in [
            ctx("t2", "acct_a", "holder"),
            ctx("t1", "acct_b", "holder"),
            ctx("t1", "acct_a", "name"),
        ] {
            assert!(c.open_bytes(&sealed, &other).await.is_err(), "{other:?}");
        }
    }

    #[tokio::test]
    async fn a_data_key_is_replaced_after_its_use_limit() {
        let c = EnvelopeCipher::new(
            LocalDataKeys::new([9; 32]),
            CacheLimits {
                max_uses: 3,
                ..CacheLimits::default()
            },
        );
        for _ in 0..7 {
            c.seal_bytes(b"x", &ctx("t1", "r", "f")).await.unwrap();
        }
        assert_eq!(c.key_service_calls(), 3);
    }

    #[tokio::test]
    async fn unknown_formats_are_refused() {
        let c = cipher();
        for bytes in [vec![], vec![2, 0, 0], vec![1, 200]] {
            assert_eq!(
                c.open_bytes(&Sealed::from_bytes(bytes), &ctx("t1", "r", "f"))
                    .await
                    .err(),
                Some(CipherError::Format)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_plaintext_round_trips_and_any_flipped_bit_is_refused(
            plaintext in proptest::collection::vec(any::<u8>(), 0..512),
            tenant in "[a-z0-9]{1,12}",
            record in "[a-z0-9_]{1,30}",
            bit in any::<prop::sample::Index>(),
        ) {
            let c = cipher();
            let context = ctx(&tenant, &record, "holder");
            let sealed = block_on(c.seal_bytes(&plaintext, &context)).unwrap();
            let opened = block_on(c.open_bytes(&sealed, &context)).unwrap();
            prop_assert_eq!(opened.expose(), &plaintext);
            let mut bytes = sealed.as_bytes().to_vec();
            let i = bit.index(bytes.len() * 8);
            bytes[i / 8] ^= 1 << (i % 8);
            prop_assert!(block_on(c.open_bytes(&Sealed::from_bytes(bytes), &context)).is_err());
        }
    }
}
