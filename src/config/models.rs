//! `[models]`: the model references, the profiles and `[models.roles]`
//! resolved into each role's model (`ModelRoles`), the runtime's limits,
//! and their validation. It names models; it never loads or fetches them.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// The most tokens one generation may produce; a ceiling above it could
/// never be honoured.
const CHAT_MAX_TOKENS_LIMIT: usize = 4096;

/// The longest artificial delay of the chat stand-in (ten minutes).
const MAX_STAND_IN_DELAY_MS: u64 = 600_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsSettings {
    pub dir: String,
    pub fetch_on_start: bool,
    /// Seconds between checks, while the server runs without its models,
    /// whether they have been put in place; 0 waits for a restart.
    pub recheck_secs: u64,
    pub required: bool,
    /// The embedding and chat models every role uses unless the profile or
    /// `roles` says otherwise.
    pub embedding: String,
    pub chat: String,
    /// A named set of role choices (`small`, `quality`); see
    /// [`ModelsSettings::roles`].
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Each role's model, overriding the profile's choice.
    #[serde(default)]
    pub roles: RoleSettings,
    /// The pip command used to fetch bundle artifacts (split on whitespace,
    /// so `python3 -m pip` works).
    pub pip: String,
    /// Where forward passes run: `auto`, `cpu`, `cuda`, `cuda:N` or `metal`.
    pub device: String,
    /// Threads for the CPU kernels; 0 means every core.
    pub threads: usize,
    /// How the chat model's weights are held: `auto` (the fastest measured:
    /// quantized), `quantized`, `f16` or `f32`.
    pub chat_weights: String,
    /// Whether greedy generation on the CPU checks tokens guessed from the
    /// prompt several at a time (same answers, faster when replies copy
    /// from their knowledge).
    pub chat_guessing: bool,
    /// Embedding requests admitted at once (queued plus running).
    pub embedding_queue_capacity: usize,
    /// Estimated tokens the embedding worker gathers into one batch.
    pub embedding_batch_tokens: usize,
    /// Inputs per embedding batch, and per request.
    pub embedding_max_batch: usize,
    /// Chat requests admitted at once (queued plus running).
    pub chat_queue_capacity: usize,
    /// The largest `max_tokens` a chat request may ask for.
    pub chat_max_tokens: usize,
    /// The longest prompt, in tokens, a chat request may send.
    pub chat_max_prompt_tokens: usize,
    /// Largest request body the OpenAI-compatible `/v1` endpoints accept.
    pub request_body_limit_bytes: usize,
    /// Admission slots kept for the reply pipeline alone, which the
    /// pipeline's requests also jump the queue with.
    pub pipeline_embedding_capacity: usize,
    pub pipeline_chat_capacity: usize,
    /// Milliseconds the `stand-in:echo` chat model waits before each
    /// answer, to play a slow model in plumbing and chaos tests; real
    /// models ignore it.
    pub stand_in_delay_ms: u64,
}

fn default_profile() -> String {
    "small".into()
}

/// `[models.roles]`: one model per job the models do. A key left out takes
/// the profile's choice, else `models.embedding` / `models.chat`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSettings {
    /// The encoder behind the intent, sentiment and anger heads.
    pub understand: Option<String>,
    /// The encoder behind knowledge-base search and translation checks.
    pub retrieval: Option<String>,
    /// The chat model writing buyer-facing drafts.
    pub drafts: Option<String>,
    /// The chat model writing translations and agent summaries.
    pub translations: Option<String>,
}

/// Which model serves each role, resolved from `models.roles`, the profile
/// and `models.embedding` / `models.chat`, in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoles {
    pub understand: String,
    pub retrieval: String,
    pub drafts: String,
    pub translations: String,
}

/// The profiles `models.profile` may name, and the roles each sets; a role
/// a profile leaves out takes `models.embedding` / `models.chat`. The
/// choices are measured in docs/quality.md ("Model roles and profiles"):
/// EmbeddingGemma behind the heads read more intents right but, with the
/// heads' thresholds tuned on e5-small, routed worse and sent one answer a
/// person should have given, so no profile puts it there yet.
const PROFILES: &[(&str, &[(&str, &str)])] = &[
    ("small", &[]),
    (
        "quality",
        &[("translations", "bundle:qwen2.5-coder-1.5b-instruct")],
    ),
];

impl ModelRoles {
    /// Distinct embedding references, the heads' encoder first.
    pub fn embeddings(&self) -> Vec<String> {
        distinct([&self.understand, &self.retrieval])
    }

    /// Distinct chat references, the drafts' model first.
    pub fn chats(&self) -> Vec<String> {
        distinct([&self.drafts, &self.translations])
    }

    /// Every distinct reference, embeddings first.
    pub fn all(&self) -> Vec<String> {
        let mut all = self.embeddings();
        all.extend(self.chats());
        all
    }
}

fn distinct<const N: usize>(references: [&String; N]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for reference in references {
        if !out.contains(reference) {
            out.push(reference.clone());
        }
    }
    out
}

impl ModelsSettings {
    /// Each role's model: `models.roles.<role>` when set, else the
    /// profile's choice, else `models.embedding` (understand, retrieval) or
    /// `models.chat` (drafts, translations).
    pub fn roles(&self) -> Result<ModelRoles, String> {
        let profile = self.profile.trim();
        let Some((_, chosen)) = PROFILES.iter().find(|(name, _)| *name == profile) else {
            let known: Vec<&str> = PROFILES.iter().map(|(name, _)| *name).collect();
            return Err(format!(
                "models.profile must be one of {}, got {profile:?}",
                known.join(", ")
            ));
        };
        let pick = |role: &str, explicit: &Option<String>, base: &str| match explicit {
            Some(reference) if reference.trim().is_empty() => Err(format!(
                "models.roles.{role} must name a model when set, got {reference:?}; leave it \
                 out to use the profile's choice"
            )),
            Some(reference) => Ok(reference.trim().to_owned()),
            None => Ok(chosen
                .iter()
                .find(|(name, _)| *name == role)
                .map_or(base, |(_, reference)| *reference)
                .trim()
                .to_owned()),
        };
        let (embedding, chat) = (self.embedding.as_str(), self.chat.as_str());
        let roles = &self.roles;
        Ok(ModelRoles {
            understand: pick("understand", &roles.understand, embedding)?,
            retrieval: pick("retrieval", &roles.retrieval, embedding)?,
            drafts: pick("drafts", &roles.drafts, chat)?,
            translations: pick("translations", &roles.translations, chat)?,
        })
    }

    /// Every distinct model the roles name, embeddings first: the models
    /// `kedai models` and `kedai bench models` work on by default. Settings
    /// that were never validated fall back to `models.embedding` and
    /// `models.chat`.
    pub fn configured_models(&self) -> Vec<String> {
        self.roles()
            .map(|r| r.all())
            .unwrap_or_else(|_| vec![self.embedding.clone(), self.chat.clone()])
    }

    /// The model cache directory: `models.dir`, else `$KEDAI_MODELS`, else
    /// `<user cache dir>/kedai/models`.
    pub fn cache_dir(&self) -> PathBuf {
        if !self.dir.trim().is_empty() {
            return PathBuf::from(self.dir.trim());
        }
        if let Some(dir) = std::env::var_os("KEDAI_MODELS").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("kedai")
            .join("models")
    }
}

impl ModelsSettings {
    pub(super) fn validate_runtime(&self) -> Result<(), ConfigError> {
        let models = self;
        let device = models.device.trim().to_ascii_lowercase();
        let device_ok = matches!(device.as_str(), "auto" | "cpu" | "cuda" | "metal")
            || device
                .strip_prefix("cuda:")
                .is_some_and(|n| n.parse::<usize>().is_ok());
        if !device_ok {
            return Err(ConfigError::Invalid(format!(
                "models.device must be auto, cpu, cuda, cuda:N or metal, got {:?}",
                models.device
            )));
        }
        if !matches!(
            models.chat_weights.trim(),
            "auto" | "quantized" | "f16" | "f32"
        ) {
            return Err(ConfigError::Invalid(format!(
                "models.chat_weights must be auto, quantized, f16 or f32, got {:?}",
                models.chat_weights
            )));
        }
        let positive = [
            (
                "models.embedding_queue_capacity",
                models.embedding_queue_capacity,
            ),
            (
                "models.embedding_batch_tokens",
                models.embedding_batch_tokens,
            ),
            ("models.embedding_max_batch", models.embedding_max_batch),
            ("models.chat_queue_capacity", models.chat_queue_capacity),
            (
                "models.pipeline_embedding_capacity",
                models.pipeline_embedding_capacity,
            ),
            (
                "models.pipeline_chat_capacity",
                models.pipeline_chat_capacity,
            ),
            ("models.chat_max_tokens", models.chat_max_tokens),
            (
                "models.chat_max_prompt_tokens",
                models.chat_max_prompt_tokens,
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!("{key} must be > 0, got 0")));
        }
        if models.embedding_max_batch > 2048 {
            return Err(ConfigError::Invalid(format!(
                "models.embedding_max_batch must be <= 2048, got {}",
                models.embedding_max_batch
            )));
        }
        if models.threads > 1024 {
            return Err(ConfigError::Invalid(format!(
                "models.threads must be <= 1024, got {}",
                models.threads
            )));
        }
        if models.chat_max_tokens > CHAT_MAX_TOKENS_LIMIT {
            return Err(ConfigError::Invalid(format!(
                "models.chat_max_tokens must be <= {CHAT_MAX_TOKENS_LIMIT}, got {}",
                models.chat_max_tokens
            )));
        }
        if models.stand_in_delay_ms > MAX_STAND_IN_DELAY_MS {
            return Err(ConfigError::Invalid(format!(
                "models.stand_in_delay_ms must be <= {MAX_STAND_IN_DELAY_MS}, got {}",
                models.stand_in_delay_ms
            )));
        }
        if models.request_body_limit_bytes < 1024 {
            return Err(ConfigError::Invalid(format!(
                "models.request_body_limit_bytes must be >= 1024, got {}",
                models.request_body_limit_bytes
            )));
        }
        Ok(())
    }
}
