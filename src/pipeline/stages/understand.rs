//! The understand stage behind [`Understand`]: the intent, sentiment and
//! anger heads trained on a background thread from the exemplar folders,
//! retrained on request or when the files change, one training per
//! exemplar vector cache at a time; and the knowledge base's embedder seen
//! as the heads' query embedder. It knows nothing of the store or HTTP.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;

use crate::domain::TenantId;
use crate::engine::scope;
use crate::inference::EmbedRole;
use crate::kb::Embedder;
use crate::pipeline::ports::{StageError, Understand, Understood};
use crate::understand::{
    retrain_saved, CachedEmbedder, ExemplarSet, ExemplarSources, Heads, QueryEmbedder, TrainConfig,
    TrainingReport, UnderstandError, Understander,
};

/// The knowledge base's embedding model seen as the understand stage's
/// query embedder, so both share one loaded model.
pub struct SharedQueryEmbedder(pub Arc<dyn Embedder>);

impl QueryEmbedder for SharedQueryEmbedder {
    fn model_id(&self) -> &str {
        self.0.model_id()
    }

    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
        self.0
            .embed(texts, EmbedRole::Query)
            .map_err(|e| UnderstandError::Invalid(format!("embedding failed: {e}")))
    }
}

/// Where the understand stage learns from.
#[derive(Debug, Clone)]
pub struct UnderstandSources {
    pub intents_dir: PathBuf,
    /// Sentiment, anger and urgency exemplars; without them only intents
    /// are classified.
    pub sentiment_dir: Option<PathBuf>,
    /// Exemplar vectors are cached here, so later starts train in seconds.
    pub cache_dir: PathBuf,
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl UnderstandSources {
    fn folders(&self) -> Vec<(&std::path::Path, &'static str)> {
        let mut folders = vec![(self.intents_dir.as_path(), "intents")];
        if let Some(dir) = &self.sentiment_dir {
            folders.push((dir.as_path(), "sentiment"));
        }
        folders
    }

    fn display_path(&self, path: &std::path::Path) -> String {
        for (dir, name) in self.folders() {
            if let Ok(relative) = path.strip_prefix(dir) {
                return format!("{name}/{}", relative.display());
            }
        }
        file_name(path)
    }

    fn redact_paths(&self, message: &str) -> String {
        let mut message = message.to_owned();
        for (dir, name) in self.folders() {
            let shown = dir.display().to_string();
            let shown = shown.trim_end_matches('/');
            if !shown.is_empty() {
                message = message.replace(&format!("{shown}/"), &format!("{name}/"));
                message = message.replace(shown, name);
            }
        }
        message
    }

    fn exemplars(&self) -> ExemplarSources {
        ExemplarSources {
            intents_dir: self.intents_dir.clone(),
            sentiment_dir: self.sentiment_dir.clone(),
        }
    }
}

/// The understand stage. Its classifiers are trained on a background
/// thread the first time a message needs them (seconds when the exemplar
/// vectors are cached, about half a minute on a fresh install); messages
/// that arrive meanwhile wait for it. Afterwards they retrain from the
/// exemplar folders on [`UnderstandStage::reload`] (the API's reload
/// endpoint, and [`UnderstandStage::watch`] when the files change): the new
/// heads replace the old in one swap, messages keep being understood with
/// the old ones while training runs, and exemplars with a bad line are
/// rejected whole so the old heads stay.
pub struct UnderstandStage {
    inner: Arc<StageInner>,
}

struct StageInner {
    ready: OnceLock<Arc<Understander>>,
    failure: Mutex<Option<String>>,
    /// Where heads are trained from; `None` for a stage built trained.
    source: Option<(Arc<dyn Embedder>, UnderstandSources)>,
    started: AtomicBool,
    /// A training of this stage is running (or waiting for another
    /// stage's in this process); [`UnderstandStage::try_reload`] refuses
    /// rather than queue behind it.
    busy: AtomicBool,
    /// When the last retraining asked for over the API started.
    last_requested: Mutex<Option<Instant>>,
}

/// Clears [`StageInner::busy`] when a training ends, however it ends.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// See [`UnderstandStage::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnderstandState {
    Trained,
    Training,
    Failed(String),
}

/// Why the understand stage could not retrain.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The exemplar files are wrong (a bad line, a missing folder): the
    /// message names the file and line.
    #[error("{0}")]
    Exemplars(String),
    /// This stage has no exemplar folders (it was built already trained).
    #[error("this understand stage was built already trained and has no exemplar folders")]
    NoSources,
    /// A retraining is running already; its outcome is logged and counted.
    #[error("a retraining is already running; ask again once it has finished")]
    Busy,
    /// The last retraining asked for started too recently.
    #[error("a retraining was asked for {0:?} ago; wait a little")]
    TooSoon(std::time::Duration),
    /// Embedding or fitting failed.
    #[error("training failed: {0}")]
    Training(String),
}

/// Probability of "at least annoyed" below which a message whose most
/// probable anger level is "annoyed" counts as calm.
const ANNOYED_MIN_PROBABILITY: f32 = 0.8;

/// Longest a message waits for the classifiers to be trained.
const TRAINING_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The lock that keeps trainings over one exemplar vector cache to one at
/// a time in this process (they read and write the same cache files).
/// Trainings over different caches (another model directory) do not wait
/// for each other.
fn training_lock(cache_dir: &std::path::Path) -> Arc<Mutex<()>> {
    static LOCKS: std::sync::LazyLock<
        Mutex<std::collections::HashMap<std::path::PathBuf, Arc<Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    LOCKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(cache_dir.to_path_buf())
        .or_default()
        .clone()
}

impl UnderstandStage {
    /// A stage that trains on first use.
    pub fn new(embedder: Arc<dyn Embedder>, sources: UnderstandSources) -> UnderstandStage {
        UnderstandStage {
            inner: Arc::new(StageInner {
                ready: OnceLock::new(),
                failure: Mutex::new(None),
                source: Some((embedder, sources)),
                started: AtomicBool::new(false),
                busy: AtomicBool::new(false),
                last_requested: Mutex::new(None),
            }),
        }
    }

    /// A stage over an understander that is already trained.
    pub fn ready(understander: Arc<Understander>) -> UnderstandStage {
        let ready = OnceLock::new();
        let _ = ready.set(understander);
        UnderstandStage {
            inner: Arc::new(StageInner {
                ready,
                failure: Mutex::new(None),
                source: None,
                started: AtomicBool::new(true),
                busy: AtomicBool::new(false),
                last_requested: Mutex::new(None),
            }),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.get().is_some()
    }

    /// Where training stands: trained, still training, or failed (and why:
    /// a missing exemplar folder, a bad line) with nothing to fall back on.
    pub fn state(&self) -> UnderstandState {
        if self.is_ready() {
            return UnderstandState::Trained;
        }
        match self
            .inner
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            Some(why) => UnderstandState::Failed(why),
            None => UnderstandState::Training,
        }
    }

    /// Starts training unless it has started already.
    pub fn start_training(&self) {
        if self.inner.source.is_none() || self.inner.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name("kedai-understand-train".into())
            .spawn(move || match inner.retrain("start") {
                Ok(report) => tracing::info!(
                    seconds = report.seconds,
                    exemplars = report.exemplars,
                    saved_heads = report.reused,
                    "understand stage trained"
                ),
                Err(err) => {
                    tracing::error!(error = %err, "understand stage failed to train");
                }
            });
        if let Err(err) = spawned {
            *self.inner.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("cannot start its thread: {err}"));
        }
    }

    /// Retrains every head from the exemplar folders now and swaps them in;
    /// on an error the heads in use stay. Waits for a training already
    /// running to finish first.
    pub async fn reload(&self) -> Result<TrainingReport, ReloadError> {
        self.inner.started.store(true, Ordering::SeqCst);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.retrain("api"))
            .await
            .map_err(|e| ReloadError::Training(format!("the training task failed: {e}")))?
    }

    /// Retrains now unless a retraining is already running
    /// ([`ReloadError::Busy`]) or the last one asked for this way started
    /// less than `min_interval` ago ([`ReloadError::TooSoon`]): the
    /// operator's endpoint never parks a thread behind another training.
    pub async fn try_reload(
        &self,
        min_interval: std::time::Duration,
    ) -> Result<TrainingReport, ReloadError> {
        {
            let mut last = self
                .inner
                .last_requested
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(at) = *last {
                if at.elapsed() < min_interval {
                    return Err(ReloadError::TooSoon(at.elapsed()));
                }
            }
            if self
                .inner
                .busy
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                return Err(ReloadError::Busy);
            }
            *last = Some(Instant::now());
        }
        self.inner.started.store(true, Ordering::SeqCst);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _busy = Busy(&inner.busy);
            inner.retrain_claimed("api")
        })
        .await
        .map_err(|e| ReloadError::Training(format!("the training task failed: {e}")))?
    }

    /// `path` as the API may show it: relative to its exemplar folder and
    /// prefixed `intents/` or `sentiment/`, never a server path.
    pub fn display_path(&self, path: &std::path::Path) -> String {
        let Some((_, sources)) = &self.inner.source else {
            return file_name(path);
        };
        sources.display_path(path)
    }

    /// `message` with the exemplar folders' paths replaced as
    /// [`UnderstandStage::display_path`] does.
    pub fn redact_paths(&self, message: &str) -> String {
        match &self.inner.source {
            Some((_, sources)) => sources.redact_paths(message),
            None => message.to_owned(),
        }
    }

    /// Polls the exemplar folders every `every` (file names, sizes and
    /// modification times) and retrains when they change, until `stop`
    /// fires. Changes before the first training need nothing: it reads the
    /// files as they are then.
    pub fn watch(
        &self,
        every: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let sources = self.inner.source.as_ref()?.1.exemplars();
        let inner = self.inner.clone();
        // Taken now, not when the task first runs, so a change made right
        // after this call is not mistaken for the starting state.
        let mut seen = sources.fingerprint();
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let now = sources.fingerprint();
                if now == seen {
                    continue;
                }
                seen = now;
                if !inner.started.load(Ordering::SeqCst) {
                    continue;
                }
                tracing::info!(
                    dir = %sources.intents_dir.display(),
                    "exemplar files changed; retraining the classifiers"
                );
                let training = inner.clone();
                // Errors are logged (with FILE:LINE) and counted by retrain.
                let _ = tokio::task::spawn_blocking(move || training.retrain("watch")).await;
            }
        }))
    }

    async fn understander(&self) -> Result<Arc<Understander>, StageError> {
        self.start_training();
        let waited = Instant::now();
        loop {
            if let Some(understander) = self.inner.ready.get() {
                return Ok(understander.clone());
            }
            if let Some(failure) = self
                .inner
                .failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return Err(StageError {
                    stage: "understand",
                    message: failure,
                    retryable: false,
                });
            }
            if waited.elapsed() > TRAINING_WAIT {
                return Err(StageError {
                    stage: "understand",
                    message: "the classifiers are still training".into(),
                    retryable: true,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

impl StageInner {
    /// One training from the folders, swapped in on success. Blocks.
    fn retrain(&self, trigger: &'static str) -> Result<TrainingReport, ReloadError> {
        self.busy.store(true, Ordering::SeqCst);
        let _busy = Busy(&self.busy);
        self.retrain_claimed(trigger)
    }

    /// As [`StageInner::retrain`], for a caller that has set `busy`.
    fn retrain_claimed(&self, trigger: &'static str) -> Result<TrainingReport, ReloadError> {
        let (embedder, sources) = self.source.as_ref().ok_or(ReloadError::NoSources)?;
        let lock = training_lock(&sources.cache_dir);
        let _one = lock.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = train(embedder.clone(), sources).and_then(|(heads, report)| {
            match self.ready.get() {
                Some(understander) => understander.replace_heads(heads)?,
                None => {
                    let understander =
                        Understander::new(Arc::new(SharedQueryEmbedder(embedder.clone())), heads)?;
                    if let Err(understander) = self.ready.set(Arc::new(understander)) {
                        // Set meanwhile by another path: keep that one, newest heads.
                        let heads = understander.heads().as_ref().clone();
                        if let Some(current) = self.ready.get() {
                            current.replace_heads(heads)?;
                        }
                    }
                }
            }
            Ok(report)
        });
        match outcome {
            Ok(report) => {
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
                crate::metrics::understand_reload(trigger, "ok");
                crate::metrics::understand_exemplars(
                    report.intents.values().sum(),
                    report.sentiment.values().sum(),
                );
                if trigger != "start" {
                    tracing::info!(
                        trigger,
                        seconds = report.seconds,
                        exemplars = report.exemplars,
                        intents = report.intents.len(),
                        "classifiers retrained and swapped in"
                    );
                }
                Ok(report)
            }
            Err(err) => {
                crate::metrics::understand_reload(trigger, "error");
                let kept = self.ready.get().is_some();
                let error = match err {
                    UnderstandError::BadExemplar { .. } | UnderstandError::Exemplars { .. } => {
                        ReloadError::Exemplars(err.to_string())
                    }
                    other => ReloadError::Training(other.to_string()),
                };
                if kept {
                    tracing::error!(
                        trigger,
                        error = %error,
                        "exemplars rejected; the classifiers keep their previous training"
                    );
                } else {
                    *self.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(error.to_string());
                }
                Err(error)
            }
        }
    }
}

fn train(
    embedder: Arc<dyn Embedder>,
    sources: &UnderstandSources,
) -> Result<(Heads, TrainingReport), UnderstandError> {
    std::fs::create_dir_all(&sources.cache_dir).map_err(|source| UnderstandError::Cache {
        path: sources.cache_dir.clone(),
        source,
    })?;
    let cached = CachedEmbedder::open(SharedQueryEmbedder(embedder), &sources.cache_dir)?;
    retrain_saved(
        &cached,
        &sources.exemplars(),
        &TrainConfig::default(),
        &sources.cache_dir,
    )
}

#[async_trait]
impl Understand for UnderstandStage {
    async fn understand(&self, text: &str, history: &[String]) -> Result<Understood, StageError> {
        self.understand_as(None, text, history).await
    }

    async fn understand_for(
        &self,
        tenant: TenantId,
        text: &str,
        history: &[String],
    ) -> Result<Understood, StageError> {
        self.understand_as(Some(tenant), text, history).await
    }
}

impl UnderstandStage {
    /// The understander when it is trained, without waiting.
    pub fn current(&self) -> Option<Arc<Understander>> {
        self.inner.ready.get().cloned()
    }

    /// The trained understander, waiting for the first training.
    pub async fn trained(&self) -> Result<Arc<Understander>, StageError> {
        self.understander().await
    }

    /// What a tenant's own heads are trained from besides its learned
    /// exemplars: the embedder with the exemplar vector cache, and the
    /// shipped exemplars as the folders hold them now. Blocks (reads the
    /// folders); run it off the async runtime.
    pub fn training_parts(
        &self,
    ) -> Result<(CachedEmbedder<SharedQueryEmbedder>, ExemplarSet), ReloadError> {
        let (embedder, sources) = self.inner.source.as_ref().ok_or(ReloadError::NoSources)?;
        let io = |e: UnderstandError| ReloadError::Training(e.to_string());
        std::fs::create_dir_all(&sources.cache_dir)
            .map_err(|e| ReloadError::Training(format!("{}: {e}", sources.cache_dir.display())))?;
        let cached =
            CachedEmbedder::open(SharedQueryEmbedder(embedder.clone()), &sources.cache_dir)
                .map_err(io)?;
        let set = ExemplarSet::load(&sources.intents_dir, sources.sentiment_dir.as_deref())
            .map_err(|e| ReloadError::Exemplars(sources.redact_paths(&e.to_string())))?;
        Ok((cached, set))
    }

    /// Runs `work` while no other training of this process over the same
    /// exemplar vector cache runs.
    pub fn exclusive_training<T>(&self, work: impl FnOnce() -> T) -> T {
        let lock = self
            .inner
            .source
            .as_ref()
            .map(|(_, sources)| training_lock(&sources.cache_dir));
        let _one = lock
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()));
        work()
    }

    async fn understand_as(
        &self,
        tenant: Option<TenantId>,
        text: &str,
        history: &[String],
    ) -> Result<Understood, StageError> {
        let understander = self.understander().await?;
        let text = text.to_string();
        let history = history.to_vec();
        let understood = tokio::task::spawn_blocking(scope::carry(move || {
            let history: Vec<&str> = history.iter().map(String::as_str).collect();
            let heads = match tenant {
                Some(tenant) => understander.heads_for(tenant),
                None => understander.heads(),
            };
            let mut models = vec![heads.intents.model_id().to_string()];
            models.dedup();
            let understood = match tenant {
                Some(tenant) => understander.understand_for(tenant, &text, &history),
                None => understander.understand(&text, &history),
            };
            understood.map(|u| (u, models))
        }))
        .await
        .map_err(|e| StageError {
            stage: "understand",
            message: format!("the understand task failed: {e}"),
            retryable: false,
        })?;
        let (u, models) = understood.map_err(|e| StageError {
            stage: "understand",
            message: e.to_string(),
            retryable: matches!(e, UnderstandError::Embedding(_)),
        })?;
        Ok(Understood {
            language: u.lang.map(|g| g.code.to_string()),
            intent: u.intent,
            confidence: u.confidence,
            out_of_scope: u.out_of_scope,
            sentiment: u
                .sentiment
                .map(|s| s.label)
                .unwrap_or_else(|| "neutral".into()),
            // The most probable level, but "annoyed" only when the model is
            // fairly sure: a plain "where is my parcel?" is not a complaint.
            anger: u
                .anger
                .map(|a| match a.level {
                    1 if a.probability < ANNOYED_MIN_PROBABILITY => 0,
                    level => level,
                })
                .unwrap_or(0),
            anger_probability: u.anger.map(|a| a.probability).unwrap_or(0.0),
            urgent: u.urgent.is_some_and(|p| p >= 0.5),
            human_requested: u.human_requested,
            repeated: u.repeated.is_some() || u.says_asked_before,
            binding_request: u.binding_request.map(wire_name),
            entities: u
                .entities
                .into_iter()
                .map(|e| (wire_name(e.kind), e.value))
                .collect(),
            models,
            learned_route: u.learned_route,
        })
    }
}

/// The name a unit enum variant has on the wire (`snake_case` by its serde
/// attributes), e.g. `order_number` or `discount`.
fn wire_name<T: serde::Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
