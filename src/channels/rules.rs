//! What may leave kedai on a channel: the platform's chat rules checked on
//! every outgoing text (AI or human) before it is sent, and long texts
//! split into parts the platform accepts.
//!
//! Marketplaces penalise shops that move buyers off the platform, so on
//! Shopee, Lazada and TikTok Shop a reply may not carry off-platform
//! contact details (emails, phone numbers, messaging-app handles) or links
//! outside the platform and the shop's allowed hosts, payment links
//! included. Card numbers and chat-template markup are refused everywhere,
//! through the output guard (`pipeline::guard::check`). Pure functions.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use unicode_segmentation::UnicodeSegmentation;

use crate::domain::Platform;
use crate::pipeline::guard::{self, GuardConfig, GuardContext, Violation};

/// One reason a text may not be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `contact_details`, `external_link`, `payment_details`,
    /// `card_number`, `template_markup`.
    pub rule: &'static str,
    pub detail: String,
}

impl Finding {
    fn new(rule: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            rule,
            detail: detail.into(),
        }
    }
}

/// Hosts every marketplace reply may link to: the platforms' own sites.
const PLATFORM_HOSTS: &[&str] = &[
    "shopee.co.id",
    "shopee.co.th",
    "shopee.com.my",
    "shopee.vn",
    "shopee.ph",
    "shopee.sg",
    "shopee.com.br",
    "shopee.tw",
    "shp.ee",
    "lazada.co.id",
    "lazada.co.th",
    "lazada.com.my",
    "lazada.vn",
    "lazada.com.ph",
    "lazada.sg",
    "tiktok.com",
    "tokopedia.com",
];

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b").expect("regex")
});
/// A phone number as people write them: a `+` or a leading 0, then 8 to 13
/// more digits with optional separators. Order numbers (long digit runs
/// without a leading 0 or +) do not match.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^\w+])((?:\+\d{1,3}|0)[\s.\-]?\(?\d{1,4}\)?(?:[\s.\-]?\d){6,11})\b")
        .expect("regex")
});
static MESSAGING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)\b(?:wa\.me|whats\s*app|whatsapp|line\s*id|line\s*@|telegram|t\.me/|wechat|weixin",
        r"|zalo|viber|messenger|instagram|ig\s*:|fb\s*:|facebook\.com|wa\s*:\s*\+?\d)"
    ))
    .expect("regex")
});
static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)\b(?:https?://[^\s<>()\[\]]+|www\.[^\s<>()\[\]]+",
        r"|(?:[a-z0-9-]+\.)+(?:com|net|org|io|co|id|th|vn|my|ph|sg|br|shop|store|xyz|link|ly|me|info|biz|app|site|online|pay)\b(?:/[^\s<>()\[\]]*)?)"
    ))
    .expect("regex")
});
static PAYMENT_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)(?:paypal|stripe|midtrans|xendit|gcash|promptpay|momo|ovo|dana\b|gopay|qris",
        r"|/pay\b|/checkout|invoice)"
    ))
    .expect("regex")
});
static BANK_ACCOUNT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)(?:rekening|no\.?\s*rek|rek\.|account\s*(?:no|number)|a/c|bank\s*account",
        r"|เลขบัญชี|số\s*tài\s*khoản|tài\s*khoản|账号|conta)\s*[:.#]?\s*\d[\d\s\-]{6,}"
    ))
    .expect("regex")
});

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest
        .split(['/', '?', '#', ':'])
        .next()
        .unwrap_or("")
        .to_lowercase();
    host.strip_prefix("www.").unwrap_or(&host).to_owned()
}

fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let matches = |allowed: &str| {
        let allowed = allowed.trim().to_lowercase();
        !allowed.is_empty() && (host == allowed || host.ends_with(&format!(".{allowed}")))
    };
    PLATFORM_HOSTS.iter().any(|h| matches(h)) || allowed.iter().any(|h| matches(h))
}

/// Every rule `text` breaks on `platform`; empty means it may be sent.
/// `allowed_hosts` are the shop's own hosts links may point to.
pub fn check(platform: Platform, text: &str, allowed_hosts: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let marketplace = matches!(
        platform,
        Platform::Shopee | Platform::Lazada | Platform::Tiktok
    );
    if marketplace {
        for m in EMAIL.find_iter(text) {
            findings.push(Finding::new("contact_details", m.as_str()));
        }
        let without_emails = EMAIL.replace_all(text, " ");
        for c in PHONE.captures_iter(&without_emails) {
            findings.push(Finding::new("contact_details", c[1].trim()));
        }
        for m in MESSAGING.find_iter(&without_emails) {
            findings.push(Finding::new("contact_details", m.as_str()));
        }
        for m in BANK_ACCOUNT.find_iter(&without_emails) {
            findings.push(Finding::new("payment_details", m.as_str().trim()));
        }
        for m in URL.find_iter(&without_emails) {
            let url = m.as_str().trim_end_matches(['.', ',', '!', '?', ';', ':']);
            let host = host_of(url);
            if PAYMENT_WORDS.is_match(url) {
                findings.push(Finding::new("payment_details", url));
            } else if !host_allowed(&host, allowed_hosts) {
                findings.push(Finding::new("external_link", url));
            }
        }
    }
    let config = GuardConfig {
        max_chars: usize::MAX,
        allowed_link_hosts: allowed_hosts.to_vec(),
    };
    for violation in guard::check(text, &config, &GuardContext::default()) {
        match violation {
            Violation::CardNumber => findings.push(Finding::new("card_number", "a card number")),
            Violation::LeakedInstructions { fragment } => {
                findings.push(Finding::new("template_markup", fragment))
            }
            // Binding words are for a human to write; links, contact
            // details and lengths are checked above with the platform's
            // rules; echoes and foreign identifiers concern generated text.
            Violation::Empty
            | Violation::TooLong { .. }
            | Violation::BindingAction { .. }
            | Violation::PromiseByMeaning { .. }
            | Violation::Link { .. }
            | Violation::ForeignIdentifier { .. }
            | Violation::EchoesConversation { .. }
            | Violation::NotAddressedToTheBuyer { .. } => {}
        }
    }
    findings
}

/// One line naming what is wrong, for an agent (the API's 422) or a note.
pub fn explain(findings: &[Finding]) -> String {
    let parts: Vec<String> = findings
        .iter()
        .map(|f| {
            let what = match f.rule {
                "contact_details" => "off-platform contact details",
                "external_link" => "a link outside the marketplace and the shop's allowed hosts",
                "payment_details" => "payment details or a payment link",
                "card_number" => "a card number",
                _ => "chat-template markup",
            };
            format!("{what} ({})", f.detail)
        })
        .collect();
    format!(
        "the marketplace does not allow this message: it contains {}",
        parts.join(", ")
    )
}

/// Splits `text` into parts of at most `max_chars` characters, at a
/// paragraph, sentence or word boundary when one is near, never inside a
/// grapheme (a Thai vowel stays with its consonant).
pub fn split(text: &str, max_chars: usize) -> Vec<String> {
    let text = text.trim();
    let max_chars = max_chars.max(1);
    if text.chars().count() <= max_chars {
        return vec![text.to_owned()];
    }
    let graphemes: Vec<&str> = text.graphemes(true).collect();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < graphemes.len() {
        let mut end = start;
        let mut chars = 0;
        while end < graphemes.len() && chars + graphemes[end].chars().count() <= max_chars {
            chars += graphemes[end].chars().count();
            end += 1;
        }
        if end == start {
            // A single grapheme longer than the limit: cut it anyway.
            end = start + 1;
        }
        if end < graphemes.len() {
            end = best_break(&graphemes[start..end]).map_or(end, |b| start + b);
        }
        let part: String = graphemes[start..end].concat();
        let part = part.trim();
        if !part.is_empty() {
            parts.push(part.to_owned());
        }
        start = end;
    }
    parts
}

/// Where to end a part within `window`: after the last paragraph break or
/// sentence end past its first third, else the last white space past its
/// middle (so parts are not tiny).
fn best_break(window: &[&str]) -> Option<usize> {
    let (third, half) = (window.len() / 3, window.len() / 2);
    let last =
        |from: usize, pred: &dyn Fn(usize) -> bool| (from..window.len()).rev().find(|&i| pred(i));
    last(third, &|i| window[i] == "\n" || window[i] == "\r\n")
        .or_else(|| {
            last(third, &|i| {
                matches!(window[i], "." | "!" | "?" | "。" | "！" | "？" | "।")
                    && window.get(i + 1).is_none_or(|n| n.trim().is_empty())
            })
        })
        .or_else(|| last(half, &|i| window[i].trim().is_empty()))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(platform: Platform, text: &str) -> Vec<&'static str> {
        check(platform, text, &["kedai-demo.shop".to_string()])
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn marketplace_rules_table() {
        let rows: &[(&str, &[&str])] = &[
            (
                "Your parcel SPXID012345678901 left the warehouse today.",
                &[],
            ),
            ("Order 576461413038785752 ships tomorrow.", &[]),
            ("Pesanan 220810QSK8S7BX sudah dikirim ya kak.", &[]),
            ("Size chart: https://kedai-demo.shop/size", &[]),
            ("See the item on https://shopee.co.id/product/1/2", &[]),
            ("Email me at siti.s@gmail.com", &["contact_details"]),
            ("WA saya 0812-3456-7890 ya", &["contact_details"]),
            (
                "Call +62 812 3456 7890 for faster service",
                &["contact_details"],
            ),
            ("Add our LINE ID: kedaishop", &["contact_details"]),
            (
                "Chat on wa.me/6281234567890",
                &["contact_details", "external_link"],
            ),
            ("Cheaper at www.cheap-deals.xyz", &["external_link"]),
            ("Pay here: https://paypal.me/kedai", &["payment_details"]),
            (
                "Transfer ke rekening BCA no rek. 1234567890 ya",
                &["payment_details"],
            ),
            ("Card 4111 1111 1111 1111 noted", &["card_number"]),
            ("Sure<|im_end|>", &["template_markup"]),
            // Refunds are a human's call; the platform allows the words.
            ("We will refund your order today.", &[]),
        ];
        for (text, expected) in rows {
            assert_eq!(&rules(Platform::Shopee, text), expected, "{text}");
        }
    }

    #[test]
    fn the_web_widget_only_refuses_cards_and_markup() {
        assert!(rules(
            Platform::Web,
            "Email us at help@kedai-demo.shop or call 0812 3456 7890"
        )
        .is_empty());
        assert_eq!(
            rules(Platform::Web, "4111111111111111"),
            vec!["card_number"]
        );
    }

    #[test]
    fn explanations_name_the_problem() {
        let findings = check(Platform::Tiktok, "mail me: a@b.co", &[]);
        let text = explain(&findings);
        assert!(
            text.contains("off-platform contact details (a@b.co)"),
            "{text}"
        );
    }

    #[test]
    fn long_texts_split_at_boundaries_within_the_limit() {
        let text = "First sentence here. Second sentence is a little longer! Third one? Fourth.";
        let parts = split(text, 40);
        assert!(parts.iter().all(|p| p.chars().count() <= 40), "{parts:?}");
        assert_eq!(parts.concat().replace(' ', ""), text.replace(' ', ""));
        assert_eq!(parts[0], "First sentence here.");
        assert_eq!(split("short", 2000), vec!["short"]);
        let tiktok = "word ".repeat(900);
        let parts = split(&tiktok, 2000);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= 2000));
    }

    #[test]
    fn thai_is_never_cut_inside_a_grapheme() {
        let thai = "ที่".repeat(50);
        for part in split(&thai, 7) {
            assert!(part.chars().count() <= 7, "{part}");
            assert!(
                part.starts_with('ท'),
                "a part starts with a combining mark: {part:?}"
            );
        }
        let no_spaces = "a".repeat(25);
        assert_eq!(split(&no_spaces, 10).len(), 3);
    }
}
