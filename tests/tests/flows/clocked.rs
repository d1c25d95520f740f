//! A stack on a virtual clock: a fresh emulator table set, the transactions function
//! over a DynamoDB store whose calls are counted, and this thread's time under the test's
//! control (SPEC §6's instants: expiry, statements, balances in time).

use std::sync::Arc;

use fintx_adapters::dynamo::DynamoStore;
use fintx_adapters::system::simulated;
use fintx_domain::auth::TenantId;
use fintx_domain::clock::Timestamp;
use fintx_domain::ids::AccountId;
use fintx_domain::ports::AccountStore;
use fintx_tests::{CallCounter, Stack};

pub(crate) struct Clocked {
    _stack: Stack,
    pub(crate) counter: CallCounter,
    pub(crate) store: Arc<DynamoStore>,
    pub(crate) app: transactions::App,
    now_ms: std::cell::Cell<i64>,
}

impl Clocked {
    pub(crate) async fn new(seed: u64) -> Clocked {
        let stack = Stack::fresh().await;
        let counter = CallCounter::default();
        let store = Arc::new(DynamoStore::new(
            stack.counted_dynamo(&counter).await,
            stack.tables.clone(),
        ));
        let mut app = stack.transactions_app();
        app.store = store.clone();
        let now_ms = 1_795_000_000_000;
        simulated::install(now_ms, seed);
        Clocked {
            _stack: stack,
            counter,
            store,
            app,
            now_ms: std::cell::Cell::new(now_ms),
        }
    }

    pub(crate) fn advance(&self, ms: i64) {
        self.now_ms.set(self.now_ms.get() + ms);
        simulated::advance(ms);
    }

    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(self.now_ms.get()).unwrap()
    }

    /// The account as stored, before reads subtract what has expired.
    pub(crate) async fn stored_balance(&self, id: &str) -> (String, String) {
        let account = self
            .store
            .get_account(&TenantId::parse("t1").unwrap(), &AccountId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        (
            account.balance.pending_debits.to_string(),
            account.balance.pending_credits.to_string(),
        )
    }
}

impl Drop for Clocked {
    fn drop(&mut self) {
        simulated::uninstall();
    }
}
