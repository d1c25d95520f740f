//! The audit trail: who saw which record's protected data. One JSON object per line on
//! stdout, written beside the logs rather than through them, so no configured log level
//! can drop a line (SPEC §6). A line names the caller and the record, never the data.

use std::io::Write;

/// Writes the audit line of a PII reveal: tenant, subject, record and field.
pub fn pii_reveal(tenant: &str, subject: &str, record_id: &str, field: &str) {
    let line = line(
        "pii_reveal",
        &[
            ("tenant", tenant),
            ("subject", subject),
            ("record_id", record_id),
            ("field", field),
        ],
        crate::system::now().to_string().as_str(),
    );
    #[cfg(feature = "test-support")]
    if capture::take_line(&line) {
        return;
    }
    // One write per line so concurrent writers never interleave within a record.
    let _ = std::io::stdout().lock().write_all(&line);
}

/// One audit record as a line of JSON (every string escaped by serde_json).
pub fn line(event: &str, fields: &[(&str, &str)], at: &str) -> Vec<u8> {
    let mut object = serde_json::Map::new();
    object.insert("audit".to_owned(), event.into());
    object.insert("at".to_owned(), at.into());
    for (name, value) in fields {
        object.insert((*name).to_owned(), (*value).into());
    }
    let mut out = serde_json::to_vec(&object).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Lets a test collect this thread's audit lines instead of printing them.
#[cfg(feature = "test-support")]
pub mod capture {
    use std::cell::RefCell;

    thread_local! {
        static LINES: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
    }

    /// Collects this thread's audit lines from now on.
    pub fn start() {
        LINES.with(|l| *l.borrow_mut() = Some(Vec::new()));
    }

    /// The lines collected so far, and stops collecting.
    pub fn finish() -> Vec<String> {
        LINES.with(|l| l.borrow_mut().take()).unwrap_or_default()
    }

    pub(super) fn take_line(line: &[u8]) -> bool {
        LINES.with(|l| match l.borrow_mut().as_mut() {
            Some(lines) => {
                lines.push(String::from_utf8_lossy(line).into_owned());
                true
            }
            None => false,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_audit_line_is_one_json_object_naming_the_event() {
        let line = super::line(
            "pii_reveal",
            &[("tenant", "t\"1"), ("record_id", "acct_1")],
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["audit"], "pii_reveal");
        assert_eq!(value["tenant"], "t\"1");
        assert_eq!(value["record_id"], "acct_1");
    }
}
