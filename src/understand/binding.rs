//! Requests for something binding, in every language kedai serves, by
//! patterns: a buyer who bargains for a lower price or an extra discount,
//! or asks to be compensated, wants a decision only a person may take,
//! whatever intent the message is classified as ("if I buy 10, can you
//! give more discount?" is a `price_coupon` question that must not be
//! answered by the FAQ). Questions about what exists ("is there a
//! voucher?", "any promo this week?") are not requests. Refunds, returns
//! and cancellations are intents of their own and routed by the policy.
//!
//! Also here: a buyer saying they asked already ("I asked already",
//! "mình hỏi rồi mà"), which counts as a repeated question even when the
//! wording differs too much for the embeddings to match.
//!
//! Patterns match the folded text (`text::fold`) and its squeezed view, so
//! zero-width, fullwidth, look-alike and spaced-out spellings, and
//! Vietnamese with or without its diacritics, read as the words they spell.
//!
//! Pure functions: no model, no I/O.

use std::sync::OnceLock;

use serde::Serialize;

use crate::text::{Folded, Patterns};

/// What binding thing the buyer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingRequest {
    /// A lower price, an extra or personal discount, a voucher for them.
    Discount,
    /// Money or goods to make up for a problem.
    Compensation,
}

struct Vocabulary {
    discount: Patterns,
    compensation: Patterns,
    asked_before: Patterns,
}

fn patterns() -> &'static Vocabulary {
    static PATTERNS: OnceLock<Vocabulary> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        Vocabulary {
            discount: Patterns::new([
                // English
                r"\b(?:give|giving|offer|send)\s+(?:me|us)\s+(?:a\s+|an\s+|some\s+|any\s+)?(?:extra\s+|more\s+|special\s+|small\s+|little\s+)?(?:discount|deal|voucher|coupon|price\s+cut|better\s+price|lower\s+price)",
                r"\b(?:can|could|would|will)\s+(?:you|u)\s+(?:please\s+|pls\s+)?(?:do|make|give|lower|reduce|drop|knock|cut)\b[^.?!\n]{0,30}?\b(?:discount|cheaper|lower|less|off|better\s+price|best\s+price|deal)\b",
                r"\b(?:extra|more|additional|bigger|further)\s+discount\b",
                r"\b(?:last|best|final|lowest)\s+price\b",
                r"\b(?:negotiable|nego|haggle|bargain)\b",
                // Indonesian / Malay
                r"\b(?:bisa|boleh|bole|blh|bs)\s+(?:di)?(?:kurang(?:in|kan|i)?|nego|tawar|korting)\b",
                r"\b(?:kasih|bagi|beri|berikan|kasi)\s+(?:saya\s+|aku\s+|kami\s+)?(?:diskon|diskaun|potongan|harga\s+(?:murah|khas|spesial|special|teman))",
                r"\b(?:diskon|diskaun|potongan)\s+(?:lebih|lagi|tambahan|extra)\b",
                r"\bharga\s+(?:pas|nett?|terakhir|last|mati)\b",
                r"\bkurang\s+(?:lagi|sikit|dikit|sedikit)\b",
                // Thai
                r"ลด(?:ราคา)?(?:ให้|ได้)(?:อีก)?(?:ไหม|มั้ย|มั๊ย|หน่อย|บ้าง)",
                r"(?:ขอ|ช่วย)ลด(?:ราคา)?|ลดหน่อย|ต่อราคา|ขอส่วนลด|ราคาสุดท้าย",
                // Vietnamese
                r"\b(?:bớt|giảm)\s+(?:giá\s+)?(?:cho\s+(?:mình|em|tôi|chị|anh|tui)|được\s+không|đc\s+không|chút|ít|thêm)",
                r"\b(?:bot|giam)\s+(?:gia\s+)?(?:cho\s+(?:minh|em|toi|chi|anh)|duoc\s+khong|dc\s+ko|chut|it|them)\b",
                r"\bgiá\s+(?:chót|cuối)\b|\bgia\s+(?:chot|cuoi)\b",
                // Tagalog / Taglish
                r"\b(?:pwede|puwede|pede|pwde)\s+(?:po\s+)?(?:ba\s+|bang\s+)?(?:bawasan|tawaran|babaan|less|discount(?:an)?)",
                r"\btawad\b|\bmay\s+less\b|\bless\s+(?:na|naman|po)\b",
                // Portuguese
                r"\b(?:faz|fazer|dá|da|dar|consegue|pode|faria)\s+(?:um\s+|uma\s+|algum\s+)?(?:desconto|preço\s+melhor|preco\s+melhor|por\s+menos|mais\s+barato|abatimento)",
                r"\bdesconto\s+(?:a\s+mais|extra|maior|especial)\b",
                r"\bme\s+(?:dá|da|faz)\s+(?:um\s+)?desconto",
                // Spanish
                r"\b(?:me\s+)?(?:puede|puedes|podría|podrías|podria|podrias|haces|hace|das|da|dejas|deja)\s+(?:hacer\s+|dar\s+|dejar\s+)?(?:un\s+|una\s+|algún\s+|algun\s+)?(?:descuento|rebaja|mejor\s+precio|más\s+barato|mas\s+barato|precio\s+especial)",
                r"\b(?:descuento|rebaja)\s+(?:extra|adicional|mayor|especial)\b",
                r"\búltimo\s+precio\b|\bultimo\s+precio\b",
                // Chinese
                r"便宜(?:点|一点|些|一些|點|一點)",
                r"(?:能|可以|可不可以|能不能|可否)(?:再)?(?:便宜|优惠|優惠|打折|少算|算便宜)",
                r"(?:再|多)(?:优惠|優惠|打折|便宜)",
                r"砍价|讲价|講價|最低价|最低價",
            ]),
            compensation: Patterns::new([concat!(
                r"\b(?:compensat(?:e|ion)|reimburs(?:e|ement))\b",
                r"|\b(?:ganti\s*rugi|kompensasi|pampasan|ganti\s+kerugian)\b",
                r"|ชดเชย|ชดใช้|bồi\s+thường|đền\s+bù|\bboi\s+thuong\b|\bden\s+bu\b",
                r"|\b(?:indeniza(?:ção|cao|r)?|compensa(?:ção|cao|r))\b",
                r"|\b(?:indemnizaci[óo]n|indemnizar|compensaci[óo]n|compensar)\b",
                r"|赔偿|補償|补偿|赔钱|賠償",
            )]),
            asked_before: Patterns::new([
                // English
                r"\b(?:i|i've|i\s+have|we)\s+(?:already\s+)?(?:asked|told\s+you|said\s+this)\b[^.?!\n]{0,20}?\b(?:already|before|twice|earlier|yesterday)\b",
                r"\b(?:i|we)\s+already\s+(?:asked|told\s+you)\b",
                r"\b(?:asking|ask)\s+(?:you\s+)?(?:again|for\s+the\s+(?:second|third|last)\s+time)\b",
                r"\bhow\s+many\s+times\b",
                // Indonesian / Malay
                r"\b(?:udah|sudah|dah|udh|sdh)\s+(?:saya\s+|aku\s+|sy\s+)?(?:tanya|nanya|tanyakan|bilang|tanyain)\b",
                r"\bberapa\s+kali\b|\btanya\s+lagi\b",
                // Thai
                r"ถาม(?:ไป)?(?:แล้ว|หลายรอบ|หลายครั้ง|อีกรอบ)|กี่รอบ|กี่ครั้ง",
                // Vietnamese
                r"\bhỏi\s+(?:rồi|mấy\s+lần|bao\s+nhiêu\s+lần|lại\s+lần)|\bhoi\s+(?:roi|may\s+lan)\b",
                // Tagalog / Taglish
                r"\b(?:nagtanong|tinanong|sinabi)\s+(?:ko\s+)?na\b|\bilang\s+beses\b",
                // Portuguese / Spanish
                r"\bj[áa]\s+(?:perguntei|falei|disse)\b|\bquantas\s+vezes\b",
                r"\bya\s+(?:(?:te\s+|lo\s+|se\s+lo\s+)?pregunt[ée]|te\s+(?:lo\s+)?dije|dije)\b|\bcu[áa]ntas\s+veces\b",
                // Chinese
                r"(?:已经|已經|都)问过|问过了|問過了|(?:问|問|说|說)了(?:好几|好幾|几|幾|多少|两|兩)(?:次|遍)",
            ]),
        }
    })
}

/// The binding thing `text` asks for, if any; compensation wins when both
/// are asked.
pub fn requests_binding(text: &str) -> Option<BindingRequest> {
    let p = patterns();
    let text = Folded::new(text);
    if p.compensation.is_match(&text) {
        Some(BindingRequest::Compensation)
    } else if p.discount.is_match(&text) {
        Some(BindingRequest::Discount)
    } else {
        None
    }
}

/// Whether the buyer says they asked this before.
pub fn says_asked_before(text: &str) -> bool {
    patterns().asked_before.is_match(&Folded::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use BindingRequest::*;

    #[test]
    fn bargaining_and_compensation_in_every_language() {
        let table: &[(&str, BindingRequest)] = &[
            ("can you give me a discount if I take 3?", Discount),
            ("Could you do it cheaper for 2 pcs?", Discount),
            ("what's your best price for 5?", Discount),
            ("any extra discount for returning customers?", Discount),
            ("kak bisa kurang ga harganya?", Discount),
            (
                "Kalau saya beli 10 helai, boleh bagi diskaun lebih tak?",
                Discount,
            ),
            ("harga pas berapa min?", Discount),
            ("ลดราคาได้ไหมคะ ถ้าซื้อ 3 ชิ้น", Discount),
            ("ขอส่วนลดหน่อยครับ", Discount),
            ("shop bớt giá cho mình chút nha", Discount),
            ("bot cho minh it duoc khong shop", Discount),
            ("pwede po bang bawasan yung presyo?", Discount),
            ("may less po ba pag 2?", Discount),
            ("faz um desconto se eu levar dois?", Discount),
            ("¿me puedes hacer un descuento si compro tres?", Discount),
            ("能便宜一点吗？", Discount),
            ("可以再优惠吗", Discount),
            ("I want compensation for the late delivery", Compensation),
            ("saya minta ganti rugi, barangnya rusak", Compensation),
            ("shop phải bồi thường cho mình", Compensation),
            ("quero uma indenização pelo atraso", Compensation),
            ("要求赔偿", Compensation),
            ("ต้องชดเชยให้ผมด้วย", Compensation),
        ];
        for (text, want) in table {
            assert_eq!(requests_binding(text), Some(*want), "{text}");
        }
    }

    #[test]
    fn m9_tricks_do_not_hide_a_request() {
        let table: &[(&str, BindingRequest)] = &[
            ("can you give me a dis\u{200B}count if I take 3?", Discount),
            ("ｃａｎ ｙｏｕ ｇｉｖｅ ｍｅ ａ ｄｉｓｃｏｕｎｔ", Discount),
            ("I want c o m p e n s a t i o n", Compensation),
            ("I want cоmpensation", Compensation), // Cyrillic о
            (
                "shop bo\u{301}t gia\u{301} cho mi\u{300}nh chu\u{301}t nha",
                Discount,
            ),
            ("shop phải bồi\u{00AD} thường", Compensation),
            ("要求賠\u{200B}償", Compensation),
        ];
        for (text, want) in table {
            assert_eq!(requests_binding(text), Some(*want), "{text:?}");
        }
        assert!(says_asked_before("I al\u{200B}ready asked"));
    }

    #[test]
    fn questions_about_what_exists_are_not_requests() {
        for text in [
            "is there any voucher this week?",
            "do you have free shipping?",
            "how much is the hoodie?",
            "ada promo gratis ongkir kak?",
            "có mã giảm giá không shop?",
            "มีโค้ดส่วนลดไหมคะ",
            "tem cupom de desconto?",
            "¿hay envío gratis?",
            "有优惠券吗？",
            "the discount code did not work at checkout",
            "where is my order?",
            "",
        ] {
            assert_eq!(requests_binding(text), None, "{text}");
        }
    }

    #[test]
    fn saying_it_was_asked_before_in_every_language() {
        for text in [
            "I asked already. WHEN does it actually ship?",
            "I already asked you this yesterday",
            "how many times do I have to ask",
            "sudah saya tanya kemarin, kapan dikirim?",
            "ถามไปแล้วนะคะ ของจะมาเมื่อไหร่",
            "Mình hỏi rồi mà, rốt cuộc khi nào mới giao tới???",
            "nagtanong na ako kahapon",
            "já perguntei isso ontem",
            "ya te pregunté ayer",
            "我已经问过了，什么时候发货？",
        ] {
            assert!(says_asked_before(text), "{text}");
        }
        for text in [
            "When will my keyboard ship?",
            "can I ask something about the size?",
            "mình muốn hỏi về size",
            "我想问一下尺码",
            "",
        ] {
            assert!(!says_asked_before(text), "{text}");
        }
    }
}
