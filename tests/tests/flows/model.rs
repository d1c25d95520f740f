//! The handlers against the independent reference model (tests/src/model.rs), and the
//! deterministic fault simulation (tests/src/sim.rs), in sizes that fit `make test`.
//! `make simulate` runs the simulation at full size. Deliberately broken stores show
//! that the comparison and the invariants bite.

use std::sync::Arc;

use fintx_adapters::memory::MemoryStore;
use fintx_domain::ids::AccountId;
use fintx_domain::ports::{CommitError, LedgerStore, LedgerWrite};
use fintx_domain::DomainError;
use fintx_tests::faults::FaultyStore;
use fintx_tests::sim::{run_over, sequence, simulate, world_seed};
use fintx_tests::Stack;

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

fn report_of(report: &fintx_tests::sim::Report) -> String {
    report
        .violations
        .iter()
        .map(|(world, v)| format!("world seed {world}, step {}: {}", v.step, v.what))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_handlers_agree_with_the_reference_model_in_memory() {
    let report = paused_runtime().block_on(simulate(11, 4_000, 400, false, |_| {}));
    assert!(report.violations.is_empty(), "{}", report_of(&report));
    // The sequences reach the rules, not only refusals.
    for answer in [
        "Transfer 201",
        "Post 200",
        "Reverse 201",
        "Payment 201",
        "Outcome 200 applied",
        "Deposit 200 applied",
        "Replay 201",
        "Post 409  managed_by_payment",
        "Transfer 422  clearing_account",
        "Transfer 422  insufficient_funds",
    ] {
        assert!(
            report.tally.keys().any(|k| k.starts_with(answer)),
            "no `{answer}` in {:?}",
            report.tally
        );
    }
}

#[test]
fn the_simulation_with_faults_at_every_port_finds_no_violation() {
    let report = paused_runtime().block_on(simulate(12, 6_000, 400, true, |_| {}));
    assert!(report.violations.is_empty(), "{}", report_of(&report));
    assert!(
        report
            .tally
            .get("(answer lost after commit, retried)")
            .copied()
            .unwrap_or(0)
            > 0,
        "faults after commits were drawn: {:?}",
        report.tally
    );
}

#[test]
fn a_simulation_repeats_exactly_from_its_seed() {
    let runtime = paused_runtime();
    let first = runtime.block_on(simulate(13, 800, 400, true, |_| {}));
    let second = runtime.block_on(simulate(13, 800, 400, true, |_| {}));
    assert_eq!(first.tally, second.tally);
}

#[tokio::test]
async fn the_dynamodb_adapter_agrees_with_the_reference_model_on_the_emulator() {
    let stack = Stack::fresh().await;
    let seed = world_seed(21, 0);
    let ops = sequence(seed, 160);
    let violations = run_over(Arc::new(stack.store()), seed, &ops, false).await;
    assert!(violations.is_empty(), "{violations:?}");
}

// ------------------------------------------------------------------- mutants

/// Violations a broken store meets over four worlds of 400 operations (one world may
/// happen not to reach what the mutation breaks).
async fn violations_with(mutation: fn(&mut LedgerWrite)) -> usize {
    let mut found = 0;
    for world in 0..4 {
        let store = Arc::new(FaultyStore::mutant(Arc::new(MemoryStore::new()), mutation));
        let seed = world_seed(31, world);
        found += run_over(store, seed, &sequence(seed, 400), false).await.len();
    }
    found
}

#[test]
fn a_store_that_forgets_idempotency_records_is_caught() {
    let found = paused_runtime().block_on(violations_with(|w| {
        if w.deltas.iter().any(|d| !d.posted.is_zero()) {
            w.idempotency = None;
        }
    }));
    assert!(found > 0, "replays of forgotten keys must disagree with the model");
}

#[test]
fn a_store_that_loses_transfer_updates_is_caught() {
    let found = paused_runtime().block_on(violations_with(|w| w.transfer_updates.clear()));
    assert!(
        found > 0,
        "a hold posted in balances but not in its transfer must be seen"
    );
}

/// One side of a transfer, alone: a write that does not balance.
fn one_sided_write(account: AccountId) -> LedgerWrite {
    LedgerWrite {
        deltas: vec![fintx_domain::transfer::AccountDelta {
            account_id: account,
            posted: rust_decimal::Decimal::new(500, 2),
            pending_debits: rust_decimal::Decimal::ZERO,
            pending_credits: rust_decimal::Decimal::ZERO,
            cover: None,
            expect: None,
            open: None,
            requires: None,
            holds: Vec::new(),
            spread: false,
        }],
        ..LedgerWrite::default()
    }
}

#[tokio::test]
async fn a_write_that_does_not_balance_never_reaches_dynamodb() {
    let stack = Stack::fresh().await;
    let counter = fintx_tests::CallCounter::default();
    let store = fintx_adapters::dynamo::DynamoStore::new(stack.counted_dynamo(&counter).await, stack.tables.clone());
    let account = AccountId::from_ulid(ulid::Ulid::from_parts(1, 1));
    let refused = store.commit(&one_sided_write(account)).await;
    assert_eq!(refused, Err(CommitError::Failed(DomainError::Unbalanced)));
    assert_eq!(counter.total(), 0, "no request was sent");
}

#[tokio::test]
async fn a_write_that_does_not_balance_changes_nothing_in_memory() {
    let store = MemoryStore::new();
    let account = AccountId::from_ulid(ulid::Ulid::from_parts(1, 1));
    let refused = store.commit(&one_sided_write(account)).await;
    assert_eq!(refused, Err(CommitError::Failed(DomainError::Unbalanced)));
    assert!(store.all_accounts().is_empty() && store.all_transfers().is_empty());
}
