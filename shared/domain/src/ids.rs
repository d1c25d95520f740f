//! Server-generated identifiers: a type prefix and a ULID in lower case, so ids are
//! globally unique, sort by creation time and say what they name (`acct_01j…`).

use std::fmt;

use ulid::Ulid;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// Wraps a freshly generated ULID; generation (clock and randomness) belongs
            /// to the caller so the domain stays deterministic.
            pub fn from_ulid(ulid: Ulid) -> Self {
                Self(ulid)
            }

            /// Parses the wire form. Anything else, including upper case, is `None`.
            pub fn parse(text: &str) -> Option<Self> {
                let rest = text.strip_prefix($prefix)?;
                if rest.len() != 26 || !rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                    return None;
                }
                Ulid::from_string(rest).ok().map(Self)
            }

            pub fn ulid(&self) -> Ulid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buffer = [0; ulid::ULID_LEN];
                let text = self.0.array_to_str(&mut buffer);
                text.make_ascii_lowercase();
                f.write_str($prefix)?;
                f.write_str(text)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

prefixed_id!(
    /// An account of a tenant's ledger.
    AccountId,
    "acct_"
);
prefixed_id!(
    /// A transfer between two accounts.
    TransferId,
    "tr_"
);
prefixed_id!(
    /// A payment to a bank through a connector.
    PaymentId,
    "pay_"
);
prefixed_id!(
    /// A batch of linked transfers, committed all or nothing.
    BatchId,
    "bat_"
);
prefixed_id!(
    /// A received webhook event.
    EventId,
    "evt_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_prefix_and_lower_case_ulid() {
        for ulid in [
            Ulid::nil(),
            Ulid::from(u128::MAX),
            Ulid::from_parts(1_700_000_000_123, 0xdead_beef),
        ] {
            let id = AccountId::from_ulid(ulid);
            assert_eq!(
                id.to_string(),
                format!("acct_{}", ulid.to_string().to_ascii_lowercase())
            );
            assert_eq!(AccountId::parse(&id.to_string()), Some(id));
        }
    }

    #[test]
    fn ids_round_trip_through_their_wire_form() {
        let id = AccountId::from_ulid(Ulid::from_parts(1_700_000_000_000, 42));
        let text = id.to_string();
        assert!(text.starts_with("acct_"));
        assert_eq!(text.len(), 5 + 26);
        assert_eq!(AccountId::parse(&text), Some(id));
    }

    #[test]
    fn foreign_prefixes_and_garbage_are_refused() {
        let id = AccountId::from_ulid(Ulid::from_parts(1_700_000_000_000, 42)).to_string();
        assert_eq!(TransferId::parse(&id), None);
        assert_eq!(AccountId::parse(&id.to_uppercase()), None);
        assert_eq!(AccountId::parse("acct_"), None);
        assert_eq!(AccountId::parse("acct_../../etc/passwd"), None);
        assert_eq!(AccountId::parse(&format!("{id}0")), None);
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let older = TransferId::from_ulid(Ulid::from_parts(1_000, u128::MAX >> 48));
        let newer = TransferId::from_ulid(Ulid::from_parts(1_001, 0));
        assert!(older.to_string() < newer.to_string());
    }
}
