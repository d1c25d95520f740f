//! Bank webhooks end to end: requests signed by the schemes' reference implementations
//! (Python `standardwebhooks` and `stripe`) go through the bank-webhooks handler, with the
//! real DynamoDB and KMS adapters against the emulator.

use std::sync::Arc;

use fintx_tests::{claims, key, reply, sign_webhook, webhook_event, Api, Reply, Stack};
use serde_json::{json, Value};

const BANK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BANK_SECRET_NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const STRIPE_SECRET: &str = "whsec_stripe_test_0123456789abcdef";

fn config() -> Value {
    json!({"connectors": {
        "demo-bank": {"scheme": "standard-webhooks", "secrets": [BANK_SECRET, BANK_SECRET_NEW], "tenants": ["t1"]},
        "demo-stripe": {"scheme": "stripe-v1", "secrets": [STRIPE_SECRET], "tenants": ["t1"]},
    }})
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn deliver(app: &bank_webhooks::App, connector: &str, body: &Value, id: Option<&str>) -> Reply {
    let text = body.to_string();
    let (scheme, secret) = if connector == "demo-stripe" {
        ("stripe-v1", STRIPE_SECRET)
    } else {
        ("standard-webhooks", BANK_SECRET)
    };
    let headers = sign_webhook(scheme, secret, &text, id, None);
    reply(bank_webhooks::handle(app, webhook_event(connector, &text, &headers)).await)
}

struct World {
    stack: Stack,
    transactions: transactions::App,
    webhooks: bank_webhooks::App,
}

async fn world() -> World {
    let stack = Stack::fresh().await;
    let mut transactions = stack.transactions_app();
    transactions.connectors = fintx_domain::payment::ConnectorGrant::parse_list("demo-bank=*,demo-stripe=*").unwrap();
    let webhooks = stack.webhooks_app(&config()).await;
    World {
        stack,
        transactions,
        webhooks,
    }
}

/// A customer account funded with 100.00 and a payment of `amount` through `connector`.
async fn paid(w: &World, connector: &str, amount: &str) -> (String, String, Value) {
    let api = Api::new(&w.transactions, "t1");
    let funder = api.open("USD", "100000").await;
    let customer = api.open("USD", "0").await;
    api.transfer(&funder, &customer, "100", "USD", false, &key()).await;
    let body = json!({"account_id": customer, "amount": amount, "currency": "USD", "connector": connector,
                      "counterparty": {"name": "Grace Hopper", "iban": "GB82WEST12345698765432"}});
    let payment = api.post("/v1/payments", body, &key()).await;
    assert_eq!(payment.status, 201, "{payment:?}");
    (customer, payment.body["id"].as_str().unwrap().to_owned(), payment.body)
}

async fn webhook_items(stack: &Stack) -> usize {
    stack.scan_all(&stack.tables.webhook_events).await.len()
}

#[tokio::test]
async fn a_settled_webhook_posts_the_payment_and_a_return_reverses_it() {
    let w = world().await;
    let api = Api::new(&w.transactions, "t1");
    let (customer, payment_id, payment) = paid(&w, "demo-bank", "40").await;
    assert_eq!(api.balance(&customer).await["pending_debits"], "40.00");

    let settled = deliver(
        &w.webhooks,
        "demo-bank",
        &json!({"type": "payment.settled", "data": {"payment_id": payment_id, "bank_reference": "B1"}}),
        None,
    )
    .await;
    assert_eq!((settled.status, &settled.body), (200, &json!({"outcome": "applied"})));
    fintx_tests::openapi::Contract::load().check("POST", "/v1/webhooks/{connector}", &settled);
    let p = api.get(&format!("/v1/payments/{payment_id}")).await;
    assert_eq!(
        (p.body["status"].as_str(), p.body["version"].as_u64()),
        (Some("settled"), Some(2))
    );
    let t = api
        .get(&format!("/v1/transfers/{}", payment["transfer_id"].as_str().unwrap()))
        .await;
    assert_eq!(t.body["status"], "posted");
    assert_eq!(
        api.balance(&customer).await,
        json!({"posted": "60.00", "pending_debits": "0.00", "pending_credits": "0.00", "available": "60.00"})
    );

    let returned = deliver(
        &w.webhooks,
        "demo-bank",
        &json!({"type": "payment.returned", "data": {"payment_id": payment_id, "reason": "account closed"}}),
        None,
    )
    .await;
    assert_eq!(returned.body, json!({"outcome": "applied"}));
    assert_eq!(
        api.get(&format!("/v1/payments/{payment_id}")).await.body["status"],
        "returned"
    );
    assert_eq!(api.balance(&customer).await["posted"], "100.00");
    let t = api
        .get(&format!("/v1/transfers/{}", payment["transfer_id"].as_str().unwrap()))
        .await;
    assert_eq!(t.body["reversed_amount"], "40.00");
}

#[tokio::test]
async fn a_failed_webhook_releases_the_hold_and_late_outcomes_are_rejected_and_recorded() {
    let w = world().await;
    let api = Api::new(&w.transactions, "t1");
    let (customer, payment_id, _) = paid(&w, "demo-stripe", "25").await;
    let failed = deliver(
        &w.webhooks,
        "demo-stripe",
        &json!({"id": "evt_f1", "type": "payment.failed", "data": {"payment_id": payment_id, "reason": "closed"}}),
        None,
    )
    .await;
    assert_eq!(failed.body, json!({"outcome": "applied"}));
    assert_eq!(
        api.balance(&customer).await,
        json!({"posted": "100.00", "pending_debits": "0.00", "pending_credits": "0.00", "available": "100.00"})
    );

    let late = deliver(
        &w.webhooks,
        "demo-stripe",
        &json!({"id": "evt_s1", "type": "payment.settled", "data": {"payment_id": payment_id}}),
        None,
    )
    .await;
    assert_eq!(
        (late.status, &late.body),
        (200, &json!({"outcome": "rejected", "code": "invalid_transition"}))
    );
    assert_eq!(
        api.balance(&customer).await["posted"],
        "100.00",
        "a rejected event moves no money"
    );

    // Returned before settled is out of order too.
    let (_, other_payment, _) = paid(&w, "demo-bank", "5").await;
    let early = deliver(
        &w.webhooks,
        "demo-bank",
        &json!({"type": "payment.returned", "data": {"payment_id": other_payment, "reason": "x"}}),
        None,
    )
    .await;
    assert_eq!(early.body, json!({"outcome": "rejected", "code": "invalid_transition"}));

    let listed = reply(
        bank_webhooks::handle(
            &w.webhooks,
            fintx_tests::request(&fintx_tests::api_event(
                "GET",
                "/v1/webhook-events?outcome=rejected",
                None,
                Some(claims("t1", "ledger:read")),
            )),
        )
        .await,
    );
    assert_eq!(listed.status, 200, "{listed:?}");
    fintx_tests::openapi::Contract::load().check("GET", "/v1/webhook-events", &listed);
    let types: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec!["payment.returned", "payment.settled"],
        "newest first, this tenant's rejected events"
    );
    let other_tenant = reply(
        bank_webhooks::handle(
            &w.webhooks,
            fintx_tests::request(&fintx_tests::api_event(
                "GET",
                "/v1/webhook-events?outcome=rejected",
                None,
                Some(claims("t2", "ledger:read")),
            )),
        )
        .await,
    );
    assert_eq!(other_tenant.body["data"], json!([]));
}

#[tokio::test]
async fn a_deposit_credits_the_account_once_per_bank_reference() {
    let w = world().await;
    let api = Api::new(&w.transactions, "t1");
    let account = api.open("EUR", "0").await;
    let deposit = |id: &str| json!({"id": id, "type": "deposit.received", "data": {"account_id": account, "amount": "12.34", "currency": "EUR", "bank_reference": "REF-77"}});
    let first = deliver(&w.webhooks, "demo-stripe", &deposit("evt_d1"), None).await;
    assert_eq!(first.body, json!({"outcome": "applied"}));
    let again = deliver(&w.webhooks, "demo-stripe", &deposit("evt_d2"), None).await;
    assert_eq!(
        again.body,
        json!({"outcome": "duplicate"}),
        "the same bank reference under a new event id"
    );
    assert_eq!(api.balance(&account).await["posted"], "12.34");
    let accounts = api.get("/v1/accounts?limit=100").await;
    let clearing: Vec<&Value> = accounts.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "clearing")
        .collect();
    assert_eq!(clearing.len(), 1);
    assert_eq!(
        clearing[0]["balance"]["posted"], "-12.34",
        "double entry: the clearing account mirrors the bank"
    );

    // A tenant the connector does not serve, and an unknown account.
    let foreign = Api::new(&w.transactions, "t2").open("EUR", "0").await;
    let r = deliver(&w.webhooks, "demo-stripe", &json!({"id": "evt_d3", "type": "deposit.received", "data": {"account_id": foreign, "amount": "1", "currency": "EUR", "bank_reference": "REF-78"}}), None).await;
    assert_eq!(r.body, json!({"outcome": "rejected", "code": "not_found"}));
    assert_eq!(
        Api::new(&w.transactions, "t2").balance(&foreign).await["posted"],
        "0.00"
    );
}

#[tokio::test]
async fn one_event_delivered_ten_times_applies_once() {
    let w = Arc::new(world().await);
    let (customer, payment_id, _) = paid(&w, "demo-bank", "10").await;
    let body = json!({"type": "payment.settled", "data": {"payment_id": payment_id}});
    let mut outcomes = Vec::new();
    // Five sequential deliveries, then five concurrent ones, all with one webhook id.
    for _ in 0..5 {
        outcomes.push(deliver(&w.webhooks, "demo-bank", &body, Some("msg_same")).await.body["outcome"].clone());
    }
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (w, body) = (w.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            deliver(&w.webhooks, "demo-bank", &body, Some("msg_same")).await
        }));
    }
    for t in tasks {
        outcomes.push(t.await.unwrap().body["outcome"].clone());
    }
    assert_eq!(outcomes.iter().filter(|o| *o == "applied").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "duplicate").count(), 9, "{outcomes:?}");
    assert_eq!(
        Api::new(&w.transactions, "t1").balance(&customer).await["posted"],
        "90.00"
    );
}

#[tokio::test]
async fn a_connector_may_only_touch_its_own_payments() {
    let w = world().await;
    let (customer, payment_id, _) = paid(&w, "demo-bank", "10").await;
    let r = deliver(
        &w.webhooks,
        "demo-stripe",
        &json!({"id": "evt_x", "type": "payment.settled", "data": {"payment_id": payment_id}}),
        None,
    )
    .await;
    assert_eq!(r.body, json!({"outcome": "rejected", "code": "not_found"}));
    assert_eq!(
        Api::new(&w.transactions, "t1").balance(&customer).await["pending_debits"],
        "10.00"
    );
    let unknown = deliver(
        &w.webhooks,
        "demo-bank",
        &json!({"type": "payment.settled", "data": {"payment_id": "pay_01jf3zq4v8w6k2m9n5p7r1t3x9"}}),
        None,
    )
    .await;
    assert_eq!(unknown.body, json!({"outcome": "rejected", "code": "not_found"}));
    let ignored = deliver(
        &w.webhooks,
        "demo-bank",
        &json!({"type": "account.updated", "data": {}}),
        None,
    )
    .await;
    assert_eq!(ignored.body, json!({"outcome": "ignored"}));
    // Events that resolve to no tenant are for operators.
    let ops = reply(
        bank_webhooks::handle(
            &w.webhooks,
            fintx_tests::request(&fintx_tests::api_event(
                "GET",
                "/v1/webhook-events?outcome=rejected&unresolved=true",
                None,
                Some(claims("t1", "ledger:read ops:read")),
            )),
        )
        .await,
    );
    assert_eq!(ops.body["data"].as_array().unwrap().len(), 2, "{ops:?}");
    let no_ops = reply(
        bank_webhooks::handle(
            &w.webhooks,
            fintx_tests::request(&fintx_tests::api_event(
                "GET",
                "/v1/webhook-events?outcome=rejected&unresolved=true",
                None,
                Some(claims("t1", "ledger:read")),
            )),
        )
        .await,
    );
    no_ops.assert_problem(403, "forbidden");
}

#[tokio::test]
async fn bad_signatures_and_stale_timestamps_are_refused_before_anything_is_written() {
    let w = world().await;
    let (customer, payment_id, _) = paid(&w, "demo-bank", "10").await;
    let before = webhook_items(&w.stack).await;
    let body = json!({"type": "payment.settled", "data": {"payment_id": payment_id}}).to_string();
    let send = |connector: &'static str, body: String, headers: Vec<(String, String)>| {
        let app = &w.webhooks;
        async move { reply(bank_webhooks::handle(app, webhook_event(connector, &body, &headers)).await) }
    };
    let wrong_secret = sign_webhook(
        "standard-webhooks",
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &body,
        None,
        None,
    );
    let refused = send("demo-bank", body.clone(), wrong_secret).await;
    refused.assert_problem(401, "invalid_signature");
    fintx_tests::openapi::Contract::load().check("POST", "/v1/webhooks/{connector}", &refused);
    let stale = sign_webhook("standard-webhooks", BANK_SECRET, &body, None, Some(now() - 360));
    send("demo-bank", body.clone(), stale)
        .await
        .assert_problem(401, "timestamp_out_of_tolerance");
    let future = sign_webhook("standard-webhooks", BANK_SECRET, &body, None, Some(now() + 360));
    send("demo-bank", body.clone(), future)
        .await
        .assert_problem(401, "timestamp_out_of_tolerance");
    let good = sign_webhook("standard-webhooks", BANK_SECRET, &body, None, None);
    let changed = body.replacen("settled", "settleD", 1);
    send("demo-bank", changed, good.clone())
        .await
        .assert_problem(401, "invalid_signature");
    let missing: Vec<_> = good.iter().filter(|(k, _)| k != "webhook-signature").cloned().collect();
    send("demo-bank", body.clone(), missing)
        .await
        .assert_problem(401, "invalid_signature");
    send("no-such-bank", body.clone(), good.clone())
        .await
        .assert_problem(404, "unknown_connector");
    let stripe_wrong = sign_webhook("stripe-v1", "whsec_wrong_wrong_wrong_wrong", &body, None, None);
    send("demo-stripe", body.clone(), stripe_wrong)
        .await
        .assert_problem(401, "invalid_signature");
    let stripe_stale = sign_webhook("stripe-v1", STRIPE_SECRET, &body, None, Some(now() - 400));
    send("demo-stripe", body.clone(), stripe_stale)
        .await
        .assert_problem(401, "timestamp_out_of_tolerance");
    let huge = "x".repeat(256 * 1024 + 1);
    send("demo-bank", huge, good)
        .await
        .assert_problem(413, "payload_too_large");

    assert_eq!(
        webhook_items(&w.stack).await,
        before,
        "a refused webhook wrote something"
    );
    assert_eq!(
        Api::new(&w.transactions, "t1").balance(&customer).await["pending_debits"],
        "10.00"
    );

    // The rotated-in secret verifies too.
    let rotated = sign_webhook("standard-webhooks", BANK_SECRET_NEW, &body, None, None);
    assert_eq!(
        send("demo-bank", body, rotated).await.body,
        json!({"outcome": "applied"})
    );
}

#[tokio::test]
async fn raw_bodies_are_archived_encrypted() {
    let w = world().await;
    let account = Api::new(&w.transactions, "t1").open("USD", "0").await;
    let marker = "SECRET-BANK-MEMO-4471";
    let r = deliver(&w.webhooks, "demo-bank", &json!({"type": "deposit.received", "data": {"account_id": account, "amount": "1", "currency": "USD", "bank_reference": marker}}), None).await;
    assert_eq!(r.body, json!({"outcome": "applied"}));
    let items = w.stack.scan_all(&w.stack.tables.webhook_events).await;
    let archived: Vec<_> = items.iter().filter(|i| i.contains_key("raw_body_sealed")).collect();
    assert_eq!(archived.len(), 1);
    for item in &items {
        if let Some(aws_sdk_dynamodb::types::AttributeValue::B(b)) = item.get("raw_body_sealed") {
            assert!(!String::from_utf8_lossy(b.as_ref()).contains(marker));
        }
    }
}

#[tokio::test]
async fn a_connector_configuration_that_does_not_decrypt_refuses_to_load() {
    use base64::Engine;
    let stack = Stack::fresh().await;
    let encrypt = |context: &'static str, plaintext: String| {
        let kms = stack.kms.clone();
        let key_id = stack.kms_key_id.clone();
        async move {
            let blob = kms
                .encrypt()
                .key_id(key_id)
                .plaintext(aws_sdk_kms::primitives::Blob::new(plaintext.into_bytes()))
                .encryption_context("purpose", context)
                .send()
                .await
                .unwrap()
                .ciphertext_blob
                .unwrap();
            base64::engine::general_purpose::STANDARD.encode(blob.as_ref())
        }
    };
    let wrong_context = encrypt("something-else", config().to_string()).await;
    assert!(fintx_adapters::kms::load_connectors(&stack.kms, &wrong_context)
        .await
        .is_err());
    assert!(
        fintx_adapters::kms::load_connectors(&stack.kms, "bm90IGEgY2lwaGVydGV4dA==")
            .await
            .is_err()
    );
    assert!(fintx_adapters::kms::load_connectors(&stack.kms, "%%%").await.is_err());
    let bad_secret = json!({"connectors": {"b": {"scheme": "standard-webhooks", "secrets": ["plain"], "tenants": []}}});
    let bad = encrypt("connector-config", bad_secret.to_string()).await;
    assert!(fintx_adapters::kms::load_connectors(&stack.kms, &bad).await.is_err());
    let good = encrypt("connector-config", config().to_string()).await;
    assert_eq!(
        fintx_adapters::kms::load_connectors(&stack.kms, &good)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn an_applied_event_costs_its_reads_and_one_write() {
    let mut w = world().await;
    let counter = fintx_tests::CallCounter::default();
    w.webhooks.store = Arc::new(fintx_adapters::dynamo::DynamoStore::new(
        w.stack.counted_dynamo(&counter).await,
        w.stack.tables.clone(),
    ));
    let (_, payment_id, _) = paid(&w, "demo-bank", "10").await;
    counter.reset();
    let r = deliver(
        &w.webhooks,
        "demo-bank",
        &json!({"type": "payment.settled", "data": {"payment_id": payment_id}}),
        Some("msg_rt"),
    )
    .await;
    assert_eq!(r.body, json!({"outcome": "applied"}));
    // The payment with its transfer (which carries the payment's ULID) in one read; the
    // clearing account is named by its key; one transaction.
    assert_eq!(
        (
            counter.count("TransactGetItems"),
            counter.count("TransactWriteItems"),
            counter.total()
        ),
        (1, 1, 2)
    );
    counter.reset();
    deliver(
        &w.webhooks,
        "demo-bank",
        &json!({"type": "payment.settled", "data": {"payment_id": payment_id}}),
        Some("msg_rt"),
    )
    .await;
    assert_eq!(counter.total(), 1, "a duplicate costs one read");
}

#[tokio::test]
async fn a_transient_failure_answers_503_writes_nothing_and_the_retry_applies() {
    let mut w = world().await;
    let (customer, payment_id, _) = paid(&w, "demo-bank", "10").await;
    let healthy = w.webhooks.cipher.clone();
    let base = fintx_adapters::aws::sdk_config().unwrap();
    let down = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&base)
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    w.webhooks.cipher = Arc::new(w.stack.cipher(down, Default::default()));
    let before = webhook_items(&w.stack).await;
    let body = json!({"type": "payment.settled", "data": {"payment_id": payment_id}});
    let r = deliver(&w.webhooks, "demo-bank", &body, Some("msg_retry")).await;
    r.assert_problem(503, "encryption_unavailable");
    assert_eq!(webhook_items(&w.stack).await, before, "nothing recorded");
    assert_eq!(
        Api::new(&w.transactions, "t1").balance(&customer).await["pending_debits"],
        "10.00",
        "nothing applied"
    );
    // The bank retries the same event once KMS is back.
    w.webhooks.cipher = healthy;
    let retried = deliver(&w.webhooks, "demo-bank", &body, Some("msg_retry")).await;
    assert_eq!(retried.body, json!({"outcome": "applied"}));
}

#[tokio::test]
async fn until_the_connector_configuration_loads_every_webhook_is_refused_and_the_next_tries_again() {
    let w = world().await;
    let (customer, _, _) = paid(&w, "demo-bank", "10").await;
    let state = tokio::sync::OnceCell::new();
    let body = json!({"type": "deposit.received", "data": {"account_id": customer, "amount": "5",
                      "currency": "USD", "bank_reference": "ref-lazy"}});
    let text = body.to_string();
    let headers = sign_webhook("standard-webhooks", BANK_SECRET, &text, Some("msg_lazy"), None);
    let before = webhook_items(&w.stack).await;
    let attempts = std::sync::atomic::AtomicU32::new(0);
    // The decrypt fails (KMS unreachable, say): refused, nothing read or written.
    let failing = || async {
        attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err::<bank_webhooks::App, String>("KMS unavailable".to_owned())
    };
    let r = reply(bank_webhooks::handle_loaded(&state, failing, webhook_event("demo-bank", &text, &headers)).await);
    r.assert_problem(503, "unavailable");
    assert_eq!(webhook_items(&w.stack).await, before);
    // The next delivery tries the decrypt again; loaded, it applies, and the state stays.
    let app = w.stack.webhooks_app(&config()).await;
    let r = reply(
        bank_webhooks::handle_loaded(
            &state,
            || async { Ok(app) },
            webhook_event("demo-bank", &text, &headers),
        )
        .await,
    );
    assert_eq!(r.body, json!({"outcome": "applied"}));
    let r = reply(bank_webhooks::handle_loaded(&state, failing, webhook_event("demo-bank", &text, &headers)).await);
    assert_eq!(r.body, json!({"outcome": "duplicate"}));
    assert_eq!(
        attempts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "loaded once, never again"
    );
    let balance = Api::new(&w.transactions, "t1").balance(&customer).await;
    assert_eq!(balance["posted"], "105.00");
}
