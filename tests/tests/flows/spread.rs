//! High-volume accounts (SPEC §10) against the emulator: a clearing account's balance is
//! spread over balance slots, so 200 concurrent payments and deposits through one
//! connector, tenant and currency touch several items, not one, and every read of the
//! account (balance, listing, statement, balance in time) is still exact.

use std::collections::BTreeSet;
use std::sync::Arc;

use fintx_tests::{deliver, key, reply, sign_webhook, webhook_event, Api, Counted, Reply, COUNTED_SECRET};
use serde_json::{json, Value};

/// A request to run beside others.
pub(crate) type Work<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T>>>;

/// Runs every future at once on this thread, and returns their outputs in order.
pub(crate) async fn all<T: 'static>(futures: Vec<Work<T>>) -> Vec<T> {
    let local = tokio::task::LocalSet::new();
    let handles: Vec<_> = futures.into_iter().map(|f| local.spawn_local(f)).collect();
    local
        .run_until(async move {
            let mut out = Vec::new();
            for handle in handles {
                out.push(handle.await.unwrap());
            }
            out
        })
        .await
}

/// Whole cents as a USD or EUR amount string (`-12.05`).
pub(crate) fn money(cents: i64) -> String {
    format!(
        "{}{}.{:02}",
        if cents < 0 { "-" } else { "" },
        cents.abs() / 100,
        cents.abs() % 100
    )
}

/// The account `id` as the tenant's account listing shows it.
pub(crate) async fn listed(api: &Api<'_>, id: &str) -> Value {
    let page = api.get("/v1/accounts?limit=100").await;
    page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .unwrap()
}

/// Sends a request again while `again` says so, as a client retries under its key (on
/// the single-threaded emulator, requests racing many others may run out of their time
/// budget: 503), at most 100 times, so one that never gets through fails the test
/// rather than hanging it.
pub(crate) async fn retried<F, Fut>(mut send: F, again: impl Fn(&Reply) -> bool) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let mut last = None;
    for _ in 0..100 {
        let r = send().await;
        if !again(&r) {
            return r;
        }
        last = Some(r);
    }
    panic!("still answered as retryable after 100 attempts: {last:?}");
}

/// What a client retries: a server error.
pub(crate) fn server_error(r: &Reply) -> bool {
    r.status >= 500
}

/// A signed webhook delivered as a bank does: again, while it answers 5xx.
async fn deliver_until_answered(app: &bank_webhooks::App, body: &Value, id: &str) -> Value {
    let text = body.to_string();
    let r = retried(
        || async {
            let headers = sign_webhook("standard-webhooks", COUNTED_SECRET, &text, Some(id), None);
            reply(bank_webhooks::handle(app, webhook_event("demo-bank", &text, &headers)).await)
        },
        server_error,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

#[tokio::test]
async fn two_hundred_concurrent_payments_and_deposits_spread_over_slots_and_stay_exact() {
    let c = Counted::new().await;
    let webhooks = Arc::new(c.webhooks_serving(&["t1"]).await);
    let api = Api::new(&c.transactions, "t1");
    let mut customers = Vec::new();
    for _ in 0..10 {
        customers.push(api.open("USD", "100000").await);
    }
    // The first payment opens the clearing account; then 100 payments and 100 deposits
    // go through it at once.
    let first = api
        .post(
            "/v1/payments",
            json!({"account_id": customers[0], "amount": "1.00", "currency": "USD",
                   "connector": "demo-bank", "counterparty": {"name": "Ada Lovelace"}}),
            &key(),
        )
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    let clearing = api
        .get(&format!(
            "/v1/transfers/{}",
            first.body["transfer_id"].as_str().unwrap()
        ))
        .await
        .body["credit_account_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // One deposit first, as a warm environment has its data key for archiving bodies
    // (one environment serves one request at a time on Lambda; here 200 share one).
    let warm = json!({"id": "evt_dep_warm", "type": "deposit.received",
        "data": {"account_id": customers[0], "amount": "0.01", "currency": "USD", "bank_reference": "dep-warm"}});
    assert_eq!(deliver(&webhooks, &warm, "msg_dep_warm").await["outcome"], "applied");
    c.counter.reset();

    // All 200 at once, at most 25 in flight: the emulator serves one request at a time,
    // and more would wait past their time budget.
    let gate = Arc::new(tokio::sync::Semaphore::new(25));
    let mut work: Vec<Work<(u16, Value)>> = Vec::new();
    for i in 0..100 {
        let app = c.transactions.clone();
        let account = customers[i % 10].clone();
        let payment_gate = gate.clone();
        let amount = format!("{}.{:02}", 1 + i % 7, i % 100);
        work.push(Box::pin(async move {
            let body = json!({"account_id": account, "amount": amount, "currency": "USD",
                   "connector": "demo-bank", "counterparty": {"name": "Ada Lovelace"}});
            // The emulator serves one request at a time, so some of 200 at once run out
            // of their time budget (503): the client retries under the same key.
            let _in_flight = payment_gate.acquire().await.unwrap();
            let (api, key) = (Api::new(&app, "t1"), key());
            let r = retried(|| api.post("/v1/payments", body.clone(), &key), server_error).await;
            (r.status, r.body)
        }));
        let webhooks = webhooks.clone();
        let account = customers[(i + 3) % 10].clone();
        let deposit_gate = gate.clone();
        let amount = format!("{}.{:02}", 2 + i % 5, (i * 7) % 100);
        work.push(Box::pin(async move {
            let _in_flight = deposit_gate.acquire().await.unwrap();
            let event = json!({"id": format!("evt_dep_{i}"), "type": "deposit.received",
                "data": {"account_id": account, "amount": amount, "currency": "USD",
                         "bank_reference": format!("dep-{i}")}});
            (
                200,
                deliver_until_answered(&webhooks, &event, &format!("msg_dep_{i}")).await,
            )
        }));
    }
    let answers = all(work).await;
    let mut held = 100; // the first payment, in cents
    let mut deposited = 1; // the warm-up deposit, in cents
    for (i, (status, body)) in answers.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(*status, 201, "{body}");
            let (whole, cents) = body["amount"].as_str().unwrap().split_once('.').unwrap();
            held += whole.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap();
        } else {
            // A delivery whose first try committed but timed out answers `duplicate`.
            assert!(
                matches!(body["outcome"].as_str(), Some("applied" | "duplicate")),
                "{body}"
            );
            let n = i / 2;
            deposited += (2 + n as i64 % 5) * 100 + (n as i64 * 7) % 100;
        }
    }
    // Exact: the clearing account holds every payment and gave every deposit.
    assert_eq!(
        api.balance(&clearing).await,
        json!({"posted": money(-deposited), "pending_debits": "0.00", "pending_credits": money(held),
               "available": money(-deposited)})
    );
    // Spread: the writes moved many balance slots, and the account's own item hardly.
    let writes = c.counter.written_partitions();
    assert_eq!(writes.len(), 200, "one write per payment and per deposit");
    let own = format!("ACCT#{clearing}");
    let slots: BTreeSet<&String> = writes
        .iter()
        .flatten()
        .filter(|pk| pk.starts_with(&format!("{own}#")))
        .collect();
    assert!(slots.len() >= 12, "16 slots, 200 writes: {slots:?}");
    let touching_own = writes.iter().filter(|w| w.contains(&own)).count();
    assert_eq!(
        touching_own, 0,
        "an environment that saw the account stored leaves its item alone"
    );

    // Every read sums the slots: the listing, the statement, the balance in time.
    let mut transfers_listed = 0;
    let mut path = format!("/v1/accounts/{clearing}/transfers?limit=100");
    loop {
        let page = api.get(&path).await;
        transfers_listed += page.body["data"].as_array().unwrap().len();
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/accounts/{clearing}/transfers?limit=100&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(transfers_listed, 202);
    let statement = api.get(&format!("/v1/accounts/{clearing}/entries?limit=100")).await;
    assert_eq!(statement.body["data"][0]["posted_after"], money(-deposited));
    let now = fintx_adapters::system::now();
    let then = api.get(&format!("/v1/accounts/{clearing}/balance?at={now}")).await;
    assert_eq!(then.body["pending_credits"], money(held), "{then:?}");
    assert_eq!(listed(&api, &clearing).await["balance"]["posted"], money(-deposited));
}
