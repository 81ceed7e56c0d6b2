//! The durable job queue behind ingest: retries, giving up (never a silent
//! dead letter), lease renewal, one job per conversation in message order,
//! supervision, handing leases back on shutdown, and messages waiting while
//! the models are missing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kedai::http::ModelReadiness;
use kedai::queue::{Handled, JobError, JobHandler};
use kedai::store::{GiveUp, GiveUpCause, Job, JobCounts, Store};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{eventually, message, spawn_app, Spawn, TestApp};

async fn wait_for_counts(app: &TestApp, what: &str, check: impl Fn(JobCounts) -> bool) {
    let store = app.store.clone();
    let check = &check;
    eventually(Duration::from_secs(20), what, || {
        let store = store.clone();
        async move { check(store.job_counts().await.unwrap()) }
    })
    .await;
}

/// A buyer message sent `seconds` after a fixed instant.
fn message_at(external_id: &str, buyer: &str, seconds: i64) -> Value {
    let sent = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap()
        + chrono::Duration::seconds(seconds);
    json!({
        "shop": "demo-web",
        "external_id": external_id,
        "buyer": {"id": buyer},
        "text": format!("message {external_id}"),
        "sent_at": sent.to_rfc3339(),
    })
}

/// Fails with a retryable error a given number of times, then succeeds;
/// remembers every give-up.
#[derive(Default)]
struct Flaky {
    failures_left: AtomicU32,
    calls: AtomicU32,
    given_up: Mutex<Vec<GiveUp>>,
}

impl Flaky {
    fn failing(times: u32) -> Arc<Flaky> {
        Arc::new(Flaky {
            failures_left: AtomicU32::new(times),
            ..Flaky::default()
        })
    }
}

#[async_trait]
impl JobHandler for Flaky {
    async fn handle(&self, _job: &Job) -> Result<Handled, JobError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.failures_left.load(Ordering::SeqCst);
        if left > 0 {
            self.failures_left.store(left - 1, Ordering::SeqCst);
            return Err(JobError::Retryable("model busy".into()));
        }
        Ok(Handled::Done)
    }

    async fn give_up(&self, _job: &Job, why: &GiveUp) -> Result<(), JobError> {
        self.given_up.lock().unwrap().push(why.clone());
        Ok(())
    }
}

fn spawn_with(dir: &TempDir, handler: Arc<dyn JobHandler>) -> Spawn {
    let mut spawn = Spawn::new(dir.path());
    spawn.handler = Some(handler);
    spawn
}

#[tokio::test]
async fn failed_jobs_are_retried_with_backoff_then_succeed() {
    let dir = TempDir::new().unwrap();
    let handler = Flaky::failing(2);
    let app = spawn_with(&dir, handler.clone()).start().await;
    app.ingest(&message("demo-web", "m", "b", "hi")).await;
    wait_for_counts(&app, "job done after retries", |c| c.done == 1).await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3);
    assert!(handler.given_up.lock().unwrap().is_empty());
}

#[tokio::test]
async fn jobs_that_keep_failing_are_given_up_on_never_silently_dead() {
    let dir = TempDir::new().unwrap();
    let handler = Flaky::failing(u32::MAX);
    let mut spawn = spawn_with(&dir, handler.clone());
    spawn.settings.queue.max_attempts = 3;
    let app = spawn.start().await;
    app.ingest(&message("demo-web", "m", "b", "hi")).await;
    wait_for_counts(&app, "job dead", |c| c.dead == 1).await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3);
    let given_up = handler.given_up.lock().unwrap().clone();
    assert_eq!(given_up.len(), 1, "the give-up hook ran once: {given_up:?}");
    assert_eq!(given_up[0].cause, GiveUpCause::Failed);
    assert_eq!(given_up[0].detail, "model busy");
    let report: Value = app.get_as_operator("/readyz").await.json().await.unwrap();
    assert_eq!(report["queue"]["dead"], 1);
}

/// Never finishes: the job stays leased until shutdown (or a kill).
#[derive(Default)]
struct Stuck {
    given_up: Mutex<Vec<GiveUp>>,
}

#[async_trait]
impl JobHandler for Stuck {
    async fn handle(&self, _job: &Job) -> Result<Handled, JobError> {
        std::future::pending().await
    }

    async fn give_up(&self, _job: &Job, why: &GiveUp) -> Result<(), JobError> {
        self.given_up.lock().unwrap().push(why.clone());
        Ok(())
    }
}

#[tokio::test]
async fn shutdown_hands_leased_jobs_back_without_counting_the_attempt() {
    let dir = TempDir::new().unwrap();
    let app = spawn_with(&dir, Arc::new(Stuck::default())).start().await;
    app.ingest(&message("demo-web", "m", "b", "hi")).await;
    wait_for_counts(&app, "job leased", |c| c.leased == 1).await;
    app.stop().await;
    let store = kedai::store::OpenedStore::open(
        &crate::helpers::test_settings(dir.path()).store,
        kedai::store::Schema::Current,
    )
    .await
    .unwrap();
    let counts = store.job_counts().await.unwrap();
    assert_eq!((counts.queued, counts.leased), (1, 0));
    store.close().await;

    // The next start picks it up and processes it.
    let app = spawn_with(&dir, Flaky::failing(0)).start().await;
    wait_for_counts(&app, "job done after restart", |c| c.done == 1).await;
}

#[tokio::test]
async fn m2_a_kill_on_the_last_attempt_ends_in_the_give_up_hook_not_a_dead_row() {
    let dir = TempDir::new().unwrap();
    let mut spawn = spawn_with(&dir, Arc::new(Stuck::default()));
    spawn.settings.queue.max_attempts = 1;
    spawn.settings.queue.lease_secs = 2;
    let app = spawn.start().await;
    app.ingest(&message("demo-web", "m", "b", "hi")).await;
    wait_for_counts(&app, "job leased", |c| c.leased == 1).await;
    app.kill().await;

    let handler = Arc::new(Stuck::default());
    let mut spawn = spawn_with(&dir, handler.clone());
    spawn.settings.queue.lease_secs = 2;
    let app = spawn.start().await;
    wait_for_counts(&app, "job given up on after its lease ran out", |c| {
        c.dead == 1
    })
    .await;
    let given_up = handler.given_up.lock().unwrap().clone();
    assert_eq!(given_up.len(), 1, "{given_up:?}");
    assert_eq!(given_up[0].cause, GiveUpCause::LeaseExpired);
}

/// Takes longer than several leases.
#[derive(Default)]
struct Slow {
    calls: AtomicU32,
}

#[async_trait]
impl JobHandler for Slow {
    async fn handle(&self, _job: &Job) -> Result<Handled, JobError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(Handled::Done)
    }

    async fn give_up(&self, _job: &Job, _why: &GiveUp) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test]
async fn m2_a_job_slower_than_its_lease_keeps_it_and_runs_once() {
    let dir = TempDir::new().unwrap();
    let handler = Arc::new(Slow::default());
    let mut spawn = spawn_with(&dir, handler.clone());
    spawn.settings.queue.lease_secs = 2;
    spawn.settings.queue.max_attempts = 1;
    let app = spawn.start().await;
    app.ingest(&message("demo-web", "m", "b", "hi")).await;
    wait_for_counts(&app, "slow job done", |c| c.done == 1).await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1, "never taken over");
}

/// Has its lease taken away mid-run (as when this process stalled past its
/// lease and another worker took the job over).
struct Robbed {
    database: std::path::PathBuf,
    finished: AtomicBool,
}

#[async_trait]
impl JobHandler for Robbed {
    async fn handle(&self, job: &Job) -> Result<Handled, JobError> {
        let dir = self.database.parent().unwrap();
        match crate::helpers::postgres_for(dir) {
            Some(url) => {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                sqlx::query("UPDATE jobs SET lease_owner = 'another-worker' WHERE id = $1")
                    .bind(job.id.to_string())
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&self.database);
                let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
                sqlx::query("UPDATE jobs SET lease_owner = 'another-worker' WHERE id = ?")
                    .bind(job.id.to_string())
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        self.finished.store(true, Ordering::SeqCst);
        Ok(Handled::Done)
    }

    async fn give_up(&self, _job: &Job, _why: &GiveUp) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test]
async fn m2_a_run_that_lost_its_lease_stops_and_records_nothing() {
    let dir = TempDir::new().unwrap();
    let handler = Arc::new(Robbed {
        database: dir.path().join("kedai.sqlite"),
        finished: AtomicBool::new(false),
    });
    let mut spawn = spawn_with(&dir, handler.clone());
    spawn.settings.queue.lease_secs = 2;
    let app = spawn.start().await;
    let before = crate::helpers::without_instance(
        &app.get_as_operator("/metrics").await.text().await.unwrap(),
    );
    assert!(!before.contains("kedai_job_leases_lost_total{kind=\"inbound_message\"} 1"));
    app.ingest(&message("demo-web", "m", "b", "hi")).await;
    let client = app.client.clone();
    let url = app.url("/metrics");
    let operator = app.operator.clone();
    eventually(Duration::from_secs(20), "the lost lease noticed", || {
        let (client, url, operator) = (client.clone(), url.clone(), operator.clone());
        async move {
            let text = client
                .get(&url)
                .bearer_auth(&operator)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            crate::helpers::without_instance(&text)
                .contains("kedai_job_leases_lost_total{kind=\"inbound_message\"}")
        }
    })
    .await;
    let counts = app.store.job_counts().await.unwrap();
    assert_eq!(
        (counts.leased, counts.done),
        (1, 0),
        "still the other worker's"
    );
    assert!(
        !handler.finished.load(Ordering::SeqCst),
        "the run was stopped"
    );
}

/// Panics on its first call.
#[derive(Default)]
struct PanicsOnce {
    calls: AtomicU32,
}

#[async_trait]
impl JobHandler for PanicsOnce {
    async fn handle(&self, _job: &Job) -> Result<Handled, JobError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("poison message");
        }
        Ok(Handled::Done)
    }

    async fn give_up(&self, _job: &Job, _why: &GiveUp) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test]
async fn l3_a_panicking_handler_fails_its_job_and_the_worker_lives_on() {
    let dir = TempDir::new().unwrap();
    let handler = Arc::new(PanicsOnce::default());
    let mut spawn = spawn_with(&dir, handler.clone());
    spawn.settings.queue.workers = 1;
    spawn.settings.queue.draft_workers = 0;
    let app = spawn.start().await;
    app.ingest(&message("demo-web", "m-1", "b", "hi")).await;
    wait_for_counts(&app, "the job retried after the panic", |c| c.done == 1).await;
    app.ingest(&message("demo-web", "m-2", "c", "hi")).await;
    wait_for_counts(&app, "the same worker takes the next job", |c| c.done == 2).await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3);
    let report = app
        .get_as_operator("/readyz")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(report["workers"]["running"], 1, "{report}");
    assert_eq!(report["workers"]["restarts"], 0);
    let metrics = crate::helpers::without_instance(
        &app.get_as_operator("/metrics").await.text().await.unwrap(),
    );
    assert!(
        metrics.contains("kedai_job_panics_total{kind=\"inbound_message\"}"),
        "{metrics}"
    );
}

/// Records when each job of each conversation ran, sleeping a while in
/// conversation "slow".
struct Recorder {
    store: Mutex<Option<Arc<dyn Store>>>,
    running: Mutex<HashMap<String, u32>>,
    overlaps: AtomicU32,
    order: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl JobHandler for Recorder {
    async fn handle(&self, job: &Job) -> Result<Handled, JobError> {
        let conversation = job.conversation_id.unwrap().to_string();
        {
            let mut running = self.running.lock().unwrap();
            let now = running.entry(conversation.clone()).or_default();
            *now += 1;
            if *now > 1 {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
        }
        let store = self.store.lock().unwrap().clone().unwrap();
        let message = job.payload["message_id"].as_str().unwrap().parse().unwrap();
        let detail = store
            .conversation(job.tenant_id.unwrap(), job.conversation_id.unwrap())
            .await
            .unwrap()
            .unwrap();
        let text = detail
            .messages
            .iter()
            .find(|m| m.id == message)
            .map(|m| m.text.as_str().to_owned())
            .unwrap();
        let pause = if detail.buyer.platform_buyer_id == "slow" {
            300
        } else {
            10
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        self.order
            .lock()
            .unwrap()
            .push((detail.buyer.platform_buyer_id.clone(), text));
        *self.running.lock().unwrap().get_mut(&conversation).unwrap() -= 1;
        Ok(Handled::Done)
    }

    async fn give_up(&self, _job: &Job, _why: &GiveUp) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test]
async fn m3_a_conversations_messages_run_one_at_a_time_in_sent_order_without_blocking_others() {
    let dir = TempDir::new().unwrap();
    let handler = Arc::new(Recorder {
        store: Mutex::new(None),
        running: Mutex::new(HashMap::new()),
        overlaps: AtomicU32::new(0),
        order: Mutex::new(Vec::new()),
    });
    // Each buyer's messages arrive in reverse of the order they were sent,
    // all before processing starts (a server without a pipeline).
    let waiting = Spawn::new(dir.path()).start().await;
    for buyer in ["slow", "a", "b"] {
        for i in (0..6).rev() {
            let response = waiting
                .ingest(&message_at(&format!("{buyer}-{i}"), buyer, i))
                .await;
            assert_eq!(response.status(), 202);
        }
    }
    waiting.stop().await;
    let mut spawn = spawn_with(&dir, handler.clone());
    spawn.settings.queue.workers = 4;
    let app = spawn.start().await;
    *handler.store.lock().unwrap() = Some(app.store.clone());
    wait_for_counts(&app, "every message processed", |c| c.done == 18).await;
    assert_eq!(
        handler.overlaps.load(Ordering::SeqCst),
        0,
        "never two at once"
    );
    let order = handler.order.lock().unwrap().clone();
    for buyer in ["slow", "a", "b"] {
        let texts: Vec<&str> = order
            .iter()
            .filter(|(b, _)| b == buyer)
            .map(|(_, t)| t.as_str())
            .collect();
        let expected: Vec<String> = (0..6).map(|i| format!("message {buyer}-{i}")).collect();
        assert_eq!(texts, expected, "{buyer}'s messages in sent order");
    }
    let slow_done = order.iter().rposition(|(b, _)| b == "slow").unwrap();
    let others_done = order.iter().rposition(|(b, _)| b != "slow").unwrap();
    assert!(
        others_done < slow_done,
        "the busy conversation held nobody else up: {order:?}"
    );
}

#[tokio::test]
async fn m4_without_a_pipeline_messages_wait_in_the_queue_and_readyz_says_so() {
    let (app, _dir) = spawn_app().await;
    for i in 0..3 {
        let response = app
            .ingest(&message("demo-web", &format!("m-{i}"), "b", "hi"))
            .await;
        assert_eq!(response.status(), 202);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = app
        .get_as_operator("/readyz")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(report["queue"]["queued"], 3, "{report}");
    assert_eq!(report["queue"]["done"], 0, "nothing consumed");
    assert_eq!(report["workers"]["processing"], false);
    let metrics = crate::helpers::without_instance(
        &app.get_as_operator("/metrics").await.text().await.unwrap(),
    );
    assert!(
        metrics.contains("kedai_queue_jobs{state=\"queued\"} 3"),
        "{metrics}"
    );
}

/// A stand-in server started as if its models had failed to fetch: it
/// finds them on its next check.
fn models_arrive_later(dir: &TempDir) -> Spawn {
    let mut spawn = Spawn::stand_in(dir.path());
    spawn.models = ModelReadiness::Unavailable("the fetch failed".into());
    spawn.settings.models.recheck_secs = 1;
    spawn
}

async fn decisions_of(app: &TestApp, conversation: &str) -> Vec<Value> {
    let detail = app
        .get_json(&format!("/api/v1/conversations/{conversation}"))
        .await;
    detail["decisions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn m4_messages_that_waited_for_the_models_are_decided_once_they_arrive() {
    let dir = TempDir::new().unwrap();
    let app = models_arrive_later(&dir).start().await;
    let ack: Value = app
        .ingest(&message("demo-web", "m-1", "b", "hello"))
        .await
        .json()
        .await
        .unwrap();
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), 503, "not ready without the models");
    let conversation = ack["conversation_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while decisions_of(&app, &conversation).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never decided");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report: Value = app.get_as_operator("/readyz").await.json().await.unwrap();
    assert_eq!(report["workers"]["processing"], true, "{report}");
    assert_eq!(report["models"]["ok"], true, "{report}");
}

#[tokio::test]
async fn m4_a_message_that_waited_too_long_goes_to_a_human_not_a_late_answer() {
    let dir = TempDir::new().unwrap();
    let mut spawn = models_arrive_later(&dir);
    spawn.settings.queue.max_message_age_secs = 1;
    spawn.settings.models.recheck_secs = 3;
    let app = spawn.start().await;
    let ack: Value = app
        .ingest(&message("demo-web", "m-1", "b", "hello"))
        .await
        .json()
        .await
        .unwrap();
    let conversation = ack["conversation_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let decisions = loop {
        let decisions = decisions_of(&app, &conversation).await;
        if !decisions.is_empty() {
            break decisions;
        }
        assert!(tokio::time::Instant::now() < deadline, "never decided");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(decisions[0]["layer"], 3, "{decisions:?}");
    assert_eq!(decisions[0]["action"], "handoff");
    let error = decisions[0]["trace"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("too_old"), "{error}");
}

/// Sends the first message it sees to the draft lane, where it waits
/// until released, as a draft waits for the chat model; everything else is
/// done at once.
#[derive(Default)]
struct Laned {
    release: AtomicBool,
    moved: AtomicBool,
    drafted: AtomicU32,
    fast: AtomicU32,
}

#[async_trait]
impl JobHandler for Laned {
    async fn handle(&self, job: &Job) -> Result<Handled, JobError> {
        let wants_draft =
            job.lane == kedai::store::JobLane::Fast && !self.moved.swap(true, Ordering::SeqCst);
        match job.lane {
            kedai::store::JobLane::Fast if wants_draft => {
                Ok(Handled::ToLane(kedai::store::JobLane::Draft))
            }
            kedai::store::JobLane::Fast => {
                self.fast.fetch_add(1, Ordering::SeqCst);
                Ok(Handled::Done)
            }
            kedai::store::JobLane::Draft => {
                while !self.release.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.drafted.fetch_add(1, Ordering::SeqCst);
                Ok(Handled::Done)
            }
        }
    }

    async fn give_up(&self, _job: &Job, _why: &GiveUp) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test]
async fn messages_answered_without_the_chat_model_do_not_wait_behind_drafts() {
    let dir = TempDir::new().unwrap();
    let handler = Arc::new(Laned::default());
    let mut spawn = spawn_with(&dir, handler.clone());
    spawn.settings.queue.workers = 1;
    spawn.settings.queue.draft_workers = 1;
    let app = spawn.start().await;
    // The first message goes to the draft lane and holds its one worker;
    // the one fast worker goes on with the others.
    app.ingest(&message("demo-web", "d-1", "slow", "draft"))
        .await;
    eventually(Duration::from_secs(20), "the first job moved", || async {
        app.store.job_counts().await.unwrap().leased == 1
            && handler.fast.load(Ordering::SeqCst) == 0
    })
    .await;
    for i in 0..5 {
        app.ingest(&message(
            "demo-web",
            &format!("f-{i}"),
            &format!("b{i}"),
            "hi",
        ))
        .await;
    }
    wait_for_counts(&app, "the fast lane's five done", |c| c.done == 5).await;
    assert_eq!(
        handler.drafted.load(Ordering::SeqCst),
        0,
        "the draft still waits"
    );
    let report = app
        .get_as_operator("/readyz")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(report["workers"]["configured"], 2, "{report}");
    handler.release.store(true, Ordering::SeqCst);
    wait_for_counts(&app, "the draft done", |c| c.done == 6 && c.leased == 0).await;
    assert_eq!(handler.drafted.load(Ordering::SeqCst), 1);
}
