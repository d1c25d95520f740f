//! Money: ISO 4217 currencies with their minor-unit exponents, and exact decimal amounts.
//!
//! Amounts travel as decimal strings and live as [`rust_decimal::Decimal`]. A value of
//! [`Amount`] always fits its currency's exponent and the 15-integer-digit bound, so code
//! past the parsing boundary cannot hold `"1.005"` dollars or an amount that could
//! overflow a balance sum.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::error::DomainError;

/// Most integer digits an amount may have (SPEC §2). Balances hold sums of such amounts
/// and stay far inside `Decimal`'s 28 digits.
pub const MAX_INTEGER_DIGITS: u32 = 15;

/// An ISO 4217 currency that has minor units (an exponent). Codes without one, such as
/// the precious metals `XAU` or the testing code `XTS`, cannot hold ledger balances.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    iso: iso_currency::Currency,
    exponent: u32,
}

impl Currency {
    /// Parses an upper-case ISO 4217 alphabetic code.
    pub fn parse(code: &str) -> Result<Self, DomainError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(DomainError::InvalidCurrency);
        }
        let iso = iso_currency::Currency::from_code(code).ok_or(DomainError::InvalidCurrency)?;
        let exponent = iso.exponent().ok_or(DomainError::InvalidCurrency)?;
        Ok(Self {
            iso,
            exponent: u32::from(exponent),
        })
    }

    pub fn code(&self) -> &'static str {
        self.iso.code()
    }

    /// Digits after the decimal point: USD 2, JPY 0, KWD 3.
    pub fn exponent(&self) -> u32 {
        self.exponent
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A non-negative decimal quantity of some currency, within the currency's exponent and
/// [`MAX_INTEGER_DIGITS`]. Signed ledger values (balances) are plain `Decimal`s built
/// only from checked sums of `Amount`s.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Amount(Decimal);

impl Amount {
    pub const ZERO: Amount = Amount(Decimal::ZERO);

    /// Parses a wire amount: plain decimal notation, no sign, no exponent, no spaces,
    /// at most `currency.exponent()` fractional digits.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, DomainError> {
        let valid_shape = !text.is_empty()
            && text.len() <= 40
            && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && text.bytes().filter(|&b| b == b'.').count() <= 1
            && !text.starts_with('.')
            && !text.ends_with('.');
        if !valid_shape {
            return Err(DomainError::InvalidAmount(
                "an amount is a decimal string such as \"12.34\"",
            ));
        }
        let value =
            Decimal::from_str(text).map_err(|_| DomainError::InvalidAmount("the amount is not a valid decimal"))?;
        Self::from_decimal(value, currency)
    }

    /// Checks a decimal against the currency's rules.
    pub fn from_decimal(value: Decimal, currency: Currency) -> Result<Self, DomainError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(DomainError::InvalidAmount("the amount may not be negative"));
        }
        // The written scale counts, not the normalised one: "1.500" dollars claims a
        // precision the currency does not have, so it is refused like "1.505".
        if value.scale() > currency.exponent() {
            return Err(DomainError::InvalidAmount(
                "the amount has more decimal places than the currency allows",
            ));
        }
        if integer_digits(value) > MAX_INTEGER_DIGITS {
            return Err(DomainError::InvalidAmount("the amount has more than 15 integer digits"));
        }
        Ok(Self(value.abs()))
    }

    /// Like [`Amount::parse`], but zero is refused: transfers move something.
    pub fn parse_positive(text: &str, currency: Currency) -> Result<Self, DomainError> {
        let amount = Self::parse(text, currency)?;
        if amount.is_zero() {
            return Err(DomainError::InvalidAmount("the amount must be greater than zero"));
        }
        Ok(amount)
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// `self − value`, or zero when `value` is larger; `value` is a change of balances in
    /// the same currency (a headroom already taken or given back).
    pub fn less(self, value: Decimal) -> Option<Amount> {
        let rest = self.0.checked_sub(value)?;
        Some(Amount(rest.max(Decimal::ZERO)))
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        let diff = self.0.checked_sub(other.0)?;
        (!diff.is_sign_negative() || diff.is_zero()).then_some(Amount(diff.abs()))
    }
}

fn integer_digits(value: Decimal) -> u32 {
    let mut integer = value.trunc().abs();
    let mut digits = 0u32;
    let ten = Decimal::TEN;
    while !integer.is_zero() && digits <= 28 {
        integer = integer.checked_div(ten).unwrap_or(Decimal::ZERO).trunc();
        digits = digits.saturating_add(1);
    }
    digits
}

/// Prints a signed ledger value with exactly the currency's exponent: `"1.50"`, `"-3"`.
pub fn format_decimal(value: Decimal, currency: Currency) -> String {
    let mut rounded = value;
    rounded.rescale(currency.exponent());
    if rounded.is_zero() {
        // Decimal keeps the sign of a negative zero; a ledger never prints "-0.00".
        rounded.set_sign_positive(true);
    }
    rounded.to_string()
}

/// An amount together with its currency, printed with the currency's exponent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Money {
    pub amount: Amount,
    pub currency: Currency,
}

impl Money {
    pub fn parse(text: &str, currency: Currency) -> Result<Self, DomainError> {
        Ok(Self {
            amount: Amount::parse(text, currency)?,
            currency,
        })
    }

    pub fn checked_add(self, other: Money) -> Result<Money, DomainError> {
        if self.currency != other.currency {
            return Err(DomainError::CurrencyMismatch);
        }
        let amount = self.amount.checked_add(other.amount).ok_or(DomainError::Overflow)?;
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_decimal(self.amount.value(), self.currency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn currencies_carry_their_iso_exponent() {
        for (code, exponent) in [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3), ("KWD", 3)] {
            assert_eq!(Currency::parse(code).unwrap().exponent(), exponent, "{code}");
        }
    }

    #[test]
    fn unknown_lower_case_and_unitless_currencies_are_refused() {
        for code in ["usd", "XXX", "ABC", "US", "USDD", "", "XAU", "XTS"] {
            assert_eq!(Currency::parse(code), Err(DomainError::InvalidCurrency), "{code}");
        }
    }

    #[test]
    fn an_amount_may_not_exceed_the_currency_exponent() {
        assert!(Amount::parse("1.5", usd()).is_ok());
        assert!(Amount::parse("1.50", usd()).is_ok());
        assert!(Amount::parse("1.005", usd()).is_err());
        let jpy = Currency::parse("JPY").unwrap();
        assert!(Amount::parse("100", jpy).is_ok());
        assert!(Amount::parse("100.5", jpy).is_err());
        assert!(Amount::parse("100.00", jpy).is_err());
        assert!(Amount::parse("1.500", usd()).is_err());
        let kwd = Currency::parse("KWD").unwrap();
        assert!(Amount::parse("1.125", kwd).is_ok());
        assert!(Amount::parse("1.1255", kwd).is_err());
    }

    #[test]
    fn malformed_amounts_are_refused() {
        for text in [
            "", "-1", "+1", "1e3", " 1", "1 ", "1,00", "1.", ".5", "1..2", "0x10", "NaN", "∞",
        ] {
            assert!(Amount::parse(text, usd()).is_err(), "{text:?}");
        }
    }

    #[test]
    fn amounts_are_bounded_to_fifteen_integer_digits() {
        assert!(Amount::parse("999999999999999.99", usd()).is_ok());
        assert!(Amount::parse("1000000000000000", usd()).is_err());
        assert!(Amount::parse("99999999999999999999999999999999", usd()).is_err());
    }

    #[test]
    fn zero_is_not_a_transfer_amount() {
        assert!(Amount::parse("0", usd()).is_ok());
        assert!(Amount::parse_positive("0.00", usd()).is_err());
    }

    #[test]
    fn values_print_with_the_currency_exponent() {
        let v = Amount::parse("1.5", usd()).unwrap().value();
        assert_eq!(format_decimal(v, usd()), "1.50");
        assert_eq!(format_decimal(Decimal::ZERO, Currency::parse("KWD").unwrap()), "0.000");
        assert_eq!(
            format_decimal(Decimal::new(-5, 0), Currency::parse("JPY").unwrap()),
            "-5"
        );
        assert_eq!(format_decimal(Decimal::new(-0, 2), usd()), "0.00");
    }

    #[test]
    fn money_of_different_currencies_does_not_add() {
        let a = Money::parse("1", usd()).unwrap();
        let b = Money::parse("1", Currency::parse("EUR").unwrap()).unwrap();
        assert_eq!(a.checked_add(b), Err(DomainError::CurrencyMismatch));
    }

    proptest! {
        #[test]
        fn parse_then_format_round_trips(units in 0u64..999_999_999_999_999, cents in 0u32..100) {
            let text = format!("{units}.{cents:02}");
            let amount = Amount::parse(&text, usd()).unwrap();
            prop_assert_eq!(format_decimal(amount.value(), usd()), text);
        }

        #[test]
        fn checked_sub_never_goes_negative(a in 0u64..1_000_000, b in 0u64..1_000_000) {
            let x = Amount::from_decimal(Decimal::from(a), usd()).unwrap();
            let y = Amount::from_decimal(Decimal::from(b), usd()).unwrap();
            match x.checked_sub(y) {
                Some(d) => prop_assert_eq!(d.value(), Decimal::from(a) - Decimal::from(b)),
                None => prop_assert!(a < b),
            }
        }
    }
}
