//! Cold start of the `transactions` function: read settings, build the SDK clients once,
//! then serve requests.

use std::sync::Arc;

use fintx_adapters::dynamo::DynamoStore;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher, KmsDataKeys};
use fintx_adapters::kms::KmsCursorKeys;
use lambda_http::{run, service_fn, Error, Request};
use transactions::{handle, App};

// mimalloc instead of glibc's malloc: a request allocates many small short-lived objects,
// and glibc's allocator was a third of a request's CPU time (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = fintx_adapters::settings::cold_start()?;
    let config = fintx_adapters::aws::sdk_config()?;
    let kms = aws_sdk_kms::Client::new(&config);
    let app = App {
        cipher: Arc::new(EnvelopeCipher::new(
            KmsDataKeys::new(kms.clone(), settings.kms_key_id.clone()),
            CacheLimits::default(),
        )),
        store: Arc::new(
            DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), settings.tables.clone())
                .with_balance_slots(settings.balance_slots),
        ),
        cursor_keys: Arc::new(KmsCursorKeys::new(kms, settings.cursor_key_id.clone())),
        connectors: settings.connectors.clone(),
        dev_auth_headers: settings.dev_auth_headers,
        recent: Default::default(),
    };
    let app = &app;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(handle(app, request).await)
    }))
    .await
}
