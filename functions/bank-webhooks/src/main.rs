//! Cold start of the `bank-webhooks` function: settings and SDK clients, then the
//! connector configuration, decrypted once per execution environment.
//!
//! The decrypt (one KMS round trip) is left out of init: the first webhook starts it and
//! waits for it, so init costs what the other functions' inits cost, and the decrypt is
//! paid once, by the first request of the environment. Until the configuration has
//! decrypted, no webhook is read or written: each answers 503 `unavailable` and the next
//! one tries the decrypt again, so a failed decrypt never leaves the function accepting
//! webhooks it cannot verify (fail closed).

use std::sync::Arc;

use bank_webhooks::{handle_loaded, App};
use fintx_adapters::dynamo::DynamoStore;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher, KmsDataKeys};
use fintx_adapters::kms::{load_connectors, KmsCursorKeys};
use lambda_http::{run, service_fn, Error, Request};
use tokio::sync::OnceCell;

// mimalloc instead of glibc's malloc: a request allocates many small short-lived objects,
// and glibc's allocator was a third of a request's CPU time (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The function once its connector configuration has decrypted.
static APP: OnceCell<App> = OnceCell::const_new();

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = fintx_adapters::settings::cold_start()?;
    let config = fintx_adapters::aws::sdk_config()?;
    let kms = aws_sdk_kms::Client::new(&config);
    let ciphertext = Arc::new(std::env::var("FINTX_CONNECTOR_CONFIG_CIPHERTEXT").unwrap_or_default());
    let store = Arc::new(
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), settings.tables.clone())
            .with_balance_slots(settings.balance_slots),
    );
    let cipher = Arc::new(EnvelopeCipher::new(
        KmsDataKeys::new(kms.clone(), settings.kms_key_id.clone()),
        CacheLimits::default(),
    ));
    let cursor_keys = Arc::new(KmsCursorKeys::new(kms.clone(), settings.cursor_key_id.clone()));
    let dev_auth_headers = settings.dev_auth_headers;
    let load = move || {
        let (kms, ciphertext, store, cipher, cursor_keys) = (
            kms.clone(),
            ciphertext.clone(),
            store.clone(),
            cipher.clone(),
            cursor_keys.clone(),
        );
        async move {
            let started = std::time::Instant::now();
            let connectors = load_connectors(&kms, &ciphertext).await?;
            tracing::info!(
                connectors = connectors.len(),
                decrypt_ms = started.elapsed().as_secs_f64() * 1000.0,
                "connector configuration loaded"
            );
            Ok::<App, String>(App {
                store,
                cipher,
                connectors,
                cursor_keys,
                dev_auth_headers,
                accounts: Default::default(),
            })
        }
    };
    run(service_fn(move |request: Request| {
        let load = load.clone();
        async move { Ok::<_, Error>(handle_loaded(&APP, load, request).await) }
    }))
    .await
}
