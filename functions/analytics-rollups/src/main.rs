//! Cold start of the `analytics-rollups` function. Lambda invokes it with stream batches
//! and with API Gateway requests; the event's shape says which.

use analytics_rollups::{handle_http, handle_stream, App};
use std::sync::Arc;

use fintx_adapters::dynamo::DynamoStore;
use fintx_adapters::rollup_store::DynamoRollups;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Service};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

// mimalloc instead of glibc's malloc: a request allocates many small short-lived objects,
// and glibc's allocator was a third of a request's CPU time (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = fintx_adapters::settings::cold_start()?;
    let config = fintx_adapters::aws::sdk_config()?;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let app = App {
        store: Arc::new(DynamoStore::new(dynamo.clone(), settings.tables.clone())),
        rollups: Arc::new(DynamoRollups::new(dynamo, settings.tables.analytics.clone())),
        dev_auth_headers: settings.dev_auth_headers,
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let (payload, context) = event.into_parts();
        if payload.get("Records").is_some() {
            let batch = serde_json::from_value(payload)?;
            let response = handle_stream(app, batch).await;
            return Ok::<Value, Error>(serde_json::to_value(response)?);
        }
        let request: LambdaRequest = serde_json::from_value(payload)?;
        let mut adapter = Adapter::from(service_fn(move |request| async move {
            Ok::<_, Error>(handle_http(app, request).await)
        }));
        let response = adapter.call(LambdaEvent::new(request, context)).await?;
        Ok(serde_json::to_value(response)?)
    }))
    .await
}
