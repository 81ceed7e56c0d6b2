//! The durable job queue's workers: lease a job from the store, run its
//! handler, then mark it done, retry it later with exponential backoff, or
//! move it to the dead-letter state after `max_attempts`.
//!
//! Delivery is at least once: a worker that dies mid-job loses its lease and
//! another worker takes the job over when the lease runs out, so handlers
//! must be idempotent. On shutdown a worker stops between jobs (or abandons
//! the one in hand) and gives its leases back without counting the attempt.
//! This module knows the [`Store`] trait and nothing of HTTP.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::QueueSettings;
use crate::domain::MessageId;
use crate::metrics as m;
use crate::store::{
    Job, JobFailure, LeaseRequest, Store, StoreError, JOB_ENRICH_DECISION, JOB_INBOUND_MESSAGE,
};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth trying again later (a model busy, a store hiccup).
    #[error("{0}")]
    Retryable(String),
    /// Will never succeed; the job goes straight to the dead-letter state.
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

/// What runs a leased job. Must be idempotent: a job can run more than once.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn handle(&self, job: &Job) -> Result<(), JobError>;
}

/// The handler used until the reply pipeline is plugged in: it checks the
/// job names a message and records that the message left the queue.
pub struct MarkProcessed {
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl JobHandler for MarkProcessed {
    async fn handle(&self, job: &Job) -> Result<(), JobError> {
        if job.kind == JOB_ENRICH_DECISION {
            // Follow-ups need the chat model; without the pipeline there is
            // nothing to add.
            return Ok(());
        }
        if job.kind != JOB_INBOUND_MESSAGE {
            return Err(JobError::Permanent(format!(
                "unknown job kind {:?}",
                job.kind
            )));
        }
        let message: MessageId = job
            .payload
            .get("message_id")
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| JobError::Permanent("payload has no valid message_id".into()))?;
        self.store.mark_processed(message).await?;
        Ok(())
    }
}

/// How often finished jobs are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

async fn prune_done_jobs(store: Arc<dyn Store>, hours: u64, cancel: CancellationToken) {
    loop {
        let before = Utc::now() - chrono::Duration::hours(hours.min(1_000_000) as i64);
        match store.prune_done_jobs(before).await {
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

/// Workers pulling from the store's job table.
#[derive(Clone)]
pub struct Queue {
    store: Arc<dyn Store>,
    handler: Arc<dyn JobHandler>,
    settings: QueueSettings,
    wake: Arc<Notify>,
}

impl Queue {
    pub fn new(
        store: Arc<dyn Store>,
        handler: Arc<dyn JobHandler>,
        settings: QueueSettings,
    ) -> Queue {
        Queue {
            store,
            handler,
            settings,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Tells an idle worker that new work has been committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the workers; they run until `cancel` fires, then release their
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
        for index in 0..self.settings.workers {
            let worker = self.clone();
            let owner = format!("{process}-w{index}");
            let cancel = cancel.clone();
            set.spawn(async move { worker.run_worker(owner, index == 0, cancel).await });
        }
        set
    }

    /// A worker leases buyer messages; the `background` one also takes
    /// follow-ups (after any waiting message), so at most one follow-up
    /// runs at a time and the other workers stay free for buyers.
    async fn run_worker(self, owner: String, background: bool, cancel: CancellationToken) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        let lease = chrono::Duration::seconds(self.settings.lease_secs as i64);
        while !cancel.is_cancelled() {
            let leased = self
                .store
                .lease_jobs(LeaseRequest {
                    owner: &owner,
                    limit: 1,
                    lease,
                    kinds: (!background).then_some(&[JOB_INBOUND_MESSAGE][..]),
                })
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
                let span = tracing::info_span!(
                    "job", id = %job.id, kind = %job.kind, attempt = job.attempts
                );
                tokio::select! {
                    _ = self.run_job(&owner, &job).instrument(span) => {}
                    _ = cancel.cancelled() => {
                        tracing::info!(job = %job.id, "shutting down; job handed back to the queue");
                        break;
                    }
                }
            }
        }
        match self.store.release_jobs(&owner).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(worker = %owner, released = n, "released leased jobs"),
            Err(err) => {
                tracing::warn!(error = %err, worker = %owner, "could not release jobs; they return when their lease runs out")
            }
        }
    }

    async fn run_job(&self, owner: &str, job: &Job) {
        let started = std::time::Instant::now();
        let result = self.handler.handle(job).await;
        m::job_duration(&job.kind, started.elapsed());
        let outcome = match result {
            Ok(()) => self.store.complete_job(job.id, owner).await.map(|_| "done"),
            Err(err) => {
                let failure = match &err {
                    JobError::Permanent(_) => JobFailure::Dead,
                    JobError::Retryable(_) if job.attempts >= job.max_attempts => JobFailure::Dead,
                    JobError::Retryable(_) => {
                        let delay = backoff(&self.settings, job.attempts, rand::rng().random());
                        JobFailure::RetryAt(
                            Utc::now()
                                + chrono::Duration::from_std(delay)
                                    .unwrap_or(chrono::Duration::zero()),
                        )
                    }
                };
                tracing::warn!(error = %err, ?failure, "job failed");
                let label = if failure == JobFailure::Dead {
                    "dead"
                } else {
                    "retry"
                };
                self.store
                    .fail_job(job.id, owner, &err.to_string(), failure)
                    .await
                    .map(|_| label)
            }
        };
        match outcome {
            Ok(label) => m::job_finished(&job.kind, label),
            Err(err) => {
                tracing::error!(error = %err, "could not record job outcome; it will be retried after its lease")
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
