//! Round trips per route (SPEC §10): the exact DynamoDB calls each money-moving request
//! sends, recorded in order by an SDK interceptor on the real client against the
//! emulator, for success, replay and each refusal.
//!
//! The common path of a transfer, a payment or an account with a key is one
//! `TransactWriteItems` and nothing else; a replay is that same write, refused by the
//! idempotency record, whose image holds the answer. Only a refusal reads, to say which
//! rule refused, then records it. A post, void or reversal names only its transfer: the
//! environment that wrote or read it lately plans from what it remembers (one write, its
//! version condition catching a stale memory); another environment reads it first.

use fintx_tests::{calls, deliver, key, Api, Counted, READ, WRITE};
use serde_json::json;

async fn counted() -> Counted {
    Counted::new().await
}

#[tokio::test]
async fn transfers_and_accounts_cost_one_write_and_refusals_read_only_to_explain() {
    let c = counted().await;
    let api = Api::new(&c.transactions, "t1");
    let a = api.open("USD", "0").await;
    let b = api.open("USD", "0").await;
    let eur = api.open("EUR", "0").await;
    let other_tenant = Api::new(&c.transactions, "t2").open("USD", "0").await;
    let funder = api.open("USD", "1000").await;
    api.transfer(&funder, &a, "100", "USD", false, &key()).await;

    c.counter.reset();
    let opened = api
        .send("POST", "/v1/accounts", Some(&json!({"currency": "USD"})), Some(&key()))
        .await;
    assert_eq!(opened.status, 201);
    assert_eq!(c.counter.take(), calls(&[WRITE]), "an account with a key");

    let k = key();
    let t = api.transfer(&a, &b, "10", "USD", false, &k).await;
    assert_eq!(t.status, 201);
    assert_eq!(c.counter.take(), calls(&[WRITE]), "a transfer");

    let replay = api.transfer(&a, &b, "10", "USD", false, &k).await;
    assert_eq!((replay.status, &replay.body), (201, &t.body));
    assert_eq!(
        c.counter.take(),
        calls(&[WRITE]),
        "a replay: the write, refused, whose image holds the answer"
    );

    let reused = api.transfer(&a, &b, "11", "USD", false, &k).await;
    reused.assert_problem(422, "idempotency_key_reused");
    assert_eq!(c.counter.take(), calls(&[WRITE]), "a reused key");

    let pending = api.transfer(&a, &b, "5", "USD", true, &key()).await;
    assert_eq!(pending.status, 201);
    assert_eq!(c.counter.take(), calls(&[WRITE]), "a hold");

    // Refusals: the planned write is refused by its conditions, a read tells which
    // rule, and the refusal is recorded under the key.
    for (debit, credit, amount, currency, status, code) in [
        (&a, &b, "1000", "USD", 422, "insufficient_funds"),
        (&a, &eur, "1", "USD", 422, "currency_mismatch"),
        (&a, &other_tenant, "1", "USD", 404, "account_not_found"),
    ] {
        let refused = api.transfer(debit, credit, amount, currency, false, &key()).await;
        refused.assert_problem(status, code);
        assert_eq!(c.counter.take(), calls(&[WRITE, READ, WRITE]), "{code}");
    }
    // The same account on both sides cannot be planned: read, then record.
    api.transfer(&a, &a, "1", "USD", false, &key())
        .await
        .assert_problem(422, "same_account");
    assert_eq!(c.counter.take(), calls(&[READ, WRITE]), "same_account");

    // A transition names only its transfer; the accounts it moves are stored there. The
    // environment that wrote the transfer plans from what it remembers: one write.
    let hold = pending.body["id"].as_str().unwrap();
    let posted = api.post(&format!("/v1/transfers/{hold}/post"), json!({}), &key()).await;
    assert_eq!(posted.status, 200);
    assert_eq!(
        c.counter.take(),
        calls(&[WRITE]),
        "a post of a hold this environment knows"
    );
    let id = t.body["id"].as_str().unwrap();
    let reversed = api
        .post(&format!("/v1/transfers/{id}/reverse"), json!({"amount": "1"}), &key())
        .await;
    assert_eq!(reversed.status, 201);
    assert_eq!(
        c.counter.take(),
        calls(&[WRITE]),
        "a reversal of a transfer this environment knows"
    );

    // A reversal its credit account cannot cover: the write's condition refuses, the
    // transfer and that account are read to name the rule, the refusal is recorded.
    let spent = api.transfer(&b, &funder, "9", "USD", false, &key()).await;
    assert_eq!(spent.status, 201);
    c.counter.reset();
    api.post(&format!("/v1/transfers/{id}/reverse"), json!({"amount": "6"}), &key())
        .await
        .assert_problem(422, "insufficient_funds");
    assert_eq!(c.counter.take(), calls(&[WRITE, READ, WRITE]), "an uncovered reversal");

    // Another environment has not seen them: it reads the transfer, then writes.
    let mut cold = c.stack.transactions_app();
    cold.store = c.transactions.store.clone();
    let cold_api = Api::new(&cold, "t1");
    let hold2 = api.transfer(&a, &b, "2", "USD", true, &key()).await;
    let hold3 = api.transfer(&a, &b, "3", "USD", true, &key()).await;
    c.counter.reset();
    let hold2 = hold2.body["id"].as_str().unwrap();
    let voided = cold_api
        .post(&format!("/v1/transfers/{hold2}/void"), json!({}), &key())
        .await;
    assert_eq!(voided.status, 200);
    assert_eq!(
        c.counter.take(),
        calls(&[READ, WRITE]),
        "a void in an environment that never saw the hold"
    );
    let again = cold_api
        .post(&format!("/v1/transfers/{hold}/reverse"), json!({"amount": "1"}), &key())
        .await;
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(
        c.counter.take(),
        calls(&[READ, WRITE]),
        "a reversal in an environment that never saw it"
    );

    // What an environment remembers can be stale: the write's version condition refuses
    // it, a read decides. The hold was posted elsewhere, so voiding it here is refused.
    let hold3 = hold3.body["id"].as_str().unwrap();
    assert_eq!(
        cold_api
            .post(&format!("/v1/transfers/{hold3}/post"), json!({}), &key())
            .await
            .status,
        200
    );
    c.counter.reset();
    api.post(&format!("/v1/transfers/{hold3}/void"), json!({}), &key())
        .await
        .assert_problem(409, "invalid_transition");
    assert_eq!(
        c.counter.take(),
        calls(&[WRITE, READ, WRITE]),
        "a change planned from a stale memory"
    );
    // Another tenant's transfer is never planned from memory: it reads, and is missing,
    // though this environment knows the hold.
    let hold4 = api.transfer(&a, &b, "4", "USD", true, &key()).await;
    let hold4 = hold4.body["id"].as_str().unwrap();
    c.counter.reset();
    Api::new(&c.transactions, "t2")
        .post(&format!("/v1/transfers/{hold4}/post"), json!({}), &key())
        .await
        .assert_problem(404, "not_found");
    assert_eq!(c.counter.take(), calls(&[READ, WRITE]), "another tenant's transfer");
    assert_eq!(
        api.get(&format!("/v1/transfers/{hold4}")).await.body["status"],
        "pending"
    );
    assert_eq!(api.balance(&a).await["pending_debits"], "4.00");

    // Nothing moved that a refusal touched.
    assert_eq!(api.balance(&a).await["posted"], "84.00");
    assert_eq!(api.balance(&b).await["posted"], "7.00");
    let _ = &c.stack;
}

#[tokio::test]
async fn a_payment_costs_one_write_and_opens_its_clearing_account_in_it() {
    let c = counted().await;
    let api = Api::new(&c.transactions, "t1");
    let funder = api.open("USD", "1000").await;
    let customer = api.open("USD", "0").await;
    api.transfer(&funder, &customer, "100", "USD", false, &key()).await;
    let pay = |amount: &str| {
        json!({"account_id": customer, "amount": amount, "currency": "USD", "connector": "demo-bank",
               "counterparty": {"name": "Grace Hopper", "iban": "GB82WEST12345698765432"}})
    };

    c.counter.reset();
    let k = key();
    let first = api.post("/v1/payments", pay("10"), &k).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(
        c.counter.take(),
        calls(&[WRITE]),
        "the first payment opens the clearing account"
    );
    let second = api.post("/v1/payments", pay("15"), &key()).await;
    assert_eq!(second.status, 201);
    assert_eq!(c.counter.take(), calls(&[WRITE]), "a payment");
    let replay = api.post("/v1/payments", pay("10"), &k).await;
    assert_eq!((replay.status, &replay.body), (201, &first.body));
    assert_eq!(c.counter.take(), calls(&[WRITE]), "a replay");
    api.post("/v1/payments", pay("1000"), &key())
        .await
        .assert_problem(422, "insufficient_funds");
    assert_eq!(c.counter.take(), calls(&[WRITE, READ, WRITE]), "insufficient_funds");

    // Both payments' transfers credit one clearing account, exactly.
    let t1 = api
        .get(&format!(
            "/v1/transfers/{}",
            first.body["transfer_id"].as_str().unwrap()
        ))
        .await;
    let t2 = api
        .get(&format!(
            "/v1/transfers/{}",
            second.body["transfer_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(t1.body["credit_account_id"], t2.body["credit_account_id"]);
    let clearing = t1.body["credit_account_id"].as_str().unwrap();
    assert_eq!(api.balance(clearing).await["pending_credits"], "25.00");
    assert_eq!(api.balance(&customer).await["pending_debits"], "25.00");

    // Webhooks: a deposit through a connector that serves one tenant plans its write;
    // the account's tenant, currency and kind are conditions of it.
    c.counter.reset();
    let deposit = |reference: &str, amount: &str, currency: &str| {
        json!({"type": "deposit.received", "data": {"account_id": customer, "amount": amount,
               "currency": currency, "bank_reference": reference}})
    };
    assert_eq!(
        deliver(&c.webhooks, &deposit("ref-rt-1", "7", "USD"), "msg_rt_dep").await,
        json!({"outcome": "applied"})
    );
    assert_eq!(c.counter.take(), calls(&[WRITE]), "a deposit");
    assert_eq!(api.balance(clearing).await["posted"], "-7.00");
    c.counter.reset();
    assert_eq!(
        deliver(&c.webhooks, &deposit("ref-rt-1", "7", "USD"), "msg_rt_dep").await,
        json!({"outcome": "duplicate"})
    );
    assert_eq!(
        c.counter.take(),
        calls(&[WRITE]),
        "a redelivered deposit: its record's image answers"
    );
    assert_eq!(
        deliver(&c.webhooks, &deposit("ref-rt-2", "7", "EUR"), "msg_rt_dep_eur").await,
        json!({"outcome": "rejected", "code": "currency_mismatch"})
    );
    assert_eq!(
        c.counter.take(),
        calls(&[WRITE, READ, WRITE]),
        "a deposit its account refuses: read to name the rule, then archived"
    );

    // A connector serving every tenant learns whose the account is from its first
    // deposit there; the next deposit to it is planned.
    let shared = c.webhooks_serving(&["*"]).await;
    c.counter.reset();
    assert_eq!(
        deliver(&shared, &deposit("ref-rt-3", "1", "USD"), "msg_rt_dep_3").await,
        json!({"outcome": "applied"})
    );
    assert_eq!(
        c.counter.take(),
        calls(&[READ, WRITE]),
        "the first deposit to an account"
    );
    assert_eq!(
        deliver(&shared, &deposit("ref-rt-4", "1", "USD"), "msg_rt_dep_4").await,
        json!({"outcome": "applied"})
    );
    assert_eq!(c.counter.take(), calls(&[WRITE]), "the next deposit to it");
    assert_eq!(api.balance(clearing).await["posted"], "-9.00");

    // A bank outcome reads the payment with its transfer, then writes.
    c.counter.reset();
    let first_id = first.body["id"].as_str().unwrap();
    let settled = json!({"type": "payment.settled", "data": {"payment_id": first_id}});
    assert_eq!(
        deliver(&c.webhooks, &settled, "msg_rt_settle").await,
        json!({"outcome": "applied"})
    );
    assert_eq!(c.counter.take(), calls(&[READ, WRITE]), "a settlement");
    let returned = json!({"type": "payment.returned", "data": {"payment_id": first_id}});
    assert_eq!(
        deliver(&c.webhooks, &returned, "msg_rt_return").await,
        json!({"outcome": "applied"})
    );
    assert_eq!(c.counter.take(), calls(&[READ, WRITE]), "a return");
    let second_id = second.body["id"].as_str().unwrap();
    let failed = json!({"type": "payment.failed", "data": {"payment_id": second_id}});
    assert_eq!(
        deliver(&c.webhooks, &failed, "msg_rt_fail").await,
        json!({"outcome": "applied"})
    );
    assert_eq!(c.counter.take(), calls(&[READ, WRITE]), "a failure");
    assert_eq!(
        deliver(&c.webhooks, &failed, "msg_rt_fail").await,
        json!({"outcome": "duplicate"})
    );
    assert_eq!(c.counter.take(), calls(&[READ]), "a duplicate delivery");
    // Settled 10 and returned; failed 15; deposited 9: the clearing account is back to
    // the deposits alone, and the customer has its money back.
    let clearing_balance = api.balance(clearing).await;
    assert_eq!(
        (&clearing_balance["posted"], &clearing_balance["pending_credits"]),
        (&json!("-9.00"), &json!("0.00"))
    );
    assert_eq!(api.balance(&customer).await["posted"], "109.00");
}

/// A payment out of its own clearing account, or a deposit into it, would move one item
/// twice in one transaction, which DynamoDB refuses outright: such a request is not
/// planned, and the read names the rule.
#[tokio::test]
async fn a_clearing_account_named_against_itself_is_refused_not_failed() {
    let c = counted().await;
    let api = Api::new(&c.transactions, "t1");
    let customer = api.open("USD", "100").await;
    let pay = |account: &str| {
        json!({"account_id": account, "amount": "1", "currency": "USD", "connector": "demo-bank",
               "counterparty": {"name": "Ada Lovelace"}})
    };
    let first = api.post("/v1/payments", pay(&customer), &key()).await;
    let transfer = api
        .get(&format!(
            "/v1/transfers/{}",
            first.body["transfer_id"].as_str().unwrap()
        ))
        .await;
    let clearing = transfer.body["credit_account_id"].as_str().unwrap().to_owned();
    c.counter.reset();
    api.post("/v1/payments", pay(&clearing), &key())
        .await
        .assert_problem(422, "clearing_account");
    assert_eq!(
        c.counter.take(),
        // The clearing account read is summed over its balance slots: a second read.
        calls(&[READ, READ, WRITE]),
        "read first, the refusal recorded"
    );
    // demo-bank serves t1 alone, so deposits are planned: not this one.
    let deposit = json!({"type": "deposit.received", "data": {"account_id": clearing, "amount": "1",
        "currency": "USD", "bank_reference": "ref-self"}});
    assert_eq!(
        deliver(&c.webhooks, &deposit, "msg_self_deposit").await,
        json!({"outcome": "rejected", "code": "not_found"})
    );
    assert_eq!(c.counter.take(), calls(&[READ, READ, WRITE]));
    assert_eq!(api.balance(&clearing).await["pending_credits"], "1.00");
}
