//! template.yaml: validated offline three ways, provably able to fail, and never
//! switching on the local dev-auth bypass.

use std::process::Command;

use fintx_tests::repo_root;

fn python() -> String {
    std::env::var("FINTX_PYTHON").unwrap_or_else(|_| {
        panic!("FINTX_PYTHON is not set: template tests run through `make test`, which provides the venv's Python")
    })
}

fn validate(template: &std::path::Path) -> std::process::Output {
    Command::new(python())
        .arg(repo_root().join("scripts/validate_template.py"))
        .arg(template)
        .current_dir(repo_root())
        .output()
        .expect("the validator runs")
}

#[test]
fn the_template_never_sets_the_dev_auth_bypass() {
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    assert!(
        !text.contains("FINTX_DEV_AUTH"),
        "template.yaml mentions FINTX_DEV_AUTH"
    );
    let parsed: serde_json::Value = serde_yaml::from_str(&text.replace('!', "")).unwrap();
    let mut stack = vec![&parsed];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                assert!(!map.keys().any(|k| k.contains("DEV_AUTH")));
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
}

#[test]
fn errors_inside_serverless_resources_are_caught_by_the_translated_pass() {
    let original = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let ok = validate(&repo_root().join("template.yaml"));
    assert!(
        ok.status.success(),
        "the real template fails validation: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let seeded = [
        ("StartingPosition: TRIM_HORIZON", "StartingPosition: OLDEST"),
        ("Runtime: provided.al2023", "Runtime: provided.al2099"),
        (
            "Stream: !GetAtt LedgerTable.StreamArn",
            "Stream: !GetAtt LedgerTable.StreamArnX",
        ),
    ];
    let dir = std::env::temp_dir().join(format!("fintx-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (from, to) in seeded {
        assert!(
            original.contains(from),
            "seed anchor {from:?} is gone from template.yaml"
        );
        let copy = dir.join("template.yaml");
        std::fs::write(&copy, original.replace(from, to)).unwrap();
        let out = validate(&copy);
        assert!(!out.status.success(), "the validator accepted a template with {to:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
