//! Typed configuration: the defaults embedded in the binary
//! (`config/default.toml`), then an optional file, then `KEDAI__SECTION__KEY`
//! environment variables. Unknown keys are rejected and every value is
//! validated once, here, so the rest of kedai can trust its `Settings`.
//!
//! This module knows nothing of HTTP, the store or the models; it only says
//! what the operator asked for (the pipeline's policy and the channels'
//! settings are plain types those modules declare).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

/// The defaults every deployment starts from.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

/// The most tokens one generation may produce; a ceiling above it could
/// never be honoured.
const CHAT_MAX_TOKENS_LIMIT: usize = 4096;

/// The longest artificial delay of the chat stand-in (ten minutes).
const MAX_STAND_IN_DELAY_MS: u64 = 600_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} does not exist")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        ConfigError::Invalid(err.to_string())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub models: ModelsSettings,
    pub queue: QueueSettings,
    pub log: LogSettings,
    pub telemetry: crate::telemetry::TelemetrySettings,
    pub kb: KbSettings,
    pub policy: crate::pipeline::policy::PolicySettings,
    pub pipeline: PipelineSettings,
    pub web: crate::web::WebSettings,
    pub access: AccessSettings,
    pub channels: crate::channels::ChannelSettings,
}

/// Authentication throttling and each tenant's share of the models
/// (`[access]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    /// Failed authentications one client address may make per window.
    pub failed_auth_limit: u32,
    pub failed_auth_window_secs: u64,
    /// Client addresses the failure counter remembers at most.
    pub failed_auth_clients: usize,
    /// Request header holding the client's address when a reverse proxy
    /// sits in front (`x-forwarded-for`, `x-real-ip`); empty: the peer.
    pub client_ip_header: String,
    /// Requests per minute one tenant may send to the `/v1` model
    /// endpoints, and how many may run at once.
    pub models_requests_per_minute: u32,
    pub models_concurrency_per_tenant: usize,
    /// Least seconds between two retrainings asked for over the API.
    pub reload_min_interval_secs: u64,
}

/// The answer stage's tuning (`[pipeline]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// The language agents read (ISO 639-1).
    pub agent_language: String,
    pub retrieval_limit: usize,
    pub faq_min_similarity: f32,
    pub draft_min_similarity: f32,
    pub draft_max_tokens: usize,
    /// Intent exemplars, one JSONL file per language; the classifier is
    /// trained from them at start-up.
    pub intents_dir: String,
    /// Sentiment, anger and urgency exemplars; empty for none.
    pub sentiment_dir: String,
    /// How often the exemplar folders are checked for changes (seconds);
    /// a change retrains the classifiers in the background. 0 turns the
    /// check off (`POST /api/v1/understand/reload` still retrains).
    #[serde(default = "default_exemplars_poll_secs")]
    pub exemplars_poll_secs: u64,
    /// The evaluation set (`kb/eval/replies.jsonl`: `message` and
    /// `expected_intent`, `expected_layer`) every tenant's retrained heads
    /// are measured on before they are promoted; empty for none.
    #[serde(default)]
    pub learning_eval_set: String,
    /// Seconds the queue must have been empty before FAQ answers are
    /// translated ahead into the shops' market languages; 0: never ahead.
    #[serde(default = "default_prepare_after_idle_secs")]
    pub prepare_translations_after_idle_secs: u64,
}

fn default_exemplars_poll_secs() -> u64 {
    5
}

fn default_prepare_after_idle_secs() -> u64 {
    120
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub body_limit_bytes: usize,
    pub max_text_chars: usize,
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    /// A second address serving only `/metrics`, without credentials, for
    /// a scraper on a private network; empty for none.
    pub metrics_listen: String,
    /// This replica's name, the `instance` label on every metric; empty
    /// for the host name.
    pub instance: String,
    /// Seconds a client may take to send a request's headers.
    pub header_read_timeout_secs: u64,
    /// Requests handled at once; beyond, 503 with Retry-After.
    pub max_concurrent_requests: usize,
    /// Create the demo tenant, its shops, knowledge base, orders and a
    /// token on start (`serve --demo`).
    pub demo: bool,
}

impl ServerSettings {
    /// The metrics listener's address, if one is configured.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        let raw = self.metrics_listen.trim();
        (!raw.is_empty()).then(|| raw.parse().ok()).flatten()
    }
}

/// `store.url` as configured; `{:?}` hides a password in it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct StoreUrl(pub String);

/// The database a [`StoreUrl`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// SQLite in this directory.
    Sqlite(PathBuf),
    /// PostgreSQL at this connection URL.
    Postgres(StoreUrl),
}

impl StoreUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Empty and `sqlite://` URLs use `data_dir`; `sqlite://<dir>` another
    /// directory; `postgres://` and `postgresql://` PostgreSQL.
    pub fn location(&self, data_dir: &std::path::Path) -> Result<StoreLocation, String> {
        let url = self.0.trim();
        if url.is_empty() {
            return Ok(StoreLocation::Sqlite(data_dir.to_path_buf()));
        }
        if let Some(dir) = url.strip_prefix("sqlite://") {
            return Ok(StoreLocation::Sqlite(if dir.is_empty() {
                data_dir.to_path_buf()
            } else {
                PathBuf::from(dir)
            }));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(StoreUrl(url.to_owned())));
        }
        Err(format!(
            "store.url must start with sqlite:// or postgres://, got {:?}",
            self.redacted()
        ))
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://") else {
            return url.clone();
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => match rest[..at].find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &rest[..colon],
                    &rest[at..]
                ),
                None => url.clone(),
            },
            None => url.clone(),
        }
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl ServerSettings {
    /// `server.instance`, or the host name when that is empty.
    pub fn instance_name(&self) -> String {
        let configured = self.instance.trim();
        if !configured.is_empty() {
            return configured.to_owned();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "kedai".into())
    }
}

impl StoreSettings {
    /// The database these settings name (validated at start).
    pub fn location(&self) -> StoreLocation {
        self.url
            .location(&self.data_dir)
            .unwrap_or_else(|_| StoreLocation::Sqlite(self.data_dir.clone()))
    }

    /// The same settings with SQLite's directory taken from `sqlite://<dir>`.
    pub fn sqlite_in(&self, dir: PathBuf) -> StoreSettings {
        StoreSettings {
            url: StoreUrl::default(),
            data_dir: dir,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous = FULL`: a commit is on disk before it is acknowledged.
    Full,
    /// `synchronous = NORMAL`: survives process crashes, not power loss.
    Normal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Which database: empty or `sqlite://<dir>` for the embedded SQLite
    /// store (in `data_dir`, or `<dir>` when given), or
    /// `postgres://user:password@host:port/db` for PostgreSQL.
    pub url: StoreUrl,
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub busy_timeout_ms: u64,
    pub read_connections: u32,
    /// Days conversations are kept after their last message; 0 forever.
    pub retention_days: u32,
    /// File holding the key that encrypts shop credentials; empty means
    /// `<data_dir>/credentials.key`. `KEDAI_CREDENTIALS_KEY` overrides it.
    pub credentials_key_file: String,
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    pub workers: usize,
    /// Workers of the draft lane (buyer messages whose answer needs the
    /// chat model); 0 leaves drafts to `workers`.
    pub draft_workers: usize,
    pub lease_secs: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub poll_interval_ms: u64,
    /// Hours done jobs are kept; 0 keeps them forever.
    pub keep_done_hours: u64,
    /// A buyer message first processed more than this many seconds after
    /// it arrived is handed to a human instead of answered; 0 never.
    pub max_message_age_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KbSettings {
    /// Knowledge-base folder imported into the demo tenant on first start;
    /// empty for none.
    pub demo_dir: String,
    /// Orders file (relative dates) imported into the demo tenant on first
    /// start; empty for none.
    pub demo_orders: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

impl Settings {
    /// Defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, Env::prefixed("KEDAI__").split("__"))
    }

    /// The defaults alone, as a starting point for tests and tools.
    pub fn defaults() -> Settings {
        Self::load_with_env(None, Env::prefixed("KEDAI_UNUSED_PREFIX_NEVER_SET__"))
            .expect("embedded default configuration is valid")
    }

    fn load_with_env(file: Option<&Path>, env: Env) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile {
                    path: path.to_path_buf(),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        let settings: Settings = figment.merge(env).extract()?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.server.body_limit_bytes < 1024 {
            return invalid(format!(
                "server.body_limit_bytes must be >= 1024, got {}",
                self.server.body_limit_bytes
            ));
        }
        self.web.validate().map_err(ConfigError::Invalid)?;
        if self.server.max_text_chars == 0 {
            return invalid("server.max_text_chars must be > 0, got 0".into());
        }
        if self.server.request_timeout_secs == 0 {
            return invalid("server.request_timeout_secs must be > 0, got 0".into());
        }
        if self.store.read_connections == 0 {
            return invalid("store.read_connections must be > 0, got 0".into());
        }
        self.store
            .url
            .location(&self.store.data_dir)
            .map_err(ConfigError::Invalid)?;
        self.validate_access()?;
        self.validate_queue()?;
        if self.models.embedding.trim().is_empty() || self.models.chat.trim().is_empty() {
            return invalid("models.embedding and models.chat must not be empty".into());
        }
        self.models.roles().map_err(ConfigError::Invalid)?;
        let p = &self.pipeline;
        if !(1..=50).contains(&p.retrieval_limit) {
            return invalid(format!(
                "pipeline.retrieval_limit must be 1 to 50, got {}",
                p.retrieval_limit
            ));
        }
        for (key, value) in [
            ("faq_min_similarity", p.faq_min_similarity),
            ("draft_min_similarity", p.draft_min_similarity),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return invalid(format!("pipeline.{key} must be within 0..=1, got {value}"));
            }
        }
        if !(1..=512).contains(&p.draft_max_tokens) {
            return invalid(format!(
                "pipeline.draft_max_tokens must be 1 to 512, got {}",
                p.draft_max_tokens
            ));
        }
        if p.agent_language.len() != 2 || !p.agent_language.bytes().all(|b| b.is_ascii_lowercase())
        {
            return invalid(format!(
                "pipeline.agent_language must be an ISO 639-1 code such as \"en\", got {:?}",
                p.agent_language
            ));
        }
        self.policy
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.channels.validate().map_err(ConfigError::Invalid)?;
        self.telemetry.validate().map_err(ConfigError::Invalid)?;
        self.validate_runtime()?;
        Ok(())
    }

    fn validate_access(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let server = &self.server;
        if !server.metrics_listen.trim().is_empty() && server.metrics_address().is_none() {
            return invalid(format!(
                "server.metrics_listen must be an address such as 127.0.0.1:9464, got {:?}",
                server.metrics_listen
            ));
        }
        let access = &self.access;
        let positive = [
            (
                "server.header_read_timeout_secs",
                server.header_read_timeout_secs as u128,
            ),
            (
                "server.max_concurrent_requests",
                server.max_concurrent_requests as u128,
            ),
            ("access.failed_auth_limit", access.failed_auth_limit as u128),
            (
                "access.failed_auth_window_secs",
                access.failed_auth_window_secs as u128,
            ),
            (
                "access.failed_auth_clients",
                access.failed_auth_clients as u128,
            ),
            (
                "access.models_requests_per_minute",
                access.models_requests_per_minute as u128,
            ),
            (
                "access.models_concurrency_per_tenant",
                access.models_concurrency_per_tenant as u128,
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return invalid(format!("{key} must be > 0, got 0"));
        }
        let header = access.client_ip_header.trim();
        if !header.is_empty() && axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return invalid(format!(
                "access.client_ip_header must be a header name such as x-forwarded-for, got {header:?}"
            ));
        }
        Ok(())
    }

    fn validate_queue(&self) -> Result<(), ConfigError> {
        let q = &self.queue;
        let ranges: [(&str, u64, std::ops::RangeInclusive<u64>); 6] = [
            ("queue.lease_secs", q.lease_secs, 2..=3600),
            ("queue.max_attempts", u64::from(q.max_attempts), 1..=100),
            ("queue.backoff_max_ms", q.backoff_max_ms, 1..=86_400_000),
            ("queue.poll_interval_ms", q.poll_interval_ms, 10..=60_000),
            ("queue.keep_done_hours", q.keep_done_hours, 0..=1_000_000),
            (
                "queue.max_message_age_secs",
                q.max_message_age_secs,
                0..=31_536_000,
            ),
        ];
        for (key, value, range) in ranges {
            if !range.contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be {} to {}, got {value}",
                    range.start(),
                    range.end()
                )));
            }
        }
        if q.workers > 64 {
            return Err(ConfigError::Invalid(format!(
                "queue.workers must be 0 to 64, got {}",
                q.workers
            )));
        }
        if q.draft_workers > 16 {
            return Err(ConfigError::Invalid(format!(
                "queue.draft_workers must be 0 to 16, got {}",
                q.draft_workers
            )));
        }
        if q.draft_workers > 0 && q.workers == 0 {
            return Err(ConfigError::Invalid(
                "queue.draft_workers needs queue.workers above 0: every message starts in the \
                 fast lane"
                    .into(),
            ));
        }
        if q.backoff_base_ms > q.backoff_max_ms {
            return Err(ConfigError::Invalid(format!(
                "queue.backoff_base_ms ({}) must be <= queue.backoff_max_ms ({})",
                q.backoff_base_ms, q.backoff_max_ms
            )));
        }
        Ok(())
    }

    fn validate_runtime(&self) -> Result<(), ConfigError> {
        let models = &self.models;
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

    /// The SQLite database file inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.store.data_dir.join("kedai.sqlite")
    }
}

#[cfg(test)]
// figment's test jail returns figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let settings = Settings::defaults();
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.store.durability, Durability::Full);
    }

    #[test]
    fn environment_overrides_nested_keys() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KEDAI__SERVER__LISTEN", "0.0.0.0:9999");
            jail.set_env("KEDAI__QUEUE__WORKERS", "7");
            let settings = Settings::load(None).expect("valid");
            assert_eq!(settings.server.listen.to_string(), "0.0.0.0:9999");
            assert_eq!(settings.queue.workers, 7);
            Ok(())
        });
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "k.toml",
                "[store]\ndurability = \"normal\"\n[queue]\nworkers = 3\n",
            )?;
            jail.set_env("KEDAI__QUEUE__WORKERS", "5");
            let settings = Settings::load(Some(Path::new("k.toml"))).expect("valid");
            assert_eq!(settings.store.durability, Durability::Normal);
            assert_eq!(settings.queue.workers, 5);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("k.toml", "[server]\nlisten_adress = \"1.2.3.4:5\"\n")?;
            let err = Settings::load(Some(Path::new("k.toml"))).unwrap_err();
            assert!(err.to_string().contains("listen_adress"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn invalid_values_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KEDAI__QUEUE__MAX_ATTEMPTS", "0");
            let err = Settings::load(None).unwrap_err();
            assert!(err.to_string().contains("queue.max_attempts"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn l8_policy_defaults_load_and_shop_tables_are_refused_with_where_they_went() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KEDAI__POLICY__DEFAULTS__AI_ENABLED", "false");
            let settings = Settings::load(None).expect("valid");
            assert!(!settings.policy.defaults.ai_enabled);
            jail.create_file("k.toml", "[policy.shops.demo-tiktok]\nmode = \"suggest\"\n")?;
            let err = Settings::load(Some(Path::new("k.toml"))).unwrap_err();
            assert!(err.to_string().contains("stored with each shop"), "{err}");
            jail.create_file("bad.toml", "[policy.defaults]\nhuman_anger_level = 7\n")?;
            let err = Settings::load(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(
                err.to_string()
                    .contains("policy.defaults: human_anger_level"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn runtime_keys_are_validated() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KEDAI__MODELS__DEVICE", "gpu");
            let err = Settings::load(None).unwrap_err();
            assert!(err.to_string().contains("models.device"), "{err}");
            jail.set_env("KEDAI__MODELS__DEVICE", "cuda:1");
            jail.set_env("KEDAI__MODELS__CHAT_QUEUE_CAPACITY", "0");
            let err = Settings::load(None).unwrap_err();
            assert!(
                err.to_string().contains("models.chat_queue_capacity"),
                "{err}"
            );
            jail.set_env("KEDAI__MODELS__CHAT_QUEUE_CAPACITY", "2");
            jail.set_env("KEDAI__MODELS__CHAT_MAX_TOKENS", "100000");
            let err = Settings::load(None).unwrap_err();
            assert!(err.to_string().contains("models.chat_max_tokens"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn m2_lease_secs_is_bounded_and_named_when_out_of_range() {
        figment::Jail::expect_with(|jail| {
            for bad in ["0", "1", "3601", "18446744073709551615"] {
                jail.set_env("KEDAI__QUEUE__LEASE_SECS", bad);
                let err = Settings::load(None).unwrap_err().to_string();
                assert!(
                    err.contains("queue.lease_secs") && err.contains(bad),
                    "{bad}: {err}"
                );
            }
            jail.set_env("KEDAI__QUEUE__LEASE_SECS", "2");
            assert_eq!(Settings::load(None).expect("valid").queue.lease_secs, 2);
            jail.set_env("KEDAI__QUEUE__BACKOFF_MAX_MS", "18446744073709551615");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("queue.backoff_max_ms"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_is_a_clear_error() {
        let err = Settings::load(Some(Path::new("/nonexistent/kedai.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kedai.toml"), "{err}");
    }

    #[test]
    fn model_roles_default_to_embedding_and_chat() {
        let settings = Settings::defaults();
        assert_eq!(settings.models.profile, "small");
        let roles = settings.models.roles().unwrap();
        assert_eq!(roles.understand, "bundle:multilingual-e5-small");
        assert_eq!(roles.retrieval, "bundle:multilingual-e5-small");
        assert_eq!(roles.drafts, "bundle:qwen2.5-coder-0.5b-instruct");
        assert_eq!(roles.translations, "bundle:qwen2.5-coder-0.5b-instruct");
        assert_eq!(roles.embeddings(), ["bundle:multilingual-e5-small"]);
        assert_eq!(roles.chats(), ["bundle:qwen2.5-coder-0.5b-instruct"]);
    }

    #[test]
    fn model_role_keys_override_the_profile_and_unknown_profiles_or_blank_roles_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KEDAI__MODELS__PROFILE", "quality");
            let roles = Settings::load(None).expect("valid").models.roles().unwrap();
            assert_eq!(roles.understand, "bundle:multilingual-e5-small");
            assert_eq!(roles.retrieval, "bundle:multilingual-e5-small");
            assert_eq!(roles.drafts, "bundle:qwen2.5-coder-0.5b-instruct");
            assert_eq!(roles.translations, "bundle:qwen2.5-coder-1.5b-instruct");

            jail.create_file(
                "k.toml",
                "[models.roles]\nunderstand = \"bundle:embeddinggemma-300m\"\n\
                 drafts = \"bundle:smollm2-135m-instruct\"\n",
            )?;
            let settings = Settings::load(Some(Path::new("k.toml"))).expect("valid");
            let roles = settings.models.roles().unwrap();
            assert_eq!(roles.understand, "bundle:embeddinggemma-300m", "key wins");
            assert_eq!(roles.drafts, "bundle:smollm2-135m-instruct");
            assert_eq!(roles.translations, "bundle:qwen2.5-coder-1.5b-instruct");
            assert_eq!(
                roles.all(),
                [
                    "bundle:embeddinggemma-300m",
                    "bundle:multilingual-e5-small",
                    "bundle:smollm2-135m-instruct",
                    "bundle:qwen2.5-coder-1.5b-instruct"
                ]
            );

            jail.set_env("KEDAI__MODELS__PROFILE", "huge");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(
                err.contains("models.profile must be one of small, quality"),
                "{err}"
            );

            jail.set_env("KEDAI__MODELS__PROFILE", "small");
            jail.set_env("KEDAI__MODELS__ROLES__TRANSLATIONS", " ");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(
                err.contains("models.roles.translations must name a model"),
                "{err}"
            );

            jail.create_file("bad.toml", "[models.roles]\nsummaries = \"x\"\n")?;
            let err = Settings::load(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(err.to_string().contains("summaries"), "{err}");
            Ok(())
        });
    }
}
