//! Analytics rollups (SPEC §8): posted money movement per tenant, account, currency and
//! UTC hour and day. Pure: the stream consumer extracts movements, the store adds them up.

use rust_decimal::Decimal;
use time::{Duration, OffsetDateTime};

use crate::auth::TenantId;
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::ids::{AccountId, TransferId};
use crate::money::Currency;

pub const DAYS_MAX: i64 = 366;
pub const HOURS_MAX: i64 = 744;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hour" => Some(Granularity::Hour),
            "day" => Some(Granularity::Day),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    /// The period a moment falls in, as the start of the period in RFC 3339 UTC:
    /// `2026-11-24T13:00:00Z` (hour) or `2026-11-24T00:00:00Z` (day). Periods of one
    /// granularity sort as text in time order.
    pub fn period(self, at: Timestamp) -> String {
        let t = at.inner();
        let hour = if self == Granularity::Hour { t.hour() } else { 0 };
        format!(
            "{:04}-{:02}-{:02}T{:02}:00:00Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            hour
        )
    }

    /// Validates a `[from, to]` range and returns its first and last period.
    pub fn range(self, from: Timestamp, to: Timestamp) -> Result<(String, String), DomainError> {
        if to < from {
            return Err(DomainError::invalid_request("`to` is before `from`"));
        }
        let span_ms = to.unix_ms().checked_sub(from.unix_ms()).ok_or(DomainError::Overflow)?;
        let (limit, unit) = match self {
            Granularity::Day => (Duration::days(DAYS_MAX), "366 days"),
            Granularity::Hour => (Duration::hours(HOURS_MAX), "744 hours"),
        };
        if i128::from(span_ms) > limit.whole_milliseconds() {
            return Err(DomainError::invalid_request(format!(
                "the range may span at most {unit}"
            )));
        }
        Ok((self.period(from), self.period(to)))
    }
}

/// Parses `from`/`to`: a date (`2026-11-24`, the start of that UTC day) or an RFC 3339
/// timestamp.
pub fn parse_instant(text: &str) -> Option<Timestamp> {
    if text.len() == 10 {
        return Timestamp::parse_rfc3339(&format!("{text}T00:00:00Z"));
    }
    Timestamp::parse_rfc3339(text)
}

/// One posting of money: `amount` left `debit` and reached `credit` at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Movement {
    /// A transfer posts once, so its id identifies the movement for exactly-once counting.
    pub transfer_id: TransferId,
    pub tenant: TenantId,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub currency: Currency,
    pub amount: Decimal,
    pub at: Timestamp,
}

/// What a transfer record looks like in a stream image, as far as rollups care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferImage {
    pub id: TransferId,
    pub tenant: TenantId,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub currency: Currency,
    pub posted_amount: Decimal,
    pub posted_at: Option<Timestamp>,
}

/// The posted movement a change of a transfer record carries, if any: the growth of its
/// `posted_amount` (from nothing on insert). Holds, voids and reversal counters carry none;
/// a reversal is its own posted transfer.
pub fn movement(old: Option<&TransferImage>, new: &TransferImage) -> Option<Movement> {
    let before = old.map_or(Decimal::ZERO, |o| o.posted_amount);
    let amount = new.posted_amount.checked_sub(before)?;
    let at = new.posted_at?;
    (amount > Decimal::ZERO).then(|| Movement {
        transfer_id: new.id,
        tenant: new.tenant.clone(),
        debit_account_id: new.debit_account_id,
        credit_account_id: new.credit_account_id,
        currency: new.currency,
        amount,
        at,
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Account(AccountId),
    Tenant,
}

/// One rollup row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    pub tenant: TenantId,
    pub scope: Scope,
    pub currency_code: &'static str,
    pub granularity: Granularity,
    pub period: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub debit_count: u64,
    pub debit_amount: Decimal,
    pub credit_count: u64,
    pub credit_amount: Decimal,
}

impl Totals {
    pub fn add(&mut self, other: &Totals) -> Result<(), DomainError> {
        self.debit_count = self
            .debit_count
            .checked_add(other.debit_count)
            .ok_or(DomainError::Overflow)?;
        self.credit_count = self
            .credit_count
            .checked_add(other.credit_count)
            .ok_or(DomainError::Overflow)?;
        self.debit_amount = self
            .debit_amount
            .checked_add(other.debit_amount)
            .ok_or(DomainError::Overflow)?;
        self.credit_amount = self
            .credit_amount
            .checked_add(other.credit_amount)
            .ok_or(DomainError::Overflow)?;
        Ok(())
    }

    /// Credits − debits.
    pub fn net(&self) -> Result<Decimal, DomainError> {
        self.credit_amount
            .checked_sub(self.debit_amount)
            .ok_or(DomainError::Overflow)
    }
}

/// The rows one movement adds to: each account's hour and day, and the tenant's.
pub fn contributions(m: &Movement) -> Vec<(RollupKey, Totals)> {
    let debit = Totals {
        debit_count: 1,
        debit_amount: m.amount,
        ..Totals::default()
    };
    let credit = Totals {
        credit_count: 1,
        credit_amount: m.amount,
        ..Totals::default()
    };
    let both = Totals {
        debit_count: 1,
        debit_amount: m.amount,
        credit_count: 1,
        credit_amount: m.amount,
    };
    let mut rows = Vec::with_capacity(6);
    for granularity in [Granularity::Hour, Granularity::Day] {
        let key = |scope| RollupKey {
            tenant: m.tenant.clone(),
            scope,
            currency_code: m.currency.code(),
            granularity,
            period: granularity.period(m.at),
        };
        rows.push((key(Scope::Account(m.debit_account_id)), debit));
        rows.push((key(Scope::Account(m.credit_account_id)), credit));
        rows.push((key(Scope::Tenant), both));
    }
    rows
}

/// Start of the UTC day of a timestamp (for callers that need a bound).
pub fn start_of_day(at: Timestamp) -> Option<Timestamp> {
    let t: OffsetDateTime = at.inner().replace_time(time::Time::MIDNIGHT);
    Timestamp::from_unix_ms(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(posted: i64, at_ms: i64) -> TransferImage {
        TransferImage {
            id: TransferId::from_ulid(ulid::Ulid::from_parts(1, 1)),
            tenant: TenantId::parse("t").unwrap(),
            debit_account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1, 2)),
            credit_account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1, 3)),
            currency: Currency::parse("USD").unwrap(),
            posted_amount: Decimal::new(posted, 2),
            posted_at: (posted > 0).then(|| Timestamp::from_unix_ms(at_ms).unwrap()),
        }
    }

    #[test]
    fn only_growth_of_the_posted_amount_is_a_movement() {
        assert_eq!(movement(None, &image(0, 0)), None, "a hold moves nothing");
        assert_eq!(movement(None, &image(500, 0)).unwrap().amount, Decimal::new(500, 2));
        assert_eq!(
            movement(Some(&image(0, 0)), &image(300, 0)).unwrap().amount,
            Decimal::new(300, 2)
        );
        assert_eq!(
            movement(Some(&image(300, 0)), &image(300, 0)),
            None,
            "a reversal counter moves nothing"
        );
    }

    #[test]
    fn a_movement_adds_to_both_accounts_and_the_tenant_in_both_granularities() {
        let m = movement(None, &image(1234, 1_795_478_400_000 + 13 * 3_600_000 + 59_000)).unwrap();
        let rows = contributions(&m);
        assert_eq!(rows.len(), 6);
        assert!(rows
            .iter()
            .any(|(k, _)| k.period == "2026-11-24T13:00:00Z" && k.granularity == Granularity::Hour));
        assert!(rows
            .iter()
            .any(|(k, _)| k.period == "2026-11-24T00:00:00Z" && k.granularity == Granularity::Day));
        let tenant_day = rows
            .iter()
            .find(|(k, _)| k.scope == Scope::Tenant && k.granularity == Granularity::Day)
            .unwrap();
        assert_eq!(tenant_day.1.net().unwrap(), Decimal::ZERO);
    }

    #[test]
    fn ranges_are_bounded() {
        let at = |s: &str| parse_instant(s).unwrap();
        assert!(Granularity::Day.range(at("2026-01-01"), at("2027-01-02")).is_ok());
        assert!(Granularity::Day.range(at("2026-01-01"), at("2027-01-03")).is_err());
        assert!(Granularity::Hour
            .range(at("2026-11-01"), at("2026-12-01T23:00:00Z"))
            .is_ok());
        assert!(
            Granularity::Hour.range(at("2026-11-01"), at("2026-12-02")).is_ok(),
            "744 hours exactly"
        );
        assert!(Granularity::Hour
            .range(at("2026-11-01"), at("2026-12-02T01:00:00Z"))
            .is_err());
        assert!(Granularity::Day.range(at("2026-11-02"), at("2026-11-01")).is_err());
        assert!(parse_instant("yesterday").is_none());
    }
}
