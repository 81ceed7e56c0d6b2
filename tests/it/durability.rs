//! Nothing acknowledged is ever lost: across a clean restart, and when the
//! server process is killed with SIGKILL in the middle of a burst.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kedai::domain::ConversationId;
use kedai::store::OpenedStore;
use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::{message, test_settings, Spawn};

#[tokio::test]
async fn a_restart_keeps_every_acknowledged_message_and_pending_job() {
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    spawn.settings.queue.workers = 0;
    spawn.settings.queue.draft_workers = 0;
    let app = spawn.start().await;
    let mut acks = Vec::new();
    for i in 0..20 {
        let response = app
            .ingest(&message(
                "demo-shopee",
                &format!("m-{i}"),
                &format!("b-{}", i % 4),
                "hi",
            ))
            .await;
        assert_eq!(response.status(), 202);
        acks.push(response.json::<Value>().await.unwrap());
    }
    app.stop().await;

    let mut spawn = Spawn::new(dir.path());
    spawn.settings.queue.workers = 0;
    spawn.settings.queue.draft_workers = 0;
    let app = spawn.start().await;
    assert_eq!(app.store.job_counts().await.unwrap().queued, 20);
    for ack in &acks {
        let detail = app
            .get_json(&format!(
                "/api/v1/conversations/{}",
                ack["conversation_id"].as_str().unwrap()
            ))
            .await;
        assert!(detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == ack["message_id"]));
    }
    let list = app.get_json("/api/v1/conversations").await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 4);
    // A redelivery after the restart is still recognised.
    let again: Value = app
        .ingest(&message("demo-shopee", "m-3", "b-3", "hi"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message_id"], acks[3]["message_id"]);
}

/// A `kedai serve` child process on a fresh data dir, with its demo token.
struct ServerProcess {
    child: std::process::Child,
    base: String,
    token: String,
}

fn start_server(data_dir: &std::path::Path) -> ServerProcess {
    // On PostgreSQL runs, the data directory's own database.
    let mut child = crate::helpers::kedai_command(data_dir)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .env("KEDAI__MODELS__FETCH_ON_START", "false")
        .env("KEDAI__MODELS__REQUIRED", "false")
        .env("KEDAI__LOG__FILTER", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kedai binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut base = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        assert!(
            !line.contains("kd_"),
            "the token is never printed where output is not a terminal: {line}"
        );
        if let Some(address) = line.strip_prefix("kedai is listening on ") {
            base = Some(address.trim().to_owned());
            break;
        }
    }
    let token = std::fs::read_to_string(data_dir.join("demo-token"))
        .expect("the first start writes the demo token to its file");
    ServerProcess {
        child,
        base: base.expect("server announces its address"),
        token: token.trim().to_owned(),
    }
}

#[tokio::test]
async fn sigkill_during_a_burst_loses_no_acknowledged_message() {
    let dir = TempDir::new().unwrap();
    let mut server = start_server(dir.path());
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();

    let mut senders = Vec::new();
    for worker in 0..8 {
        let client = client.clone();
        let url = format!("{}/api/v1/messages", server.base);
        let token = server.token.clone();
        let acked = acked.clone();
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let body = message(
                    "demo-web",
                    &format!("w{worker}-{i}"),
                    &format!("buyer-{}", i % 13),
                    "burst",
                );
                let Ok(response) = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                else {
                    break;
                };
                if response.status() != 202 {
                    break;
                }
                let Ok(ack) = response.json::<Value>().await else {
                    break;
                };
                acked.lock().unwrap().push((
                    ack["conversation_id"].as_str().unwrap().to_owned(),
                    ack["message_id"].as_str().unwrap().to_owned(),
                ));
            }
        }));
    }
    // Let the burst build up, then kill the server without warning.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 300 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "the burst acknowledged only {}",
        acked.len()
    );

    let store = OpenedStore::open(
        &test_settings(dir.path()).store,
        kedai::store::Schema::Current,
    )
    .await
    .unwrap();
    let tenant = store.tenant_by_name("demo").await.unwrap().unwrap();
    let mut by_conversation: HashMap<String, HashSet<String>> = HashMap::new();
    for (conversation, message) in &acked {
        by_conversation
            .entry(conversation.clone())
            .or_default()
            .insert(message.clone());
    }
    let mut stored = 0;
    for (conversation, expected) in by_conversation {
        let id: ConversationId = conversation.parse().unwrap();
        let detail = store
            .conversation(tenant.id, id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged conversation {conversation} is missing"));
        let present: HashSet<String> = detail.messages.iter().map(|m| m.id.to_string()).collect();
        let lost: Vec<_> = expected.difference(&present).collect();
        assert!(lost.is_empty(), "acknowledged messages lost: {lost:?}");
        stored += expected.len();
    }
    assert_eq!(stored, acked.len());
    let jobs = store.job_counts().await.unwrap();
    assert!(
        jobs.queued + jobs.leased + jobs.done + jobs.dead >= acked.len() as i64,
        "every acknowledged message has its job: {jobs:?}"
    );
}
