//! Timestamps: RFC 3339 UTC with millisecond precision on the wire.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(OffsetDateTime::UNIX_EPOCH);

    /// Builds a timestamp from milliseconds since the Unix epoch.
    pub fn from_unix_ms(ms: i64) -> Option<Self> {
        let nanos = i128::from(ms).checked_mul(1_000_000)?;
        OffsetDateTime::from_unix_timestamp_nanos(nanos).ok().map(Self)
    }

    pub fn unix_ms(&self) -> i64 {
        // Millisecond precision is all a Timestamp ever holds.
        i64::try_from(self.0.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        let ms = i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()?;
        Self::from_unix_ms(ms)
    }

    pub fn inner(&self) -> OffsetDateTime {
        self.0
    }
}

impl Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, written without the formatting machinery: every
    /// record and response carries timestamps.
    fn rfc3339(&self) -> [u8; 24] {
        fn digits(out: &mut [u8], mut value: u32) {
            for slot in out.iter_mut().rev() {
                // A digit is below 10; the cast cannot truncate.
                *slot = b"0123456789"[(value % 10) as usize];
                value /= 10;
            }
        }
        let t = self.0;
        let mut out = *b"0000-00-00T00:00:00.000Z";
        // Years outside 0..=9999 cannot come from a millisecond Unix time this ledger
        // accepts; clamp rather than print a wrong width.
        digits(&mut out[0..4], u32::try_from(t.year()).unwrap_or(0).min(9999));
        digits(&mut out[5..7], u32::from(u8::from(t.month())));
        digits(&mut out[8..10], u32::from(t.day()));
        digits(&mut out[11..13], u32::from(t.hour()));
        digits(&mut out[14..16], u32::from(t.minute()));
        digits(&mut out[17..19], u32::from(t.second()));
        digits(&mut out[20..23], u32::from(t.millisecond()));
        out
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.rfc3339();
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.rfc3339();
        match std::str::from_utf8(&text) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => Err(serde::ser::Error::custom("timestamp is not ASCII")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339_utc_and_parse_back() {
        let t = Timestamp::from_unix_ms(1_700_000_000_123).unwrap();
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t));
        assert_eq!(t.unix_ms(), 1_700_000_000_123);
        assert_eq!(Timestamp::UNIX_EPOCH.to_string(), "1970-01-01T00:00:00.000Z");
        let late = Timestamp::from_unix_ms(253_402_300_799_999).unwrap();
        assert_eq!(late.to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            serde_json::to_string(&Timestamp::from_unix_ms(1_000_000_000_007).unwrap()).unwrap(),
            "\"2001-09-09T01:46:40.007Z\""
        );
    }

    #[test]
    fn display_agrees_with_the_rfc3339_formatter() {
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        for ms in [
            0,
            1,
            999,
            86_399_999,
            951_782_400_000,
            1_700_000_000_123,
            4_102_444_800_000,
        ] {
            let t = Timestamp::from_unix_ms(ms).unwrap();
            assert_eq!(t.to_string(), t.inner().format(&format).unwrap());
        }
    }
}
