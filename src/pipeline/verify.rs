//! Verification of machine-written text before it may reach a buyer
//! without a person: a translation of the seller's answer must say what the
//! source says, and a drafted reply may state only what its sources state.
//!
//! Checks are independent and all recorded, so a person reading a draft
//! sees why it was not sent:
//! - **language**: the text is in the buyer's language;
//! - **meaning** (translations): cross-lingual similarity of source and
//!   translation reaches a calibrated threshold, and no other retrieved
//!   answer is closer to the translation than its own source;
//! - **facts**: every number of the source is in the translation; every
//!   number of a draft comes from its sources or the order record;
//! - **binding**: a translation mentions refunds, discounts or other binding
//!   actions only when the source does;
//! - **fluency**: no word stuttered twice, a plausible length;
//! - **guard**: the output guard's findings (links, other buyers' data,
//!   leaked instructions, echoes, binding words in drafts).
//!
//! Pure functions over precomputed vectors; the caller embeds.

use serde::Serialize;

use super::guard::Violation;
use crate::understand::lang::LanguageDetector;

/// Lowest cosine similarity (e5, passage to passage) between a source
/// answer and its translation. Measured on our own parallel set
/// (`kb/eval/translations.jsonl`, `kedai eval translations`): see
/// docs/quality.md, "Translation verification".
pub const MEANING_MIN_SIMILARITY: f32 = 0.80;

/// How much closer to its own source than to any other retrieved answer a
/// translation must be.
pub const MEANING_MARGIN: f32 = 0.0;

/// One check and what it found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Check {
    Language {
        expected: String,
        found: Option<String>,
        passed: bool,
    },
    Meaning {
        similarity: f32,
        threshold: f32,
        /// The best similarity of the text to another retrieved answer.
        closest_other: Option<f32>,
        passed: bool,
    },
    Facts {
        /// Numbers the text should carry (translations) or may not invent
        /// (drafts) that were missing or unsupported.
        problems: Vec<String>,
        passed: bool,
    },
    Binding {
        violations: Vec<Violation>,
        passed: bool,
    },
    Fluency {
        problem: Option<String>,
        passed: bool,
    },
    Guard {
        violations: Vec<Violation>,
        passed: bool,
    },
}

impl Check {
    pub fn passed(&self) -> bool {
        match self {
            Check::Language { passed, .. }
            | Check::Meaning { passed, .. }
            | Check::Facts { passed, .. }
            | Check::Binding { passed, .. }
            | Check::Fluency { passed, .. }
            | Check::Guard { passed, .. } => *passed,
        }
    }
}

/// Every check a text went through.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub passed: bool,
    pub checks: Vec<Check>,
}

impl Verification {
    pub fn from_checks(checks: Vec<Check>) -> Verification {
        Verification {
            passed: checks.iter().all(Check::passed),
            checks,
        }
    }

    /// The guard's violations among the checks.
    pub fn violations(&self) -> Vec<Violation> {
        self.checks
            .iter()
            .flat_map(|c| match c {
                Check::Guard { violations, .. } | Check::Binding { violations, .. } => {
                    violations.clone()
                }
                _ => Vec::new(),
            })
            .collect()
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// The language check: the detector's guess for `text` is `expected` (or
/// of the same family: Malay for Indonesian). Text too short to tell is
/// given the benefit of the doubt only when it holds no letters at all.
pub fn language(detector: &LanguageDetector, text: &str, expected: &str) -> Check {
    let found = detector.detect(text).map(|g| g.code.to_string());
    let passed = match &found {
        Some(code) => code == expected || crate::understand::lang::same_family(code, expected),
        None => !text.chars().any(char::is_alphabetic),
    };
    Check::Language {
        expected: expected.to_string(),
        found,
        passed,
    }
}

/// The meaning check from vectors: `source` and `translation` are the two
/// texts' vectors, `others` those of the other answers retrieved for the
/// message.
pub fn meaning(source: &[f32], translation: &[f32], others: &[Vec<f32>]) -> Check {
    let similarity = cosine(source, translation);
    let closest_other = others
        .iter()
        .map(|o| cosine(o, translation))
        .fold(None, |best: Option<f32>, s| {
            Some(best.map_or(s, |b| b.max(s)))
        });
    let passed = similarity >= MEANING_MIN_SIMILARITY
        && closest_other.is_none_or(|other| similarity > other + MEANING_MARGIN);
    Check::Meaning {
        similarity: (similarity * 1000.0).round() / 1000.0,
        threshold: MEANING_MIN_SIMILARITY,
        closest_other: closest_other.map(|s| (s * 1000.0).round() / 1000.0),
        passed,
    }
}

/// Numbers in a text, as digit strings: locale digits (Thai, fullwidth,
/// Arabic-Indic) read as ASCII, thousands separators dropped ("10,000" and
/// "10.000" are "10000"), decimals kept ("1.5").
pub fn numbers(text: &str) -> Vec<String> {
    let digits: String = text
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(_) if c.is_ascii_digit() => c,
            _ => unicode_digit(c).unwrap_or(c),
        })
        .collect();
    let chars: Vec<char> = digits.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut groups = vec![String::new()];
        let mut seps = Vec::new();
        while i < chars.len() {
            let c = chars[i];
            if c.is_ascii_digit() {
                groups.last_mut().expect("one group").push(c);
                i += 1;
            } else if (c == ',' || c == '.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                seps.push(c);
                groups.push(String::new());
                i += 1;
            } else {
                break;
            }
        }
        out.push(join_number(&groups, &seps));
    }
    out
}

/// "10,000" and "10.000" -> "10000" (every later group three digits);
/// otherwise the last separator is a decimal point: "1.5", "2,5" -> "2.5".
fn join_number(groups: &[String], seps: &[char]) -> String {
    if groups.len() == 1 {
        return groups[0].clone();
    }
    let thousands = groups[1..].iter().all(|g| g.len() == 3)
        && seps.iter().all(|s| *s == seps[0])
        && groups[0].len() <= 3;
    if thousands {
        return groups.concat();
    }
    let (int, frac) = groups.split_at(groups.len() - 1);
    format!("{}.{}", int.concat(), frac[0])
}

fn unicode_digit(c: char) -> Option<char> {
    let zero = match c as u32 {
        0x0E50..=0x0E59 => 0x0E50, // Thai
        0xFF10..=0xFF19 => 0xFF10, // fullwidth
        0x0660..=0x0669 => 0x0660, // Arabic-Indic
        0x06F0..=0x06F9 => 0x06F0, // Extended Arabic-Indic
        0x0966..=0x096F => 0x0966, // Devanagari
        _ => return None,
    };
    char::from_digit(c as u32 - zero, 10)
}

/// Facts check of a translation: every number of the source is in it, as
/// often as in the source ("4-8 days ... 2-4 days longer" needs two 4s).
pub fn facts_kept(source: &str, translation: &str) -> Check {
    let mut have = numbers(translation);
    let mut problems = Vec::new();
    for n in numbers(source) {
        match have.iter().position(|h| *h == n) {
            Some(i) => {
                have.swap_remove(i);
            }
            None => problems.push(format!("missing {n}")),
        }
    }
    Check::Facts {
        passed: problems.is_empty(),
        problems,
    }
}

/// Facts check of a draft: every number in it comes from `allowed` (the
/// sources, the order record, the buyer's own words).
pub fn facts_supported(draft: &str, allowed: &[&str]) -> Check {
    let known: Vec<String> = allowed.iter().flat_map(|t| numbers(t)).collect();
    let problems: Vec<String> = numbers(draft)
        .into_iter()
        .filter(|n| !known.contains(n))
        .map(|n| format!("unsupported {n}"))
        .collect();
    Check::Facts {
        passed: problems.is_empty(),
        problems,
    }
}

/// Plausible length of a translation of an English text, relative to it,
/// in characters. Our faithful translations (`kb/eval/translations.jsonl`)
/// measured 0.93-1.34 in Latin scripts, 0.75-0.91 in Thai and 0.30-0.45 in
/// Chinese; the bounds leave room around those and catch a translation cut
/// in half.
fn length_ratio_bounds(target_lang: &str) -> (f32, f32) {
    match target_lang {
        "zh" | "ja" | "ko" => (0.22, 0.8),
        "th" => (0.5, 1.6),
        _ => (0.7, 2.0),
    }
}

/// Fluency: a word repeated back to back ("walaupun walaupun"), or a length
/// far from the source's.
pub fn fluency(text: &str, source_chars: Option<usize>, target_lang: &str) -> Check {
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | ';' | ':'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let stutter = words.windows(2).find(|pair| {
        pair[0] == pair[1]
            && pair[0].chars().count() >= 3
            && !pair[0].chars().all(|c| c.is_ascii_digit())
    });
    let problem = if let Some(pair) = stutter {
        Some(format!("repeats {:?}", pair[0]))
    } else if let Some(source_chars) = source_chars.filter(|n| *n > 0) {
        let ratio = text.chars().count() as f32 / source_chars as f32;
        let (low, high) = length_ratio_bounds(target_lang);
        (!(low..=high).contains(&ratio)).then(|| format!("length ratio {ratio:.2}"))
    } else {
        None
    };
    Check::Fluency {
        passed: problem.is_none(),
        problem,
    }
}

/// Binding words in a translation that the source does not have.
pub fn binding_added(source_violations: &[Violation], translation: &[Violation]) -> Check {
    let source_binds = source_violations
        .iter()
        .any(|v| matches!(v, Violation::BindingAction { .. }));
    let added: Vec<Violation> = translation
        .iter()
        .filter(|v| matches!(v, Violation::BindingAction { .. }))
        .filter(|_| !source_binds)
        .cloned()
        .collect();
    Check::Binding {
        passed: added.is_empty(),
        violations: added,
    }
}

/// The guard's findings as a check, leaving binding words to
/// [`binding_added`] for translations.
pub fn guard(violations: Vec<Violation>) -> Check {
    Check::Guard {
        passed: violations.is_empty(),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_locale_digits_and_separators() {
        assert_eq!(numbers("3-6 days"), ["3", "6"]);
        assert_eq!(numbers("Rp 50.000 atau Rp50,000"), ["50000", "50000"]);
        assert_eq!(numbers("1.5 kg, 2,5 kg"), ["1.5", "2.5"]);
        assert_eq!(numbers("๓-๖ วัน"), ["3", "6"]);
        assert_eq!(numbers("ＲＭ１０"), ["10"]);
        assert_eq!(numbers("10,000 mAh 20W"), ["10000", "20"]);
        assert!(numbers("no digits").is_empty());
    }

    #[test]
    fn a_translation_must_keep_every_number() {
        let source = "Returns are accepted within 7 days; refunds take 3-5 days.";
        assert!(facts_kept(
            source,
            "Retur diterima dalam 7 hari; dana kembali 3-5 hari."
        )
        .passed());
        let check = facts_kept(source, "Retur diterima dalam 14 hari.");
        assert!(!check.passed());
        assert_eq!(
            check,
            Check::Facts {
                problems: vec!["missing 7".into(), "missing 3".into(), "missing 5".into()],
                passed: false
            }
        );
    }

    #[test]
    fn a_draft_may_only_state_numbers_from_its_sources() {
        let sources = [
            "Parcels to Thailand take 5-9 days.",
            "Order SPE-1 is shipped.",
        ];
        assert!(facts_supported("It takes 5-9 days to Thailand.", &sources).passed());
        assert!(!facts_supported("It takes 2 days, and you get 10% off.", &sources).passed());
    }

    #[test]
    fn stutters_and_odd_lengths_fail_fluency() {
        assert!(!fluency("berbelanja dari walaupun walaupun warna", None, "id").passed());
        assert!(fluency("Ukuran XL masih ada, kak.", Some(30), "id").passed());
        assert!(!fluency("Ya.", Some(200), "id").passed());
        assert!(fluency("可以退货，七天内。", Some(30), "zh").passed());
        assert!(
            fluency("3 3 days", None, "en").passed(),
            "numbers may repeat"
        );
    }

    #[test]
    fn meaning_needs_the_threshold_and_the_source_to_be_nearest() {
        let source = [1.0, 0.0, 0.0];
        let close = [0.95, 0.3, 0.0];
        let far = [0.5, 0.86, 0.0];
        assert!(meaning(&source, &close, &[]).passed());
        assert!(!meaning(&source, &far, &[]).passed());
        let other = vec![vec![0.9, 0.43, 0.0]];
        assert!(
            !meaning(&source, &close, &other).passed(),
            "another answer says it better"
        );
    }

    #[test]
    fn m1_binding_words_are_allowed_only_when_the_source_has_them() {
        let refund = Violation::BindingAction {
            term: "refund".into(),
        };
        assert!(!binding_added(&[], std::slice::from_ref(&refund)).passed());
        assert!(
            binding_added(std::slice::from_ref(&refund), std::slice::from_ref(&refund)).passed()
        );
        assert!(binding_added(&[], &[]).passed());
    }
}
