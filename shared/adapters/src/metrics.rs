//! Metrics as CloudWatch Embedded Metric Format: one JSON object per line on stdout, which
//! Lambda ships to CloudWatch Logs and CloudWatch turns into metrics. No PII or secrets
//! ever go into a metric: names, counts and codes only.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// The metric namespace of every fintx function.
pub const NAMESPACE: &str = "fintx";

/// Emits one metric with an optional dimension (for example `Code` for rejections).
pub fn emit(name: &str, value: f64, unit: &str, dimension: Option<(&str, &str)>) {
    static FUNCTION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let function =
        FUNCTION.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned()));
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    #[cfg(feature = "test-support")]
    if silenced() {
        return;
    }
    // One write per line so concurrent emitters never interleave within a document.
    let line = line(function, name, value, unit, dimension, timestamp);
    let _ = std::io::stdout().lock().write_all(&line);
}

/// The EMF document of one metric, as one line of JSON. Written field by field (every
/// string JSON-escaped by serde_json): it is on the path of every request.
pub fn line(
    function: &str,
    name: &str,
    value: f64,
    unit: &str,
    dimension: Option<(&str, &str)>,
    timestamp_ms: u128,
) -> Vec<u8> {
    // Writing into a Vec cannot fail.
    fn text(out: &mut Vec<u8>, value: &str) {
        let _ = serde_json::to_writer(&mut *out, value);
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"_aws\":{\"Timestamp\":");
    out.extend_from_slice(timestamp_ms.to_string().as_bytes());
    out.extend_from_slice(b",\"CloudWatchMetrics\":[{\"Namespace\":");
    text(&mut out, NAMESPACE);
    out.extend_from_slice(b",\"Dimensions\":[[\"Function\"");
    if let Some((key, _)) = dimension {
        out.push(b',');
        text(&mut out, key);
    }
    out.extend_from_slice(b"]],\"Metrics\":[{\"Name\":");
    text(&mut out, name);
    out.extend_from_slice(b",\"Unit\":");
    text(&mut out, unit);
    out.extend_from_slice(b"}]}]},\"Function\":");
    text(&mut out, function);
    if let Some((key, dimension_value)) = dimension {
        out.push(b',');
        text(&mut out, key);
        out.push(b':');
        text(&mut out, dimension_value);
    }
    out.push(b',');
    text(&mut out, name);
    out.push(b':');
    let _ = serde_json::to_writer(&mut out, &value);
    out.extend_from_slice(b"}\n");
    out
}

#[cfg(feature = "test-support")]
thread_local! {
    static SILENCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Stops (or resumes) this thread's metric lines: a simulation of a million requests
/// has no CloudWatch to feed.
#[cfg(feature = "test-support")]
pub fn silence(on: bool) {
    SILENCED.with(|s| s.set(on));
}

#[cfg(feature = "test-support")]
fn silenced() -> bool {
    SILENCED.with(std::cell::Cell::get)
}

pub fn count(name: &str, dimension: Option<(&str, &str)>) {
    emit(name, 1.0, "Count", dimension);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_metric_is_an_embedded_metric_format_document() {
        let line = line(
            "transactions",
            "Rejections",
            1.0,
            "Count",
            Some(("Code", "insufficient_funds")),
            1_795_000_000_000,
        );
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let d: serde_json::Value = serde_json::from_slice(&line).unwrap();
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
        assert_eq!(d["_aws"]["Timestamp"].as_u64(), Some(1_795_000_000_000));
        assert_eq!(d.as_object().map(|o| o.len()), Some(4));
    }

    #[test]
    fn names_and_values_are_escaped_and_a_metric_without_dimension_has_only_function() {
        let line = line("fn \"x\"\n", "Lag", 12.5, "Milliseconds", None, 1);
        let d: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(d["Function"], "fn \"x\"\n");
        assert_eq!(d["Lag"], json!(12.5));
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Function"]]));
        assert_eq!(d.as_object().map(|o| o.len()), Some(3));
    }
}
