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
uuid_id!(
    /// A person who logs in to the workbench.
    UserId
);
uuid_id!(
    /// A human's answer to a buyer's binding request.
    ApprovalId
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

    /// The name people know the platform by.
    pub fn display_name(self) -> &'static str {
        match self {
            Platform::Shopee => "Shopee",
            Platform::Lazada => "Lazada",
            Platform::Tiktok => "TikTok Shop",
            Platform::Web => "web chat",
            Platform::Generic => "API",
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
    /// Validates `raw` and redacts card numbers. Bidi embeddings, overrides
    /// and isolates (U+202A-U+202E, U+2066-U+2069) are removed rather than
    /// refused: a marketplace message must be stored, not bounced, and
    /// those characters serve only to make the text read differently from
    /// how it is stored (none of the languages kedai serves is written
    /// right to left). Other invisible characters (zero-width joiners in
    /// emoji, for instance) are kept; every check reads the folded view
    /// (`text::fold`), where they are gone.
    pub fn parse(raw: &str, limits: TextLimits) -> Result<Self, ValidationError> {
        let visible: String = raw
            .chars()
            .filter(|c| !crate::text::is_bidi_control(*c))
            .collect();
        let trimmed = visible.trim();
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

/// Replaces every card number in `text` with [`CARD_REDACTION`]: a run of
/// 13 to 19 decimal digits of any script (ASCII, fullwidth, Thai,
/// Arabic-Indic...) that passes the Luhn check, whose groups may be
/// separated by any short run of white space of any kind (no-break and thin
/// spaces, several spaces, line breaks), invisible characters, and at most
/// two dashes or dots (`4111.1111.1111.1111`, `4111 - 1111 - ...`). Order
/// and tracking numbers rarely pass Luhn at those lengths and most carry
/// letters, which end a run; card numbers always pass.
pub fn redact_card_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_number =
            crate::text::digit_value(chars[i]).is_some() && (i == 0 || !is_word_char(chars[i - 1]));
        if starts_number {
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

/// Letters and digits that make a digit run part of a longer word (an
/// order number like `SPX123...`): ASCII ones and their fullwidth forms,
/// and digits of any script. Other scripts' letters do not: Thai is
/// written without spaces, so `บัตร4111...` still starts a number.
fn is_word_char(c: char) -> bool {
    if crate::text::digit_value(c).is_some() {
        return true;
    }
    let plain = if ('\u{FF01}'..='\u{FF5E}').contains(&c) {
        char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)
    } else {
        c
    };
    plain.is_ascii_alphanumeric()
}

/// Longest run of separators allowed between two digits of one card
/// number, and the most dashes or dots in it.
const CARD_GAP_CHARS: usize = 6;
const CARD_GAP_MARKS: usize = 2;

/// If a Luhn-valid card number starts at `chars[0]`, the index just past it.
fn card_number_end(chars: &[char]) -> Option<usize> {
    let mut digits = Vec::with_capacity(19);
    let mut best = None;
    let mut i = 0;
    while i < chars.len() && digits.len() < 19 {
        if let Some(d) = crate::text::digit_value(chars[i]) {
            digits.push(d);
            i += 1;
            let ends_word = chars.get(i).is_none_or(|c| !is_word_char(*c));
            if digits.len() >= 13 && ends_word && luhn_valid(&digits) {
                best = Some(i);
            }
            continue;
        }
        match card_gap(&chars[i..]) {
            Some(gap) => i += gap,
            None => break,
        }
    }
    best
}

/// The length of the separator run at the start of `chars` when a digit
/// follows it.
fn card_gap(chars: &[char]) -> Option<usize> {
    let mut marks = 0;
    for (n, &c) in chars.iter().enumerate().take(CARD_GAP_CHARS + 1) {
        if crate::text::digit_value(c).is_some() {
            return (n > 0).then_some(n);
        }
        if n == CARD_GAP_CHARS {
            return None;
        }
        if is_card_mark(c) {
            marks += 1;
            if marks > CARD_GAP_MARKS {
                return None;
            }
        } else if !(c.is_whitespace() || crate::text::is_ignorable(c)) {
            return None;
        }
    }
    None
}

/// Dashes and dots people put between the groups of a card number.
fn is_card_mark(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    matches!(
        c,
        '.' | '\u{FF0E}' | '\u{00B7}' | '\u{30FB}' | '_' | '\u{2212}'
    ) || c.general_category() == GeneralCategory::DashPunctuation
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
    fn m10_card_numbers_in_every_notation_are_redacted() {
        let table: &[(&str, &str)] = &[
            (
                "fullwidth digits and spaces",
                "４１１１ １１１１ １１１１ １１１１",
            ),
            (
                "fullwidth digits, ideographic spaces",
                "４１１１\u{3000}１１１１\u{3000}１１１１\u{3000}１１１１",
            ),
            ("no-break spaces", "4111\u{A0}1111\u{A0}1111\u{A0}1111"),
            (
                "thin and narrow spaces",
                "5555\u{2009}5555\u{202F}5555\u{2009}4444",
            ),
            ("double spaces", "4111  1111  1111  1111"),
            ("dots", "4111.1111.1111.1111"),
            ("spaced dashes", "4111 - 1111 - 1111 - 1111"),
            ("en and em dashes", "4111–1111—1111–1111"),
            (
                "fullwidth hyphens",
                "４１１１－１１１１－１１１１－１１１１",
            ),
            (
                "zero-width spaces",
                "4111\u{200B}1111\u{200B}1111\u{200B}1111",
            ),
            ("a line break", "4111 1111\n1111 1111"),
            ("Thai digits", "๔๑๑๑ ๑๑๑๑ ๑๑๑๑ ๑๑๑๑"),
            ("Arabic-Indic digits", "٤١١١١١١١١١١١١١١١"),
            ("mixed scripts", "4111 １１１１ ๑๑๑๑ 1111"),
            ("American Express groups", "3782 822463 10005"),
            ("Discover, no separators", "6011111111111117"),
        ];
        for (name, card) in table {
            for (before, after) in [("card ", " ok"), ("บัตร", "ค่ะ"), ("", "")] {
                let text = format!("{before}{card}{after}");
                assert_eq!(
                    redact_card_numbers(&text),
                    format!("{before}{CARD_REDACTION}{after}"),
                    "{name}: {text:?}"
                );
            }
        }
    }

    #[test]
    fn m10_every_redteam_card_number_is_redacted() {
        let cards = include_str!("../tests/data/redteam/cards.jsonl");
        let mut checked = 0;
        for line in cards.lines().filter(|l| !l.trim().is_empty()) {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = case["text"].as_str().unwrap();
            let stored = MessageText::parse(text, TextLimits { max_chars: 500 }).unwrap();
            let stored = stored.as_str();
            assert!(
                stored.contains(CARD_REDACTION),
                "{}: {stored:?}",
                case["notation"]
            );
            let digits = stored
                .chars()
                .filter(|c| crate::text::digit_value(*c).is_some())
                .count();
            assert!(
                digits < 4,
                "{}: digits left in {stored:?}",
                case["notation"]
            );
            checked += 1;
        }
        assert!(checked >= 20);
    }

    #[test]
    fn m10_demo_order_tracking_and_phone_numbers_are_never_redacted() {
        let orders = include_str!("../kb/orders/demo.jsonl");
        let mut checked = 0;
        for line in orders.lines().filter(|l| !l.trim().is_empty()) {
            let order: serde_json::Value = serde_json::from_str(line).unwrap();
            for key in ["order_number", "tracking_number"] {
                if let Some(value) = order[key].as_str() {
                    for text in [
                        value.to_string(),
                        format!("no {value}, ok"),
                        format!("{value} {value}"),
                    ] {
                        assert_eq!(redact_card_numbers(&text), text);
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 80, "{checked}");
        let cases = include_str!("../kb/eval/replies.jsonl");
        for line in cases.lines().filter(|l| !l.trim().is_empty()) {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let message = case["message"].as_str().unwrap();
            assert_eq!(redact_card_numbers(message), message);
        }
        for text in [
            "call +62 812 3456 7890 or 0812-3456-7890",
            "ring (02) 9876 5432 / 0413 222 333",
            "TikTok order 576012345678901234",
            "Rp 1.500.000 sampai 2.000.000",
            "2026-11-21 10:15, 2026-11-22 11:00",
        ] {
            assert_eq!(redact_card_numbers(text), text);
        }
    }

    #[test]
    fn m9_bidi_overrides_are_stripped_from_message_text() {
        let text =
            MessageText::parse("pay \u{202E}dnufer\u{202C} ok\u{2066}!\u{2069}", LIMITS).unwrap();
        assert_eq!(text.as_str(), "pay dnufer ok!");
        assert!(MessageText::parse("\u{202E}\u{202C}", LIMITS).is_err());
        // Zero-width joiners in emoji are not bidi controls and stay.
        let family = "👨\u{200D}👩\u{200D}👧";
        assert_eq!(MessageText::parse(family, LIMITS).unwrap().as_str(), family);
        // A card number hidden behind bidi controls is still found.
        let hidden = MessageText::parse("4111\u{202D}1111 1111 1111", LIMITS).unwrap();
        assert_eq!(hidden.as_str(), CARD_REDACTION);
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
