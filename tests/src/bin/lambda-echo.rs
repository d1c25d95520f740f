//! A bare `lambda_runtime` function that answers each event with itself: the baseline the
//! cold-start measurement (scripts/cold_start.py) compares the fintx functions against,
//! built with the same release profile.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
