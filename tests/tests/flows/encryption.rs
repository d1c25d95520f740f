//! Holder encryption end to end, against the emulator's real KMS API: sealed at rest,
//! masked by default, revealed only with `pii:read`, bound to its record, fail-closed.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use fintx_adapters::envelope::CacheLimits;
use fintx_domain::crypto::{Cipher, SealContext, Sealed};
use fintx_tests::openapi::Contract;
use fintx_tests::{api_event, claims, reply, request, CallCounter, LogCapture, Reply, Stack};
use serde_json::{json, Value};

const NAME: &str = "Zenobia Quellfeather";
const ACCOUNT_NUMBER: &str = "000987654321";
const IBAN: &str = "GB82WEST12345698765432";
const ROUTING: &str = "021000021";

fn holder_body(name: &str) -> String {
    json!({
        "currency": "USD",
        "holder": {"name": name, "account_number": ACCOUNT_NUMBER, "routing_number": ROUTING, "iban": IBAN}
    })
    .to_string()
}

async fn call(app: &transactions::App, method: &str, path: &str, body: Option<&str>, claims: Option<Value>) -> Reply {
    reply(transactions::handle(app, request(&api_event(method, path, body, claims))).await)
}

fn item_text(item: &std::collections::HashMap<String, AttributeValue>) -> String {
    fn flatten(value: &AttributeValue, out: &mut String) {
        match value {
            AttributeValue::S(s) | AttributeValue::N(s) => out.push_str(s),
            AttributeValue::B(b) => out.push_str(&String::from_utf8_lossy(b.as_ref())),
            AttributeValue::M(m) => m.iter().for_each(|(k, v)| {
                out.push_str(k);
                flatten(v, out)
            }),
            AttributeValue::L(l) => l.iter().for_each(|v| flatten(v, out)),
            AttributeValue::Ss(l) => l.iter().for_each(|s| out.push_str(s)),
            _ => {}
        }
        out.push('\u{1}');
    }
    let mut out = String::new();
    for (k, v) in item {
        out.push_str(k);
        flatten(v, &mut out);
    }
    out
}

#[tokio::test]
async fn holders_are_masked_by_default_and_revealed_only_with_pii_read() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let contract = Contract::load();
    // The strictest level a deployment may set: the audit trail must survive it.
    let logs = LogCapture::start_at(tracing::Level::ERROR);
    fintx_adapters::audit::capture::start();

    let created = call(
        &app,
        "POST",
        "/v1/accounts",
        Some(&holder_body(NAME)),
        Some(claims("t1", "ledger:write")),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    contract.check("POST", "/v1/accounts", &created);
    let masked = json!({"name_initials": "Z.Q.", "account_number_last4": "4321", "iban_last4": "5432"});
    assert_eq!(created.body["holder"], masked);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let plain = call(
        &app,
        "GET",
        &format!("/v1/accounts/{id}"),
        None,
        Some(claims("t1", "ledger:read")),
    )
    .await;
    assert_eq!(plain.body["holder"], masked);

    let refused = call(
        &app,
        "GET",
        &format!("/v1/accounts/{id}?reveal=holder"),
        None,
        Some(claims("t1", "ledger:read")),
    )
    .await;
    refused.assert_problem(403, "forbidden");

    let revealed = call(
        &app,
        "GET",
        &format!("/v1/accounts/{id}?reveal=holder"),
        None,
        Some(claims("t1", "ledger:read pii:read")),
    )
    .await;
    assert_eq!(revealed.status, 200, "{revealed:?}");
    contract.check("GET", "/v1/accounts/{id}", &revealed);
    assert_eq!(
        revealed.body["holder"],
        json!({"name": NAME, "account_number": ACCOUNT_NUMBER, "routing_number": ROUTING, "iban": IBAN})
    );

    let foreign = call(
        &app,
        "GET",
        &format!("/v1/accounts/{id}?reveal=holder"),
        None,
        Some(claims("t2", "ledger:read pii:read")),
    )
    .await;
    foreign.assert_problem(404, "account_not_found");

    let audit = fintx_adapters::audit::capture::finish();
    assert_eq!(audit.len(), 1, "exactly one reveal was audited: {audit:?}");
    let line: serde_json::Value = serde_json::from_str(&audit[0]).unwrap();
    assert_eq!(
        (&line["audit"], &line["record_id"], &line["subject"], &line["tenant"]),
        (&json!("pii_reveal"), &json!(id), &json!("user-1"), &json!("t1"))
    );
    for secret in [NAME, ACCOUNT_NUMBER, ROUTING, IBAN] {
        assert!(
            !audit[0].contains(secret),
            "the audit line names the record, never the data"
        );
    }
    // The audit trail is not a log line: the strict level dropped every info line.
    assert!(!logs.text().contains("pii_reveal"), "{}", logs.text());
}

#[tokio::test]
async fn no_plaintext_holder_data_is_at_rest_or_in_the_logs() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let logs = LogCapture::start();
    let names = ["Quintessa Marblewick", "Ignatius Fernsby-Holloway", "Yusra Thornquist"];
    for name in names {
        let r = call(
            &app,
            "POST",
            "/v1/accounts",
            Some(&holder_body(name)),
            Some(claims("t1", "ledger:write")),
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
        let id = r.body["id"].as_str().unwrap();
        let shown = call(
            &app,
            "GET",
            &format!("/v1/accounts/{id}?reveal=holder"),
            None,
            Some(claims("t1", "ledger:read pii:read")),
        )
        .await;
        assert_eq!(shown.body["holder"]["name"], name);
    }

    let items = stack.scan_all(&stack.tables.ledger).await;
    assert_eq!(items.len(), names.len());
    let secrets: Vec<&str> = names
        .iter()
        .flat_map(|n| n.split(' '))
        .chain([ACCOUNT_NUMBER, IBAN, ROUTING, "WEST1234", "987654"])
        .collect();
    for item in &items {
        assert!(item.contains_key("holder_sealed"), "the holder is stored sealed");
        let text = item_text(item);
        for secret in &secrets {
            assert!(!text.contains(secret), "plaintext {secret:?} found at rest in {item:?}");
        }
    }
    let log = logs.text();
    assert!(!log.is_empty(), "the capture saw the run's log lines");
    for secret in &secrets {
        assert!(!log.contains(secret), "plaintext {secret:?} found in the logs");
    }
}

#[tokio::test]
async fn tampering_with_any_byte_of_a_stored_holder_fails_to_open() {
    let stack = Stack::fresh().await;
    let cipher = stack.cipher(stack.kms.clone(), CacheLimits::default());
    let tenant = fintx_domain::auth::TenantId::parse("t1").unwrap();
    let context = SealContext::new(&tenant, "account", "acct_x", "holder");
    let sealed = cipher.seal(b"{\"name\":\"Ada\"}", &context).await.unwrap();
    assert_eq!(
        cipher.open(&sealed, &context).await.unwrap().expose(),
        b"{\"name\":\"Ada\"}"
    );

    for i in 0..sealed.as_bytes().len() {
        let mut bytes = sealed.as_bytes().to_vec();
        bytes[i] ^= 0x01;
        let result = cipher.open(&Sealed::from_bytes(bytes), &context).await;
        assert!(result.is_err(), "a change at byte {i} still opened");
    }
    for other in [
        SealContext::new(&tenant, "account", "acct_y", "holder"),
        SealContext::new(
            &fintx_domain::auth::TenantId::parse("t2").unwrap(),
            "account",
            "acct_x",
            "holder",
        ),
        SealContext::new(&tenant, "account", "acct_x", "iban"),
        SealContext::new(&tenant, "payment", "acct_x", "holder"),
    ] {
        assert!(cipher.open(&sealed, &other).await.is_err(), "opened under {other:?}");
    }
}

#[tokio::test]
async fn a_holder_copied_into_another_account_or_tenant_does_not_open() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let mut ids = Vec::new();
    for (tenant, name) in [("t1", NAME), ("t1", "Other Person"), ("t2", "Third Person")] {
        let r = call(
            &app,
            "POST",
            "/v1/accounts",
            Some(&holder_body(name)),
            Some(claims(tenant, "ledger:write")),
        )
        .await;
        ids.push((tenant, r.body["id"].as_str().unwrap().to_owned()));
    }
    let source = stack
        .dynamo
        .get_item()
        .table_name(&stack.tables.ledger)
        .key("pk", AttributeValue::S(format!("ACCT#{}", ids[0].1)))
        .key("sk", AttributeValue::S("ACCT".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let stolen = source["holder_sealed"].clone();
    for (tenant, id) in &ids[1..] {
        stack
            .dynamo
            .update_item()
            .table_name(&stack.tables.ledger)
            .key("pk", AttributeValue::S(format!("ACCT#{id}")))
            .key("sk", AttributeValue::S("ACCT".into()))
            .update_expression("SET holder_sealed = :h")
            .expression_attribute_values(":h", stolen.clone())
            .send()
            .await
            .unwrap();
        let r = call(
            &app,
            "GET",
            &format!("/v1/accounts/{id}?reveal=holder"),
            None,
            Some(claims(tenant, "ledger:read pii:read")),
        )
        .await;
        r.assert_problem(503, "unavailable");
        assert!(!r.body.to_string().contains("Zenobia"));
    }
}

#[tokio::test]
async fn when_kms_is_unavailable_nothing_is_written_and_the_answer_is_503() {
    let stack = Stack::fresh().await;
    let base = fintx_adapters::aws::sdk_config().unwrap();
    // Nothing listens on port 9 of the loopback: every KMS call fails to connect.
    let unreachable = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&base)
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    let mut app = stack.transactions_app();
    app.cipher = Arc::new(stack.cipher(unreachable, CacheLimits::default()));
    let down = call(
        &app,
        "POST",
        "/v1/accounts",
        Some(&holder_body(NAME)),
        Some(claims("t1", "ledger:write")),
    )
    .await;
    down.assert_problem(503, "encryption_unavailable");
    assert_eq!(down.body["detail"], "Encryption is temporarily unavailable");

    // A key KMS does not know fails the same way.
    app.cipher = Arc::new(fintx_adapters::envelope::EnvelopeCipher::new(
        fintx_adapters::envelope::KmsDataKeys::new(stack.kms.clone(), "alias/does-not-exist".into()),
        CacheLimits::default(),
    ));
    let r = call(
        &app,
        "POST",
        "/v1/accounts",
        Some(&holder_body(NAME)),
        Some(claims("t1", "ledger:write")),
    )
    .await;
    r.assert_problem(503, "encryption_unavailable");
    assert_eq!(
        stack.scan_all(&stack.tables.ledger).await.len(),
        0,
        "a failed seal wrote something"
    );
}

#[tokio::test]
async fn a_thousand_account_creations_make_a_handful_of_kms_calls() {
    let stack = Stack::fresh().await;
    let counter = CallCounter::default();
    let mut app = stack.transactions_app();
    app.cipher = Arc::new(stack.cipher(stack.counted_kms(&counter).await, CacheLimits::default()));
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    // Eight concurrent creators share the cache, as requests in one process do.
    for worker in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..125 {
                let body = holder_body(&format!("Holder {worker} {i}"));
                let r = call(
                    &app,
                    "POST",
                    "/v1/accounts",
                    Some(&body),
                    Some(claims("t1", "ledger:write")),
                )
                .await;
                assert_eq!(r.status, 201, "{r:?}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let generated = counter.count("GenerateDataKey");
    assert!(
        (1..=2).contains(&generated),
        "1,000 creations made {generated} GenerateDataKey calls"
    );
    assert_eq!(counter.total(), generated, "no other KMS call was needed");
}

#[tokio::test]
async fn a_data_key_is_replaced_after_its_maximum_age() {
    let stack = Stack::fresh().await;
    let counter = CallCounter::default();
    let limits = CacheLimits {
        max_age: Duration::from_millis(300),
        ..CacheLimits::default()
    };
    let cipher = stack.cipher(stack.counted_kms(&counter).await, limits);
    let tenant = fintx_domain::auth::TenantId::parse("t1").unwrap();
    let context = SealContext::new(&tenant, "account", "acct_x", "holder");
    let first = cipher.seal(b"a", &context).await.unwrap();
    let second = cipher.seal(b"b", &context).await.unwrap();
    assert_eq!(counter.count("GenerateDataKey"), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let third = cipher.seal(b"c", &context).await.unwrap();
    assert_eq!(counter.count("GenerateDataKey"), 2, "an expired key was reused");
    // The wrapped key travels in the header: the first two share it, the third does not.
    let header = |s: &Sealed| {
        let b = s.as_bytes();
        let at = 2 + usize::from(b[1]);
        let wrapped_len = usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
        b[at + 2..at + 2 + wrapped_len].to_vec()
    };
    assert_eq!(header(&first), header(&second));
    assert_ne!(header(&first), header(&third));
    for (sealed, plain) in [(&first, b"a"), (&third, b"c")] {
        assert_eq!(cipher.open(sealed, &context).await.unwrap().expose(), plain);
    }
}
