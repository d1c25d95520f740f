//! The accounts slice end to end: the transactions handler with the real DynamoDB and KMS
//! adapters against the single-threaded moto server.

use fintx_tests::openapi::Contract;
use fintx_tests::{api_event, claims, reply, request, Reply, Stack};
use serde_json::{json, Value};

const WRITE: &str = "ledger:write";
const READ: &str = "ledger:read";

async fn call(app: &transactions::App, method: &str, path: &str, body: Option<&str>, claims: Option<Value>) -> Reply {
    reply(transactions::handle(app, request(&api_event(method, path, body, claims))).await)
}

async fn open(app: &transactions::App, tenant: &str, body: Value) -> Reply {
    call(
        app,
        "POST",
        "/v1/accounts",
        Some(&body.to_string()),
        Some(claims(tenant, WRITE)),
    )
    .await
}

async fn ledger_items(stack: &Stack) -> usize {
    stack.scan_all(&stack.tables.ledger).await.len()
}

#[tokio::test]
async fn opening_an_account_returns_it_with_zero_balances_in_the_currency_exponent() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let contract = Contract::load();

    let created = open(
        &app,
        "t1",
        json!({"currency": "USD", "name": "Operating", "overdraft_limit": "50.5", "metadata": {"team": "ops"}}),
    )
    .await;

    assert_eq!(created.status, 201, "{created:?}");
    contract.check("POST", "/v1/accounts", &created);
    let body = &created.body;
    assert!(body["id"].as_str().unwrap().starts_with("acct_"));
    assert_eq!(body["currency"], "USD");
    assert_eq!(body["overdraft_limit"], "50.50");
    assert_eq!(
        body["balance"],
        json!({"posted": "0.00", "pending_debits": "0.00", "pending_credits": "0.00", "available": "0.00"})
    );
    assert_eq!(body["metadata"], json!({"team": "ops"}));
    assert_eq!(
        (body["kind"].as_str(), body["status"].as_str(), body["version"].as_u64()),
        (Some("customer"), Some("open"), Some(1))
    );

    let id = body["id"].as_str().unwrap();
    let fetched = call(
        &app,
        "GET",
        &format!("/v1/accounts/{id}"),
        None,
        Some(claims("t1", READ)),
    )
    .await;
    assert_eq!(fetched.status, 200);
    contract.check("GET", "/v1/accounts/{id}", &fetched);
    assert_eq!(fetched.body, created.body, "the stored account reads back exactly");
}

#[tokio::test]
async fn currencies_print_with_their_own_exponent() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let jpy = open(&app, "t1", json!({"currency": "JPY", "overdraft_limit": "1000"})).await;
    assert_eq!((jpy.status, jpy.body["overdraft_limit"].as_str()), (201, Some("1000")));
    assert_eq!(jpy.body["balance"]["posted"], "0");
    let kwd = open(&app, "t1", json!({"currency": "KWD", "overdraft_limit": "1.125"})).await;
    assert_eq!((kwd.status, kwd.body["overdraft_limit"].as_str()), (201, Some("1.125")));
    assert_eq!(kwd.body["balance"]["available"], "0.000");
    open(&app, "t1", json!({"currency": "JPY", "overdraft_limit": "100.5"}))
        .await
        .assert_problem(400, "invalid_amount");
    open(&app, "t1", json!({"currency": "USD", "overdraft_limit": "1.005"}))
        .await
        .assert_problem(400, "invalid_amount");
    open(
        &app,
        "t1",
        json!({"currency": "USD", "overdraft_limit": "1000000000000000"}),
    )
    .await
    .assert_problem(400, "invalid_amount");
}

#[tokio::test]
async fn another_tenants_account_answers_exactly_like_a_missing_one() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let created = open(&app, "t1", json!({"currency": "EUR"})).await;
    let id = created.body["id"].as_str().unwrap();

    let foreign = call(
        &app,
        "GET",
        &format!("/v1/accounts/{id}"),
        None,
        Some(claims("t2", READ)),
    )
    .await;
    let missing = call(
        &app,
        "GET",
        "/v1/accounts/acct_01jf3zq4v8w6k2m9n5p7r1t3x9",
        None,
        Some(claims("t2", READ)),
    )
    .await;

    foreign.assert_problem(404, "account_not_found");
    assert_eq!(foreign.body, missing.body);
    Contract::load().check("GET", "/v1/accounts/{id}", &foreign);
    let listed = call(&app, "GET", "/v1/accounts", None, Some(claims("t2", READ))).await;
    assert_eq!(listed.body["data"], json!([]));
}

#[tokio::test]
async fn listing_pages_through_every_account_newest_first() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let contract = Contract::load();
    let mut created = Vec::new();
    for i in 0..5 {
        let r = open(&app, "t1", json!({"currency": "USD", "name": format!("a{i}")})).await;
        created.push(r.body["id"].as_str().unwrap().to_owned());
    }
    open(&app, "t2", json!({"currency": "USD"})).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/v1/accounts?limit=2".to_owned(),
            Some(c) => format!("/v1/accounts?limit=2&cursor={c}"),
        };
        let page = call(&app, "GET", &path, None, Some(claims("t1", READ))).await;
        assert_eq!(page.status, 200, "{page:?}");
        contract.check("GET", "/v1/accounts", &page);
        pages += 1;
        for account in page.body["data"].as_array().unwrap() {
            seen.push(account["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    created.reverse();
    assert_eq!(
        seen, created,
        "every account of the tenant once, newest first, none of another tenant"
    );
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn tampered_or_foreign_cursors_are_refused() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    for _ in 0..3 {
        open(&app, "t1", json!({"currency": "USD"})).await;
    }
    let page = call(&app, "GET", "/v1/accounts?limit=1", None, Some(claims("t1", READ))).await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();

    let mut tampered = cursor.clone().into_bytes();
    tampered[0] = if tampered[0] == b'Q' { b'R' } else { b'Q' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (tenant, c) in [("t1", tampered.as_str()), ("t2", cursor.as_str()), ("t1", "garbage")] {
        let r = call(
            &app,
            "GET",
            &format!("/v1/accounts?cursor={c}"),
            None,
            Some(claims(tenant, READ)),
        )
        .await;
        r.assert_problem(400, "invalid_cursor");
        Contract::load().check("GET", "/v1/accounts", &r);
    }
}

#[tokio::test]
async fn bad_input_gets_its_code_and_writes_nothing() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let ten_megabytes = format!("{{\"currency\":\"USD\",\"name\":\"{}\"}}", "x".repeat(10 * 1024 * 1024));
    type Case<'a> = (&'a str, Option<String>, Option<Value>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "garbage JSON",
            Some("{\"currency\":".into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_request",
        ),
        (
            "not an object",
            Some("[1,2]".into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_request",
        ),
        ("empty body", None, Some(claims("t1", WRITE)), 400, "invalid_request"),
        (
            "amount as a number",
            Some(r#"{"currency":"USD","overdraft_limit":10.5}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_amount",
        ),
        (
            "negative amount",
            Some(r#"{"currency":"USD","overdraft_limit":"-1"}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_amount",
        ),
        (
            "unknown field",
            Some(r#"{"currency":"USD","colour":"red"}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "unknown_field",
        ),
        (
            "unknown holder field",
            Some(r#"{"currency":"USD","holder":{"name":"Ada","ssn":"1"}}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "unknown_field",
        ),
        (
            "holder without a name",
            Some(r#"{"currency":"USD","holder":{"iban":"GB82WEST12345698765432"}}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_request",
        ),
        (
            "IBAN with a bad checksum",
            Some(r#"{"currency":"USD","holder":{"name":"Ada","iban":"GB82WEST12345698765433"}}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_request",
        ),
        (
            "routing number with a bad checksum",
            Some(r#"{"currency":"USD","holder":{"name":"Ada","routing_number":"021000022"}}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_request",
        ),
        (
            "holder that is not an object",
            Some(r#"{"currency":"USD","holder":"Ada"}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_request",
        ),
        (
            "wrong type",
            Some(r#"{"currency":840}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_request",
        ),
        (
            "metadata value not a string",
            Some(r#"{"currency":"USD","metadata":{"k":1}}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_request",
        ),
        (
            "missing currency",
            Some(r#"{"name":"x"}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_request",
        ),
        (
            "unknown currency",
            Some(r#"{"currency":"XYZ"}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_currency",
        ),
        (
            "lower-case currency",
            Some(r#"{"currency":"usd"}"#.into()),
            Some(claims("t1", WRITE)),
            400,
            "invalid_currency",
        ),
        (
            "10 MB body",
            Some(ten_megabytes),
            Some(claims("t1", WRITE)),
            413,
            "payload_too_large",
        ),
        (
            "no claims",
            Some(r#"{"currency":"USD"}"#.into()),
            None,
            401,
            "unauthenticated",
        ),
        (
            "no tenant claim",
            Some(r#"{"currency":"USD"}"#.into()),
            Some(json!({"scope": WRITE})),
            401,
            "unauthenticated",
        ),
        (
            "read scope only",
            Some(r#"{"currency":"USD"}"#.into()),
            Some(claims("t1", READ)),
            403,
            "forbidden",
        ),
    ];
    let contract = Contract::load();
    for (name, body, claims, status, code) in cases {
        let r = call(&app, "POST", "/v1/accounts", body.as_deref(), claims).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (status, Some(code)),
            "{name}: {r:?}"
        );
        r.assert_problem(status, code);
        contract.check("POST", "/v1/accounts", &r);
    }
    assert_eq!(ledger_items(&stack).await, 0, "a refused request wrote something");

    let reads: Vec<(&str, Option<Value>, u16, &str)> = vec![
        ("/v1/accounts?limit=0", Some(claims("t1", READ)), 400, "invalid_request"),
        (
            "/v1/accounts?limit=101",
            Some(claims("t1", READ)),
            400,
            "invalid_request",
        ),
        (
            "/v1/accounts?limit=ten",
            Some(claims("t1", READ)),
            400,
            "invalid_request",
        ),
        ("/v1/accounts", Some(claims("t1", WRITE)), 403, "forbidden"),
        ("/v1/accounts", None, 401, "unauthenticated"),
        (
            "/v1/accounts/not-an-id",
            Some(claims("t1", READ)),
            404,
            "account_not_found",
        ),
    ];
    for (path, claims, status, code) in reads {
        call(&app, "GET", path, None, claims).await.assert_problem(status, code);
    }
}

#[tokio::test]
async fn dev_headers_count_only_when_the_dev_switch_is_on() {
    let stack = Stack::fresh().await;
    let mut app = stack.transactions_app();
    let mut event = api_event("POST", "/v1/accounts", Some(r#"{"currency":"USD"}"#), None);
    event["headers"]["x-fintx-tenant"] = json!("t1");
    event["headers"]["x-fintx-scopes"] = json!(WRITE);

    reply(transactions::handle(&app, request(&event)).await).assert_problem(401, "unauthenticated");
    assert_eq!(ledger_items(&stack).await, 0);

    app.dev_auth_headers = true;
    let r = reply(transactions::handle(&app, request(&event)).await);
    assert_eq!(r.status, 201, "{r:?}");
}

#[tokio::test]
async fn a_kms_failure_while_signing_a_cursor_is_an_opaque_503() {
    let stack = Stack::fresh().await;
    let mut app = stack.transactions_app();
    for _ in 0..2 {
        open(&app, "t1", json!({"currency": "USD"})).await;
    }
    app.cursor_keys = std::sync::Arc::new(fintx_adapters::kms::KmsCursorKeys::new(
        stack.kms.clone(),
        "00000000-0000-0000-0000-000000000000".into(),
    ));
    let r = call(&app, "GET", "/v1/accounts?limit=1", None, Some(claims("t1", READ))).await;
    r.assert_problem(503, "unavailable");
    assert_eq!(r.body["detail"], "The service is temporarily unavailable");
}

#[tokio::test]
async fn every_route_requires_its_scope_before_it_reads_anything() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let id = "acct_01jz0000000000000000000000";
    for route in transactions::ROUTES {
        let path = route.path.replace("{id}", id);
        let needed = route.scope.as_str();
        // Every other scope there is, but not this route's: refused before any I/O.
        let others: Vec<&str> = ["ledger:read", "ledger:write", "pii:read", "ops:read"]
            .into_iter()
            .filter(|s| *s != needed)
            .collect();
        let body = (route.method == "POST").then_some("{}");
        let refused = call(&app, route.method, &path, body, Some(claims("t1", &others.join(" ")))).await;
        refused.assert_problem(403, "forbidden");
        let allowed = call(&app, route.method, &path, body, Some(claims("t1", needed))).await;
        assert_ne!(allowed.status, 403, "{} {}: {allowed:?}", route.method, route.path);
    }
    assert_eq!(ledger_items(&stack).await, 0);
}
