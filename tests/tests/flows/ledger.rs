//! The ledger end to end against the single-threaded emulator: transfers, holds,
//! reversals, payments, idempotency, races and round trips.

use std::sync::Arc;

use fintx_tests::openapi::Contract;
use fintx_tests::{key, Api, Stack};
use serde_json::{json, Value};

fn posted(balance: &Value) -> &str {
    balance["posted"].as_str().unwrap()
}

#[tokio::test]
async fn a_transfer_debits_one_account_and_credits_the_other_by_the_same_amount() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let api = Api::new(&app, "t1");
    let contract = Contract::load();
    let a = api.open("USD", "100").await;
    let b = api.open("USD", "0").await;

    let r = api.transfer(&a, &b, "12.5", "USD", false, &key()).await;
    assert_eq!(r.status, 201, "{r:?}");
    contract.check("POST", "/v1/transfers", &r);
    assert_eq!(
        (
            r.body["status"].as_str(),
            r.body["amount"].as_str(),
            r.body["posted_amount"].as_str()
        ),
        (Some("posted"), Some("12.50"), Some("12.50"))
    );
    assert_eq!(
        api.balance(&a).await,
        json!({"posted": "-12.50", "pending_debits": "0.00", "pending_credits": "0.00", "available": "-12.50"})
    );
    assert_eq!(
        api.balance(&b).await,
        json!({"posted": "12.50", "pending_debits": "0.00", "pending_credits": "0.00", "available": "12.50"})
    );

    let id = r.body["id"].as_str().unwrap();
    let fetched = api.get(&format!("/v1/transfers/{id}")).await;
    contract.check("GET", "/v1/transfers/{id}", &fetched);
    assert_eq!(fetched.body, r.body);
    for account in [&a, &b] {
        let listed = api.get(&format!("/v1/accounts/{account}/transfers")).await;
        contract.check("GET", "/v1/accounts/{id}/transfers", &listed);
        assert_eq!(listed.body["data"], json!([r.body.clone()]));
    }
    // Another tenant sees none of it.
    let other = Api::new(&app, "t2");
    other
        .get(&format!("/v1/transfers/{id}"))
        .await
        .assert_problem(404, "not_found");
    other
        .get(&format!("/v1/accounts/{a}/transfers"))
        .await
        .assert_problem(404, "account_not_found");
}

#[tokio::test]
async fn a_hold_is_placed_partially_posted_and_the_rest_released() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let api = Api::new(&app, "t1");
    let contract = Contract::load();
    let a = api.open("EUR", "500").await;
    let b = api.open("EUR", "0").await;

    let hold = api.transfer(&a, &b, "100", "EUR", true, &key()).await;
    assert_eq!((hold.status, hold.body["status"].as_str()), (201, Some("pending")));
    assert_eq!(
        api.balance(&a).await,
        json!({"posted": "0.00", "pending_debits": "100.00", "pending_credits": "0.00", "available": "-100.00"})
    );
    assert_eq!(api.balance(&b).await["pending_credits"], "100.00");

    let id = hold.body["id"].as_str().unwrap();
    let posted_60 = api
        .post(&format!("/v1/transfers/{id}/post"), json!({"amount": "60"}), &key())
        .await;
    assert_eq!(posted_60.status, 200, "{posted_60:?}");
    contract.check("POST", "/v1/transfers/{id}/post", &posted_60);
    assert_eq!(
        (
            posted_60.body["status"].as_str(),
            posted_60.body["posted_amount"].as_str()
        ),
        (Some("posted"), Some("60.00"))
    );
    assert_eq!(posted_60.body["version"], 2);
    assert_eq!(
        api.balance(&a).await,
        json!({"posted": "-60.00", "pending_debits": "0.00", "pending_credits": "0.00", "available": "-60.00"})
    );
    assert_eq!(
        api.balance(&b).await,
        json!({"posted": "60.00", "pending_debits": "0.00", "pending_credits": "0.00", "available": "60.00"})
    );

    // Posting the same amount again (new key) answers the transfer unchanged; posting
    // another amount (no amount is the whole hold) and voiding are refused.
    let again = api
        .post(&format!("/v1/transfers/{id}/post"), json!({"amount": "60"}), &key())
        .await;
    assert_eq!((again.status, &again.body), (200, &posted_60.body));
    api.post(&format!("/v1/transfers/{id}/post"), json!({}), &key())
        .await
        .assert_problem(409, "invalid_transition");
    let void = api.post(&format!("/v1/transfers/{id}/void"), json!({}), &key()).await;
    void.assert_problem(409, "invalid_transition");
    contract.check("POST", "/v1/transfers/{id}/void", &void);

    let hold2 = api.transfer(&a, &b, "10", "EUR", true, &key()).await;
    let id2 = hold2.body["id"].as_str().unwrap();
    let voided = api.post(&format!("/v1/transfers/{id2}/void"), json!({}), &key()).await;
    assert_eq!((voided.status, voided.body["status"].as_str()), (200, Some("voided")));
    api.post(&format!("/v1/transfers/{id2}/post"), json!({}), &key())
        .await
        .assert_problem(409, "invalid_transition");
    api.post(&format!("/v1/transfers/{id2}/reverse"), json!({}), &key())
        .await
        .assert_problem(409, "invalid_transition");
    assert_eq!(api.balance(&a).await["pending_debits"], "0.00");
    let over = api.transfer(&a, &b, "10", "EUR", true, &key()).await;
    let over_id = over.body["id"].as_str().unwrap();
    api.post(
        &format!("/v1/transfers/{over_id}/post"),
        json!({"amount": "10.01"}),
        &key(),
    )
    .await
    .assert_problem(400, "invalid_amount");
}

#[tokio::test]
async fn reversals_never_exceed_the_posted_amount() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let api = Api::new(&app, "t1");
    let a = api.open("USD", "1000").await;
    let b = api.open("USD", "0").await;
    let t = api.transfer(&a, &b, "60", "USD", false, &key()).await;
    let id = t.body["id"].as_str().unwrap();

    let r1 = api
        .post(
            &format!("/v1/transfers/{id}/reverse"),
            json!({"amount": "25", "description": "partial refund"}),
            &key(),
        )
        .await;
    assert_eq!(r1.status, 201, "{r1:?}");
    Contract::load().check("POST", "/v1/transfers/{id}/reverse", &r1);
    assert_eq!(r1.body["reverses"], id);
    assert_eq!(
        (
            r1.body["debit_account_id"].as_str(),
            r1.body["credit_account_id"].as_str()
        ),
        (Some(b.as_str()), Some(a.as_str()))
    );
    let original = api.get(&format!("/v1/transfers/{id}")).await;
    assert_eq!(original.body["reversed_amount"], "25.00");

    api.post(
        &format!("/v1/transfers/{id}/reverse"),
        json!({"amount": "35.01"}),
        &key(),
    )
    .await
    .assert_problem(422, "reversal_exceeds_amount");
    let rest = api
        .post(&format!("/v1/transfers/{id}/reverse"), json!({}), &key())
        .await;
    assert_eq!((rest.status, rest.body["amount"].as_str()), (201, Some("35.00")));
    api.post(&format!("/v1/transfers/{id}/reverse"), json!({}), &key())
        .await
        .assert_problem(422, "reversal_exceeds_amount");
    assert_eq!(posted(&api.balance(&a).await), "0.00");
    assert_eq!(posted(&api.balance(&b).await), "0.00");
}

#[tokio::test]
async fn the_same_key_replays_the_first_response_and_a_different_request_is_refused() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let api = Api::new(&app, "t1");
    let a = api.open("USD", "100").await;
    let b = api.open("USD", "0").await;
    let k = key();

    let first = api.transfer(&a, &b, "5", "USD", false, &k).await;
    let second = api.transfer(&a, &b, "5", "USD", false, &k).await;
    assert_eq!(first.status, 201);
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!((second.status, &second.body), (201, &first.body));
    assert_eq!(second.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(posted(&api.balance(&a).await), "-5.00", "the replay moved no money");

    // Same key, different body (or key order that changes nothing is the same body).
    let reordered =
        json!({"currency": "USD", "amount": "5", "credit_account_id": b, "debit_account_id": a, "pending": false});
    assert_eq!(api.post("/v1/transfers", reordered, &k).await.status, 201);
    api.transfer(&a, &b, "6", "USD", false, &k)
        .await
        .assert_problem(422, "idempotency_key_reused");
    // The same key on another tenant is another key.
    let other = Api::new(&app, "t2");
    other
        .transfer(&a, &b, "5", "USD", false, &k)
        .await
        .assert_problem(404, "account_not_found");

    // A business refusal is recorded and replayed even after the situation changed.
    let k2 = key();
    let refused = api.transfer(&a, &b, "96", "USD", false, &k2).await;
    refused.assert_problem(422, "insufficient_funds");
    let funder = api.open("USD", "1000").await;
    api.transfer(&funder, &a, "500", "USD", false, &key()).await;
    let replayed = api.transfer(&a, &b, "96", "USD", false, &k2).await;
    replayed.assert_problem(422, "insufficient_funds");
    assert_eq!(replayed.headers.get("idempotent-replayed").unwrap(), "true");

    // Money-moving routes need a key.
    let r = api
        .send(
            "POST",
            "/v1/transfers",
            Some(&json!({"debit_account_id": a, "credit_account_id": b, "amount": "1", "currency": "USD"})),
            None,
        )
        .await;
    r.assert_problem(400, "idempotency_key_missing");
}

#[tokio::test]
async fn a_transient_failure_is_not_recorded_so_a_retry_succeeds() {
    let stack = Stack::fresh().await;
    let mut app = stack.transactions_app();
    let healthy = app.cipher.clone();
    let a = Api::new(&app, "t1").open("USD", "100").await;
    let base = fintx_adapters::aws::sdk_config().unwrap();
    let down = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&base)
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    app.cipher = Arc::new(stack.cipher(down, Default::default()));
    let body = json!({"account_id": a, "amount": "10", "currency": "USD", "connector": "demo-bank",
                      "counterparty": {"name": "Ada Lovelace", "iban": "GB82WEST12345698765432"}});
    let k = key();
    Api::new(&app, "t1")
        .post("/v1/payments", body.clone(), &k)
        .await
        .assert_problem(503, "encryption_unavailable");
    app.cipher = healthy;
    let api = Api::new(&app, "t1");
    let ok = api.post("/v1/payments", body, &k).await;
    assert_eq!(ok.status, 201, "{ok:?}");
    assert!(ok.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn every_ledger_error_code_has_its_status() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let api = Api::new(&app, "t1");
    let contract = Contract::load();
    let usd = api.open("USD", "10").await;
    let usd2 = api.open("USD", "0").await;
    let eur = api.open("EUR", "0").await;
    let foreign = Api::new(&app, "t2").open("USD", "0").await;
    let missing = "acct_01jf3zq4v8w6k2m9n5p7r1t3x9";
    let cases = [
        (
            json!({"debit_account_id": usd, "credit_account_id": eur, "amount": "1", "currency": "USD"}),
            422,
            "currency_mismatch",
        ),
        (
            json!({"debit_account_id": usd, "credit_account_id": usd, "amount": "1", "currency": "USD"}),
            422,
            "same_account",
        ),
        (
            json!({"debit_account_id": usd, "credit_account_id": foreign, "amount": "1", "currency": "USD"}),
            404,
            "account_not_found",
        ),
        (
            json!({"debit_account_id": missing, "credit_account_id": usd, "amount": "1", "currency": "USD"}),
            404,
            "account_not_found",
        ),
        (
            json!({"debit_account_id": usd, "credit_account_id": usd2, "amount": "10.01", "currency": "USD"}),
            422,
            "insufficient_funds",
        ),
        (
            json!({"debit_account_id": usd, "credit_account_id": usd2, "amount": 1, "currency": "USD"}),
            400,
            "invalid_amount",
        ),
        (
            json!({"debit_account_id": usd, "credit_account_id": usd2, "amount": "1.005", "currency": "USD"}),
            400,
            "invalid_amount",
        ),
        (
            json!({"debit_account_id": usd, "credit_account_id": usd2, "amount": "0", "currency": "USD"}),
            400,
            "invalid_amount",
        ),
        (
            json!({"debit_account_id": usd, "credit_account_id": usd2, "amount": "1", "currency": "ZZZ"}),
            400,
            "invalid_currency",
        ),
        (
            json!({"debit_account_id": usd, "credit_account_id": usd2, "amount": "1", "currency": "USD", "fee": "1"}),
            400,
            "unknown_field",
        ),
        (
            json!({"debit_account_id": usd, "credit_account_id": usd2, "currency": "USD"}),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let r = api.post("/v1/transfers", body.clone(), &key()).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (status, Some(code)),
            "{body}: {r:?}"
        );
        contract.check("POST", "/v1/transfers", &r);
    }
    api.get("/v1/transfers/tr_01jf3zq4v8w6k2m9n5p7r1t3x9")
        .await
        .assert_problem(404, "not_found");
    api.get("/v1/payments/pay_01jf3zq4v8w6k2m9n5p7r1t3x9")
        .await
        .assert_problem(404, "not_found");
    let payment = json!({"account_id": usd, "amount": "1", "currency": "USD", "connector": "nobank", "counterparty": {"name": "X"}});
    api.post("/v1/payments", payment, &key())
        .await
        .assert_problem(404, "unknown_connector");
    assert_eq!(
        posted(&api.balance(&usd).await),
        "0.00",
        "no refused request moved money"
    );
}

#[tokio::test]
async fn currencies_without_and_with_three_minor_units_move_exactly() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let api = Api::new(&app, "t1");
    let j1 = api.open("JPY", "1000").await;
    let j2 = api.open("JPY", "0").await;
    assert_eq!(
        api.transfer(&j1, &j2, "999", "JPY", false, &key()).await.body["amount"],
        "999"
    );
    api.transfer(&j1, &j2, "1.5", "JPY", false, &key())
        .await
        .assert_problem(400, "invalid_amount");
    assert_eq!(api.balance(&j2).await["posted"], "999");
    let k1 = api.open("KWD", "1").await;
    let k2 = api.open("KWD", "0").await;
    let r = api.transfer(&k1, &k2, "0.125", "KWD", false, &key()).await;
    assert_eq!(r.body["amount"], "0.125");
    assert_eq!(api.balance(&k1).await["available"], "-0.125");

    // The largest amount, twice: balances hold sums far beyond one amount exactly.
    let max = "999999999999999.99";
    let big = api.open("USD", max).await;
    let big2 = api.open("USD", max).await;
    let sink = api.open("USD", "0").await;
    for from in [&big, &big2] {
        let r = api.transfer(from, &sink, max, "USD", false, &key()).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    assert_eq!(api.balance(&sink).await["posted"], "1999999999999999.98");
    api.transfer(&big, &sink, "1000000000000000", "USD", false, &key())
        .await
        .assert_problem(400, "invalid_amount");
}

#[tokio::test]
async fn fifty_concurrent_transfers_from_an_account_with_funds_for_thirty_settle_exactly() {
    let stack = Stack::fresh().await;
    let app = Arc::new(stack.transactions_app());
    let api = Api::new(&app, "t1");
    let funder = api.open("USD", "1000").await;
    let hot = api.open("USD", "0").await;
    let sink = api.open("USD", "0").await;
    assert_eq!(
        api.transfer(&funder, &hot, "30", "USD", false, &key()).await.status,
        201
    );

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (app, hot, sink) = (app.clone(), hot.clone(), sink.clone());
        tasks.push(tokio::spawn(async move {
            Api::new(&app, "t1")
                .transfer(&hot, &sink, "1", "USD", false, &key())
                .await
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match (r.status, r.body["code"].as_str()) {
            (201, _) => ok += 1,
            (422, Some("insufficient_funds")) => refused += 1,
            other => panic!("unexpected outcome {other:?}: {r:?}"),
        }
    }
    assert_eq!((ok, refused), (30, 20));
    assert_eq!(
        api.balance(&hot).await,
        json!({"posted": "0.00", "pending_debits": "0.00", "pending_credits": "0.00", "available": "0.00"})
    );
    assert_eq!(posted(&api.balance(&sink).await), "30.00");
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_make_exactly_one_transfer() {
    let stack = Stack::fresh().await;
    let app = Arc::new(stack.transactions_app());
    let api = Api::new(&app, "t1");
    let a = api.open("USD", "1000").await;
    let b = api.open("USD", "0").await;
    let k = key();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (app, a, b, k) = (app.clone(), a.clone(), b.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            Api::new(&app, "t1").transfer(&a, &b, "7", "USD", false, &k).await
        }));
    }
    // The emulator serves one request at a time, so no transaction is ever in flight
    // beside another: every request answers 201, the first as itself and the other 19 as
    // replays of it. (The in-flight 409 is asserted in side_doors.rs, where the store
    // holds a transaction in flight as DynamoDB does.)
    let mut bodies = Vec::new();
    let mut replays = 0;
    for task in tasks {
        let r = task.await.unwrap();
        assert_eq!(r.status, 201, "{r:?}");
        replays += usize::from(r.headers.get("idempotent-replayed").is_some());
        bodies.push(r.body);
    }
    assert_eq!(replays, 19, "exactly one request executed");
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "every answer is the same transfer"
    );
    assert_eq!(posted(&api.balance(&b).await), "7.00");
    let listed = api.get(&format!("/v1/accounts/{a}/transfers")).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_concurrent_post_and_void_of_one_hold_has_exactly_one_winner() {
    let stack = Stack::fresh().await;
    let app = Arc::new(stack.transactions_app());
    let api = Api::new(&app, "t1");
    let a = api.open("USD", "1000").await;
    let b = api.open("USD", "0").await;
    for _ in 0..5 {
        let hold = api.transfer(&a, &b, "10", "USD", true, &key()).await;
        let id = hold.body["id"].as_str().unwrap().to_owned();
        let mut tasks = Vec::new();
        for action in ["post", "void"] {
            let (app, id) = (app.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                Api::new(&app, "t1")
                    .post(&format!("/v1/transfers/{id}/{action}"), json!({}), &key())
                    .await
            }));
        }
        let results: Vec<_> = futures_join(tasks).await;
        let winners = results.iter().filter(|r| r.status == 200).count();
        let losers = results
            .iter()
            .filter(|r| r.status == 409 && r.body["code"] == "invalid_transition")
            .count();
        assert_eq!((winners, losers), (1, 1), "{results:?}");
    }
    let a_balance = api.balance(&a).await;
    assert_eq!(a_balance["pending_debits"], "0.00");
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn payments_hold_money_in_the_connectors_clearing_account_created_exactly_once() {
    let stack = Stack::fresh().await;
    let app = Arc::new(stack.transactions_app());
    let api = Api::new(&app, "t1");
    let contract = Contract::load();
    let a = api.open("USD", "1000").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (app, a) = (app.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"account_id": a, "amount": format!("{}.00", i + 1), "currency": "USD", "connector": "demo-bank",
                              "counterparty": {"name": "Ada Lovelace", "account_number": "000123456789", "routing_number": "021000021"},
                              "reference": "invoice"});
            Api::new(&app, "t1").post("/v1/payments", body, &key()).await
        }));
    }
    let payments = futures_join(tasks).await;
    for p in &payments {
        assert_eq!(p.status, 201, "{p:?}");
        contract.check("POST", "/v1/payments", p);
        assert_eq!(
            p.body["counterparty"],
            json!({"name_initials": "A.L.", "account_number_last4": "6789", "iban_last4": null})
        );
    }
    let accounts = api.get("/v1/accounts?limit=100").await;
    let clearing: Vec<&Value> = accounts.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == "clearing")
        .collect();
    assert_eq!(
        clearing.len(),
        1,
        "one clearing account for the tenant, connector and currency"
    );
    assert_eq!(clearing[0]["balance"]["pending_credits"], "36.00");
    assert_eq!(api.balance(&a).await["pending_debits"], "36.00");

    let first = &payments[0].body;
    let fetched = api
        .get(&format!("/v1/payments/{}", first["id"].as_str().unwrap()))
        .await;
    contract.check("GET", "/v1/payments/{id}", &fetched);
    assert_eq!(&fetched.body, first);
    let transfer = api
        .get(&format!("/v1/transfers/{}", first["transfer_id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (
            transfer.body["status"].as_str(),
            transfer.body["credit_account_id"].as_str()
        ),
        (Some("pending"), clearing[0]["id"].as_str())
    );
    // The counterparty is stored sealed.
    for item in stack.scan_all(&stack.tables.ledger).await {
        assert!(!format!("{item:?}").contains("Lovelace"));
    }
}
