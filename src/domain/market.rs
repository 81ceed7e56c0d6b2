//! Where a shop sells: its country, currency and language. Every marketplace
//! shop has them (a Shopee shop is Shopee Thailand or Shopee Philippines), and
//! the pipeline uses them to rank knowledge (the shop's own country's shipping
//! rule first) and to ask rather than guess when a question could be about
//! two markets.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValidationError;

macro_rules! code_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $len:expr, $upper:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                let value = raw.trim();
                let ok = $len.contains(&value.len()) && value.chars().all(|c| c.is_ascii_alphabetic());
                if !ok {
                    return Err(ValidationError::new(
                        $field,
                        format!(concat!("must be ", $what, ", got {:?}"), raw),
                    ));
                }
                Ok(Self(if $upper {
                    value.to_ascii_uppercase()
                } else {
                    value.to_ascii_lowercase()
                }))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(raw: String) -> Result<Self, ValidationError> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(code: $name) -> String {
                code.0
            }
        }
    };
}

code_type!(
    /// ISO 3166-1 alpha-2 country code, upper case (`TH`, `PH`).
    CountryCode,
    "country",
    2..=2,
    true,
    "a two-letter ISO 3166-1 country code such as TH"
);
code_type!(
    /// ISO 4217 currency code, upper case (`THB`, `PHP`).
    CurrencyCode,
    "currency",
    3..=3,
    true,
    "a three-letter ISO 4217 currency code such as THB"
);
code_type!(
    /// ISO 639-1 (or 639-3) language code, lower case (`th`, `fil`).
    LanguageCode,
    "language",
    2..=3,
    false,
    "an ISO 639 language code such as th"
);

/// A shop's market. Every part is optional: a web shop may sell everywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Market {
    pub country: Option<CountryCode>,
    pub currency: Option<CurrencyCode>,
    pub language: Option<LanguageCode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_normalised_and_checked() {
        assert_eq!(CountryCode::parse(" th ").unwrap().as_str(), "TH");
        assert_eq!(CurrencyCode::parse("php").unwrap().as_str(), "PHP");
        assert_eq!(LanguageCode::parse("FIL").unwrap().as_str(), "fil");
        for bad in ["", "T", "THA", "T1", "ไท"] {
            assert!(CountryCode::parse(bad).is_err(), "{bad:?}");
        }
        assert!(CurrencyCode::parse("BAHT").is_err());
        assert!(LanguageCode::parse("english").is_err());
        let err = CountryCode::parse("Thailand").unwrap_err().to_string();
        assert!(err.contains("country") && err.contains("Thailand"), "{err}");
    }
}
