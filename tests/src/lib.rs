//! Test support for fintx: a fresh slice of the local emulator stack per test, and
//! API Gateway v2 events built the way API Gateway builds them.
//!
//! The emulator is started by `make test` (scripts/test.sh), which exports
//! `AWS_ENDPOINT_URL` and `FINTX_TABLE_SPECS`. A test that needs the emulator and does
//! not find it fails with a message saying so; it never skips itself.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use fintx_adapters::dynamo::DynamoStore;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher, KmsDataKeys};
use fintx_adapters::kms::KmsCursorKeys;
use fintx_adapters::settings::Tables;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

pub mod faults;
pub mod model;
pub mod openapi;
pub mod sim;

/// For interceptors that stand in for DynamoDB's own answers: rewrites a
/// `TransactWriteItems` request so that nothing of it applies (every action names a table
/// that does not exist).
pub fn send_nowhere(
    request: &mut aws_smithy_runtime_api::client::orchestrator::HttpRequest,
) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
    let mut body: Value = serde_json::from_slice(request.body().bytes().unwrap_or_default())?;
    for item in body["TransactItems"].as_array_mut().into_iter().flatten() {
        for action in item.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            action["TableName"] = json!("fintx-no-such-table");
        }
    }
    let text = body.to_string();
    request.headers_mut().insert("content-length", text.len().to_string());
    *request.body_mut() = aws_smithy_types::body::SdkBody::from(text);
    Ok(())
}

/// Replaces an answer with `status` and a JSON `body`; an error's type is then the body's
/// `__type`, not the header of the answer replaced.
pub fn answer_with(
    response: &mut aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    status: u16,
    body: &Value,
) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
    *response.status_mut() = status.try_into()?;
    response.headers_mut().remove("x-amzn-errortype");
    *response.body_mut() = aws_smithy_types::body::SdkBody::from(body.to_string());
    Ok(())
}

/// An SDK interceptor that records operations by name (`GenerateDataKey`, `PutItem`,
/// ...), in the order they were sent, and the partition key of every item each
/// `TransactWriteItems` wrote.
#[derive(Clone, Debug, Default)]
pub struct CallCounter(
    Arc<std::sync::Mutex<Vec<String>>>,
    Arc<std::sync::Mutex<Vec<Vec<String>>>>,
);

impl CallCounter {
    pub fn count(&self, operation: &str) -> u64 {
        self.0.lock().unwrap().iter().filter(|o| *o == operation).count() as u64
    }

    pub fn total(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }

    /// The operations sent since the last reset, in order.
    pub fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The operations sent since the last reset; then starts again.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    pub fn reset(&self) {
        self.0.lock().unwrap().clear();
        self.1.lock().unwrap().clear();
    }

    /// Per `TransactWriteItems` sent, the partition keys of the items it put, updated
    /// or checked.
    pub fn written_partitions(&self) -> Vec<Vec<String>> {
        self.1.lock().unwrap().clone()
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_serialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(metadata) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>() {
            self.0.lock().unwrap().push(metadata.name().to_owned());
        }
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
        if let Some(input) = context.input().downcast_ref::<TransactWriteItemsInput>() {
            let pk = |key: Option<&std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>| {
                key.and_then(|k| k.get("pk")).and_then(|v| v.as_s().ok()).cloned()
            };
            let pks = input
                .transact_items()
                .iter()
                .filter_map(|item| {
                    pk(item.update().map(|u| u.key()))
                        .or_else(|| pk(item.put().map(|p| p.item())))
                        .or_else(|| pk(item.condition_check().map(|c| c.key())))
                })
                .collect();
            self.1.lock().unwrap().push(pks);
        }
        Ok(())
    }
}

/// Captures every log line emitted on this thread while the guard lives.
pub struct LogCapture {
    buffer: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    pub fn start() -> LogCapture {
        Self::start_at(tracing::Level::TRACE)
    }

    /// Captures the lines at `level` and above, as a deployment set to that level would.
    pub fn start_at(level: tracing::Level) -> LogCapture {
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(level)
            .with_writer(move || CaptureWriter(writer.clone()))
            .finish();
        LogCapture {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

struct CaptureWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The repository root (the tests crate sits one level below it).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: emulator-backed tests run through `make test`, which starts \
             the single-threaded moto server and exports it"
        ),
    }
}

/// Fresh tables (named after the template's) and fresh KMS keys on the shared emulator.
/// Each test gets its own, so tests run in parallel and tables stay small, which keeps
/// moto's per-transaction copying cheap.
pub struct Stack {
    pub dynamo: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub tables: Tables,
    pub kms_key_id: String,
    pub cursor_key_id: String,
}

static STACK_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Stack {
    pub async fn fresh() -> Stack {
        required_env("AWS_ENDPOINT_URL");
        let specs_path = required_env("FINTX_TABLE_SPECS");
        let specs: Vec<Value> = serde_json::from_str(
            &std::fs::read_to_string(&specs_path).unwrap_or_else(|e| panic!("reading {specs_path}: {e}")),
        )
        .expect("table specs are JSON");
        let config = fintx_adapters::aws::sdk_config().unwrap();
        let dynamo = aws_sdk_dynamodb::Client::new(&config);
        let kms = aws_sdk_kms::Client::new(&config);
        let suffix = format!(
            "{}-{}",
            std::process::id(),
            STACK_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut names = std::collections::HashMap::new();
        for spec in &specs {
            let logical = spec["logical_id"].as_str().expect("logical id");
            let name = format!("{logical}-{suffix}");
            create_table(&dynamo, &name, spec).await;
            names.insert(logical.to_owned(), name);
        }
        let kms_key_id = kms
            .create_key()
            .key_spec(KeySpec::SymmetricDefault)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .send()
            .await
            .expect("create KMS key")
            .key_metadata
            .expect("key metadata")
            .key_id;
        let cursor_key_id = kms
            .create_key()
            .key_spec(KeySpec::Hmac256)
            .key_usage(KeyUsageType::GenerateVerifyMac)
            .send()
            .await
            .expect("create KMS HMAC key")
            .key_metadata
            .expect("key metadata")
            .key_id;
        let table = |logical: &str| {
            names
                .get(logical)
                .cloned()
                .unwrap_or_else(|| panic!("template has no {logical}"))
        };
        Stack {
            tables: Tables {
                ledger: table("LedgerTable"),
                idempotency: table("IdempotencyTable"),
                webhook_events: table("WebhookEventsTable"),
                analytics: table("AnalyticsTable"),
            },
            dynamo,
            kms,
            kms_key_id,
            cursor_key_id,
        }
    }

    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(self.dynamo.clone(), self.tables.clone())
    }

    /// The transactions function wired to this stack, as its `main` wires it.
    pub fn transactions_app(&self) -> transactions::App {
        transactions::App {
            store: Arc::new(self.store()),
            connectors: fintx_domain::payment::ConnectorGrant::parse_list("demo-bank=*").unwrap(),
            cursor_keys: Arc::new(KmsCursorKeys::new(self.kms.clone(), self.cursor_key_id.clone())),
            cipher: Arc::new(self.cipher(self.kms.clone(), CacheLimits::default())),
            dev_auth_headers: false,
            recent: Default::default(),
        }
    }

    /// The bank-webhooks function wired to this stack, with a connector configuration
    /// encrypted under the stack's key and loaded the way its cold start loads it.
    pub async fn webhooks_app(&self, config: &Value) -> bank_webhooks::App {
        use base64::Engine;
        let blob = self
            .kms
            .encrypt()
            .key_id(&self.kms_key_id)
            .plaintext(aws_sdk_kms::primitives::Blob::new(config.to_string().into_bytes()))
            .encryption_context("purpose", "connector-config")
            .send()
            .await
            .expect("encrypt connector config")
            .ciphertext_blob
            .expect("ciphertext");
        let encoded = base64::engine::general_purpose::STANDARD.encode(blob.as_ref());
        let connectors = fintx_adapters::kms::load_connectors(&self.kms, &encoded)
            .await
            .expect("connectors load");
        bank_webhooks::App {
            store: Arc::new(self.store()),
            cipher: Arc::new(self.cipher(self.kms.clone(), CacheLimits::default())),
            connectors,
            cursor_keys: Arc::new(KmsCursorKeys::new(self.kms.clone(), self.cursor_key_id.clone())),
            dev_auth_headers: false,
            accounts: Default::default(),
        }
    }

    /// The production envelope cipher over this stack's KMS key.
    pub fn cipher(&self, kms: aws_sdk_kms::Client, limits: CacheLimits) -> EnvelopeCipher<KmsDataKeys> {
        EnvelopeCipher::new(KmsDataKeys::new(kms, self.kms_key_id.clone()), limits)
    }

    /// A KMS client whose calls are counted by `counter`.
    pub async fn counted_kms(&self, counter: &CallCounter) -> aws_sdk_kms::Client {
        let config = fintx_adapters::aws::sdk_config().unwrap();
        aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&config)
                .interceptor(counter.clone())
                .build(),
        )
    }

    /// A DynamoDB client whose calls are counted by `counter`.
    pub async fn counted_dynamo(&self, counter: &CallCounter) -> aws_sdk_dynamodb::Client {
        let config = fintx_adapters::aws::sdk_config().unwrap();
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&config)
                .interceptor(counter.clone())
                .build(),
        )
    }

    /// Every item of a table, read through the SDK.
    pub async fn scan_all(
        &self,
        table: &str,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        for _ in 0..1_000 {
            let page = self
                .dynamo
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        items
    }
}

async fn create_table(dynamo: &aws_sdk_dynamodb::Client, name: &str, spec: &Value) {
    let create = &spec["create"];
    let key_schema = |v: &Value| -> Vec<KeySchemaElement> {
        v.as_array()
            .expect("key schema")
            .iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(k["AttributeName"].as_str().expect("name"))
                    .key_type(KeyType::from(k["KeyType"].as_str().expect("type")))
                    .build()
                    .expect("key schema element")
            })
            .collect()
    };
    let mut request = dynamo
        .create_table()
        .table_name(name)
        .billing_mode(create["BillingMode"].as_str().unwrap_or("PAY_PER_REQUEST").into())
        .set_key_schema(Some(key_schema(&create["KeySchema"])))
        .set_attribute_definitions(Some(
            create["AttributeDefinitions"]
                .as_array()
                .expect("attribute definitions")
                .iter()
                .map(|a| {
                    AttributeDefinition::builder()
                        .attribute_name(a["AttributeName"].as_str().expect("name"))
                        .attribute_type(ScalarAttributeType::from(a["AttributeType"].as_str().expect("type")))
                        .build()
                        .expect("attribute definition")
                })
                .collect(),
        ));
    if let Some(indexes) = create["GlobalSecondaryIndexes"].as_array() {
        for index in indexes {
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index["IndexName"].as_str().expect("index name"))
                    .set_key_schema(Some(key_schema(&index["KeySchema"])))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(
                                index["Projection"]["ProjectionType"].as_str().unwrap_or("ALL"),
                            ))
                            .build(),
                    )
                    .build()
                    .expect("gsi"),
            );
        }
    }
    if let Some(view) = create["StreamSpecification"]["StreamViewType"].as_str() {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view))
                .build()
                .expect("stream spec"),
        );
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
    if let Some(attribute) = spec["ttl_attribute"].as_str() {
        dynamo
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(attribute)
                    .build()
                    .expect("ttl spec"),
            )
            .send()
            .await
            .expect("update ttl");
    }
}

/// Claims as the API Gateway JWT authorizer passes them to the function.
pub fn claims(tenant: &str, scope: &str) -> Value {
    json!({ "tenant_id": tenant, "scope": scope, "sub": "user-1" })
}

/// An API Gateway HTTP API (payload v2) event.
pub fn api_event(method: &str, path_and_query: &str, body: Option<&str>, claims: Option<Value>) -> Value {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let mut query_parameters = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query_parameters.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": { "content-type": "application/json", "host": "api.fintx.test" },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.fintx.test",
            "domainPrefix": "api",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "fintx-tests" },
            "requestId": "req-1",
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "24/Nov/2026:00:00:00 +0000",
            "timeEpoch": 1_795_478_400_000_i64
        },
        "isBase64Encoded": false
    });
    if !query_parameters.is_empty() {
        event["queryStringParameters"] = Value::Object(query_parameters);
    }
    if let Some(body) = body {
        event["body"] = Value::String(body.to_owned());
    }
    if let Some(claims) = claims {
        event["requestContext"]["authorizer"] = json!({ "jwt": { "claims": claims, "scopes": null } });
    }
    event
}

pub fn request(event: &Value) -> Request {
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway v2 event")
}

/// A handler's response, read back.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    pub headers: lambda_http::http::HeaderMap,
}

pub fn reply(response: Response<Body>) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes: &[u8] = response.body().as_ref();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).expect("JSON body")
    };
    Reply {
        status,
        content_type,
        body,
        headers,
    }
}

impl Reply {
    /// Asserts an RFC 9457 problem with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.body["code"].as_str()),
            (status, Some(code)),
            "expected {status} {code}, got {self:?}"
        );
        assert_eq!(self.content_type, "application/problem+json");
        for field in ["type", "title", "detail"] {
            assert!(self.body[field].is_string(), "problem lacks {field}: {:?}", self.body);
        }
        assert_eq!(self.body["status"], status);
    }
}

/// A small client over a transactions `App`, the way a tenant's backend would call it.
pub struct Api<'a> {
    pub app: &'a transactions::App,
    pub tenant: String,
}

impl<'a> Api<'a> {
    pub fn new(app: &'a transactions::App, tenant: &str) -> Self {
        Api {
            app,
            tenant: tenant.to_owned(),
        }
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<&Value>, key: Option<&str>) -> Reply {
        let scope = "ledger:read ledger:write pii:read";
        let text = body.map(Value::to_string);
        let mut event = api_event(method, path, text.as_deref(), Some(claims(&self.tenant, scope)));
        if let Some(key) = key {
            event["headers"]["idempotency-key"] = Value::String(key.to_owned());
        }
        reply(transactions::handle(self.app, request(&event)).await)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, None).await
    }

    pub async fn post(&self, path: &str, body: Value, key: &str) -> Reply {
        self.send("POST", path, Some(&body), Some(key)).await
    }

    /// Opens an account and returns its id.
    pub async fn open(&self, currency: &str, overdraft_limit: &str) -> String {
        let r = self
            .send(
                "POST",
                "/v1/accounts",
                Some(&json!({"currency": currency, "overdraft_limit": overdraft_limit})),
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        r.body["id"].as_str().unwrap().to_owned()
    }

    pub async fn transfer(
        &self,
        debit: &str,
        credit: &str,
        amount: &str,
        currency: &str,
        pending: bool,
        key: &str,
    ) -> Reply {
        let body = json!({"debit_account_id": debit, "credit_account_id": credit, "amount": amount, "currency": currency, "pending": pending});
        self.post("/v1/transfers", body, key).await
    }

    pub async fn balance(&self, account: &str) -> Value {
        let r = self.get(&format!("/v1/accounts/{account}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body["balance"].clone()
    }
}

/// Signs a webhook body with the scheme's reference implementation (Python packages
/// `standardwebhooks` and `stripe`, through scripts/sign_webhook.py) and returns the
/// headers to send.
pub fn sign_webhook(
    scheme: &str,
    secret: &str,
    body: &str,
    id: Option<&str>,
    timestamp: Option<i64>,
) -> Vec<(String, String)> {
    use std::io::Write;
    let python = std::env::var("FINTX_PYTHON").unwrap_or_else(|_| {
        panic!("FINTX_PYTHON is not set: webhook tests run through `make test`, which provides the venv's Python")
    });
    let mut command = std::process::Command::new(python);
    command
        .arg(repo_root().join("scripts/sign_webhook.py"))
        .args(["headers", "--scheme", scheme, "--secret", secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    if let Some(id) = id {
        command.args(["--id", id]);
    }
    if let Some(t) = timestamp {
        command.args(["--timestamp", &t.to_string()]);
    }
    let mut child = command.spawn().expect("the signer runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("body written");
    let output = child.wait_with_output().expect("the signer finishes");
    assert!(
        output.status.success(),
        "signing failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let headers: serde_json::Map<String, Value> = serde_json::from_slice(&output.stdout).expect("headers JSON");
    headers
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// A webhook request as API Gateway passes it (no authorizer on this route).
pub fn webhook_event(connector: &str, body: &str, headers: &[(String, String)]) -> Request {
    let mut event = api_event("POST", &format!("/v1/webhooks/{connector}"), Some(body), None);
    for (k, v) in headers {
        event["headers"][k] = Value::String(v.clone());
    }
    request(&event)
}

/// A unique idempotency key.
pub fn key() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("key-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// DynamoDB operations as [`CallCounter`] records them.
pub const WRITE: &str = "TransactWriteItems";
pub const READ: &str = "TransactGetItems";

/// The operations a counter should have seen, in order.
pub fn calls(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|s| (*s).to_owned()).collect()
}

/// The webhook secret of `demo-bank` on a [`Counted`] stack (a test value).
pub const COUNTED_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A fresh stack whose functions share one DynamoDB store, every call of which a counter
/// records: for asserting the exact round trips of each request.
pub struct Counted {
    pub stack: Stack,
    pub counter: CallCounter,
    pub store: Arc<DynamoStore>,
    pub transactions: Arc<transactions::App>,
    /// bank-webhooks with `demo-bank` serving tenant `t1` alone (so deposits are planned).
    pub webhooks: bank_webhooks::App,
}

impl Counted {
    pub async fn new() -> Counted {
        let stack = Stack::fresh().await;
        let counter = CallCounter::default();
        let store = Arc::new(DynamoStore::new(
            stack.counted_dynamo(&counter).await,
            stack.tables.clone(),
        ));
        let mut transactions = stack.transactions_app();
        transactions.store = store.clone();
        Counted {
            webhooks: webhooks_serving(&stack, &store, &["t1"]).await,
            stack,
            counter,
            store,
            transactions: Arc::new(transactions),
        }
    }

    /// A fresh bank-webhooks environment on this store, `demo-bank` serving `tenants`.
    pub async fn webhooks_serving(&self, tenants: &[&str]) -> bank_webhooks::App {
        webhooks_serving(&self.stack, &self.store, tenants).await
    }

    /// A fresh transactions environment on this store: it remembers nothing yet.
    pub fn fresh_transactions(&self) -> transactions::App {
        let mut app = self.stack.transactions_app();
        app.store = self.store.clone();
        app
    }
}

/// Delivers a `demo-bank` webhook signed with [`COUNTED_SECRET`] and returns its answer.
pub async fn deliver(app: &bank_webhooks::App, body: &Value, id: &str) -> Value {
    let text = body.to_string();
    let headers = sign_webhook("standard-webhooks", COUNTED_SECRET, &text, Some(id), None);
    let r = reply(bank_webhooks::handle(app, webhook_event("demo-bank", &text, &headers)).await);
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

async fn webhooks_serving(stack: &Stack, store: &Arc<DynamoStore>, tenants: &[&str]) -> bank_webhooks::App {
    let config = json!({"connectors": {
        "demo-bank": {"scheme": "standard-webhooks", "secrets": [COUNTED_SECRET], "tenants": tenants},
    }});
    let mut webhooks = stack.webhooks_app(&config).await;
    webhooks.store = store.clone();
    webhooks
}
