//! The validated vocabulary of kedai: identifiers, platforms, inbound
//! messages and replies. Wire formats are parsed into these types once, at
//! the edge (`http/`, `cli`), and the core accepts nothing else.
//!
//! This module does no I/O and knows nothing of HTTP or SQL.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod market;
pub use market::{CountryCode, CurrencyCode, LanguageCode, Market};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered identifier.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A seller organisation; every other record belongs to exactly one.
    TenantId
);
uuid_id!(ShopId);
uuid_id!(BuyerId);
uuid_id!(ConversationId);
uuid_id!(MessageId);
uuid_id!(OrderId);
uuid_id!(TokenId);
uuid_id!(JobId);
uuid_id!(
    /// One routing decision of the reply pipeline.
    DecisionId
);

/// Why a value from outside could not become a domain value. The message
/// names the field and the bad value's problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    pub field: &'static str,
    pub problem: String,
}

impl ValidationError {
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Shopee,
    Lazada,
    Tiktok,
    Web,
    Generic,
}

impl Platform {
    pub const ALL: [Platform; 5] = [
        Platform::Shopee,
        Platform::Lazada,
        Platform::Tiktok,
        Platform::Web,
        Platform::Generic,
    ];

    /// Platforms kedai talks to through a channel adapter (webhooks in,
    /// replies out); `generic` shops only use the HTTP API.
    pub fn has_channel(self) -> bool {
        !matches!(self, Platform::Generic)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Shopee => "shopee",
            Platform::Lazada => "lazada",
            Platform::Tiktok => "tiktok",
            Platform::Web => "web",
            Platform::Generic => "generic",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    "platform",
                    format!("must be one of shopee, lazada, tiktok, web, generic; got {s:?}"),
                )
            })
    }
}

/// Checks an identifier that comes from outside (a shop handle, a buyer id
/// on a platform, a message id on a platform): 1..=max printable characters.
pub fn checked_key(field: &'static str, raw: &str, max: usize) -> Result<String, ValidationError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    let len = value.chars().count();
    if len > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters, got {len}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                checked_key($field, raw, $max).map(Self)
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
    };
}

key_type!(
    /// A shop's handle within its tenant: the platform's shop id or a name
    /// the seller chose (`demo-shopee`).
    ShopKey,
    "shop",
    128
);
key_type!(
    /// The id a platform gave a message; (shop, external id) identifies a
    /// delivery, so redeliveries are recognised.
    ExternalMessageId,
    "external_id",
    256
);
key_type!(
    /// The id a platform gives a buyer.
    PlatformBuyerId,
    "buyer.id",
    256
);
key_type!(
    /// A tenant's unique, human-chosen name.
    TenantName,
    "name",
    128
);

/// Message text that has passed validation and had card numbers redacted.
/// Only this type is ever stored as message text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MessageText(String);

/// What counts as an acceptable message.
#[derive(Debug, Clone, Copy)]
pub struct TextLimits {
    pub max_chars: usize,
}

impl MessageText {
    pub fn parse(raw: &str, limits: TextLimits) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new("text", "must not be empty"));
        }
        let len = trimmed.chars().count();
        if len > limits.max_chars {
            return Err(ValidationError::new(
                "text",
                format!("must be at most {} characters, got {len}", limits.max_chars),
            ));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ValidationError::new(
                "text",
                "must not contain control characters other than newlines and tabs",
            ));
        }
        Ok(Self(redact_card_numbers(trimmed)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Text read back from the store, which only ever holds validated text.
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }
}

/// The redaction that replaces a payment card number.
pub const CARD_REDACTION: &str = "[card number removed]";

/// Replaces every run of 13 to 19 digits (spaces or dashes allowed between
/// them) that passes the Luhn check with [`CARD_REDACTION`]. Order and
/// tracking numbers rarely pass Luhn at those lengths; card numbers always do.
pub fn redact_card_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            if let Some(end) = card_number_end(&chars[i..]) {
                out.push_str(CARD_REDACTION);
                i += end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// If a Luhn-valid card number starts at `chars[0]`, the index just past it.
fn card_number_end(chars: &[char]) -> Option<usize> {
    let mut digits = Vec::with_capacity(19);
    let mut best = None;
    let mut i = 0;
    while i < chars.len() && digits.len() < 19 {
        let c = chars[i];
        if let Some(d) = c.to_digit(10) {
            digits.push(d);
            i += 1;
            let next_is_digit = chars.get(i).is_some_and(|c| c.is_ascii_digit());
            let next_is_alnum = chars.get(i).is_some_and(|c| c.is_alphanumeric());
            if digits.len() >= 13 && !next_is_digit && !next_is_alnum && luhn_valid(&digits) {
                best = Some(i);
            }
        } else if (c == ' ' || c == '-') && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        } else {
            break;
        }
    }
    best
}

fn luhn_valid(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The buyer as a channel names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyerRef {
    pub id: PlatformBuyerId,
    pub name: Option<String>,
}

/// A message as it enters kedai from a channel: usually a buyer's, but a
/// marketplace also reports what the seller wrote in its own app, which is
/// stored as an agent's message and never processed as a buyer's.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub shop: ShopKey,
    pub external_id: ExternalMessageId,
    /// The buyer the conversation is with (the recipient when the seller
    /// wrote).
    pub buyer: BuyerRef,
    /// The text; for non-text messages a readable description of what the
    /// attachment carries ([`Attachment::describe`]).
    pub text: MessageText,
    /// When the sender sent it, by the platform's clock; conversations are
    /// read in this order.
    pub sent_at: DateTime<Utc>,
    pub sender: Sender,
    /// What a non-text message (image, sticker, product or order card)
    /// carries; `None` for text.
    pub attachment: Option<Attachment>,
}

/// Who wrote an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    Buyer,
    /// The seller or their staff, writing from the marketplace's own app.
    Seller {
        name: Option<String>,
    },
}

/// What a message is, besides text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Text,
    Image,
    Sticker,
    Video,
    /// A product card.
    Product,
    /// An order card.
    Order,
    Voucher,
    /// Anything else a platform sends (system cards, unknown types).
    Other,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::Sticker => "sticker",
            MessageKind::Video => "video",
            MessageKind::Product => "product",
            MessageKind::Order => "order",
            MessageKind::Voucher => "voucher",
            MessageKind::Other => "other",
        }
    }
}

/// The most fields an attachment keeps, and their longest key and value.
const ATTACHMENT_MAX_FIELDS: usize = 16;
const ATTACHMENT_MAX_KEY: usize = 64;
const ATTACHMENT_MAX_VALUE: usize = 2048;

/// What a non-text message carries: a kind and a few named values (`url`,
/// `product_id`, `order_id`, `sticker_id`, ...), each checked: no control
/// characters, bounded sizes. Shown to agents as data, never interpreted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub kind: MessageKind,
    pub fields: std::collections::BTreeMap<String, String>,
}

impl Attachment {
    pub fn new(
        kind: MessageKind,
        fields: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Attachment, ValidationError> {
        if kind == MessageKind::Text {
            return Err(ValidationError::new(
                "attachment.kind",
                "a text message has no attachment",
            ));
        }
        let mut kept = std::collections::BTreeMap::new();
        for (key, value) in fields {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            checked_key("attachment.key", &key, ATTACHMENT_MAX_KEY)?;
            checked_key("attachment.value", value, ATTACHMENT_MAX_VALUE)?;
            kept.insert(key, value.to_owned());
            if kept.len() > ATTACHMENT_MAX_FIELDS {
                return Err(ValidationError::new(
                    "attachment",
                    format!("must have at most {ATTACHMENT_MAX_FIELDS} fields"),
                ));
            }
        }
        Ok(Attachment { kind, fields: kept })
    }

    /// A one-line description for the message's text, e.g. `[image]
    /// https://…` or `[order card] 220810QSK8S7BX`.
    pub fn describe(&self) -> String {
        let label = match self.kind {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::Sticker => "sticker",
            MessageKind::Video => "video",
            MessageKind::Product => "product card",
            MessageKind::Order => "order card",
            MessageKind::Voucher => "voucher",
            MessageKind::Other => "attachment",
        };
        let detail = ["order_id", "product_id", "item_id", "url", "voucher_id"]
            .iter()
            .find_map(|key| self.fields.get(*key));
        match detail {
            Some(detail) => format!("[{label}] {detail}"),
            None => format!("[{label}]"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
    /// Visible to agents only.
    Note,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Author {
    Buyer,
    Ai,
    Agent,
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConversationStatus {
    /// Waiting for kedai or an agent.
    Open,
    /// Handed to a human, who has not answered yet.
    Pending,
    Resolved,
}

/// What the reply pipeline did with a buyer message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The AI's answer was sent to the buyer.
    Send,
    /// A draft and a summary wait for a human, who sends it.
    Draft,
    /// Handed to a human now, with the handoff packet.
    Handoff,
    /// Shadow mode: recorded and scored; people answer elsewhere.
    Observe,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Send => "send",
            Action::Draft => "draft",
            Action::Handoff => "handoff",
            Action::Observe => "observe",
        }
    }
}

/// Who answers a conversation now. The AI holds every conversation until a
/// person takes it over (from the workbench, or by replying); while a human
/// holds it the AI may prepare drafts but never sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Custody {
    Ai,
    Human,
}

/// Which layer handled (or is handling) a conversation: 1 AI answers,
/// 2 AI drafts for a human, 3 a human now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Layer(u8);

impl Layer {
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Layer {
    type Error = ValidationError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        if (1..=3).contains(&value) {
            Ok(Layer(value))
        } else {
            Err(ValidationError::new(
                "layer",
                format!("must be 1, 2 or 3, got {value}"),
            ))
        }
    }
}

impl From<Layer> for u8 {
    fn from(layer: Layer) -> u8 {
        layer.0
    }
}

/// A message written by an agent, an integration or kedai itself.
#[derive(Debug, Clone)]
pub struct NewReply {
    pub text: MessageText,
    pub direction: Direction,
    pub author: Author,
    pub author_name: Option<String>,
    /// Optional caller-chosen id that makes the reply idempotent.
    pub external_id: Option<ExternalMessageId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TextLimits = TextLimits { max_chars: 100 };

    #[test]
    fn card_numbers_are_redacted_with_or_without_separators() {
        for text in [
            "my card 4111111111111111 please",
            "my card 4111 1111 1111 1111 please",
            "my card 4111-1111-1111-1111 please",
        ] {
            assert_eq!(
                redact_card_numbers(text),
                format!("my card {CARD_REDACTION} please"),
                "{text}"
            );
        }
    }

    #[test]
    fn order_numbers_and_phone_numbers_are_kept() {
        for text in [
            "order 220918ABCD1234 where?",
            "order 4111111111111112 where?", // fails Luhn
            "call me at +62 812 3456 7890",
            "tracking SPXID012345678901",
            "12345",
        ] {
            assert_eq!(redact_card_numbers(text), text);
        }
    }

    #[test]
    fn non_ascii_text_survives_redaction() {
        let text = "สวัสดีค่ะ บัตร 5555555555554444 ครับ 😀";
        assert_eq!(
            redact_card_numbers(text),
            format!("สวัสดีค่ะ บัตร {CARD_REDACTION} ครับ 😀")
        );
    }

    #[test]
    fn text_validation_names_the_problem() {
        assert!(MessageText::parse("   ", LIMITS)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let long = "a".repeat(101);
        assert_eq!(
            MessageText::parse(&long, LIMITS).unwrap_err().to_string(),
            "text: must be at most 100 characters, got 101"
        );
        assert!(MessageText::parse("a\u{0}b", LIMITS).is_err());
        assert_eq!(
            MessageText::parse(" hi\nthere ", LIMITS).unwrap().as_str(),
            "hi\nthere"
        );
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        let thai = "ก".repeat(100);
        assert!(MessageText::parse(&thai, LIMITS).is_ok());
    }

    #[test]
    fn keys_reject_empty_and_control_characters() {
        assert!(ShopKey::parse("").is_err());
        assert!(ShopKey::parse("a\tb").is_err());
        assert_eq!(ShopKey::parse(" demo-web ").unwrap().as_str(), "demo-web");
        assert!(ExternalMessageId::parse(&"x".repeat(257)).is_err());
    }

    #[test]
    fn platforms_round_trip() {
        for p in Platform::ALL {
            assert_eq!(p.as_str().parse::<Platform>().unwrap(), p);
        }
        assert!("ebay".parse::<Platform>().is_err());
    }

    #[test]
    fn layers_are_one_to_three() {
        assert!(Layer::try_from(0).is_err());
        assert_eq!(Layer::try_from(3).unwrap().get(), 3);
        assert!(Layer::try_from(4).is_err());
    }
}
