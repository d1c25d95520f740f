//! The clock and the id source, kept out of the domain so it stays deterministic.
//!
//! With the `test-support` feature a thread may replace both with a virtual clock and a
//! seeded id source ([`simulated`]), so a simulation is repeatable from its seed. The
//! functions never enable that feature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fintx_domain::clock::Timestamp;
use ulid::Ulid;

/// The current time, truncated to milliseconds.
pub fn now() -> Timestamp {
    #[cfg(feature = "test-support")]
    if let Some(now) = simulated::now() {
        return now;
    }
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_ms(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A fresh ULID for `at`: time-sortable, with 80 random bits.
pub fn new_ulid(at: Timestamp) -> Ulid {
    let ms = u64::try_from(at.unix_ms()).unwrap_or(0);
    #[cfg(feature = "test-support")]
    if let Some(random) = simulated::random_u128() {
        return Ulid::from_parts(ms, random);
    }
    Ulid::from_datetime(UNIX_EPOCH + Duration::from_millis(ms))
}

/// A virtual clock and a seeded id source for this thread (simulations and tests).
#[cfg(feature = "test-support")]
pub mod simulated {
    use std::cell::Cell;

    use fintx_domain::clock::Timestamp;

    thread_local! {
        static CLOCK_MS: Cell<Option<i64>> = const { Cell::new(None) };
        static RANDOM: Cell<Option<u64>> = const { Cell::new(None) };
    }

    /// From now on this thread reads time from a virtual clock set to `start_ms`, and
    /// draws id randomness from a generator seeded with `seed`.
    pub fn install(start_ms: i64, seed: u64) {
        CLOCK_MS.with(|c| c.set(Some(start_ms)));
        RANDOM.with(|r| r.set(Some(seed | 1)));
    }

    /// Back to the real clock and random ids.
    pub fn uninstall() {
        CLOCK_MS.with(|c| c.set(None));
        RANDOM.with(|r| r.set(None));
    }

    /// Moves the virtual clock forward by `ms`.
    pub fn advance(ms: i64) {
        CLOCK_MS.with(|c| c.set(c.get().map(|now| now.saturating_add(ms))));
    }

    pub(crate) fn now() -> Option<Timestamp> {
        CLOCK_MS.with(Cell::get).and_then(Timestamp::from_unix_ms)
    }

    pub(crate) fn random_u128() -> Option<u128> {
        RANDOM.with(|r| {
            let mut state = r.get()?;
            let mut next = || {
                // xorshift64*: small, fast and plenty for distinct ids.
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                state.wrapping_mul(0x2545_f491_4f6c_dd1d)
            };
            let value = (u128::from(next()) << 64) | u128::from(next());
            r.set(Some(state));
            Some(value & ((1u128 << 80) - 1))
        })
    }
}
