//! The durable job queue's workers: lease a job from the store, run its
//! handler while renewing the lease, then mark it done, retry it later with
//! exponential backoff, or give up on it.
//!
//! Delivery is at least once: a worker that dies mid-job loses its lease and
//! another worker takes the job over when the lease runs out, so handlers
//! must be idempotent. While a handler runs, its lease is renewed every
//! third of `queue.lease_secs`; a renewal that finds the job gone or owned
//! by another worker stops the run, and its outcome is not recorded.
//!
//! The store leases at most one job per conversation at a time, a
//! conversation's buyer messages in message order (see [`JobStore`]). No job
//! dies silently: when a job runs out of attempts, fails permanently, meets
//! a lease that ran out on its last attempt (the process was killed), or a
//! buyer message has waited longer than `queue.max_message_age_secs`, the
//! handler's [`JobHandler::give_up`] hook runs (the reply pipeline hands the
//! message to a human) before the job rests as dead.
//!
//! Jobs wait in lanes ([`JobLane`]): `queue.workers` take the fast lane,
//! where every job starts; a handler that finds a buyer message needs the
//! chat model moves it to the draft lane ([`Handled::ToLane`], the attempt
//! not counted), which `queue.draft_workers` of its own take. Answers from
//! records and the knowledge base thus never queue behind drafts, and past
//! capacity it is drafts that wait.
//!
//! Until a handler is installed ([`Queue::install`]: the reply pipeline
//! once the models are ready) the workers lease nothing, so messages wait in
//! the queue. A panicking handler fails only its job; a worker that ends
//! unexpectedly is restarted, and [`WorkerHealth`] says how many run. On
//! shutdown a worker stops between jobs (or abandons the one in hand) and
//! gives its leases back without counting the attempt.
//!
//! This module knows the [`Store`] trait and nothing of HTTP or the
//! pipeline.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod supervise;

use crate::config::QueueSettings;
use crate::metrics as m;
use crate::store::{
    GiveUp, GiveUpCause, Job, JobFailure, JobLane, JobStore, LeaseRequest, Store, StoreError,
    JOB_INBOUND_MESSAGE,
};
use supervise::{panic_reason, supervise, AbortOnDrop};
pub use supervise::{WorkerHealth, WorkersReport};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth trying again later (a model busy, a store hiccup).
    #[error("{0}")]
    Retryable(String),
    /// Will never succeed; the queue gives up on the job at once.
    #[error("{0}")]
    Permanent(String),
}

impl From<StoreError> for JobError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Corrupt(_) | StoreError::NotFound { .. } => {
                JobError::Permanent(err.to_string())
            }
            other => JobError::Retryable(other.to_string()),
        }
    }
}

/// What a handler's run of a job came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The job's work is done.
    Done,
    /// The job needs another lane's workers: it goes back to the queue in
    /// that lane, keeping its place, this attempt not counted. Only asked
    /// for a lane that has workers (`queue.draft_workers` for drafts).
    ToLane(JobLane),
}

/// What runs a leased job.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs the job. Must be idempotent: a job can run more than once.
    async fn handle(&self, job: &Job) -> Result<Handled, JobError>;

    /// The queue gives up on `job` for the reason in `why` (its attempts
    /// ran out or it failed permanently, its last attempt never finished,
    /// or a buyer message waited too long). The handler makes sure nobody
    /// is left waiting: for a buyer message, a handoff to a human. It may
    /// run more than once and must be idempotent; a retryable error runs it
    /// again later, a permanent one leaves the job dead without it (logged
    /// and counted as abandoned).
    async fn give_up(&self, job: &Job, why: &GiveUp) -> Result<(), JobError>;
}

/// How often finished jobs are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Tries the give-up hook gets beyond a job's own attempts before the job
/// is left dead without it.
const GIVE_UP_TRIES: u32 = 5;

async fn prune_done_jobs(store: Arc<dyn Store>, hours: u64, cancel: CancellationToken) {
    loop {
        let keep = chrono::Duration::try_hours(hours.min(1_000_000) as i64)
            .unwrap_or(chrono::Duration::MAX);
        let before = Utc::now()
            .checked_sub_signed(keep)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        // Once per period across every replica of the database.
        let claimed = store.claim_timer("prune_done_jobs", PRUNE_EVERY).await;
        let pruned = match claimed {
            Ok(true) => store.prune_done_jobs(before).await,
            Ok(false) => Ok(0),
            Err(err) => Err(err),
        };
        match pruned {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, keep_done_hours = hours, "pruned done jobs"),
            Err(err) => tracing::warn!(error = %err, "could not prune done jobs"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = cancel.cancelled() => break,
        }
    }
}

/// Delay before attempt `attempt + 1`: base * 2^(attempt-1), capped, with up
/// to 25% random jitter taken off so retries of a burst spread out.
pub fn backoff(settings: &QueueSettings, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let raw = settings
        .backoff_base_ms
        .saturating_mul(1u64 << exp)
        .min(settings.backoff_max_ms);
    let jitter = jitter.clamp(0.0, 1.0);
    Duration::from_millis(raw - (raw as f64 * 0.25 * jitter) as u64)
}

/// `delay` from now, never overflowing.
fn after(delay: Duration) -> DateTime<Utc> {
    let now = Utc::now();
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(now)
}

/// Workers pulling from the store's job table.
#[derive(Clone)]
pub struct Queue {
    store: Arc<dyn Store>,
    handler: Arc<RwLock<Option<Arc<dyn JobHandler>>>>,
    settings: QueueSettings,
    wake: Arc<Notify>,
    health: Arc<WorkerHealth>,
}

/// What a run decided for its job, before it is recorded.
enum Verdict {
    Done,
    /// Back to the queue in another lane.
    ToLane(JobLane),
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
    /// The give-up hook failed retryably: run it again at `at`.
    GiveUpAgain {
        why: GiveUp,
        at: DateTime<Utc>,
    },
    /// Given up on (handed off, or beyond help): the job rests as dead.
    Dead {
        detail: String,
    },
    /// The lease was lost mid-run: nothing to record.
    LeaseLost,
}

impl Verdict {
    fn label(&self) -> &'static str {
        match self {
            Verdict::Done => "done",
            Verdict::ToLane(_) => "to_lane",
            Verdict::Retry { .. } => "retry",
            Verdict::GiveUpAgain { .. } => "give_up_retry",
            Verdict::Dead { .. } => "dead",
            Verdict::LeaseLost => "lease_lost",
        }
    }
}

/// What a worker takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Buyer messages of the fast lane, then follow-ups.
    Background,
    /// Buyer messages of the fast lane.
    Fast,
    /// Buyer messages of the draft lane.
    Draft,
}

/// What became of one run of a job.
enum Ran<T> {
    Finished(T),
    /// The lease was lost mid-run; the run was dropped.
    LeaseLost,
}

impl Queue {
    /// A queue whose workers run `handler`; with `None` they lease nothing
    /// until [`Queue::install`] gives them one.
    pub fn new(
        store: Arc<dyn Store>,
        handler: Option<Arc<dyn JobHandler>>,
        settings: QueueSettings,
    ) -> Queue {
        let health = Arc::new(WorkerHealth::new(settings.workers + settings.draft_workers));
        health.processing.store(handler.is_some(), Ordering::SeqCst);
        Queue {
            store,
            handler: Arc::new(RwLock::new(handler)),
            settings,
            wake: Arc::new(Notify::new()),
            health,
        }
    }

    /// Installs the handler (replacing any) and wakes the workers.
    pub fn install(&self, handler: Arc<dyn JobHandler>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = Some(handler);
        self.health.processing.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    fn handler(&self) -> Option<Arc<dyn JobHandler>> {
        self.handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tells an idle worker that new work has been committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The workers' health, shared with whoever reports it.
    pub fn health(&self) -> Arc<WorkerHealth> {
        self.health.clone()
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::try_seconds(self.settings.lease_secs as i64)
            .unwrap_or(chrono::Duration::MAX)
    }

    /// Starts the workers, each under a supervisor that restarts it when it
    /// ends unexpectedly; they run until `cancel` fires, then release their
    /// leases and end. With `keep_done_hours` set, a task also deletes done
    /// jobs older than that, at start and every hour.
    pub fn spawn(&self, cancel: CancellationToken) -> JoinSet<()> {
        let mut set = JoinSet::new();
        if self.settings.keep_done_hours > 0 {
            let (store, hours, cancel) = (
                self.store.clone(),
                self.settings.keep_done_hours,
                cancel.clone(),
            );
            set.spawn(async move { prune_done_jobs(store, hours, cancel).await });
        }
        let process = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
        for index in 0..self.settings.workers + self.settings.draft_workers {
            let role = self.role(index);
            let queue = self.clone();
            let prefix = format!("{process}-w{index}");
            let cancel = cancel.clone();
            set.spawn(supervise(
                self.health.clone(),
                index,
                cancel.clone(),
                move |generation| {
                    let owner = format!("{prefix}-g{generation}");
                    let (queue, cancel) = (queue.clone(), cancel.clone());
                    async move {
                        let store = queue.store.clone();
                        let mut worker = AbortOnDrop(tokio::spawn(queue.run_worker(
                            owner.clone(),
                            role,
                            cancel,
                        )));
                        let ended = (&mut worker.0).await;
                        if ended.is_err() {
                            // The worker died holding leases: give them back
                            // rather than leave their jobs until they expire.
                            release(store.as_ref(), &owner).await;
                        }
                        ended
                    }
                },
            ));
        }
        set
    }

    /// What worker `index` does: the first takes follow-ups too, the next
    /// `workers - 1` buyer messages, the last `draft_workers` the draft lane.
    fn role(&self, index: usize) -> Role {
        match index {
            0 => Role::Background,
            i if i < self.settings.workers => Role::Fast,
            _ => Role::Draft,
        }
    }

    /// The jobs a worker of `role` leases. Fast workers take buyer
    /// messages of the fast lane; the background one also takes follow-ups
    /// left there (after any waiting message); draft workers take the draft
    /// lane: buyer messages whose answer needs the chat model first, then
    /// decisions' follow-ups (drafts left to them, translations,
    /// summaries). Without draft workers the fast lane's workers take every
    /// lane, the background one every kind, so a job moved there earlier
    /// still runs.
    fn lease_request<'a>(&self, owner: &'a str, role: Role) -> LeaseRequest<'a> {
        let fast = (self.settings.draft_workers > 0).then_some(JobLane::Fast);
        let (kinds, lane) = match role {
            Role::Background => (None, fast),
            Role::Fast => (Some(&[JOB_INBOUND_MESSAGE][..]), fast),
            Role::Draft => (None, Some(JobLane::Draft)),
        };
        LeaseRequest {
            owner,
            limit: 1,
            lease: self.lease(),
            kinds,
            lane,
        }
    }

    async fn run_worker(self, owner: String, role: Role, cancel: CancellationToken) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        while !cancel.is_cancelled() {
            let Some(handler) = self.handler() else {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = cancel.cancelled() => break,
                }
                continue;
            };
            let leased = self
                .store
                .lease_jobs(self.lease_request(&owner, role))
                .await;
            let jobs = match leased {
                Ok(jobs) => jobs,
                Err(err) => {
                    tracing::warn!(error = %err, worker = %owner, "could not lease jobs");
                    m::job_lease_failed();
                    Vec::new()
                }
            };
            if jobs.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = cancel.cancelled() => break,
                }
                continue;
            }
            for job in jobs {
                let span = job_span(&job);
                tokio::select! {
                    _ = self.run_job(&owner, handler.as_ref(), &job).instrument(span) => {}
                    _ = cancel.cancelled() => {
                        tracing::info!(job = %job.id, "shutting down; job handed back to the queue");
                        break;
                    }
                }
            }
        }
        release(self.store.as_ref(), &owner).await;
    }

    /// Runs one leased job to a verdict and records it. The `job started`
    /// and `job ran` events (with the conversation) bracket the handler's
    /// work; `job ran` comes before the verdict is recorded, and so before
    /// the next job of the conversation can be leased: no two runs of one
    /// conversation's jobs overlap in the log.
    async fn run_job(&self, owner: &str, handler: &dyn JobHandler, job: &Job) {
        let conversation = job.conversation_id.map(|c| c.to_string());
        let conversation = conversation.as_deref().unwrap_or("");
        tracing::info!(
            job = %job.id, conversation, kind = %job.kind, attempt = job.attempts,
            "job started"
        );
        let started = std::time::Instant::now();
        let verdict = match (&job.give_up, self.too_old(job)) {
            (Some(why), _) => self.give_up(owner, handler, job, why.clone()).await,
            (None, Some(why)) => self.give_up(owner, handler, job, why).await,
            (None, None) => self.handle(owner, handler, job).await,
        };
        m::job_duration(&job.kind, started.elapsed());
        let outcome = verdict.label();
        tracing::Span::current().record("outcome", outcome);
        tracing::info!(job = %job.id, conversation, outcome, "job ran");
        match self.record(owner, job, verdict).await {
            Ok(true) => m::job_finished(&job.kind, outcome),
            Ok(false) => {
                tracing::warn!("the job's lease was lost before its outcome was recorded");
                m::job_lease_lost(&job.kind);
            }
            Err(err) => {
                tracing::error!(error = %err, "could not record the job's outcome; it runs again after its lease")
            }
        }
    }

    /// Writes a verdict to the store; false when the lease was lost.
    async fn record(&self, owner: &str, job: &Job, verdict: Verdict) -> Result<bool, StoreError> {
        let store = &self.store;
        match verdict {
            Verdict::Done => store.complete_job(job.id, owner).await,
            Verdict::ToLane(lane) => store.move_to_lane(job.id, owner, lane).await,
            Verdict::Retry { error, at } => {
                store
                    .fail_job(job.id, owner, &error, JobFailure::RetryAt(at))
                    .await
            }
            Verdict::GiveUpAgain { why, at } => {
                let failure = JobFailure::GiveUpAt {
                    cause: why.cause,
                    at,
                };
                store.fail_job(job.id, owner, &why.detail, failure).await
            }
            Verdict::Dead { detail } => {
                store
                    .fail_job(job.id, owner, &detail, JobFailure::Dead)
                    .await
            }
            Verdict::LeaseLost => Ok(true),
        }
    }

    /// A buyer message that waited longer than `max_message_age_secs` since
    /// it arrived is not answered any more.
    fn too_old(&self, job: &Job) -> Option<GiveUp> {
        let max = self.settings.max_message_age_secs;
        if max == 0 || job.kind != JOB_INBOUND_MESSAGE {
            return None;
        }
        let waited = Utc::now().signed_duration_since(job.created_at);
        (waited.num_milliseconds() > (max as i64).saturating_mul(1000)).then(|| GiveUp {
            cause: GiveUpCause::TooOld,
            detail: format!(
                "the message waited {} s for processing, more than queue.max_message_age_secs \
                 ({max} s); a reply now would come too late",
                waited.num_seconds()
            ),
        })
    }

    /// Why `job` cannot move to `lane`: it is there already, or no
    /// worker takes that lane. A handler's mistake: the job is retried.
    fn lane_refusal(&self, job: &Job, lane: JobLane) -> Option<String> {
        if lane == job.lane {
            return Some(format!(
                "the handler sent the job to the {} lane it is in",
                lane.as_str()
            ));
        }
        (lane == JobLane::Draft && self.settings.draft_workers == 0)
            .then(|| "the draft lane has no workers (queue.draft_workers = 0)".to_owned())
    }

    /// Runs the handler; a failure for good goes on to the give-up hook.
    async fn handle(&self, owner: &str, handler: &dyn JobHandler, job: &Job) -> Verdict {
        let result = match self.with_lease(owner, job, handler.handle(job)).await {
            Ran::Finished(result) => result,
            Ran::LeaseLost => return Verdict::LeaseLost,
        };
        match result {
            Ok(Handled::Done) => Verdict::Done,
            Ok(Handled::ToLane(lane)) => match self.lane_refusal(job, lane) {
                None => Verdict::ToLane(lane),
                Some(error) => {
                    tracing::error!(%error, "the job cannot move to the lane its handler asked for");
                    Verdict::Retry {
                        error,
                        at: after(backoff(&self.settings, job.attempts, rand::rng().random())),
                    }
                }
            },
            Err(JobError::Retryable(error)) if job.attempts < job.max_attempts => {
                let delay = backoff(&self.settings, job.attempts, rand::rng().random());
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
                Verdict::Retry {
                    error,
                    at: after(delay),
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "job failed for good; giving up on it");
                let why = GiveUp {
                    cause: GiveUpCause::Failed,
                    detail: err.to_string(),
                };
                self.give_up(owner, handler, job, why).await
            }
        }
    }

    /// Runs the give-up hook: the job then rests as dead; a hook that fails
    /// retryably runs again after a backoff, a few times at most.
    async fn give_up(
        &self,
        owner: &str,
        handler: &dyn JobHandler,
        job: &Job,
        why: GiveUp,
    ) -> Verdict {
        let cause = why.cause.as_str();
        let tries = job.max_attempts.saturating_add(GIVE_UP_TRIES);
        let result = if job.attempts > tries {
            Err(JobError::Permanent(format!(
                "its give-up hook failed {GIVE_UP_TRIES} more times"
            )))
        } else {
            match self
                .with_lease(owner, job, handler.give_up(job, &why))
                .await
            {
                Ran::Finished(result) => result,
                Ran::LeaseLost => return Verdict::LeaseLost,
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(cause, detail = %why.detail, "gave up on the job; handed off");
                m::job_given_up(&job.kind, cause, "handed_off");
                Verdict::Dead { detail: why.detail }
            }
            Err(JobError::Retryable(error)) if job.attempts < tries => {
                let delay = backoff(&self.settings, job.attempts, rand::rng().random());
                tracing::warn!(cause, %error, "the give-up hook failed; will retry");
                m::job_given_up(&job.kind, cause, "retry");
                Verdict::GiveUpAgain {
                    why,
                    at: after(delay),
                }
            }
            Err(err) => {
                tracing::error!(
                    cause, detail = %why.detail, error = %err,
                    "the give-up hook failed for good; the job is dead without it"
                );
                m::job_given_up(&job.kind, cause, "abandoned");
                Verdict::Dead {
                    detail: format!("{}; giving up failed too: {err}", why.detail),
                }
            }
        }
    }

    /// Runs `work` (a handler call) to its end while renewing the job's
    /// lease every third of `lease_secs`. A panic becomes a retryable
    /// failure; a renewal that finds the lease lost drops `work` at once.
    async fn with_lease<T>(
        &self,
        owner: &str,
        job: &Job,
        work: impl Future<Output = Result<T, JobError>>,
    ) -> Ran<Result<T, JobError>> {
        let work = AssertUnwindSafe(work).catch_unwind().map(|result| {
            result.unwrap_or_else(|payload| {
                let reason = panic_reason(payload.as_ref());
                tracing::error!(%reason, "the job handler panicked");
                m::job_panicked(&job.kind);
                Err(JobError::Retryable(format!(
                    "the handler panicked: {reason}"
                )))
            })
        });
        let lease = self.lease();
        let every = Duration::from_millis((self.settings.lease_secs * 1000 / 3).max(100));
        let renew = async {
            loop {
                tokio::time::sleep(every).await;
                match self.store.renew_lease(job.id, owner, lease).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    // Keep working: a later renewal succeeds, or finds the
                    // lease lost.
                    Err(err) => tracing::warn!(error = %err, "could not renew the job's lease"),
                }
            }
        };
        tokio::select! {
            biased;
            result = work => Ran::Finished(result),
            () = renew => {
                tracing::warn!("the job's lease was lost (another worker has it, or it is gone); this run stops and records nothing");
                m::job_lease_lost(&job.kind);
                Ran::LeaseLost
            }
        }
    }
}

/// The `queue.job` span of one run, continuing the trace of whoever queued
/// the job (the ingest request, or the job run whose decision queued a
/// follow-up), on whichever replica that was.
fn job_span(job: &Job) -> tracing::Span {
    let id = job.id.to_string();
    let tenant = job.tenant_id.map(|t| t.to_string()).unwrap_or_default();
    let conversation = job
        .conversation_id
        .map(|c| c.to_string())
        .unwrap_or_default();
    crate::telemetry::job_span(crate::telemetry::Leased {
        id: &id,
        kind: &job.kind,
        attempt: job.attempts,
        tenant: &tenant,
        conversation_id: &conversation,
        message_id: job.payload["message_id"].as_str().unwrap_or_default(),
        traceparent: job.traceparent.as_deref(),
    })
}

/// Gives back every job `owner` holds, without counting the attempt.
async fn release(store: &dyn JobStore, owner: &str) {
    match store.release_jobs(owner).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(worker = %owner, released = n, "released leased jobs"),
        Err(err) => {
            tracing::warn!(error = %err, worker = %owner, "could not release jobs; they return when their lease runs out")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::config::Settings;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut settings = Settings::defaults().queue;
        settings.backoff_base_ms = 100;
        settings.backoff_max_ms = 1000;
        let delays: Vec<u64> = (1..=6)
            .map(|a| backoff(&settings, a, 0.0).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(&settings, 1, 1.0).as_millis(), 75);
        assert_eq!(backoff(&settings, u32::MAX, 0.0).as_millis(), 1000);
    }

    #[test]
    fn far_delays_never_overflow() {
        let at = after(Duration::from_secs(u64::MAX));
        assert!(at <= Utc::now() + chrono::Duration::seconds(1));
    }

    #[tokio::test]
    async fn l3_a_worker_that_panics_is_restarted_and_reported_down_meanwhile() {
        let health = Arc::new(WorkerHealth::new(1));
        let cancel = CancellationToken::new();
        let started = Arc::new(AtomicU64::new(0));
        let supervisor = tokio::spawn(supervise(health.clone(), 0, cancel.clone(), {
            let (started, cancel) = (started.clone(), cancel.clone());
            move |generation| {
                started.fetch_add(1, Ordering::SeqCst);
                let cancel = cancel.clone();
                async move {
                    tokio::spawn(async move {
                        if generation == 0 {
                            panic!("worker bug");
                        }
                        cancel.cancelled().await;
                    })
                    .await
                }
            }
        }));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut seen_down = false;
        while started.load(Ordering::SeqCst) < 2 {
            seen_down |= !health.report().all_running();
            assert!(tokio::time::Instant::now() < deadline, "never restarted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(seen_down, "down while waiting to restart");
        let report = health.report();
        assert_eq!((report.running, report.restarts), (1, 1));
        cancel.cancel();
        supervisor.await.unwrap();
        assert_eq!(health.report().running, 0, "stopped on shutdown");
        assert_eq!(health.report().restarts, 1, "a shutdown is no restart");
    }
}
