//! Text analysis for the BM25 index: which analyser each field uses.
//!
//! Every text goes into `text` (words split on non-alphanumerics, lower
//! case, accents folded, so "giao hàng" meets "giao hang") and into `cjk`
//! (character bigrams of Thai, Lao, Khmer, Myanmar, Chinese and Japanese
//! runs, scripts written without spaces between words). Entries in a
//! language Tantivy has a stemmer for (English, Portuguese, Spanish) also go
//! into that language's stemmed field. A query is analysed for every field,
//! since its language is not known.

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, Token, TokenStream, Tokenizer, TokenizerManager,
};

pub const TEXT: &str = "kedai_text";
pub const CJK: &str = "kedai_cjk";

/// (field and analyser name, Tantivy stemmer, the kb language it serves).
pub const STEMMED: [(&str, Language, &str); 3] = [
    ("text_en", Language::English, "en"),
    ("text_pt", Language::Portuguese, "pt"),
    ("text_es", Language::Spanish, "es"),
];

/// Function words of the shop's languages, accents folded, dropped from the
/// all-language `text` field. Buyers' questions are mostly such words
/// ("how do I ...", "apakah bisa ..."): left in, they make BM25 rank entries
/// that share nothing but grammar with the question, which drowns the dense
/// component's cross-lingual hits in the fusion. Content words that a
/// folded form could also mean in some language are left out of the list.
const FUNCTION_WORDS: &[&str] = &[
    // English
    "a",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "been",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "for",
    "from",
    "had",
    "has",
    "have",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "me",
    "my",
    "of",
    "on",
    "or",
    "our",
    "please",
    "should",
    "so",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "to",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "who",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    // Indonesian, Malay
    "ada",
    "akan",
    "apa",
    "apakah",
    "atau",
    "bagaimana",
    "berapa",
    "bisa",
    "boleh",
    "dan",
    "dari",
    "dengan",
    "di",
    "ini",
    "itu",
    "juga",
    "ke",
    "kak",
    "kalau",
    "mau",
    "nya",
    "pada",
    "saya",
    "sudah",
    "untuk",
    "yang",
    "ya",
    "gan",
    // Portuguese, Spanish
    "as",
    "com",
    "como",
    "da",
    "das",
    "de",
    "del",
    "do",
    "dos",
    "e",
    "el",
    "em",
    "en",
    "es",
    "eu",
    "la",
    "las",
    "lo",
    "los",
    "meu",
    "minha",
    "mi",
    "na",
    "no",
    "nos",
    "o",
    "os",
    "para",
    "por",
    "que",
    "se",
    "um",
    "uma",
    "un",
    "una",
    "y",
    "yo",
    // Tagalog
    "ang",
    "ako",
    "ba",
    "ko",
    "mga",
    "na",
    "ng",
    "po",
    "sa",
    // Vietnamese (folded)
    "cua",
    "toi",
    "va",
    "co",
    "khong",
    "duoc",
    "cac",
    "nhung",
    "nay",
    "thi",
    "voi",
    "cho",
    "dang",
    "da",
    "se",
    "bi",
    "nao",
    "gi",
    "khi",
];

fn function_words() -> StopWordFilter {
    StopWordFilter::remove(FUNCTION_WORDS.iter().map(|w| (*w).to_owned()))
}

/// Registers kedai's analysers with an index's tokenizer manager.
pub fn register(manager: &TokenizerManager) {
    manager.register(
        TEXT,
        TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .filter(function_words())
            .build(),
    );
    manager.register(CJK, TextAnalyzer::from(ScriptBigrams));
    for (name, language, _) in STEMMED {
        let stop_words =
            StopWordFilter::new(language).unwrap_or_else(|| StopWordFilter::remove(Vec::new()));
        manager.register(
            name,
            TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(RemoveLongFilter::limit(40))
                .filter(LowerCaser)
                .filter(stop_words)
                .filter(function_words())
                .filter(Stemmer::new(language))
                .build(),
        );
    }
}

/// Scripts whose words are not separated by spaces.
fn unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF     // Thai, Lao
        | 0x1000..=0x109F   // Myanmar
        | 0x1780..=0x17FF   // Khmer
        | 0x3040..=0x30FF   // Hiragana, Katakana
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0x20000..=0x2FA1F // CJK extensions B and later
    )
}

/// Emits overlapping character bigrams of every run of [`unspaced`]
/// characters (a one-character run is emitted as it is) and nothing for
/// other text, which the word-based fields cover.
#[derive(Clone, Default)]
pub struct ScriptBigrams;

pub struct BigramStream {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for ScriptBigrams {
    type TokenStream<'a> = BigramStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> BigramStream {
        let mut tokens = Vec::new();
        let mut run: Vec<(usize, char)> = Vec::new();
        let flush = |run: &mut Vec<(usize, char)>, tokens: &mut Vec<Token>| {
            let end_of = |i: usize| run[i].0 + run[i].1.len_utf8();
            if run.len() == 1 {
                tokens.push(token(text, run[0].0, end_of(0), tokens.len()));
            }
            for i in 1..run.len() {
                tokens.push(token(text, run[i - 1].0, end_of(i), tokens.len()));
            }
            run.clear();
        };
        for (offset, c) in text.char_indices() {
            if unspaced(c) {
                run.push((offset, c));
            } else if !run.is_empty() {
                flush(&mut run, &mut tokens);
            }
        }
        if !run.is_empty() {
            flush(&mut run, &mut tokens);
        }
        BigramStream { tokens, next: 0 }
    }
}

fn token(text: &str, from: usize, to: usize, position: usize) -> Token {
    Token {
        offset_from: from,
        offset_to: to,
        position,
        text: text[from..to].to_owned(),
        position_length: 1,
    }
}

impl TokenStream for BigramStream {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

/// The terms `analyzer` makes of `text`, each once, in order of appearance.
pub fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let term = &stream.token().text;
        if !out.iter().any(|t| t == term) {
            out.push(term.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyze(name: &str, text: &str) -> Vec<String> {
        let manager = TokenizerManager::default();
        register(&manager);
        terms(&mut manager.get(name).unwrap(), text)
    }

    #[test]
    fn thai_and_chinese_become_bigrams_and_latin_text_is_left_alone() {
        assert_eq!(analyze(CJK, "ส่งฟรี"), ["ส่", "่ง", "งฟ", "ฟร", "รี"]);
        assert_eq!(analyze(CJK, "发货 XL 码"), ["发货", "码"]);
        assert!(analyze(CJK, "free shipping").is_empty());
    }

    #[test]
    fn words_are_folded_and_stemmed_per_language() {
        assert_eq!(analyze(TEXT, "Giao hàng NHANH!"), ["giao", "hang", "nhanh"]);
        assert_eq!(
            analyze(TEXT, "How do I use the shop coupon?"),
            ["use", "shop", "coupon"]
        );
        assert_eq!(analyze(TEXT, "Apakah bisa retur?"), ["retur"]);
        assert_eq!(analyze("text_en", "returns returned"), ["return"]);
        assert_eq!(analyze("text_en", "How can I return it?"), ["return"]);
        assert_eq!(analyze("text_pt", "devoluções devolução"), ["devolu"]);
    }
}
