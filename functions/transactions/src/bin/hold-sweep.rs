//! Cold start of the `hold-sweep` function: an EventBridge schedule invokes it every
//! minute to release, in storage, the holds past their `expires_at` (SPEC §6). Reads and
//! posts already treat them as expired from that instant; the sweep catches storage up.
//! It needs the ledger table alone: no key, no other table.

use fintx_adapters::dynamo::DynamoStore;
use lambda_http::lambda_runtime::{self, service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use transactions::sweep;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = fintx_adapters::settings::cold_start()?;
    let config = fintx_adapters::aws::sdk_config()?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), settings.tables.clone())
        .with_balance_slots(settings.balance_slots);
    let store = &store;
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| async move {
        let released = sweep(store, fintx_adapters::system::now()).await?;
        tracing::info!(released, "expired holds released");
        Ok::<Value, Error>(json!({ "released": released }))
    }))
    .await
}
