//! Faults injected at the ports, as DynamoDB, KMS and the network produce them: a store,
//! a cipher and a rollup store that wrap the real ones and, on a script or a seeded
//! draw, conflict, throttle, time out before or after committing, re-send a committed
//! write (the SDK's own retry after a lost answer), or hold a transaction in flight so a
//! concurrent one meets it.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fintx_domain::account::Account;
use fintx_domain::auth::TenantId;
use fintx_domain::crypto::{Cipher, SealContext, Sealed};
use fintx_domain::ids::{AccountId, TransferId};
use fintx_domain::money::Currency;
use fintx_domain::ports::{
    AccountStore, CommitError, EventRecord, LedgerStore, LedgerWrite, Page, Reads, Rejection, RollupStore, Snapshot,
};
use fintx_domain::rollup::{Granularity, Movement, Scope, Totals};
use fintx_domain::secret::Secret;
use fintx_domain::transfer::Transfer;
use fintx_domain::webhook::Outcome;
use fintx_domain::DomainError;
use tokio::sync::oneshot;

/// What happens to one commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitFault {
    /// DynamoDB cancels the transaction: another one held an item.
    Conflict,
    /// Throttled or timed out before the write reached the table: nothing happened.
    FailBefore,
    /// The write committed, and its answer was lost (a timeout after the commit).
    FailAfter,
    /// The write committed, its answer was lost, and the SDK sent it again: the caller
    /// sees the answer to the second send.
    ResendAfter,
    /// The write committed and the process died before answering anyone.
    Crash,
}

/// A seeded generator (splitmix64): the same seed gives the same faults.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// How often (per mille of calls) each fault is drawn.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultRates {
    pub read_fail: u64,
    pub conflict: u64,
    pub fail_before: u64,
    pub fail_after: u64,
    pub resend_after: u64,
    pub crash: u64,
    pub kms_outage: u64,
    pub rollup_fail_before: u64,
    pub rollup_fail_after: u64,
}

impl FaultRates {
    /// The rates of the simulation: every fault often enough to meet every path.
    pub fn simulation() -> Self {
        FaultRates {
            read_fail: 10,
            conflict: 40,
            fail_before: 15,
            fail_after: 15,
            resend_after: 15,
            crash: 10,
            kms_outage: 10,
            rollup_fail_before: 60,
            rollup_fail_after: 60,
        }
    }
}

#[derive(Default)]
struct Plan {
    scripted: VecDeque<CommitFault>,
    rng: Option<(Rng, FaultRates)>,
    /// The next commit waits for this before it reaches the store.
    hold: Option<oneshot::Receiver<()>>,
    /// Idempotency scopes and event keys of transactions in flight.
    in_flight: BTreeSet<String>,
    /// Set when a commit crashed the process: the request's answer must be discarded.
    crashed: bool,
    /// Set when a commit reached the store, whatever its caller saw.
    committed: bool,
}

/// A ledger store with faults at its port.
pub struct FaultyStore {
    inner: Arc<dyn LedgerStore>,
    plan: Mutex<Plan>,
    /// A rule broken on purpose: every write is changed by this before it commits
    /// (tests that the comparison with the model catches a wrong store).
    mutation: Option<fn(&mut LedgerWrite)>,
    /// Every write committed, in order, when kept (the capacity model reads them).
    committed: Option<Mutex<Vec<LedgerWrite>>>,
}

fn holds(write: &LedgerWrite) -> Vec<String> {
    write
        .idempotency
        .iter()
        .map(|r| r.scope_key.clone())
        .chain(write.event.iter().map(|e| e.key.clone()))
        .collect()
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn LedgerStore>) -> Self {
        FaultyStore {
            inner,
            plan: Mutex::new(Plan::default()),
            mutation: None,
            committed: None,
        }
    }

    /// A store that keeps every write it commits.
    pub fn recording(inner: Arc<dyn LedgerStore>) -> Self {
        FaultyStore {
            committed: Some(Mutex::new(Vec::new())),
            ..FaultyStore::new(inner)
        }
    }

    /// The writes committed since the last call, oldest first.
    pub fn take_committed(&self) -> Vec<LedgerWrite> {
        self.committed
            .as_ref()
            .map(|c| std::mem::take(&mut *c.lock().unwrap()))
            .unwrap_or_default()
    }

    /// A store that changes every write by `mutation` before committing it.
    pub fn mutant(inner: Arc<dyn LedgerStore>, mutation: fn(&mut LedgerWrite)) -> Self {
        FaultyStore {
            mutation: Some(mutation),
            ..FaultyStore::new(inner)
        }
    }

    /// The next commits meet these faults, in order.
    pub fn script(&self, faults: &[CommitFault]) {
        self.plan.lock().unwrap().scripted.extend(faults);
    }

    /// Faults drawn from `rng` at `rates` for every call from now on.
    pub fn randomly(&self, rng: Rng, rates: FaultRates) {
        self.plan.lock().unwrap().rng = Some((rng, rates));
    }

    /// Replaces the generator (one per operation keeps faults stable when a shrinker
    /// removes other operations).
    pub fn reseed(&self, rng: Rng) {
        if let Some((r, _)) = self.plan.lock().unwrap().rng.as_mut() {
            *r = rng;
        }
    }

    /// Holds the next commit in flight until the returned sender fires (or is dropped).
    pub fn hold_next_commit(&self) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        self.plan.lock().unwrap().hold = Some(rx);
        tx
    }

    /// Whether a held transaction is in flight now.
    pub fn in_flight(&self) -> bool {
        !self.plan.lock().unwrap().in_flight.is_empty()
    }

    /// Whether the last request crashed the process (and so was never answered), and
    /// whether any of its commits reached the store; both are cleared.
    pub fn take_request_fate(&self) -> (bool, bool) {
        let mut plan = self.plan.lock().unwrap();
        let fate = (plan.crashed, plan.committed);
        plan.crashed = false;
        plan.committed = false;
        fate
    }

    fn draw_commit(&self) -> Option<CommitFault> {
        let mut plan = self.plan.lock().unwrap();
        if let Some(fault) = plan.scripted.pop_front() {
            return Some(fault);
        }
        let (rng, rates) = plan.rng.as_mut()?;
        let roll = rng.below(1000);
        let mut edge = 0;
        for (rate, fault) in [
            (rates.conflict, CommitFault::Conflict),
            (rates.fail_before, CommitFault::FailBefore),
            (rates.fail_after, CommitFault::FailAfter),
            (rates.resend_after, CommitFault::ResendAfter),
            (rates.crash, CommitFault::Crash),
        ] {
            edge += rate;
            if roll < edge {
                return Some(fault);
            }
        }
        None
    }

    fn draw_read_failure(&self) -> bool {
        let mut plan = self.plan.lock().unwrap();
        match plan.rng.as_mut() {
            Some((rng, rates)) => rng.chance(rates.read_fail),
            None => false,
        }
    }

    fn crashed(&self) -> bool {
        self.plan.lock().unwrap().crashed
    }

    async fn commit_once(&self, write: &LedgerWrite) -> Result<(), CommitError> {
        let result = match self.mutation {
            Some(mutation) => {
                let mut changed = write.clone();
                mutation(&mut changed);
                self.inner.commit(&changed).await
            }
            None => self.inner.commit(write).await,
        };
        if result.is_ok() {
            self.plan.lock().unwrap().committed = true;
            if let Some(kept) = &self.committed {
                kept.lock().unwrap().push(write.clone());
            }
        }
        result
    }
}

/// A call whose answer never came: the effect is unknown to the caller.
const LOST: DomainError = DomainError::Dependency(fintx_domain::Cause::Timeout);

#[async_trait]
impl AccountStore for FaultyStore {
    async fn insert_account(&self, account: &Account) -> Result<(), DomainError> {
        if self.crashed() || self.draw_read_failure() {
            return Err(DomainError::Unavailable);
        }
        self.inner.insert_account(account).await?;
        self.plan.lock().unwrap().committed = true;
        Ok(())
    }

    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> Result<Option<Account>, DomainError> {
        if self.crashed() || self.draw_read_failure() {
            return Err(DomainError::Unavailable);
        }
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
impl LedgerStore for FaultyStore {
    async fn read(&self, tenant: &TenantId, reads: &Reads) -> Result<Snapshot, DomainError> {
        // A dead process makes no more calls; a throttled or timed-out read fails.
        if self.crashed() {
            return Err(DomainError::Unavailable);
        }
        if self.draw_read_failure() {
            return Err(LOST);
        }
        self.inner.read(tenant, reads).await
    }

    async fn commit(&self, write: &LedgerWrite) -> Result<(), CommitError> {
        if self.crashed() {
            return Err(CommitError::Failed(DomainError::Unavailable));
        }
        // DynamoDB cancels a transaction that meets another in flight on one item.
        let keys = holds(write);
        let hold = {
            let mut plan = self.plan.lock().unwrap();
            if keys.iter().any(|k| plan.in_flight.contains(k)) {
                let on_idempotency = write
                    .idempotency
                    .as_ref()
                    .is_some_and(|r| plan.in_flight.contains(&r.scope_key));
                return Err(CommitError::Rejected(if on_idempotency {
                    Rejection::IdempotencyInFlight
                } else {
                    Rejection::Contention
                }));
            }
            let hold = plan.hold.take();
            if hold.is_some() {
                plan.in_flight.extend(keys.iter().cloned());
            }
            hold
        };
        if let Some(released) = hold {
            let _ = released.await;
            let result = self.commit_once(write).await;
            let mut plan = self.plan.lock().unwrap();
            for key in &keys {
                plan.in_flight.remove(key);
            }
            return result;
        }
        match self.draw_commit() {
            None => self.commit_once(write).await,
            Some(CommitFault::Conflict) => Err(CommitError::Rejected(Rejection::Contention)),
            // No answer: the caller cannot tell whether the write applied.
            Some(CommitFault::FailBefore) => Err(CommitError::Failed(LOST)),
            Some(CommitFault::FailAfter) => {
                self.commit_once(write).await?;
                Err(CommitError::Failed(LOST))
            }
            Some(CommitFault::ResendAfter) => {
                self.commit_once(write).await?;
                self.inner.commit(write).await
            }
            Some(CommitFault::Crash) => {
                self.commit_once(write).await?;
                self.plan.lock().unwrap().crashed = true;
                Err(CommitError::Failed(LOST))
            }
        }
    }

    async fn list_events(
        &self,
        tenant: Option<&TenantId>,
        outcome: Outcome,
        limit: usize,
        before: Option<String>,
    ) -> Result<Page<EventRecord, String>, DomainError> {
        self.inner.list_events(tenant, outcome, limit, before).await
    }

    async fn account_entries(
        &self,
        tenant: &TenantId,
        account: &fintx_domain::account::Account,
        range: &fintx_domain::statement::EntryRange,
        limit: Option<usize>,
    ) -> Result<Page<fintx_domain::statement::Entry, fintx_domain::statement::Position>, DomainError> {
        if self.crashed() {
            return Err(DomainError::Unavailable);
        }
        if self.draw_read_failure() {
            return Err(LOST);
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

/// A cipher whose key service is out now and then.
pub struct FaultyCipher {
    inner: Arc<dyn Cipher>,
    outage: Mutex<Option<(Rng, u64)>>,
}

impl FaultyCipher {
    pub fn new(inner: Arc<dyn Cipher>) -> Self {
        FaultyCipher {
            inner,
            outage: Mutex::new(None),
        }
    }

    pub fn randomly(&self, rng: Rng, per_mille: u64) {
        *self.outage.lock().unwrap() = Some((rng, per_mille));
    }

    fn out(&self) -> bool {
        self.outage
            .lock()
            .unwrap()
            .as_mut()
            .is_some_and(|(rng, rate)| rng.chance(*rate))
    }
}

#[async_trait]
impl Cipher for FaultyCipher {
    async fn seal(&self, plaintext: &[u8], context: &SealContext) -> Result<Sealed, DomainError> {
        if self.out() {
            return Err(DomainError::EncryptionUnavailable);
        }
        self.inner.seal(plaintext, context).await
    }

    async fn open(&self, sealed: &Sealed, context: &SealContext) -> Result<Secret<Vec<u8>>, DomainError> {
        if self.out() {
            return Err(DomainError::EncryptionUnavailable);
        }
        self.inner.open(sealed, context).await
    }
}

/// A rollup store that fails before applying, or after applying (the caller sees an
/// error and the batch is delivered again).
pub struct FaultyRollups {
    inner: Arc<dyn RollupStore>,
    rng: Mutex<Option<(Rng, u64, u64)>>,
}

impl FaultyRollups {
    pub fn new(inner: Arc<dyn RollupStore>) -> Self {
        FaultyRollups {
            inner,
            rng: Mutex::new(None),
        }
    }

    pub fn randomly(&self, rng: Rng, fail_before: u64, fail_after: u64) {
        *self.rng.lock().unwrap() = Some((rng, fail_before, fail_after));
    }
}

#[async_trait]
impl RollupStore for FaultyRollups {
    async fn apply(&self, movements: &[Movement]) -> Result<usize, DomainError> {
        let (before, after) = match self.rng.lock().unwrap().as_mut() {
            Some((rng, b, a)) => (rng.chance(*b), rng.chance(*a)),
            None => (false, false),
        };
        if before {
            return Err(DomainError::Unavailable);
        }
        let applied = self.inner.apply(movements).await?;
        if after {
            return Err(DomainError::Unavailable);
        }
        Ok(applied)
    }

    async fn rows(
        &self,
        tenant: &TenantId,
        scope: &Scope,
        currency: Currency,
        granularity: Granularity,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, Totals)>, DomainError> {
        self.inner.rows(tenant, scope, currency, granularity, first, last).await
    }
}
