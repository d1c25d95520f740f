//! The fuzz targets: every parser of fintx that sees outside bytes, each with the property
//! it must keep (never panic, and where it means something a round trip or a refusal with
//! a stable problem code).

use std::collections::HashMap;
use std::sync::Arc;

use arbitrary::Unstructured;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fintx_adapters::envelope::local::LocalDataKeys;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher};
use fintx_adapters::http::JsonObject;
use fintx_adapters::kms::StaticCursorKey;
use fintx_adapters::memory::MemoryStore;
use fintx_domain::auth::TenantId;
use fintx_domain::crypto::{SealContext, Sealed};
use fintx_domain::cursor::CursorKey;
use fintx_domain::error::ErrorCode;
use fintx_domain::money::{format_decimal, Amount, Currency};
use fintx_domain::payment::{ConnectorGrant, ConnectorName};
use fintx_domain::secret::Secret;
use fintx_domain::webhook::{Connector, Connectors, Scheme};
use hmac::{Hmac, KeyInit, Mac};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::Target;

/// Every target, by name, in the order `make fuzz` runs them.
pub const NAMES: [&str; 10] = [
    "money",
    "cursor",
    "json_object",
    "transactions_requests",
    "webhook_verify",
    "webhook_requests",
    "stream_image",
    "stream_record",
    "envelope",
    "connector_config",
];

/// Builds the target called `name`.
pub fn make(name: &str) -> Option<Box<dyn Target>> {
    Some(match name {
        "money" => Box::new(MoneyTarget),
        "cursor" => Box::new(CursorTarget::new()),
        "json_object" => Box::new(JsonObjectTarget),
        "transactions_requests" => Box::new(TransactionsTarget::new()),
        "webhook_verify" => Box::new(WebhookVerifyTarget::new()),
        "webhook_requests" => Box::new(WebhookRequestsTarget::new()),
        "stream_image" => Box::new(StreamImageTarget),
        "stream_record" => Box::new(StreamRecordTarget),
        "envelope" => Box::new(EnvelopeTarget::new()),
        "connector_config" => Box::new(ConnectorConfigTarget),
        _ => return None,
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

/// The problem codes a client may see; anything else is a broken contract.
fn known_code(code: &str) -> bool {
    ErrorCode::ALL.iter().any(|known| known.as_str() == code)
}

/// A handler's answer must be a 2xx, or a 4xx problem with a stable code: a request's
/// bytes alone must never make the server fail.
fn check_response(what: &str, input: &[u8], response: &Response<Body>) -> Value {
    let status = response.status().as_u16();
    let body: Value = serde_json::from_slice(response.body().as_ref())
        .unwrap_or_else(|_| panic!("{what}: status {status} with a body that is not JSON"));
    assert!(
        status < 500,
        "{what}: status {status} {body} for input {:?}",
        String::from_utf8_lossy(input)
    );
    if status >= 400 {
        let code = body["code"].as_str().unwrap_or_default();
        assert!(known_code(code), "{what}: status {status} with unknown code {body}");
        assert_eq!(body["status"], status, "{what}: problem status differs: {body}");
    }
    body
}

// ------------------------------------------------------------------ money

/// `Currency::parse` and `Amount::parse`: a parsed currency prints its code back; a
/// parsed amount prints (at the currency's exponent) to text that parses to the same value.
struct MoneyTarget;

impl Target for MoneyTarget {
    fn name(&self) -> &'static str {
        "money"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        [
            "USD|12.34",
            "JPY|100",
            "EUR|0.01",
            "KWD|1.234",
            "USD|999999999999999.99",
            "usd|1",
            "XXX|0",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"USD", b"EUR", b"JPY", b"BHD", b"XAU", b"XTS", b".", b"0", b"9", b"-", b"e5", b"1e",
        ]
    }

    fn run(&mut self, input: &[u8]) {
        let text = String::from_utf8_lossy(input);
        let (code, amount) = text.split_once('|').unwrap_or((&text, "1"));
        let Ok(currency) = Currency::parse(code) else {
            return;
        };
        assert_eq!(Currency::parse(currency.code()).ok(), Some(currency));
        match Amount::parse(amount, currency) {
            Ok(parsed) => {
                let printed = format_decimal(parsed.value(), currency);
                let again = Amount::parse(&printed, currency)
                    .unwrap_or_else(|e| panic!("{amount:?} parsed but its print {printed:?} does not: {e}"));
                assert_eq!(again.value(), parsed.value(), "{amount:?} → {printed:?}");
                if let Ok(positive) = Amount::parse_positive(amount, currency) {
                    assert!(!positive.is_zero());
                }
            }
            Err(error) => assert_eq!(error.code(), ErrorCode::InvalidAmount, "{amount:?}: {error}"),
        }
    }
}

// ------------------------------------------------------------------ cursors

/// `CursorKey::open` on any text: a cursor or `invalid_cursor`. A sealed position opens
/// to itself for its own tenant and listing, and for no other.
struct CursorTarget {
    key: CursorKey,
    tenant: TenantId,
    other: TenantId,
}

impl CursorTarget {
    fn new() -> Self {
        Self {
            key: CursorKey::new([7; 32]),
            tenant: TenantId::parse("tenant-a").expect("tenant"),
            other: TenantId::parse("tenant-b").expect("tenant"),
        }
    }
}

impl Target for CursorTarget {
    fn name(&self) -> &'static str {
        "cursor"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let sealed = self
            .key
            .seal(&self.tenant, "accounts", "acct_01jf3zq4v8w6k2m9n5p7r1t3x5");
        vec![
            sealed.into_bytes(),
            b"acct_01jf3zq4v8w6k2m9n5p7r1t3x5".to_vec(),
            b"a.b".to_vec(),
        ]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[b".", b"-", b"_", b"=", b"+", b"/", b"AAAA"]
    }

    fn run(&mut self, input: &[u8]) {
        let text = String::from_utf8_lossy(input);
        match self.key.open(&self.tenant, "accounts", &text) {
            Ok(position) => {
                assert_eq!(
                    self.key.seal(&self.tenant, "accounts", &position),
                    text,
                    "a cursor opened that was not sealed so"
                );
            }
            Err(error) => assert_eq!(error.code(), ErrorCode::InvalidCursor),
        }
        let sealed = self.key.seal(&self.tenant, "accounts", &text);
        assert_eq!(
            self.key.open(&self.tenant, "accounts", &sealed).ok().as_deref(),
            Some(&*text)
        );
        assert!(self.key.open(&self.other, "accounts", &sealed).is_err());
        assert!(self.key.open(&self.tenant, "transfers", &sealed).is_err());
    }
}

// ------------------------------------------------------------------ JSON request objects

/// `JsonObject::parse` and its field readers, as every handler uses them: an object or
/// a refusal with a stable code; the canonical form parses to itself.
struct JsonObjectTarget;

impl Target for JsonObjectTarget {
    fn name(&self) -> &'static str {
        "json_object"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        request_seeds().into_iter().map(|(_, body)| body.into_bytes()).collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        JSON_TOKENS
    }

    fn run(&mut self, input: &[u8]) {
        let _ = fintx_adapters::http::canonical_json(input);
        let parsed = match JsonObject::parse(input) {
            Ok(object) => object,
            Err(error) => {
                assert!(known_code(error.code().as_str()));
                return;
            }
        };
        // The canonical form (the idempotency fingerprint's input) is a function of the
        // bytes, and is itself a valid body. It is not a fixed point for floats beyond
        // f64's round-trip precision (serde_json parses them to the nearest few ulps);
        // such numbers are refused by every field reader, and a replay sends the same
        // bytes, so the fingerprint stays stable.
        let canonical = parsed.canonical();
        assert_eq!(
            JsonObject::parse(input).expect("parsed once").canonical(),
            canonical,
            "canonical form is not deterministic"
        );
        let mut object = JsonObject::parse(&canonical).unwrap_or_else(|e| panic!("canonical form does not parse: {e}"));
        let refusals = [
            object.string("currency").err(),
            object.amount("amount").err(),
            object.boolean("pending").err(),
            object.string_map("metadata").err(),
            object.object("holder").err(),
        ];
        for error in refusals.into_iter().flatten() {
            assert!(known_code(error.code().as_str()), "{error}");
        }
        if let Err(error) = object.finish() {
            assert!(known_code(error.code().as_str()), "{error}");
        }
        let _ = JsonObject::parse_optional(input);
    }
}

const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"null",
    b"true",
    b"false",
    b"\\u0000",
    b"\\ud800",
    b"1e400",
    b"-0",
    b"0.000000000000000000001",
    b"\"currency\"",
    b"\"amount\"",
    b"\"USD\"",
    b"\"pending\"",
    b"\"metadata\"",
    b"\"holder\"",
    b"\"expires_in\"",
    b"\"debit_account_id\"",
    b"\"credit_account_id\"",
    b"\"overdraft_limit\"",
    b"\"unlimited\"",
    b"\"description\"",
    b"\"connector\"",
    b"\"counterparty\"",
    b"\"direction\"",
    b"\"12.34\"",
    b"\"99999999999999999999\"",
    b"\"acct_01jf3zq4v8w6k2m9n5p7r1t3x5\"",
];

/// A valid body for each POST route, keyed by a route index of [`TransactionsTarget`].
fn request_seeds() -> Vec<(u8, String)> {
    vec![
        (0, r#"{"currency":"USD"}"#.to_owned()),
        (0, r#"{"currency":"USD","overdraft_limit":"unlimited"}"#.to_owned()),
        (
            0,
            r#"{"currency":"EUR","overdraft_limit":"100.00","holder":{"name":"Ada Lovelace","account_number":"12345678","email":"ada@example.com"},"metadata":{"k":"v"}}"#
                .to_owned(),
        ),
        (
            1,
            r#"{"debit_account_id":"$D","credit_account_id":"$C","amount":"1.25","currency":"USD","description":"rent","metadata":{"ref":"1"}}"#
                .to_owned(),
        ),
        (
            1,
            r#"{"debit_account_id":"$D","credit_account_id":"$C","amount":"2","currency":"USD","pending":true,"expires_in":3600}"#
                .to_owned(),
        ),
        (2, r#"{"amount":"0.50"}"#.to_owned()),
        (2, String::new()),
        (3, "{}".to_owned()),
        (4, r#"{"amount":"1.00","description":"refund"}"#.to_owned()),
        (
            5,
            r#"{"account_id":"$D","amount":"3.00","currency":"USD","direction":"outbound","connector":"demo-bank","counterparty":{"name":"Bob","account_number":"87654321"}}"#
                .to_owned(),
        ),
        (6, "limit=2&cursor=abc".to_owned()),
        (7, "limit=100".to_owned()),
        (8, "reveal=holder".to_owned()),
    ]
}

// ------------------------------------------------------------------ transactions routes

/// Every route of the transactions function through `transactions::handle` with the
/// in-memory store: the first byte picks the route, the second byte how headers are
/// fuzzed, the rest is the body (or the query string of a listing).
struct TransactionsTarget {
    runtime: tokio::runtime::Runtime,
    app: transactions::App,
    debit: String,
    credit: String,
    pending: String,
    posted: String,
    runs: u64,
}

const ROUTES: u8 = 9;

impl TransactionsTarget {
    fn new() -> Self {
        let runtime = runtime();
        let (app, debit, credit, pending, posted) = runtime.block_on(Self::world());
        Self {
            runtime,
            app,
            debit,
            credit,
            pending,
            posted,
            runs: 0,
        }
    }

    /// A fresh store with two accounts, one hold and one posted transfer to act on.
    async fn world() -> (transactions::App, String, String, String, String) {
        let app = transactions::App {
            store: Arc::new(MemoryStore::new()),
            cursor_keys: Arc::new(StaticCursorKey([1; 32])),
            cipher: Arc::new(EnvelopeCipher::new(LocalDataKeys::new([2; 32]), CacheLimits::default())),
            connectors: vec![ConnectorGrant::new(
                ConnectorName::parse("demo-bank").expect("name"),
                vec!["*".into()],
            )],
            dev_auth_headers: true,
            recent: Default::default(),
        };
        let id = |response: Response<Body>| {
            assert!(response.status().is_success(), "setting up: {}", response.status());
            let body: Value = serde_json::from_slice(response.body().as_ref()).expect("json");
            body["id"].as_str().expect("id").to_owned()
        };
        let post = |path: &str, key: &str, body: Value| {
            api_request(
                "POST",
                path,
                "",
                "application/json",
                Some(key),
                body.to_string().into_bytes(),
            )
        };
        let debit = id(transactions::handle(
            &app,
            post(
                "/v1/accounts",
                "setup-1",
                json!({"currency": "USD", "overdraft_limit": "1000000"}),
            ),
        )
        .await);
        let credit = id(transactions::handle(&app, post("/v1/accounts", "setup-2", json!({"currency": "USD"}))).await);
        let transfer = |pending: bool| json!({"debit_account_id": debit, "credit_account_id": credit, "amount": "10.00", "currency": "USD", "pending": pending});
        let pending = id(transactions::handle(&app, post("/v1/transfers", "setup-3", transfer(true))).await);
        let posted = id(transactions::handle(&app, post("/v1/transfers", "setup-4", transfer(false))).await);
        (app, debit, credit, pending, posted)
    }
}

/// An API request as the local runner delivers it: dev-auth headers for the caller,
/// the body as bytes and the query string parsed.
fn api_request(method: &str, path: &str, query: &str, content_type: &str, key: Option<&str>, body: Vec<u8>) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(format!("https://api.fintx.local{path}"))
        .header("x-fintx-tenant", "tenant-fuzz")
        .header("x-fintx-scopes", "ledger:read ledger:write pii:read");
    if let Ok(value) = lambda_http::http::HeaderValue::from_str(content_type) {
        builder = builder.header("content-type", value);
    }
    if let Some(key) = key.and_then(|k| lambda_http::http::HeaderValue::from_str(k).ok()) {
        builder = builder.header("idempotency-key", key);
    }
    let request = builder.body(Body::Binary(body)).expect("a request");
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        params.entry(name.to_owned()).or_default().push(value.to_owned());
    }
    request.with_query_string_parameters(params)
}

impl Target for TransactionsTarget {
    fn name(&self) -> &'static str {
        "transactions_requests"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        request_seeds()
            .into_iter()
            .map(|(route, body)| {
                let mut input = vec![route, 0];
                input.extend_from_slice(body.as_bytes());
                input
            })
            .collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        JSON_TOKENS
    }

    fn max_len(&self) -> usize {
        8192
    }

    fn run(&mut self, input: &[u8]) {
        self.runs += 1;
        if self.runs % 2000 == 0 {
            // Successful requests grow the in-memory store; start again from a small one.
            *self = Self::new();
        }
        let mut u = Unstructured::new(input);
        let route = u.arbitrary::<u8>().unwrap_or(0) % ROUTES;
        let flags = u.arbitrary::<u8>().unwrap_or(0);
        let rest = u.take_rest();
        let (header, rest) = if flags & 1 == 1 {
            match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (String::from_utf8_lossy(&rest[..at]).into_owned(), &rest[at + 1..]),
                None => (String::new(), rest),
            }
        } else {
            (String::new(), rest)
        };
        let content_type = if flags & 2 == 2 {
            header.as_str()
        } else {
            "application/json"
        };
        let key_text = format!("k-{}", self.runs);
        let key = if flags & 4 == 4 {
            Some(header.as_str())
        } else {
            Some(key_text.as_str())
        };
        let body = String::from_utf8_lossy(rest)
            .replace("$D", &self.debit)
            .replace("$C", &self.credit)
            .into_bytes();
        let (method, path) = match route {
            0 => ("POST", "/v1/accounts".to_owned()),
            1 => ("POST", "/v1/transfers".to_owned()),
            2 => ("POST", format!("/v1/transfers/{}/post", self.pending)),
            3 => ("POST", format!("/v1/transfers/{}/void", self.pending)),
            4 => ("POST", format!("/v1/transfers/{}/reverse", self.posted)),
            5 => ("POST", "/v1/payments".to_owned()),
            6 => ("GET", "/v1/accounts".to_owned()),
            7 => ("GET", format!("/v1/accounts/{}/transfers", self.debit)),
            _ => ("GET", format!("/v1/accounts/{}", self.debit)),
        };
        let request = if method == "GET" {
            let query = String::from_utf8_lossy(&body).into_owned();
            api_request(method, &path, &query, content_type, None, Vec::new())
        } else {
            api_request(method, &path, "", content_type, key, body)
        };
        let response = self.runtime.block_on(transactions::handle(&self.app, request));
        check_response(&format!("{method} {path}"), input, &response);
    }
}

// ------------------------------------------------------------------ webhooks

const STANDARD_KEY: [u8; 24] = [9; 24];
const STRIPE_SECRET: &str = "sk_fuzz_0123456789abcdef";

fn connectors() -> Connectors {
    let standard = Connector::new(
        ConnectorName::parse("demo-bank").expect("name"),
        Scheme::StandardWebhooks,
        &[Secret::new(format!("whsec_{}", STANDARD.encode(STANDARD_KEY)))],
        vec!["*".into()],
    )
    .expect("standard connector");
    let stripe = Connector::new(
        ConnectorName::parse("stripe-bank").expect("name"),
        Scheme::StripeV1,
        &[Secret::new(STRIPE_SECRET.to_owned())],
        vec!["*".into()],
    )
    .expect("stripe connector");
    Connectors::new(vec![standard, stripe])
}

fn hmac(key: &[u8], message: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
    for part in message {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Headers that sign `body` correctly under `scheme` at `now`.
fn signed_headers(scheme: Scheme, id: &str, now: i64, body: &[u8]) -> Vec<(String, String)> {
    let ts = now.to_string();
    match scheme {
        Scheme::StandardWebhooks => vec![
            ("webhook-id".into(), id.into()),
            ("webhook-timestamp".into(), ts.clone()),
            (
                "webhook-signature".into(),
                format!(
                    "v1,{}",
                    STANDARD.encode(hmac(&STANDARD_KEY, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]))
                ),
            ),
        ],
        Scheme::StripeV1 => vec![(
            "stripe-signature".into(),
            format!(
                "t={ts},v1={}",
                hex(&hmac(STRIPE_SECRET.as_bytes(), &[ts.as_bytes(), b".", body]))
            ),
        )],
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Splits fuzzed bytes into header values (lines) and a body (after a blank line).
fn header_lines(input: &[u8]) -> (Vec<String>, &[u8]) {
    let split = input.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&input[..at], &input[at + 2..]),
        None => (input, &input[input.len()..]),
    };
    let lines = head
        .split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    (lines, body)
}

/// `Connector::verify` for both schemes: fuzzed header values and bodies are refused with
/// `invalid_signature` or `timestamp_out_of_tolerance`; any body signed correctly verifies.
struct WebhookVerifyTarget {
    connectors: Connectors,
    now: i64,
}

impl WebhookVerifyTarget {
    fn new() -> Self {
        Self {
            connectors: connectors(),
            now: 1_790_000_000,
        }
    }
}

impl Target for WebhookVerifyTarget {
    fn name(&self) -> &'static str {
        "webhook_verify"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let body = br#"{"id":"evt_1","type":"payment.settled","data":{"payment_id":"pay_01jf3zq4v8w6k2m9n5p7r1t3x8"}}"#;
        let mut seeds = Vec::new();
        for scheme in [Scheme::StandardWebhooks, Scheme::StripeV1] {
            let headers = signed_headers(scheme, "msg_1", self.now, body);
            let mut input = vec![u8::from(scheme == Scheme::StripeV1)];
            for (_, value) in &headers {
                input.extend_from_slice(value.as_bytes());
                input.push(b'\n');
            }
            input.push(b'\n');
            input.extend_from_slice(body);
            seeds.push(input);
        }
        seeds
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"v1,",
            b" ",
            b"t=",
            b",v1=",
            b"=",
            b",",
            b"1790000000",
            b"-1",
            b"99999999999999999999",
            b"\n",
            b"\n\n",
        ]
    }

    fn run(&mut self, input: &[u8]) {
        let Some((&selector, rest)) = input.split_first() else {
            return;
        };
        let (name, scheme) = if selector & 1 == 0 {
            ("demo-bank", Scheme::StandardWebhooks)
        } else {
            ("stripe-bank", Scheme::StripeV1)
        };
        let connector = self.connectors.get(name).expect("connector");
        let (lines, body) = header_lines(rest);
        let names: &[&str] = match scheme {
            Scheme::StandardWebhooks => &["webhook-id", "webhook-timestamp", "webhook-signature"],
            Scheme::StripeV1 => &["stripe-signature"],
        };
        let header = |wanted: &str| {
            names
                .iter()
                .position(|n| *n == wanted)
                .and_then(|i| lines.get(i).cloned())
        };
        match connector.verify(&header, body, self.now) {
            Ok(id) => assert!(!id.is_empty() && id.len() <= 255 + 7 + 64, "event id {id:?}"),
            Err(error) => assert!(
                matches!(
                    error.code(),
                    ErrorCode::InvalidSignature | ErrorCode::TimestampOutOfTolerance
                ),
                "{error}"
            ),
        }
        // Any body, signed correctly, verifies.
        let id = lines
            .first()
            .filter(|l| !l.is_empty() && l.len() <= 255)
            .cloned()
            .unwrap_or_else(|| "msg_x".into());
        let signed = signed_headers(scheme, &id, self.now, body);
        let header = |wanted: &str| signed.iter().find(|(n, _)| n == wanted).map(|(_, v)| v.clone());
        let verified = connector.verify(&header, body, self.now);
        assert!(verified.is_ok(), "a correctly signed body was refused: {verified:?}");
    }
}

/// `bank_webhooks::handle` with the in-memory store: fuzzed headers and bodies are
/// refused with a stable code; correctly signed bodies, whatever they hold, are received
/// (2xx with an outcome), never a server error.
struct WebhookRequestsTarget {
    runtime: tokio::runtime::Runtime,
    app: bank_webhooks::App,
    account: String,
    runs: u64,
}

impl WebhookRequestsTarget {
    fn new() -> Self {
        let runtime = runtime();
        let (app, account) = runtime.block_on(async {
            let store = Arc::new(MemoryStore::new());
            let cipher = Arc::new(EnvelopeCipher::new(LocalDataKeys::new([3; 32]), CacheLimits::default()));
            let transactions = transactions::App {
                store: store.clone(),
                cursor_keys: Arc::new(StaticCursorKey([1; 32])),
                cipher: cipher.clone(),
                connectors: vec![],
                dev_auth_headers: true,
                recent: Default::default(),
            };
            let body = json!({"currency": "USD"}).to_string().into_bytes();
            let response = transactions::handle(
                &transactions,
                api_request("POST", "/v1/accounts", "", "application/json", None, body),
            )
            .await;
            let account: Value = serde_json::from_slice(response.body().as_ref()).expect("json");
            let app = bank_webhooks::App {
                store,
                cipher,
                connectors: connectors(),
                cursor_keys: Arc::new(StaticCursorKey([1; 32])),
                dev_auth_headers: true,
                accounts: Default::default(),
            };
            (app, account["id"].as_str().expect("account id").to_owned())
        });
        Self {
            runtime,
            app,
            account,
            runs: 0,
        }
    }
}

impl Target for WebhookRequestsTarget {
    fn name(&self) -> &'static str {
        "webhook_requests"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let bodies = [
            r#"{"id":"evt_1","type":"deposit.received","data":{"account_id":"$A","amount":"1.00","currency":"USD","bank_reference":"R1"}}"#,
            r#"{"id":"evt_2","type":"payment.settled","data":{"payment_id":"pay_01jf3zq4v8w6k2m9n5p7r1t3x8","bank_reference":"B"}}"#,
            r#"{"id":"evt_3","type":"payment.failed","data":{"payment_id":"pay_01jf3zq4v8w6k2m9n5p7r1t3x8","reason":"closed"}}"#,
            r#"{"id":"evt_4","type":"payment.returned","data":{"payment_id":"pay_01jf3zq4v8w6k2m9n5p7r1t3x8"}}"#,
            r#"{"id":"evt_5","type":"something.else","data":{}}"#,
        ];
        let mut seeds = Vec::new();
        for (index, body) in bodies.iter().enumerate() {
            // Mode 0: signed by the harness (standard), 1: signed (stripe), 2: headers fuzzed.
            for mode in 0..3u8 {
                let mut input = vec![mode];
                if mode == 2 {
                    input.extend_from_slice(format!("msg_{index}\n1790000000\nv1,AAAA\n\n").as_bytes());
                }
                input.extend_from_slice(body.as_bytes());
                seeds.push(input);
            }
        }
        seeds
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"{",
            b"}",
            b"\"",
            b":",
            b",",
            b"null",
            b"\"type\"",
            b"\"data\"",
            b"\"id\"",
            b"\"deposit.received\"",
            b"\"payment.settled\"",
            b"\"payment.failed\"",
            b"\"payment.returned\"",
            b"\"amount\"",
            b"\"account_id\"",
            b"\"bank_reference\"",
            b"\"payment_id\"",
            b"\"currency\"",
            b"\"1.00\"",
            b"\"USD\"",
            b"$A",
        ]
    }

    fn max_len(&self) -> usize {
        8192
    }

    fn run(&mut self, input: &[u8]) {
        self.runs += 1;
        if self.runs % 2000 == 0 {
            *self = Self::new();
        }
        let Some((&mode, rest)) = input.split_first() else {
            return;
        };
        let now = now_unix();
        let (headers, body, connector, signed) = match mode % 3 {
            2 => {
                let (lines, body) = header_lines(rest);
                let names = [
                    "webhook-id",
                    "webhook-timestamp",
                    "webhook-signature",
                    "stripe-signature",
                ];
                let headers: Vec<(String, String)> =
                    names.iter().zip(lines).map(|(n, v)| ((*n).to_owned(), v)).collect();
                (
                    headers,
                    body.to_vec(),
                    if mode & 4 == 0 { "demo-bank" } else { "stripe-bank" },
                    false,
                )
            }
            signed_mode => {
                let body = String::from_utf8_lossy(rest).replace("$A", &self.account).into_bytes();
                let scheme = if signed_mode == 0 {
                    Scheme::StandardWebhooks
                } else {
                    Scheme::StripeV1
                };
                let id = format!("msg_{}", self.runs);
                let name = if signed_mode == 0 { "demo-bank" } else { "stripe-bank" };
                (signed_headers(scheme, &id, now, &body), body, name, true)
            }
        };
        let mut builder = lambda_http::http::Request::builder()
            .method("POST")
            .uri(format!("https://api.fintx.local/v1/webhooks/{connector}"))
            .header("content-type", "application/json");
        for (name, value) in &headers {
            if let Ok(value) = lambda_http::http::HeaderValue::from_str(value) {
                builder = builder.header(name.as_str(), value);
            }
        }
        let request = builder.body(Body::Binary(body)).expect("a request");
        let response = self.runtime.block_on(bank_webhooks::handle(&self.app, request));
        let answer = check_response("POST /v1/webhooks", input, &response);
        if signed {
            assert_eq!(response.status(), 200, "a signed webhook was not received: {answer}");
            let outcome = answer["outcome"].as_str().unwrap_or_default();
            assert!(
                ["applied", "duplicate", "ignored", "rejected"].contains(&outcome),
                "unknown outcome {answer}"
            );
        }
    }
}

// ------------------------------------------------------------------ stream images

/// `transfer_image` on any DynamoDB item (as JSON in the stream's attribute-value form):
/// a transfer, `None`, or an error message; never a panic.
struct StreamImageTarget;

const STREAM_TOKENS: &[&[u8]] = &[
    b"{\"S\":\"",
    b"{\"N\":\"",
    b"{\"BOOL\":true}",
    b"{\"NULL\":true}",
    b"{\"M\":{}}",
    b"{\"L\":[]}",
    b"\"entity\"",
    b"\"transfer\"",
    b"\"posted_amount\"",
    b"\"posted_at\"",
    b"\"currency\"",
    b"\"tenant_id\"",
    b"\"id\"",
    b"\"debit_account_id\"",
    b"\"credit_account_id\"",
    b"\"MODIFY\"",
    b"\"REMOVE\"",
    b"\"INSERT\"",
    b"\"NewImage\"",
    b"\"OldImage\"",
    b"1e28",
    b"-79228162514264337593543950335",
    b"2026-11-24T00:00:00.000Z",
];

fn transfer_item() -> Value {
    json!({
        "pk": {"S": "XFER#xfer_01jf3zq4v8w6k2m9n5p7r1t3x6"}, "sk": {"S": "XFER"},
        "entity": {"S": "transfer"}, "id": {"S": "xfer_01jf3zq4v8w6k2m9n5p7r1t3x6"},
        "tenant_id": {"S": "tenant-demo"},
        "debit_account_id": {"S": "acct_01jf3zq4v8w6k2m9n5p7r1t3x5"},
        "credit_account_id": {"S": "acct_01jf3zq4v8w6k2m9n5p7r1t3x7"},
        "currency": {"S": "USD"}, "amount": {"N": "12.5"}, "posted_amount": {"N": "12.5"},
        "status": {"S": "posted"}, "posted_at": {"S": "2026-11-24T00:00:00.000Z"}
    })
}

impl Target for StreamImageTarget {
    fn name(&self) -> &'static str {
        "stream_image"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut pending = transfer_item();
        pending["posted_amount"] = json!({"N": "0"});
        pending.as_object_mut().expect("object").remove("posted_at");
        vec![
            transfer_item().to_string().into_bytes(),
            pending.to_string().into_bytes(),
            b"{}".to_vec(),
        ]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        STREAM_TOKENS
    }

    fn run(&mut self, input: &[u8]) {
        let Ok(item) = serde_json::from_slice::<serde_dynamo::Item>(input) else {
            return;
        };
        let _ = analytics_rollups::transfer_image(&item);
    }
}

/// `record_movement` on any stream record (as Lambda delivers it): a movement, `None`,
/// or an error the batch reports as an item failure; never a panic.
struct StreamRecordTarget;

impl Target for StreamRecordTarget {
    fn name(&self) -> &'static str {
        "stream_record"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let record = |name: &str, old: Option<Value>, new: Value| {
            let mut dynamodb = json!({
                "Keys": {"pk": new["pk"].clone(), "sk": new["sk"].clone()},
                "NewImage": new, "SequenceNumber": "1", "SizeBytes": 1, "StreamViewType": "NEW_AND_OLD_IMAGES"
            });
            if let Some(old) = old {
                dynamodb["OldImage"] = old;
            }
            json!({"eventID": "1", "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1", "dynamodb": dynamodb, "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/t/stream/s"})
            .to_string()
            .into_bytes()
        };
        let mut pending = transfer_item();
        pending["posted_amount"] = json!({"N": "0"});
        pending.as_object_mut().expect("object").remove("posted_at");
        let mut reversed = transfer_item();
        reversed["posted_amount"] = json!({"N": "2.5"});
        vec![
            record("INSERT", None, transfer_item()),
            record("MODIFY", Some(pending.clone()), transfer_item()),
            record("MODIFY", Some(transfer_item()), reversed),
            record("REMOVE", Some(transfer_item()), pending),
        ]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        STREAM_TOKENS
    }

    fn run(&mut self, input: &[u8]) {
        let Ok(record) = serde_json::from_slice::<aws_lambda_events::event::dynamodb::EventRecord>(input) else {
            return;
        };
        let _ = analytics_rollups::record_movement(&record);
    }
}

// ------------------------------------------------------------------ envelope ciphertexts

/// `EnvelopeCipher::open_bytes` on any stored bytes: the plaintext only for an untouched
/// ciphertext under its own context, otherwise a refusal; seal then open returns the
/// plaintext.
struct EnvelopeTarget {
    runtime: tokio::runtime::Runtime,
    cipher: EnvelopeCipher<LocalDataKeys>,
    context: SealContext,
    sealed_seed: Vec<u8>,
}

const ENVELOPE_PLAINTEXT: &[u8] = b"{\"name\":\"Ada Lovelace\",\"account_number\":\"12345678\"}";

impl EnvelopeTarget {
    fn new() -> Self {
        let runtime = runtime();
        let cipher = EnvelopeCipher::new(LocalDataKeys::new([5; 32]), CacheLimits::default());
        let tenant = TenantId::parse("tenant-a").expect("tenant");
        let context = SealContext::new(&tenant, "account", "acct_01jf3zq4v8w6k2m9n5p7r1t3x5", "holder");
        let sealed_seed = runtime
            .block_on(cipher.seal_bytes(ENVELOPE_PLAINTEXT, &context))
            .expect("seal")
            .as_bytes()
            .to_vec();
        Self {
            runtime,
            cipher,
            context,
            sealed_seed,
        }
    }
}

impl Target for EnvelopeTarget {
    fn name(&self) -> &'static str {
        "envelope"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        vec![
            self.sealed_seed.clone(),
            vec![1],
            vec![1, 5, b'l', b'o', b'c', b'a', b'l', 0, 0],
        ]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[b"\x01", b"\x05local", b"\x00\x00", b"\x00\x3c", b"\xff\xff"]
    }

    fn run(&mut self, input: &[u8]) {
        let sealed = Sealed::from_bytes(input.to_vec());
        if let Ok(plaintext) = self.runtime.block_on(self.cipher.open_bytes(&sealed, &self.context)) {
            assert_eq!(
                plaintext.expose().as_slice(),
                ENVELOPE_PLAINTEXT,
                "a ciphertext other than the sealed one opened"
            );
        }
        if input.len() <= 512 {
            let sealed = self
                .runtime
                .block_on(self.cipher.seal_bytes(input, &self.context))
                .expect("seal");
            let opened = self
                .runtime
                .block_on(self.cipher.open_bytes(&sealed, &self.context))
                .expect("open");
            assert_eq!(opened.expose().as_slice(), input);
        }
    }
}

// ------------------------------------------------------------------ connector configuration

/// `parse_connector_config` on any decrypted bytes: connectors, or a start-up error;
/// never a panic, and never a connector without a usable secret.
struct ConnectorConfigTarget;

impl Target for ConnectorConfigTarget {
    fn name(&self) -> &'static str {
        "connector_config"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let secret = format!("whsec_{}", STANDARD.encode(STANDARD_KEY));
        vec![
            json!({"connectors": {"demo-bank": {"scheme": "standard-webhooks", "secrets": [secret], "tenants": ["*"]}}})
                .to_string()
                .into_bytes(),
            json!({"connectors": {"acme": {"scheme": "stripe-v1", "secrets": [STRIPE_SECRET, "another-secret-0123"], "tenants": ["t1", "t2"]}}})
                .to_string()
                .into_bytes(),
            b"{\"connectors\":{}}".to_vec(),
        ]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"\"connectors\"",
            b"\"scheme\"",
            b"\"secrets\"",
            b"\"tenants\"",
            b"\"standard-webhooks\"",
            b"\"stripe-v1\"",
            b"\"whsec_\"",
            b"\"whsec_AAAA\"",
            b"[",
            b"]",
            b"{",
            b"}",
            b",",
            b":",
            b"\"*\"",
        ]
    }

    fn run(&mut self, input: &[u8]) {
        if let Ok(connectors) = fintx_adapters::kms::parse_connector_config(input) {
            let text = String::from_utf8_lossy(input);
            assert!(
                connectors.len() <= text.matches("secrets").count(),
                "a connector without secrets"
            );
        }
    }
}
