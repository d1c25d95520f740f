//! The clock and the id source, kept out of the domain so it stays deterministic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fintx_domain::clock::Timestamp;
use ulid::Ulid;

/// The current time, truncated to milliseconds.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_ms(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A fresh ULID for `at`: time-sortable, with 80 random bits.
pub fn new_ulid(at: Timestamp) -> Ulid {
    let ms = u64::try_from(at.unix_ms()).unwrap_or(0);
    Ulid::from_datetime(UNIX_EPOCH + Duration::from_millis(ms))
}
