//! Account holders: personal and bank details, validated here, stored only sealed, and
//! shown masked unless a caller with `pii:read` asks to reveal them.

use std::fmt;

use crate::error::DomainError;
use crate::secret::Secret;

pub const HOLDER_NAME_MAX_CHARS: usize = 140;

/// A holder's details in plaintext. Every field is a [`Secret`], so `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: Secret<String>,
    pub account_number: Option<Secret<String>>,
    pub routing_number: Option<Secret<String>>,
    pub iban: Option<Secret<String>>,
}

impl fmt::Debug for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Holder(***)")
    }
}

/// What may be shown without `pii:read`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskedHolder {
    pub name_initials: String,
    pub account_number_last4: Option<String>,
    pub iban_last4: Option<String>,
}

impl Holder {
    /// Validates and normalises holder details. Errors name the field, never its value.
    pub fn parse(
        name: String,
        account_number: Option<String>,
        routing_number: Option<String>,
        iban: Option<String>,
    ) -> Result<Self, DomainError> {
        let name = Secret::new(name);
        let chars = name.expose().chars().count();
        if chars == 0 || chars > HOLDER_NAME_MAX_CHARS || name.expose().chars().any(char::is_control) {
            return Err(DomainError::invalid_request(format!(
                "holder.name is 1 to {HOLDER_NAME_MAX_CHARS} printable characters"
            )));
        }
        let account_number = account_number.map(Secret::new);
        if let Some(number) = &account_number {
            let n = number.expose();
            if !(4..=34).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(DomainError::invalid_request(
                    "holder.account_number is 4 to 34 letters and digits",
                ));
            }
        }
        let routing_number = routing_number.map(Secret::new);
        if let Some(routing) = &routing_number {
            if !aba_routing_number_is_valid(routing.expose()) {
                return Err(DomainError::invalid_request(
                    "holder.routing_number is not a valid ABA routing number",
                ));
            }
        }
        let iban = match iban {
            None => None,
            Some(raw) => {
                let raw = Secret::new(raw);
                let normalised: String = raw
                    .expose()
                    .chars()
                    .filter(|c| *c != ' ')
                    .map(|c| c.to_ascii_uppercase())
                    .collect();
                let normalised = Secret::new(normalised);
                if !iban_is_valid(normalised.expose()) {
                    return Err(DomainError::invalid_request("holder.iban is not a valid IBAN"));
                }
                Some(normalised)
            }
        };
        Ok(Self {
            name,
            account_number,
            routing_number,
            iban,
        })
    }

    pub fn masked(&self) -> MaskedHolder {
        let initials: String = self
            .name
            .expose()
            .split_whitespace()
            .filter_map(|word| word.chars().next())
            .take(4)
            .flat_map(|c| [c, '.'])
            .collect();
        let last4 = |s: &Secret<String>| {
            let text = s.expose();
            text[text.len().saturating_sub(4)..].to_owned()
        };
        MaskedHolder {
            name_initials: initials,
            account_number_last4: self.account_number.as_ref().map(last4),
            iban_last4: self.iban.as_ref().map(last4),
        }
    }
}

/// ABA routing number: nine digits whose weighted sum (3, 7, 1, ...) is a multiple of 10.
pub fn aba_routing_number_is_valid(text: &str) -> bool {
    if text.len() != 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = text
        .bytes()
        .zip([3, 7, 1, 3, 7, 1, 3, 7, 1])
        .map(|(b, w)| char::from(b).to_digit(10).unwrap_or(0).wrapping_mul(w))
        .fold(0u32, u32::wrapping_add);
    // Nine digits times weights of at most 7: the sum stays far below u32::MAX.
    sum % 10 == 0
}

/// IBAN (ISO 13616): country code, two check digits, up to 30 letters and digits, and
/// the whole rearranged string ≡ 1 (mod 97).
pub fn iban_is_valid(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !(15..=34).contains(&bytes.len())
        || !bytes[..2].iter().all(u8::is_ascii_uppercase)
        || !bytes[2..4].iter().all(u8::is_ascii_digit)
        || !bytes.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return false;
    }
    // Letters count as 10 to 35 (base 36). The remainder stays below 97, so no step
    // comes near u32::MAX.
    let mut remainder: u32 = 0;
    for &b in bytes[4..].iter().chain(&bytes[..4]) {
        let value = char::from(b).to_digit(36).unwrap_or(0);
        let shift = if value >= 10 { 100 } else { 10 };
        remainder = remainder.wrapping_mul(shift).wrapping_add(value) % 97;
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(
        name: &str,
        acct: Option<&str>,
        routing: Option<&str>,
        iban: Option<&str>,
    ) -> Result<Holder, DomainError> {
        Holder::parse(
            name.into(),
            acct.map(Into::into),
            routing.map(Into::into),
            iban.map(Into::into),
        )
    }

    #[test]
    fn ibans_are_checked_by_mod_97() {
        assert!(iban_is_valid("GB82WEST12345698765432"));
        assert!(iban_is_valid("DE89370400440532013000"));
        assert!(!iban_is_valid("GB82WEST12345698765433"));
        assert!(!iban_is_valid("GB82"));
        assert!(holder("Ada", None, None, Some("gb82 west 1234 5698 7654 32")).is_ok());
    }

    #[test]
    fn routing_numbers_are_checked_by_the_aba_checksum() {
        assert!(aba_routing_number_is_valid("011000015"));
        assert!(aba_routing_number_is_valid("021000021"));
        assert!(!aba_routing_number_is_valid("021000022"));
        assert!(!aba_routing_number_is_valid("02100002"));
    }

    #[test]
    fn holders_mask_to_initials_and_last_four() {
        let h = holder(
            "Ada King Lovelace",
            Some("000123456789"),
            Some("021000021"),
            Some("GB82WEST12345698765432"),
        )
        .unwrap();
        assert_eq!(
            h.masked(),
            MaskedHolder {
                name_initials: "A.K.L.".into(),
                account_number_last4: Some("6789".into()),
                iban_last4: Some("5432".into()),
            }
        );
        assert_eq!(format!("{h:?}"), "Holder(***)");
    }

    #[test]
    fn errors_never_echo_the_rejected_value() {
        let err = holder("Ada", Some("12"), None, None).unwrap_err();
        assert!(!err.to_string().contains("12 "));
        assert!(holder("", None, None, None).is_err());
        assert!(holder("Ada", None, Some("123456789"), None).is_err());
    }
}
