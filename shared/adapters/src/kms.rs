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
            .map_err(crate::aws::failed("GenerateMac cursor key"))?;
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

/// The KMS encryption context the connector configuration is encrypted under.
pub const CONNECTOR_CONFIG_CONTEXT: (&str, &str) = ("purpose", "connector-config");

/// Decrypts and parses the connector configuration: one KMS `Decrypt` per cold start.
///
/// The plaintext is JSON:
/// `{"connectors": {"<name>": {"scheme": "standard-webhooks"|"stripe-v1", "secrets": ["..."], "tenants": ["..."]}}}`.
/// An empty ciphertext means no connector. Any failure is an error the caller must not
/// start past: accepting webhooks with a configuration it could not read would fail open.
pub async fn load_connectors(
    client: &aws_sdk_kms::Client,
    ciphertext_base64: &str,
) -> Result<fintx_domain::webhook::Connectors, String> {
    use base64::Engine;
    use fintx_domain::webhook::Connectors;

    if ciphertext_base64.trim().is_empty() {
        return Ok(Connectors::default());
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(ciphertext_base64.trim())
        .map_err(|_| "the connector configuration is not base64".to_owned())?;
    let output = client
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .encryption_context(CONNECTOR_CONFIG_CONTEXT.0, CONNECTOR_CONFIG_CONTEXT.1)
        .send()
        .await
        .map_err(|e| {
            format!(
                "decrypting the connector configuration failed: {}",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            )
        })?;
    let plaintext = zeroize::Zeroizing::new(output.plaintext.ok_or("KMS returned no plaintext")?.into_inner());
    parse_connector_config(&plaintext)
}

/// Reads the decrypted connector configuration (the JSON described at [`load_connectors`]).
pub fn parse_connector_config(plaintext: &[u8]) -> Result<fintx_domain::webhook::Connectors, String> {
    use fintx_domain::payment::ConnectorName;
    use fintx_domain::webhook::{Connector, Connectors, Scheme};

    let config: serde_json::Value =
        serde_json::from_slice(plaintext).map_err(|_| "the connector configuration is not JSON".to_owned())?;
    let entries = config
        .get("connectors")
        .and_then(|c| c.as_object())
        .ok_or("the connector configuration has no `connectors` object")?;
    let mut connectors = Vec::new();
    for (name, entry) in entries {
        let name = ConnectorName::parse(name).ok_or_else(|| format!("connector name {name:?} is not valid"))?;
        let scheme = entry
            .get("scheme")
            .and_then(|s| s.as_str())
            .and_then(Scheme::parse)
            .ok_or_else(|| format!("connector {}: unknown scheme", name.as_str()))?;
        let secrets: Vec<Secret<String>> = entry
            .get("secrets")
            .and_then(|s| s.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|s| s.as_str())
                    .map(|s| Secret::new(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let tenants = entry
            .get("tenants")
            .and_then(|t| t.as_array())
            .map(|list| list.iter().filter_map(|t| t.as_str()).map(str::to_owned).collect())
            .unwrap_or_default();
        connectors.push(Connector::new(name, scheme, &secrets, tenants)?);
    }
    Ok(Connectors::new(connectors))
}
