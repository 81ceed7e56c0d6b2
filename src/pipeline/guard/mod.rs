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
//! Every check reads the folded view of the reply (`text::fold`), so
//! fullwidth letters, zero-width characters, look-alike letters, letters
//! typed apart and Vietnamese in NFD read as the words they spell.
//! Binding actions (refunds, compensation, discounts and amounts off,
//! vouchers, store credit, things given free, price changes,
//! cancellations) are recognised by their words in every supported
//! language ([`promises`]), not by intent: the AI does not write about them
//! on its own at all, which is stricter than "does not promise them" and
//! cannot be talked around. The one exception is a reply that renders the
//! seller's own words ([`GuardContext::seller_text`], a translated FAQ
//! answer): binding terms of the kinds the seller wrote, with the seller's
//! own amounts, percentages and codes, are the seller's to make. Promises
//! worded outside the vocabulary are caught by meaning ([`meaning`]), a
//! check the caller runs with the embedding model.
//!
//! Pure functions; no I/O, no models (the meaning check takes its vectors
//! from the caller).

pub mod meaning;
pub mod promises;

use serde::Serialize;

pub use promises::{binding_terms, BindingKind, BindingTerm};

use super::facts::{self, FactKind};
use crate::text::Folded;

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
    /// The seller's own text this reply renders, when it is one (the FAQ
    /// answer a translation was made from). Binding terms of the kinds it
    /// holds are allowed when the reply's amounts, percentages and codes
    /// are all the seller's; a drafted reply has none.
    pub seller_text: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "violation", rename_all = "snake_case")]
pub enum Violation {
    Empty,
    TooLong {
        chars: usize,
        max: usize,
    },
    /// Mentions a binding action the AI may not offer or promise.
    BindingAction {
        kind: BindingKind,
        /// The words, as they read in the folded reply.
        term: String,
    },
    /// Reads like a promise of something binding, by meaning: its
    /// embedding is this close to one of kedai's promise exemplars.
    PromiseByMeaning {
        similarity: f32,
        exemplar: String,
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
    /// Written about the buyer instead of to them, or as a transcript: it
    /// opens with "The buyer ..." or has a line that opens with a
    /// speaker's label ("Reply:", "买家："). The small model sometimes
    /// carries on the prompt's format instead of answering.
    NotAddressedToTheBuyer {
        fragment: String,
    },
}

/// Speakers' labels a transcript puts at the start of a line, in the
/// languages kedai answers in.
const SPEAKER_LABELS: &[&str] = &[
    "buyer",
    "customer",
    "seller",
    "shop",
    "reply",
    "answer",
    "response",
    "assistant",
    "user",
    "agent",
    "pembeli",
    "penjual",
    "pelanggan",
    "balasan",
    "jawaban",
    "ลูกค้า",
    "ผู้ซื้อ",
    "ผู้ขาย",
    "คำตอบ",
    "khách hàng",
    "người mua",
    "người bán",
    "trả lời",
    "mamimili",
    "sagot",
    "comprador",
    "cliente",
    "vendedor",
    "resposta",
    "respuesta",
    "买家",
    "卖家",
    "顾客",
    "客服",
    "回复",
    "回答",
];

/// How a reply about the buyer, rather than to them, opens.
const THIRD_PERSON_OPENINGS: &[&str] = &[
    "the buyer ",
    "the customer ",
    "buyer can ",
    "customer can ",
    "买家",
    "顾客可以",
];

/// The first line or opening that shows the reply is not addressed to the
/// buyer.
fn not_addressed_to_the_buyer(reply: &str) -> Option<String> {
    let lower = reply.trim().to_lowercase();
    if let Some(opening) = THIRD_PERSON_OPENINGS.iter().find(|o| lower.starts_with(*o)) {
        return Some(opening.trim().to_string());
    }
    lower.lines().find_map(|line| {
        let line = line.trim_start_matches(|c: char| c.is_whitespace() || c == '*' || c == '-');
        SPEAKER_LABELS.iter().find_map(|label| {
            let rest = line.strip_prefix(label)?.trim_start();
            let colon = rest.chars().next().filter(|c| matches!(c, ':' | '：'))?;
            Some(format!("{label}{colon}"))
        })
    })
}

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
    let folded = Folded::new(trimmed);
    violations.extend(binding_violations(&folded, trimmed, context));
    // Identifiers are looked for in the text with card numbers taken out, so
    // a card number is reported once, as such.
    let redacted = crate::domain::redact_card_numbers(trimmed);
    if redacted != trimmed {
        violations.push(Violation::CardNumber);
    }
    violations.extend(identifier_violations(&redacted, config, context));

    for marker in TEMPLATE_MARKERS {
        if folded.text.contains(marker) {
            violations.push(Violation::LeakedInstructions {
                fragment: (*marker).to_string(),
            });
        }
    }
    if let Some(fragment) = shared_run(&folded.text, &crate::text::fold(context.instructions), 8) {
        violations.push(Violation::LeakedInstructions { fragment });
    }
    if let Some(share) = echoed_share(&folded.text, &crate::text::fold(context.conversation)) {
        if share >= ECHO_SHARE {
            violations.push(Violation::EchoesConversation {
                percent: (share * 100.0).round() as u32,
            });
        }
    }
    if let Some(fragment) = not_addressed_to_the_buyer(trimmed) {
        violations.push(Violation::NotAddressedToTheBuyer { fragment });
    }
    violations
}

/// One violation per kind of binding term in the reply, except the kinds
/// the seller's own text holds when the reply states no amount, percentage,
/// code or other fact the seller did not.
fn binding_violations(folded: &Folded, reply: &str, context: &GuardContext<'_>) -> Vec<Violation> {
    let terms = binding_terms(folded);
    if terms.is_empty() {
        return Vec::new();
    }
    let sellers_kinds: Vec<BindingKind> = match context.seller_text {
        Some(seller) if facts::unsupported(reply, &[seller]).is_empty() => {
            binding_terms(&Folded::new(seller))
                .into_iter()
                .map(|t| t.kind)
                .collect()
        }
        _ => Vec::new(),
    };
    terms
        .into_iter()
        .filter(|t| !sellers_kinds.contains(&t.kind))
        .map(|t| Violation::BindingAction {
            kind: t.kind,
            term: t.term,
        })
        .collect()
}

/// Links outside the allow-list and the sources, and emails, phone numbers
/// and codes (order, tracking, voucher numbers, SKUs, with or without
/// separators) that neither the buyer nor the sources gave.
fn identifier_violations(
    redacted: &str,
    config: &GuardConfig,
    context: &GuardContext<'_>,
) -> Vec<Violation> {
    let from_sources: Vec<facts::Fact> = context
        .sources
        .iter()
        .map(String::as_str)
        .chain(context.seller_text)
        .flat_map(facts::extract)
        .collect();
    let from_buyer: Vec<facts::Fact> = context
        .buyer_identifiers
        .iter()
        .flat_map(|s| facts::extract(s))
        .collect();
    let mut violations = Vec::new();
    for fact in facts::extract(redacted) {
        let in_sources = from_sources.iter().any(|k| fact.stated_by(k));
        let kind = match fact.kind {
            FactKind::Link => {
                // A buyer's own link is not repeated: that is how a reply
                // would be made to carry someone else's phishing page.
                if !in_sources && !link_allowed(&fact.value, &config.allowed_link_hosts) {
                    violations.push(Violation::Link { url: fact.text });
                }
                continue;
            }
            FactKind::Email => "email",
            FactKind::Phone => "phone",
            FactKind::Code => "code",
            _ => continue,
        };
        if !in_sources && !from_buyer.iter().any(|k| fact.stated_by(k)) {
            violations.push(Violation::ForeignIdentifier {
                kind,
                value: fact.text,
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
            seller_text: None,
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
            (
                "about the buyer, not to them",
                "The buyer can pay by COD in Thailand and Malaysia.",
                &["not_addressed_to_the_buyer"],
            ),
            (
                "a transcript's labels, in Chinese",
                "买家：包邮吗？\n\n回复：\n1-2天。",
                &["not_addressed_to_the_buyer"],
            ),
            (
                "a label on a later line",
                "Sure!\n**Reply:** we ship from Jakarta.",
                &["not_addressed_to_the_buyer"],
            ),
            (
                "a colon that is not a speaker's",
                "Customer service hours: 9:00 to 18:00, Monday to Saturday.",
                &[],
            ),
            (
                "the buyer named inside an answer",
                "Return shipping is paid by the buyer unless the item arrived damaged.",
                &[],
            ),
        ];
        for (name, reply, expected) in rows {
            let found = kinds(&check(reply, &config(), &context));
            assert_eq!(found, *expected, "{name}: {reply}");
        }
    }

    #[test]
    fn h2_tricks_do_not_hide_a_binding_word() {
        for reply in [
            "We will re\u{200B}fund you today",
            "We will ｒｅｆｕｎｄ you today",
            "We will r e f u n d you today",
            "We will rеfund you today", // Cyrillic е
            "Shop se\u{303} hoa\u{300}n tie\u{302}\u{300}n cho ba\u{323}n",
            "ＲＭ１０ ｏｆｆ ｆｏｒ ｙｏｕ",
            "ลด ๒๐% ให้เลยค่ะ",
            "给您打\u{200D}八折",
        ] {
            let found = check(reply, &config(), &GuardContext::default());
            assert!(
                found
                    .iter()
                    .any(|v| matches!(v, Violation::BindingAction { .. })),
                "{reply}: {found:?}"
            );
        }
    }

    #[test]
    fn m1_a_translation_keeps_only_the_sellers_binding_words_and_facts() {
        let seller = "Code KEDAI10 gives 10% off orders of USD 30 or more. Refunds reach ShopeePay within 24 hours.";
        let context = |seller_text| GuardContext {
            seller_text,
            ..GuardContext::default()
        };
        let faithful = "Kode KEDAI10 diskon 10% untuk belanja minimal USD 30. Refund masuk ShopeePay maksimal 24 jam.";
        assert_eq!(check(faithful, &config(), &context(Some(seller))), vec![]);
        // The same words without the seller's text are the model's own.
        assert!(!check(faithful, &config(), &context(None)).is_empty());
        // A changed percentage, or a kind the seller did not write, is not
        // the seller's.
        for unfaithful in [
            "Kode KEDAI10 diskon 50% untuk belanja minimal USD 30.",
            "Kode KEDAI10 diskon 10% untuk belanja minimal USD 30, dan kami kasih ganti rugi.",
            "Refund masuk ShopeePay maksimal 24 jam, pesanan kakak kami batalkan.",
        ] {
            let found = check(unfaithful, &config(), &context(Some(seller)));
            assert!(
                found
                    .iter()
                    .any(|v| matches!(v, Violation::BindingAction { .. })),
                "{unfaithful}: {found:?}"
            );
        }
    }

    #[test]
    fn l12_identifiers_links_and_phones_in_any_shape() {
        let buyer = vec!["Where is SPE-2611-00123?".to_string()];
        let sources = vec![
            "Tracking JT0123456789ID. Size chart at https://help.kedai-demo.shop/sizes, hotline (021) 555-0199-88."
                .to_string(),
        ];
        let context = GuardContext {
            buyer_identifiers: &buyer,
            sources: &sources,
            ..GuardContext::default()
        };
        let rows: &[(&str, &[&str])] = &[
            ("Order SPE-2611-00123 ships today via JT0123456789ID.", &[]),
            ("Order SPE2611-00123 ships today.", &[]),
            (
                "Order SPE-2611-00999 was delivered to Siti.",
                &["foreign_identifier"],
            ),
            ("Try LZD-2611-33420 instead.", &["foreign_identifier"]),
            ("See https://help.kedai-demo.shop/sizes for sizes.", &[]),
            ("Pay at cheap-deals.ru now", &["link"]),
            ("Pay at shop.sg or pay.top", &["link", "link"]),
            ("Pay at ｅｖｉｌ．ｃｏｍ", &["link"]),
            ("Pay at evil\u{200B}.com", &["link"]),
            ("Call (021) 555-0199-88 any time.", &[]),
            (
                "Call 0812.9999.8888 or (0812) 9999 8889.",
                &["foreign_identifier", "foreign_identifier"],
            ),
            ("Call +62 812 9999 8888", &["foreign_identifier"]),
            ("It weighs 1.5 kg and ships 2026-11-21 10:15.", &[]),
        ];
        for (reply, expected) in rows {
            let found = kinds(&check(reply, &config(), &context));
            assert_eq!(found, *expected, "{reply}");
        }
    }

    /// The red-team promises (`tests/data/redteam/promises.jsonl`).
    pub(crate) fn redteam_promises() -> Vec<serde_json::Value> {
        include_str!("../../../tests/data/redteam/promises.jsonl")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("red-team line is JSON"))
            .collect()
    }

    #[test]
    fn h2_every_redteam_promise_is_a_violation() {
        let promises = redteam_promises();
        assert!(promises.len() >= 100);
        let mut missed = Vec::new();
        for promise in &promises {
            let text = promise["text"].as_str().unwrap();
            let want = promise["kind"].as_str().unwrap();
            let found = check(text, &config(), &GuardContext::default());
            let caught = found.iter().any(
                |v| matches!(v, Violation::BindingAction { kind, .. } if kind.as_str() == want),
            );
            if !caught {
                missed.push(format!(
                    "{} {}: {text:?} -> {found:?}",
                    promise["lang"], promise["style"]
                ));
            }
        }
        assert!(missed.is_empty(), "missed:\n{}", missed.join("\n"));
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
    fn random_text_never_panics_any_text_check() {
        use rand::{Rng, SeedableRng};
        let palette: Vec<char> = "aZ09 .,-/:%$@#\n\t\r๐๙๔ก่ำ้ัี٣٤０９ｒＡ＜＞〈〉‹›元十折天月日\u{200B}\u{200D}\u{202E}\u{2066}\u{00A0}\u{2028}\u{301}\u{0323}\u{FE0F}😀đĐơưéñç€฿₫₱RMrp"
            .chars()
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for _ in 0..3000 {
            let len = rng.random_range(0..60);
            let text: String = (0..len)
                .map(|_| palette[rng.random_range(0..palette.len())])
                .collect();
            let _ = crate::text::Folded::new(&text);
            let _ = check(&text, &config(), &GuardContext::default());
            let _ = facts::missing(&text, &text);
            let _ = super::super::prompt::injection_attempt(&text);
            let _ = super::super::prompt::defuse(&text, 20);
            let _ = crate::domain::redact_card_numbers(&text);
            let _ = crate::understand::binding::requests_binding(&text);
        }
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
