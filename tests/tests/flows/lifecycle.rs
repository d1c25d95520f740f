//! Account lifecycle and settings (SPEC §6) against the emulator: freeze, unfreeze,
//! close and `PATCH`, each rule enforced by the write's conditions (a transfer planned
//! without a read is refused by the store when the account was frozen or closed), and the
//! exact DynamoDB calls each route sends.

use fintx_tests::{calls, deliver, key, Api, Counted, READ, WRITE};
use serde_json::{json, Value};

async fn counted() -> Counted {
    Counted::new().await
}

async fn status_change(api: &Api<'_>, account: &str, change: &str, key: &str) -> fintx_tests::Reply {
    api.send("POST", &format!("/v1/accounts/{account}/{change}"), None, Some(key))
        .await
}

async fn account(api: &Api<'_>, id: &str) -> Value {
    let r = api.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

#[tokio::test]
async fn a_frozen_account_refuses_debits_and_posting_but_takes_credits_and_voids() {
    let c = counted().await;
    let api = Api::new(&c.transactions, "t1");
    let funder = api.open("USD", "1000").await;
    let frozen = api.open("USD", "0").await;
    let other = api.open("USD", "0").await;
    api.transfer(&funder, &frozen, "50", "USD", false, &key()).await;
    let hold = api.transfer(&frozen, &other, "10", "USD", true, &key()).await;
    let hold_to_void = api.transfer(&frozen, &other, "5", "USD", true, &key()).await;
    let hold_id = hold.body["id"].as_str().unwrap().to_owned();
    let void_id = hold_to_void.body["id"].as_str().unwrap().to_owned();

    c.counter.reset();
    let k = key();
    let r = status_change(&api, &frozen, "freeze", &k).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("frozen")), "{r:?}");
    assert_eq!(c.counter.take(), calls(&[READ, WRITE]), "a freeze reads, then writes");
    let replay = status_change(&api, &frozen, "freeze", &k).await;
    assert_eq!((replay.status, &replay.body), (200, &r.body));
    let replayed = replay.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok());
    assert_eq!(replayed, Some("true"));
    // Freezing again with another key answers the account unchanged.
    let again = status_change(&api, &frozen, "freeze", &key()).await;
    assert_eq!((again.status, &again.body["version"]), (200, &r.body["version"]));

    // A debit planned without a read is refused by the write's status condition; the
    // read names the rule.
    c.counter.reset();
    api.transfer(&frozen, &other, "1", "USD", false, &key())
        .await
        .assert_problem(422, "account_frozen");
    assert_eq!(c.counter.take(), calls(&[WRITE, READ, WRITE]));
    api.post(
        "/v1/payments",
        json!({"account_id": frozen, "amount": "1", "currency": "USD",
        "connector": "demo-bank", "counterparty": {"name": "Ada Lovelace"}}),
        &key(),
    )
    .await
    .assert_problem(422, "account_frozen");
    // Posting its hold is refused, from memory or after a read alike.
    api.post(&format!("/v1/transfers/{hold_id}/post"), json!({}), &key())
        .await
        .assert_problem(422, "account_frozen");
    // Another environment, which never saw the hold, reads it first.
    let fresh_env = c.fresh_transactions();
    Api::new(&fresh_env, "t1")
        .post(&format!("/v1/transfers/{hold_id}/post"), json!({}), &key())
        .await
        .assert_problem(422, "account_frozen");
    // Credits and voids still apply.
    assert_eq!(
        api.transfer(&funder, &frozen, "7", "USD", false, &key()).await.status,
        201
    );
    let voided = api
        .post(&format!("/v1/transfers/{void_id}/void"), json!({}), &key())
        .await;
    assert_eq!(voided.body["status"], "voided", "{voided:?}");
    // A reversal debits the original credit account: refused while it is frozen.
    let credit = api.transfer(&funder, &frozen, "3", "USD", false, &key()).await;
    api.post(
        &format!("/v1/transfers/{}/reverse", credit.body["id"].as_str().unwrap()),
        json!({}),
        &key(),
    )
    .await
    .assert_problem(422, "account_frozen");
    let balance = api.balance(&frozen).await;
    assert_eq!(
        balance,
        json!({"posted": "60.00", "pending_debits": "10.00", "pending_credits": "0.00", "available": "50.00"})
    );

    let r = status_change(&api, &frozen, "unfreeze", &key()).await;
    assert_eq!(r.body["status"], "open", "{r:?}");
    let posted = api
        .post(&format!("/v1/transfers/{hold_id}/post"), json!({}), &key())
        .await;
    assert_eq!(posted.body["status"], "posted", "{posted:?}");
    assert_eq!(
        api.transfer(&frozen, &other, "1", "USD", false, &key()).await.status,
        201
    );
}

#[tokio::test]
async fn a_closed_account_refuses_every_transfer_and_stays_readable() {
    let c = counted().await;
    let api = Api::new(&c.transactions, "t1");
    let funder = api.open("USD", "1000").await;
    let acct = api.open("USD", "0").await;
    let other = api.open("USD", "0").await;
    let moved = api.transfer(&funder, &acct, "20", "USD", false, &key()).await;
    let moved_id = moved.body["id"].as_str().unwrap().to_owned();
    status_change(&api, &acct, "close", &key())
        .await
        .assert_problem(422, "account_not_empty");
    let hold = api.transfer(&acct, &other, "20", "USD", true, &key()).await;
    status_change(&api, &acct, "close", &key())
        .await
        .assert_problem(422, "account_not_empty");
    let hold_id = hold.body["id"].as_str().unwrap();
    api.post(&format!("/v1/transfers/{hold_id}/post"), json!({}), &key())
        .await;

    let closed = status_change(&api, &acct, "close", &key()).await;
    assert_eq!(closed.body["status"], "closed", "{closed:?}");
    for (debit, credit) in [(&acct, &other), (&funder, &acct)] {
        api.transfer(debit, credit, "1", "USD", false, &key())
            .await
            .assert_problem(422, "account_closed");
    }
    // Reversing the transfer that funded it would credit it back: refused.
    api.post(&format!("/v1/transfers/{moved_id}/reverse"), json!({}), &key())
        .await
        .assert_problem(422, "account_closed");
    for change in ["freeze", "unfreeze"] {
        status_change(&api, &acct, change, &key())
            .await
            .assert_problem(409, "invalid_transition");
    }
    let version = account(&api, &acct).await["version"].clone();
    api.send(
        "PATCH",
        &format!("/v1/accounts/{acct}"),
        Some(&json!({"version": version, "name": "x"})),
        None,
    )
    .await
    .assert_problem(422, "account_closed");
    // A deposit to it is archived as rejected; nothing moves.
    c.counter.reset();
    let deposit = json!({"type": "deposit.received", "data": {"account_id": acct, "amount": "5",
        "currency": "USD", "bank_reference": "ref-closed-1"}});
    assert_eq!(
        deliver(&c.webhooks, &deposit, "msg_closed_1").await,
        json!({"outcome": "rejected", "code": "account_closed"})
    );
    assert_eq!(
        c.counter.take(),
        calls(&[WRITE, READ, WRITE]),
        "planned, refused, read, archived"
    );
    // Readable, with its history.
    let read = account(&api, &acct).await;
    assert_eq!(
        (read["status"].as_str(), &read["balance"]["posted"]),
        (Some("closed"), &json!("0.00"))
    );
    let history = api.get(&format!("/v1/accounts/{acct}/transfers")).await;
    assert_eq!(history.body["data"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_patch_needs_the_current_version_and_keeps_the_limit_above_usage() {
    let c = counted().await;
    let api = Api::new(&c.transactions, "t1");
    let acct = api.open("USD", "100").await;
    let other = api.open("USD", "0").await;
    api.transfer(&acct, &other, "60", "USD", false, &key()).await;
    let read = account(&api, &acct).await;
    let version = read["version"].as_u64().unwrap();
    let path = format!("/v1/accounts/{acct}");
    let patch = |body: Value| {
        let (api, path) = (&api, &path);
        async move { api.send("PATCH", path, Some(&body), None).await }
    };

    patch(json!({"version": version + 1, "name": "Operating"}))
        .await
        .assert_problem(409, "version_conflict");
    patch(json!({"version": version, "overdraft_limit": "59.99"}))
        .await
        .assert_problem(422, "limit_below_usage");
    patch(json!({"version": version, "overdraft_limit": "1.005"}))
        .await
        .assert_problem(400, "invalid_amount");
    patch(json!({"version": version, "colour": "red"}))
        .await
        .assert_problem(400, "unknown_field");
    patch(json!({"name": "Operating"}))
        .await
        .assert_problem(400, "invalid_request");

    c.counter.reset();
    let r = patch(json!({"version": version, "overdraft_limit": "60", "name": "Operating",
        "metadata": {"team": "payroll"}}))
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(c.counter.take(), calls(&[READ, WRITE]));
    assert_eq!(
        (
            &r.body["overdraft_limit"],
            &r.body["name"],
            &r.body["metadata"],
            r.body["version"].as_u64()
        ),
        (
            &json!("60.00"),
            &json!("Operating"),
            &json!({"team": "payroll"}),
            Some(version + 1)
        )
    );
    // The same patch again names an old version now.
    patch(json!({"version": version, "overdraft_limit": "60"}))
        .await
        .assert_problem(409, "version_conflict");
    // The new limit is what the store's cover condition checks.
    api.transfer(&acct, &other, "0.01", "USD", false, &key())
        .await
        .assert_problem(422, "insufficient_funds");
    let raised = patch(json!({"version": version + 1, "overdraft_limit": "61"})).await;
    assert_eq!(raised.status, 200, "{raised:?}");
    assert_eq!(api.transfer(&acct, &other, "1", "USD", false, &key()).await.status, 201);
    assert_eq!(api.balance(&acct).await["available"], "-61.00");

    // Clearing accounts have no lifecycle of their own.
    let pay = api
        .post(
            "/v1/payments",
            json!({"account_id": other, "amount": "1", "currency": "USD",
            "connector": "demo-bank", "counterparty": {"name": "Ada Lovelace"}}),
            &key(),
        )
        .await;
    let transfer = api
        .get(&format!("/v1/transfers/{}", pay.body["transfer_id"].as_str().unwrap()))
        .await;
    let clearing = transfer.body["credit_account_id"].as_str().unwrap().to_owned();
    status_change(&api, &clearing, "freeze", &key())
        .await
        .assert_problem(422, "clearing_account");
    let v = account(&api, &clearing).await["version"].clone();
    api.send(
        "PATCH",
        &format!("/v1/accounts/{clearing}"),
        Some(&json!({"version": v, "name": "x"})),
        None,
    )
    .await
    .assert_problem(422, "clearing_account");
    // Another tenant's account is not there at all.
    let t2 = Api::new(&c.transactions, "t2");
    status_change(&t2, &acct, "freeze", &key())
        .await
        .assert_problem(404, "account_not_found");
    t2.send(
        "PATCH",
        &format!("/v1/accounts/{acct}"),
        Some(&json!({"version": 1})),
        None,
    )
    .await
    .assert_problem(404, "account_not_found");
}

#[tokio::test]
async fn a_frozen_accounts_payment_still_settles_and_its_deposits_apply() {
    let c = counted().await;
    let api = Api::new(&c.transactions, "t1");
    let funder = api.open("USD", "1000").await;
    let acct = api.open("USD", "0").await;
    api.transfer(&funder, &acct, "30", "USD", false, &key()).await;
    let pay = api
        .post(
            "/v1/payments",
            json!({"account_id": acct, "amount": "10", "currency": "USD",
            "connector": "demo-bank", "counterparty": {"name": "Ada Lovelace"}}),
            &key(),
        )
        .await;
    assert_eq!(pay.status, 201, "{pay:?}");
    status_change(&api, &acct, "freeze", &key()).await;
    // The bank already moved the money: its outcome is recorded whatever the status.
    let settled = json!({"type": "payment.settled", "data": {"payment_id": pay.body["id"]}});
    assert_eq!(
        deliver(&c.webhooks, &settled, "msg_frozen_settle").await,
        json!({"outcome": "applied"})
    );
    let deposit = json!({"type": "deposit.received", "data": {"account_id": acct, "amount": "4",
        "currency": "USD", "bank_reference": "ref-frozen-1"}});
    assert_eq!(
        deliver(&c.webhooks, &deposit, "msg_frozen_dep").await,
        json!({"outcome": "applied"})
    );
    assert_eq!(
        api.balance(&acct).await,
        json!({"posted": "24.00", "pending_debits": "0.00", "pending_credits": "0.00", "available": "24.00"})
    );
}

#[tokio::test]
async fn a_freeze_racing_transfers_lets_through_only_what_committed_before_it() {
    let c = counted().await;
    let api = Api::new(&c.transactions, "t1");
    let funder = api.open("USD", "1000").await;
    let acct = api.open("USD", "0").await;
    let sink = api.open("USD", "0").await;
    api.transfer(&funder, &acct, "100", "USD", false, &key()).await;
    let mut debits = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let app = c.transactions.clone();
        let (acct, sink) = (acct.clone(), sink.clone());
        debits.spawn(async move {
            Api::new(&app, "t1")
                .transfer(&acct, &sink, "1", "USD", false, &key())
                .await
        });
    }
    let frozen = status_change(&api, &acct, "freeze", &key()).await;
    assert_eq!(frozen.status, 200, "{frozen:?}");
    let replies: Vec<_> = debits.join_all().await;
    let accepted = replies.iter().filter(|r| r.status == 201).count();
    for r in replies.iter().filter(|r| r.status != 201) {
        r.assert_problem(422, "account_frozen");
    }
    // Every debit that answered 201 moved money; none moved after the freeze.
    let balance = api.balance(&acct).await;
    assert_eq!(balance["posted"], format!("{}.00", 100 - accepted));
    api.transfer(&acct, &sink, "1", "USD", false, &key())
        .await
        .assert_problem(422, "account_frozen");
}

#[tokio::test]
async fn a_redelivered_deposit_to_an_account_closed_since_is_a_duplicate() {
    let c = counted().await;
    let api = Api::new(&c.transactions, "t1");
    let acct = api.open("USD", "0").await;
    let other = api.open("USD", "0").await;
    // A connector serving two tenants, in a fresh environment each time: it reads the
    // account before it decides.
    let fresh = || c.webhooks_serving(&["t1", "t2"]);
    let deposit = |reference: &str| {
        json!({"type": "deposit.received", "data": {"account_id": acct, "amount": "5",
            "currency": "USD", "bank_reference": reference}})
    };
    assert_eq!(
        deliver(&fresh().await, &deposit("ref-once"), "msg_once_1").await,
        json!({"outcome": "applied"})
    );
    api.transfer(&acct, &other, "5", "USD", false, &key()).await;
    let closed = status_change(&api, &acct, "close", &key()).await;
    assert_eq!(closed.body["status"], "closed", "{closed:?}");

    // The same bank reference under another event id: its account refuses it now, but
    // it was applied before, so it is a duplicate (the refusal's write checks the
    // reference without recording it).
    let webhooks = fresh().await;
    c.counter.reset();
    assert_eq!(
        deliver(&webhooks, &deposit("ref-once"), "msg_once_2").await,
        json!({"outcome": "duplicate"})
    );
    assert_eq!(c.counter.take(), calls(&[READ, WRITE, READ, WRITE]));
    assert_eq!(
        deliver(&fresh().await, &deposit("ref-new"), "msg_new_1").await,
        json!({"outcome": "rejected", "code": "account_closed"})
    );
    // The refused reference was not recorded: the bank may still apply it elsewhere.
    assert_eq!(api.balance(&acct).await["posted"], "0.00");
}
