//! Hold expiry (SPEC §6) against the emulator, on a virtual clock: from `expires_at` on a
//! hold no longer counts and reads as expired, posting it is 409 `hold_expired`, a debit
//! refused only by expired holds releases them in its own write, and the sweep releases
//! the rest in storage exactly once.

use fintx_domain::auth::TenantId;
use fintx_domain::clock::Timestamp;
use fintx_domain::ports::{LedgerStore, Reads};
use fintx_tests::{calls, key, Api, READ, WRITE};
use serde_json::json;

use crate::clocked::Clocked;

async fn hold(api: &Api<'_>, debit: &str, credit: &str, amount: &str, expires_in: u64) -> serde_json::Value {
    let body = json!({"debit_account_id": debit, "credit_account_id": credit, "amount": amount,
        "currency": "USD", "pending": true, "expires_in": expires_in});
    let r = api.post("/v1/transfers", body, &key()).await;
    assert_eq!(r.status, 201, "{r:?}");
    r.body
}

#[tokio::test]
async fn from_its_instant_a_hold_is_expired_everywhere_and_cannot_post() {
    let c = Clocked::new(11).await;
    let api = Api::new(&c.app, "t1");
    let funder = api.open("USD", "1000").await;
    let a = api.open("USD", "0").await;
    let b = api.open("USD", "0").await;
    api.transfer(&funder, &a, "50", "USD", false, &key()).await;
    let h = hold(&api, &a, &b, "30", 60).await;
    let id = h["id"].as_str().unwrap().to_owned();
    assert_eq!(h["status"], "pending");
    let created = Timestamp::parse_rfc3339(h["created_at"].as_str().unwrap()).unwrap();
    let expires = Timestamp::parse_rfc3339(h["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires.unix_ms() - created.unix_ms(), 60_000);
    assert_eq!(api.balance(&a).await["available"], "20.00");

    // One millisecond before: still held.
    c.advance(59_999);
    assert_eq!(api.get(&format!("/v1/transfers/{id}")).await.body["status"], "pending");
    assert_eq!(api.balance(&a).await["pending_debits"], "30.00");
    // From the instant on: expired, whether or not storage has caught up.
    c.advance(1);
    assert_eq!(api.get(&format!("/v1/transfers/{id}")).await.body["status"], "expired");
    assert_eq!(
        api.balance(&a).await,
        json!({"posted": "50.00", "pending_debits": "0.00", "pending_credits": "0.00", "available": "50.00"})
    );
    assert_eq!(api.balance(&b).await["pending_credits"], "0.00");
    assert_eq!(c.stored_balance(&a).await.0, "30", "storage still counts it");
    let listed = api.get(&format!("/v1/accounts/{a}/transfers?limit=1")).await;
    assert_eq!(listed.body["data"][0]["status"], "expired");

    api.post(&format!("/v1/transfers/{id}/post"), json!({}), &key())
        .await
        .assert_problem(409, "hold_expired");
    // Voiding it answers it unchanged, as it reads: expired.
    let read = api.get(&format!("/v1/transfers/{id}")).await;
    let voided = api.post(&format!("/v1/transfers/{id}/void"), json!({}), &key()).await;
    assert_eq!((voided.status, &voided.body), (200, &read.body), "{voided:?}");
    // The sweep releases it in storage, once.
    assert_eq!(transactions::sweep(c.store.as_ref(), c.now()).await, Ok(1));
    assert_eq!(transactions::sweep(c.store.as_ref(), c.now()).await, Ok(0));
    assert_eq!(c.stored_balance(&a).await.0, "0");
    assert_eq!(c.stored_balance(&b).await.1, "0");
    let after = api.get(&format!("/v1/transfers/{id}")).await;
    assert_eq!(
        (after.body["status"].as_str(), after.body["version"].as_u64()),
        (Some("expired"), Some(2))
    );
}

#[tokio::test]
async fn a_debit_refused_only_by_expired_holds_releases_them_in_its_own_write() {
    let c = Clocked::new(12).await;
    let api = Api::new(&c.app, "t1");
    let funder = api.open("USD", "1000").await;
    let a = api.open("USD", "0").await;
    let b = api.open("USD", "0").await;
    api.transfer(&funder, &a, "40", "USD", false, &key()).await;
    let first = hold(&api, &a, &b, "25", 60).await;
    let second = hold(&api, &a, &b, "15", 120).await;
    c.advance(61_000);
    // 40 held in storage, 25 of it expired: a debit of 25 needs the expired hold gone.
    c.counter.reset();
    let t = api.transfer(&a, &b, "25", "USD", false, &key()).await;
    assert_eq!(t.status, 201, "{t:?}");
    assert_eq!(
        c.counter.take(),
        calls(&[WRITE, READ, WRITE]),
        "the planned write refused by its cover, a read, the write that releases"
    );
    let released = c
        .store
        .read(
            &TenantId::parse("t1").unwrap(),
            &Reads {
                transfer: fintx_domain::ids::TransferId::parse(first["id"].as_str().unwrap()),
                ..Reads::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        released.transfer.unwrap().status.as_str(),
        "expired",
        "released in storage"
    );
    assert_eq!(c.stored_balance(&a).await.0, "15", "the live hold stays");
    assert_eq!(
        api.balance(&a).await,
        json!({"posted": "15.00", "pending_debits": "15.00", "pending_credits": "0.00", "available": "0.00"})
    );
    // The live hold still binds: one cent more is refused.
    api.transfer(&a, &b, "0.01", "USD", false, &key())
        .await
        .assert_problem(422, "insufficient_funds");
    let posted = api
        .post(
            &format!("/v1/transfers/{}/post", second["id"].as_str().unwrap()),
            json!({}),
            &key(),
        )
        .await;
    assert_eq!(posted.body["status"], "posted", "{posted:?}");
    assert_eq!(c.stored_balance(&a).await, ("0".to_owned(), "0".to_owned()));
    assert_eq!(api.balance(&b).await["posted"], "40.00");
}

#[tokio::test]
async fn the_sweep_releases_each_expired_hold_once_beside_a_concurrent_debit() {
    let c = Clocked::new(13).await;
    let api = Api::new(&c.app, "t1");
    let funder = api.open("USD", "1000").await;
    let a = api.open("USD", "0").await;
    let b = api.open("USD", "0").await;
    api.transfer(&funder, &a, "100", "USD", false, &key()).await;
    let mut ids = Vec::new();
    for amount in ["1", "2", "3", "4"] {
        ids.push(hold(&api, &a, &b, amount, 60).await["id"].as_str().unwrap().to_owned());
    }
    let live = hold(&api, &a, &b, "5", 600).await;
    let posted = hold(&api, &a, &b, "6", 60).await;
    api.post(
        &format!("/v1/transfers/{}/post", posted["id"].as_str().unwrap()),
        json!({}),
        &key(),
    )
    .await;
    assert_eq!(
        transactions::sweep(c.store.as_ref(), c.now()).await,
        Ok(0),
        "nothing due yet"
    );
    c.advance(60_000);
    // A debit that needs the expired holds released races the sweep: each hold is
    // released once, by one of them (each release is conditioned on the hold still
    // pending).
    let (debit, credit, spend_key) = (a.clone(), b.clone(), key());
    let spend = api.transfer(&debit, &credit, "89", "USD", false, &spend_key);
    let (spent, swept) = tokio::join!(spend, transactions::sweep(c.store.as_ref(), c.now()));
    assert_eq!(spent.status, 201, "{spent:?}");
    assert!(swept.unwrap() <= 4);
    assert_eq!(transactions::sweep(c.store.as_ref(), c.now()).await, Ok(0));
    assert_eq!(c.stored_balance(&a).await.0, "5", "only the live hold");
    assert_eq!(c.stored_balance(&b).await.1, "5");
    assert_eq!(
        api.balance(&a).await,
        json!({"posted": "5.00", "pending_debits": "5.00", "pending_credits": "0.00", "available": "0.00"})
    );
    let voided = api
        .post(&format!("/v1/transfers/{}/void", ids[0]), json!({}), &key())
        .await;
    assert_eq!(voided.body["status"], "expired", "{voided:?}");
    assert_eq!(live["status"], "pending");
}

#[tokio::test]
async fn expires_in_is_for_holds_within_its_range() {
    let c = Clocked::new(14).await;
    let api = Api::new(&c.app, "t1");
    let a = api.open("USD", "100").await;
    let b = api.open("USD", "0").await;
    let send = |body: serde_json::Value| {
        let api = &api;
        async move { api.post("/v1/transfers", body, &key()).await }
    };
    let base = json!({"debit_account_id": a, "credit_account_id": b, "amount": "1", "currency": "USD"});
    for (pending, expires_in) in [
        (false, json!(60)),
        (true, json!(59)),
        (true, json!(2_592_001)),
        (true, json!("60")),
        (true, json!(60.5)),
    ] {
        let mut body = base.clone();
        body["pending"] = json!(pending);
        body["expires_in"] = expires_in;
        send(body).await.assert_problem(400, "invalid_request");
    }
    let mut longest = base.clone();
    longest["pending"] = json!(true);
    longest["expires_in"] = json!(2_592_000);
    assert_eq!(send(longest).await.status, 201);
    // A payment's hold never expires: payments take no expires_in.
    api.post(
        "/v1/payments",
        json!({"account_id": a, "amount": "1", "currency": "USD", "connector": "demo-bank",
        "counterparty": {"name": "Ada Lovelace"}, "expires_in": 60}),
        &key(),
    )
    .await
    .assert_problem(400, "unknown_field");
}

#[tokio::test]
async fn closing_an_account_releases_the_expired_holds_it_still_stores() {
    let c = Clocked::new(15).await;
    let api = Api::new(&c.app, "t1");
    let a = api.open("USD", "100").await;
    let b = api.open("USD", "10").await;
    let other = api.open("USD", "100").await;
    hold(&api, &a, &b, "7", 60).await;
    hold(&api, &other, &b, "3", 60).await;
    hold(&api, &b, &other, "0.50", 600).await;
    api.send("POST", &format!("/v1/accounts/{a}/close"), None, Some(&key()))
        .await
        .assert_problem(422, "account_not_empty");
    c.advance(60_000);
    let closed = api
        .send("POST", &format!("/v1/accounts/{a}/close"), None, Some(&key()))
        .await;
    assert_eq!(closed.body["status"], "closed", "{closed:?}");
    // Its own hold is gone from storage on both sides; the other holds are untouched.
    assert_eq!(c.stored_balance(&a).await.0, "0");
    assert_eq!(c.stored_balance(&b).await, ("0.5".to_owned(), "3".to_owned()));
    assert_eq!(api.balance(&b).await["pending_credits"], "0.00");
}
