//! Bank-connector webhooks (SPEC §7): signature schemes, connector configuration and the
//! outcome of an event. Verification is pure: the caller passes the clock.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::auth::TenantId;
use crate::error::DomainError;
use crate::payment::ConnectorName;
use crate::secret::Secret;

/// Timestamps further than this from now, either way, are refused.
pub const TOLERANCE_SECONDS: i64 = 300;
/// Bodies larger than this are refused before any work.
pub const BODY_MAX_BYTES: usize = 256 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`
    /// (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`), secrets `whsec_<base64>`.
    StandardWebhooks,
    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`; the event
    /// id is the body's `id`.
    StripeV1,
}

impl Scheme {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "standard-webhooks" => Some(Scheme::StandardWebhooks),
            "stripe-v1" => Some(Scheme::StripeV1),
            _ => None,
        }
    }
}

/// One connector: its scheme, its secrets (several during rotation) and the tenants it
/// serves (`*` for every tenant, local development only).
pub struct Connector {
    pub name: ConnectorName,
    pub scheme: Scheme,
    keys: Vec<Secret<Vec<u8>>>,
    tenants: Vec<String>,
}

impl Connector {
    /// Builds a connector from its configured secrets. A secret that does not decode is a
    /// configuration error: the function refuses to start rather than verify with less.
    pub fn new(
        name: ConnectorName,
        scheme: Scheme,
        secrets: &[Secret<String>],
        tenants: Vec<String>,
    ) -> Result<Self, String> {
        if secrets.is_empty() {
            return Err(format!("connector {} has no secret", name.as_str()));
        }
        let mut keys = Vec::new();
        for secret in secrets {
            let key = match scheme {
                Scheme::StandardWebhooks => {
                    let encoded = secret
                        .expose()
                        .strip_prefix("whsec_")
                        .ok_or_else(|| format!("connector {}: secrets start with whsec_", name.as_str()))?;
                    STANDARD
                        .decode(encoded)
                        .map_err(|_| format!("connector {}: a secret is not base64", name.as_str()))?
                }
                Scheme::StripeV1 => secret.expose().as_bytes().to_vec(),
            };
            if key.len() < 16 {
                return Err(format!(
                    "connector {}: a secret is shorter than 16 bytes",
                    name.as_str()
                ));
            }
            keys.push(Secret::new(key));
        }
        Ok(Self {
            name,
            scheme,
            keys,
            tenants,
        })
    }

    pub fn serves(&self, tenant: &TenantId) -> bool {
        self.tenants.iter().any(|t| t == "*" || t == tenant.as_str())
    }

    /// The one tenant this connector serves, when it serves exactly one.
    pub fn sole_tenant(&self) -> Option<TenantId> {
        match self.tenants.as_slice() {
            [only] if only != "*" => TenantId::parse(only).ok(),
            _ => None,
        }
    }

    fn mac(&self, key: &Secret<Vec<u8>>, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(key.expose()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        for part in parts {
            mac.update(part);
        }
        mac
    }

    /// Verifies a request and returns the event id it carries. `header` looks a header up
    /// by lower-case name. Nothing about the request is trusted before this succeeds.
    pub fn verify(
        &self,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<String, DomainError> {
        match self.scheme {
            Scheme::StandardWebhooks => {
                let id = header("webhook-id").ok_or(DomainError::InvalidSignature)?;
                let timestamp = header("webhook-timestamp").ok_or(DomainError::InvalidSignature)?;
                let signatures = header("webhook-signature").ok_or(DomainError::InvalidSignature)?;
                check_timestamp(&timestamp, now_unix)?;
                let candidates: Vec<Vec<u8>> = signatures
                    .split(' ')
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .filter_map(|s| STANDARD.decode(s).ok())
                    .collect();
                let ok = self.keys.iter().any(|key| {
                    candidates.iter().any(|candidate| {
                        self.mac(key, &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body])
                            .verify_slice(candidate)
                            .is_ok()
                    })
                });
                if !ok || id.is_empty() || id.len() > 255 {
                    return Err(DomainError::InvalidSignature);
                }
                Ok(id)
            }
            Scheme::StripeV1 => {
                let header = header("stripe-signature").ok_or(DomainError::InvalidSignature)?;
                let mut timestamp = None;
                let mut candidates = Vec::new();
                for part in header.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", t)) => timestamp = Some(t.to_owned()),
                        Some(("v1", hex)) => {
                            if let Some(bytes) = decode_hex(hex) {
                                candidates.push(bytes);
                            }
                        }
                        _ => {}
                    }
                }
                let timestamp = timestamp.ok_or(DomainError::InvalidSignature)?;
                check_timestamp(&timestamp, now_unix)?;
                let ok = self.keys.iter().any(|key| {
                    candidates.iter().any(|candidate| {
                        self.mac(key, &[timestamp.as_bytes(), b".", body])
                            .verify_slice(candidate)
                            .is_ok()
                    })
                });
                if !ok {
                    return Err(DomainError::InvalidSignature);
                }
                // The signature covers the body, so its `id` can be trusted now. A signed
                // body without a usable id (not JSON, say) is still the connector's: it is
                // named by its digest, so it is archived once however often it is resent.
                let id = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|value| {
                        value
                            .get("id")
                            .and_then(|v| v.as_str())
                            .filter(|id| !id.is_empty() && id.len() <= 255)
                            .map(str::to_owned)
                    });
                Ok(id.unwrap_or_else(|| body_digest_id(body)))
            }
        }
    }
}

/// The event id of a signed body that names none: `sha256:<hex digest of the body>`.
pub fn body_digest_id(body: &[u8]) -> String {
    use sha2::Digest;
    let digest = Sha256::digest(body);
    let mut id = String::with_capacity(71);
    id.push_str("sha256:");
    for byte in digest {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn check_timestamp(text: &str, now_unix: i64) -> Result<(), DomainError> {
    let timestamp: i64 = text.trim().parse().map_err(|_| DomainError::InvalidSignature)?;
    // The timestamp is the client's: any i64 may arrive, so the distance is checked
    // arithmetic, and a distance too large to compute is simply out of tolerance.
    let within = now_unix
        .checked_sub(timestamp)
        .and_then(i64::checked_abs)
        .is_some_and(|distance| distance <= TOLERANCE_SECONDS);
    if !within {
        return Err(DomainError::TimestampOutOfTolerance);
    }
    Ok(())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i.checked_add(2)?)?, 16).ok())
        .collect()
}

/// The configured connectors, by name.
#[derive(Default)]
pub struct Connectors(BTreeMap<String, Connector>);

impl Connectors {
    pub fn new(connectors: Vec<Connector>) -> Self {
        Self(
            connectors
                .into_iter()
                .map(|c| (c.name.as_str().to_owned(), c))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&Connector> {
        self.0.get(name)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What became of a received event (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Ignored,
    Rejected,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Outcome::Applied,
            Outcome::Duplicate,
            Outcome::Ignored,
            Outcome::Rejected,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(scheme: Scheme, secret: &str) -> Connector {
        Connector::new(
            ConnectorName::parse("bank").unwrap(),
            scheme,
            &[Secret::new(secret.to_owned())],
            vec!["t1".into()],
        )
        .unwrap()
    }

    fn sign_standard(key: &[u8], id: &str, ts: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn standard_webhooks_verify_with_any_listed_signature_and_secret() {
        let key = [7u8; 24];
        let c = connector(Scheme::StandardWebhooks, &format!("whsec_{}", STANDARD.encode(key)));
        let body = br#"{"type":"x"}"#;
        let good = sign_standard(&key, "msg_1", 1_000, body);
        let headers = |sig: String, ts: i64| {
            move |name: &str| match name {
                "webhook-id" => Some("msg_1".to_owned()),
                "webhook-timestamp" => Some(ts.to_string()),
                "webhook-signature" => Some(sig.clone()),
                _ => None,
            }
        };
        assert_eq!(
            c.verify(&headers(format!("v1,AAAA {good}"), 1_000), body, 1_100),
            Ok("msg_1".into())
        );
        assert_eq!(
            c.verify(&headers(good.clone(), 1_000), b"{\"type\":\"y\"}", 1_000),
            Err(DomainError::InvalidSignature)
        );
        assert_eq!(
            c.verify(&headers(good.clone(), 1_000), body, 1_301),
            Err(DomainError::TimestampOutOfTolerance)
        );
        assert_eq!(
            c.verify(&headers(good, 1_000), body, 699),
            Err(DomainError::TimestampOutOfTolerance)
        );
        assert!(c.serves(&TenantId::parse("t1").unwrap()));
        assert!(!c.serves(&TenantId::parse("t2").unwrap()));
    }

    /// The timestamp header is the client's, checked before the signature: extreme
    /// values are refused as out of tolerance, never an arithmetic overflow.
    #[test]
    fn extreme_timestamps_are_out_of_tolerance_not_overflows() {
        let key = b"0123456789abcdef0123";
        let secret = format!("whsec_{}", STANDARD.encode(key));
        let standard = connector(Scheme::StandardWebhooks, &secret);
        let stripe = connector(Scheme::StripeV1, "stripe-secret-0123456789");
        for now in [0, 1_800_000_000, i64::MIN, i64::MAX] {
            for ts in [i64::MIN, i64::MIN + 1, -1_000, i64::MAX - 1, i64::MAX] {
                if (i128::from(now) - i128::from(ts)).abs() <= 300 {
                    continue;
                }
                let signature = sign_standard(key, "evt_1", ts, b"{}");
                let headers = |name: &str| match name {
                    "webhook-id" => Some("evt_1".to_owned()),
                    "webhook-timestamp" => Some(ts.to_string()),
                    "webhook-signature" => Some(signature.clone()),
                    "stripe-signature" => Some(format!("t={ts},v1=00")),
                    _ => None,
                };
                assert_eq!(
                    standard.verify(&headers, b"{}", now),
                    Err(DomainError::TimestampOutOfTolerance),
                    "standard ts={ts} now={now}"
                );
                assert_eq!(
                    stripe.verify(&headers, b"{}", now),
                    Err(DomainError::TimestampOutOfTolerance),
                    "stripe ts={ts} now={now}"
                );
            }
        }
    }

    #[test]
    fn misconfigured_secrets_refuse_to_build() {
        let name = ConnectorName::parse("bank").unwrap();
        assert!(Connector::new(
            name.clone(),
            Scheme::StandardWebhooks,
            &[Secret::new("nope".into())],
            vec![]
        )
        .is_err());
        assert!(Connector::new(name.clone(), Scheme::StandardWebhooks, &[], vec![]).is_err());
        assert!(Connector::new(name, Scheme::StripeV1, &[Secret::new("short".into())], vec![]).is_err());
    }
}
