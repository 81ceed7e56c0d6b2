//! Chat generation with a quantized GGUF model: loading the weights and the
//! tokenizer from one file, rendering messages with the ChatML template,
//! prefill, sampling, stop conditions, and streaming the answer token by
//! token to a callback that may cancel it.
//!
//! This module owns the model's KV cache and the decision to reuse it: a
//! prompt that extends the previous call's tokens (the next turn of the same
//! conversation) only runs its new tokens through the model. It knows nothing
//! of what the messages mean, where they came from or who waits for the
//! answer; calls block, so callers run them on a dedicated thread.

use std::fs::File;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::{quantized_llama, quantized_qwen2};

pub use super::llm::WeightFormat;
use super::llm::{Architecture, CpuModel, KvSnapshot};
use super::tokenizer::{GgufTokenizer, SpecialTokens, TokenDecoder};
use super::InferenceError;
use crate::models::ResolvedModel;

/// The most tokens one call may generate.
pub const MAX_TOKENS_LIMIT: usize = 4096;
/// How many stop strings one call may set.
pub const MAX_STOP_STRINGS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: ChatRole,
    /// Plain text: control tokens written in it stay text, so a message can
    /// never close its own turn or open another.
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// How to pick tokens and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// 1..=4096; generation also stops where the context is full.
    pub max_tokens: usize,
    /// 0 picks the most likely token every time (greedy); up to 2.
    pub temperature: f64,
    /// Nucleus sampling, in (0, 1]; 1 samples from every token.
    pub top_p: f64,
    /// Divides the logit of every token seen in the last `repeat_last_n`
    /// tokens (prompt included); 1 turns it off. In (0, 10].
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// Seeds the sampler; irrelevant when greedy.
    pub seed: u64,
    /// The answer ends before the first of these; none may be empty.
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 299_792_458,
            stop: Vec::new(),
        }
    }
}

impl GenerationParams {
    pub fn validate(&self) -> Result<(), InferenceError> {
        let invalid = |message: String| Err(InferenceError::InvalidParams(message));
        if !(1..=MAX_TOKENS_LIMIT).contains(&self.max_tokens) {
            return invalid(format!(
                "`max_tokens` must be in 1..={MAX_TOKENS_LIMIT}, got {}",
                self.max_tokens
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return invalid(format!(
                "`temperature` must be in 0..=2, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return invalid(format!("`top_p` must be in (0, 1], got {}", self.top_p));
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty <= 10.0) {
            return invalid(format!(
                "`repeat_penalty` must be in (0, 10], got {}",
                self.repeat_penalty
            ));
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return invalid(format!(
                "`stop` may hold at most {MAX_STOP_STRINGS} strings, got {}",
                self.stop.len()
            ));
        }
        if let Some(index) = self.stop.iter().position(String::is_empty) {
            return invalid(format!("`stop[{index}]` is empty"));
        }
        Ok(())
    }

    fn sampling(&self) -> Sampling {
        // As candle's own `LogitsProcessor::new`: a temperature this small
        // is greedy, and dividing by it would overflow the softmax.
        if self.temperature < 1e-7 {
            Sampling::ArgMax
        } else if self.top_p < 1.0 {
            Sampling::TopP {
                p: self.top_p,
                temperature: self.temperature,
            }
        } else {
            Sampling::All {
                temperature: self.temperature,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, or the context is full.
    Length,
    /// The callback asked to stop.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The answer, cut before a stop string and without the end token.
    pub text: String,
    pub prompt_tokens: usize,
    /// Of `prompt_tokens`, how many were already in the KV cache.
    pub reused_prompt_tokens: usize,
    /// Tokens sampled, the end-of-generation token not counted.
    pub completion_tokens: usize,
    pub finish_reason: FinishReason,
    /// Running the prompt's new tokens through the model.
    pub prefill: Duration,
    /// Everything after prefill.
    pub decode: Duration,
}

/// Why the decode loop ended; finer than [`FinishReason`] because only some
/// endings flush the bytes the decoder still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    EndToken,
    StopString,
    Length,
    Cancelled,
}

/// How [`ChatModel::load_with`] prepares a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatLoadOptions {
    /// On the CPU, how weight matrices are held and multiplied; GPUs always
    /// run candle's quantized matmul.
    pub weights: WeightFormat,
}

enum Weights {
    /// kedai's own forward pass and kernels.
    Cpu(CpuModel),
    /// candle-transformers' models, for GPUs.
    Qwen2(quantized_qwen2::ModelWeights),
    Llama(quantized_llama::ModelWeights),
}

impl Weights {
    /// Logits after the last of `tokens`, as f32 on the CPU.
    fn forward(
        &mut self,
        device: &Device,
        tokens: &[u32],
        index_pos: usize,
    ) -> Result<Tensor, InferenceError> {
        let candle_input =
            || -> Result<Tensor, InferenceError> { Ok(Tensor::new(tokens, device)?.unsqueeze(0)?) };
        let logits = match self {
            Weights::Cpu(model) => {
                let logits = model.forward(tokens, index_pos)?;
                let vocab = logits.len();
                return Ok(Tensor::from_vec(logits, vocab, &Device::Cpu)?);
            }
            Weights::Qwen2(model) => model.forward(&candle_input()?, index_pos)?,
            Weights::Llama(model) => model.forward(&candle_input()?, index_pos)?,
        };
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?)
    }

    /// Whether the cache can be cut back to any cached prefix (our CPU
    /// forward pass can; candle's models only grow theirs).
    fn rewinds(&self) -> bool {
        matches!(self, Weights::Cpu(_))
    }

    fn snapshot(&self, len: usize) -> Option<KvSnapshot> {
        match self {
            Weights::Cpu(model) => model.snapshot(len),
            _ => None,
        }
    }

    fn restore(&mut self, snapshot: &KvSnapshot) {
        if let Weights::Cpu(model) = self {
            model.restore(snapshot);
        }
    }

    fn clear_kv_cache(&mut self) {
        match self {
            Weights::Cpu(model) => model.clear_kv_cache(),
            Weights::Qwen2(model) => model.clear_kv_cache(),
            Weights::Llama(model) => model.clear_kv_cache(),
        }
    }
}

/// A chat model and its tokenizer, both read from one GGUF file.
pub struct ChatModel {
    weights: Weights,
    tokenizer: GgufTokenizer,
    device: Device,
    architecture: String,
    context_length: usize,
    im_start: u32,
    im_end: u32,
    /// The tokens whose keys and values the model holds, in order.
    cached: Vec<u32>,
    /// System turns seen lately with their keys and values, least recently
    /// used first: drafts and translations interleave, and each kind starts
    /// with the same system turn every time.
    prefixes: Vec<(Vec<u32>, KvSnapshot)>,
}

/// System turns kept by [`ChatModel`]; a few MB each for the default model.
const KEPT_PREFIXES: usize = 4;
/// Shorter system turns are not worth a copy.
const MIN_KEPT_PREFIX: usize = 16;

impl std::fmt::Debug for ChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatModel")
            .field("architecture", &self.architecture)
            .field("context_length", &self.context_length)
            .field("tokenizer", &self.tokenizer)
            .field("cached_tokens", &self.cached.len())
            .finish()
    }
}

impl ChatModel {
    /// Loads the model's `.gguf` file; the architecture (`qwen2` or `llama`)
    /// and every hyper-parameter come from its metadata. Weights are held as
    /// [`WeightFormat::Auto`] picks.
    pub fn load(model: &ResolvedModel, device: &Device) -> Result<Self, InferenceError> {
        Self::load_with(model, device, &ChatLoadOptions::default())
    }

    /// As [`ChatModel::load`], with a choice of how weights are held.
    pub fn load_with(
        model: &ResolvedModel,
        device: &Device,
        options: &ChatLoadOptions,
    ) -> Result<Self, InferenceError> {
        let path =
            model
                .file_with_extension("gguf")
                .ok_or_else(|| InferenceError::MissingGguf {
                    model: model.reference.clone(),
                })?;
        Self::load_file(path, device, options)
    }

    fn load_file(
        path: &Path,
        device: &Device,
        options: &ChatLoadOptions,
    ) -> Result<Self, InferenceError> {
        let gguf_error = |e: candle_core::Error| InferenceError::Gguf {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut file = File::open(path).map_err(|source| InferenceError::Io {
            path: path.to_owned(),
            source,
        })?;
        let content = Content::read(&mut file).map_err(gguf_error)?;
        let tokenizer = GgufTokenizer::from_metadata(&content.metadata, path)?;
        let metadata_error = |key: &'static str| InferenceError::GgufMetadata {
            path: path.to_owned(),
            key,
            reason: "missing or not a string".to_owned(),
        };
        let architecture = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| metadata_error("general.architecture"))?;
        let (context_key, kind, limit): (&'static str, Architecture, usize) =
            match architecture.as_str() {
                "qwen2" => ("qwen2.context_length", Architecture::Qwen2, usize::MAX),
                // candle's quantized llama precomputes rotary tables for this
                // many positions only; kedai's own forward pass has no limit.
                "llama" if !device.is_cpu() => (
                    "llama.context_length",
                    Architecture::Llama,
                    quantized_llama::MAX_SEQ_LEN,
                ),
                "llama" => ("llama.context_length", Architecture::Llama, usize::MAX),
                _ => return Err(InferenceError::UnsupportedArchitecture { architecture }),
            };
        let context_length = content
            .metadata
            .get(context_key)
            .and_then(|v| v.to_u32().ok())
            .ok_or_else(|| InferenceError::GgufMetadata {
                path: path.to_owned(),
                key: context_key,
                reason: "missing or not an integer".to_owned(),
            })? as usize;
        let context_length = context_length.min(limit);

        let chatml = |token: &str| {
            tokenizer
                .control_token(token)
                .ok_or_else(|| InferenceError::GgufMetadata {
                    path: path.to_owned(),
                    key: "tokenizer.ggml.tokens",
                    reason: format!("without the ChatML control token `{token}`"),
                })
        };
        let im_start = chatml("<|im_start|>")?;
        let im_end = chatml("<|im_end|>")?;

        let weights = if device.is_cpu() {
            Weights::Cpu(CpuModel::load(
                path,
                &content,
                &mut file,
                kind,
                options.weights,
            )?)
        } else if kind == Architecture::Qwen2 {
            Weights::Qwen2(
                quantized_qwen2::ModelWeights::from_gguf(content, &mut file, device)
                    .map_err(gguf_error)?,
            )
        } else {
            Weights::Llama(
                quantized_llama::ModelWeights::from_gguf(content, &mut file, device)
                    .map_err(gguf_error)?,
            )
        };
        Ok(ChatModel {
            weights,
            tokenizer,
            device: device.clone(),
            architecture,
            context_length,
            im_start,
            im_end,
            cached: Vec::new(),
            prefixes: Vec::new(),
        })
    }

    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    /// `general.architecture`: `qwen2` or `llama`.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// Prompt and answer together never exceed this many tokens.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The ChatML prompt for `messages`, ending with the assistant's opening
    /// (`<|im_start|>assistant\n`). Message text is tokenized as text; only
    /// the template's own markers become control tokens. No default system
    /// message is added.
    pub fn render_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, InferenceError> {
        let text = |s: &str| self.tokenizer.encode(s, SpecialTokens::AsText);
        let mut ids = Vec::new();
        for message in messages {
            ids.push(self.im_start);
            ids.extend(text(&format!(
                "{}\n{}",
                message.role.as_str(),
                message.content
            ))?);
            ids.push(self.im_end);
            ids.extend(text("\n")?);
        }
        ids.push(self.im_start);
        ids.extend(text("assistant\n")?);
        Ok(ids)
    }

    /// The logits after `tokens`, run from an empty cache; for checks
    /// against other implementations. Forgets the conversation held before.
    pub fn prompt_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>, InferenceError> {
        self.clear_cache();
        if tokens.is_empty() || tokens.len() >= self.context_length {
            return Err(InferenceError::PromptTooLong {
                prompt_tokens: tokens.len(),
                context_length: self.context_length,
            });
        }
        let logits = self.weights.forward(&self.device, tokens, 0);
        self.clear_cache();
        Ok(logits?.to_vec1::<f32>()?)
    }

    /// Forgets the KV cache, e.g. before an unrelated conversation, to free
    /// its memory early.
    pub fn clear_cache(&mut self) {
        self.weights.clear_kv_cache();
        self.cached.clear();
        self.prefixes.clear();
    }

    /// How many leading tokens of `prompt` need not be run again, after
    /// putting the best kept prefix in the cache if that beats what the
    /// cache holds. At least the last token is always run, for its logits.
    fn reuse_prefix(&mut self, prompt: &[u32], cached: &[u32]) -> usize {
        let limit = prompt.len().saturating_sub(1);
        let held = if self.weights.rewinds() {
            prompt
                .iter()
                .zip(cached)
                .take_while(|(a, b)| a == b)
                .count()
                .min(limit)
        } else if prompt.len() > cached.len() && prompt.starts_with(cached) {
            cached.len()
        } else {
            0
        };
        let kept = self
            .prefixes
            .iter()
            .enumerate()
            .filter(|(_, (tokens, _))| tokens.len() <= limit && prompt.starts_with(tokens))
            .max_by_key(|(_, (tokens, _))| tokens.len())
            .map(|(i, (tokens, _))| (i, tokens.len()));
        match kept {
            Some((index, len)) if len > held => {
                let entry = self.prefixes.remove(index);
                self.weights.restore(&entry.1);
                self.prefixes.push(entry);
                len
            }
            _ if held > 0 => held,
            _ => {
                self.weights.clear_kv_cache();
                0
            }
        }
    }

    /// Keeps the keys and values of `prompt`'s system turn, now in the
    /// cache, unless they are kept already.
    fn keep_system_turn(&mut self, prompt: &[u32]) {
        if prompt.first() != Some(&self.im_start) {
            return;
        }
        // The system turn ends where the next turn starts.
        let Some(end) = prompt
            .iter()
            .skip(1)
            .position(|&t| t == self.im_start)
            .map(|i| i + 1)
        else {
            return;
        };
        if end < MIN_KEPT_PREFIX || self.prefixes.iter().any(|(t, _)| t[..] == prompt[..end]) {
            return;
        }
        if let Some(snapshot) = self.weights.snapshot(end) {
            self.prefixes.push((prompt[..end].to_vec(), snapshot));
            if self.prefixes.len() > KEPT_PREFIXES {
                self.prefixes.remove(0);
            }
        }
    }

    /// Bytes held by kept system turns.
    pub fn kept_prefix_bytes(&self) -> usize {
        self.prefixes.iter().map(|(_, s)| s.bytes()).sum()
    }

    /// Answers `messages`. `on_token` is called once per generated token with
    /// the text that token made final (possibly empty: a character can span
    /// tokens, and text that may begin a stop string is held back until it
    /// cannot); returning `ControlFlow::Break` cancels the generation.
    pub fn generate(
        &mut self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_token: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation, InferenceError> {
        params.validate()?;
        let prompt = self.render_prompt(messages)?;
        if prompt.len() >= self.context_length {
            return Err(InferenceError::PromptTooLong {
                prompt_tokens: prompt.len(),
                context_length: self.context_length,
            });
        }
        // Whatever fails below leaves the cache in an unknown state: it is
        // only trusted again once this call has succeeded.
        let cached = std::mem::take(&mut self.cached);
        let reused = self.reuse_prefix(&prompt, &cached);

        let started = Instant::now();
        let mut logits = self
            .weights
            .forward(&self.device, &prompt[reused..], reused)?;
        let prefill = started.elapsed();
        self.keep_system_turn(&prompt);

        let budget = params.max_tokens.min(self.context_length - prompt.len());
        let mut sampler = LogitsProcessor::from_sampling(params.seed, params.sampling());
        let mut tokens = prompt.clone();
        // How many of `tokens` the model has seen: a sampled token is only
        // fed back when another one is wanted after it.
        let mut fed = tokens.len();
        let mut stream = StopStream::new(&params.stop);
        let mut decoder = TokenDecoder::new(&self.tokenizer);
        let ended = loop {
            let next = sample(&mut sampler, &logits, &tokens, params)?;
            if self.tokenizer.end_of_generation_ids().contains(&next) {
                break Ended::EndToken;
            }
            tokens.push(next);
            if stream.push(&decoder.push(next)) {
                break Ended::StopString;
            }
            if on_token(stream.release()).is_break() {
                break Ended::Cancelled;
            }
            if tokens.len() - prompt.len() == budget {
                break Ended::Length;
            }
            logits = self.weights.forward(&self.device, &[next], fed)?;
            fed = tokens.len();
        };
        if matches!(ended, Ended::EndToken | Ended::Length) {
            stream.push(&decoder.finish());
        }
        if ended != Ended::Cancelled {
            let rest = stream.release_all();
            if !rest.is_empty() {
                let _ = on_token(rest);
            }
        }
        let finish_reason = match ended {
            Ended::EndToken | Ended::StopString => FinishReason::Stop,
            Ended::Length => FinishReason::Length,
            Ended::Cancelled => FinishReason::Cancelled,
        };
        let decode = started.elapsed().saturating_sub(prefill);
        let completion_tokens = tokens.len() - prompt.len();
        tokens.truncate(fed);
        self.cached = tokens;
        Ok(Generation {
            text: stream.into_text(),
            prompt_tokens: prompt.len(),
            reused_prompt_tokens: reused,
            completion_tokens,
            finish_reason,
            prefill,
            decode,
        })
    }
}

fn sample(
    sampler: &mut LogitsProcessor,
    logits: &Tensor,
    context: &[u32],
    params: &GenerationParams,
) -> Result<u32, InferenceError> {
    if params.repeat_penalty == 1.0 {
        return Ok(sampler.sample(logits)?);
    }
    let recent = &context[context.len().saturating_sub(params.repeat_last_n)..];
    let penalised =
        candle_transformers::utils::apply_repeat_penalty(logits, params.repeat_penalty, recent)?;
    Ok(sampler.sample(&penalised)?)
}

/// Accumulates the answer, cuts it at the first stop string, and releases
/// only text that cannot turn out to be the start of one.
struct StopStream<'a> {
    stops: &'a [String],
    text: String,
    released: usize,
}

impl<'a> StopStream<'a> {
    fn new(stops: &'a [String]) -> Self {
        StopStream {
            stops,
            text: String::new(),
            released: 0,
        }
    }

    /// Appends `piece`; true when the text now holds a stop string, in which
    /// case it has been cut before it.
    fn push(&mut self, piece: &str) -> bool {
        self.text.push_str(piece);
        // A stop string cannot start in released text: that text was
        // released because no suffix of it begins a stop string.
        let unreleased = &self.text[self.released..];
        let found = self
            .stops
            .iter()
            .filter_map(|stop| unreleased.find(stop.as_str()))
            .min();
        match found {
            Some(at) => {
                self.text.truncate(self.released + at);
                true
            }
            None => false,
        }
    }

    /// The text that is now final.
    fn release(&mut self) -> &str {
        let held = self
            .stops
            .iter()
            .map(|stop| longest_partial_match(&self.text[self.released..], stop))
            .max()
            .unwrap_or(0);
        let start = self.released;
        self.released = self.text.len() - held;
        &self.text[start..self.released]
    }

    /// Everything not yet released, for the end of the generation.
    fn release_all(&mut self) -> &str {
        let start = self.released;
        self.released = self.text.len();
        &self.text[start..]
    }

    fn into_text(self) -> String {
        self.text
    }
}

/// The length of the longest end of `text` that is a proper beginning of
/// `stop`.
fn longest_partial_match(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .find(|&len| stop.is_char_boundary(len) && text.ends_with(&stop[..len]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_all(pieces: &[&str], stops: &[&str]) -> (String, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut stream = StopStream::new(&stops);
        let mut released = String::new();
        for piece in pieces {
            if stream.push(piece) {
                released.push_str(stream.release_all());
                return (released, stream.into_text(), true);
            }
            released.push_str(stream.release());
        }
        released.push_str(stream.release_all());
        (released, stream.into_text(), false)
    }

    #[test]
    fn a_stop_string_split_across_tokens_is_never_released() {
        let (released, text, stopped) =
            stream_all(&["Hello", " wor", "ld", "\nUs", "er:", " hi"], &["\nUser:"]);
        assert!(stopped);
        assert_eq!(text, "Hello world");
        assert_eq!(released, "Hello world");
    }

    #[test]
    fn a_false_start_of_a_stop_string_is_released_later() {
        let (released, text, stopped) = stream_all(&["a\nU", "nicorn"], &["\nUser:"]);
        assert!(!stopped);
        assert_eq!(text, "a\nUnicorn");
        assert_eq!(released, text);
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        let (_, text, stopped) = stream_all(&["one. two! three"], &["!", "."]);
        assert!(stopped);
        assert_eq!(text, "one");
    }

    #[test]
    fn partial_matches_respect_character_boundaries() {
        assert_eq!(longest_partial_match("abc é", "éx"), 2);
        assert_eq!(longest_partial_match("abc", "xyz"), 0);
        assert_eq!(longest_partial_match("ab", "b"), 0);
    }

    #[test]
    fn bad_params_name_the_value() {
        let cases = [
            (
                GenerationParams {
                    max_tokens: 0,
                    ..Default::default()
                },
                "`max_tokens`",
            ),
            (
                GenerationParams {
                    max_tokens: 5000,
                    ..Default::default()
                },
                "5000",
            ),
            (
                GenerationParams {
                    temperature: -0.1,
                    ..Default::default()
                },
                "`temperature`",
            ),
            (
                GenerationParams {
                    temperature: f64::NAN,
                    ..Default::default()
                },
                "NaN",
            ),
            (
                GenerationParams {
                    top_p: 0.0,
                    ..Default::default()
                },
                "`top_p`",
            ),
            (
                GenerationParams {
                    top_p: 1.5,
                    ..Default::default()
                },
                "1.5",
            ),
            (
                GenerationParams {
                    repeat_penalty: 0.0,
                    ..Default::default()
                },
                "`repeat_penalty`",
            ),
            (
                GenerationParams {
                    stop: vec!["x".into(), String::new()],
                    ..Default::default()
                },
                "`stop[1]`",
            ),
        ];
        for (params, needle) in cases {
            let err = params.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        GenerationParams::default().validate().unwrap();
    }
}
