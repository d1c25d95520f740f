//! The write engine: one loop for every request that moves money, API and webhook alike
//! (SPEC §10).
//!
//! A command comes in; the domain decides; the whole effect and the record that makes it
//! happen once (an idempotency record, a webhook event) commit in one conditional write.
//! A command that can plan its write without reading sends it first: on the common path
//! that single `TransactWriteItems` is the request's only round trip. When a condition
//! refuses it, the refusal's `ALL_OLD` image answers a replay at once; anything else is
//! read (one `TransactGetItems`) and decided again, with jittered backoff under
//! contention, within one time budget.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use fintx_domain::auth::TenantId;
use fintx_domain::ports::{CommitError, LedgerStore, LedgerWrite, Reads, Rejection, Snapshot};
use fintx_domain::DomainError;

use crate::commit::{commit_resending, jittered_backoff};

/// Attempts and time one request may spend on writes refused by concurrent writers.
pub const ATTEMPTS_MAX: u32 = 40;
pub const BUDGET: Duration = Duration::from_secs(5);

/// What a command decided.
pub enum Decision<A> {
    /// Read these as well, then decide again.
    ReadMore(Reads),
    /// Commit this write (empty when only the record is kept) and answer `A`.
    Commit(Box<LedgerWrite>, A),
    /// Commit this write, whose conditions stand in for what was not read; when they
    /// refuse it, read these and decide again (the domain then names the rule).
    Attempt(Box<LedgerWrite>, A, Reads),
}

/// A request that moves money, as the engine runs it.
#[async_trait]
pub trait Command: Send {
    type Answer: Send;

    /// What the first read fetches, the record that dedups the request included.
    fn reads(&self) -> Reads;

    /// The write decided without a read, its conditions standing in for the read: sent
    /// first, and when a condition refuses it the command reads and decides as usual.
    fn plan(&mut self) -> Result<Option<Decision<Self::Answer>>, DomainError> {
        Ok(None)
    }

    /// Decides from what the store holds.
    fn decide(&mut self, snapshot: &Snapshot) -> Result<Decision<Self::Answer>, DomainError>;

    /// The answer the record under this request's key holds, if one is recorded: a
    /// replay, a duplicate, or this request's own outcome whose commit answer was lost.
    fn recorded(&self, snapshot: &Snapshot) -> Option<Result<Self::Answer, DomainError>>;

    /// Attaches the record of `answer` to `write` (and remembers it as this request's).
    async fn record(&mut self, write: &mut LedgerWrite, answer: &Self::Answer) -> Result<(), DomainError>;

    /// Another record the write carries (a deposit's bank reference) was found: the
    /// next decision knows the effect happened under another key.
    fn found_elsewhere(&mut self) {}

    /// `write` committed: it is what the store now holds.
    fn committed(&mut self, _write: &LedgerWrite) {}
}

/// Runs `command` to its recorded answer.
pub async fn run<C: Command>(
    store: &dyn LedgerStore,
    tenant: &TenantId,
    command: &mut C,
) -> Result<C::Answer, DomainError> {
    let started = Instant::now();
    let mut reads = command.reads();
    let record_reads = (reads.idempotency.clone(), reads.event.clone());
    let mut planned = command.plan()?.map(|plan| match plan {
        Decision::Commit(write, answer) => Decision::Attempt(write, answer, reads.clone()),
        other => other,
    });
    for attempt in 0..ATTEMPTS_MAX {
        if started.elapsed() > BUDGET {
            break;
        }
        let decision = match planned.take() {
            Some(decision) => decision,
            None => {
                let snapshot = store.read(tenant, &reads).await?;
                if let Some(answer) = command.recorded(&snapshot) {
                    return answer;
                }
                command.decide(&snapshot)?
            }
        };
        let with_record = |more: Reads| Reads {
            idempotency: record_reads.0.clone(),
            event: record_reads.1.clone(),
            ..more
        };
        let (mut write, answer, explain) = match decision {
            Decision::ReadMore(more) => {
                reads = with_record(more);
                continue;
            }
            Decision::Commit(write, answer) => (*write, answer, None),
            Decision::Attempt(write, answer, explain) => (*write, answer, Some(with_record(explain))),
        };
        command.record(&mut write, &answer).await?;
        if write.is_empty() {
            return Ok(answer);
        }
        match commit_resending(store, &write).await {
            Ok(()) => {
                command.committed(&write);
                if !write.new_transfers.is_empty() {
                    crate::metrics::emit("Transfers", write.new_transfers.len() as f64, "Count", None);
                }
                return Ok(answer);
            }
            Err(CommitError::Recorded(found)) => match command.recorded(&found) {
                Some(answer) => return answer,
                None => command.found_elsewhere(),
            },
            Err(CommitError::Rejected(Rejection::IdempotencyRecorded | Rejection::EventRecorded)) => {
                command.found_elsewhere();
            }
            Err(CommitError::Rejected(Rejection::IdempotencyInFlight)) => return Err(DomainError::IdempotencyKeyInUse),
            // An attempt's conditions refused: read what explains it and decide now.
            Err(CommitError::Rejected(Rejection::InsufficientFunds | Rejection::Stale)) if explain.is_some() => {
                reads = explain.unwrap_or(reads);
            }
            // A debit is no longer covered: read and decide now (the domain names the rule).
            Err(CommitError::Rejected(Rejection::InsufficientFunds)) => {}
            Err(CommitError::Rejected(Rejection::Stale | Rejection::Contention)) => {
                tracing::debug!(attempt, "write refused by a concurrent change; deciding again");
                tokio::time::sleep(jittered_backoff(attempt)).await;
            }
            Err(CommitError::Failed(error)) => return Err(error),
        }
    }
    tracing::warn!("retry budget exhausted under contention");
    Err(DomainError::Unavailable)
}
