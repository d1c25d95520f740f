//! What is sent again after a failed write follows from why it failed (SPEC §10), as
//! DynamoDB says it: an SDK interceptor rewrites the emulator's answers to
//! `TransactWriteItems` into the answers the real service gives, on a client without the
//! SDK's own retries so that only fintx's policy is seen.
//!
//! Throttled: nothing applied, sent again. Refused as sent: not sent again, nothing
//! written, and the key stays free. A server error after the write applied: sent again,
//! refused by its own idempotency record, answered as the first attempt.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;
use fintx_tests::{key, Api, Stack};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// 400 `ThrottlingException`; the write is kept from the table.
    Throttled,
    /// 400 `ValidationException`; the write is kept from the table.
    Refused,
    /// The write applies, then the answer is a 500 `InternalServerError`.
    ServerErrorAfterApplying,
}

#[derive(Clone, Debug)]
struct Rewriter {
    answer: Answer,
    /// How many of the next writes get `answer`.
    remaining: Arc<AtomicU32>,
    sent: Arc<AtomicU32>,
    rewriting: Arc<Mutex<bool>>,
}

fn is_write(cfg: &ConfigBag) -> bool {
    cfg.load::<Metadata>().is_some_and(|m| m.name() == "TransactWriteItems")
}

impl Intercept for Rewriter {
    fn name(&self) -> &'static str {
        "Rewriter"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !is_write(cfg) {
            return Ok(());
        }
        self.sent.fetch_add(1, Ordering::SeqCst);
        let rewrite = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        *self.rewriting.lock().unwrap() = rewrite;
        if rewrite && self.answer != Answer::ServerErrorAfterApplying {
            // Refused before anything applies: send it to a table that does not exist.
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
        if !is_write(cfg) || !*self.rewriting.lock().unwrap() {
            return Ok(());
        }
        let (status, kind, message) = match self.answer {
            Answer::Throttled => (
                400,
                "ThrottlingException",
                "Rate of requests exceeds the allowed throughput.",
            ),
            Answer::Refused => (400, "ValidationException", "One or more parameter values were invalid."),
            Answer::ServerErrorAfterApplying => (500, "InternalServerError", "Internal server error"),
        };
        let body = json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"), "message": message});
        fintx_tests::answer_with(context.response_mut(), status, &body)
    }
}

struct Setup {
    stack: Stack,
    app: transactions::App,
    remaining: Arc<AtomicU32>,
    sent: Arc<AtomicU32>,
}

async fn setup(answer: Answer) -> Setup {
    let stack = Stack::fresh().await;
    let (remaining, sent) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let config = fintx_adapters::aws::sdk_config().unwrap();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .retry_config(RetryConfig::disabled())
            .interceptor(Rewriter {
                answer,
                remaining: remaining.clone(),
                sent: sent.clone(),
                rewriting: Arc::default(),
            })
            .build(),
    );
    let mut app = stack.transactions_app();
    app.store = Arc::new(fintx_adapters::dynamo::DynamoStore::new(client, stack.tables.clone()));
    Setup {
        stack,
        app,
        remaining,
        sent,
    }
}

impl Setup {
    /// The next `n` writes get the rewritten answer; counts writes sent from here.
    fn next(&self, n: u32) {
        self.remaining.store(n, Ordering::SeqCst);
        self.sent.store(0, Ordering::SeqCst);
    }

    fn sent(&self) -> u32 {
        self.sent.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_throttled_write_is_sent_again_until_the_resends_run_out() {
    let s = setup(Answer::Throttled).await;
    let api = Api::new(&s.app, "t1");
    let a = api.open("USD", "100").await;
    let b = api.open("USD", "0").await;

    s.next(2);
    let t = api.transfer(&a, &b, "10", "USD", false, &key()).await;
    assert_eq!((t.status, s.sent()), (201, 3), "{t:?}");
    assert_eq!(api.balance(&b).await["posted"], "10.00");

    s.next(3);
    let k = key();
    api.transfer(&a, &b, "10", "USD", false, &k)
        .await
        .assert_problem(503, "unavailable");
    assert_eq!(s.sent(), 3, "the first send and two more");
    assert_eq!(api.balance(&b).await["posted"], "10.00", "nothing applied");
    // Nothing was recorded under the key: the retry is a first attempt.
    let retry = api.transfer(&a, &b, "10", "USD", false, &k).await;
    assert_eq!((retry.status, retry.headers.get("idempotent-replayed")), (201, None));
    let _ = &s.stack;
}

#[tokio::test]
async fn a_write_refused_as_sent_is_not_sent_again() {
    let s = setup(Answer::Refused).await;
    let api = Api::new(&s.app, "t1");
    let a = api.open("USD", "100").await;
    let b = api.open("USD", "0").await;

    s.next(1);
    let k = key();
    api.transfer(&a, &b, "10", "USD", false, &k)
        .await
        .assert_problem(503, "unavailable");
    assert_eq!(s.sent(), 1, "sending it again cannot help");
    assert_eq!(api.balance(&b).await["posted"], "0.00");
    let retry = api.transfer(&a, &b, "10", "USD", false, &k).await;
    assert_eq!((retry.status, retry.headers.get("idempotent-replayed")), (201, None));
    assert_eq!(api.balance(&b).await["posted"], "10.00");
}

#[tokio::test]
async fn a_write_that_applied_before_a_server_error_answers_as_the_first_attempt() {
    let s = setup(Answer::ServerErrorAfterApplying).await;
    let api = Api::new(&s.app, "t1");
    let a = api.open("USD", "100").await;
    let b = api.open("USD", "0").await;

    s.next(1);
    let k = key();
    let t = api.transfer(&a, &b, "10", "USD", false, &k).await;
    assert_eq!(
        (t.status, t.headers.get("idempotent-replayed"), s.sent()),
        (201, None, 2),
        "sent again, refused by its own record, answered from it: {t:?}"
    );
    assert_eq!(api.balance(&b).await["posted"], "10.00", "applied once");
    let replay = api.transfer(&a, &b, "10", "USD", false, &k).await;
    assert_eq!((replay.status, &replay.body), (201, &t.body));
    assert!(replay.headers.get("idempotent-replayed").is_some());
}
