//! The durable job queue behind ingest: processing, retries, dead letters,
//! and handing leases back on shutdown.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kedai::queue::{JobError, JobHandler};
use kedai::store::Job;
use tempfile::TempDir;

use crate::helpers::{eventually, message, spawn_app, Spawn};

#[tokio::test]
async fn every_ingested_message_is_processed_once_by_the_default_handler() {
    let (app, _dir) = spawn_app().await;
    for i in 0..5 {
        app.ingest(&message("demo-web", &format!("m-{i}"), "b", "hi"))
            .await;
    }
    let store = app.store.clone();
    eventually(Duration::from_secs(10), "five jobs done", || {
        let store = store.clone();
        async move { store.job_counts().await.unwrap().done == 5 }
    })
    .await;
    let counts = app.store.job_counts().await.unwrap();
    assert_eq!((counts.queued, counts.leased, counts.dead), (0, 0, 0));
}

/// Fails with a retryable error a given number of times, then succeeds.
struct Flaky {
    failures_left: AtomicU32,
    calls: AtomicU32,
}

#[async_trait]
impl JobHandler for Flaky {
    async fn handle(&self, _job: &Job) -> Result<(), JobError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.failures_left.load(Ordering::SeqCst);
        if left > 0 {
            self.failures_left.store(left - 1, Ordering::SeqCst);
            return Err(JobError::Retryable("model busy".into()));
        }
        Ok(())
    }
}

#[tokio::test]
async fn failed_jobs_are_retried_with_backoff_then_succeed() {
    let dir = TempDir::new().unwrap();
    let handler = Arc::new(Flaky {
        failures_left: AtomicU32::new(2),
        calls: AtomicU32::new(0),
    });
    let mut spawn = Spawn::new(dir.path());
    spawn.handler = Some(handler.clone());
    let app = spawn.start().await;
    app.ingest(&message("demo-web", "m", "b", "hi")).await;
    let store = app.store.clone();
    eventually(Duration::from_secs(10), "job done after retries", || {
        let store = store.clone();
        async move { store.job_counts().await.unwrap().done == 1 }
    })
    .await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn jobs_that_keep_failing_end_in_the_dead_letter_state() {
    let dir = TempDir::new().unwrap();
    let handler = Arc::new(Flaky {
        failures_left: AtomicU32::new(u32::MAX),
        calls: AtomicU32::new(0),
    });
    let mut spawn = Spawn::new(dir.path());
    spawn.settings.queue.max_attempts = 3;
    spawn.handler = Some(handler.clone());
    let app = spawn.start().await;
    app.ingest(&message("demo-web", "m", "b", "hi")).await;
    let store = app.store.clone();
    eventually(Duration::from_secs(10), "job dead", || {
        let store = store.clone();
        async move { store.job_counts().await.unwrap().dead == 1 }
    })
    .await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3);
    let report: serde_json::Value = app.get_as_operator("/readyz").await.json().await.unwrap();
    assert_eq!(report["queue"]["dead"], 1);
}

/// Never finishes: the job stays leased until shutdown.
struct Stuck;

#[async_trait]
impl JobHandler for Stuck {
    async fn handle(&self, _job: &Job) -> Result<(), JobError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn shutdown_hands_leased_jobs_back_without_counting_the_attempt() {
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    spawn.handler = Some(Arc::new(Stuck));
    let app = spawn.start().await;
    app.ingest(&message("demo-web", "m", "b", "hi")).await;
    let store = app.store.clone();
    eventually(Duration::from_secs(10), "job leased", || {
        let store = store.clone();
        async move { store.job_counts().await.unwrap().leased == 1 }
    })
    .await;
    app.stop().await;
    let counts = store.job_counts().await.unwrap();
    assert_eq!((counts.queued, counts.leased), (1, 0));

    // The next start picks it up and processes it.
    let app = Spawn::new(dir.path()).start().await;
    let store = app.store.clone();
    eventually(Duration::from_secs(10), "job done after restart", || {
        let store = store.clone();
        async move { store.job_counts().await.unwrap().done == 1 }
    })
    .await;
}
