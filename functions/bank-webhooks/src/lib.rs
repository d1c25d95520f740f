//! The `bank-webhooks` function: receives bank-connector callbacks.
//!
//! Connector configuration (schemes and secrets) arrives KMS-encrypted; until a
//! connector is configured every callback is refused as `unknown_connector`, before
//! anything is read or written.
#![forbid(unsafe_code)]

use fintx_adapters::http::{body_bytes, problem_response, route_path};
use fintx_domain::DomainError;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

/// Bodies over 256 KiB are refused before any work (SPEC §7).
pub const BODY_MAX_BYTES: usize = 256 * 1024;

pub struct App {
    /// Local development only (see `Settings::dev_auth_headers`).
    pub dev_auth_headers: bool,
}

pub async fn handle(app: &App, request: Request) -> Response<Body> {
    let outcome = route(app, &request).await;
    match outcome {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(code = error.code().as_str(), "webhook refused");
            problem_response(&error)
        }
    }
}

async fn route(_app: &App, request: &Request) -> Result<Response<Body>, DomainError> {
    let path = route_path(request).trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (request.method(), segments.as_slice()) {
        (&Method::POST, ["v1", "webhooks", _connector]) => {
            body_bytes(request, BODY_MAX_BYTES)?;
            Err(DomainError::UnknownConnector)
        }
        _ => Err(DomainError::NotFound),
    }
}
