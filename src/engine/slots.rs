//! The models the configuration names, one slot each: which [`Role`]s
//! each serves (a model several roles name has one slot and is loaded
//! once), its state, its admission semaphores (the `/v1` clients' and the
//! pipeline's) and its worker's queue, and the lookups from a role or a
//! client's model name to its slot.
//!
//! It knows nothing of what a request holds beyond its [`Lane`], nor of how
//! a worker loads or runs a model (`worker`'s).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::lanes::{Lane, LaneQueue};
use super::{ChatJob, EmbedJob, EngineError, ModelInfo, ModelKind, ModelState};
use crate::config::{ModelRoles, ModelsSettings};
use crate::metrics as m;

/// How long a caller is told to wait while a model is still loading.
const RETRY_WHILE_LOADING: Duration = Duration::from_secs(5);
/// How long a caller is told to wait when a model failed or was never loaded:
/// an operator has to act first.
const RETRY_WHEN_DOWN: Duration = Duration::from_secs(30);
/// Bounds of the Retry-After estimate for a full queue.
pub(super) const RETRY_MIN: Duration = Duration::from_secs(1);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(60);

/// A job the models do; the configuration gives each its model
/// (`models.roles`), and several roles may share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The encoder behind the intent, sentiment and anger heads.
    Understand,
    /// The encoder behind knowledge-base search and translation checks.
    Retrieval,
    /// The chat model writing buyer-facing drafts.
    Drafts,
    /// The chat model writing translations and agent summaries.
    Translations,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Understand,
        Role::Retrieval,
        Role::Drafts,
        Role::Translations,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Understand => "understand",
            Role::Retrieval => "retrieval",
            Role::Drafts => "drafts",
            Role::Translations => "translations",
        }
    }

    pub fn kind(self) -> ModelKind {
        match self {
            Role::Understand | Role::Retrieval => ModelKind::Embedding,
            Role::Drafts | Role::Translations => ModelKind::Chat,
        }
    }

    fn reference(self, roles: &ModelRoles) -> &str {
        match self {
            Role::Understand => &roles.understand,
            Role::Retrieval => &roles.retrieval,
            Role::Drafts => &roles.drafts,
            Role::Translations => &roles.translations,
        }
    }
}

/// A request on its way to a worker. Holding `ticket` is holding one of the
/// model's admission slots.
pub(super) struct Admitted<J> {
    pub(super) job: J,
    pub(super) _ticket: Ticket,
    pub(super) enqueued: Instant,
    pub(super) span: tracing::Span,
}

/// One admission slot; the model's queue-depth gauge follows it.
pub(super) struct Ticket {
    pub(super) _permit: OwnedSemaphorePermit,
    pub(super) model: Arc<str>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        m::model_in_flight(&self.model, -1.0);
    }
}

/// One model: its admission semaphores (the `/v1` clients' and the
/// pipeline's), its state and its worker's queue.
pub(super) struct Slot<J> {
    pub(super) id: Arc<str>,
    pub(super) reference: String,
    pub(super) kind: ModelKind,
    /// Slots for [`Lane::Api`].
    pub(super) capacity: usize,
    pub(super) admission: Arc<Semaphore>,
    /// Slots kept for [`Lane::Reply`] and [`Lane::FollowUp`].
    pub(super) pipeline_capacity: usize,
    pub(super) pipeline_admission: Arc<Semaphore>,
    pub(super) state: RwLock<ModelState>,
    pub(super) queue: Mutex<Option<Arc<LaneQueue<Admitted<J>>>>>,
    /// Exponentially weighted seconds per request, as f64 bits; feeds the
    /// Retry-After estimate.
    pub(super) service_secs: AtomicU64,
    /// Tokens per input the loaded model reads (embeddings) and its vector
    /// length; 0 until it has loaded.
    pub(super) max_input_tokens: AtomicUsize,
    pub(super) dimension: AtomicUsize,
    /// Whether the model has task prompts, so its query vectors differ by
    /// [`EmbedTask`](crate::inference::EmbedTask); known once [`Engine::load`](super::Engine::load) has seen its files.
    pub(super) task_prompts: AtomicBool,
    pub(super) roles: Vec<Role>,
}

impl<J> Slot<J> {
    pub(super) fn new(
        reference: &str,
        kind: ModelKind,
        capacity: usize,
        pipeline: usize,
    ) -> Slot<J> {
        Slot {
            task_prompts: AtomicBool::new(false),
            roles: Vec::new(),
            id: public_id(reference).into(),
            reference: reference.to_owned(),
            kind,
            capacity,
            admission: Arc::new(Semaphore::new(capacity)),
            pipeline_capacity: pipeline,
            pipeline_admission: Arc::new(Semaphore::new(pipeline)),
            state: RwLock::new(ModelState::NotLoaded),
            queue: Mutex::new(None),
            service_secs: AtomicU64::new(0.5f64.to_bits()),
            max_input_tokens: AtomicUsize::new(0),
            dimension: AtomicUsize::new(0),
        }
    }

    pub(super) fn in_flight(&self) -> usize {
        (self.capacity - self.admission.available_permits()) + self.pipeline_in_flight()
    }

    pub(super) fn pipeline_in_flight(&self) -> usize {
        self.pipeline_capacity - self.pipeline_admission.available_permits()
    }

    pub(super) fn matches(&self, name: &str) -> bool {
        *self.id == *name || self.reference == name
    }

    pub(super) fn state(&self) -> ModelState {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn set_state(&self, state: ModelState) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
    }

    pub(super) fn info(&self) -> ModelInfo {
        ModelInfo {
            id: self.id.to_string(),
            reference: self.reference.clone(),
            kind: self.kind,
            roles: self.roles.clone(),
            stand_in: self.reference.starts_with("stand-in:"),
            state: self.state(),
            in_flight: self.in_flight(),
            capacity: self.capacity + self.pipeline_capacity,
            dimension: Some(self.dimension.load(Ordering::Relaxed)).filter(|d| *d > 0),
        }
    }

    pub(super) fn record_service(&self, per_request: Duration) {
        let old = f64::from_bits(self.service_secs.load(Ordering::Relaxed));
        let new = 0.8 * old + 0.2 * per_request.as_secs_f64();
        self.service_secs.store(new.to_bits(), Ordering::Relaxed);
    }

    /// How long until a slot is likely free: the requests ahead times the
    /// recent time per request.
    pub(super) fn retry_after(&self) -> Duration {
        let per_request = f64::from_bits(self.service_secs.load(Ordering::Relaxed));
        let ahead = self.in_flight().max(1) as f64;
        Duration::from_secs_f64((per_request * ahead).ceil()).clamp(RETRY_MIN, RETRY_MAX)
    }

    /// Takes a slot of `lane`'s and queues `job` in it, or says at once
    /// why not.
    pub(super) fn admit(&self, lane: Lane, job: J) -> Result<(), EngineError> {
        let model = self.id.to_string();
        let unavailable = |reason: String, retry_after| {
            m::model_rejected(&self.id, "unavailable");
            EngineError::Unavailable {
                model: model.clone(),
                reason,
                retry_after,
            }
        };
        match self.state() {
            ModelState::Ready { .. } => {}
            ModelState::Loading => {
                return Err(unavailable("still loading".into(), RETRY_WHILE_LOADING))
            }
            ModelState::NotLoaded => {
                return Err(unavailable(
                    "its files were not prepared; see /readyz".into(),
                    RETRY_WHEN_DOWN,
                ))
            }
            ModelState::Failed { reason } => return Err(unavailable(reason, RETRY_WHEN_DOWN)),
        }
        let (admission, capacity) = if lane.is_pipeline() {
            (&self.pipeline_admission, self.pipeline_capacity)
        } else {
            (&self.admission, self.capacity)
        };
        let overloaded = || {
            m::model_rejected(&self.id, "overloaded");
            EngineError::Overloaded {
                model: model.clone(),
                capacity,
                retry_after: self.retry_after(),
            }
        };
        let Ok(permit) = admission.clone().try_acquire_owned() else {
            return Err(overloaded());
        };
        m::model_in_flight(&self.id, 1.0);
        let admitted = Admitted {
            job,
            _ticket: Ticket {
                _permit: permit,
                model: self.id.clone(),
            },
            enqueued: Instant::now(),
            span: tracing::Span::current(),
        };
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(queue) = queue else {
            return Err(unavailable("not loaded".into(), RETRY_WHEN_DOWN));
        };
        queue.push(lane, admitted);
        Ok(())
    }
}

/// Every configured model's slot, and which roles each serves.
pub(super) struct Slots {
    /// One slot per distinct embedding model, the heads' encoder first.
    pub(super) embeddings: Vec<Slot<EmbedJob>>,
    /// One slot per distinct chat model, the drafts' model first.
    pub(super) chats: Vec<Slot<ChatJob>>,
    roles: ModelRoles,
}

impl Slots {
    /// Each role gets the model the configuration names for it
    /// ([`ModelsSettings::roles`]); a model several roles name has one slot.
    /// Settings that were never validated fall back to `models.embedding` /
    /// `models.chat` for every role.
    pub(super) fn new(settings: &ModelsSettings) -> Slots {
        let roles = settings.roles().unwrap_or_else(|_| ModelRoles {
            understand: settings.embedding.trim().to_owned(),
            retrieval: settings.embedding.trim().to_owned(),
            drafts: settings.chat.trim().to_owned(),
            translations: settings.chat.trim().to_owned(),
        });
        Slots {
            embeddings: slots_for(
                &roles,
                ModelKind::Embedding,
                settings.embedding_queue_capacity,
                settings.pipeline_embedding_capacity,
            ),
            chats: slots_for(
                &roles,
                ModelKind::Chat,
                settings.chat_queue_capacity,
                settings.pipeline_chat_capacity,
            ),
            roles,
        }
    }

    /// Every configured model and its state, embeddings first.
    pub(super) fn infos(&self) -> Vec<ModelInfo> {
        let embeddings = self.embeddings.iter().map(Slot::info);
        embeddings
            .chain(self.chats.iter().map(Slot::info))
            .collect()
    }

    /// The name (as clients use it) of the model serving `role`.
    pub(super) fn model_for(&self, role: Role) -> String {
        let reference = role.reference(&self.roles);
        let found = match role.kind() {
            ModelKind::Embedding => id_of(&self.embeddings, reference),
            ModelKind::Chat => id_of(&self.chats, reference),
        };
        found.unwrap_or_else(|| public_id(reference))
    }

    pub(super) fn embedding(&self, model: &str) -> Option<&Slot<EmbedJob>> {
        self.embeddings.iter().find(|s| s.matches(model.trim()))
    }

    pub(super) fn chat(&self, model: &str) -> Option<&Slot<ChatJob>> {
        self.chats.iter().find(|s| s.matches(model.trim()))
    }
}

/// The id of the slot configured as `reference`.
fn id_of<J>(slots: &[Slot<J>], reference: &str) -> Option<String> {
    slots
        .iter()
        .find(|s| s.reference == reference)
        .map(|s| s.id.to_string())
}

/// One slot per distinct model `roles` gives to roles of `kind`, each
/// knowing which roles it serves.
fn slots_for<J>(
    roles: &ModelRoles,
    kind: ModelKind,
    capacity: usize,
    pipeline: usize,
) -> Vec<Slot<J>> {
    let references = match kind {
        ModelKind::Embedding => roles.embeddings(),
        ModelKind::Chat => roles.chats(),
    };
    references
        .iter()
        .map(|reference| {
            let mut slot = Slot::new(reference, kind, capacity, pipeline);
            slot.roles = Role::ALL
                .into_iter()
                .filter(|r| r.kind() == kind && r.reference(roles) == reference)
                .collect();
            slot
        })
        .collect()
}

/// The name clients use for a configured reference: a bundle artifact's
/// name, a Hugging Face repository, or a local directory's last component.
pub(super) fn public_id(reference: &str) -> String {
    if let Some(name) = reference.strip_prefix("bundle:") {
        return name.to_owned();
    }
    if let Some(repo) = reference.strip_prefix("hf:") {
        // Without the pins: `hf:owner/repo/file@commit#sha256=…`.
        return repo.split(['@', '#']).next().unwrap_or(repo).to_owned();
    }
    std::path::Path::new(reference)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| reference.to_owned())
}
