//! The `analytics-rollups` function: one binary for two triggers, the ledger table's
//! DynamoDB Stream (exact hourly and daily rollups of posted money) and the analytics
//! HTTP routes that serve them (SPEC §8).
#![forbid(unsafe_code)]

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use fintx_adapters::http::{json_response, principal, query_param, respond_or_problem, route_path};
use fintx_adapters::schema::transfer_from_stream_image;
use fintx_adapters::system;
use fintx_domain::auth::{Principal, Scope as AuthScope};
use fintx_domain::clock::Timestamp;
use fintx_domain::ids::AccountId;
use fintx_domain::money::{format_decimal, Currency};
use fintx_domain::ports::{LedgerStore, RollupStore};
use fintx_domain::rollup::{movement, parse_instant, Granularity, Movement, Scope, TransferImage};
use fintx_domain::DomainError;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

pub struct App {
    /// Reads accounts to check the tenant of `/v1/analytics/accounts/{id}`.
    pub store: Arc<dyn LedgerStore>,
    pub rollups: Arc<dyn RollupStore>,
    /// Local development only (see `Settings::dev_auth_headers`).
    pub dev_auth_headers: bool,
}

/// What one stream batch did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub records: usize,
    pub movements: usize,
    pub applied: usize,
    pub malformed: usize,
}

/// The transfer in a stream image, as far as rollups care; `Ok(None)` for images of
/// other records. The image is read by the ledger's own item codec
/// (`fintx_adapters::schema`), so analytics knows no attribute names.
pub fn transfer_image(item: &serde_dynamo::Item) -> Result<Option<TransferImage>, String> {
    let transfer = transfer_from_stream_image(item).map_err(|_| "a transfer image does not parse".to_owned())?;
    Ok(transfer.map(|t| TransferImage {
        id: t.id,
        tenant: t.tenant,
        debit_account_id: t.debit_account_id,
        credit_account_id: t.credit_account_id,
        currency: t.currency,
        posted_amount: t.posted_amount.value(),
        posted_at: t.posted_at,
    }))
}

/// The movement a stream record carries, if any.
pub fn record_movement(record: &EventRecord) -> Result<Option<Movement>, String> {
    if record.event_name == "REMOVE" {
        return Ok(None);
    }
    let Some(new) = transfer_image(&record.change.new_image)? else {
        return Ok(None);
    };
    let old = transfer_image(&record.change.old_image).unwrap_or(None);
    Ok(movement(old.as_ref(), &new))
}

/// Applies a stream batch. A record that cannot be read is reported in
/// `batchItemFailures` (Lambda retries it, bisects, and finally sends it to the failure
/// queue) without holding back the others; a store failure reports every record that
/// carried a movement so they are retried. Counting is exactly once either way.
pub async fn handle_stream(app: &App, event: DynamoDbEvent) -> DynamoDbEventResponse {
    let (response, report) = apply_batch(app, &event).await;
    fintx_adapters::metrics::emit("RollupMovementsApplied", report.applied as f64, "Count", None);
    fintx_adapters::metrics::emit("StreamRecordsMalformed", report.malformed as f64, "Count", None);
    tracing::info!(
        records = report.records,
        movements = report.movements,
        applied = report.applied,
        malformed = report.malformed,
        failures = response.batch_item_failures.len(),
        "stream batch processed"
    );
    response
}

pub async fn apply_batch(app: &App, event: &DynamoDbEvent) -> (DynamoDbEventResponse, BatchReport) {
    let mut response = DynamoDbEventResponse::default();
    let mut report = BatchReport {
        records: event.records.len(),
        ..BatchReport::default()
    };
    let mut movements = Vec::new();
    let mut carriers = Vec::new();
    let failure = |record: &EventRecord| {
        let mut f = DynamoDbBatchItemFailure::default();
        f.item_identifier = record
            .change
            .sequence_number
            .clone()
            .or_else(|| Some(record.event_id.clone()));
        f
    };
    for record in &event.records {
        match record_movement(record) {
            Ok(Some(m)) => {
                movements.push(m);
                carriers.push(record);
            }
            Ok(None) => {}
            Err(problem) => {
                report.malformed += 1;
                tracing::error!(event_id = record.event_id, problem, "stream record cannot be read");
                response.batch_item_failures.push(failure(record));
            }
        }
    }
    report.movements = movements.len();
    match app.rollups.apply(&movements).await {
        Ok(applied) => report.applied = applied,
        Err(_) => response.batch_item_failures.extend(carriers.into_iter().map(failure)),
    }
    if let Some(newest) = event
        .records
        .iter()
        .map(|r| r.change.approximate_creation_date_time.timestamp_millis())
        .max()
    {
        let lag_ms = system::now().unix_ms().saturating_sub(newest);
        tracing::info!(rollup_lag_ms = lag_ms, "rollup lag");
        fintx_adapters::metrics::emit("RollupLag", lag_ms as f64, "Milliseconds", None);
    }
    (response, report)
}

pub async fn handle_http(app: &App, request: Request) -> Response<Body> {
    respond_or_problem(route(app, &request).await)
}

async fn route(app: &App, request: &Request) -> Result<Response<Body>, DomainError> {
    let caller = principal(request, app.dev_auth_headers)?;
    let path = route_path(request).trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (request.method(), segments.as_slice()) {
        (&Method::GET, ["v1", "analytics", "accounts", id]) => {
            caller.require(AuthScope::LedgerRead)?;
            let id = AccountId::parse(id).ok_or(DomainError::AccountNotFound)?;
            let account = app
                .store
                .get_account(&caller.tenant, &id)
                .await?
                .ok_or(DomainError::AccountNotFound)?;
            rollup_response(app, &caller, request, Scope::Account(id), account.currency).await
        }
        (&Method::GET, ["v1", "analytics", "tenant"]) => {
            caller.require(AuthScope::LedgerRead)?;
            let code = query_param(request, "currency")
                .ok_or_else(|| DomainError::invalid_request("`currency` is required"))?;
            let currency = Currency::parse(&code)?;
            rollup_response(app, &caller, request, Scope::Tenant, currency).await
        }
        _ => Err(DomainError::NotFound),
    }
}

async fn rollup_response(
    app: &App,
    caller: &Principal,
    request: &Request,
    scope: Scope,
    currency: Currency,
) -> Result<Response<Body>, DomainError> {
    let granularity = match query_param(request, "granularity") {
        None => Granularity::Day,
        Some(g) => Granularity::parse(&g).ok_or_else(|| DomainError::invalid_request("granularity is day or hour"))?,
    };
    let instant = |name: &str| -> Result<Option<Timestamp>, DomainError> {
        query_param(request, name)
            .map(|t| {
                parse_instant(&t)
                    .ok_or_else(|| DomainError::invalid_request(format!("`{name}` is a date or an RFC 3339 time")))
            })
            .transpose()
    };
    let to = instant("to")?.unwrap_or_else(system::now);
    // Without `from`: the last 30 days, or the last 48 hours.
    let default_span_ms = match granularity {
        Granularity::Day => 30 * 86_400_000,
        Granularity::Hour => 48 * 3_600_000,
    };
    let from = match instant("from")? {
        Some(f) => f,
        None => Timestamp::from_unix_ms(to.unix_ms() - default_span_ms).unwrap_or(Timestamp::UNIX_EPOCH),
    };
    let (first, last) = granularity.range(from, to)?;
    let rows = app
        .rollups
        .rows(&caller.tenant, &scope, currency, granularity, &first, &last)
        .await?;
    let data = rows
        .iter()
        .map(|(period, t)| {
            Ok(json!({
                "period": period,
                "currency": currency.code(),
                "debits": {"count": t.debit_count, "amount": format_decimal(t.debit_amount, currency)},
                "credits": {"count": t.credit_count, "amount": format_decimal(t.credit_amount, currency)},
                "net": format_decimal(t.net()?, currency),
            }))
        })
        .collect::<Result<Vec<Value>, DomainError>>()?;
    Ok(json_response(200, &json!({ "data": data })))
}
