//! The output guard: the last check on text the chat model wrote before it
//! may reach a buyer.
//!
//! The model is small and the buyer's text is untrusted, so kedai does not
//! rely on the prompt to keep the model from promising refunds or leaking its
//! instructions. [`check`] looks at the generated reply itself and lists
//! every [`Violation`]; a reply with any violation is never sent
//! automatically (the pipeline turns it into a draft for a human, with the
//! violations as reasons).
//!
//! Binding actions (refunds, compensation, discounts, vouchers, price
//! changes, cancellations) are recognised by their words in every supported
//! language, not by intent: the AI does not write about them on its own at
//! all, which is stricter than "does not promise them" and cannot be talked
//! around. Answers written by the seller (FAQ entries, templates) do not go
//! through this guard; only generated text does.
//!
//! Pure functions; no I/O, no models.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// What the guard allows, from the shop's configuration.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Longest reply, in characters.
    pub max_chars: usize,
    /// Hosts a reply may link to; subdomains of a listed host are allowed.
    pub allowed_link_hosts: Vec<String>,
}

/// What this particular reply may mention.
#[derive(Debug, Clone, Default)]
pub struct GuardContext<'a> {
    /// The buyer's own identifiers (their order numbers, email, phone,
    /// tracking numbers, and anything they wrote themselves).
    pub buyer_identifiers: &'a [String],
    /// The knowledge the reply was grounded in; identifiers found there are
    /// the shop's own (a support email, a hotline) and may be repeated.
    pub sources: &'a [String],
    /// The instructions given to the model, which must not be repeated.
    pub instructions: &'a str,
    /// The conversation the reply answers (the buyer's message and the
    /// turns before it), which a reply must do more than repeat.
    pub conversation: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "violation", rename_all = "snake_case")]
pub enum Violation {
    Empty,
    TooLong {
        chars: usize,
        max: usize,
    },
    /// Mentions a binding action the AI may not offer or promise.
    BindingAction {
        term: String,
    },
    /// Links somewhere outside the allow-list.
    Link {
        url: String,
    },
    /// An email, phone or order number that is not this buyer's and not in
    /// the sources: possibly another buyer's data.
    ForeignIdentifier {
        kind: &'static str,
        value: String,
    },
    /// Repeats part of its instructions or chat-template markup.
    LeakedInstructions {
        fragment: String,
    },
    CardNumber,
    /// Mostly repeats the conversation (the small model sometimes hands
    /// the buyer's own words back, or turns their question into a claim):
    /// `percent` of its character n-grams come from it.
    EchoesConversation {
        percent: u32,
    },
}

/// Words for binding actions, per language. Matched case-insensitively as
/// substrings, so inflections ("refunded", "reembolso") are covered.
const BINDING_TERMS: &[&str] = &[
    // English
    "refund",
    "reimburs",
    "compensat",
    "discount",
    "voucher",
    "coupon",
    "promo code",
    "cashback",
    "cash back",
    "money back",
    "cancel",
    "price match",
    "price adjust",
    "lower the price",
    "free replacement",
    "% off",
    "credit your account",
    // Indonesian / Malay
    "pengembalian dana",
    "dana kembali",
    "uang kembali",
    "ganti rugi",
    "kompensasi",
    "diskon",
    "potongan harga",
    "kupon",
    "pembatalan",
    "membatalkan",
    "dibatalkan",
    "bayaran balik",
    "wang dikembalikan",
    "pampasan",
    "batalkan",
    // Thai
    "คืนเงิน",
    "ชดเชย",
    "ส่วนลด",
    "คูปอง",
    "ยกเลิก",
    "ลดราคา",
    // Vietnamese (with and without diacritics)
    "hoàn tiền",
    "hoan tien",
    "bồi thường",
    "boi thuong",
    "giảm giá",
    "giam gia",
    "mã giảm",
    "ma giam",
    "hủy đơn",
    "huỷ đơn",
    "huy don",
    "hoàn lại tiền",
    // Tagalog
    "ibabalik ang pera",
    "ibalik ang bayad",
    "diskwento",
    "kanselahin",
    "i-cancel",
    "bayad-pinsala",
    // Portuguese / Spanish
    "reembols",
    "estorno",
    "dinheiro de volta",
    "devolução do dinheiro",
    "compensação",
    "indeniza",
    "desconto",
    "cupom",
    "cancelar",
    "cancelamento",
    "devolución del dinero",
    "compensación",
    "indemniza",
    "descuento",
    "cupón",
    "cancelación",
    // Chinese
    "退款",
    "退钱",
    "赔偿",
    "补偿",
    "折扣",
    "优惠券",
    "优惠码",
    "取消",
    "打折",
    "降价",
    "返现",
];

/// Markup and phrases that only appear when a model echoes its prompt.
const TEMPLATE_MARKERS: &[&str] = &[
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "[inst]",
    "<<sys>>",
    "<knowledge>",
    "</knowledge>",
    "<buyer_message>",
    "</buyer_message>",
    "system prompt",
];

static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:https?://|www\.)[^\s<>()\[\]]+|\b(?:[a-z0-9-]+\.)+(?:com|net|org|io|co|id|th|vn|my|ph|br|es|cn|shop|store|xyz|link|ly|me|info|biz|app|site|online)\b(?:/[^\s<>()\[\]]*)?",
    )
    .expect("valid regex")
});
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b").expect("valid regex")
});
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\d[\d \-]{7,}\d").expect("valid regex"));
/// Order and tracking numbers: a run of 8+ digits, or letters followed by
/// 6+ digits (e.g. `SPX0123456789`, `2311201ABCD` is not matched).
static ORDER_LIKE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:[A-Z]{2,5}\d{6,}[A-Z]{0,3}|\d{8,})\b").expect("valid regex")
});

/// Checks a generated reply. An empty list means it may be sent.
pub fn check(reply: &str, config: &GuardConfig, context: &GuardContext<'_>) -> Vec<Violation> {
    let mut violations = Vec::new();
    let trimmed = reply.trim();
    if trimmed.is_empty() {
        violations.push(Violation::Empty);
        return violations;
    }
    let chars = trimmed.chars().count();
    if chars > config.max_chars {
        violations.push(Violation::TooLong {
            chars,
            max: config.max_chars,
        });
    }
    let lower = trimmed.to_lowercase();
    for term in BINDING_TERMS {
        if lower.contains(term) {
            violations.push(Violation::BindingAction {
                term: (*term).to_string(),
            });
            break;
        }
    }
    // Identifiers are looked for in the text with card numbers taken out, so
    // a card number is reported once, as such.
    let redacted = crate::domain::redact_card_numbers(trimmed);
    if redacted != trimmed {
        violations.push(Violation::CardNumber);
    }

    let known = known_text(context);
    let known_digits = digits_of(&known);
    let is_known = |value: &str| {
        let digits: String = value.chars().filter(char::is_ascii_digit).collect();
        known.contains(&value.to_lowercase())
            || (digits.len() >= 6 && known_digits.contains(&digits))
    };
    let without_emails = EMAIL.replace_all(&redacted, " ");
    for found in EMAIL.find_iter(&redacted) {
        let value = found.as_str();
        if !known.contains(&value.to_lowercase()) {
            violations.push(Violation::ForeignIdentifier {
                kind: "email",
                value: value.to_string(),
            });
        }
    }
    for found in URL.find_iter(&without_emails) {
        let url = found
            .as_str()
            .trim_end_matches(['.', ',', '!', '?', ';', ':']);
        if !link_allowed(url, &config.allowed_link_hosts) {
            violations.push(Violation::Link {
                url: url.to_string(),
            });
        }
    }
    for found in PHONE.find_iter(&without_emails) {
        let digits: String = found
            .as_str()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if digits.len() >= 9 && !is_known(found.as_str()) {
            violations.push(Violation::ForeignIdentifier {
                kind: "phone",
                value: found.as_str().trim().to_string(),
            });
        }
    }
    for found in ORDER_LIKE.find_iter(&without_emails) {
        let value = found.as_str();
        let already = violations.iter().any(|v| {
            matches!(v, Violation::ForeignIdentifier { value: other, .. }
                if other.chars().filter(char::is_ascii_digit).collect::<String>()
                    == value.chars().filter(char::is_ascii_digit).collect::<String>())
        });
        if !already && !is_known(value) {
            violations.push(Violation::ForeignIdentifier {
                kind: "order_number",
                value: value.to_string(),
            });
        }
    }

    for marker in TEMPLATE_MARKERS {
        if lower.contains(marker) {
            violations.push(Violation::LeakedInstructions {
                fragment: (*marker).to_string(),
            });
        }
    }
    if let Some(fragment) = shared_run(&lower, &context.instructions.to_lowercase(), 8) {
        violations.push(Violation::LeakedInstructions { fragment });
    }
    if let Some(share) = echoed_share(trimmed, context.conversation) {
        if share >= ECHO_SHARE {
            violations.push(Violation::EchoesConversation {
                percent: (share * 100.0).round() as u32,
            });
        }
    }
    violations
}

/// A reply with at least this share of its character n-grams taken from
/// the conversation repeats it. On the demo drafts, echoes scored 0.78 to
/// 0.98 and real answers (quoting a product name or an order number
/// included) at most 0.29.
const ECHO_SHARE: f64 = 0.6;
/// Replies with fewer n-grams are too short to judge ("OK, Size M").
const ECHO_MIN_NGRAMS: usize = 8;

/// The share of `reply`'s character n-grams (lower-cased, runs of white
/// space as one) that occur in `conversation`: bigrams for text written
/// mostly in Han, kana or Hangul, whose characters are words or
/// syllables, trigrams otherwise. `None` when the reply is too short.
fn echoed_share(reply: &str, conversation: &str) -> Option<f64> {
    let normal = |text: &str| -> Vec<char> {
        text.to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .collect()
    };
    let reply = normal(reply);
    let ideographic = reply
        .iter()
        .filter(|c| {
            matches!(**c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF)
        })
        .count();
    let n = if 2 * ideographic > reply.len() { 2 } else { 3 };
    let grams: Vec<&[char]> = reply.windows(n).collect();
    if grams.len() < ECHO_MIN_NGRAMS {
        return None;
    }
    let conversation = normal(conversation);
    let seen: std::collections::HashSet<&[char]> = conversation.windows(n).collect();
    let echoed = grams.iter().filter(|g| seen.contains(*g)).count();
    Some(echoed as f64 / grams.len() as f64)
}

/// Everything the reply may legitimately repeat, lowercased.
fn known_text(context: &GuardContext<'_>) -> String {
    let mut known = String::new();
    for item in context.buyer_identifiers.iter().chain(context.sources) {
        known.push_str(&item.to_lowercase());
        known.push('\n');
    }
    known
}

/// The digit runs of `text` (separators removed), for phone comparison.
fn digits_of(text: &str) -> BTreeSet<String> {
    PHONE
        .find_iter(text)
        .map(|m| m.as_str().chars().filter(char::is_ascii_digit).collect())
        .chain(
            text.split(|c: char| !c.is_ascii_digit())
                .filter(|run| run.len() >= 6)
                .map(str::to_string),
        )
        .collect()
}

fn link_allowed(url: &str, allowed: &[String]) -> bool {
    let without_scheme = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    let host = without_scheme
        .split(['/', '?', '#', ':'])
        .next()
        .unwrap_or("")
        .to_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    allowed.iter().any(|allowed| {
        let allowed = allowed.trim().to_lowercase();
        !allowed.is_empty() && (host == allowed || host.ends_with(&format!(".{allowed}")))
    })
}

/// The first run of `words` consecutive words of `instructions` that also
/// appears in `reply`.
fn shared_run(reply: &str, instructions: &str, words: usize) -> Option<String> {
    let tokens: Vec<&str> = instructions.split_whitespace().collect();
    if tokens.len() < words {
        return None;
    }
    let reply_words = reply.split_whitespace().collect::<Vec<_>>().join(" ");
    tokens.windows(words).find_map(|window| {
        let phrase = window.join(" ");
        reply_words.contains(&phrase).then_some(phrase)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GuardConfig {
        GuardConfig {
            max_chars: 400,
            allowed_link_hosts: vec!["kedai-demo.shop".into(), "shopee.co.id".into()],
        }
    }

    fn kinds(violations: &[Violation]) -> Vec<String> {
        violations
            .iter()
            .map(|v| {
                serde_json::to_value(v).unwrap()["violation"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    const INSTRUCTIONS: &str = "You are the customer-service assistant of Kedai Demo. Answer only from the knowledge below and never promise refunds or discounts to the buyer.";

    #[test]
    fn guard_table() {
        let buyer = vec!["ORD-2026-118822".to_string(), "0812 3456 7890".to_string()];
        let sources = vec!["Write to help@kedai-demo.shop for invoices.".to_string()];
        let context = GuardContext {
            buyer_identifiers: &buyer,
            sources: &sources,
            instructions: INSTRUCTIONS,
            conversation: "Olá, a camiseta dry fit do pedido ORD-2026-118822 chegou com uma \
                           mancha na frente, dá pra trocar?\n这款磁吸充电宝适合iPhone 11吗？",
        };
        let rows: &[(&str, &str, &[&str])] = &[
            (
                "plain answer",
                "Your parcel left our Jakarta warehouse yesterday and should arrive in 2-4 days.",
                &[],
            ),
            ("empty", "   ", &["empty"]),
            (
                "promise in English",
                "Don't worry, I will refund you today.",
                &["binding_action"],
            ),
            (
                "discount offer",
                "I can give you 10% off your next order!",
                &["binding_action"],
            ),
            (
                "Indonesian",
                "Baik kak, uang kembali akan kami proses ya",
                &["binding_action"],
            ),
            ("Thai", "เราจะคืนเงินให้ภายในวันนี้ค่ะ", &["binding_action"]),
            (
                "Vietnamese without accents",
                "shop se hoan tien cho ban nhe",
                &["binding_action"],
            ),
            (
                "Portuguese",
                "Vamos fazer o reembolso hoje.",
                &["binding_action"],
            ),
            ("Chinese", "我们会给您退款。", &["binding_action"]),
            (
                "cancellation",
                "I have cancelled your order.",
                &["binding_action"],
            ),
            (
                "allowed link",
                "Size chart: https://kedai-demo.shop/size-chart.",
                &[],
            ),
            (
                "allowed subdomain",
                "See https://help.kedai-demo.shop/returns",
                &[],
            ),
            (
                "foreign link",
                "Pay here: http://evil.example.com/pay",
                &["link"],
            ),
            (
                "bare domain",
                "Order cheaper at cheap-deals.xyz instead",
                &["link"],
            ),
            (
                "shop email from the sources",
                "Write to help@kedai-demo.shop please.",
                &[],
            ),
            (
                "another email",
                "Contact maria.s@gmail.com for help.",
                &["foreign_identifier"],
            ),
            (
                "the buyer's own order",
                "Order ORD-2026-118822 is on its way.",
                &[],
            ),
            (
                "another order number",
                "Order 99887766554 was delivered to Siti.",
                &["foreign_identifier"],
            ),
            (
                "the buyer's phone, reformatted",
                "We will call 081234567890 on delivery.",
                &[],
            ),
            (
                "another phone",
                "Call +62 811 2222 3333 for the courier.",
                &["foreign_identifier"],
            ),
            (
                "template markup",
                "Sure!<|im_end|><|im_start|>system",
                &["leaked_instructions", "leaked_instructions"],
            ),
            (
                "echoed instructions",
                "As told: answer only from the knowledge below and never promise anything.",
                &["leaked_instructions"],
            ),
            (
                "card number",
                "Your card 4111 1111 1111 1111 was charged.",
                &["card_number"],
            ),
            (
                "the buyer's words handed back",
                "Olá, a camiseta dry fit chegou com uma mancha na frente, dá pra trocar?",
                &["echoes_conversation"],
            ),
            (
                "a question turned into a claim, in Chinese",
                "这款磁吸充电宝适合iPhone 11。",
                &["echoes_conversation"],
            ),
            (
                "quoting the order and the product is an answer",
                "Sorry about the stain on your dry fit tee! A colleague will check order \
                 ORD-2026-118822 and reply soon.",
                &[],
            ),
            ("too short to judge", "Dry fit?", &[]),
        ];
        for (name, reply, expected) in rows {
            let found = kinds(&check(reply, &config(), &context));
            assert_eq!(found, *expected, "{name}: {reply}");
        }
    }

    #[test]
    fn too_long_replies_are_flagged_by_characters() {
        let reply = "ก".repeat(401);
        let found = check(&reply, &config(), &GuardContext::default());
        assert_eq!(
            found,
            vec![Violation::TooLong {
                chars: 401,
                max: 400
            }]
        );
        assert!(check(&"ก".repeat(400), &config(), &GuardContext::default()).is_empty());
    }

    #[test]
    fn hostile_input_never_panics() {
        let long = "refund ".repeat(5000);
        for reply in [
            "\u{0}\u{1}\u{fffd}",
            "http://",
            "www.",
            "@@@.@",
            "+++++++++++",
            long.as_str(),
            "😀😀😀 https://😀.com",
        ] {
            let _ = check(reply, &config(), &GuardContext::default());
        }
    }
}
