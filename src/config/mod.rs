//! Typed configuration: the defaults embedded in the binary
//! (`config/default.toml`), then an optional file, then `KEDAI__SECTION__KEY`
//! environment variables. Unknown keys are rejected and every value is
//! validated once, here, so the rest of kedai can trust its `Settings`.
//!
//! This module knows nothing of HTTP, the store or the models; it only says
//! what the operator asked for (the pipeline's policy and the channels'
//! settings are plain types those modules declare).

mod models;
mod server;
mod store;

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

pub use models::{ModelRoles, ModelsSettings, RoleSettings};
pub use server::{AccessSettings, ServerSettings};
pub use store::{Durability, StoreLocation, StoreSettings, StoreUrl};

/// The defaults every deployment starts from.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");

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
    /// translated ahead into the languages buyers write; 0: never ahead.
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
        self.models.validate_runtime()?;
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

    /// The SQLite database file inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.store.data_dir.join("kedai.sqlite")
    }
}

#[cfg(test)]
// figment's test jail returns figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests;
