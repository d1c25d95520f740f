//! Statements and balances in time (SPEC §6) against the emulator, on a virtual clock:
//! every change of the posted balance is one entry with the balance after it, listed
//! newest first within time bounds and across pages; the balance at an instant is exact
//! to the millisecond, holds expiring from their instant whether or not the sweep ran.

use fintx_tests::{calls, key, Api};
use serde_json::{json, Value};

use crate::clocked::Clocked;

/// A statement line as the test writes it: direction, amount, posted after.
fn line(direction: &str, amount: &str, posted_after: &str) -> (String, String, String) {
    (direction.to_owned(), amount.to_owned(), posted_after.to_owned())
}

fn lines(page: &Value) -> Vec<(String, String, String)> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            line(
                e["direction"].as_str().unwrap(),
                e["amount"].as_str().unwrap(),
                e["posted_after"].as_str().unwrap(),
            )
        })
        .collect()
}

fn at(ms: i64) -> String {
    fintx_domain::clock::Timestamp::from_unix_ms(ms).unwrap().to_string()
}

#[tokio::test]
async fn a_statement_lists_every_posted_change_newest_first_with_the_balance_after_it() {
    let c = Clocked::new(21).await;
    let api = Api::new(&c.app, "t1");
    let funder = api.open("USD", "1000").await;
    let a = api.open("USD", "0").await;
    let b = api.open("USD", "0").await;
    c.advance(1_000);
    let t1 = c.now().unix_ms();
    api.transfer(&funder, &a, "100", "USD", false, &key()).await;
    c.advance(1_000);
    // A hold moves no posted money: no line until it posts.
    let hold = api.transfer(&a, &b, "30", "USD", true, &key()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.advance(1_000);
    let t3 = c.now().unix_ms();
    let posted = api
        .post(&format!("/v1/transfers/{hold}/post"), json!({"amount": "20"}), &key())
        .await;
    assert_eq!(posted.status, 200, "{posted:?}");
    c.advance(1_000);
    let t4 = c.now().unix_ms();
    let last = api.transfer(&a, &b, "10.5", "USD", false, &key()).await.body["id"].clone();
    c.advance(1_000);

    let all = api.get(&format!("/v1/accounts/{a}/entries")).await;
    assert_eq!(all.status, 200, "{all:?}");
    assert_eq!(
        lines(&all.body),
        [
            line("debit", "10.50", "69.50"),
            line("debit", "20.00", "80.00"),
            line("credit", "100.00", "100.00"),
        ]
    );
    assert_eq!(all.body["next_cursor"], Value::Null);
    let newest = &all.body["data"][0];
    assert_eq!(newest["transfer_id"], last);
    assert_eq!(newest["created_at"], at(t4));
    // The posting is dated when it posted, under the hold's id.
    assert_eq!(all.body["data"][1]["transfer_id"], hold.as_str());
    assert_eq!(all.body["data"][1]["created_at"], at(t3));
    assert_eq!(all.body["data"][2]["created_at"], at(t1));
    // The other side sees the same movements from its side.
    assert_eq!(
        lines(&api.get(&format!("/v1/accounts/{b}/entries")).await.body),
        [line("credit", "10.50", "30.50"), line("credit", "20.00", "20.00")]
    );

    // One line a page, across the two kinds of entry, each page signed.
    let mut paged = Vec::new();
    let mut path = format!("/v1/accounts/{a}/entries?limit=1");
    loop {
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{page:?}");
        paged.extend(lines(&page.body));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/accounts/{a}/entries?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, lines(&all.body));

    // Time bounds, both inclusive: `to` leaves out the newer lines but not their effect
    // on the balance after the older ones.
    let to = api.get(&format!("/v1/accounts/{a}/entries?to={}", at(t3))).await;
    assert_eq!(
        lines(&to.body),
        [line("debit", "20.00", "80.00"), line("credit", "100.00", "100.00")]
    );
    let from = api.get(&format!("/v1/accounts/{a}/entries?from={}", at(t3))).await;
    assert_eq!(
        lines(&from.body),
        [line("debit", "10.50", "69.50"), line("debit", "20.00", "80.00")]
    );
    let window = api
        .get(&format!(
            "/v1/accounts/{a}/entries?from={}&to={}&limit=1",
            at(t3),
            at(t3)
        ))
        .await;
    assert_eq!(lines(&window.body), [line("debit", "20.00", "80.00")]);
    assert_eq!(window.body["next_cursor"], Value::Null);
    // A cursor continues below where it left off, within new bounds too.
    let first = api.get(&format!("/v1/accounts/{a}/entries?limit=1")).await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let narrowed = api
        .get(&format!("/v1/accounts/{a}/entries?cursor={cursor}&to={}", at(t1)))
        .await;
    assert_eq!(lines(&narrowed.body), [line("credit", "100.00", "100.00")]);

    // Refusals: a tampered cursor, another account's cursor, bounds that do not parse or
    // cross, another tenant's account.
    let mut tampered = cursor.clone().into_bytes();
    let last_byte = tampered.len() - 1;
    tampered[last_byte] = if tampered[last_byte] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    api.get(&format!("/v1/accounts/{a}/entries?cursor={tampered}"))
        .await
        .assert_problem(400, "invalid_cursor");
    api.get(&format!("/v1/accounts/{b}/entries?cursor={cursor}"))
        .await
        .assert_problem(400, "invalid_cursor");
    api.get(&format!("/v1/accounts/{a}/entries?from=yesterday"))
        .await
        .assert_problem(400, "invalid_request");
    api.get(&format!("/v1/accounts/{a}/entries?from={}&to={}", at(t4), at(t3)))
        .await
        .assert_problem(400, "invalid_request");
    Api::new(&c.app, "t2")
        .get(&format!("/v1/accounts/{a}/entries"))
        .await
        .assert_problem(404, "account_not_found");
}

async fn balance_at(api: &Api<'_>, account: &str, ms: i64) -> fintx_tests::Reply {
    api.get(&format!("/v1/accounts/{account}/balance?at={}", at(ms))).await
}

fn figures(posted: &str, pending: &str, available: &str) -> Value {
    json!({"posted": posted, "pending_debits": pending, "pending_credits": "0.00", "available": available})
}

/// The instants of the balance test's history.
struct Points {
    created: i64,
    funded: i64,
    held: i64,
    expires: i64,
}

impl Points {
    async fn check(&self, api: &Api<'_>, a: &str, b: &str, when: &str) {
        let r = balance_at(api, a, self.created).await;
        assert_eq!((r.status, &r.body), (200, &figures("0.00", "0.00", "0.00")), "{when}");
        let expected = [
            (self.funded - 1, figures("0.00", "0.00", "0.00")),
            (self.funded, figures("100.00", "0.00", "100.00")),
            (self.held - 1, figures("100.00", "0.00", "100.00")),
            (self.held, figures("100.00", "30.00", "70.00")),
            (self.expires - 1, figures("100.00", "30.00", "70.00")),
            // From its instant the hold is released, however late storage catches up.
            (self.expires, figures("100.00", "0.00", "100.00")),
        ];
        for (ms, figures) in expected {
            assert_eq!(balance_at(api, a, ms).await.body, figures, "{when} at {}", at(ms));
        }
        let other = balance_at(api, b, self.expires - 1).await;
        assert_eq!(other.body["pending_credits"], "30.00", "{when}");
        assert_eq!(
            balance_at(api, b, self.expires).await.body["pending_credits"],
            "0.00",
            "{when}"
        );
    }
}

#[tokio::test]
async fn a_balance_at_an_instant_is_exact_to_the_millisecond_expiry_included() {
    let c = Clocked::new(22).await;
    let api = Api::new(&c.app, "t1");
    let created = c.now().unix_ms();
    let a = api.open("USD", "0").await;
    let b = api.open("USD", "0").await;
    let funder = api.open("USD", "1000").await;
    c.advance(10);
    let funded = c.now().unix_ms();
    api.transfer(&funder, &a, "100", "USD", false, &key()).await;
    c.advance(10);
    let held = c.now().unix_ms();
    let body = json!({"debit_account_id": a, "credit_account_id": b, "amount": "30",
        "currency": "USD", "pending": true, "expires_in": 60});
    let hold = api.post("/v1/transfers", body, &key()).await;
    assert_eq!(hold.status, 201, "{hold:?}");
    let expires = held + 60_000;
    c.advance(61_000);

    let points = Points {
        created,
        funded,
        held,
        expires,
    };
    points.check(&api, &a, &b, "before the sweep").await;
    assert_eq!(c.stored_balance(&a).await.0, "30", "storage still counts the hold");
    assert_eq!(transactions::sweep(c.store.as_ref(), c.now()).await.unwrap(), 1);
    assert_eq!(c.stored_balance(&a).await.0, "0");
    points.check(&api, &a, &b, "after the sweep").await;
    // The release moved no posted money: no statement line.
    let statement = api.get(&format!("/v1/accounts/{a}/entries")).await;
    assert_eq!(statement.body["data"].as_array().unwrap().len(), 1);

    let balance = |ms: i64| balance_at(&api, &a, ms);
    // Before the account existed there was no account; the future is not known yet.
    balance(created - 1).await.assert_problem(404, "account_not_found");
    balance(c.now().unix_ms() + 1_000)
        .await
        .assert_problem(400, "invalid_request");
    for query in ["", "?at=", "?at=2026-13-01T00:00:00Z", "?at=1795000000000"] {
        api.get(&format!("/v1/accounts/{a}/balance{query}"))
            .await
            .assert_problem(400, "invalid_request");
    }
    Api::new(&c.app, "t2")
        .get(&format!("/v1/accounts/{a}/balance?at={}", at(funded)))
        .await
        .assert_problem(404, "account_not_found");

    // Reads take no write: the account before and after the entries after the instant
    // (one query per kind of entry).
    c.counter.reset();
    assert_eq!(balance(funded).await.status, 200);
    assert_eq!(c.counter.take(), calls(&["GetItem", "Query", "Query", "GetItem"]));
    let statement = api.get(&format!("/v1/accounts/{a}/entries?limit=5")).await;
    assert_eq!(statement.status, 200);
    assert_eq!(c.counter.take(), calls(&["GetItem", "Query", "Query", "GetItem"]));
}
