//! `make simulate`: the deterministic simulation of fintx (SPEC §11). Random operation
//! sequences, hostile ones included, run through the real handlers over the in-memory
//! store with faults injected at every port, checked against the reference model and the
//! ledger's invariants after every step. Repeatable from its seed; a violation prints the
//! seed of its world and the shortest reproducing sequence found.
//!
//! Usage: `simulate [--seed N] [--ops N] [--per-world N] [--no-faults] [--world-seed W]`
//! (`--world-seed` runs the one world a violation named, with its shortest reproducer).

use std::time::Instant;

fn main() {
    let mut seed: u64 = 1;
    let mut ops: u64 = 1_000_000;
    let mut per_world: u64 = 400;
    let mut faults = true;
    let mut only_world: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} takes a whole number")))
        };
        match arg.as_str() {
            "--seed" => seed = number("--seed"),
            "--ops" => ops = number("--ops"),
            "--per-world" => per_world = number("--per-world").max(1),
            "--no-faults" => faults = false,
            "--world-seed" => only_world = Some(number("--world-seed")),
            other => usage(&format!("unknown option {other}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| usage(&format!("no runtime: {e}")));
    if let Some(world) = only_world {
        let found = runtime.block_on(async {
            let ops = fintx_tests::sim::sequence(world, per_world as usize);
            let found = fintx_tests::sim::run_sequence(world, &ops, faults).await;
            if let Some(first) = found.first() {
                let shortest =
                    fintx_tests::sim::shrink(world, ops[..=first.step.min(ops.len() - 1)].to_vec(), faults).await;
                eprintln!("simulate: world {world}: {}", first.what);
                for (op, step_seed) in shortest {
                    eprintln!("  {op:?} faults-seed={step_seed}");
                }
            }
            found.len()
        });
        println!("simulate: world-seed={world} ops={per_world} violations={found}");
        std::process::exit(i32::from(found > 0));
    }
    let started = Instant::now();
    let mut next_report = 100_000;
    let report = runtime.block_on(fintx_tests::sim::simulate(seed, ops, per_world, faults, |done| {
        if done >= next_report {
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            eprintln!("simulate: {done} operations, {rate:.0} ops/s");
            next_report += 100_000;
        }
    }));
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "simulate: {} operations in {seconds:.1} s ({:.0} ops/s), faults {}",
        report.ops,
        report.ops as f64 / seconds.max(1e-9),
        if faults { "on" } else { "off" }
    );
    if std::env::var_os("FINTX_SIMULATE_TALLY").is_some() {
        for (answer, count) in &report.tally {
            eprintln!("  {count:>9}  {answer}");
        }
    }
    for (world_seed, v) in &report.violations {
        eprintln!(
            "simulate: violation (world seed {world_seed}, step {}): {}",
            v.step, v.what
        );
    }
    println!(
        "simulate: seed={} ops={} violations={}",
        report.seed,
        report.ops,
        report.violations.len()
    );
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "simulate: {problem}\nusage: simulate [--seed N] [--ops N] [--per-world N] [--no-faults] [--world-seed W]"
    );
    std::process::exit(2);
}
