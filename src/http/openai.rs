//! OpenAI-compatible endpoints over kedai's local models: `GET /v1/models`,
//! `POST /v1/embeddings` and `POST /v1/chat/completions` (with `stream: true`
//! as server-sent events), behind the same bearer tokens as `/api/v1`, so
//! existing clients and agent frameworks work against kedai.
//!
//! Wire DTOs live here and are turned into the engine's types before a
//! request is admitted; arrays are bounded while they are read, so a large
//! body never becomes a million small strings. Each tenant's share (a rate
//! and requests in progress, `quota`) is checked first; the engine then
//! decides admission, batching and cancellation. Errors go through [`ApiError`] like everywhere else, whose
//! body already has OpenAI's `{"error": {"message", "type", "code"}}` shape.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Tenant};
use super::quota::QuotaPermit;
use super::AppState;
use crate::engine::{scope, ChatOptions, EngineError, Lane, ModelState, MAX_CHAT_MESSAGES};
use crate::inference::chat::{ChatMessage, ChatRole, FinishReason, Generation, GenerationParams};
use crate::inference::EmbedRole;

/// `max_tokens` when a request does not say, unless the configured ceiling
/// is lower.
const DEFAULT_MAX_TOKENS: usize = 256;

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelObject {
    /// The name to pass as `model`, e.g. `multilingual-e5-small`.
    pub id: String,
    #[schema(example = "model")]
    pub object: &'static str,
    pub created: i64,
    /// `kedai`, or `kedai-stand-in` for the stand-ins of plumbing tests
    /// (`stand-in:hashing`, `stand-in:echo`), which are not models.
    #[schema(example = "kedai")]
    pub owned_by: &'static str,
    /// kedai extension: `embedding` or `chat`.
    pub kind: &'static str,
    /// kedai extension: `not_loaded`, `loading`, `ready` or `failed`.
    pub state: &'static str,
    /// kedai extension: the jobs the server gives this model
    /// (`understand`, `retrieval`, `drafts`, `translations`).
    #[schema(example = json!(["drafts"]))]
    pub roles: Vec<&'static str>,
}

/// The configured models and whether each is loaded.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The configured models", body = ModelList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    )
)]
pub async fn list_models(_tenant: Tenant, State(state): State<AppState>) -> Json<ModelList> {
    let data = state
        .engine
        .models()
        .into_iter()
        .map(|model| ModelObject {
            id: model.id,
            object: "model",
            created: 0,
            owned_by: if model.stand_in {
                "kedai-stand-in"
            } else {
                "kedai"
            },
            kind: model.kind.as_str(),
            roles: model.roles.iter().map(|r| r.as_str()).collect(),
            state: match model.state {
                ModelState::NotLoaded => "not_loaded",
                ModelState::Loading => "loading",
                ModelState::Ready { .. } => "ready",
                ModelState::Failed { .. } => "failed",
            },
        })
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
}

/// Texts one embedding request may send, whatever
/// `models.embedding_max_batch` says (it may not be larger).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 64;

/// One text or several.
#[derive(Debug, ToSchema)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Input;
        impl<'de> serde::de::Visitor<'de> for Input {
            type Value = EmbeddingInput;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<EmbeddingInput, E> {
                Ok(EmbeddingInput::One(text.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<EmbeddingInput, E> {
                Ok(EmbeddingInput::One(text))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<EmbeddingInput, A::Error> {
                bounded_seq(seq, MAX_EMBEDDING_INPUTS, "`input`").map(EmbeddingInput::Many)
            }
        }
        deserializer.deserialize_any(Input)
    }
}

/// Reads a JSON array, failing as soon as it holds more than `most`
/// elements rather than after reading all of them.
fn bounded_seq<'de, T: Deserialize<'de>, A: serde::de::SeqAccess<'de>>(
    mut seq: A,
    most: usize,
    what: &str,
) -> Result<Vec<T>, A::Error> {
    let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(most));
    while let Some(item) = seq.next_element()? {
        if items.len() == most {
            return Err(serde::de::Error::custom(format!(
                "{what} may hold at most {most} items"
            )));
        }
        items.push(item);
    }
    Ok(items)
}

fn bounded_messages<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<WireMessage>, D::Error> {
    struct Messages;
    impl<'de> serde::de::Visitor<'de> for Messages {
        type Value = Vec<WireMessage>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of messages")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            bounded_seq(seq, MAX_CHAT_MESSAGES, "`messages`")
        }
    }
    deserializer.deserialize_seq(Messages)
}

/// kedai extension: what the texts are, for models trained with role
/// prefixes (e5's `query: ` / `passage: `). Ignored by other models.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// Questions and other texts used to search (the default).
    #[default]
    Query,
    /// Documents being searched: FAQ answers, product descriptions.
    #[serde(alias = "document")]
    Passage,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    #[schema(example = "multilingual-e5-small")]
    pub model: String,
    /// A string or an array of strings (at most `models.embedding_max_batch`);
    /// token arrays are not accepted. Inputs longer than the model reads are
    /// cut, and reported with `truncated: true`.
    pub input: EmbeddingInput,
    /// Only `float` is supported.
    pub encoding_format: Option<String>,
    /// Must equal the model's dimension when given; vectors are never cut.
    pub dimensions: Option<usize>,
    /// kedai extension: `query` (default) or `passage` (alias `document`).
    pub input_type: Option<InputType>,
    /// Accepted and ignored.
    pub user: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingsResponse {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<EmbeddingObject>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingObject {
    #[schema(example = "embedding")]
    pub object: &'static str,
    pub index: usize,
    /// Unit length.
    pub embedding: Vec<f32>,
    /// kedai extension: tokens the model read for this input.
    pub tokens: usize,
    /// kedai extension: the input was longer than the model reads and its
    /// tail did not contribute.
    pub truncated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// Sentence embeddings, batched with other queued requests.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "openai",
    request_body = EmbeddingsRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One vector per input", body = EmbeddingsResponse),
        (status = 400, description = "Malformed JSON or invalid UTF-8", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body over models.request_body_limit_bytes", body = ErrorBody),
        (status = 422, description = "Empty input, too many inputs, unsupported option", body = ErrorBody),
        (status = 429, description = "The model's queue is full, or this tenant's share is used; see Retry-After", body = ErrorBody),
        (status = 503, description = "The model is not loaded; see Retry-After", body = ErrorBody),
    )
)]
pub async fn embeddings(
    tenant: Tenant,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<EmbeddingsRequest>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    let _share = state.access.models.admit(tenant.id)?;
    if let Some(format) = request.encoding_format.as_deref() {
        if format != "float" {
            return Err(ApiError::Invalid(format!(
                "`encoding_format` must be \"float\", got {format:?}"
            )));
        }
    }
    let texts = match request.input {
        EmbeddingInput::One(text) => vec![text],
        EmbeddingInput::Many(texts) => texts,
    };
    let role = match request.input_type.unwrap_or_default() {
        InputType::Query => EmbedRole::Query,
        InputType::Passage => EmbedRole::Passage,
    };
    let output = state.engine.embed(&request.model, texts, role).await?;
    if let (Some(wanted), Some(first)) = (request.dimensions, output.vectors.first()) {
        if wanted != first.len() {
            return Err(ApiError::Invalid(format!(
                "`dimensions` must be {} for this model, got {wanted}",
                first.len()
            )));
        }
    }
    let prompt_tokens = output.inputs.iter().map(|i| i.tokens).sum();
    let data = output
        .vectors
        .into_iter()
        .zip(output.inputs)
        .enumerate()
        .map(|(index, (embedding, report))| EmbeddingObject {
            object: "embedding",
            index,
            embedding,
            tokens: report.tokens,
            truncated: report.truncated,
        })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list",
        data,
        model: request.model,
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    }))
}

/// A message's content: a string, or an array of parts of which only
/// `text` parts are accepted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentPart {
    /// Only `text`.
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct WireMessage {
    /// `system` (or `developer`), `user` or `assistant`.
    #[schema(example = "user")]
    pub role: String,
    pub content: MessageContent,
    /// Accepted and ignored.
    pub name: Option<String>,
}

/// A string or an array of strings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    #[schema(example = "qwen2.5-coder-0.5b-instruct")]
    pub model: String,
    /// At most 256.
    #[serde(deserialize_with = "bounded_messages")]
    pub messages: Vec<WireMessage>,
    /// 1..=`models.chat_max_tokens`; defaults to 256 (or the ceiling).
    pub max_tokens: Option<usize>,
    /// Newer name for `max_tokens`; used when `max_tokens` is absent.
    pub max_completion_tokens: Option<usize>,
    /// 0..=2; defaults to 0 (greedy, reproducible), unlike OpenAI's 1.
    pub temperature: Option<f64>,
    /// In (0, 1]; defaults to 1.
    pub top_p: Option<f64>,
    /// Up to 8 strings of at most 64 bytes; the answer ends before the
    /// first.
    pub stop: Option<StopField>,
    /// Seeds sampling; irrelevant when greedy.
    pub seed: Option<u64>,
    /// Only 0 is supported; use `repeat_penalty`.
    pub presence_penalty: Option<f64>,
    /// Only 0 is supported; use `repeat_penalty`.
    pub frequency_penalty: Option<f64>,
    /// kedai extension: divides the logits of tokens seen in the last 64;
    /// 1 (the default) turns it off. In (0, 10].
    pub repeat_penalty: Option<f32>,
    /// Only 1 is supported.
    pub n: Option<u32>,
    /// Answer as server-sent events, OpenAI's `chat.completion.chunk`
    /// objects, ending with `data: [DONE]`.
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// Accepted and ignored.
    pub user: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    #[schema(example = "chat.completion")]
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: ChatUsage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    /// `stop` (end token or stop string) or `length` (`max_tokens` or the
    /// context is full).
    #[schema(example = "stop")]
    pub finish_reason: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessage {
    #[schema(example = "assistant")]
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatUsage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl ChatUsage {
    fn of(generation: &Generation) -> ChatUsage {
        ChatUsage {
            prompt_tokens: generation.prompt_tokens,
            completion_tokens: generation.completion_tokens,
            total_tokens: generation.prompt_tokens + generation.completion_tokens,
        }
    }
}

/// A chat answer from the local chat model, whole or streamed.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "openai",
    request_body = ChatCompletionRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The answer; with `stream: true`, `text/event-stream` chunks ending with `data: [DONE]`", body = ChatCompletion),
        (status = 400, description = "Malformed JSON or invalid UTF-8", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body over models.request_body_limit_bytes", body = ErrorBody),
        (status = 422, description = "Invalid parameter, empty messages, prompt too long", body = ErrorBody),
        (status = 429, description = "The model's queue is full, or this tenant's share is used; see Retry-After", body = ErrorBody),
        (status = 503, description = "The model is not loaded; see Retry-After", body = ErrorBody),
    )
)]
pub async fn chat_completions(
    tenant: Tenant,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let share = state.access.models.admit(tenant.id)?;
    let ceiling = state.engine.chat_max_tokens();
    let (messages, params) = parse_chat(&request, ceiling)?;
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let admitted = state.engine.chat_with(
        &request.model,
        messages,
        params,
        ChatOptions {
            lane: Lane::Api,
            stream: request.stream,
            scope: scope::api(tenant.id.0.as_u128()),
        },
    )?;
    let meta = ChunkMeta {
        id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
        created: chrono::Utc::now().timestamp(),
        model: request.model,
    };
    match admitted.tokens {
        Some(tokens) => Ok(stream_response(
            StreamParts {
                meta,
                tokens,
                done: admitted.done,
                include_usage,
            },
            share,
        )),
        None => {
            let generation = admitted.done.await.unwrap_or_else(|_| {
                Err(EngineError::WorkerPanicked {
                    model: meta.model.clone(),
                })
            })?;
            Ok(Json(ChatCompletion {
                id: meta.id,
                object: "chat.completion",
                created: meta.created,
                choices: vec![ChatChoice {
                    index: 0,
                    message: AssistantMessage {
                        role: "assistant",
                        content: generation.text.clone(),
                    },
                    finish_reason: finish_reason(generation.finish_reason),
                }],
                usage: ChatUsage::of(&generation),
                model: meta.model,
            })
            .into_response())
        }
    }
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        // Only a caller that has gone cancels, and it reads nothing more.
        FinishReason::Cancelled => "cancelled",
    }
}

/// The wire request as the engine's messages and generation parameters.
fn parse_chat(
    request: &ChatCompletionRequest,
    ceiling: usize,
) -> Result<(Vec<ChatMessage>, GenerationParams), ApiError> {
    let invalid = |message: String| Err(ApiError::Invalid(message));
    if let Some(n) = request.n {
        if n != 1 {
            return invalid(format!("`n` must be 1, got {n}"));
        }
    }
    for (name, value) in [
        ("presence_penalty", request.presence_penalty),
        ("frequency_penalty", request.frequency_penalty),
    ] {
        if let Some(value) = value.filter(|v| *v != 0.0) {
            return invalid(format!(
                "`{name}` is not supported (got {value}); use the `repeat_penalty` extension"
            ));
        }
    }
    let mut messages = Vec::with_capacity(request.messages.len());
    for (index, message) in request.messages.iter().enumerate() {
        let role = match message.role.as_str() {
            "system" | "developer" => ChatRole::System,
            "user" => ChatRole::User,
            "assistant" => ChatRole::Assistant,
            other => {
                return invalid(format!(
                    "`messages[{index}].role` must be system, developer, user or assistant, \
                     got {other:?}"
                ))
            }
        };
        let content = match &message.content {
            MessageContent::Text(text) => text.clone(),
            MessageContent::Parts(parts) => {
                let mut text = String::new();
                for (part_index, part) in parts.iter().enumerate() {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(piece)) => text.push_str(piece),
                        (kind, _) => {
                            return invalid(format!(
                                "`messages[{index}].content[{part_index}]` must be a text part \
                                 with `text`, got type {kind:?}"
                            ))
                        }
                    }
                }
                text
            }
        };
        messages.push(ChatMessage::new(role, content));
    }
    let defaults = GenerationParams::default();
    let max_tokens = request
        .max_tokens
        .or(request.max_completion_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS.min(ceiling));
    let stop = match &request.stop {
        None => Vec::new(),
        Some(StopField::One(stop)) => vec![stop.clone()],
        Some(StopField::Many(stops)) => stops.clone(),
    };
    if let Some(index) = stop.iter().position(|s| s.len() > MAX_STOP_BYTES) {
        return invalid(format!(
            "`stop[{index}]` may be at most {MAX_STOP_BYTES} bytes long, got {}",
            stop[index].len()
        ));
    }
    let params = GenerationParams {
        max_tokens,
        temperature: request.temperature.unwrap_or(defaults.temperature),
        top_p: request.top_p.unwrap_or(defaults.top_p),
        repeat_penalty: request.repeat_penalty.unwrap_or(defaults.repeat_penalty),
        repeat_last_n: defaults.repeat_last_n,
        seed: request.seed.unwrap_or(defaults.seed),
        stop,
    };
    Ok((messages, params))
}

/// What every chunk of one streamed answer repeats.
struct ChunkMeta {
    id: String,
    created: i64,
    model: String,
}

impl ChunkMeta {
    fn chunk(&self, delta: serde_json::Value, finish: Option<&str>) -> Event {
        self.event(json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    }

    fn event(&self, value: serde_json::Value) -> Event {
        Event::default().data(value.to_string())
    }
}

struct StreamState {
    meta: ChunkMeta,
    tokens: mpsc::UnboundedReceiver<String>,
    done: Option<oneshot::Receiver<Result<Generation, EngineError>>>,
    include_usage: bool,
    pending: VecDeque<Event>,
    /// The tenant's share, held until the stream ends.
    _share: QuotaPermit,
}

/// What a streamed answer is made of.
struct StreamParts {
    meta: ChunkMeta,
    tokens: mpsc::UnboundedReceiver<String>,
    done: oneshot::Receiver<Result<Generation, EngineError>>,
    include_usage: bool,
}

impl StreamState {
    /// The events after the last token: the finishing chunk (or an error
    /// object), usage when asked for, and `[DONE]`.
    async fn finish(&mut self) {
        let Some(done) = self.done.take() else {
            return;
        };
        let result = done.await.unwrap_or_else(|_| {
            Err(EngineError::WorkerPanicked {
                model: self.meta.model.clone(),
            })
        });
        match result {
            Ok(generation) => {
                let reason = finish_reason(generation.finish_reason);
                self.pending
                    .push_back(self.meta.chunk(json!({}), Some(reason)));
                if self.include_usage {
                    self.pending.push_back(self.meta.event(json!({
                        "id": self.meta.id,
                        "object": "chat.completion.chunk",
                        "created": self.meta.created,
                        "model": self.meta.model,
                        "choices": [],
                        "usage": ChatUsage::of(&generation),
                    })));
                }
            }
            Err(err) => {
                let response = ApiError::from(err).into_response();
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .unwrap_or_else(|| json!({"error": {"message": "internal server error"}}));
                tracing::debug!(status = status.as_u16(), "chat stream ended with an error");
                self.pending.push_back(self.meta.event(body));
            }
        }
        self.pending.push_back(Event::default().data("[DONE]"));
    }
}

fn stream_response(parts: StreamParts, share: QuotaPermit) -> Response {
    let StreamParts {
        meta,
        tokens,
        done,
        include_usage,
    } = parts;
    let mut pending = VecDeque::new();
    pending.push_back(meta.chunk(json!({"role": "assistant", "content": ""}), None));
    let state = StreamState {
        meta,
        tokens,
        done: Some(done),
        include_usage,
        pending,
        _share: share,
    };
    // Dropping this stream (the client went away) drops both receivers,
    // which the worker sees at its next token.
    let events = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(event), state));
            }
            // Once the answer is in and its events sent, the stream ends.
            state.done.as_ref()?;
            match state.tokens.recv().await {
                Some(piece) => {
                    let event = state.meta.chunk(json!({ "content": piece }), None);
                    return Some((Ok(event), state));
                }
                None => state.finish().await,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: serde_json::Value) -> ChatCompletionRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn openai_requests_become_engine_parameters() {
        let (messages, params) = parse_chat(
            &request(json!({
                "model": "m",
                "messages": [
                    {"role": "developer", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                ],
                "max_completion_tokens": 12, "temperature": 0.5, "top_p": 0.9,
                "stop": "\n\n", "seed": 7, "repeat_penalty": 1.1, "presence_penalty": 0,
            })),
            1024,
        )
        .unwrap();
        assert_eq!(
            messages,
            vec![
                ChatMessage::new(ChatRole::System, "Be brief."),
                ChatMessage::new(ChatRole::User, "Hi there"),
            ]
        );
        assert_eq!(params.max_tokens, 12);
        assert_eq!(params.temperature, 0.5);
        assert_eq!(params.top_p, 0.9);
        assert_eq!(params.stop, vec!["\n\n".to_owned()]);
        assert_eq!(params.seed, 7);
        assert_eq!(params.repeat_penalty, 1.1);

        let (_, params) = parse_chat(
            &request(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})),
            100,
        )
        .unwrap();
        assert_eq!(
            params.max_tokens, 100,
            "the default never exceeds the ceiling"
        );
        assert_eq!(params.temperature, 0.0, "greedy unless asked otherwise");
    }

    #[test]
    fn m6_arrays_are_bounded_while_they_are_read() {
        let many = format!("[{}\"a\"]", "\"a\",".repeat(MAX_EMBEDDING_INPUTS));
        let body = format!("{{\"model\": \"m\", \"input\": {many}}}");
        let err = serde_json::from_str::<EmbeddingsRequest>(&body).unwrap_err();
        assert!(err.to_string().contains("at most 2048 items"), "{err}");
        let one: EmbeddingsRequest =
            serde_json::from_str(r#"{"model": "m", "input": "hello"}"#).unwrap();
        assert!(matches!(one.input, EmbeddingInput::One(ref t) if t == "hello"));
        let messages = format!(
            "{{\"model\": \"m\", \"messages\": [{}]}}",
            vec![r#"{"role": "user", "content": "x"}"#; MAX_CHAT_MESSAGES + 1].join(",")
        );
        let err = serde_json::from_str::<ChatCompletionRequest>(&messages).unwrap_err();
        assert!(
            err.to_string().contains("`messages` may hold at most 256"),
            "{err}"
        );
        let long_stop = parse_chat(
            &request(json!({
                "model": "m", "messages": [{"role": "user", "content": "x"}],
                "stop": ["x".repeat(65)],
            })),
            1024,
        )
        .unwrap_err();
        assert!(
            long_stop.to_string().contains("at most 64 bytes"),
            "{long_stop}"
        );
    }

    #[test]
    fn unsupported_options_are_named() {
        let cases = [
            (json!({"n": 2}), "`n` must be 1"),
            (
                json!({"frequency_penalty": 0.5}),
                "`frequency_penalty` is not supported",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "`messages[0].role`",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "`messages[0].content[0]`",
            ),
        ];
        for (extra, expected) in cases {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            for (key, value) in extra.as_object().unwrap() {
                body[key] = value.clone();
            }
            let err = parse_chat(&request(body), 1024).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
