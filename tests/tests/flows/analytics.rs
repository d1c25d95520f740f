//! Rollups from the real ledger stream of the emulator, exact under redelivery, and the
//! analytics query API.

use std::collections::BTreeMap;
use std::sync::Arc;

use analytics_rollups::{apply_batch, App};
use aws_sdk_dynamodbstreams::types::{AttributeValue as S, ShardIteratorType};
use base64::Engine;
use fintx_adapters::rollup_store::DynamoRollups;
use fintx_adapters::schema::transfer_from_item;
use fintx_domain::ports::RollupStore;
use fintx_domain::rollup::{contributions, movement, Granularity, RollupKey, Scope, Totals, TransferImage};
use fintx_tests::openapi::Contract;
use fintx_tests::{api_event, claims, key, reply, request, Api, Reply, Stack};
use serde_json::{json, Map, Value};

fn attr(value: &S) -> Value {
    match value {
        S::S(s) => json!({"S": s}),
        S::N(n) => json!({"N": n}),
        S::B(b) => json!({"B": base64::engine::general_purpose::STANDARD.encode(b.as_ref())}),
        S::Bool(b) => json!({"BOOL": b}),
        S::Null(_) => json!({"NULL": true}),
        S::M(m) => json!({"M": m.iter().map(|(k, v)| (k.clone(), attr(v))).collect::<Map<_, _>>()}),
        S::L(l) => json!({"L": l.iter().map(attr).collect::<Vec<_>>()}),
        S::Ss(l) => json!({"SS": l}),
        S::Ns(l) => json!({"NS": l}),
        other => panic!("unexpected attribute {other:?}"),
    }
}

fn image(map: Option<&std::collections::HashMap<String, S>>) -> Value {
    map.map(|m| Value::Object(m.iter().map(|(k, v)| (k.clone(), attr(v))).collect()))
        .unwrap_or(Value::Null)
}

/// Every record of the ledger table's stream so far, as Lambda would deliver them.
async fn stream_records(stack: &Stack) -> Vec<Value> {
    let config = fintx_adapters::aws::sdk_config().unwrap();
    let streams = aws_sdk_dynamodbstreams::Client::new(&config);
    let arn = stack
        .dynamo
        .describe_table()
        .table_name(&stack.tables.ledger)
        .send()
        .await
        .unwrap()
        .table
        .unwrap()
        .latest_stream_arn
        .unwrap();
    let description = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap();
    let mut out = Vec::new();
    for shard in description.shards.unwrap_or_default() {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id.unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        for _ in 0..100 {
            let Some(it) = iterator.take() else { break };
            let page = streams
                .get_records()
                .shard_iterator(it)
                .limit(1000)
                .send()
                .await
                .unwrap();
            let records = page.records.unwrap_or_default();
            let empty = records.is_empty();
            for r in records {
                let d = r.dynamodb.unwrap();
                out.push(json!({
                    "eventID": r.event_id.unwrap_or_default(),
                    "eventName": r.event_name.map(|e| e.as_str().to_owned()).unwrap_or_default(),
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": arn,
                    "dynamodb": {
                        "ApproximateCreationDateTime": d.approximate_creation_date_time.map(|t| t.secs()).unwrap_or(0),
                        "Keys": image(d.keys.as_ref()),
                        "NewImage": image(d.new_image.as_ref()),
                        "OldImage": image(d.old_image.as_ref()),
                        "SequenceNumber": d.sequence_number.unwrap_or_default(),
                        "SizeBytes": d.size_bytes.unwrap_or(0),
                        "StreamViewType": "NEW_AND_OLD_IMAGES",
                    }
                }));
            }
            if empty {
                break;
            }
            iterator = page.next_shard_iterator;
        }
    }
    out
}

fn batch(records: &[Value]) -> aws_lambda_events::event::dynamodb::Event {
    serde_json::from_value(json!({ "Records": records })).expect("a stream batch")
}

fn analytics_app(stack: &Stack) -> App {
    App {
        store: Arc::new(stack.store()),
        rollups: Arc::new(DynamoRollups::new(stack.dynamo.clone(), stack.tables.analytics.clone())),
        dev_auth_headers: false,
    }
}

/// What the rollups must be: recomputed from the ledger's transfers as they stand.
async fn recomputed(stack: &Stack) -> BTreeMap<RollupKey, Totals> {
    let mut expected: BTreeMap<RollupKey, Totals> = BTreeMap::new();
    for item in stack.scan_all(&stack.tables.ledger).await {
        if item.get("entity").and_then(|e| e.as_s().ok()).map(String::as_str) != Some("transfer") {
            continue;
        }
        let t = transfer_from_item(&item).unwrap();
        let image = TransferImage {
            id: t.id,
            tenant: t.tenant.clone(),
            debit_account_id: t.debit_account_id,
            credit_account_id: t.credit_account_id,
            currency: t.currency,
            posted_amount: t.posted_amount.value(),
            posted_at: t.posted_at,
        };
        if let Some(m) = movement(None, &image) {
            for (k, totals) in contributions(&m) {
                expected.entry(k).or_default().add(&totals).unwrap();
            }
        }
    }
    expected
}

async fn stored(rollups: &DynamoRollups, keys: impl Iterator<Item = &RollupKey>) -> BTreeMap<RollupKey, Totals> {
    let mut out = BTreeMap::new();
    for k in keys {
        let currency = fintx_domain::money::Currency::parse(k.currency_code).unwrap();
        for (period, t) in rollups
            .rows(&k.tenant, &k.scope, currency, k.granularity, &k.period, &k.period)
            .await
            .unwrap()
        {
            assert_eq!(period, k.period);
            out.insert(k.clone(), t);
        }
    }
    out
}

/// A workload with every kind of movement: immediate and held transfers, partial posts,
/// voids, partial reversals, payments and their settlement.
async fn workload(stack: &Stack) {
    let app = stack.transactions_app();
    for tenant in ["t1", "t2"] {
        let api = Api::new(&app, tenant);
        let a = api.open("USD", "10000").await;
        let b = api.open("USD", "0").await;
        let c = api.open("EUR", "500").await;
        let d = api.open("EUR", "0").await;
        let t1 = api.transfer(&a, &b, "100", "USD", false, &key()).await.body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let hold = api.transfer(&a, &b, "40", "USD", true, &key()).await.body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        api.post(&format!("/v1/transfers/{hold}/post"), json!({"amount": "25.5"}), &key())
            .await;
        let hold2 = api.transfer(&b, &a, "10", "USD", true, &key()).await.body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        api.post(&format!("/v1/transfers/{hold2}/void"), json!({}), &key())
            .await;
        api.post(&format!("/v1/transfers/{t1}/reverse"), json!({"amount": "30"}), &key())
            .await;
        api.transfer(&c, &d, "7.77", "EUR", false, &key()).await;
        let payment = json!({"account_id": a, "amount": "12", "currency": "USD", "connector": "demo-bank", "counterparty": {"name": "Ada"}});
        let payment = api.post("/v1/payments", payment, &key()).await;
        assert_eq!(payment.status, 201);
        // The bank settles the payment and a deposit arrives, both through the webhook function.
        let config = json!({"connectors": {"demo-bank": {"scheme": "stripe-v1", "secrets": ["whsec_analytics_test_secret_01"], "tenants": ["t1", "t2"]}}});
        let webhooks = stack.webhooks_app(&config).await;
        let payment_id = payment.body["id"].as_str().unwrap();
        for (id, body) in [
            (
                format!("evt_s_{tenant}"),
                json!({"type": "payment.settled", "data": {"payment_id": payment_id}}),
            ),
            (
                format!("evt_d_{tenant}"),
                json!({"type": "deposit.received", "data": {"account_id": b, "amount": "3.21", "currency": "USD", "bank_reference": format!("DEP-{tenant}")}}),
            ),
        ] {
            let mut body = body;
            body["id"] = json!(id);
            let text = body.to_string();
            let headers = fintx_tests::sign_webhook("stripe-v1", "whsec_analytics_test_secret_01", &text, None, None);
            let r =
                reply(bank_webhooks::handle(&webhooks, fintx_tests::webhook_event("demo-bank", &text, &headers)).await);
            assert_eq!(r.body, json!({"outcome": "applied"}), "{r:?}");
        }
    }
}

#[tokio::test]
async fn rollups_equal_a_recomputation_from_the_ledger_even_when_batches_are_redelivered() {
    let stack = Stack::fresh().await;
    workload(&stack).await;
    let records = stream_records(&stack).await;
    assert!(records.len() > 20, "the stream carries the workload: {}", records.len());
    let app = analytics_app(&stack);
    let rollups = DynamoRollups::new(stack.dynamo.clone(), stack.tables.analytics.clone());
    let expected = recomputed(&stack).await;
    assert!(!expected.is_empty());

    // First delivery in batches of 7.
    for chunk in records.chunks(7) {
        let (response, _) = apply_batch(&app, &batch(chunk)).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    assert_eq!(
        stored(&rollups, expected.keys()).await,
        expected,
        "rollups after one delivery"
    );

    // Whole batches again, a replay from the middle, and batches cut differently.
    for chunk in records.chunks(7) {
        apply_batch(&app, &batch(chunk)).await;
    }
    let middle = records.len() / 2;
    apply_batch(&app, &batch(&records[middle..])).await;
    for chunk in records.chunks(3).rev() {
        let (_, report) = apply_batch(&app, &batch(chunk)).await;
        assert_eq!(report.applied, 0, "a redelivered movement counted again");
    }
    assert_eq!(
        stored(&rollups, expected.keys()).await,
        expected,
        "rollups after redelivery"
    );

    // The tenant's net is zero: every movement is a debit and a credit.
    let tenant_days: Vec<_> = expected
        .iter()
        .filter(|(k, _)| k.scope == Scope::Tenant && k.granularity == Granularity::Day)
        .collect();
    assert!(tenant_days
        .iter()
        .all(|(_, t)| t.net().unwrap().is_zero() && t.debit_count == t.credit_count));
}

#[tokio::test]
async fn a_poison_record_is_reported_and_the_good_ones_count_once() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let api = Api::new(&app, "t1");
    let a = api.open("USD", "1000").await;
    let b = api.open("USD", "0").await;
    for amount in ["1", "2", "3"] {
        api.transfer(&a, &b, amount, "USD", false, &key()).await;
    }
    let mut records = stream_records(&stack).await;
    let transfer_records: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r["dynamodb"]["NewImage"]["entity"]["S"] == "transfer")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(transfer_records.len(), 3);
    let poison = transfer_records[1];
    records[poison]["dynamodb"]["NewImage"]["posted_amount"] = json!({"N": "not-a-number"});
    let poison_sequence = records[poison]["dynamodb"]["SequenceNumber"]
        .as_str()
        .unwrap()
        .to_owned();

    let analytics = analytics_app(&stack);
    let (response, report) = apply_batch(&analytics, &batch(&records)).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failed, vec![poison_sequence], "only the poison record is reported");
    assert_eq!((report.malformed, report.applied), (1, 2));
    // Lambda redelivers from the poison record on: the good ones after it do not count twice.
    let (_, again) = apply_batch(&analytics, &batch(&records[poison..])).await;
    assert_eq!(again.applied, 0);
    let day = Granularity::Day.period(fintx_adapters::system::now());
    let rollups = DynamoRollups::new(stack.dynamo.clone(), stack.tables.analytics.clone());
    let usd = fintx_domain::money::Currency::parse("USD").unwrap();
    let rows = rollups
        .rows(
            &fintx_domain::auth::TenantId::parse("t1").unwrap(),
            &Scope::Tenant,
            usd,
            Granularity::Day,
            &day,
            &day,
        )
        .await
        .unwrap();
    assert_eq!(rows[0].1.debit_count, 2);
    assert_eq!(rows[0].1.debit_amount, rust_decimal::Decimal::from(4));
}

async fn get(app: &App, path: &str, tenant: &str) -> Reply {
    reply(
        analytics_rollups::handle_http(
            app,
            request(&api_event("GET", path, None, Some(claims(tenant, "ledger:read")))),
        )
        .await,
    )
}

#[tokio::test]
async fn the_query_api_is_tenant_scoped_bounded_and_exact() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let api = Api::new(&app, "t1");
    let a = api.open("USD", "1000").await;
    let b = api.open("USD", "0").await;
    api.transfer(&a, &b, "10.10", "USD", false, &key()).await;
    api.transfer(&a, &b, "0.90", "USD", false, &key()).await;
    api.transfer(&b, &a, "5", "USD", false, &key()).await;
    let analytics = analytics_app(&stack);
    apply_batch(&analytics, &batch(&stream_records(&stack).await)).await;
    let contract = Contract::load();

    let day = get(&analytics, &format!("/v1/analytics/accounts/{a}?granularity=day"), "t1").await;
    assert_eq!(day.status, 200, "{day:?}");
    contract.check("GET", "/v1/analytics/accounts/{id}", &day);
    let rows = day.body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["debits"], json!({"count": 2, "amount": "11.00"}));
    assert_eq!(rows[0]["credits"], json!({"count": 1, "amount": "5.00"}));
    assert_eq!(
        (rows[0]["net"].as_str(), rows[0]["currency"].as_str()),
        (Some("-6.00"), Some("USD"))
    );
    let hour = get(
        &analytics,
        &format!("/v1/analytics/accounts/{a}?granularity=hour"),
        "t1",
    )
    .await;
    assert!(hour.body["data"][0]["period"].as_str().unwrap().ends_with(":00:00Z"));
    let tenant = get(&analytics, "/v1/analytics/tenant?currency=USD&granularity=day", "t1").await;
    contract.check("GET", "/v1/analytics/tenant", &tenant);
    assert_eq!(tenant.body["data"][0]["debits"], json!({"count": 3, "amount": "16.00"}));
    assert_eq!(tenant.body["data"][0]["net"], "0.00");

    get(&analytics, &format!("/v1/analytics/accounts/{a}"), "t2")
        .await
        .assert_problem(404, "account_not_found");
    assert_eq!(
        get(&analytics, "/v1/analytics/tenant?currency=USD", "t2").await.body["data"],
        json!([])
    );
    for (path, status, code) in [
        ("/v1/analytics/tenant", 400, "invalid_request"),
        ("/v1/analytics/tenant?currency=XYZ", 400, "invalid_currency"),
        (
            "/v1/analytics/tenant?currency=USD&granularity=week",
            400,
            "invalid_request",
        ),
        (
            "/v1/analytics/tenant?currency=USD&from=2025-01-01&to=2026-11-24",
            400,
            "invalid_request",
        ),
        (
            "/v1/analytics/tenant?currency=USD&granularity=hour&from=2026-10-01&to=2026-11-24",
            400,
            "invalid_request",
        ),
        (
            "/v1/analytics/tenant?currency=USD&from=2026-11-24&to=2026-11-01",
            400,
            "invalid_request",
        ),
        (
            "/v1/analytics/tenant?currency=USD&from=yesterday",
            400,
            "invalid_request",
        ),
    ] {
        let r = get(&analytics, path, "t1").await;
        r.assert_problem(status, code);
        contract.check("GET", "/v1/analytics/tenant", &r);
    }
    let past = get(
        &analytics,
        "/v1/analytics/tenant?currency=USD&from=2020-01-01&to=2020-06-01",
        "t1",
    )
    .await;
    assert_eq!(past.body["data"], json!([]), "empty periods are omitted");
}

#[tokio::test]
async fn a_batch_costs_one_transaction_per_hundred_items_and_a_redelivery_two_calls() {
    let stack = Stack::fresh().await;
    let app = stack.transactions_app();
    let api = Api::new(&app, "t1");
    let a = api.open("USD", "100000").await;
    let b = api.open("USD", "0").await;
    for _ in 0..60 {
        assert_eq!(api.transfer(&a, &b, "1", "USD", false, &key()).await.status, 201);
    }
    let records = stream_records(&stack).await;
    let counter = fintx_tests::CallCounter::default();
    let analytics = App {
        store: Arc::new(stack.store()),
        rollups: Arc::new(DynamoRollups::new(
            stack.counted_dynamo(&counter).await,
            stack.tables.analytics.clone(),
        )),
        dev_auth_headers: false,
    };
    let (_, report) = apply_batch(&analytics, &batch(&records)).await;
    assert_eq!(report.applied, 60);
    // 60 markers and 6 rows (two accounts and the tenant, by hour and by day) fit one transaction.
    assert_eq!((counter.count("TransactWriteItems"), counter.total()), (1, 1));
    counter.reset();
    let (_, again) = apply_batch(&analytics, &batch(&records)).await;
    assert_eq!(again.applied, 0);
    assert_eq!(
        (
            counter.count("TransactWriteItems"),
            counter.count("BatchGetItem"),
            counter.total()
        ),
        (1, 1, 2)
    );
}
