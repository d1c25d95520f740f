//! The workspace's arrows, checked from `cargo metadata` (dev-dependencies included): the
//! domain depends on no other workspace crate and on nothing AWS or I/O; the adapters on
//! the domain only; each function on the domain and the adapters, never on another
//! function. A seeded wrong arrow shows the check bites.

use serde_json::Value;

const FUNCTIONS: [&str; 3] = ["transactions", "bank-webhooks", "analytics-rollups"];
const WORKSPACE: [&str; 6] = [
    "fintx-domain",
    "fintx-adapters",
    "transactions",
    "bank-webhooks",
    "analytics-rollups",
    "fintx-tests",
];

/// Dependencies the pure domain may never have: AWS, the Lambda runtime, I/O runtimes.
fn is_io(name: &str) -> bool {
    [
        "aws",
        "lambda",
        "tokio",
        "hyper",
        "reqwest",
        "rustls",
        "mio",
        "getrandom",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

/// Every arrow that breaks the rules, as `from -> to (kind)`.
fn wrong_arrows(metadata: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let from = package["name"].as_str().unwrap_or_default();
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let to = dependency["name"].as_str().unwrap_or_default();
            let kind = dependency["kind"].as_str().unwrap_or("normal");
            let internal = WORKSPACE.contains(&to);
            let allowed = match from {
                "fintx-domain" => !internal && !is_io(to),
                "fintx-adapters" => !internal || to == "fintx-domain",
                f if FUNCTIONS.contains(&f) => !internal || to == "fintx-domain" || to == "fintx-adapters",
                _ => true,
            };
            if !allowed {
                wrong.push(format!("{from} -> {to} ({kind})"));
            }
        }
    }
    wrong
}

fn metadata() -> Value {
    let output = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(fintx_tests::repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("metadata is JSON")
}

#[test]
fn every_crate_depends_only_where_the_architecture_allows() {
    let metadata = metadata();
    let names: Vec<&str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for crate_name in WORKSPACE {
        assert!(names.contains(&crate_name), "{crate_name} is in the workspace");
    }
    assert_eq!(wrong_arrows(&metadata), Vec::<String>::new());
}

#[test]
fn a_wrong_arrow_is_caught() {
    let mut metadata = metadata();
    for (from, to, kind) in [
        ("bank-webhooks", "transactions", "dev"),
        ("fintx-domain", "fintx-adapters", "normal"),
        ("fintx-domain", "tokio", "dev"),
        ("fintx-adapters", "analytics-rollups", "normal"),
    ] {
        let mut copy = metadata.clone();
        let package = copy["packages"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|p| p["name"] == from)
            .unwrap();
        package["dependencies"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": to, "kind": kind}));
        assert_eq!(wrong_arrows(&copy), vec![format!("{from} -> {to} ({kind})")]);
    }
    metadata["packages"] = Value::Array(Vec::new());
    assert!(wrong_arrows(&metadata).is_empty());
}
