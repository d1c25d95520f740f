//! One `SdkConfig` and one HTTPS client per cold start, shared by every SDK client of a
//! function. Built by hand from what Lambda puts in the environment (region and the
//! execution role's credentials) instead of by `aws-config`'s provider chains: nothing
//! is probed, no profile file is read, and no second TLS stack is linked.
//!
//! TLS is rustls with the ring provider, which draws randomness from the kernel
//! (`getrandom`), so the first handshake after a cold start pays no entropy-gathering
//! cost, and the trust store holds only the roots AWS service endpoints chain to.
//! Pointing `AWS_ENDPOINT_URL` at the emulator (plain HTTP) is the only difference
//! between local and AWS.

use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_async::rt::sleep::TokioSleep;
use aws_smithy_async::time::SystemTimeSource;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::region::Region;
use aws_types::SdkConfig;
use fintx_domain::{Cause, DomainError};

use crate::settings::SettingsError;

/// Error codes AWS services answer when they refuse a call for capacity.
const THROTTLING_CODES: [&str; 6] = [
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    // KMS: the request rate quota.
    "LimitExceededException",
];

/// Why an SDK call failed, so that retrying follows from the cause.
pub fn cause<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> Cause {
    match error {
        SdkError::ConstructionFailure(_) => Cause::Refused,
        // Sent or maybe sent, and no answer: the effect is unknown.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Cause::Timeout,
        SdkError::ServiceError(context) => {
            let code = context.err().code().unwrap_or_default();
            if THROTTLING_CODES.contains(&code) {
                Cause::Throttled
            } else if context.raw().status().is_server_error() {
                Cause::ServerError
            } else {
                Cause::Refused
            }
        }
        // An answer that could not be read, or a kind of failure added later.
        _ => Cause::ServerError,
    }
}

/// Logs an AWS call's failure with its whole cause chain and turns it into the opaque
/// `unavailable` outcome that keeps why: the client learns nothing internal.
pub fn failed<E>(operation: &'static str) -> impl FnOnce(SdkError<E, HttpResponse>) -> DomainError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    move |error| failure(operation, &error)
}

/// [`failed`] for an error at hand.
pub fn failure<E>(operation: &'static str, error: &SdkError<E, HttpResponse>) -> DomainError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let cause = cause(error);
    tracing::error!(operation, ?cause, error = %DisplayErrorContext(error), "AWS call failed");
    DomainError::Dependency(cause)
}

// `AWS_ROOT_NAMES` and `AWS_ROOTS_PEM`: the roots every AWS service endpoint chains to,
// picked out of the Mozilla set by the build script. Anything else is refused, whatever
// the system store trusts.
include!(concat!(env!("OUT_DIR"), "/aws_roots.rs"));

/// The SDK configuration every client of a function is built from.
pub fn sdk_config() -> Result<SdkConfig, SettingsError> {
    sdk_config_from(|name| std::env::var(name).ok())
}

fn sdk_config_from(env: impl Fn(&str) -> Option<String>) -> Result<SdkConfig, SettingsError> {
    let required = |variable: &'static str| {
        env(variable).filter(|v| !v.is_empty()).ok_or(SettingsError {
            variable,
            problem: "is not set",
        })
    };
    // Lambda's execution-role credentials are fixed for the life of the execution
    // environment, so they are read once.
    let credentials = Credentials::new(
        required("AWS_ACCESS_KEY_ID")?,
        required("AWS_SECRET_ACCESS_KEY")?,
        env("AWS_SESSION_TOKEN").filter(|v| !v.is_empty()),
        None,
        "lambda-environment",
    );
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(required("AWS_REGION")?))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(https_client()?)
        .sleep_impl(TokioSleep::new())
        .time_source(SystemTimeSource::new())
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(1_000))
                .operation_attempt_timeout(Duration::from_millis(2_000))
                .operation_timeout(Duration::from_millis(5_000))
                .build(),
        );
    if let Some(endpoint) = env("AWS_ENDPOINT_URL").filter(|v| !v.is_empty()) {
        builder = builder.endpoint_url(endpoint);
    }
    Ok(builder.build())
}

/// The one HTTPS client of the process. Connections are set up on first use, so a cold
/// start that never calls AWS pays nothing for TLS.
fn https_client() -> Result<SharedHttpClient, SettingsError> {
    let mut trust = TrustStore::empty().with_native_roots(false);
    for pem in AWS_ROOTS_PEM {
        trust = trust.with_pem_certificate(pem);
    }
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|_| SettingsError {
            variable: "(built in) AWS root certificates",
            problem: "do not form a TLS trust store",
        })?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(context)
        .build_https())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::collections::HashMap;

    /// The DER of a PEM certificate, decoded here rather than by the SDK.
    fn der_of(pem: &str) -> Vec<u8> {
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .inspect(|line| assert!(line.len() <= 64))
            .collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }

    /// Every common name (OID 2.5.4.3) a certificate states, issuer's and subject's.
    fn common_names(der: &[u8]) -> Vec<String> {
        const COMMON_NAME: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
        let mut names = Vec::new();
        for at in 0..der.len().saturating_sub(COMMON_NAME.len() + 2) {
            if der[at..].starts_with(&COMMON_NAME) {
                let (tag, len) = (der[at + 5], usize::from(der[at + 6]));
                assert!(
                    matches!(tag, 0x0c | 0x13),
                    "a common name is a UTF8String or a PrintableString"
                );
                names.push(String::from_utf8(der[at + 7..at + 7 + len].to_vec()).unwrap());
            }
        }
        names
    }

    /// Each root of the trust store is the one certificate of the Mozilla set whose
    /// common name is its name, found here by the name's attribute type rather than the
    /// build script's search.
    #[test]
    fn the_trust_store_holds_exactly_the_aws_roots() {
        assert_eq!(AWS_ROOTS_PEM.len(), AWS_ROOT_NAMES.len());
        for (name, pem) in AWS_ROOT_NAMES.iter().zip(AWS_ROOTS_PEM) {
            let with_name: Vec<&[u8]> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|der| der.as_ref())
                .filter(|der| common_names(der).iter().any(|cn| cn == name))
                .collect();
            assert_eq!(with_name, vec![der_of(pem).as_slice()], "{name}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[tokio::test]
    async fn lambda_environment_becomes_the_sdk_configuration() {
        let config = sdk_config_from(env(&[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_REGION", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(config.endpoint_url(), None);
        assert!(config.http_client().is_some());
        assert!(config.credentials_provider().is_some());

        let local = sdk_config_from(env(&[
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ]))
        .unwrap();
        assert_eq!(local.endpoint_url(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn missing_credentials_or_region_stop_the_cold_start() {
        for missing in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
            let pairs: Vec<(&str, &str)> = [
                ("AWS_ACCESS_KEY_ID", "a"),
                ("AWS_SECRET_ACCESS_KEY", "b"),
                ("AWS_REGION", "us-east-1"),
            ]
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
            match sdk_config_from(env(&pairs)) {
                Err(error) => assert_eq!(error.variable, missing),
                Ok(_) => panic!("{missing} missing, yet configured"),
            }
        }
    }
}
