//! Checks handler responses against `openapi.yaml`, so the published contract and the
//! code cannot drift apart.

use serde_json::Value;

use crate::{repo_root, Reply};

pub struct Contract {
    document: Value,
}

impl Contract {
    pub fn load() -> Contract {
        let text = std::fs::read_to_string(repo_root().join("openapi.yaml")).expect("openapi.yaml is readable");
        let document: Value = serde_yaml::from_str(&text).expect("openapi.yaml is valid YAML");
        Contract { document }
    }

    /// Every `(method, path)` the contract declares.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut operations = Vec::new();
        if let Some(paths) = self.document["paths"].as_object() {
            for (path, item) in paths {
                for method in ["get", "post", "put", "patch", "delete"] {
                    if item.get(method).is_some() {
                        operations.push((method.to_uppercase(), path.clone()));
                    }
                }
            }
        }
        operations
    }

    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                self.resolve(
                    self.document
                        .pointer(pointer)
                        .unwrap_or_else(|| panic!("dangling $ref {reference}")),
                )
            }
            None => value,
        }
    }

    /// Panics unless the reply is declared for the operation and its body validates
    /// against the declared schema.
    pub fn check(&self, method: &str, path_template: &str, reply: &Reply) {
        let operation = &self.document["paths"][path_template][method.to_lowercase()];
        assert!(operation.is_object(), "openapi.yaml has no {method} {path_template}");
        let status = reply.status.to_string();
        let response = operation["responses"]
            .get(&status)
            .or_else(|| operation["responses"].get("default"))
            .unwrap_or_else(|| panic!("{method} {path_template} does not declare status {status}: {reply:?}"));
        let response = self.resolve(response);
        let schema = response["content"]
            .get(&reply.content_type)
            .unwrap_or_else(|| {
                panic!(
                    "{method} {path_template} {status} does not declare {}",
                    reply.content_type
                )
            })
            .get("schema")
            .expect("content has a schema");
        let mut root = serde_json::Map::new();
        root.insert("$schema".into(), "https://json-schema.org/draft/2020-12/schema".into());
        root.insert("$defs".into(), self.document["components"]["schemas"].clone());
        root.insert("allOf".into(), Value::Array(vec![schema.clone()]));
        let text = Value::Object(root)
            .to_string()
            .replace("#/components/schemas/", "#/$defs/");
        let schema: Value = serde_json::from_str(&text).expect("schema JSON");
        let validator = jsonschema::validator_for(&schema).expect("openapi.yaml schemas compile");
        let errors: Vec<String> = validator
            .iter_errors(&reply.body)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path_template} {status} does not match openapi.yaml: {errors:?}\nbody: {}",
            reply.body
        );
    }
}
