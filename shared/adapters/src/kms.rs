//! KMS wiring: the cursor signing key.

use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::MacAlgorithmSpec;
use fintx_domain::cursor::CursorKey;
use fintx_domain::ports::CursorKeySource;
use fintx_domain::secret::Secret;
use fintx_domain::DomainError;
use tokio::sync::OnceCell;

/// The fixed message whose HMAC under the KMS key is the cursor signing key. Changing it
/// invalidates every cursor in circulation.
const CURSOR_KEY_LABEL: &[u8] = b"fintx/pagination-cursor/v1";

/// Derives the cursor signing key with one KMS `GenerateMac` call, made on the first
/// listing of a process and then kept in memory. The key material never leaves KMS; a
/// deployment needs no extra secret, and every instance derives the same key.
pub struct KmsCursorKeys {
    client: aws_sdk_kms::Client,
    key_id: String,
    derived: OnceCell<Secret<[u8; 32]>>,
}

impl KmsCursorKeys {
    pub fn new(client: aws_sdk_kms::Client, key_id: String) -> Self {
        Self {
            client,
            key_id,
            derived: OnceCell::new(),
        }
    }

    async fn derive(&self) -> Result<Secret<[u8; 32]>, DomainError> {
        let output = self
            .client
            .generate_mac()
            .key_id(&self.key_id)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(CURSOR_KEY_LABEL))
            .send()
            .await
            .map_err(|e| {
                tracing::error!(error = %aws_sdk_kms::error::DisplayErrorContext(&e), "deriving the cursor key failed");
                DomainError::Unavailable
            })?;
        let mac = output.mac.ok_or(DomainError::Unavailable)?;
        let bytes: [u8; 32] = mac.as_ref().try_into().map_err(|_| DomainError::Unavailable)?;
        Ok(Secret::new(bytes))
    }
}

#[async_trait]
impl CursorKeySource for KmsCursorKeys {
    async fn cursor_key(&self) -> Result<CursorKey, DomainError> {
        let key = self.derived.get_or_try_init(|| self.derive()).await?;
        Ok(CursorKey::new(*key.expose()))
    }
}

/// A fixed key for unit tests and benchmarks that run without KMS.
pub struct StaticCursorKey(pub [u8; 32]);

#[async_trait]
impl CursorKeySource for StaticCursorKey {
    async fn cursor_key(&self) -> Result<CursorKey, DomainError> {
        Ok(CursorKey::new(self.0))
    }
}
