//! Committing a ledger write when the store's answer can be lost.
//!
//! A write that failed with an unknown effect (a timeout, a dropped connection, a server
//! error) may have committed. Such a write is sent again as it was: its own conditions
//! make that safe. A write refused for capacity (throttled) applied nothing and is sent
//! again after backoff; one refused as sent is not, since sending it again cannot help.
//! If the first attempt had committed, the store refuses the second by the write's
//! idempotency or event record, and the caller reads that record back to answer exactly
//! as the first attempt would have (SPEC §5, §7), never as a duplicate of itself.

use std::time::Duration;

use fintx_domain::ports::{CommitError, LedgerStore, LedgerWrite};
use fintx_domain::{Cause, DomainError};

/// How often a write whose effect is unknown is sent again.
pub const RESENDS_MAX: u32 = 2;

/// Commits `write`, sending it again after a failure whose effect is unknown when the
/// write carries a record (idempotency or webhook event) that tells a re-send apart from
/// a first commit, and after throttling. Any other answer is the store's.
pub async fn commit_resending(store: &dyn LedgerStore, write: &LedgerWrite) -> Result<(), CommitError> {
    let resendable = write.idempotency.is_some() || write.event.is_some();
    let mut resends = 0;
    loop {
        match store.commit(write).await {
            Err(CommitError::Failed(DomainError::Dependency(cause)))
                if resends < RESENDS_MAX && (cause == Cause::Throttled || (resendable && cause.effect_unknown())) =>
            {
                tracing::warn!(resends, ?cause, "write not known to have applied; sending it again");
                tokio::time::sleep(jittered_backoff(resends)).await;
                resends = resends.saturating_add(1);
            }
            other => return other,
        }
    }
}

/// Full jitter: a random wait up to an exponentially growing cap (5 ms doubling, at most
/// 250 ms), so writers refused together do not meet again.
pub fn jittered_backoff(attempt: u32) -> Duration {
    let cap_ms = (5u64 << attempt.min(6)).min(250);
    let random = getrandom::u64().unwrap_or(cap_ms / 2);
    Duration::from_millis(random % (cap_ms.saturating_add(1)))
}
