//! `openapi.yaml` names exactly the currencies the API accepts: every three-letter code is
//! tried against `Currency::parse`, the parser every handler uses.

use fintx_domain::money::Currency;

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
