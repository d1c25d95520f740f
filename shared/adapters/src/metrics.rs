//! Metrics as CloudWatch Embedded Metric Format: one JSON object per line on stdout, which
//! Lambda ships to CloudWatch Logs and CloudWatch turns into metrics. No PII or secrets
//! ever go into a metric: names, counts and codes only.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

/// The metric namespace of every fintx function.
pub const NAMESPACE: &str = "fintx";

/// Emits one metric with an optional dimension (for example `Code` for rejections).
pub fn emit(name: &str, value: f64, unit: &str, dimension: Option<(&str, &str)>) {
    static FUNCTION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let function =
        FUNCTION.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned()));
    let document = document(function, name, value, unit, dimension);
    // One write per line so concurrent emitters never interleave within a document.
    let line = format!("{document}\n");
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

/// The EMF document of one metric.
pub fn document(
    function: &str,
    name: &str,
    value: f64,
    unit: &str,
    dimension: Option<(&str, &str)>,
) -> serde_json::Value {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let dimensions: Vec<&str> = match dimension {
        Some((key, _)) => vec!["Function", key],
        None => vec!["Function"],
    };
    let mut document = json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions],
                "Metrics": [{"Name": name, "Unit": unit}],
            }],
        },
        "Function": function,
        name: value,
    });
    if let Some((key, dimension_value)) = dimension {
        document[key] = json!(dimension_value);
    }
    document
}

pub fn count(name: &str, dimension: Option<(&str, &str)>) {
    emit(name, 1.0, "Count", dimension);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_an_embedded_metric_format_document() {
        let d = document(
            "transactions",
            "Rejections",
            1.0,
            "Count",
            Some(("Code", "insufficient_funds")),
        );
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Namespace"], "fintx");
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            json!(["Function", "Code"])
        );
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0],
            json!({"Name": "Rejections", "Unit": "Count"})
        );
        assert_eq!(
            (d["Rejections"].as_f64(), d["Code"].as_str(), d["Function"].as_str()),
            (Some(1.0), Some("insufficient_funds"), Some("transactions"))
        );
        assert!(d["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    }
}
