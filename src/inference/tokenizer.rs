//! The tokenizer a GGUF chat checkpoint carries in its metadata, rebuilt as a
//! `tokenizers::Tokenizer`, and a streaming decoder that turns generated ids
//! into text one valid UTF-8 piece at a time.
//!
//! A GGUF file has no `tokenizer.json`: llama.cpp stores the vocabulary, the
//! merges, the token types and the special ids under `tokenizer.ggml.*`, and
//! names the split rule by `tokenizer.ggml.pre`. This module owns turning that
//! into a byte-level BPE tokenizer that gives llama.cpp's ids. It supports the
//! `gpt2` model with the `qwen2` and `smollm` split rules (the bundled chat
//! models) and says so by name for anything else. It knows nothing of chat
//! templates, sampling or model weights.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::{json, Map};
use tokenizers::Tokenizer;

use super::InferenceError;

/// llama.cpp's split rule for `tokenizer.ggml.pre = qwen2`, the same as
/// Qwen2's own `tokenizer.json`: digits one at a time, letters with at most one
/// leading non-letter, punctuation runs with their trailing newlines.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's `smollm` rule is two passes: every digit cut apart first, then
/// GPT-2's split on each piece (`\s+` last, as in GPT-2's byte-level
/// pre-tokenizer, so a lone space before a digit stays a piece of its own).
const DIGIT_SPLIT: &str = r"\p{N}";
const GPT2_SPLIT: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Whether control tokens written in the text (`<|im_start|>`) become their
/// single ids or are tokenized as the characters they are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialTokens {
    /// Markup the caller wrote itself, such as a rendered chat template.
    Parse,
    /// Text from outside (a buyer's message): it can never inject a control
    /// token.
    AsText,
}

/// A byte-level BPE tokenizer built from GGUF metadata.
#[derive(Clone)]
pub struct GgufTokenizer {
    /// Never matches control tokens itself; [`GgufTokenizer::encode`] cuts
    /// them out first when asked to, so both modes share one tokenizer.
    tokenizer: Tokenizer,
    /// `(text, id)` of every control token, longest text first.
    control: Vec<(String, u32)>,
    /// The bytes each id stands for; empty for control tokens, which are never
    /// shown as text.
    token_bytes: Vec<Vec<u8>>,
    bos: Option<u32>,
    eos: Option<u32>,
    end_of_generation: Vec<u32>,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab_size", &self.token_bytes.len())
            .field("control_tokens", &self.control.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

impl GgufTokenizer {
    /// Reads only the metadata of the GGUF file at `path`, not its tensors.
    pub fn load(path: &Path) -> Result<Self, InferenceError> {
        let mut file = File::open(path).map_err(|source| InferenceError::Io {
            path: path.to_owned(),
            source,
        })?;
        let content = Content::read(&mut file).map_err(|e| InferenceError::Gguf {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_metadata(&content.metadata, path)
    }

    /// Builds the tokenizer from metadata already read; `path` only names the
    /// file in errors.
    pub fn from_metadata(
        metadata: &HashMap<String, Value>,
        path: &Path,
    ) -> Result<Self, InferenceError> {
        let meta = Metadata { metadata, path };
        let model = meta.string("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(InferenceError::UnsupportedTokenizer {
                what: "tokenizer.ggml.model",
                value: model.to_owned(),
                expected: "gpt2",
            });
        }
        let pre = meta.string("tokenizer.ggml.pre")?;
        let pre_tokenizer = pre_tokenizer(pre)?;
        let tokens = meta.strings("tokenizer.ggml.tokens")?;
        let merges = meta.strings("tokenizer.ggml.merges")?;
        let token_types = meta.token_types(tokens.len())?;

        let mut vocab = Map::with_capacity(tokens.len());
        let mut added_tokens = Vec::new();
        let mut control = Vec::new();
        let mut token_bytes = Vec::with_capacity(tokens.len());
        for (id, (token, token_type)) in tokens.iter().zip(&token_types).enumerate() {
            let id = u32::try_from(id).map_err(|_| meta.malformed("tokenizer.ggml.tokens"))?;
            vocab.insert(token.to_string(), json!(id));
            match *token_type {
                TOKEN_TYPE_CONTROL => {
                    added_tokens.push(added_token(id, token, Special::Yes));
                    control.push((token.to_string(), id));
                    token_bytes.push(Vec::new());
                }
                TOKEN_TYPE_USER_DEFINED => {
                    added_tokens.push(added_token(id, token, Special::No));
                    token_bytes.push(byte_level_bytes(token));
                }
                _ => token_bytes.push(byte_level_bytes(token)),
            }
        }
        control.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        let document = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {
                "type": "ByteLevel",
                "add_prefix_space": false,
                "trim_offsets": false,
                "use_regex": false,
            },
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": false,
                "vocab": vocab,
                "merges": merges,
            },
        });
        let mut tokenizer =
            Tokenizer::from_bytes(document.to_string().as_bytes()).map_err(|e| {
                InferenceError::TokenizerLoad {
                    path: path.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        tokenizer.set_encode_special_tokens(true);

        let vocab_size = token_bytes.len();
        let bos = meta.optional_id("tokenizer.ggml.bos_token_id", vocab_size)?;
        let eos = meta.optional_id("tokenizer.ggml.eos_token_id", vocab_size)?;
        let eot = meta.optional_id("tokenizer.ggml.eot_token_id", vocab_size)?;
        // llama.cpp also ends a generation at the ChatML and document-end
        // markers even where the file names another token as EOS.
        let named_ends = control
            .iter()
            .filter(|(text, _)| matches!(text.as_str(), "<|im_end|>" | "<|endoftext|>"))
            .map(|(_, id)| *id);
        let mut end_of_generation: Vec<u32> =
            eos.into_iter().chain(eot).chain(named_ends).collect();
        end_of_generation.sort_unstable();
        end_of_generation.dedup();

        Ok(GgufTokenizer {
            tokenizer,
            control,
            token_bytes,
            bos,
            eos,
            end_of_generation,
        })
    }

    /// The ids of `text`, without BOS or EOS added (neither bundled model
    /// wants a BOS; ChatML supplies its own markers).
    pub fn encode(&self, text: &str, special: SpecialTokens) -> Result<Vec<u32>, InferenceError> {
        let mut ids = Vec::new();
        match special {
            SpecialTokens::AsText => self.encode_plain(text, &mut ids)?,
            SpecialTokens::Parse => {
                let mut rest = text;
                while let Some((start, token, id)) = self.first_control(rest) {
                    self.encode_plain(&rest[..start], &mut ids)?;
                    ids.push(id);
                    rest = &rest[start + token.len()..];
                }
                self.encode_plain(rest, &mut ids)?;
            }
        }
        Ok(ids)
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), InferenceError> {
        if text.is_empty() {
            return Ok(());
        }
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| InferenceError::Tokenize(e.to_string()))?;
        ids.extend_from_slice(encoding.get_ids());
        Ok(())
    }

    /// The leftmost control token in `text`, the longest one where several
    /// start at the same place.
    fn first_control<'t>(&'t self, text: &str) -> Option<(usize, &'t str, u32)> {
        let mut best: Option<(usize, &str, u32)> = None;
        for (token, id) in &self.control {
            if let Some(start) = text.find(token.as_str()) {
                // `control` is sorted longest first, so a tie keeps the longer.
                if best.is_none_or(|(best_start, _, _)| start < best_start) {
                    best = Some((start, token.as_str(), *id));
                }
            }
        }
        best
    }

    /// The text of `ids`, control tokens left out; bytes that do not form
    /// UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.bytes_of(id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The bytes `id` stands for: empty for control tokens and unknown ids.
    pub fn bytes_of(&self, id: u32) -> &[u8] {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The id of a control token, e.g. `<|im_start|>`.
    pub fn control_token(&self, text: &str) -> Option<u32> {
        self.control
            .iter()
            .find(|(token, _)| token == text)
            .map(|(_, id)| *id)
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos
    }

    /// Every id that ends a generation: EOS and EOT from the metadata, plus
    /// `<|im_end|>` and `<|endoftext|>` where the vocabulary has them.
    pub fn end_of_generation_ids(&self) -> &[u32] {
        &self.end_of_generation
    }

    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// The underlying tokenizer. It is set never to match control tokens;
    /// use [`GgufTokenizer::encode`] with [`SpecialTokens::Parse`] for markup.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

/// Turns generated ids into text as soon as it is valid UTF-8: a character
/// split across two tokens (common in Thai, Chinese and emoji) is held back
/// until its last byte arrives, instead of showing up as U+FFFD.
#[derive(Debug)]
pub struct TokenDecoder<'a> {
    tokenizer: &'a GgufTokenizer,
    pending: Vec<u8>,
}

impl<'a> TokenDecoder<'a> {
    pub fn new(tokenizer: &'a GgufTokenizer) -> Self {
        TokenDecoder {
            tokenizer,
            pending: Vec::new(),
        }
    }

    /// The text `id` completes, possibly empty.
    pub fn push(&mut self, id: u32) -> String {
        self.pending.extend_from_slice(self.tokenizer.bytes_of(id));
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(valid) => {
                    text.push_str(valid);
                    self.pending.clear();
                    return text;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    text.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // Bytes that can never start a character: no later
                        // token can repair them.
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return text;
                        }
                    }
                }
            }
        }
    }

    /// Whatever is still held back, as U+FFFD where it is an unfinished
    /// character.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

#[derive(Clone, Copy)]
enum Special {
    Yes,
    No,
}

fn added_token(id: u32, content: &str, special: Special) -> serde_json::Value {
    json!({
        "id": id,
        "content": content,
        "single_word": false,
        "lstrip": false,
        "rstrip": false,
        "normalized": false,
        "special": matches!(special, Special::Yes),
    })
}

fn split(pattern: &str) -> serde_json::Value {
    json!({
        "type": "Split",
        "pattern": { "Regex": pattern },
        "behavior": "Isolated",
        "invert": false,
    })
}

fn pre_tokenizer(pre: &str) -> Result<serde_json::Value, InferenceError> {
    let splits = match pre {
        "qwen2" => vec![split(QWEN2_SPLIT)],
        "smollm" => vec![split(DIGIT_SPLIT), split(GPT2_SPLIT)],
        other => {
            return Err(InferenceError::UnsupportedTokenizer {
                what: "tokenizer.ggml.pre",
                value: other.to_owned(),
                expected: "qwen2 or smollm",
            })
        }
    };
    let byte_level = json!({
        "type": "ByteLevel",
        "add_prefix_space": false,
        "trim_offsets": false,
        "use_regex": false,
    });
    let steps: Vec<_> = splits.into_iter().chain([byte_level]).collect();
    Ok(json!({ "type": "Sequence", "pretokenizers": steps }))
}

/// GPT-2's byte-to-character table: printable bytes stand for themselves,
/// the rest are moved to U+0100 and up so that no token holds a space or a
/// control character.
fn byte_level_alphabet() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut shifted = 0u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (char::from(b), b)
            } else {
                let c = char::from_u32(256 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER);
                shifted += 1;
                (c, b)
            }
        })
        .collect()
}

/// The bytes a byte-level token spells. A token with a character outside the
/// alphabet (a llama.cpp file can hold such added tokens) stands for its own
/// UTF-8 text, which is how transformers reads such files too.
fn byte_level_bytes(token: &str) -> Vec<u8> {
    thread_local! {
        static ALPHABET: HashMap<char, u8> = byte_level_alphabet();
    }
    ALPHABET.with(|alphabet| {
        token
            .chars()
            .map(|c| alphabet.get(&c).copied())
            .collect::<Option<Vec<u8>>>()
            .unwrap_or_else(|| token.as_bytes().to_vec())
    })
}

struct Metadata<'a> {
    metadata: &'a HashMap<String, Value>,
    path: &'a Path,
}

impl<'a> Metadata<'a> {
    fn get(&self, key: &'static str) -> Result<&'a Value, InferenceError> {
        self.metadata
            .get(key)
            .ok_or_else(|| InferenceError::GgufMetadata {
                path: self.path.to_owned(),
                key,
                reason: "missing".to_owned(),
            })
    }

    fn malformed(&self, key: &'static str) -> InferenceError {
        InferenceError::GgufMetadata {
            path: self.path.to_owned(),
            key,
            reason: "malformed".to_owned(),
        }
    }

    fn string(&self, key: &'static str) -> Result<&'a str, InferenceError> {
        self.get(key)?
            .to_string()
            .map(String::as_str)
            .map_err(|_| self.malformed(key))
    }

    fn strings(&self, key: &'static str) -> Result<Vec<&'a str>, InferenceError> {
        self.get(key)?
            .to_vec()
            .map_err(|_| self.malformed(key))?
            .iter()
            .map(|v| {
                v.to_string()
                    .map(String::as_str)
                    .map_err(|_| self.malformed(key))
            })
            .collect()
    }

    /// Token types are optional in GGUF; without them every token is normal.
    fn token_types(&self, count: usize) -> Result<Vec<i32>, InferenceError> {
        const KEY: &str = "tokenizer.ggml.token_type";
        let Some(value) = self.metadata.get(KEY) else {
            return Ok(vec![1; count]);
        };
        let types = value
            .to_vec()
            .map_err(|_| self.malformed(KEY))?
            .iter()
            .map(|v| v.to_i32().map_err(|_| self.malformed(KEY)))
            .collect::<Result<Vec<_>, _>>()?;
        if types.len() != count {
            return Err(InferenceError::GgufMetadata {
                path: self.path.to_owned(),
                key: KEY,
                reason: format!("has {} entries for {count} tokens", types.len()),
            });
        }
        Ok(types)
    }

    fn optional_id(
        &self,
        key: &'static str,
        vocab_size: usize,
    ) -> Result<Option<u32>, InferenceError> {
        let Some(value) = self.metadata.get(key) else {
            return Ok(None);
        };
        let id = value.to_u32().map_err(|_| self.malformed(key))?;
        if id as usize >= vocab_size {
            return Err(InferenceError::GgufMetadata {
                path: self.path.to_owned(),
                key,
                reason: format!("id {id} is outside the vocabulary of {vocab_size}"),
            });
        }
        Ok(Some(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_a_bijection_over_all_bytes() {
        let alphabet = byte_level_alphabet();
        assert_eq!(alphabet.len(), 256);
        let mut bytes: Vec<u8> = alphabet.values().copied().collect();
        bytes.sort_unstable();
        assert_eq!(bytes, (0..=255u8).collect::<Vec<_>>());
        assert_eq!(alphabet[&'Ġ'], b' ');
        assert_eq!(alphabet[&'Ċ'], b'\n');
        assert_eq!(byte_level_bytes("Ġhello"), b" hello");
    }

    #[test]
    fn unknown_pre_tokenizers_are_named() {
        let err = pre_tokenizer("llama-bpe").unwrap_err().to_string();
        assert!(err.contains("`llama-bpe`"), "{err}");
    }
}
