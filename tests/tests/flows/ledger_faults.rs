//! Faults the emulator cannot produce, injected through a wrapper around the store port:
//! a transaction in flight on the idempotency record, contention on hot items, and a
//! write landing between the reads of an account's history.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use fintx_adapters::envelope::local::LocalDataKeys;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher};
use fintx_adapters::kms::StaticCursorKey;
use fintx_adapters::memory::MemoryStore;
use fintx_domain::account::Account;
use fintx_domain::auth::TenantId;
use fintx_domain::ids::{AccountId, TransferId};
use fintx_domain::ports::{AccountStore, CommitError, LedgerStore, LedgerWrite, Page, Reads, Rejection, Snapshot};
use fintx_domain::transfer::Transfer;
use fintx_domain::DomainError;
use fintx_tests::{key, Api};

/// Refuses the next `failures` money-moving commits with `rejection`, then behaves.
struct Faulty {
    inner: MemoryStore,
    rejection: Rejection,
    failures: AtomicU32,
    commits: AtomicU32,
    /// Committed just before the next read of an account's entries.
    interleave: std::sync::Mutex<Option<LedgerWrite>>,
}

#[async_trait]
impl AccountStore for Faulty {
    async fn insert_account(&self, account: &Account) -> Result<(), DomainError> {
        self.inner.insert_account(account).await
    }
    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> Result<Option<Account>, DomainError> {
        self.inner.get_account(tenant, id).await
    }
    async fn list_accounts(
        &self,
        tenant: &TenantId,
        limit: usize,
        before: Option<AccountId>,
    ) -> Result<Page<Account, AccountId>, DomainError> {
        self.inner.list_accounts(tenant, limit, before).await
    }
}

#[async_trait]
impl LedgerStore for Faulty {
    async fn read(&self, tenant: &TenantId, reads: &Reads) -> Result<Snapshot, DomainError> {
        self.inner.read(tenant, reads).await
    }
    async fn commit(&self, write: &LedgerWrite) -> Result<(), CommitError> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        let moves_money = !write.deltas.is_empty();
        if moves_money && self.failures.load(Ordering::Relaxed) > 0 {
            self.failures.fetch_sub(1, Ordering::Relaxed);
            return Err(CommitError::Rejected(self.rejection));
        }
        self.inner.commit(write).await
    }
    async fn list_events(
        &self,
        tenant: Option<&TenantId>,
        outcome: fintx_domain::webhook::Outcome,
        limit: usize,
        before: Option<String>,
    ) -> Result<Page<fintx_domain::ports::EventRecord, String>, DomainError> {
        self.inner.list_events(tenant, outcome, limit, before).await
    }
    async fn account_entries(
        &self,
        tenant: &TenantId,
        account: &fintx_domain::account::Account,
        range: &fintx_domain::statement::EntryRange,
        limit: Option<usize>,
    ) -> Result<Page<fintx_domain::statement::Entry, fintx_domain::statement::Position>, DomainError> {
        let interleaved = self.interleave.lock().unwrap().take();
        if let Some(write) = interleaved {
            self.inner.commit(&write).await.unwrap();
        }
        self.inner.account_entries(tenant, account, range, limit).await
    }

    async fn list_account_transfers(
        &self,
        tenant: &TenantId,
        account: &fintx_domain::account::Account,
        limit: usize,
        before: Option<TransferId>,
    ) -> Result<Page<Transfer, TransferId>, DomainError> {
        self.inner.list_account_transfers(tenant, account, limit, before).await
    }

    async fn expired_holds(
        &self,
        now: fintx_domain::clock::Timestamp,
        limit: usize,
    ) -> Result<Vec<Transfer>, DomainError> {
        self.inner.expired_holds(now, limit).await
    }
}

fn app(store: Arc<Faulty>) -> transactions::App {
    transactions::App {
        store,
        cursor_keys: Arc::new(StaticCursorKey([1; 32])),
        cipher: Arc::new(EnvelopeCipher::new(LocalDataKeys::new([2; 32]), CacheLimits::default())),
        connectors: vec![],
        dev_auth_headers: false,
        recent: Default::default(),
    }
}

fn faulty(rejection: Rejection, failures: u32) -> Arc<Faulty> {
    Arc::new(Faulty {
        inner: MemoryStore::new(),
        rejection,
        failures: AtomicU32::new(failures),
        commits: AtomicU32::new(0),
        interleave: Default::default(),
    })
}

#[tokio::test]
async fn a_key_whose_first_request_is_still_in_flight_answers_409_and_records_nothing() {
    let store = faulty(Rejection::IdempotencyInFlight, 1);
    let app = app(store.clone());
    let api = Api::new(&app, "t1");
    let (a, b) = (api.open("USD", "100").await, api.open("USD", "0").await);
    let k = key();
    api.transfer(&a, &b, "1", "USD", false, &k)
        .await
        .assert_problem(409, "idempotency_key_in_use");
    // Nothing was recorded under the key: the retry runs for real.
    let retry = api.transfer(&a, &b, "1", "USD", false, &k).await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert!(retry.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn contention_is_retried_until_the_write_commits() {
    let store = faulty(Rejection::Contention, 3);
    let app = app(store.clone());
    let api = Api::new(&app, "t1");
    let (a, b) = (api.open("USD", "100").await, api.open("USD", "0").await);
    let before = store.commits.load(Ordering::Relaxed);
    let r = api.transfer(&a, &b, "2", "USD", false, &key()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        store.commits.load(Ordering::Relaxed) - before,
        4,
        "three refused attempts, then the commit"
    );
    assert_eq!(api.balance(&b).await["posted"], "2.00");
}

#[tokio::test]
async fn contention_that_never_ends_gives_up_within_the_budget_with_a_503() {
    let store = faulty(Rejection::Stale, u32::MAX);
    let app = app(store.clone());
    let api = Api::new(&app, "t1");
    let (a, b) = (api.open("USD", "100").await, api.open("USD", "0").await);
    let started = std::time::Instant::now();
    api.transfer(&a, &b, "2", "USD", false, &key())
        .await
        .assert_problem(503, "unavailable");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    assert_eq!(api.balance(&a).await["posted"], "0.00");
}

/// A transfer of `amount` from `debit` to `credit` made at the clock's current instant,
/// as a write the store applies directly.
fn write_moving(tenant: &str, debit: &str, credit: &str, amount: &str) -> LedgerWrite {
    use fintx_domain::money::{Amount, Currency};
    use fintx_domain::transfer::{plan_api_transfer, NewTransfer};
    let usd = Currency::parse("USD").unwrap();
    let request = NewTransfer {
        debit_account_id: AccountId::parse(debit).unwrap(),
        credit_account_id: AccountId::parse(credit).unwrap(),
        amount: Amount::parse(amount, usd).unwrap(),
        currency: usd,
        pending: false,
        expires_in: None,
        description: None,
        metadata: Default::default(),
    };
    let now = fintx_adapters::system::now();
    let id = TransferId::from_ulid(fintx_adapters::system::new_ulid(now));
    let (transfer, deltas) =
        plan_api_transfer(id, &TenantId::parse(tenant).unwrap(), request, now, &|_| false).unwrap();
    LedgerWrite {
        deltas: deltas.to_vec(),
        new_transfers: vec![transfer],
        ..LedgerWrite::default()
    }
}

#[tokio::test]
async fn a_write_landing_between_the_reads_of_a_history_is_never_mixed_into_it() {
    use fintx_adapters::system::simulated;
    simulated::install(1_795_000_000_000, 5);
    let store = faulty(Rejection::Contention, 0);
    let app = app(store.clone());
    let api = Api::new(&app, "t1");
    let (funder, a) = (api.open("USD", "1000").await, api.open("USD", "0").await);
    simulated::advance(10);
    api.transfer(&funder, &a, "100", "USD", false, &key()).await;
    simulated::advance(10);
    let then = fintx_adapters::system::now().to_string();
    simulated::advance(10);

    // The account is read, then a transfer of 25 lands, then the entries after `then`
    // are read: they include it and the account as first read does not.
    *store.interleave.lock().unwrap() = Some(write_moving("t1", &funder, &a, "25"));
    let r = api.get(&format!("/v1/accounts/{a}/balance?at={then}")).await;
    assert_eq!(r.body["posted"], "100.00", "{r:?}");

    *store.interleave.lock().unwrap() = Some(write_moving("t1", &funder, &a, "5"));
    let r = api.get(&format!("/v1/accounts/{a}/entries")).await;
    let after: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["posted_after"].as_str().unwrap())
        .collect();
    assert_eq!(after, ["130.00", "125.00", "100.00"], "{r:?}");
    simulated::uninstall();
}
