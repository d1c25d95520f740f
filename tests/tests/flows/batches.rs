//! Linked transfers (SPEC §6) against the emulator: all or nothing in one
//! `TransactWriteItems`, applied in order, a refusal naming the transfer's `index`, an
//! exchange between two currencies, and the largest batch DynamoDB's 100 actions allow.

use fintx_tests::{calls, key, Api, Counted, READ, WRITE};
use serde_json::{json, Value};

async fn counted() -> (Counted, fintx_tests::CallCounter, std::sync::Arc<transactions::App>) {
    let c = Counted::new().await;
    let (counter, app) = (c.counter.clone(), c.transactions.clone());
    (c, counter, app)
}

fn t(debit: &str, credit: &str, amount: &str, currency: &str) -> Value {
    json!({"debit_account_id": debit, "credit_account_id": credit, "amount": amount, "currency": currency})
}

async fn batch(api: &Api<'_>, transfers: Vec<Value>, key: &str) -> fintx_tests::Reply {
    api.post("/v1/transfer-batches", json!({ "transfers": transfers }), key)
        .await
}

#[tokio::test]
async fn a_batch_commits_in_one_write_in_order_and_a_refusal_names_its_transfer() {
    let (_stack, counter, app) = counted().await;
    let api = Api::new(&app, "t1");
    let funder = api.open("USD", "1000").await;
    let a = api.open("USD", "0").await;
    let b = api.open("USD", "0").await;
    api.transfer(&funder, &a, "10", "USD", false, &key()).await;

    // a pays 10 it has, receives 5, pays those 5 on: in order, each is covered.
    counter.reset();
    let k = key();
    let done = batch(
        &api,
        vec![
            t(&a, &b, "10", "USD"),
            t(&funder, &a, "5", "USD"),
            t(&a, &b, "5", "USD"),
        ],
        &k,
    )
    .await;
    assert_eq!(done.status, 201, "{done:?}");
    assert_eq!(counter.take(), calls(&[WRITE]), "one write, no read");
    let id = done.body["id"].as_str().unwrap();
    assert!(id.starts_with("bat_"));
    let transfers = done.body["transfers"].as_array().unwrap();
    assert_eq!(transfers.len(), 3);
    assert!(transfers.iter().all(|x| x["batch_id"] == id && x["status"] == "posted"));
    assert_eq!(transfers[1]["amount"], "5.00");
    assert_eq!(api.balance(&a).await["posted"], "0.00");
    assert_eq!(api.balance(&b).await["posted"], "15.00");
    let replay = batch(
        &api,
        vec![
            t(&a, &b, "10", "USD"),
            t(&funder, &a, "5", "USD"),
            t(&a, &b, "5", "USD"),
        ],
        &k,
    )
    .await;
    assert_eq!((replay.status, &replay.body), (201, &done.body));
    let read = api
        .get(&format!("/v1/transfers/{}", transfers[2]["id"].as_str().unwrap()))
        .await;
    assert_eq!(read.body["batch_id"], id);

    // The same shape now: a has nothing, so the first transfer refuses it; in another
    // order, the second. Nothing of either is written.
    counter.reset();
    let refused = batch(
        &api,
        vec![
            t(&funder, &b, "1", "USD"),
            t(&a, &b, "10", "USD"),
            t(&funder, &a, "10", "USD"),
        ],
        &key(),
    )
    .await;
    refused.assert_problem(422, "insufficient_funds");
    assert_eq!(refused.body["index"], 1);
    assert_eq!(
        counter.take(),
        calls(&[WRITE, READ, WRITE]),
        "refused, read to name the transfer, recorded"
    );
    let unknown = "acct_01jf3zq4v8w6k2m9n5p7r1t3x5";
    let missing = batch(
        &api,
        vec![t(&funder, &b, "1", "USD"), t(&funder, unknown, "1", "USD")],
        &key(),
    )
    .await;
    missing.assert_problem(404, "account_not_found");
    assert_eq!(missing.body["index"], 1);
    let malformed = batch(
        &api,
        vec![
            t(&funder, &b, "1", "USD"),
            t(&funder, &b, "1", "USD"),
            t(&funder, &b, "1.005", "USD"),
        ],
        &key(),
    )
    .await;
    malformed.assert_problem(400, "invalid_amount");
    assert_eq!(malformed.body["index"], 2);
    let same = batch(&api, vec![t(&a, &a, "1", "USD")], &key()).await;
    same.assert_problem(422, "same_account");
    assert_eq!(same.body["index"], 0);
    assert_eq!(api.balance(&funder).await["posted"], "-15.00");
    assert_eq!(api.balance(&b).await["posted"], "15.00");
    let listed = api.get(&format!("/v1/accounts/{b}/transfers")).await;
    assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(2));

    // A frozen account refuses the batch at its transfer.
    api.send("POST", &format!("/v1/accounts/{b}/freeze"), None, Some(&key()))
        .await;
    let frozen = batch(&api, vec![t(&funder, &a, "1", "USD"), t(&b, &a, "1", "USD")], &key()).await;
    frozen.assert_problem(422, "account_frozen");
    assert_eq!(frozen.body["index"], 1);
    for body in [json!({"transfers": []}), json!({"transfers": [1]}), json!({})] {
        api.post("/v1/transfer-batches", body, &key())
            .await
            .assert_problem(400, "invalid_request");
    }
}

#[tokio::test]
async fn an_exchange_moves_two_currencies_through_the_tenants_own_accounts() {
    let (_stack, _counter, app) = counted().await;
    let api = Api::new(&app, "t1");
    let funder = api.open("USD", "1000").await;
    let customer_usd = api.open("USD", "0").await;
    let customer_eur = api.open("EUR", "0").await;
    let fx_usd = api.open("USD", "0").await;
    let fx_eur = api.open("EUR", "1000").await;
    api.transfer(&funder, &customer_usd, "100", "USD", false, &key()).await;
    let exchange = batch(
        &api,
        vec![
            t(&customer_usd, &fx_usd, "100.00", "USD"),
            t(&fx_eur, &customer_eur, "92.50", "EUR"),
        ],
        &key(),
    )
    .await;
    assert_eq!(exchange.status, 201, "{exchange:?}");
    assert_eq!(api.balance(&customer_usd).await["posted"], "0.00");
    assert_eq!(api.balance(&customer_eur).await["posted"], "92.50");
    assert_eq!(api.balance(&fx_usd).await["posted"], "100.00");
    assert_eq!(api.balance(&fx_eur).await["posted"], "-92.50");
    // One leg in the wrong currency refuses both.
    let wrong = batch(
        &api,
        vec![
            t(&fx_usd, &customer_usd, "1.00", "USD"),
            t(&fx_eur, &customer_eur, "1.00", "USD"),
        ],
        &key(),
    )
    .await;
    wrong.assert_problem(422, "currency_mismatch");
    assert_eq!(wrong.body["index"], 1);
    assert_eq!(api.balance(&customer_usd).await["posted"], "0.00");
}

#[tokio::test]
async fn the_largest_batch_fits_one_transaction() {
    let (_stack, counter, app) = counted().await;
    let api = Api::new(&app, "t1");
    let mut accounts = Vec::new();
    for _ in 0..40 {
        accounts.push(api.open("USD", "1000").await);
    }
    let metadata: serde_json::Map<String, Value> = (0..20)
        .map(|i| (format!("key-{i:02}"), json!("v".repeat(40))))
        .collect();
    let transfers = |distinct: usize| -> Vec<Value> {
        (0..20)
            .map(|i| {
                let mut x = t(&accounts[2 * i], &accounts[(2 * i + 1) % distinct], "1.00", "USD");
                x["description"] = json!("d".repeat(500));
                x["metadata"] = Value::Object(metadata.clone());
                x
            })
            .collect()
    };
    // 20 transfers between 40 accounts would take 101 actions: refused before any write.
    counter.reset();
    batch(&api, transfers(40), &key())
        .await
        .assert_problem(400, "invalid_request");
    assert_eq!(counter.take(), calls(&[]));
    // 39 accounts: 20 transfers (60 items with their listing entries), 39 balance
    // updates and the idempotency record make exactly 100 actions, and DynamoDB takes them.
    let largest = batch(&api, transfers(39), &key()).await;
    assert_eq!(largest.status, 201, "{largest:?}");
    assert_eq!(counter.take(), calls(&[WRITE]));
    assert_eq!(largest.body["transfers"].as_array().map(Vec::len), Some(20));
    assert_eq!(
        api.balance(&accounts[0]).await["posted"],
        "0.00",
        "debited once, credited once"
    );
}
