//! A short run of every fuzz target, part of `make test`: the corpus once, then a few
//! thousand mutants each, with no crash. `make fuzz` runs the same targets for longer.
//! Also: `openapi.yaml` names exactly the currencies the API accepts (every three-letter
//! code is tried against `Currency::parse`, the parser every handler uses).

use std::path::Path;
use std::time::Duration;

use fintx_domain::money::Currency;
use fintx_fuzz::{fuzz, targets, Budget};

fn corpus() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/corpus"))
}

#[test]
fn every_target_survives_a_short_run() {
    let budget = Budget {
        duration: Duration::from_secs(8),
        executions: 3_000,
        stop_on_crash: true,
    };
    for name in targets::NAMES {
        let make = || targets::make(name).expect("a target");
        let report = fuzz(&make, Some(corpus()), None, budget, 7);
        assert!(report.executions > 0, "{name} did not run");
        assert_eq!(report.crashes, 0, "{name} crashed: {:?}", report.first_crash);
    }
}

#[test]
fn the_engine_counts_a_crash_and_keeps_going() {
    struct Fragile;
    impl fintx_fuzz::Target for Fragile {
        fn name(&self) -> &'static str {
            "fragile"
        }
        fn seeds(&self) -> Vec<Vec<u8>> {
            vec![b"ok".to_vec(), b"boom".to_vec()]
        }
        fn dictionary(&self) -> &'static [&'static [u8]] {
            &[b"boom"]
        }
        fn run(&mut self, input: &[u8]) {
            assert!(!input.starts_with(b"boom"), "a seeded failure");
        }
    }
    let budget = Budget {
        duration: Duration::from_secs(5),
        executions: 500,
        stop_on_crash: false,
    };
    let make = || Box::new(Fragile) as Box<dyn fintx_fuzz::Target>;
    let report = fuzz(&make, None, None, budget, 1);
    assert_eq!(report.executions, 500);
    assert!(report.crashes >= 1);
    assert_eq!(report.first_crash.as_deref(), Some("a seeded failure"));
}

#[test]
fn every_target_has_a_corpus_in_the_repository() {
    for name in targets::NAMES {
        let dir = corpus().join(name);
        let count = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(count > 0, "{} has no corpus", dir.display());
    }
}

fn accepted() -> Vec<String> {
    let mut codes = Vec::new();
    for a in b'A'..=b'Z' {
        for b in b'A'..=b'Z' {
            for c in b'A'..=b'Z' {
                let code = String::from_utf8(vec![a, b, c]).unwrap();
                if Currency::parse(&code).is_ok() {
                    codes.push(code);
                }
            }
        }
    }
    codes
}

#[test]
fn the_contract_enumerates_exactly_the_accepted_currencies() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml")).unwrap();
    let document: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let declared: Vec<String> = document["components"]["schemas"]["Currency"]["enum"]
        .as_array()
        .map(|codes| codes.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let accepted = accepted();
    assert!(accepted.len() > 100, "the parser accepts the ISO 4217 codes");
    assert_eq!(
        declared,
        accepted,
        "openapi.yaml's Currency enum differs from what Currency::parse accepts; it should read: [{}]",
        accepted.join(", ")
    );
}
