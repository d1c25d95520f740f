//! Cold start of the `bank-webhooks` function: settings, SDK clients, and the connector
//! configuration, decrypted once. A configuration that cannot be decrypted stops the
//! start: the function never accepts webhooks it cannot verify.

use std::sync::Arc;

use bank_webhooks::{handle, App};
use fintx_adapters::dynamo::DynamoStore;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher, KmsDataKeys};
use fintx_adapters::kms::{load_connectors, KmsCursorKeys};
use lambda_http::{run, service_fn, Error, Request};

// mimalloc instead of glibc's malloc: a request allocates many small short-lived objects,
// and glibc's allocator was a third of a request's CPU time (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = fintx_adapters::settings::cold_start()?;
    let config = fintx_adapters::aws::sdk_config()?;
    let kms = aws_sdk_kms::Client::new(&config);
    let started = std::time::Instant::now();
    let connectors = load_connectors(
        &kms,
        &std::env::var("FINTX_CONNECTOR_CONFIG_CIPHERTEXT").unwrap_or_default(),
    )
    .await?;
    tracing::info!(
        connectors = connectors.len(),
        decrypt_ms = started.elapsed().as_secs_f64() * 1000.0,
        "connector configuration loaded"
    );
    let app = App {
        store: Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&config),
            settings.tables.clone(),
        )),
        cipher: Arc::new(EnvelopeCipher::new(
            KmsDataKeys::new(kms.clone(), settings.kms_key_id.clone()),
            CacheLimits::default(),
        )),
        connectors,
        cursor_keys: Arc::new(KmsCursorKeys::new(kms, settings.cursor_key_id.clone())),
        dev_auth_headers: settings.dev_auth_headers,
    };
    let app = &app;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(handle(app, request).await)
    }))
    .await
}
