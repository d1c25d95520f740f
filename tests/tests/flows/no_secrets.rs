//! Logs and storage hold no secrets: the demo's flow (accounts with holders, a reveal,
//! transfers, a hold, a payment) and the webhook flows of both schemes (settled, deposit,
//! rejected, badly signed) run with every log line captured; then every line and a full
//! scan of every table are searched for the PII, secrets and raw bodies submitted.

use aws_sdk_dynamodb::types::AttributeValue;
use fintx_tests::{key, reply, sign_webhook, webhook_event, Api, LogCapture, Stack};
use serde_json::{json, Value};

const BANK_SECRET: &str = "whsec_NmQ5Zjg3YjEyYzM0ZDU2ZTc4ZjkwYTFi";
const STRIPE_SECRET: &str = "whsec_stripe_noleak_8c1f0e2d4b6a7391";

const HOLDER_NAME: &str = "Philippa Quorndon";
const HOLDER_ACCOUNT_NUMBER: &str = "000555123987";
const HOLDER_IBAN: &str = "DE89370400440532013000";
const HOLDER_ROUTING: &str = "011000015";
const COUNTERPARTY_NAME: &str = "Octavian Brightwater";
const COUNTERPARTY_IBAN: &str = "GB29NWBK60161331926819";
/// Fields no handler reads: they exist only in the raw bodies, which are stored sealed.
const RAW_MARKERS: [&str; 4] = [
    "raw-body-marker-settled-5521",
    "raw-body-marker-deposit-8830",
    "raw-body-marker-rejected-1174",
    "raw-body-marker-unsigned-9402",
];

fn config() -> Value {
    json!({"connectors": {
        "demo-bank": {"scheme": "standard-webhooks", "secrets": [BANK_SECRET], "tenants": ["t1"]},
        "demo-stripe": {"scheme": "stripe-v1", "secrets": [STRIPE_SECRET], "tenants": ["t1"]},
    }})
}

fn flatten(value: &AttributeValue, out: &mut String) {
    match value {
        AttributeValue::S(s) | AttributeValue::N(s) => out.push_str(s),
        AttributeValue::B(b) => out.push_str(&String::from_utf8_lossy(b.as_ref())),
        AttributeValue::M(m) => m.iter().for_each(|(k, v)| {
            out.push_str(k);
            out.push('=');
            flatten(v, out)
        }),
        AttributeValue::L(l) => l.iter().for_each(|v| flatten(v, out)),
        AttributeValue::Ss(l) | AttributeValue::Ns(l) => l.iter().for_each(|s| out.push_str(s)),
        AttributeValue::Bs(l) => l
            .iter()
            .for_each(|b| out.push_str(&String::from_utf8_lossy(b.as_ref()))),
        _ => {}
    }
    out.push('\n');
}

async fn deliver(app: &bank_webhooks::App, connector: &str, body: &str, secret: &str) -> (u16, Value) {
    let scheme = if connector == "demo-stripe" {
        "stripe-v1"
    } else {
        "standard-webhooks"
    };
    let headers = sign_webhook(scheme, secret, body, None, None);
    let r = reply(bank_webhooks::handle(app, webhook_event(connector, body, &headers)).await);
    (r.status, r.body)
}

#[tokio::test]
async fn no_pii_secret_or_raw_body_reaches_the_logs_or_any_table() {
    let stack = Stack::fresh().await;
    let mut transactions = stack.transactions_app();
    transactions.connectors = fintx_domain::payment::ConnectorGrant::parse_list("demo-bank=*,demo-stripe=*").unwrap();
    let webhooks = stack.webhooks_app(&config()).await;
    let logs = LogCapture::start();
    // The audit trail is written beside the logs, not through tracing: collect it too.
    fintx_adapters::audit::capture::start();
    let api = Api::new(&transactions, "t1");

    // The demo's flow: accounts (one with a holder, revealed once), a transfer, a hold
    // posted in part, a payment to a counterparty.
    let holder = json!({"currency": "USD", "overdraft_limit": "100000", "holder": {
        "name": HOLDER_NAME, "account_number": HOLDER_ACCOUNT_NUMBER, "routing_number": HOLDER_ROUTING, "iban": HOLDER_IBAN}});
    let opened = api.send("POST", "/v1/accounts", Some(&holder), None).await;
    assert_eq!(opened.status, 201, "{opened:?}");
    let funder = opened.body["id"].as_str().unwrap().to_owned();
    let revealed = api.get(&format!("/v1/accounts/{funder}?reveal=holder")).await;
    assert_eq!(revealed.body["holder"]["name"], HOLDER_NAME, "{revealed:?}");
    let customer = api.open("USD", "0").await;
    assert_eq!(
        api.transfer(&funder, &customer, "250.00", "USD", false, &key())
            .await
            .status,
        201
    );
    let hold = api.transfer(&customer, &funder, "20.00", "USD", true, &key()).await;
    let hold_id = hold.body["id"].as_str().unwrap().to_owned();
    let posted = api
        .post(
            &format!("/v1/transfers/{hold_id}/post"),
            json!({"amount": "5.00"}),
            &key(),
        )
        .await;
    assert_eq!(posted.status, 200, "{posted:?}");
    let payment = api
        .post(
            "/v1/payments",
            json!({"account_id": customer, "amount": "40.00", "currency": "USD", "connector": "demo-bank",
                   "counterparty": {"name": COUNTERPARTY_NAME, "iban": COUNTERPARTY_IBAN}}),
            &key(),
        )
        .await;
    assert_eq!(payment.status, 201, "{payment:?}");
    let payment_id = payment.body["id"].as_str().unwrap().to_owned();

    // The webhook flows: settled (standard-webhooks), a deposit (stripe-v1), a signed
    // body that is no event (rejected), and a body with a bad signature (refused).
    let settled =
        json!({"type": "payment.settled", "data": {"payment_id": payment_id}, "note": RAW_MARKERS[0]}).to_string();
    let (status, body) = deliver(&webhooks, "demo-bank", &settled, BANK_SECRET).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("applied")), "{body}");
    let deposit = json!({"id": "evt_noleak_1", "type": "deposit.received", "data": {"account_id": customer,
        "amount": "12.00", "currency": "USD", "bank_reference": "BR-1"}, "note": RAW_MARKERS[1]})
    .to_string();
    let (status, body) = deliver(&webhooks, "demo-stripe", &deposit, STRIPE_SECRET).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("applied")), "{body}");
    let not_an_event = format!("{{\"type\": \"payment.settled\", \"note\": \"{}\"", RAW_MARKERS[2]);
    let (status, body) = deliver(&webhooks, "demo-bank", &not_an_event, BANK_SECRET).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("rejected")), "{body}");
    let unsigned =
        json!({"type": "payment.settled", "data": {"payment_id": payment_id}, "note": RAW_MARKERS[3]}).to_string();
    let forged = sign_webhook(
        "standard-webhooks",
        "whsec_Zm9yZ2VkLXNlY3JldC0wMTIzNDU2Nzg5",
        &unsigned,
        None,
        None,
    );
    let refused = reply(bank_webhooks::handle(&webhooks, webhook_event("demo-bank", &unsigned, &forged)).await);
    assert_eq!(refused.status, 401, "{refused:?}");

    let mut secrets: Vec<String> = vec![
        HOLDER_NAME.into(),
        "Quorndon".into(),
        HOLDER_ACCOUNT_NUMBER.into(),
        "555123".into(),
        HOLDER_IBAN.into(),
        "370400440532".into(),
        HOLDER_ROUTING.into(),
        COUNTERPARTY_NAME.into(),
        "Brightwater".into(),
        COUNTERPARTY_IBAN.into(),
        "NWBK6016".into(),
        BANK_SECRET.into(),
        BANK_SECRET.trim_start_matches("whsec_").into(),
        STRIPE_SECRET.into(),
        STRIPE_SECRET.trim_start_matches("whsec_").into(),
    ];
    secrets.extend(RAW_MARKERS.iter().map(|m| (*m).to_owned()));

    let audit = fintx_adapters::audit::capture::finish();
    assert_eq!(audit.len(), 1, "the one reveal was audited: {audit:?}");
    let log = format!("{}{}", logs.text(), audit.concat());
    assert!(log.lines().count() > 5, "the capture saw the run's log lines: {log}");
    for line in log.lines() {
        for secret in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "{secret:?} found in a log line: {line}"
            );
        }
    }

    let tables = [
        &stack.tables.ledger,
        &stack.tables.idempotency,
        &stack.tables.webhook_events,
        &stack.tables.analytics,
    ];
    let mut scanned = 0;
    let mut saw_the_customer = false;
    for table in tables {
        for item in stack.scan_all(table).await {
            scanned += 1;
            let mut text = String::new();
            for (name, value) in &item {
                text.push_str(name);
                text.push('=');
                flatten(value, &mut text);
            }
            saw_the_customer |= text.contains(&customer);
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{secret:?} found at rest in {table}: {text}"
                );
            }
        }
    }
    assert!(scanned >= 10, "the scan read the flow's items ({scanned})");
    assert!(
        saw_the_customer,
        "the scan reads the items' text (the customer's id is in it)"
    );
}
