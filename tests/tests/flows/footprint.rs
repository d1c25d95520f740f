//! What the three functions link, read from the locked dependency graph: one TLS stack
//! (rustls with ring, which seeds from the kernel), no aws-lc (whose jitter-entropy source
//! would stall the first TLS handshake after a cold start), no `aws-config` provider
//! chains with their STS client, no regex engine behind the log filter, and not the
//! Mozilla root set, whose AWS roots the adapters' build script picks out.

use std::collections::BTreeSet;
use std::process::Command;

const FUNCTIONS: [&str; 3] = ["transactions", "bank-webhooks", "analytics-rollups"];
const NOT_LINKED: [&str; 9] = [
    "aws-lc-rs",
    "aws-lc-sys",
    "aws-config",
    "aws-sdk-sts",
    "openssl-sys",
    "native-tls",
    "regex",
    "reqwest",
    "webpki-root-certs",
];

fn linked(function: &str) -> Vec<(String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["tree", "--locked", "-p", function, "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(fintx_tests::repo_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let packages: BTreeSet<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect();
    packages.into_iter().collect()
}

#[test]
fn each_function_links_one_tls_stack_and_no_provider_chains() {
    for function in FUNCTIONS {
        let packages = linked(function);
        assert!(packages.len() > 50, "{function}: the graph was not read");
        let names: BTreeSet<&str> = packages.iter().map(|(name, _)| name.as_str()).collect();
        for absent in NOT_LINKED {
            assert!(!names.contains(absent), "{function} links {absent}");
        }
        for present in ["rustls", "ring", "aws-sdk-dynamodb"] {
            assert!(names.contains(present), "{function} does not link {present}");
        }
        let rustls: Vec<_> = packages.iter().filter(|(name, _)| name == "rustls").collect();
        assert_eq!(rustls.len(), 1, "{function}: more than one rustls: {rustls:?}");
    }
}
