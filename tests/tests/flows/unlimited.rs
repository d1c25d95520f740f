//! Unlimited accounts (SPEC §6, §10) against the emulator: an account opened with
//! `"overdraft_limit": "unlimited"` spreads its balance over balance slots like a
//! clearing account, yet keeps what a customer account has: a lifecycle (its slots carry
//! its status), a limit that can change (bounded again, its slots are gathered into its
//! own item), and exact reads.

use std::collections::BTreeSet;
use std::sync::Arc;

use fintx_tests::{calls, key, Api, Counted};
use serde_json::{json, Value};

use crate::spread::{all, listed, money, retried, server_error, Work};

/// The partitions of `account`'s balance slots that `writes` touched, and how many of
/// the writes touched its own item.
fn slots_and_own(writes: &[Vec<String>], account: &str) -> (BTreeSet<String>, usize) {
    let own = format!("ACCT#{account}");
    let slots = writes
        .iter()
        .flatten()
        .filter(|pk| pk.starts_with(&format!("{own}#")))
        .cloned()
        .collect();
    (slots, writes.iter().filter(|w| w.contains(&own)).count())
}

async fn version(api: &Api<'_>, account: &str) -> u64 {
    api.get(&format!("/v1/accounts/{account}")).await.body["version"]
        .as_u64()
        .unwrap()
}

async fn patch(api: &Api<'_>, account: &str, body: Value) -> fintx_tests::Reply {
    api.send("PATCH", &format!("/v1/accounts/{account}"), Some(&body), None)
        .await
}

#[tokio::test]
async fn an_unlimited_account_spreads_its_movements_and_keeps_its_lifecycle_and_limit() {
    let c = Counted::new().await;
    let api = Api::new(&c.transactions, "t1");
    let opened = api
        .post(
            "/v1/accounts",
            json!({"currency": "USD", "name": "Operating", "overdraft_limit": "unlimited"}),
            &key(),
        )
        .await;
    assert_eq!(opened.status, 201, "{opened:?}");
    assert_eq!(opened.body["overdraft_limit"], "unlimited");
    let operating = opened.body["id"].as_str().unwrap().to_owned();
    // Five customers, each paid 100.00 by the operating account, which goes below zero:
    // it has no limit.
    let mut customers = Vec::new();
    for _ in 0..5 {
        let customer = api.open("USD", "0").await;
        let paid = api
            .transfer(&operating, &customer, "100.00", "USD", false, &key())
            .await;
        assert_eq!(paid.status, 201, "{paid:?}");
        customers.push(customer);
    }
    let mut expected = -50_000i64;
    c.counter.reset();

    // 60 payouts from the operating account and 20 payments into it, at once (10 in
    // flight: the emulator serves one request at a time; a 503 is retried under its key).
    let gate = Arc::new(tokio::sync::Semaphore::new(10));
    let mut work: Vec<Work<(i64, Value)>> = Vec::new();
    for i in 0..80usize {
        let app = c.transactions.clone();
        let gate = gate.clone();
        let customer = customers[i % 5].clone();
        let cents = 100 + i as i64 * 3;
        let (debit, credit, sign) = if i % 4 == 3 {
            (customer, operating.clone(), 1)
        } else {
            (operating.clone(), customer, -1)
        };
        work.push(Box::pin(async move {
            let _in_flight = gate.acquire().await.unwrap();
            let body = json!({"debit_account_id": debit, "credit_account_id": credit,
                "amount": format!("{}.{:02}", cents / 100, cents % 100), "currency": "USD"});
            let (api, key) = (Api::new(&app, "t1"), key());
            let r = retried(|| api.post("/v1/transfers", body.clone(), &key), server_error).await;
            (sign * cents, r.body)
        }));
    }
    for (cents, body) in all(work).await {
        assert_eq!(body["status"], "posted", "{body}");
        expected += cents;
    }
    let balance = json!({"posted": money(expected), "pending_debits": "0.00",
        "pending_credits": "0.00", "available": money(expected)});
    assert_eq!(api.balance(&operating).await, balance);
    // Spread: the environment that opened it knows it is unlimited, so every write
    // moved one of its slots and none its own item.
    let writes = c.counter.written_partitions();
    let (slots, own) = slots_and_own(&writes, &operating);
    assert!(slots.len() >= 8, "16 slots, 80 writes: {slots:?}");
    assert_eq!(own, 0, "its own item is never written by a movement");
    // Every read sums the slots.
    let statement = api.get(&format!("/v1/accounts/{operating}/entries?limit=100")).await;
    assert_eq!(statement.body["data"][0]["posted_after"], money(expected));
    let now = fintx_adapters::system::now();
    let at = api.get(&format!("/v1/accounts/{operating}/balance?at={now}")).await;
    assert_eq!(at.body["posted"], money(expected), "{at:?}");
    assert_eq!(listed(&api, &operating).await["balance"], balance);

    // Holds resolve through the slots too: placed, then posted or voided, by an
    // environment that knows the account is unlimited, no write touches its own item.
    c.counter.reset();
    for (customer, amount, action) in [(&customers[1], "3.00", "post"), (&customers[2], "4.00", "void")] {
        let hold = api.transfer(&operating, customer, amount, "USD", true, &key()).await;
        assert_eq!(hold.status, 201, "{hold:?}");
        let id = hold.body["id"].as_str().unwrap();
        let resolved = api
            .post(&format!("/v1/transfers/{id}/{action}"), json!({}), &key())
            .await;
        assert_eq!(resolved.status, 200, "{resolved:?}");
    }
    let writes = c.counter.written_partitions();
    assert_eq!(writes.len(), 4, "one write per hold and per resolution");
    let (slots, own) = slots_and_own(&writes, &operating);
    assert!(!slots.is_empty() && own == 0, "{writes:?}");
    expected -= 300;
    let balance = json!({"posted": money(expected), "pending_debits": "0.00",
        "pending_credits": "0.00", "available": money(expected)});
    assert_eq!(api.balance(&operating).await, balance);

    // An environment that never read it believes it bounded: its first write is refused
    // by the account's limit condition, read, and written to a slot; its next is one
    // write.
    let other = c.fresh_transactions();
    let elsewhere = Api::new(&other, "t1");
    c.counter.reset();
    let first = elsewhere
        .transfer(&operating, &customers[0], "1.00", "USD", false, &key())
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    let seen = c.counter.take();
    assert_eq!(seen.first().map(String::as_str), Some("TransactWriteItems"), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("TransactWriteItems"), "{seen:?}");
    assert!(seen.len() > 2, "refused, read, written: {seen:?}");
    let second = elsewhere
        .transfer(&operating, &customers[1], "1.00", "USD", false, &key())
        .await;
    assert_eq!(second.status, 201, "{second:?}");
    assert_eq!(c.counter.take(), calls(&["TransactWriteItems"]));
    expected -= 200;

    // Frozen: its slots know it. Debits are refused, credits still land in a slot.
    let frozen = api
        .post(&format!("/v1/accounts/{operating}/freeze"), json!({}), &key())
        .await;
    assert_eq!(frozen.status, 200, "{frozen:?}");
    let refused = elsewhere
        .transfer(&operating, &customers[0], "1.00", "USD", false, &key())
        .await;
    refused.assert_problem(422, "account_frozen");
    c.counter.reset();
    let credit = api
        .transfer(&customers[0], &operating, "0.50", "USD", false, &key())
        .await;
    assert_eq!(credit.status, 201, "{credit:?}");
    let (slots, own) = slots_and_own(&c.counter.written_partitions(), &operating);
    assert_eq!((slots.len(), own), (1, 0), "a credit to a frozen account moves a slot");
    expected += 50;
    let thawed = api
        .post(&format!("/v1/accounts/{operating}/unfreeze"), json!({}), &key())
        .await;
    assert_eq!(thawed.status, 200, "{thawed:?}");

    // Bounded again: a limit below what it uses is refused; one above gathers its slots
    // into its own item, and from then on a debit needs cover, whatever an environment
    // believed.
    let v = version(&api, &operating).await;
    patch(&api, &operating, json!({"version": v, "overdraft_limit": "1.00"}))
        .await
        .assert_problem(422, "limit_below_usage");
    let limit = money(-expected + 100);
    let bounded = patch(&api, &operating, json!({"version": v, "overdraft_limit": limit})).await;
    assert_eq!(bounded.status, 200, "{bounded:?}");
    assert_eq!(bounded.body["overdraft_limit"], limit.as_str());
    assert_eq!(bounded.body["balance"]["posted"], money(expected));
    // An environment that still believes it unlimited voids a hold it never saw: its
    // write to a slot is refused, it reads, and the void lands on the own item.
    let hold = api
        .transfer(&operating, &customers[0], "0.50", "USD", true, &key())
        .await;
    assert_eq!(hold.status, 201, "{hold:?}");
    let id = hold.body["id"].as_str().unwrap();
    let voided = elsewhere
        .post(&format!("/v1/transfers/{id}/void"), json!({}), &key())
        .await;
    assert_eq!(
        (voided.status, &voided.body["status"]),
        (200, &json!("voided")),
        "{voided:?}"
    );
    let over = elsewhere
        .transfer(&operating, &customers[0], "1.01", "USD", false, &key())
        .await;
    over.assert_problem(422, "insufficient_funds");
    c.counter.reset();
    let covered = elsewhere
        .transfer(&operating, &customers[0], "1.00", "USD", false, &key())
        .await;
    assert_eq!(covered.status, 201, "{covered:?}");
    let (slots, own) = slots_and_own(&c.counter.written_partitions(), &operating);
    assert!(slots.is_empty() && own == 1, "a bounded account moves its own item");
    expected -= 100;
    assert_eq!(api.balance(&operating).await["available"], money(expected));
    assert_eq!(
        api.balance(&operating).await["posted"],
        money(expected),
        "the gathered slots count once"
    );

    // Unlimited once more: debits need no cover again.
    let v = version(&api, &operating).await;
    let unlimited = patch(&api, &operating, json!({"version": v, "overdraft_limit": "unlimited"})).await;
    assert_eq!(unlimited.status, 200, "{unlimited:?}");
    let big = api
        .transfer(&operating, &customers[2], "5000.00", "USD", false, &key())
        .await;
    assert_eq!(big.status, 201, "{big:?}");
    expected -= 500_000;
    assert_eq!(api.balance(&operating).await["posted"], money(expected));
    api.post(&format!("/v1/accounts/{operating}/close"), json!({}), &key())
        .await
        .assert_problem(422, "account_not_empty");
}

#[tokio::test]
async fn closing_an_unlimited_account_gathers_slots_that_sum_to_zero() {
    let c = Counted::new().await;
    let api = Api::new(&c.transactions, "t1");
    let account = api.open("EUR", "unlimited").await;
    let other = api.open("EUR", "1000").await;
    // Out and back in: each write moves some slot, and together they leave zero.
    for (debit, credit) in [
        (&account, &other),
        (&other, &account),
        (&account, &other),
        (&other, &account),
    ] {
        let r = api.transfer(debit, credit, "10.00", "EUR", false, &key()).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let closed = api
        .post(&format!("/v1/accounts/{account}/close"), json!({}), &key())
        .await;
    assert_eq!(closed.status, 200, "{closed:?}");
    assert_eq!(closed.body["status"], "closed");
    assert_eq!(closed.body["balance"]["posted"], "0.00");
    // Its slots are closed with it: nothing moves into or out of it.
    api.transfer(&other, &account, "1.00", "EUR", false, &key())
        .await
        .assert_problem(422, "account_closed");
    let fresh = c.fresh_transactions();
    Api::new(&fresh, "t1")
        .transfer(&account, &other, "1.00", "EUR", false, &key())
        .await
        .assert_problem(422, "account_closed");
    let read = api.get(&format!("/v1/accounts/{account}")).await;
    assert_eq!(read.body["status"], "closed");
    assert_eq!(read.body["balance"]["posted"], "0.00");
    let statement = api.get(&format!("/v1/accounts/{account}/entries")).await;
    assert_eq!(statement.body["data"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn lifecycle_and_limit_changes_racing_movements_through_an_unlimited_account_lose_nothing() {
    let c = Counted::new().await;
    let api = Api::new(&c.transactions, "t1");
    let acct = api.open("USD", "unlimited").await;
    let sink = api.open("USD", "0").await;
    let funder = api.open("USD", "1000").await;

    // A freeze racing 24 debits: each debit either landed before it (201) or is
    // refused by its slot's copy of the status; none lands after.
    let mut debits = tokio::task::JoinSet::new();
    for i in 0..24u64 {
        let app = c.transactions.clone();
        let (acct, sink) = (acct.clone(), sink.clone());
        debits.spawn(async move {
            // Spread over the freeze's own round trips.
            tokio::time::sleep(std::time::Duration::from_millis(i * 4)).await;
            let (api, key) = (Api::new(&app, "t1"), key());
            retried(|| api.transfer(&acct, &sink, "1.00", "USD", false, &key), server_error).await
        });
    }
    let (freeze, freeze_key) = (format!("/v1/accounts/{acct}/freeze"), key());
    let frozen = retried(|| api.post(&freeze, json!({}), &freeze_key), server_error).await;
    assert_eq!(frozen.status, 200, "{frozen:?}");
    let replies = debits.join_all().await;
    let accepted = replies.iter().filter(|r| r.status == 201).count() as i64;
    for r in replies.iter().filter(|r| r.status != 201) {
        r.assert_problem(422, "account_frozen");
    }
    assert_eq!(api.balance(&acct).await["posted"], money(-100 * accepted));
    assert_eq!(api.balance(&sink).await["posted"], money(100 * accepted));
    api.transfer(&acct, &sink, "1.00", "USD", false, &key())
        .await
        .assert_problem(422, "account_frozen");
    let thawed = api
        .post(&format!("/v1/accounts/{acct}/unfreeze"), json!({}), &key())
        .await;
    assert_eq!(thawed.status, 200, "{thawed:?}");

    // A PATCH to a bounded limit racing twelve credits: every credit lands, in a slot
    // before the limit changes or on the account's own item after, and the PATCH
    // gathers whatever the slots held when it committed.
    let mut credits = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let app = c.transactions.clone();
        let (acct, funder) = (acct.clone(), funder.clone());
        credits.spawn(async move {
            let (api, key) = (Api::new(&app, "t1"), key());
            retried(
                || api.transfer(&funder, &acct, "2.00", "USD", false, &key),
                server_error,
            )
            .await
        });
    }
    // A credit that lands between the read of the version and the PATCH moves it: read
    // it again.
    let bounded = retried(
        || async {
            let v = version(&api, &acct).await;
            patch(&api, &acct, json!({"version": v, "overdraft_limit": "500.00"})).await
        },
        |r| server_error(r) || (r.status == 409 && r.body["code"] == "version_conflict"),
    )
    .await;
    assert_eq!(bounded.status, 200, "{bounded:?}");
    for r in credits.join_all().await {
        assert_eq!(r.status, 201, "{r:?}");
    }
    let posted = 2400 - 100 * accepted;
    assert_eq!(api.balance(&acct).await["posted"], money(posted));
    // Bounded now: the account covers exactly up to its limit.
    let over = money(posted + 50_000 + 1);
    api.transfer(&acct, &sink, &over, "USD", false, &key())
        .await
        .assert_problem(422, "insufficient_funds");
    let exact = money(posted + 50_000);
    let r = api.transfer(&acct, &sink, &exact, "USD", false, &key()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(api.balance(&acct).await["available"], "-500.00");
}

#[tokio::test]
async fn a_status_change_lands_over_movements_in_flight_and_a_bounded_limit_waits_for_them() {
    use fintx_domain::account::OverdraftLimit;
    use fintx_domain::auth::TenantId;
    use fintx_domain::ids::AccountId;
    use fintx_domain::lifecycle::{apply_patch, change_status, AccountChange, AccountPatch, StatusChange};
    use fintx_domain::money::Currency;
    use fintx_domain::ports::{AccountUpdate, CommitError, LedgerStore, LedgerWrite, Reads, Rejection};

    let c = Counted::new().await;
    let api = Api::new(&c.transactions, "t1");
    let acct = api.open("USD", "unlimited").await;
    let sink = api.open("USD", "0").await;
    let tenant = TenantId::parse("t1").unwrap();
    let reads = Reads {
        accounts: vec![AccountId::parse(&acct).unwrap()],
        ..Reads::default()
    };
    let read = || async {
        c.store.read(&tenant, &reads).await.unwrap().accounts[0]
            .clone()
            .unwrap()
    };
    let write = |read: &fintx_domain::account::Account, change: AccountChange| LedgerWrite {
        account_updates: vec![AccountUpdate {
            account: change.account,
            version: read.version,
            change: change.released,
        }],
        ..LedgerWrite::default()
    };
    let now = fintx_adapters::system::now();

    // The account is read, then a debit lands in one of its slots; a freeze decided on
    // the earlier read still commits, since it copies the status to the slots without
    // assuming their figures, and the debit counts once.
    let before = read().await;
    assert_eq!(
        api.transfer(&acct, &sink, "5.00", "USD", false, &key()).await.status,
        201
    );
    let frozen = change_status(&before, StatusChange::Freeze, now).unwrap().unwrap();
    c.store.commit(&write(&before, frozen)).await.unwrap();
    api.transfer(&acct, &sink, "1.00", "USD", false, &key())
        .await
        .assert_problem(422, "account_frozen");
    assert_eq!(api.balance(&acct).await["posted"], "-5.00");

    // A bounded limit decided on a read that a credit has since moved is refused: it
    // gathers the slots into the account's own item, on their versions.
    let before = read().await;
    assert_eq!(
        api.transfer(&sink, &acct, "2.00", "USD", false, &key()).await.status,
        201
    );
    let usd = Currency::parse("USD").unwrap();
    let patch = AccountPatch {
        version: before.version,
        name: None,
        overdraft_limit: Some(OverdraftLimit::parse("100", usd).unwrap()),
        metadata: None,
    };
    let bounded = apply_patch(&before, &patch, now).unwrap().unwrap();
    assert_eq!(
        c.store.commit(&write(&before, bounded)).await,
        Err(CommitError::Rejected(Rejection::Stale))
    );
    assert_eq!(api.balance(&acct).await["posted"], "-3.00");
}
