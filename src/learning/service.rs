//! [`Learning`]: the loop from a person's correction to heads in use, per
//! tenant. A correction is stored as the tenant's pending exemplar and a
//! retraining starts in the background (one at a time per tenant); the
//! retrained heads are measured against the tenant's confirmed history and
//! the shipped evaluation set, stored as a version with the comparison,
//! and swapped in for that tenant only when promoted. Rolling back
//! re-fits the previous version (fitting is deterministic) or returns the
//! tenant to the shared heads. Knows nothing of HTTP or pages.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::claim::{self, Held};
use super::measure::{Case, CaseSource, Comparison};
use super::train::{eval_cases, tenant_heads, train_and_measure, Taught};
use super::vectors::{RememberedVectors, REMEMBERED_VECTORS};
use super::LearningError;
use crate::domain::{Author, Direction, MessageId, TenantId};
use crate::figures::quality::edit_distance;
use crate::pipeline::stages::UnderstandStage;
use crate::store::desk::ConversationFacts;
use crate::store::learning::{
    ExemplarKind, ExemplarStatus, HeadVersion, LearnedExemplar, NewHeadVersion, NewLearnedExemplar,
};
use crate::store::users::ShopAccess;
use crate::store::{ConversationDetail, Message, Store};
use crate::understand::routes::{Route, RouteExample};
use crate::understand::{Example, Heads};

/// How long a retraining's claim on a tenant lasts without renewal: it is
/// renewed every quarter of it while the retraining runs (however long
/// that takes), so no second replica starts one meanwhile; corrections a
/// replica left pending when it died are taken over within it, and a
/// failed retraining is tried again after it.
const RETRAIN_LEASE: Duration = Duration::from_secs(10 * 60);

/// Who a retraining resumed from pending corrections is recorded as.
const RESUMED_BY: &str = "kedai:resumed";

/// A person's correction of the intent kedai read in a buyer message.
#[derive(Debug, Clone)]
pub struct Correction {
    pub message: MessageId,
    pub intent: String,
    /// Who corrected it, for the audit log.
    pub actor: String,
}

/// The learning loop of every tenant; one per server.
pub struct Learning {
    pub(super) store: Arc<dyn Store>,
    /// The reply pipeline's understand stage, set once the embedding model
    /// is ready.
    stage: Arc<OnceLock<Arc<UnderstandStage>>>,
    pub(super) eval_set: Option<PathBuf>,
    /// One policy change at a time in this process (see `policy_changes`).
    pub(super) policy_lock: tokio::sync::Mutex<()>,
    /// One retraining or rollback at a time per tenant.
    tenants: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
    /// The version whose heads this process reads each tenant with;
    /// absent: the shared heads.
    installed: Mutex<HashMap<TenantId, Uuid>>,
    /// When a retraining of the tenant last failed here: pending
    /// corrections are not resumed again before the lease ends.
    failed: Mutex<HashMap<TenantId, Instant>>,
    /// Vectors of the gap messages suggestions are grouped from, so a
    /// listing embeds only the messages asked since the last one.
    gap_vectors: Arc<RememberedVectors>,
    /// The similarity the reply pipeline answers from an FAQ entry at
    /// (`pipeline.faq_min_similarity`): new FAQ entries are measured with it.
    faq_min_similarity: f32,
}

impl Learning {
    pub fn new(
        store: Arc<dyn Store>,
        stage: Arc<OnceLock<Arc<UnderstandStage>>>,
        eval_set: Option<PathBuf>,
    ) -> Learning {
        Learning {
            store,
            stage,
            eval_set,
            policy_lock: tokio::sync::Mutex::new(()),
            tenants: Mutex::new(HashMap::new()),
            installed: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            gap_vectors: Arc::new(RememberedVectors::new(REMEMBERED_VECTORS)),
            faq_min_similarity: crate::pipeline::run::PipelineConfig::default().faq_min_similarity,
        }
    }

    /// Measures new FAQ entries with the reply pipeline's
    /// `faq_min_similarity` (the default's otherwise).
    pub fn with_faq_min_similarity(mut self, similarity: f32) -> Learning {
        self.faq_min_similarity = similarity;
        self
    }

    pub fn faq_min_similarity(&self) -> f32 {
        self.faq_min_similarity
    }

    /// `embedder` remembering the vectors of the gap messages it embedded
    /// (for [`super::suggestions::refresh`]).
    pub fn gap_embedder(
        &self,
        embedder: Arc<dyn crate::kb::Embedder>,
    ) -> Arc<dyn crate::kb::Embedder> {
        self.gap_vectors.embedder(embedder)
    }

    fn set_installed(&self, tenant: TenantId, version: Option<Uuid>) {
        let mut installed = self.installed.lock().unwrap_or_else(|e| e.into_inner());
        match version {
            Some(id) => installed.insert(tenant, id),
            None => installed.remove(&tenant),
        };
    }

    fn installed(&self, tenant: TenantId) -> Option<Uuid> {
        self.installed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant)
            .copied()
    }

    fn stage(&self) -> Result<Arc<UnderstandStage>, LearningError> {
        self.stage.get().cloned().ok_or_else(|| {
            LearningError::NotReady(
                "learning needs the embedding model, which is not loaded".into(),
            )
        })
    }

    fn tenant_lock(&self, tenant: TenantId) -> Arc<tokio::sync::Mutex<()>> {
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tenant)
            .or_default()
            .clone()
    }

    /// The intents a correction may name: the shared classifiers' labels;
    /// empty until they are trained.
    pub fn known_intents(&self) -> Vec<String> {
        self.stage
            .get()
            .and_then(|stage| stage.current())
            .map(|u| u.heads().intents.head().labels().to_vec())
            .unwrap_or_default()
    }

    /// Records `correction` as the tenant's exemplar. The intent must be
    /// one the classifiers know and differ from what kedai read; the
    /// message must be a buyer's message of this tenant.
    pub async fn correct(
        &self,
        tenant: TenantId,
        correction: &Correction,
    ) -> Result<LearnedExemplar, LearningError> {
        let stage = self.stage()?;
        let understander = stage.trained().await.map_err(|e| {
            LearningError::NotReady(format!("the classifiers are not trained: {e}"))
        })?;
        let known = understander.heads().intents.head().labels().to_vec();
        if !known.contains(&correction.intent) {
            return Err(LearningError::Invalid(format!(
                "`intent` must be one of {}, got {:?}",
                known.join(", "),
                correction.intent
            )));
        }
        let (_, message) = self.buyer_message(tenant, correction.message).await?;
        let previous = self
            .store
            .decision_for_message(tenant, correction.message)
            .await?
            .and_then(|d| d.trace.get("intent")?.as_str().map(str::to_owned));
        if previous.as_deref() == Some(correction.intent.as_str()) {
            return Err(LearningError::Invalid(format!(
                "kedai already read message {} as `{}`; nothing to correct",
                correction.message, correction.intent
            )));
        }
        let exemplar = self
            .store
            .add_learned_exemplar(
                tenant,
                &NewLearnedExemplar {
                    message_id: Some(correction.message),
                    text: message.text.as_str().to_owned(),
                    label: correction.intent.clone(),
                    previous_label: previous,
                    kind: ExemplarKind::Intent,
                    route_intent: None,
                    created_by: correction.actor.clone(),
                },
            )
            .await?;
        crate::metrics::learning_event("correction");
        Ok(exemplar)
    }

    /// The conversation of a buyer's message of `tenant`, and the message;
    /// an error for any other message.
    pub(super) async fn buyer_message(
        &self,
        tenant: TenantId,
        id: MessageId,
    ) -> Result<(ConversationDetail, Message), LearningError> {
        let not_found = || LearningError::NotFound(format!("message {id}"));
        let conversation = self
            .store
            .message_conversation(tenant, id)
            .await?
            .ok_or_else(not_found)?;
        let detail = self
            .store
            .conversation(tenant, conversation)
            .await?
            .ok_or_else(not_found)?;
        let message = detail
            .messages
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .ok_or_else(not_found)?;
        if message.direction != Direction::Inbound || message.author != Author::Buyer {
            return Err(LearningError::Invalid(format!(
                "message {id} is not a buyer's message; only what buyers wrote is learned from"
            )));
        }
        Ok((detail, message))
    }

    /// Starts [`Learning::retrain`] for `tenant` in the background; the
    /// outcome is stored as a version (or logged when training failed).
    pub fn retrain_in_background(self: &Arc<Self>, tenant: TenantId, actor: String) {
        let learning = self.clone();
        tokio::spawn(async move {
            if let Err(err) = learning.retrain(tenant, &actor).await {
                tracing::error!(%tenant, error = %err, "retraining a tenant's classifiers failed");
            }
        });
    }

    /// Retrains `tenant`'s heads from its active version's exemplars plus
    /// the pending ones, measures them, stores the version and, when it is
    /// promoted, swaps the heads in for that tenant. `None`: nothing was
    /// pending, or another replica of the same database is retraining
    /// this tenant (it, or the next pass of [`Learning::sync`], decides
    /// what is pending).
    pub async fn retrain(
        &self,
        tenant: TenantId,
        actor: &str,
    ) -> Result<Option<HeadVersion>, LearningError> {
        let lock = self.tenant_lock(tenant);
        let _one = lock.lock().await;
        self.retrain_claimed(tenant, actor).await
    }

    /// [`Learning::retrain`] with the tenant's lock held: claims the
    /// tenant's retraining across replicas, renews the claim while it runs
    /// (see [`claim::hold_while`]), and gives it back when done. A failed
    /// retraining keeps its claim until the lease ends, so it is tried
    /// again then, not on every pass; one whose claim another replica took
    /// (this one stalled past its lease) records nothing.
    async fn retrain_claimed(
        &self,
        tenant: TenantId,
        actor: &str,
    ) -> Result<Option<HeadVersion>, LearningError> {
        let store = self.store.as_ref();
        if !claim::claim(store, tenant, RETRAIN_LEASE).await? {
            tracing::debug!(%tenant, "another replica is retraining this tenant");
            return Ok(None);
        }
        let timer = claim::retraining_timer(tenant);
        let work = self.retrain_locked(tenant, actor);
        let outcome = match claim::hold_while(store, &timer, RETRAIN_LEASE, work).await {
            Held::Done(outcome) => outcome,
            Held::Lost => {
                crate::metrics::learning_event("claim_lost");
                return Ok(None);
            }
        };
        match outcome {
            Ok(version) => {
                self.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&tenant);
                claim::release(store, tenant).await?;
                Ok(version)
            }
            Err(err) => {
                crate::metrics::learning_event("retrain_failed");
                self.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(tenant, Instant::now());
                Err(err)
            }
        }
    }

    /// The retraining itself, with the tenant's lock and claim held.
    async fn retrain_locked(
        &self,
        tenant: TenantId,
        actor: &str,
    ) -> Result<Option<HeadVersion>, LearningError> {
        let stage = self.stage()?;
        let exemplars = self.store.learned_exemplars(tenant).await?;
        let versions = self.store.head_versions(tenant).await?;
        let base: HashSet<Uuid> = versions
            .iter()
            .find(|v| v.active)
            .map(|v| v.exemplar_ids.iter().copied().collect())
            .unwrap_or_default();
        let pending: Vec<&LearnedExemplar> = exemplars
            .iter()
            .filter(|e| e.status == ExemplarStatus::Pending)
            .collect();
        if pending.is_empty() {
            return Ok(None);
        }
        let used: Vec<&LearnedExemplar> = exemplars
            .iter()
            .filter(|e| base.contains(&e.id) || e.status == ExemplarStatus::Pending)
            .collect();
        let cases = self.cases(tenant, &exemplars, &base).await?;
        let understander = stage
            .trained()
            .await
            .map_err(|e| LearningError::NotReady(e.to_string()))?;
        let learned = taught(used.iter().copied());
        let current = understander.heads_for(tenant);
        let training = stage.clone();
        let (heads, comparison) = tokio::task::spawn_blocking(move || {
            training.exclusive_training(|| {
                let (embedder, shipped) = training
                    .training_parts()
                    .map_err(|e| LearningError::Training(e.to_string()))?;
                train_and_measure(&embedder, &shipped, &learned, &current, &cases)
                    .map_err(|e| LearningError::Training(e.to_string()))
            })
        })
        .await
        .map_err(|e| LearningError::Training(format!("the training task failed: {e}")))??;
        let version = self
            .store
            .record_head_version(
                tenant,
                &NewHeadVersion {
                    exemplar_ids: used.iter().map(|e| e.id).collect(),
                    measured_ids: pending.iter().map(|e| e.id).collect(),
                    comparison: serde_json::to_value(&comparison)
                        .map_err(|e| LearningError::Training(e.to_string()))?,
                    promoted: comparison.promoted,
                    reason: (!comparison.promoted).then(|| comparison.reasons.join("; ")),
                    created_by: actor.to_owned(),
                },
            )
            .await?;
        if comparison.promoted {
            understander
                .set_tenant_heads(tenant, Some(heads))
                .map_err(|e| LearningError::Training(e.to_string()))?;
            self.set_installed(tenant, Some(version.id));
            crate::metrics::learning_event("promoted");
        } else {
            crate::metrics::learning_event("refused");
        }
        tracing::info!(
            %tenant,
            version = version.number,
            promoted = comparison.promoted,
            reasons = ?comparison.reasons,
            "a tenant's retrained classifiers were measured"
        );
        Ok(Some(version))
    }

    /// Restores the version promoted before the active one (or the shared
    /// heads when there is none) with one action; returns the version now
    /// active, `None` for the shared heads.
    pub async fn rollback(
        &self,
        tenant: TenantId,
        actor: &str,
    ) -> Result<Option<HeadVersion>, LearningError> {
        let stage = self.stage()?;
        let lock = self.tenant_lock(tenant);
        let _one = lock.lock().await;
        let versions = self.store.head_versions(tenant).await?;
        let active = versions.iter().find(|v| v.active).ok_or_else(|| {
            LearningError::Conflict(
                "this tenant uses the shared classifiers; there is nothing to roll back".into(),
            )
        })?;
        let previous = versions
            .iter()
            .filter(|v| v.promoted && v.number < active.number)
            .max_by_key(|v| v.number)
            .cloned();
        let heads = match &previous {
            Some(version) => Some(self.fit(&stage, tenant, &version.exemplar_ids).await?),
            None => None,
        };
        self.store
            .activate_head_version(tenant, previous.as_ref().map(|v| v.id), actor)
            .await?;
        stage
            .trained()
            .await
            .map_err(|e| LearningError::NotReady(e.to_string()))?
            .set_tenant_heads(tenant, heads)
            .map_err(|e| LearningError::Training(e.to_string()))?;
        self.set_installed(tenant, previous.as_ref().map(|v| v.id));
        crate::metrics::learning_event("rolled_back");
        Ok(previous.map(|v| HeadVersion { active: true, ..v }))
    }

    /// Fits every tenant's active version again, so their heads survive a
    /// restart, and decides the corrections a retraining interrupted by the
    /// restart left pending. Failures are logged; those tenants keep the
    /// shared heads.
    pub async fn restore(&self) {
        self.sync().await;
    }

    /// Brings the heads this process reads each tenant with in line with
    /// the versions active in the database: fits a version another replica
    /// promoted or rolled back to, and returns a tenant another replica
    /// rolled back to the shared heads; then resumes the retraining of
    /// every tenant with pending corrections that no retraining (here or
    /// on another replica) is working on. Failures are logged (that tenant
    /// is tried again next time).
    pub async fn sync(&self) {
        self.follow_versions().await;
        self.resume_pending().await;
    }

    /// Retrains every tenant whose corrections are still pending: a
    /// retraining was interrupted (the process stopped, or a replica
    /// died), or corrections arrived while one was running. A tenant this
    /// process is retraining now is skipped, as is one another replica
    /// holds the claim of, and one whose retraining failed here within
    /// the lease.
    async fn resume_pending(&self) {
        if self.stage().is_err() {
            return;
        }
        let tenants = match self.store.tenants_with_pending_exemplars().await {
            Ok(tenants) => tenants,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the tenants' pending corrections");
                return;
            }
        };
        for tenant in tenants {
            let failed_lately = self
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&tenant)
                .is_some_and(|at| at.elapsed() < RETRAIN_LEASE);
            if failed_lately {
                continue;
            }
            let lock = self.tenant_lock(tenant);
            let Ok(_one) = lock.try_lock() else { continue };
            match self.retrain_claimed(tenant, RESUMED_BY).await {
                Ok(Some(version)) => tracing::info!(
                    %tenant,
                    version = version.number,
                    "pending corrections were retrained and decided"
                ),
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(%tenant, error = %err, "resuming a tenant's retraining failed")
                }
            }
        }
    }

    /// The version half of [`Learning::sync`].
    async fn follow_versions(&self) {
        let Ok(stage) = self.stage() else { return };
        let active = match self.store.active_head_versions().await {
            Ok(active) => active,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the tenants' classifier versions");
                return;
            }
        };
        let wanted: HashMap<TenantId, HeadVersion> = active.into_iter().collect();
        let mut tenants: HashSet<TenantId> = wanted.keys().copied().collect();
        tenants.extend(
            self.installed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .copied(),
        );
        for tenant in tenants {
            let version = wanted.get(&tenant);
            if self.installed(tenant) == version.map(|v| v.id) {
                continue;
            }
            let lock = self.tenant_lock(tenant);
            let _one = lock.lock().await;
            // This process may have installed it meanwhile.
            if self.installed(tenant) == version.map(|v| v.id) {
                continue;
            }
            let fitted = match version {
                Some(version) => self
                    .fit(&stage, tenant, &version.exemplar_ids)
                    .await
                    .map(Some)
                    .map_err(|e| e.to_string()),
                None => Ok(None),
            };
            let installed = match (fitted, stage.trained().await) {
                (Ok(heads), Ok(understander)) => understander
                    .set_tenant_heads(tenant, heads)
                    .map_err(|e| e.to_string()),
                (Err(e), _) => Err(e),
                (_, Err(e)) => Err(e.to_string()),
            };
            match installed {
                Ok(()) => {
                    self.set_installed(tenant, version.map(|v| v.id));
                    tracing::info!(
                        %tenant,
                        version = version.map(|v| v.number),
                        "tenant classifiers follow the version active in the store"
                    )
                }
                Err(error) => {
                    tracing::error!(%tenant, %error, "tenant classifiers not installed; it keeps the ones it had")
                }
            }
        }
    }

    /// Calls [`Learning::sync`] every `every` once the shared classifiers
    /// are trained, so a version promoted or rolled back on another
    /// replica of the same database is used here within seconds.
    pub async fn follow(self: Arc<Self>, every: std::time::Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
            if self.stage.get().is_some_and(|stage| stage.is_ready()) {
                self.sync().await;
            }
        }
    }

    /// The heads of the version trained on `ids`.
    async fn fit(
        &self,
        stage: &Arc<UnderstandStage>,
        tenant: TenantId,
        ids: &[Uuid],
    ) -> Result<Heads, LearningError> {
        let exemplars = self.store.learned_exemplars(tenant).await?;
        let learned = taught(exemplars.iter().filter(|e| ids.contains(&e.id)));
        let stage = stage.clone();
        tokio::task::spawn_blocking(move || {
            stage.exclusive_training(|| {
                let (embedder, shipped) = stage
                    .training_parts()
                    .map_err(|e| LearningError::Training(e.to_string()))?;
                tenant_heads(&embedder, &shipped, &learned)
                    .map_err(|e| LearningError::Training(e.to_string()))
            })
        })
        .await
        .map_err(|e| LearningError::Training(format!("the training task failed: {e}")))?
    }

    /// What retrained heads are measured on: the tenant's confirmed
    /// history (drafts sent unchanged, live corrections; never the
    /// messages being corrected now) and the shipped evaluation set.
    async fn cases(
        &self,
        tenant: TenantId,
        exemplars: &[LearnedExemplar],
        base: &HashSet<Uuid>,
    ) -> Result<Vec<Case>, LearningError> {
        let corrected: HashSet<&str> = exemplars.iter().map(|e| e.text.as_str()).collect();
        let facts = self
            .store
            .conversation_facts(tenant, &ShopAccess::All, DateTime::<Utc>::UNIX_EPOCH)
            .await?;
        let mut cases: Vec<Case> = confirmed_decisions(&facts)
            .into_iter()
            .filter(|c| !corrected.contains(c.text.as_str()))
            .collect();
        cases.extend(
            exemplars
                .iter()
                .filter(|e| base.contains(&e.id) && e.kind == ExemplarKind::Intent)
                .map(|e| Case {
                    text: e.text.clone(),
                    intent: e.label.clone(),
                    source: CaseSource::Correction,
                    needs_person: false,
                    routine: false,
                }),
        );
        if let Some(path) = &self.eval_set {
            let path = path.clone();
            let eval = tokio::task::spawn_blocking(move || eval_cases(&path))
                .await
                .map_err(|e| LearningError::Training(e.to_string()))?
                .map_err(|e| LearningError::Training(e.to_string()))?;
            cases.extend(eval);
        }
        Ok(cases)
    }

    /// The tenant's versions (newest first) and learned exemplars (oldest
    /// first).
    pub async fn overview(
        &self,
        tenant: TenantId,
    ) -> Result<(Vec<HeadVersion>, Vec<LearnedExemplar>), LearningError> {
        Ok((
            self.store.head_versions(tenant).await?,
            self.store.learned_exemplars(tenant).await?,
        ))
    }
}

/// The buyer messages whose drafts an agent sent unchanged, with the
/// intent kedai read in them: decisions a person confirmed.
pub fn confirmed_decisions(conversations: &[ConversationFacts]) -> Vec<Case> {
    let mut cases = Vec::new();
    for c in conversations {
        for d in &c.decisions {
            let (Some(draft), Some(intent), Some(message)) =
                (d.draft.as_deref(), d.intent.as_deref(), d.message_id)
            else {
                continue;
            };
            let reply = c.messages.iter().find(|m| {
                m.direction == Direction::Outbound && m.author == Author::Agent && m.at >= d.at
            });
            let unchanged = reply.is_some_and(|r| edit_distance(draft, &r.text) <= 0.0);
            let asked = c.messages.iter().find(|m| m.id == message);
            if let (true, Some(asked)) = (unchanged, asked) {
                cases.push(Case {
                    text: asked.text.clone(),
                    intent: intent.to_owned(),
                    source: CaseSource::ConfirmedDecision,
                    needs_person: false,
                    routine: true,
                });
            }
        }
    }
    cases
}

/// What `exemplars` teach: intents, and routes (bound to the intent kedai
/// read).
fn taught<'a>(exemplars: impl Iterator<Item = &'a LearnedExemplar>) -> Taught {
    let mut taught = Taught::default();
    for e in exemplars {
        match e.kind {
            ExemplarKind::Intent => taught
                .intents
                .push(Example::new(e.text.clone(), e.label.clone())),
            ExemplarKind::Route => match Route::parse(&e.label) {
                Some(route) => taught.routes.push(RouteExample {
                    text: e.text.clone(),
                    route,
                    intent: e.route_intent.clone(),
                }),
                None => {
                    tracing::error!(exemplar = %e.id, label = %e.label, "a route exemplar with an unknown route is not learned")
                }
            },
        }
    }
    taught
}

/// The comparison stored with a version, read back.
pub fn stored_comparison(version: &HeadVersion) -> Option<Comparison> {
    serde_json::from_value(version.comparison.clone()).ok()
}
