//! The knowledge base's entries as validated domain values: FAQ entries,
//! policy documents, products with variants, and shipping rules, in the
//! shape of the kb folder format (`docs/kb-format.md`).
//!
//! Parsing happens once, here: ids, languages, prices and stock are checked
//! and a value that exists is valid. The JSON form of each entry is what the
//! store keeps and what the HTTP API takes and returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::KbError;
use crate::store::{KbDocument, KbKind};

/// Languages an entry may be written in (ISO 639-1).
pub const LANGUAGES: [&str; 9] = ["en", "id", "th", "vi", "ms", "tl", "pt", "es", "zh"];

/// A language from [`LANGUAGES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lang(&'static str);

impl Lang {
    pub fn parse(raw: &str) -> Result<Lang, String> {
        let code = raw.trim().to_ascii_lowercase();
        LANGUAGES
            .iter()
            .find(|l| **l == code)
            .map(|l| Lang(l))
            .ok_or_else(|| {
                format!(
                    "unknown language {raw:?}; expected one of {}",
                    LANGUAGES.join(", ")
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl Serialize for Lang {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Lang {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Lang::parse(&raw).map_err(serde::de::Error::custom)
    }
}

const MAX_ID_CHARS: usize = 100;
const MAX_TEXT_CHARS: usize = 20_000;

/// Checks an entry id: lowercase `[a-z0-9-]`, 1 to 100 characters.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_CHARS {
        return Err(format!(
            "id must be 1 to {MAX_ID_CHARS} characters, got {}",
            id.chars().count()
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "id must be lowercase letters, digits and '-', got {id:?}"
        ));
    }
    Ok(())
}

fn check_text(field: &str, text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(format!(
            "{field} must be at most {MAX_TEXT_CHARS} characters, got {chars}"
        ));
    }
    Ok(())
}

fn check_amount(field: &str, value: f64) -> Result<(), String> {
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{field} must be a number >= 0, got {value}"));
    }
    Ok(())
}

fn check_currency(currency: &str) -> Result<(), String> {
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "currency must be an ISO 4217 code such as USD, got {currency:?}"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faq {
    pub id: String,
    pub questions: Vec<String>,
    pub answer: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub lang: Lang,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub id: String,
    pub title: String,
    pub lang: Lang,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Markdown; `## ` headings split it into sections.
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub sku: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Defaults to the product's price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    #[serde(deserialize_with = "stock")]
    pub stock: u32,
}

/// A count that must not be negative, with an error naming the field (a
/// plain `u32` would only say "expected u32").
fn count<'de, D: serde::Deserializer<'de>>(field: &str, d: D) -> Result<u32, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    value
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            serde::de::Error::custom(format!("{field} must be a whole number >= 0, got {value}"))
        })
}

fn stock<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    count("stock", d)
}

fn min_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    count("min_days", d)
}

fn max_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    count("max_days", d)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub price: f64,
    pub currency: String,
    #[serde(default)]
    pub ships_from: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub lang: Lang,
    #[serde(default)]
    pub variants: Vec<Variant>,
}

impl Product {
    /// The entry id: the SKU in lowercase.
    pub fn id(&self) -> String {
        self.sku.to_ascii_lowercase()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingRule {
    /// ISO 3166-1 alpha-2, upper case.
    pub destination: String,
    pub carrier: String,
    pub service: String,
    #[serde(deserialize_with = "min_days")]
    pub min_days: u32,
    #[serde(deserialize_with = "max_days")]
    pub max_days: u32,
    pub cost: f64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_over: Option<f64>,
    #[serde(default)]
    pub notes: String,
}

impl ShippingRule {
    /// The entry id: destination, carrier and service as a slug
    /// (`th-flash-express-standard`).
    pub fn id(&self) -> String {
        slug(&format!(
            "{} {} {}",
            self.destination, self.carrier, self.service
        ))
    }
}

/// Lower-case ASCII letters and digits, other runs collapsed to one '-'.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// One validated knowledge-base entry.
#[derive(Debug, Clone, PartialEq)]
pub enum KbEntry {
    Faq(Faq),
    Policy(Policy),
    Product(Product),
    Shipping(ShippingRule),
}

impl KbEntry {
    pub fn kind(&self) -> KbKind {
        match self {
            KbEntry::Faq(_) => KbKind::Faq,
            KbEntry::Policy(_) => KbKind::Policy,
            KbEntry::Product(_) => KbKind::Product,
            KbEntry::Shipping(_) => KbKind::Shipping,
        }
    }

    pub fn id(&self) -> String {
        match self {
            KbEntry::Faq(f) => f.id.clone(),
            KbEntry::Policy(p) => p.id.clone(),
            KbEntry::Product(p) => p.id(),
            KbEntry::Shipping(s) => s.id(),
        }
    }

    /// Shipping rules carry no language; their generated text is English.
    pub fn lang(&self) -> Lang {
        match self {
            KbEntry::Faq(f) => f.lang,
            KbEntry::Policy(p) => p.lang,
            KbEntry::Product(p) => p.lang,
            KbEntry::Shipping(_) => Lang("en"),
        }
    }

    /// Parses and validates the JSON form of an entry of `kind`.
    pub fn from_json(kind: KbKind, value: serde_json::Value) -> Result<KbEntry, String> {
        let err = |e: serde_json::Error| e.to_string();
        let entry = match kind {
            KbKind::Faq => KbEntry::Faq(serde_json::from_value(value).map_err(err)?),
            KbKind::Policy => KbEntry::Policy(serde_json::from_value(value).map_err(err)?),
            KbKind::Product => KbEntry::Product(serde_json::from_value(value).map_err(err)?),
            KbKind::Shipping => KbEntry::Shipping(serde_json::from_value(value).map_err(err)?),
        };
        entry.validate()?;
        Ok(entry)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            KbEntry::Faq(f) => serde_json::to_value(f),
            KbEntry::Policy(p) => serde_json::to_value(p),
            KbEntry::Product(p) => serde_json::to_value(p),
            KbEntry::Shipping(s) => serde_json::to_value(s),
        };
        value.expect("entries serialise to JSON")
    }

    pub fn to_document(&self) -> KbDocument {
        KbDocument {
            kind: self.kind(),
            id: self.id(),
            lang: self.lang().as_str().to_owned(),
            body: self.to_json(),
        }
    }

    /// Reads back what the store holds.
    pub fn from_document(doc: &KbDocument) -> Result<KbEntry, KbError> {
        KbEntry::from_json(doc.kind, doc.body.clone()).map_err(|reason| KbError::Corrupt {
            reason: format!("stored {} entry {:?}: {reason}", doc.kind, doc.id),
        })
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            KbEntry::Faq(f) => {
                check_id(&f.id)?;
                if f.questions.is_empty() {
                    return Err("questions must hold at least one question".into());
                }
                for (i, q) in f.questions.iter().enumerate() {
                    check_text(&format!("questions[{i}]"), q)?;
                }
                check_text("answer", &f.answer)
            }
            KbEntry::Policy(p) => {
                check_id(&p.id)?;
                check_text("title", &p.title)?;
                check_text("body", &p.body)
            }
            KbEntry::Product(p) => {
                check_sku("sku", &p.sku)?;
                check_text("name", &p.name)?;
                check_amount("price", p.price)?;
                check_currency(&p.currency)?;
                let mut seen = std::collections::HashSet::new();
                for (i, v) in p.variants.iter().enumerate() {
                    check_sku(&format!("variants[{i}].sku"), &v.sku)?;
                    if !seen.insert(v.sku.to_ascii_lowercase()) {
                        return Err(format!("variants[{i}].sku {:?} appears twice", v.sku));
                    }
                    if let Some(price) = v.price {
                        check_amount(&format!("variants[{i}].price"), price)?;
                    }
                }
                Ok(())
            }
            KbEntry::Shipping(s) => {
                if s.destination.len() != 2
                    || !s.destination.bytes().all(|b| b.is_ascii_uppercase())
                {
                    return Err(format!(
                        "destination must be an ISO 3166-1 alpha-2 code such as TH, got {:?}",
                        s.destination
                    ));
                }
                check_text("carrier", &s.carrier)?;
                check_text("service", &s.service)?;
                if s.min_days > s.max_days {
                    return Err(format!(
                        "min_days ({}) must be <= max_days ({})",
                        s.min_days, s.max_days
                    ));
                }
                check_amount("cost", s.cost)?;
                check_currency(&s.currency)?;
                if let Some(free_over) = s.free_over {
                    check_amount("free_over", free_over)?;
                }
                Ok(())
            }
        }
    }
}

fn check_sku(field: &str, sku: &str) -> Result<(), String> {
    if sku.is_empty()
        || sku.len() > MAX_ID_CHARS
        || !sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "{field} must be 1 to {MAX_ID_CHARS} letters, digits, '-' or '_', got {sku:?}"
        ));
    }
    Ok(())
}

/// English names of the destination countries, so that "shipping to
/// Thailand" finds the rule for `TH`.
pub fn country_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "TH" => "Thailand",
        "ID" => "Indonesia",
        "VN" => "Vietnam",
        "MY" => "Malaysia",
        "PH" => "Philippines",
        "SG" => "Singapore",
        "BR" => "Brazil",
        "MX" => "Mexico",
        "CN" => "China",
        "TW" => "Taiwan",
        "HK" => "Hong Kong",
        "US" => "United States",
        "GB" => "United Kingdom",
        "AU" => "Australia",
        "JP" => "Japan",
        "KR" => "South Korea",
        "CO" => "Colombia",
        "CL" => "Chile",
        "ES" => "Spain",
        "PT" => "Portugal",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn languages_outside_the_list_are_named() {
        assert_eq!(Lang::parse("TH").unwrap().as_str(), "th");
        let err = Lang::parse("xx").unwrap_err();
        assert!(err.contains("\"xx\"") && err.contains("en, id"), "{err}");
    }

    #[test]
    fn ids_are_lowercase_slugs() {
        assert!(check_id("returns-window").is_ok());
        assert!(check_id("Returns").unwrap_err().contains("\"Returns\""));
        assert!(check_id("").is_err());
        assert_eq!(
            slug("TH Flash Express / Standard"),
            "th-flash-express-standard"
        );
    }

    #[test]
    fn entries_round_trip_through_json() {
        let faq = json!({"id": "a", "questions": ["q?"], "answer": "x", "lang": "en"});
        let entry = KbEntry::from_json(KbKind::Faq, faq.clone()).unwrap();
        assert_eq!(entry.to_json(), faq);
        let product = json!({"sku": "TEE-1", "name": "Tee", "price": 5.0, "currency": "USD",
            "lang": "en", "variants": [{"sku": "TEE-1-RED", "options": {"colour": "red"}, "stock": 3}]});
        let entry = KbEntry::from_json(KbKind::Product, product).unwrap();
        assert_eq!(entry.id(), "tee-1");
        let again = KbEntry::from_json(KbKind::Product, entry.to_json()).unwrap();
        assert_eq!(again, entry);
    }

    #[test]
    fn invalid_entries_say_what_is_wrong() {
        let cases = [
            (
                KbKind::Faq,
                json!({"id": "a", "questions": [], "answer": "x", "lang": "en"}),
                "questions",
            ),
            (
                KbKind::Faq,
                json!({"id": "a", "questions": ["q"], "answer": "x", "lang": "xx"}),
                "unknown language",
            ),
            (
                KbKind::Faq,
                json!({"id": "a", "questions": ["q"], "answer": " ", "lang": "en"}),
                "answer must not be empty",
            ),
            (
                KbKind::Faq,
                json!({"id": "a", "question": ["q"], "answer": "x", "lang": "en"}),
                "unknown field",
            ),
            (
                KbKind::Product,
                json!({"sku": "A", "name": "n", "price": -1.0, "currency": "USD", "lang": "en"}),
                "price",
            ),
            (
                KbKind::Product,
                json!({"sku": "A", "name": "n", "price": 1.0, "currency": "USD", "lang": "en",
                "variants": [{"sku": "A-1", "stock": -2}]}),
                "stock",
            ),
            (
                KbKind::Product,
                json!({"sku": "A", "name": "n", "price": 1.0, "currency": "USD", "lang": "en",
                "variants": [{"sku": "A-1", "stock": 1}, {"sku": "a-1", "stock": 1}]}),
                "appears twice",
            ),
            (
                KbKind::Shipping,
                json!({"destination": "Thailand", "carrier": "c", "service": "s",
                "min_days": 1, "max_days": 2, "cost": 1.0, "currency": "USD"}),
                "destination",
            ),
            (
                KbKind::Shipping,
                json!({"destination": "TH", "carrier": "c", "service": "s",
                "min_days": 5, "max_days": 2, "cost": 1.0, "currency": "USD"}),
                "min_days",
            ),
        ];
        for (kind, value, expected) in cases {
            let err = KbEntry::from_json(kind, value.clone()).unwrap_err();
            assert!(err.contains(expected), "{value}: {err}");
        }
    }
}
