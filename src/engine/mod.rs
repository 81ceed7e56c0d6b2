//! The model runtime: every loaded model runs on a dedicated OS thread behind
//! a bounded admission queue, and async callers talk to it with one-shot
//! replies (and a token channel when they stream).
//!
//! Requests come in [`Lane`]s: the reply pipeline has admission slots of its
//! own and is served before the `/v1` endpoints' clients, so no amount of
//! `/v1` traffic can take the model from a buyer's reply (per-tenant shares
//! of the `/v1` slots are `http`'s). Inputs are checked for size before
//! admission, never tokenised first.
//!
//! It owns admission control (a full queue answers [`EngineError::Overloaded`]
//! at once, a model that is not loaded [`EngineError::Unavailable`]), the
//! dynamic batching of embedding requests by a token budget, dropping work
//! whose caller has gone, and isolating panics so that one bad request never
//! takes a worker, let alone the server, down. The forward passes themselves
//! are `inference`'s; this module knows nothing of HTTP, tenants or the store,
//! and nothing here blocks an async thread: admission is a semaphore's
//! `try_acquire` and a channel's `try_send`.

mod lanes;
pub mod priority;
pub mod scope;
mod slots;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use candle_core::Device;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::config::ModelsSettings;
use crate::inference::chat::{CacheScope, ChatMessage, ChatModel, Generation, GenerationParams};
use crate::inference::{EmbedRole, EmbedTask, InferenceError, InputReport};
use crate::metrics as m;
use crate::models::{PreparedModels, ResolvedModel};
pub use lanes::Lane;
pub use slots::Role;
use slots::{Admitted, Slot, Slots};

/// Messages one chat request may hold.
pub const MAX_CHAT_MESSAGES: usize = 256;
/// Bytes of text counted as one token by the prompt-length check made
/// before tokenising: a prompt longer than this many bytes per allowed
/// token is refused without being tokenised.
pub const PROMPT_BYTES_PER_TOKEN: usize = 4;
/// Characters of an embedding input kept per token the model reads: no
/// piece of multilingual-e5's vocabulary is longer than 16 characters, so
/// text beyond can never be read and is cut before tokenising (a 4 MiB
/// input costs a tokenizer pass over 8,192 characters, not 4 million).
const EMBED_CHARS_PER_TOKEN: usize = 16;
/// What an embedding model is assumed to read before it has loaded.
const DEFAULT_EMBED_TOKENS: usize = 512;

/// The one place a chat model is loaded: `weights` is `models.chat_weights`
/// (validated by the configuration).
pub fn load_chat_model(
    model: &ResolvedModel,
    device: &Device,
    weights: &str,
) -> Result<ChatModel, InferenceError> {
    use crate::inference::chat::{ChatLoadOptions, WeightFormat};
    let weights = match weights.trim() {
        "quantized" => WeightFormat::Quantized,
        "f16" => WeightFormat::F16,
        "f32" => WeightFormat::F32,
        _ => WeightFormat::Auto,
    };
    ChatModel::load_with(model, device, &ChatLoadOptions { weights })
}

/// Sizes rayon's global pool, which candle's CPU kernels use, once per
/// process; 0 means every core. Returns the size in effect: a pool that was
/// already built keeps its size.
pub fn init_threads(threads: usize) -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        let wanted = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        match rayon::ThreadPoolBuilder::new()
            .num_threads(wanted)
            .thread_name(|i| format!("kedai-cpu-{i}"))
            .start_handler(|_| priority::lower_this_thread())
            .build_global()
        {
            Ok(()) => wanted,
            Err(err) => {
                tracing::debug!(error = %err, "rayon's global pool was already built");
                rayon::current_num_threads()
            }
        }
    })
}

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Embedding,
    Chat,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Embedding => "embedding",
            ModelKind::Chat => "chat",
        }
    }
}

/// Where a model is in its life.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ModelState {
    /// Configured, but its files were not prepared, so nothing was loaded.
    NotLoaded,
    Loading,
    Ready {
        load_seconds: f64,
    },
    /// Loading failed, or the worker thread ended; the reason is logged too.
    Failed {
        reason: String,
    },
}

/// A model as `GET /v1/models` and `/readyz` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The name clients use, e.g. `multilingual-e5-small`.
    pub id: String,
    /// The configured reference, e.g. `bundle:multilingual-e5-small`.
    pub reference: String,
    pub kind: ModelKind,
    /// The roles this model serves.
    pub roles: Vec<Role>,
    /// One of kedai's stand-ins (`stand-in:...`), not a model.
    pub stand_in: bool,
    #[serde(flatten)]
    pub state: ModelState,
    /// Requests admitted and not yet answered, both lanes.
    pub in_flight: usize,
    /// Slots of the `/v1` endpoints plus those kept for the pipeline.
    pub capacity: usize,
    /// An embedding model's vector length, once it has loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimension: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model `{model}` does not exist; available: {available}")]
    UnknownModel { model: String, available: String },
    #[error("model `{model}` is a {actual} model; this endpoint needs a {wanted} model")]
    WrongKind {
        model: String,
        actual: &'static str,
        wanted: &'static str,
    },
    #[error("model `{model}` is not available: {reason}")]
    Unavailable {
        model: String,
        reason: String,
        retry_after: Duration,
    },
    #[error("model `{model}` is busy: its {capacity} request slots are taken")]
    Overloaded {
        model: String,
        capacity: usize,
        retry_after: Duration,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error("model `{model}` failed while running the request")]
    WorkerPanicked { model: String },
}

/// Vectors for one embedding request, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedOutput {
    pub vectors: Vec<Vec<f32>>,
    pub inputs: Vec<InputReport>,
}

/// A chat request admitted to a worker. Tokens arrive on `tokens` (when the
/// request streams) as the model makes them final; `done` carries the whole
/// generation. Dropping both cancels the generation at the next token.
pub struct ChatStream {
    pub tokens: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
    pub done: oneshot::Receiver<Result<Generation, EngineError>>,
}

/// Limits applied to requests before they are admitted and by the workers.
#[derive(Debug, Clone, Copy)]
struct Limits {
    embedding_batch_tokens: usize,
    embedding_max_batch: usize,
    chat_max_tokens: usize,
    chat_max_prompt_tokens: usize,
}

struct EmbedJob {
    texts: Vec<String>,
    role: EmbedRole,
    task: EmbedTask,
    reply: oneshot::Sender<Result<EmbedOutput, EngineError>>,
}

struct ChatJob {
    messages: Vec<ChatMessage>,
    params: GenerationParams,
    tokens: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    reply: oneshot::Sender<Result<Generation, EngineError>>,
    /// Runs its prompt in chunks and stops between them once abandoned.
    background: bool,
    scope: CacheScope,
}

impl Admitted<EmbedJob> {
    fn abandoned(&self) -> bool {
        self.job.reply.is_closed()
    }
}

impl Admitted<ChatJob> {
    fn abandoned(&self) -> bool {
        self.job.reply.is_closed() || self.job.tokens.as_ref().is_some_and(|t| t.is_closed())
    }
}

struct Inner {
    slots: Slots,
    device: String,
    chat_weights: String,
    chat_guessing: bool,
    /// How long the `stand-in:echo` chat model waits before each answer.
    stand_in_delay: Duration,
    limits: Limits,
}

/// The handle async code holds: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("models", &self.models())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A runtime for the configured models, none of them loaded yet: every
    /// request answers `Unavailable` until [`Engine::load`] has finished.
    ///
    /// Each role gets the model the configuration names for it
    /// ([`ModelsSettings::roles`]); a model several roles name has one slot
    /// and is loaded once. Settings that were never validated fall back to
    /// `models.embedding` / `models.chat` for every role.
    pub fn new(settings: &ModelsSettings) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                slots: Slots::new(settings),
                device: settings.device.clone(),
                chat_weights: settings.chat_weights.clone(),
                chat_guessing: settings.chat_guessing,
                stand_in_delay: Duration::from_millis(settings.stand_in_delay_ms),
                limits: Limits {
                    embedding_batch_tokens: settings.embedding_batch_tokens,
                    embedding_max_batch: settings.embedding_max_batch,
                    chat_max_tokens: settings.chat_max_tokens,
                    chat_max_prompt_tokens: settings.chat_max_prompt_tokens,
                },
            }),
        }
    }

    /// Starts each model's worker thread, which loads the model and then
    /// serves its queue. Returns at once; [`Engine::models`] shows progress.
    /// Models already loading or loaded are left alone.
    /// A model `prepared` does not hold is marked failed.
    pub fn load(&self, prepared: &PreparedModels) {
        for (index, slot) in self.inner.slots.embeddings.iter().enumerate() {
            let Some(model) = self.prepared_for(slot, prepared) else {
                continue;
            };
            slot.task_prompts
                .store(crate::inference::has_task_prompts(model), Ordering::Relaxed);
            if self.start_slot(slot) {
                worker::spawn_embedder(self.inner.clone(), index, model.clone());
            }
        }
        for (index, slot) in self.inner.slots.chats.iter().enumerate() {
            let Some(model) = self.prepared_for(slot, prepared) else {
                continue;
            };
            if self.start_slot(slot) {
                worker::spawn_chat(self.inner.clone(), index, model.clone());
            }
        }
    }

    fn prepared_for<'p, J>(
        &self,
        slot: &Slot<J>,
        prepared: &'p PreparedModels,
    ) -> Option<&'p ResolvedModel> {
        let model = prepared.get(&slot.reference);
        if model.is_none() {
            slot.set_state(ModelState::Failed {
                reason: format!("`{}` was not prepared", slot.reference),
            });
        }
        model
    }

    fn start_slot<J>(&self, slot: &Slot<J>) -> bool {
        let mut state = slot.state.write().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, ModelState::Loading | ModelState::Ready { .. }) {
            return false;
        }
        *state = ModelState::Loading;
        true
    }

    /// Waits (blocking) until no model is loading any more; for tools and
    /// tests that need the models before they go on.
    pub fn wait_until_settled(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.models().iter().any(|m| m.state == ModelState::Loading) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Every configured model and its state.
    pub fn models(&self) -> Vec<ModelInfo> {
        self.inner.slots.infos()
    }

    /// The name (as clients use it) of the model serving `role`.
    pub fn model_for(&self, role: Role) -> String {
        self.inner.slots.model_for(role)
    }

    /// The id of the vectors `model` makes for `task`: the model's name,
    /// with `#task=classification` when the model has task prompts and
    /// `task` is classification, so caches and trained heads never mix
    /// vectors made under two prompts (or by two models).
    pub fn vector_id(&self, model: &str, task: EmbedTask) -> String {
        let prompts = self
            .embedding_slot(model)
            .is_some_and(|s| s.task_prompts.load(Ordering::Relaxed));
        match task {
            EmbedTask::Classification if prompts => format!("{model}#task=classification"),
            _ => model.to_owned(),
        }
    }

    fn embedding_slot(&self, model: &str) -> Option<&Slot<EmbedJob>> {
        self.inner.slots.embedding(model)
    }

    fn chat_slot(&self, model: &str) -> Option<&Slot<ChatJob>> {
        self.inner.slots.chat(model)
    }

    /// Whether every configured model is loaded and serving.
    pub fn all_ready(&self) -> bool {
        self.models()
            .iter()
            .all(|m| matches!(m.state, ModelState::Ready { .. }))
    }

    pub fn max_batch(&self) -> usize {
        self.inner.limits.embedding_max_batch
    }

    pub fn chat_max_tokens(&self) -> usize {
        self.inner.limits.chat_max_tokens
    }

    fn find(&self, name: &str, wanted: ModelKind) -> Result<(), EngineError> {
        let name = name.trim();
        let kind = if self.embedding_slot(name).is_some() {
            ModelKind::Embedding
        } else if self.chat_slot(name).is_some() {
            ModelKind::Chat
        } else {
            m::model_rejected("unknown", "unknown_model");
            let names: Vec<String> = self.models().into_iter().map(|m| m.id).collect();
            return Err(EngineError::UnknownModel {
                model: name.to_owned(),
                available: names.join(", "),
            });
        };
        if kind != wanted {
            return Err(EngineError::WrongKind {
                model: name.to_owned(),
                actual: kind.as_str(),
                wanted: wanted.as_str(),
            });
        }
        Ok(())
    }

    /// Requests of the reply pipeline ([`Lane::Reply`] and
    /// [`Lane::FollowUp`]) admitted to the model named `model` and not yet
    /// answered; 0 for a model that is not configured.
    pub fn pipeline_in_flight(&self, model: &str) -> usize {
        if let Some(slot) = self.embedding_slot(model) {
            return slot.pipeline_in_flight();
        }
        self.chat_slot(model).map_or(0, Slot::pipeline_in_flight)
    }

    /// The embedding model's vector length, once it has loaded: read from
    /// the model itself, never guessed.
    pub fn embedding_dimension(&self, model: &str) -> Option<usize> {
        let slot = self.embedding_slot(model)?;
        Some(slot.dimension.load(Ordering::Relaxed)).filter(|d| *d > 0)
    }

    /// Embeds `texts` for a client of the `/v1` endpoints; see
    /// [`Engine::embed_in`].
    pub async fn embed(
        &self,
        model: &str,
        texts: Vec<String>,
        role: EmbedRole,
    ) -> Result<EmbedOutput, EngineError> {
        self.embed_in(Lane::Api, model, texts, role).await
    }

    /// Embeds `texts` with the embedding model `model` in `lane`, batched
    /// with whatever else is queued. Each text is cut to what the model can
    /// read before anything tokenises it (and reported `truncated`).
    /// Dropping the future before it resolves withdraws the request.
    pub async fn embed_in(
        &self,
        lane: Lane,
        model: &str,
        texts: Vec<String>,
        role: EmbedRole,
    ) -> Result<EmbedOutput, EngineError> {
        let how = EmbedAs {
            role,
            task: EmbedTask::Retrieval,
        };
        self.embed_as(lane, model, texts, how).await
    }

    /// As [`Engine::embed_in`], with queries under `how.task`'s prompt
    /// (models without task prompts ignore it).
    pub async fn embed_as(
        &self,
        lane: Lane,
        model: &str,
        mut texts: Vec<String>,
        how: EmbedAs,
    ) -> Result<EmbedOutput, EngineError> {
        let EmbedAs { role, task } = how;
        self.find(model, ModelKind::Embedding)?;
        let Some(slot) = self.embedding_slot(model) else {
            return Err(EngineError::Invalid(format!(
                "no embedding model `{model}`"
            )));
        };
        let invalid = |message: String| {
            m::model_rejected(&slot.id, "invalid");
            Err(EngineError::Invalid(message))
        };
        let max_batch = self.inner.limits.embedding_max_batch;
        if texts.is_empty() {
            return invalid("`input` must hold at least one text".into());
        }
        if texts.len() > max_batch {
            return invalid(format!(
                "`input` may hold at most {max_batch} texts, got {}",
                texts.len()
            ));
        }
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return invalid(format!("`input[{index}]` is empty or only whitespace"));
        }
        let tokens = match slot.max_input_tokens.load(Ordering::Relaxed) {
            0 => DEFAULT_EMBED_TOKENS,
            known => known,
        };
        let cut: Vec<bool> = texts
            .iter_mut()
            .map(|text| cut_to_chars(text, tokens * EMBED_CHARS_PER_TOKEN))
            .collect();
        let (reply, done) = oneshot::channel();
        slot.admit(
            lane,
            EmbedJob {
                texts,
                role,
                task,
                reply,
            },
        )?;
        let mut output = done.await.unwrap_or_else(|_| {
            Err(EngineError::WorkerPanicked {
                model: slot.id.to_string(),
            })
        })?;
        for (report, was_cut) in output.inputs.iter_mut().zip(cut) {
            report.truncated |= was_cut;
        }
        Ok(output)
    }

    /// Admits a chat request in the `/v1` lane, outside any cache scope;
    /// see [`Engine::chat_with`].
    pub fn chat(
        &self,
        model: &str,
        messages: Vec<ChatMessage>,
        params: GenerationParams,
        stream: bool,
    ) -> Result<ChatStream, EngineError> {
        self.chat_with(
            model,
            messages,
            params,
            ChatOptions {
                lane: Lane::Api,
                stream,
                scope: CacheScope::default(),
            },
        )
    }

    /// Admits a chat request to the chat model `model`; generation starts
    /// when the worker reaches it. With `options.stream`, tokens arrive on
    /// [`ChatStream::tokens`] as they are made.
    pub fn chat_with(
        &self,
        model: &str,
        messages: Vec<ChatMessage>,
        params: GenerationParams,
        options: ChatOptions,
    ) -> Result<ChatStream, EngineError> {
        self.admit_chat(
            ChatAdmission {
                lane: options.lane,
                stream: options.stream,
                background: false,
                scope: options.scope,
            },
            model,
            messages,
            params,
        )
    }

    /// The pipeline's work nobody waits on ([`Lane::FollowUp`]): its
    /// prompt runs in chunks, and dropping the stream stops it between two
    /// of them, not only between tokens, so a request someone waits for
    /// gets the model sooner.
    pub fn chat_in_background(
        &self,
        model: &str,
        messages: Vec<ChatMessage>,
        params: GenerationParams,
        scope: CacheScope,
    ) -> Result<ChatStream, EngineError> {
        self.admit_chat(
            ChatAdmission {
                lane: Lane::FollowUp,
                stream: false,
                background: true,
                scope,
            },
            model,
            messages,
            params,
        )
    }

    fn admit_chat(
        &self,
        how: ChatAdmission,
        model: &str,
        messages: Vec<ChatMessage>,
        params: GenerationParams,
    ) -> Result<ChatStream, EngineError> {
        let ChatAdmission {
            lane,
            stream,
            background,
            scope,
        } = how;
        self.find(model, ModelKind::Chat)?;
        let Some(slot) = self.chat_slot(model) else {
            return Err(EngineError::Invalid(format!("no chat model `{model}`")));
        };
        let invalid = |message: String| {
            m::model_rejected(&slot.id, "invalid");
            Err(EngineError::Invalid(message))
        };
        if messages.is_empty() {
            return invalid("`messages` must hold at least one message".into());
        }
        if messages.len() > MAX_CHAT_MESSAGES {
            return invalid(format!(
                "`messages` may hold at most {MAX_CHAT_MESSAGES} messages, got {}",
                messages.len()
            ));
        }
        let bytes: usize = messages.iter().map(|m| m.content.len()).sum();
        let most = self.inner.limits.chat_max_prompt_tokens;
        if bytes > most.saturating_mul(PROMPT_BYTES_PER_TOKEN) {
            return invalid(format!(
                "the messages hold {bytes} bytes, about {} tokens; at most {most} tokens \
                 ({} bytes) are accepted",
                bytes.div_ceil(PROMPT_BYTES_PER_TOKEN),
                most * PROMPT_BYTES_PER_TOKEN
            ));
        }
        let ceiling = self.inner.limits.chat_max_tokens;
        if !(1..=ceiling).contains(&params.max_tokens) {
            return invalid(format!(
                "`max_tokens` must be in 1..={ceiling}, got {}",
                params.max_tokens
            ));
        }
        if let Err(err) = params.validate() {
            return invalid(match err {
                InferenceError::InvalidParams(message) => message,
                other => other.to_string(),
            });
        }
        let (reply, done) = oneshot::channel();
        let (tokens, receiver) = if stream {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        slot.admit(
            lane,
            ChatJob {
                messages,
                params,
                tokens,
                reply,
                background,
                scope,
            },
        )?;
        Ok(ChatStream {
            tokens: receiver,
            done,
        })
    }
}

/// How a chat request is admitted.
#[derive(Debug, Clone, Copy)]
struct ChatAdmission {
    lane: Lane,
    stream: bool,
    background: bool,
    scope: CacheScope,
}

/// What an embedding request's texts are and what their vectors are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedAs {
    pub role: EmbedRole,
    pub task: EmbedTask,
}

/// How [`Engine::chat_with`] runs a request.
#[derive(Debug, Clone, Copy)]
pub struct ChatOptions {
    pub lane: Lane,
    pub stream: bool,
    /// Whose cached work the prompt may reuse.
    pub scope: CacheScope,
}

/// Cuts `text` to at most `chars` characters, at a character boundary;
/// whether anything was cut.
fn cut_to_chars(text: &mut String, chars: usize) -> bool {
    match text.char_indices().nth(chars) {
        Some((end, _)) => {
            text.truncate(end);
            true
        }
        None => false,
    }
}

/// Per-model state for `/readyz`.
pub fn readiness_detail(engine: &Engine) -> serde_json::Value {
    let models: HashMap<String, ModelInfo> = engine
        .models()
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect();
    serde_json::to_value(models).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests;
