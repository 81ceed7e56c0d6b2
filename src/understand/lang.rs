//! Language identification for short chat messages.
//!
//! kedai serves English, Thai, Indonesian, Vietnamese, Malay, Tagalog,
//! Portuguese, Spanish and Chinese; the detector also knows a few languages
//! buyers' messages are often mistaken for or written in (Japanese, Korean,
//! German, French, Arabic, Italian, Dutch, Turkish), so that such a message
//! is not forced into a supported one. `lingua` (in its default, high
//! accuracy mode) was chosen over `whatlang` by measurement on short texts;
//! see docs/quality.md and `kedai eval langid`.
//!
//! Malay and Indonesian share most of their vocabulary and spelling: a
//! short message is often valid in both, and the detector's choice between
//! them is a coin toss weighted by a few words (`tidak`/`tak`, `boleh`,
//! `saya mahu`). Callers that only need a reply language can treat `ms` and
//! `id` as one family ([`same_family`]). Taglish (Tagalog mixed with
//! English) is common; it is reported as whichever language dominates.

use std::sync::OnceLock;

use lingua::{Language, LanguageDetectorBuilder};
use serde::Serialize;

/// The languages kedai answers in, as ISO 639-1 codes.
pub const SUPPORTED: [&str; 9] = ["en", "th", "id", "vi", "ms", "tl", "pt", "es", "zh"];

const LINGUA_LANGUAGES: [Language; 17] = [
    Language::English,
    Language::Thai,
    Language::Indonesian,
    Language::Vietnamese,
    Language::Malay,
    Language::Tagalog,
    Language::Portuguese,
    Language::Spanish,
    Language::Chinese,
    Language::Japanese,
    Language::Korean,
    Language::German,
    Language::French,
    Language::Arabic,
    Language::Italian,
    Language::Dutch,
    Language::Turkish,
];

/// A detected language.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LanguageGuess {
    /// ISO 639-1 code, e.g. `id`.
    pub code: &'static str,
    /// The detector's relative confidence in (0, 1]; short or mixed texts
    /// score low.
    pub confidence: f32,
    /// Whether kedai answers in this language.
    pub supported: bool,
}

/// Which implementation detects; the evaluation compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// lingua with its n-gram models of lengths 1 to 5 (the one kedai uses).
    Lingua,
    /// lingua restricted to trigrams: faster, weaker on short texts.
    LinguaLowAccuracy,
    /// whatlang's trigram profiles; it has no Malay model.
    Whatlang,
}

impl Backend {
    pub const ALL: [Backend; 3] = [
        Backend::Lingua,
        Backend::LinguaLowAccuracy,
        Backend::Whatlang,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Lingua => "lingua",
            Backend::LinguaLowAccuracy => "lingua-low-accuracy",
            Backend::Whatlang => "whatlang",
        }
    }
}

/// A language detector over the languages above. Cheap to clone; the
/// lingua models are loaded once per process, on first use.
#[derive(Debug, Clone, Copy)]
pub struct LanguageDetector {
    backend: Backend,
}

impl Default for LanguageDetector {
    fn default() -> LanguageDetector {
        LanguageDetector::new(Backend::Lingua)
    }
}

impl LanguageDetector {
    pub fn new(backend: Backend) -> LanguageDetector {
        LanguageDetector { backend }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The most likely language of `text`, or `None` when the text has no
    /// letters to go by (empty, digits, emoji only).
    pub fn detect(&self, text: &str) -> Option<LanguageGuess> {
        if !text.chars().any(char::is_alphabetic) {
            return None;
        }
        let (code, confidence) = match self.backend {
            Backend::Lingua => lingua_guess(lingua_high(), text)?,
            Backend::LinguaLowAccuracy => lingua_guess(lingua_low(), text)?,
            Backend::Whatlang => {
                let info = whatlang_detector().detect(text)?;
                (whatlang_code(info.lang())?, info.confidence() as f32)
            }
        };
        Some(LanguageGuess {
            code,
            confidence,
            supported: SUPPORTED.contains(&code),
        })
    }
}

/// Whether two language codes are the same for replying purposes: equal,
/// or Malay and Indonesian.
pub fn same_family(a: &str, b: &str) -> bool {
    a == b || matches!((a, b), ("ms", "id") | ("id", "ms"))
}

/// Reduces a data set's tag (`pt-BR`, `zh-CN`, `fil`, `ind`) to the ISO
/// 639-1 code the detector reports, or `None` for languages it does not know.
pub fn normalise_code(tag: &str) -> Option<&'static str> {
    let base = tag
        .split(['-', '_'])
        .next()
        .unwrap_or(tag)
        .to_ascii_lowercase();
    let code = match base.as_str() {
        "fil" | "tgl" => "tl",
        "ind" | "in" => "id",
        "msa" | "zsm" | "may" => "ms",
        "cmn" | "zho" | "chi" => "zh",
        other => LINGUA_LANGUAGES
            .iter()
            .map(iso)
            .find(|code| *code == other)?,
    };
    Some(code)
}

fn iso(language: &Language) -> &'static str {
    match language {
        Language::English => "en",
        Language::Thai => "th",
        Language::Indonesian => "id",
        Language::Vietnamese => "vi",
        Language::Malay => "ms",
        Language::Tagalog => "tl",
        Language::Portuguese => "pt",
        Language::Spanish => "es",
        Language::Chinese => "zh",
        Language::Japanese => "ja",
        Language::Korean => "ko",
        Language::German => "de",
        Language::French => "fr",
        Language::Arabic => "ar",
        Language::Italian => "it",
        Language::Dutch => "nl",
        Language::Turkish => "tr",
    }
}

fn lingua_guess(detector: &lingua::LanguageDetector, text: &str) -> Option<(&'static str, f32)> {
    let values = detector.compute_language_confidence_values(text);
    let (first, _) = values.first()?;
    let not_tagalog = *first == Language::Tagalog && !has_tagalog_word(text);
    // Chat Indonesian and Malay ("kak yg ini ready stok ga?") lose to
    // Tagalog and English alike: with one of their chat words, the better
    // of the two is taken.
    let malay_family = not_tagalog && has_word(text, MALAY_FAMILY_WORDS, &[]);
    let (language, confidence) = values.iter().find(|(language, _)| match language {
        Language::Tagalog => !not_tagalog,
        Language::Indonesian | Language::Malay => true,
        _ => !malay_family,
    })?;
    if *confidence <= 0.0 {
        return None;
    }
    Some((iso(language), *confidence as f32))
}

/// Tagalog's everyday function words, one of which nearly every Tagalog
/// or Taglish chat message has ("magkano **po**", "meron **ba**", "**ang**
/// ganda"). lingua reads short English with a place name ("How many days
/// to Manila?") and Vietnamese without diacritics as Tagalog; without one of
/// these words its next guess is taken instead (which can still be wrong:
/// "How long to Penang?" is then read as Indonesian). Measured in docs/quality.md
/// ("Language identification").
const TAGALOG_WORDS: &[&str] = &[
    "po",
    "opo",
    "ba",
    "pa",
    "na",
    "ng",
    "nang",
    "ang",
    "mga",
    "ako",
    "ko",
    "ka",
    "kayo",
    "niyo",
    "nyo",
    "mo",
    "sa",
    "naman",
    "yung",
    "iyong",
    "lang",
    "lng",
    "kasi",
    "pwede",
    "puwede",
    "magkano",
    "ilan",
    "ilang",
    "saan",
    "san",
    "kailan",
    "paano",
    "pano",
    "bakit",
    "wala",
    "meron",
    "hindi",
    "di",
    "salamat",
    "sana",
    "talaga",
    "nga",
    "ito",
    "eto",
    "dito",
    "yan",
    "iyan",
    "din",
    "rin",
    "ano",
    "kung",
    "pag",
    "ay",
    "si",
    "kay",
    "natin",
    "namin",
    "nila",
    "siya",
    "sya",
    "akin",
    "inyo",
    "ninyo",
    "kami",
    "tayo",
    "sila",
    "ni",
    "pero",
    "kaya",
    "lahat",
    "anong",
    "baka",
    "alin",
    "mas",
    "o",
    "walang",
    "sakin",
    "agad",
    "isang",
    "ate",
    "kuya",
    "musta",
    "kumusta",
    "ayoko",
    "ayaw",
    "gusto",
    "sige",
    "medyo",
    "kailangan",
    "tsaka",
    "saka",
    "sira",
    "bayad",
    "padala",
    "dumating",
    "nasaan",
    "nasan",
    "kelan",
    "grabe",
];

/// Chat words of Indonesian and Malay that English and Tagalog lack.
const MALAY_FAMILY_WORDS: &[&str] = &[
    "kak",
    "yg",
    "ga",
    "gak",
    "nggak",
    "ngga",
    "dong",
    "sih",
    "aja",
    "udah",
    "sudah",
    "belum",
    "gimana",
    "bagaimana",
    "berapa",
    "brp",
    "bisa",
    "tak",
    "boleh",
    "nak",
    "dah",
    "tidak",
    "saya",
    "mau",
    "ada",
    "barang",
    "sampai",
    "kapan",
    "bila",
    "kenapa",
    "min",
    "gan",
    "sis",
    "lagi",
    "pesanan",
    "ongkir",
    "harga",
    "dengan",
    "untuk",
    "yang",
    "ini",
    "itu",
];

fn has_word(text: &str, words: &[&str], prefixes: &[&str]) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .any(|w| {
            let w = w.to_lowercase();
            words.contains(&w.as_str()) || prefixes.iter().any(|p| w.starts_with(p))
        })
}

fn has_tagalog_word(text: &str) -> bool {
    has_word(text, TAGALOG_WORDS, &["mag", "nag", "pinaka"])
}

fn lingua_high() -> &'static lingua::LanguageDetector {
    static DETECTOR: OnceLock<lingua::LanguageDetector> = OnceLock::new();
    DETECTOR.get_or_init(|| LanguageDetectorBuilder::from_languages(&LINGUA_LANGUAGES).build())
}

fn lingua_low() -> &'static lingua::LanguageDetector {
    static DETECTOR: OnceLock<lingua::LanguageDetector> = OnceLock::new();
    DETECTOR.get_or_init(|| {
        LanguageDetectorBuilder::from_languages(&LINGUA_LANGUAGES)
            .with_low_accuracy_mode()
            .build()
    })
}

fn whatlang_detector() -> &'static whatlang::Detector {
    static DETECTOR: OnceLock<whatlang::Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| {
        use whatlang::Lang::*;
        whatlang::Detector::with_allowlist(vec![
            Eng, Tha, Ind, Vie, Tgl, Por, Spa, Cmn, Jpn, Kor, Deu, Fra, Ara, Ita, Nld, Tur,
        ])
    })
}

fn whatlang_code(lang: whatlang::Lang) -> Option<&'static str> {
    use whatlang::Lang::*;
    Some(match lang {
        Eng => "en",
        Tha => "th",
        Ind => "id",
        Vie => "vi",
        Tgl => "tl",
        Por => "pt",
        Spa => "es",
        Cmn => "zh",
        Jpn => "ja",
        Kor => "ko",
        Deu => "de",
        Fra => "fr",
        Ara => "ar",
        Ita => "it",
        Nld => "nl",
        Tur => "tr",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_buyer_messages_in_every_supported_language() {
        let detector = LanguageDetector::default();
        let cases = [
            ("Where is my order? It has been five days already", "en"),
            ("สินค้าจะถึงเมื่อไหร่ครับ", "th"),
            ("Pesanan saya belum sampai, tolong dicek ya kak", "id"),
            ("Khi nào đơn hàng của tôi được giao?", "vi"),
            ("Saya nak tukar saiz baju ni, boleh tak?", "ms"),
            ("Kailan po darating yung order ko?", "tl"),
            ("Meu pedido chegou quebrado, quero reembolso", "pt"),
            ("¿Cuándo llega mi pedido? Ya pasó una semana", "es"),
            ("这个商品什么时候发货？", "zh"),
        ];
        for (text, want) in cases {
            let guess = detector.detect(text).expect("a guess");
            assert_eq!(guess.code, want, "{text}");
            assert!(guess.supported);
        }
    }

    #[test]
    fn english_with_a_place_name_is_not_read_as_tagalog_but_taglish_is_tagalog() {
        let detector = LanguageDetector::default();
        // lingua alone reads these as Tagalog: no Tagalog word in them.
        for text in [
            "How many days to Manila?",
            "How long to Penang? How much is shipping?",
        ] {
            assert_eq!(detector.detect(text).unwrap().code, "en", "{text}");
        }
        for text in [
            "magkano po shipping to Davao?",
            "pwede po ba COD?",
            "alin mas matibay, silicone o leather?",
        ] {
            assert_eq!(detector.detect(text).unwrap().code, "tl", "{text}");
        }
        // Chat Indonesian that lingua reads as Tagalog, then English.
        let guess = detector.detect("kak yg ini ready stok ga?").unwrap();
        assert!(same_family(guess.code, "id"), "{guess:?}");
    }

    #[test]
    fn nothing_to_go_by_gives_no_guess() {
        let detector = LanguageDetector::default();
        for text in ["", "   ", "12345", "👍👍🙏", "!!!"] {
            assert_eq!(detector.detect(text), None, "{text:?}");
        }
    }

    #[test]
    fn data_set_tags_are_normalised() {
        assert_eq!(normalise_code("pt-BR"), Some("pt"));
        assert_eq!(normalise_code("zh_CN"), Some("zh"));
        assert_eq!(normalise_code("fil"), Some("tl"));
        assert_eq!(normalise_code("ms"), Some("ms"));
        assert_eq!(normalise_code("kk"), None);
        assert!(same_family("ms", "id"));
        assert!(!same_family("ms", "tl"));
    }
}
