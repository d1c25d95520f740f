//! Rollups never undercount under throttling: DynamoDB's own answers are rewritten by an
//! SDK interceptor (the responses the real service gives under load), and a batch that
//! cannot be counted completely fails, so its records are reported and retried.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use fintx_adapters::rollup_store::DynamoRollups;
use fintx_domain::auth::TenantId;
use fintx_domain::clock::Timestamp;
use fintx_domain::ids::{AccountId, TransferId};
use fintx_domain::money::Currency;
use fintx_domain::ports::RollupStore;
use fintx_domain::rollup::{Granularity, Movement, Scope};
use fintx_tests::Stack;
use serde_json::{json, Value};

/// What the interceptor does to DynamoDB's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Throttle {
    /// Every `BatchGetItem` returns all its keys unprocessed.
    BatchGetLeavesEverything,
    /// Every `TransactWriteItems` is cancelled by a failed condition.
    WritesCancelled,
}

#[derive(Clone, Debug)]
struct Rewriter {
    mode: Throttle,
    last_request: Arc<Mutex<Option<Value>>>,
}

fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>().map(|m| m.name().to_owned()).unwrap_or_default()
}

impl Intercept for Rewriter {
    fn name(&self) -> &'static str {
        "Rewriter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context
            .request()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok());
        *self.last_request.lock().unwrap() = body;
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // A cancelled transaction writes nothing: send this one to a table that does
        // not exist, and answer it as cancelled below.
        if self.mode == Throttle::WritesCancelled && operation(cfg) == "TransactWriteItems" {
            fintx_tests::send_nowhere(context.request_mut())?;
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = operation(cfg);
        let replacement = match (self.mode, op.as_str()) {
            (Throttle::BatchGetLeavesEverything, "BatchGetItem") => {
                let asked = self.last_request.lock().unwrap().clone().unwrap_or(Value::Null);
                Some((200, json!({"Responses": {}, "UnprocessedKeys": asked["RequestItems"]})))
            }
            (Throttle::WritesCancelled, "TransactWriteItems") => Some((
                400,
                json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                    "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons [ConditionalCheckFailed]",
                    "CancellationReasons": [{"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}],
                }),
            )),
            _ => None,
        };
        if let Some((status, body)) = replacement {
            fintx_tests::answer_with(context.response_mut(), status, &body)?;
        }
        Ok(())
    }
}

fn movement(n: u128) -> Movement {
    Movement {
        transfer_id: TransferId::from_ulid(ulid::Ulid::from_parts(1_795_000_000_000, n)),
        tenant: TenantId::parse("t1").unwrap(),
        debit_account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1, 1)),
        credit_account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1, 2)),
        currency: Currency::parse("USD").unwrap(),
        amount: rust_decimal::Decimal::new(125, 2),
        at: Timestamp::from_unix_ms(1_795_000_000_000).unwrap(),
    }
}

async fn rollups_through(stack: &Stack, mode: Throttle) -> DynamoRollups {
    let config = fintx_adapters::aws::sdk_config().unwrap();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(Rewriter {
                mode,
                last_request: Arc::default(),
            })
            .build(),
    );
    DynamoRollups::new(client, stack.tables.analytics.clone())
}

async fn credit_count(stack: &Stack) -> u64 {
    let plain = DynamoRollups::new(stack.dynamo.clone(), stack.tables.analytics.clone());
    let rows = plain
        .rows(
            &TenantId::parse("t1").unwrap(),
            &Scope::Account(AccountId::from_ulid(ulid::Ulid::from_parts(1, 2))),
            Currency::parse("USD").unwrap(),
            Granularity::Day,
            "0000",
            "9999",
        )
        .await
        .unwrap();
    rows.iter().map(|(_, t)| t.credit_count).sum()
}

#[tokio::test]
async fn unprocessed_marker_keys_fail_the_batch_instead_of_dropping_movements() {
    let stack = Stack::fresh().await;
    let plain = DynamoRollups::new(stack.dynamo.clone(), stack.tables.analytics.clone());
    assert_eq!(plain.apply(&[movement(1)]).await, Ok(1));
    // Redelivered with a new movement: the write is refused for the counted marker, and
    // the markers cannot be read because DynamoDB leaves every key unprocessed.
    let throttled = rollups_through(&stack, Throttle::BatchGetLeavesEverything).await;
    let result = throttled.apply(&[movement(1), movement(2)]).await;
    assert!(result.is_err(), "leftover keys must fail the batch, got {result:?}");
    // Retried once DynamoDB answers in full: the new movement counts, once.
    assert_eq!(plain.apply(&[movement(1), movement(2)]).await, Ok(1));
    assert_eq!(credit_count(&stack).await, 2);
}

#[tokio::test]
async fn a_refusal_no_marker_explains_fails_the_batch() {
    let stack = Stack::fresh().await;
    let cancelled = rollups_through(&stack, Throttle::WritesCancelled).await;
    let logs = fintx_tests::LogCapture::start();
    let result = tokio::time::timeout(std::time::Duration::from_secs(30), cancelled.apply(&[movement(3)]))
        .await
        .expect("a refusal is answered, not retried forever");
    assert!(
        result.is_err(),
        "an unexplained refusal must not end as counted, got {result:?}"
    );
    assert!(
        logs.text().contains("no movement marker explains it"),
        "refused as a cancellation, not as a failed call: {}",
        logs.text()
    );
    assert_eq!(credit_count(&stack).await, 0);
}

#[tokio::test]
async fn a_batch_get_with_keys_left_unprocessed_is_an_error() {
    let stack = Stack::fresh().await;
    let plain = DynamoRollups::new(stack.dynamo.clone(), stack.tables.analytics.clone());
    assert_eq!(plain.apply(&[movement(4)]).await, Ok(1));
    let throttled = rollups_through(&stack, Throttle::BatchGetLeavesEverything).await;
    let key = std::collections::HashMap::from([
        (
            "pk".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::S(format!("MOV#{}", movement(4).transfer_id)),
        ),
        (
            "sk".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::S("MOV".into()),
        ),
    ]);
    let found =
        fintx_adapters::dynamo::batch_get_all(throttled.client(), &stack.tables.analytics, vec![key.clone()]).await;
    assert!(
        found.is_err(),
        "a shorter answer must never pass as complete: {found:?}"
    );
    let found = fintx_adapters::dynamo::batch_get_all(&stack.dynamo, &stack.tables.analytics, vec![key]).await;
    assert_eq!(found.map(|items| items.len()), Ok(1));
}
