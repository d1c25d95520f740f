//! `make fuzz`: runs each fuzz target for a time budget and prints executions and crashes
//! per target.
//!
//! `fintx-fuzz [--seconds N] [--runs N] [--seed N] [--corpus DIR] [--crashes DIR] [TARGET...]`
//! runs the named targets (all by default), each for `--seconds` (default 60) or `--runs`
//! executions, whichever ends first. `fintx-fuzz --list` names the targets;
//! `--write-seeds` writes each target's built-in seeds into the corpus. The exit code
//! is 1 when any target crashed; crashing inputs are kept under `--crashes`. The report
//! goes to stderr: stdout carries the metric lines the handlers emit, as in Lambda.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fintx_fuzz::{fuzz, quiet_panics, targets, Budget};

fn main() -> ExitCode {
    let mut seconds = 60u64;
    let mut runs = u64::MAX;
    let mut seed = 1u64;
    let mut corpus = PathBuf::from("fuzz/corpus");
    let mut crashes = PathBuf::from("fuzz/crashes");
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        match arg.as_str() {
            "--seconds" => {
                seconds = value("--seconds")
                    .parse()
                    .unwrap_or_else(|_| usage("--seconds is a number"))
            }
            "--runs" => runs = value("--runs").parse().unwrap_or_else(|_| usage("--runs is a number")),
            "--seed" => seed = value("--seed").parse().unwrap_or_else(|_| usage("--seed is a number")),
            "--corpus" => corpus = PathBuf::from(value("--corpus")),
            "--crashes" => crashes = PathBuf::from(value("--crashes")),
            "--write-seeds" => {
                for name in targets::NAMES {
                    let target = targets::make(name).unwrap_or_else(|| usage("unknown target"));
                    let dir = corpus.join(name);
                    std::fs::create_dir_all(&dir).unwrap_or_else(|e| usage(&format!("{}: {e}", dir.display())));
                    for (index, seed) in target.seeds().iter().enumerate() {
                        let path = dir.join(format!("seed-{index:02}"));
                        std::fs::write(&path, seed).unwrap_or_else(|e| usage(&format!("{}: {e}", path.display())));
                    }
                }
                return ExitCode::SUCCESS;
            }
            "--list" => {
                targets::NAMES.iter().for_each(|name| println!("{name}"));
                return ExitCode::SUCCESS;
            }
            name if targets::make(name).is_some() => names.push(name.to_owned()),
            other => usage(&format!("unknown target or option {other:?}")),
        }
    }
    if names.is_empty() {
        names = targets::NAMES.iter().map(|n| (*n).to_owned()).collect();
    }
    quiet_panics();
    let budget = Budget {
        duration: Duration::from_secs(seconds),
        executions: runs,
        stop_on_crash: false,
    };
    eprintln!(
        "{:<24} {:>14} {:>12} {:>9} {:>8}",
        "target", "executions", "exec/s", "seconds", "crashes"
    );
    let mut crashed = 0;
    let mut total = 0u64;
    for name in &names {
        let make = || targets::make(name).unwrap_or_else(|| usage("unknown target"));
        let report = fuzz(&make, Some(&corpus), Some(&crashes), budget, seed);
        let secs = report.elapsed.as_secs_f64();
        eprintln!(
            "{:<24} {:>14} {:>12.0} {:>9.1} {:>8}",
            report.target,
            report.executions,
            report.executions as f64 / secs.max(1e-9),
            secs,
            report.crashes
        );
        total += report.executions;
        if report.crashes > 0 {
            crashed += 1;
        }
    }
    eprintln!(
        "fuzz: {} targets, {total} executions, {crashed} with crashes (seed {seed})",
        names.len()
    );
    if crashed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("fintx-fuzz: {problem}");
    eprintln!("usage: fintx-fuzz [--seconds N] [--runs N] [--seed N] [--corpus DIR] [--crashes DIR] [--list] [--write-seeds] [TARGET...]");
    std::process::exit(2)
}
