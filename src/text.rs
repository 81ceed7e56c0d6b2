//! The matching view of a text: what every text check in kedai (the reply
//! guard, binding requests, prompt-injection detection, facts) looks at
//! instead of the raw characters, so that the same words match however they
//! were typed.
//!
//! [`fold`] turns a text into that view: NFKC (fullwidth letters and digits,
//! ligatures, compatibility forms become their plain forms), every decimal
//! digit of any script as its ASCII digit (Thai `๒๐` is `20`), format and
//! other default-ignorable characters removed (zero-width space and joiner,
//! bidi overrides, soft hyphen), look-alike letters of other scripts inside
//! a Latin word replaced by their Latin prototype (UTS #39 skeletons:
//! Cyrillic `е` in `rеfund`), lower case, diacritics removed from Latin
//! letters only (`trả lại tiền` is `tra lai tien`, `đ` is `d`, NFD input
//! included) while the marks of other scripts stay (Thai vowels and tone
//! marks are combining marks that change the word), and every run of white
//! space as one space, or one line break when it held one. [`squeeze`]
//! adds a second view for words typed apart: runs of single letters joined
//! (`r e f u n d`) and separators inside words dropped (`re-fund`).
//!
//! Patterns are folded the same way as the texts they match
//! ([`fold_pattern`], [`Patterns`]), so a pattern is written once, in the
//! words a person would type, diacritics and all.
//!
//! Pure functions over strings: no I/O, no models; this module knows
//! nothing of what the checks built on it decide.

use regex::Regex;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};
use unicode_script::{Script, UnicodeScript};

/// The folded text and its squeezed view, for matching a text against
/// [`Patterns`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    /// [`fold`] of the text.
    pub text: String,
    /// [`squeeze`] of the folded text.
    pub squeezed: String,
}

impl Folded {
    pub fn new(raw: &str) -> Folded {
        let text = fold(raw);
        let squeezed = squeeze(&text);
        Folded { text, squeezed }
    }

    /// The distinct views, the folded text first.
    pub fn views(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.text.as_str())
            .chain((self.squeezed != self.text).then_some(self.squeezed.as_str()))
    }
}

/// The matching view of `text` (see the module documentation).
pub fn fold(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    for c in text.nfkc() {
        if is_ignorable(c) {
            continue;
        }
        match digit_value(c) {
            Some(d) => plain.push(char::from_digit(d, 10).expect("a digit")),
            None => plain.push(c),
        }
    }
    let lower = latin_lookalikes(&plain).to_lowercase();
    let mut bare = String::with_capacity(lower.len());
    let mut after_latin = false;
    for c in lower.nfd() {
        if is_mark(c) {
            if !after_latin {
                bare.push(c);
            }
            continue;
        }
        let c = match c {
            'đ' | 'ð' => 'd',
            'ł' => 'l',
            'ø' => 'o',
            'ħ' => 'h',
            'ı' => 'i',
            other => other,
        };
        after_latin = c.is_ascii_alphabetic();
        bare.push(c);
    }
    collapse_white_space(bare.nfc())
}

/// The squeezed view of a folded text: runs of three or more single
/// letters, each alone between separators (`r e f u n d`, `r.e.f.u.n.d`),
/// joined into one word, and `-`, `_`, `.`, `·` or `*` between two letters
/// dropped (`re-fund`, `dis.count`). Matched besides the folded text, never
/// instead of it: it joins words that belong apart.
pub fn squeeze(folded: &str) -> String {
    let units = units(folded);
    let mut out = String::with_capacity(folded.len());
    let mut i = 0;
    while i < units.len() {
        let run = single_letter_run(&units, i);
        if run >= 3 {
            for k in 0..run {
                out.push_str(units[i + 2 * k]);
            }
            i += 2 * run - 1;
            continue;
        }
        let unit = units[i];
        let inner_separator = unit.chars().count() == 1
            && matches!(unit, "-" | "_" | "." | "·" | "*")
            && i > 0
            && i + 1 < units.len()
            && is_letter_unit(units[i - 1])
            && is_letter_unit(units[i + 1]);
        if !inner_separator {
            out.push_str(unit);
        }
        i += 1;
    }
    out
}

/// How many single-letter units alternate with one-character separators
/// from `units[start]`, each letter standing alone (not part of a longer
/// word); 0 when `units[start]` is not such a letter.
fn single_letter_run(units: &[&str], start: usize) -> usize {
    let alone_before = start == 0 || is_separator_unit(units[start - 1]);
    if !alone_before {
        return 0;
    }
    let mut count = 0;
    let mut i = start;
    while i < units.len() && is_letter_unit(units[i]) {
        let alone_after = i + 1 == units.len() || is_separator_unit(units[i + 1]);
        if !alone_after {
            break;
        }
        count += 1;
        let next_letter = i + 2;
        if next_letter < units.len()
            && is_letter_unit(units[next_letter])
            && (next_letter + 1 == units.len() || is_separator_unit(units[next_letter + 1]))
        {
            i = next_letter;
        } else {
            break;
        }
    }
    count
}

/// `text` cut into units: a character with the combining marks after it.
fn units(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if i > start && !is_mark(c) {
            out.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn is_letter_unit(unit: &str) -> bool {
    unit.chars().next().is_some_and(char::is_alphabetic)
}

fn is_separator_unit(unit: &str) -> bool {
    matches!(
        unit,
        " " | "-" | "_" | "." | "·" | "*" | "/" | "," | "|" | "~" | "+"
    )
}

/// `pattern` (a `regex` pattern) folded like the texts it is matched
/// against: its literal characters go through [`fold`]'s steps, escapes
/// (`\b`, `\s`, `\d`, `\.`) are kept as they are, and a literal space
/// becomes `\s`, which matches the one space or line break that folded
/// text has between words.
pub fn fold_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut literal = String::new();
    let mut chars = pattern.chars();
    let flush = |literal: &mut String, out: &mut String| {
        if !literal.is_empty() {
            // A literal piece holds no white space, which `fold` would trim.
            out.push_str(&fold(literal));
            literal.clear();
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                flush(&mut literal, &mut out);
                out.push('\\');
                if let Some(escaped) = chars.next() {
                    out.push(escaped);
                }
            }
            ' ' => {
                flush(&mut literal, &mut out);
                out.push_str(r"\s");
            }
            other => literal.push(other),
        }
    }
    flush(&mut literal, &mut out);
    out
}

/// Compiled patterns matched against a [`Folded`] text's views.
#[derive(Debug, Clone)]
pub struct Patterns {
    patterns: Vec<Regex>,
}

impl Patterns {
    /// Folds and compiles `patterns`; they are kedai's own, so an invalid
    /// one is a bug and panics (every set is compiled in a unit test).
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Patterns {
        Patterns {
            patterns: patterns.into_iter().map(folded_regex).collect(),
        }
    }

    /// The first match in either view of `text`, as it reads in that view.
    pub fn find<'t>(&self, text: &'t Folded) -> Option<&'t str> {
        text.views().find_map(|view| self.find_in(view))
    }

    /// The first match in one view (a folded or squeezed text).
    pub fn find_in<'t>(&self, view: &'t str) -> Option<&'t str> {
        self.patterns
            .iter()
            .find_map(|re| re.find(view))
            .map(|m| m.as_str())
    }

    /// `view` with every match replaced by a space.
    pub fn blank_out(&self, view: &str) -> String {
        let mut out = view.to_string();
        for re in &self.patterns {
            if re.is_match(&out) {
                out = re.replace_all(&out, " ").into_owned();
            }
        }
        out
    }

    pub fn is_match(&self, text: &Folded) -> bool {
        self.find(text).is_some()
    }
}

/// One of kedai's own patterns, folded and compiled.
pub fn folded_regex(pattern: &str) -> Regex {
    let folded = fold_pattern(pattern);
    Regex::new(&folded).unwrap_or_else(|e| panic!("pattern {pattern:?} ({folded:?}): {e}"))
}

/// Characters that change nothing a reader sees but break words apart for
/// a matcher: format characters (zero-width space and joiners, bidi
/// embeddings, overrides and isolates, the soft hyphen, the BOM), the other
/// default-ignorable code points (variation selectors, fillers), and
/// control characters other than white space.
pub fn is_ignorable(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control() && !c.is_ascii_whitespace();
    }
    match c.general_category() {
        GeneralCategory::Format => true,
        GeneralCategory::Control => !c.is_whitespace(),
        // The other default-ignorable code points (variation selectors, the
        // combining grapheme joiner, Hangul fillers, Khmer and Mongolian
        // marks, unassigned ones) belong to these scripts; UTS #39
        // skeletons drop exactly the default-ignorable ones. Asking the
        // script first keeps Thai and Chinese text off the slower lookup.
        _ => {
            matches!(
                c.script(),
                Script::Inherited
                    | Script::Common
                    | Script::Unknown
                    | Script::Hangul
                    | Script::Khmer
                    | Script::Mongolian
            ) && unicode_security::skeleton(c.encode_utf8(&mut [0; 4]))
                .next()
                .is_none()
        }
    }
}

/// Bidi embeddings, overrides and isolates (U+202A-U+202E,
/// U+2066-U+2069): they reorder how the text around them is displayed.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The value of a decimal digit of any script (ASCII, fullwidth, Thai,
/// Arabic-Indic, mathematical...). Unicode assigns every script's digits
/// as one run of ten code points, zero first, so the value is the distance
/// from the start of the run of decimal digits `c` belongs to, modulo 10.
pub fn digit_value(c: char) -> Option<u32> {
    if let Some(d) = c.to_digit(10) {
        return Some(d);
    }
    if c.is_ascii() || c.general_category() != GeneralCategory::DecimalNumber {
        return None;
    }
    let mut start = c as u32;
    while start > 0 {
        match char::from_u32(start - 1) {
            Some(prev) if prev.general_category() == GeneralCategory::DecimalNumber => start -= 1,
            _ => break,
        }
    }
    Some((c as u32 - start) % 10)
}

fn is_mark(c: char) -> bool {
    !c.is_ascii() && c.general_category_group() == GeneralCategoryGroup::Mark
}

/// Letters that look like ASCII ones (Cyrillic `е`, Greek `ο`), inside a
/// word that also has Latin letters, replaced by the ASCII letter their
/// UTS #39 skeleton is. Words wholly in another script are left alone:
/// they are words of that language.
fn latin_lookalikes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word
            .chars()
            .any(|c| c.is_ascii_alphabetic() || c.script() == Script::Latin)
        {
            for c in word.chars() {
                out.push(latin_prototype(c).unwrap_or(c));
            }
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() || is_mark(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The ASCII letter `c` is confusable with, for a non-ASCII letter of a
/// script that borrows Latin shapes.
fn latin_prototype(c: char) -> Option<char> {
    if c.is_ascii() || !c.is_alphabetic() {
        return None;
    }
    if matches!(
        c.script(),
        Script::Thai
            | Script::Han
            | Script::Hiragana
            | Script::Katakana
            | Script::Hangul
            | Script::Lao
            | Script::Khmer
            | Script::Myanmar
    ) {
        return None;
    }
    let mut buffer = [0; 4];
    let mut skeleton = unicode_security::skeleton(c.encode_utf8(&mut buffer));
    match (skeleton.next(), skeleton.next()) {
        (Some(p), None) if p.is_ascii_alphabetic() => Some(p),
        _ => None,
    }
}

/// Every run of white space as one space, or one line break when the run
/// held a line break; trimmed.
fn collapse_white_space(chars: impl Iterator<Item = char>) -> String {
    let mut out = String::new();
    let mut pending: Option<char> = None;
    for c in chars {
        if c.is_whitespace() {
            let breaks = matches!(
                c,
                '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
            );
            pending = Some(match pending {
                Some('\n') => '\n',
                _ if breaks => '\n',
                _ => ' ',
            });
            continue;
        }
        if let Some(space) = pending.take() {
            if !out.is_empty() {
                out.push(space);
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_table() {
        let rows: &[(&str, &str, &str)] = &[
            ("plain", "Refund", "refund"),
            ("fullwidth letters", "ｒｅｆｕｎｄ", "refund"),
            ("fullwidth digits and sign", "４１１１％", "4111%"),
            ("zero-width space", "re\u{200B}fund", "refund"),
            (
                "zero-width joiner and non-joiner",
                "dis\u{200D}co\u{200C}unt",
                "discount",
            ),
            ("soft hyphen", "vou\u{00AD}cher", "voucher"),
            ("word joiner and BOM", "\u{FEFF}ca\u{2060}ncel", "cancel"),
            ("bidi override", "\u{202E}dnufer\u{202C}", "dnufer"),
            ("variation selector", "ok\u{FE0F}", "ok"),
            ("Cyrillic look-alike in a Latin word", "rеfund", "refund"),
            ("Greek look-alike", "cοupon", "coupon"),
            ("capital Cyrillic look-alike", "СOUPON now", "coupon now"),
            ("a Russian word stays", "Возврат", "возврат"),
            ("mathematical bold", "𝐫𝐞𝐟𝐮𝐧𝐝", "refund"),
            ("circled letters", "ⓡⓔⓕⓤⓝⓓ", "refund"),
            ("Vietnamese", "Trả lại tiền", "tra lai tien"),
            ("Vietnamese đ", "Đơn hàng đã hủy", "don hang da huy"),
            (
                "Vietnamese NFD",
                "tra\u{309} la\u{323}i tie\u{302}\u{300}n",
                "tra lai tien",
            ),
            (
                "Portuguese",
                "DEVOLUÇÃO do dinheiro",
                "devolucao do dinheiro",
            ),
            ("Spanish", "reembolsaré más", "reembolsare mas"),
            ("Thai keeps its marks", "คืนเงินให้ค่ะ", "คืนเงินให้ค่ะ"),
            ("Thai digits", "ลด ๒๐%", "ลด 20%"),
            (
                "Thai sara am is decomposed the same way for both",
                "ทำ",
                "ทํา",
            ),
            ("Arabic-Indic digits", "٤١١١", "4111"),
            ("Chinese punctuation", "退款，好吗？", "退款,好吗?"),
            ("Traditional Chinese is kept", "退錢", "退錢"),
            (
                "no-break and thin spaces",
                "10\u{00A0}%\u{2009}off",
                "10 % off",
            ),
            ("runs of spaces", "  a \t  b  ", "a b"),
            ("line breaks kept as one", "a \n\n  b\u{2028}c", "a\nb\nc"),
            ("ideographic space", "打八折\u{3000}吧", "打八折 吧"),
            ("ligature", "ﬁve", "five"),
            ("empty", "", ""),
            ("only ignorables", "\u{200B}\u{200D}", ""),
        ];
        for (name, raw, want) in rows {
            assert_eq!(fold(raw), *want, "{name}: {raw:?}");
        }
    }

    #[test]
    fn folding_is_idempotent() {
        for raw in [
            "Trả lại tiền ｒｅｆｕｎｄ ๒๐ คืนเงิน 打八折 rеfund",
            "ทำ ทํา ฿199 Rp 50.000",
        ] {
            let once = fold(raw);
            assert_eq!(fold(&once), once, "{raw}");
        }
    }

    #[test]
    fn squeezing_joins_letters_typed_apart() {
        let rows: &[(&str, &str)] = &[
            ("r e f u n d", "refund"),
            ("we will r e f u n d you", "we will refund you"),
            ("r.e.f.u.n.d", "refund"),
            ("r-e-f-u-n-d ok", "refund ok"),
            ("re-fund", "refund"),
            ("dis.count", "discount"),
            ("a b", "a b"),
            ("i am a b c", "i am abc"),
            ("size 3-5 days", "size 3-5 days"),
            ("1.5 kg", "1.5 kg"),
            ("i-refund", "irefund"),
            ("คืน เงิน", "คืน เงิน"),
        ];
        for (folded, want) in rows {
            assert_eq!(squeeze(folded), *want, "{folded}");
        }
    }

    #[test]
    fn patterns_are_folded_like_text() {
        assert_eq!(fold_pattern(r"\bTrả lại\s+tiền\b"), r"\btra\slai\s+tien\b");
        assert_eq!(fold_pattern(r"\S+\W\D\B"), r"\S+\W\D\B");
        assert_eq!(fold_pattern("ทำ(?:ให้)?"), "ทํา(?:ให้)?");
        assert_eq!(fold_pattern("[A-Z]{2,5}"), "[a-z]{2,5}");
        let patterns = Patterns::new(["hoàn tiền", "คืนเงิน", "ทำให้"]);
        for text in [
            "Shop sẽ HOÀN TIỀN",
            "shop se hoan tien",
            "ho\u{200B}àn tiền",
            "คืน\u{200B}เงินให้",
            "เราทำให้ได้",
        ] {
            assert!(patterns.is_match(&Folded::new(text)), "{text}");
        }
        assert!(!patterns.is_match(&Folded::new("hoan toan")));
        // Thai marks are not folded away: ทำ is not ทา, ให้ is not ให.
        let thai = Patterns::new(["ทำ", "ให้"]);
        assert!(!thai.is_match(&Folded::new("ทาใหม่")));
    }

    #[test]
    fn the_squeezed_view_is_matched_too() {
        let patterns = Patterns::new([r"\brefund\b"]);
        for text in [
            "R E F U N D",
            "r e f u n d today",
            "re-fund",
            "ｒ ｅ ｆ ｕ ｎ ｄ",
        ] {
            assert!(patterns.is_match(&Folded::new(text)), "{text}");
        }
        assert!(!patterns.is_match(&Folded::new("ref und")));
    }

    #[test]
    fn digits_of_every_script() {
        for (c, want) in [
            ('7', 7),
            ('７', 7),
            ('๗', 7),
            ('٧', 7),
            ('۷', 7),
            ('७', 7),
            ('𝟕', 7),
            ('𝟗', 9),
            ('𝟬', 0),
            ('໓', 3),
            ('០', 0),
        ] {
            assert_eq!(digit_value(c), Some(want), "{c}");
        }
        for c in ['a', '½', '²', '一', 'Ⅶ'] {
            assert_eq!(digit_value(c), None, "{c}");
        }
    }

    #[test]
    fn hostile_input_never_panics() {
        let long = "ｒ ".repeat(10_000);
        for text in [
            "\u{0}\u{1}",
            "\u{301}\u{301}\u{301}",
            "a\u{301}\u{301}\u{301}",
            "- - - -",
            long.as_str(),
            "😀‍😀",
            "\u{10FFFF}",
        ] {
            let folded = Folded::new(text);
            let _ = folded.views().count();
        }
    }
}
