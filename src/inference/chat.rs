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

/// Who may reuse the keys and values a generation leaves in the cache: an
/// opaque owner. A prompt reuses cached work only of its own owner, and a
/// kept system turn also when both it and the prompt allow sharing system
/// turns, so how long a prefill takes tells nobody what another owner
/// sent. The default owner is everyone outside any scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CacheScope {
    pub owner: u128,
    pub share_system_turn: bool,
}

/// A system turn's keys and values, kept for the next prompt starting
/// with it.
struct KeptPrefix {
    tokens: Vec<u32>,
    snapshot: KvSnapshot,
    scope: CacheScope,
}

impl KeptPrefix {
    fn usable_by(&self, scope: CacheScope) -> bool {
        self.scope.owner == scope.owner || (self.scope.share_system_turn && scope.share_system_turn)
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

    /// Whether the most likely token is always picked.
    fn sampling_is_greedy(&self) -> bool {
        matches!(self.sampling(), Sampling::ArgMax)
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
    /// Tokens guessed from earlier text and checked in passes over several
    /// tokens, and how many of them the model picked itself (each of those
    /// saved a pass of its own).
    pub guessed_tokens: usize,
    pub accepted_guesses: usize,
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

    /// The logits after each of `tokens`, one row per token; our CPU
    /// forward pass only.
    fn forward_rows(&mut self, tokens: &[u32], index_pos: usize) -> Result<Tensor, InferenceError> {
        match self {
            Weights::Cpu(model) => {
                let logits = model.forward_last(tokens, index_pos, tokens.len())?;
                let vocab = logits.len() / tokens.len();
                Ok(Tensor::from_vec(
                    logits,
                    (tokens.len(), vocab),
                    &Device::Cpu,
                )?)
            }
            _ => Err(InferenceError::Tensor(candle_core::Error::Msg(
                "only kedai's CPU forward pass returns logits for every token".to_owned(),
            ))),
        }
    }

    /// Forgets cached positions from `len` on, where the cache can.
    fn rewind(&mut self, len: usize) {
        if let Weights::Cpu(model) = self {
            model.rewind(len);
        }
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
    /// The tokens whose keys and values the model holds, in order, and
    /// whose they are.
    cached: Vec<u32>,
    cached_scope: CacheScope,
    /// The scope of the next generation (see [`ChatModel::set_cache_scope`]).
    scope: CacheScope,
    /// System turns seen lately with their keys and values, least recently
    /// used first: drafts and translations interleave, and each kind starts
    /// with the same system turn every time.
    prefixes: Vec<KeptPrefix>,
    /// Whether greedy generation checks tokens guessed from the prompt
    /// (see [`guess_continuation`]); on unless turned off.
    guessing: bool,
}

/// System turns kept by [`ChatModel`]; about 3 MB each for the default
/// model. Every shop has its own draft turn, and translations, summaries
/// and knowledge translations have theirs.
const KEPT_PREFIXES: usize = 8;
/// Prompt tokens run at once on the CPU; between chunks the caller may
/// cancel. Short enough to give way within about a fifth of a second,
/// long enough that each chunk still reads every weight once for many
/// tokens.
const PREFILL_CHUNK: usize = 64;
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
            cached_scope: CacheScope::default(),
            scope: CacheScope::default(),
            prefixes: Vec::new(),
            guessing: true,
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

    /// Whose the next generations are: they reuse cached work only as
    /// [`CacheScope`] allows.
    pub fn set_cache_scope(&mut self, scope: CacheScope) {
        self.scope = scope;
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
        // Another owner's tokens are never reused: recomputed, not found.
        let cached = if self.cached_scope == self.scope {
            cached
        } else {
            &[]
        };
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
        let scope = self.scope;
        let kept = self
            .prefixes
            .iter()
            .enumerate()
            .filter(|(_, kept)| {
                kept.usable_by(scope)
                    && kept.tokens.len() <= limit
                    && prompt.starts_with(&kept.tokens)
            })
            .max_by_key(|(_, kept)| kept.tokens.len())
            .map(|(i, kept)| (i, kept.tokens.len()));
        match kept {
            Some((index, len)) if len > held => {
                let entry = self.prefixes.remove(index);
                self.weights.restore(&entry.snapshot);
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
        let scope = self.scope;
        if end < MIN_KEPT_PREFIX
            || self
                .prefixes
                .iter()
                .any(|kept| kept.usable_by(scope) && kept.tokens[..] == prompt[..end])
        {
            return;
        }
        if let Some(snapshot) = self.weights.snapshot(end) {
            self.prefixes.push(KeptPrefix {
                tokens: prompt[..end].to_vec(),
                snapshot,
                scope,
            });
            if self.prefixes.len() > KEPT_PREFIXES {
                self.prefixes.remove(0);
            }
        }
    }

    /// Turns checking guessed tokens on or off. Either way greedy answers
    /// are the same; only their speed differs.
    pub fn set_guessing(&mut self, on: bool) {
        self.guessing = on;
    }

    /// Bytes held by kept system turns.
    pub fn kept_prefix_bytes(&self) -> usize {
        self.prefixes.iter().map(|kept| kept.snapshot.bytes()).sum()
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
        self.generate_inner(messages, params, on_token, None)
    }

    /// As [`ChatModel::generate`], and on our CPU forward pass the prompt
    /// runs in chunks of [`PREFILL_CHUNK`] tokens with `cancelled` asked
    /// between them, so a long prompt nobody waits for any more stops
    /// within a chunk instead of holding the model for its whole prefill.
    /// What did run stays cached for the next call to reuse.
    pub fn generate_until(
        &mut self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_token: &mut dyn FnMut(&str) -> ControlFlow<()>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Generation, InferenceError> {
        self.generate_inner(messages, params, on_token, Some(cancelled))
    }

    fn generate_inner(
        &mut self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_token: &mut dyn FnMut(&str) -> ControlFlow<()>,
        cancelled: Option<&dyn Fn() -> bool>,
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
        let chunk = match cancelled {
            Some(_) if self.weights.rewinds() => PREFILL_CHUNK,
            _ => prompt.len(),
        };
        let mut prefilled = reused;
        let mut logits = loop {
            let end = (prefilled + chunk).min(prompt.len());
            let logits = self
                .weights
                .forward(&self.device, &prompt[prefilled..end], prefilled)?;
            prefilled = end;
            if prefilled == prompt.len() {
                break logits;
            }
            if cancelled.is_some_and(|cancelled| cancelled()) {
                self.keep_system_turn(&prompt);
                self.cached = prompt[..prefilled].to_vec();
                self.cached_scope = self.scope;
                return Ok(Generation {
                    text: String::new(),
                    prompt_tokens: prompt.len(),
                    reused_prompt_tokens: reused,
                    completion_tokens: 0,
                    finish_reason: FinishReason::Cancelled,
                    prefill: started.elapsed(),
                    decode: Duration::ZERO,
                    guessed_tokens: 0,
                    accepted_guesses: 0,
                });
            }
        };
        let prefill = started.elapsed();
        self.keep_system_turn(&prompt);

        let budget = params.max_tokens.min(self.context_length - prompt.len());
        let mut sampler = LogitsProcessor::from_sampling(params.seed, params.sampling());
        // Guesses are checked against the token the model picks itself, so
        // they only apply when that pick is certain: greedy, on our forward
        // pass, whose cache can drop the guesses that were wrong.
        let guessing = self.guessing && params.sampling_is_greedy() && self.weights.rewinds();
        let mut answer = Answer {
            tokens: prompt.clone(),
            prompt_len: prompt.len(),
            budget,
            stream: StopStream::new(&params.stop),
            decoder: TokenDecoder::new(&self.tokenizer),
            end_ids: self.tokenizer.end_of_generation_ids(),
        };
        // How many of the answer's tokens the model has seen: a sampled
        // token is only fed back when another one is wanted after it.
        let mut fed = prompt.len();
        let (mut guessed_tokens, mut accepted_tokens) = (0, 0);
        let mut pacer = GuessPacer::new();
        let ended = 'decode: loop {
            let next = sample(&mut sampler, &logits, &answer.tokens, params)?;
            if let Some(ended) = answer.take(next, on_token) {
                break ended;
            }
            let guess = if guessing {
                guess_continuation(&answer.tokens, pacer.want().min(answer.room()))
            } else {
                &[]
            };
            if guess.is_empty() {
                logits = self.weights.forward(&self.device, &[next], fed)?;
                fed = answer.tokens.len();
                continue;
            }
            // `next` and the guessed tokens after it in one pass: row `i`
            // holds the logits after the guess's first `i` tokens.
            let guess = guess.to_vec();
            let mut run = Vec::with_capacity(guess.len() + 1);
            run.push(next);
            run.extend_from_slice(&guess);
            let rows = self.weights.forward_rows(&run, fed)?;
            fed = answer.tokens.len();
            guessed_tokens += guess.len();
            let mut row = 0;
            while row < guess.len() {
                let picked = sample(&mut sampler, &rows.get(row)?, &answer.tokens, params)?;
                if picked != guess[row] {
                    break;
                }
                accepted_tokens += 1;
                let ended = answer.take(picked, on_token);
                if answer.tokens.len() > fed {
                    fed = answer.tokens.len();
                }
                if let Some(ended) = ended {
                    self.weights.rewind(fed);
                    break 'decode ended;
                }
                row += 1;
            }
            pacer.record(guess.len(), row);
            // The wrong guesses' keys and values are dropped; the model's
            // own pick after the last right one is sampled from `row`.
            self.weights.rewind(fed);
            logits = rows.get(row)?;
        };
        let Answer {
            mut tokens,
            mut stream,
            decoder,
            ..
        } = answer;
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
        self.cached_scope = self.scope;
        Ok(Generation {
            text: stream.into_text(),
            prompt_tokens: prompt.len(),
            reused_prompt_tokens: reused,
            completion_tokens,
            finish_reason,
            prefill,
            decode,
            guessed_tokens,
            accepted_guesses: accepted_tokens,
        })
    }
}

/// The answer as it grows, and the checks each new token goes through.
struct Answer<'a> {
    /// The prompt, then the answer's tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Most answer tokens wanted.
    budget: usize,
    stream: StopStream<'a>,
    decoder: TokenDecoder<'a>,
    end_ids: &'a [u32],
}

impl Answer<'_> {
    /// Adds `token`, or says why the answer ends here.
    fn take(
        &mut self,
        token: u32,
        on_token: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Option<Ended> {
        if self.end_ids.contains(&token) {
            return Some(Ended::EndToken);
        }
        self.tokens.push(token);
        if self.stream.push(&self.decoder.push(token)) {
            return Some(Ended::StopString);
        }
        if on_token(self.stream.release()).is_break() {
            return Some(Ended::Cancelled);
        }
        if self.tokens.len() - self.prompt_len == self.budget {
            return Some(Ended::Length);
        }
        None
    }

    /// Answer tokens still allowed after the next one.
    fn room(&self) -> usize {
        self.budget
            .saturating_sub(self.tokens.len() - self.prompt_len)
            .saturating_sub(1)
    }
}

/// Longest run of earlier tokens matched when guessing, and the shortest.
const GUESS_MATCH: (usize, usize) = (4, 2);
/// Most tokens guessed at once.
const GUESS_TOKENS: usize = 8;

/// How many tokens to guess next. On a CPU each guessed token adds about
/// a third of a one-token pass, and saves a whole pass only when the model
/// keeps it, so guesses grow while they are kept, shrink when they are
/// not, and pause for longer and longer after passes that kept none.
#[derive(Debug)]
struct GuessPacer {
    length: usize,
    /// Tokens to decode one at a time before guessing again.
    pause: usize,
    misses: u32,
}

impl GuessPacer {
    fn new() -> Self {
        GuessPacer {
            length: 2,
            pause: 0,
            misses: 0,
        }
    }

    /// The most tokens worth guessing now (0: decode this one plainly).
    fn want(&mut self) -> usize {
        if self.pause > 0 {
            self.pause -= 1;
            return 0;
        }
        self.length
    }

    /// `accepted` of `guessed` tokens were kept.
    fn record(&mut self, guessed: usize, accepted: usize) {
        if guessed == 0 {
            return;
        }
        if accepted == 0 {
            self.misses += 1;
            self.length = 1;
            self.pause = 1 << self.misses.min(4);
        } else {
            self.misses = 0;
            self.length = if accepted == guessed {
                (2 * guessed).min(GUESS_TOKENS)
            } else {
                (accepted + 1).min(GUESS_TOKENS)
            };
        }
    }
}

/// Prompt lookup: the tokens that followed the latest earlier place where
/// the last few of `tokens` appear (longer matches first), at most `room`
/// of them. A grounded reply copies names, numbers and phrases from its
/// knowledge and the buyer's message, and the model checks several guessed
/// tokens in one pass for little more than the price of one, since each
/// pass reads every weight once whatever the number of tokens.
fn guess_continuation(tokens: &[u32], room: usize) -> &[u32] {
    let want = room.min(GUESS_TOKENS);
    if want == 0 {
        return &[];
    }
    let (longest, shortest) = GUESS_MATCH;
    for n in (shortest..=longest).rev() {
        let Some(tail_start) = tokens.len().checked_sub(n) else {
            continue;
        };
        let tail = &tokens[tail_start..];
        let found = (0..tail_start)
            .rev()
            .find(|&start| &tokens[start..start + n] == tail);
        if let Some(start) = found {
            let from = start + n;
            return &tokens[from..(from + want).min(tokens.len())];
        }
    }
    &[]
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
    fn guesses_follow_the_latest_longest_match() {
        // "5 6" appeared twice; the later occurrence is followed by 9.
        let tokens = [1, 5, 6, 7, 8, 2, 5, 6, 9, 3, 5, 6];
        assert_eq!(guess_continuation(&tokens, 8), &[9, 3, 5, 6]);
        assert_eq!(guess_continuation(&tokens, 2), &[9, 3]);
        assert_eq!(guess_continuation(&tokens, 0), &[] as &[u32]);
        // A longer match wins over a later, shorter one.
        let tokens = [4, 5, 6, 1, 9, 5, 6, 2, 4, 5, 6];
        assert_eq!(guess_continuation(&tokens, 1), &[1]);
        // No earlier occurrence of even the shortest tail: no guess.
        assert!(guess_continuation(&[1, 2, 3, 4], 8).is_empty());
        assert!(guess_continuation(&[7], 8).is_empty());
        assert!(guess_continuation(&[], 8).is_empty());
        // Never more than GUESS_TOKENS at once.
        let long: Vec<u32> = (0..40).chain(0..2).collect();
        assert_eq!(guess_continuation(&long, 100).len(), GUESS_TOKENS);
    }

    #[test]
    fn guesses_grow_while_kept_and_pause_after_misses() {
        let mut pacer = GuessPacer::new();
        assert_eq!(pacer.want(), 2);
        pacer.record(2, 2);
        assert_eq!(pacer.want(), 4);
        pacer.record(4, 4);
        pacer.record(8, 8);
        assert_eq!(pacer.want(), GUESS_TOKENS);
        pacer.record(8, 3);
        assert_eq!(pacer.want(), 4, "one more than were kept");
        // A pass that kept nothing: two plain tokens, then one guess.
        pacer.record(4, 0);
        assert_eq!((pacer.want(), pacer.want(), pacer.want()), (0, 0, 1));
        // Another miss right after pauses twice as long.
        pacer.record(1, 0);
        assert_eq!((0..4).map(|_| pacer.want()).sum::<usize>(), 0);
        assert_eq!(pacer.want(), 1);
        // No guess made: nothing learned.
        pacer.record(0, 0);
        assert_eq!(pacer.want(), 1);
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
