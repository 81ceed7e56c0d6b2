//! The chaos test (issue 12): bursts of buyer messages across many
//! conversations, a few agent replies among them, while the real `kedai
//! serve` binary is killed with SIGKILL several times and restarted, its
//! chat model made slow. It runs on the stand-in models (a plumbing test:
//! what matters is that every message is decided exactly once, in order,
//! never abandoned), then reads the stored records and the servers' JSON
//! logs:
//!
//! - every acknowledged message has exactly one decision; no buyer message
//!   in the store is left undecided, and no buyer job left waiting;
//! - each conversation's layer is that of its latest decided message;
//! - no AI reply follows an agent's reply in a conversation;
//! - no two jobs of one conversation ever ran at the same time.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::SqlitePool;
use tempfile::TempDir;

use crate::helpers::small_intents;

const CONVERSATIONS: usize = 24;
/// What buyers say (the stand-in understands spelling only).
const TEXTS: [&str; 5] = [
    "hello",
    "where is my order",
    "is it waterproof",
    "thanks",
    "refund this order",
];
const SENDERS: usize = 6;
/// How long each server life lasts before it is killed; the last one is
/// stopped by draining, not killed.
const LIVES: [u64; 4] = [4, 3, 3, 3];

/// The server's configuration: stand-in models with a slow chat model,
/// short leases so a killed server's jobs come back quickly, one attempt so
/// every kill meets last attempts (given up on: handed to a human), and JSON
/// logs the test reads.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("kedai.toml");
    let intents = small_intents(dir);
    let text = format!(
        r#"[store]
durability = "normal"
[models]
dir = "{models}"
fetch_on_start = false
embedding = "stand-in:hashing"
chat = "stand-in:echo"
stand_in_delay_ms = 60
[queue]
workers = 4
lease_secs = 2
max_attempts = 1
backoff_base_ms = 50
backoff_max_ms = 400
poll_interval_ms = 50
[kb]
demo_dir = ""
demo_orders = ""
[pipeline]
intents_dir = "{intents}"
sentiment_dir = ""
exemplars_poll_secs = 0
[log]
format = "json"
filter = "warn,kedai::queue=info"
"#,
        models = dir.join("models").display(),
        intents = intents.display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

struct Server {
    child: Child,
    base: String,
    token: Option<String>,
}

fn start(dir: &Path, life: usize) -> Server {
    let log = std::fs::File::create(dir.join(format!("server-{life}.log"))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kedai"))
        .arg("--config")
        .arg(dir.join("kedai.toml"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("kedai serve starts");
    let stdout = child.stdout.take().unwrap();
    let mut base = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(address) = line.strip_prefix("kedai is listening on ") {
            base = Some(address.trim().to_owned());
            break;
        }
    }
    // The first start writes the demo tenant's token to a private file.
    let token = std::fs::read_to_string(dir.join("data").join("demo-token"))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    Server {
        child,
        base: base.expect("the server announces its address"),
        token,
    }
}

/// What the clients saw acknowledged.
#[derive(Default)]
struct Acked {
    messages: HashSet<String>,
    conversations: HashSet<String>,
    agent_replies: usize,
}

/// Sends each of its buyers' messages until acknowledged, in bursts, like a
/// marketplace redelivering a webhook until it gets a 2xx.
async fn sender(
    index: usize,
    base: Arc<RwLock<String>>,
    token: String,
    acked: Arc<Mutex<Acked>>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(index as u64);
    let mut sequence = 0;
    while !stop.load(Ordering::SeqCst) {
        for _ in 0..3 {
            let buyer = format!(
                "buyer-{}",
                index + SENDERS * rng.random_range(0..CONVERSATIONS / SENDERS)
            );
            let body = json!({
                "shop": "demo-web",
                "external_id": format!("s{index}-{sequence}"),
                "buyer": {"id": buyer},
                "text": TEXTS[rng.random_range(0..TEXTS.len())],
                "sent_at": chrono::Utc::now().to_rfc3339(),
            });
            loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let url = format!("{}/api/v1/messages", base.read().unwrap());
                let sent = client
                    .post(url)
                    .bearer_auth(&token)
                    .json(&body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                if let Ok(response) = sent {
                    if response.status() == 202 {
                        if let Ok(ack) = response.json::<Value>().await {
                            let mut acked = acked.lock().unwrap();
                            acked
                                .messages
                                .insert(ack["message_id"].as_str().unwrap().into());
                            acked
                                .conversations
                                .insert(ack["conversation_id"].as_str().unwrap().into());
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sequence += 1;
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
}

/// Now and then an agent answers a conversation.
async fn agent(
    base: Arc<RwLock<String>>,
    token: String,
    acked: Arc<Mutex<Acked>>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(99);
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let conversation = {
            let acked = acked.lock().unwrap();
            let all: Vec<&String> = acked.conversations.iter().collect();
            if all.is_empty() {
                continue;
            }
            all[rng.random_range(0..all.len())].clone()
        };
        let url = format!(
            "{}/api/v1/conversations/{conversation}/replies",
            base.read().unwrap()
        );
        let sent = client
            .post(url)
            .bearer_auth(&token)
            .json(
                &json!({"text": "An agent here: let me check that for you.", "author_name": "Sam"}),
            )
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            acked.lock().unwrap().agent_replies += 1;
        }
    }
}

/// Reads a server's JSON log: `job started` / `job ran` pairs must never
/// overlap for one conversation. A killed server's unfinished runs end with
/// it. Returns how many runs the log holds.
fn check_no_concurrent_runs(log: &Path) -> usize {
    let mut running: HashMap<String, String> = HashMap::new();
    let mut runs = 0;
    for line in std::fs::read_to_string(log).unwrap().lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let fields = &event["fields"];
        let conversation = fields["conversation"].as_str().unwrap_or_default();
        let job = fields["job"].as_str().unwrap_or_default().to_owned();
        match fields["message"].as_str() {
            Some("job started") if !conversation.is_empty() => {
                runs += 1;
                if let Some(other) = running.insert(conversation.to_owned(), job.clone()) {
                    panic!(
                        "{}: job {job} of conversation {conversation} started while job {other} \
                         was still running",
                        log.display()
                    );
                }
            }
            Some("job ran") if !conversation.is_empty() => {
                assert_eq!(running.remove(conversation).as_deref(), Some(job.as_str()));
            }
            _ => {}
        }
    }
    runs
}

async fn leased_buyer_jobs(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'inbound_message' AND state = 'leased'",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(0)
}

async fn wait_until_decided(pool: &SqlitePool, deadline: tokio::time::Instant) {
    loop {
        let undecided: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages m WHERE m.direction = 'inbound' \
             AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.message_id = m.id)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'inbound_message' AND state IN ('queued', 'leased')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if undecided == 0 && waiting == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{undecided} messages still undecided, {waiting} buyer jobs waiting"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_bursts_leaves_every_message_decided_once_in_order_and_in_custody() {
    let dir = TempDir::new().unwrap();
    config(dir.path());
    let mut server = start(dir.path(), 0);
    let token = server
        .token
        .clone()
        .expect("the first start writes the demo token");
    let base = Arc::new(RwLock::new(server.base.clone()));
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for index in 0..SENDERS {
        clients.push(tokio::spawn(sender(
            index,
            base.clone(),
            token.clone(),
            acked.clone(),
            stop.clone(),
        )));
    }
    clients.push(tokio::spawn(agent(
        base.clone(),
        token.clone(),
        acked.clone(),
        stop.clone(),
    )));

    let database = dir.path().join("data").join("kedai.sqlite");
    let pool = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(&database)
            .read_only(true),
    )
    .await
    .unwrap();
    for (life, seconds) in LIVES.iter().enumerate() {
        tokio::time::sleep(Duration::from_secs(*seconds)).await;
        if life + 1 == LIVES.len() {
            break;
        }
        // Kill it while it holds a buyer message's job: its last attempt.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline && leased_buyer_jobs(&pool).await == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        server = start(dir.path(), life + 1);
        *base.write().unwrap() = server.base.clone();
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    wait_until_decided(&pool, tokio::time::Instant::now() + Duration::from_secs(90)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.messages.len() >= 50,
        "only {} acknowledged",
        acked.messages.len()
    );
    assert!(
        acked.agent_replies >= 3,
        "only {} agent replies",
        acked.agent_replies
    );

    // Every acknowledged message: stored, and decided exactly once.
    let decided: Vec<(String, i64)> =
        sqlx::query_as("SELECT message_id, COUNT(*) FROM decisions GROUP BY message_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let decided: HashMap<String, i64> = decided.into_iter().collect();
    for message in &acked.messages {
        assert_eq!(decided.get(message), Some(&1), "message {message}");
    }
    let dead_undecided: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs j WHERE j.kind = 'inbound_message' AND j.state = 'dead' \
         AND NOT EXISTS (SELECT 1 FROM decisions d \
                         WHERE d.message_id = json_extract(j.payload, '$.message_id'))",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dead_undecided, 0, "no silent dead letters");

    // Each conversation's layer is its latest decided message's.
    let stale: Vec<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT c.id, c.layer, (SELECT d.layer FROM decisions d JOIN messages m ON m.id = d.message_id \
                                 WHERE d.conversation_id = c.id ORDER BY m.seq DESC LIMIT 1) AS latest \
         FROM conversations c",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let stale: Vec<_> = stale
        .into_iter()
        .filter(|(_, layer, latest)| layer != latest)
        .collect();
    assert!(
        stale.is_empty(),
        "layers older than the latest decision: {stale:?}"
    );

    // No AI reply after an agent's.
    let after_agent: Vec<(String, i64)> = sqlx::query_as(
        "SELECT ai.conversation_id, ai.seq FROM messages ai \
         WHERE ai.author = 'ai' AND ai.direction = 'outbound' AND EXISTS ( \
           SELECT 1 FROM messages agent WHERE agent.conversation_id = ai.conversation_id \
             AND agent.author = 'agent' AND agent.direction = 'outbound' AND agent.seq < ai.seq)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        after_agent.is_empty(),
        "AI replies after an agent's: {after_agent:?}"
    );
    let agent_replies: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages WHERE author = 'agent' AND direction = 'outbound'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(agent_replies >= acked.agent_replies as i64);

    // No conversation's jobs ran at once, in any of the servers' lives.
    let runs: usize = (0..LIVES.len())
        .map(|life| check_no_concurrent_runs(&dir.path().join(format!("server-{life}.log"))))
        .sum();
    let messages: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE direction = 'inbound'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        runs as i64 >= messages,
        "{runs} job runs logged for {messages} messages"
    );
    let outcomes: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT state, give_up, COUNT(*) FROM jobs GROUP BY state, give_up ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let killed_mid_job = outcomes
        .iter()
        .find(|(state, cause, _)| state == "dead" && cause.as_deref() == Some("lease_expired"))
        .map_or(0, |(_, _, n)| *n);
    assert!(
        killed_mid_job >= 1,
        "no kill met a job in hand: {outcomes:?}"
    );
    let layers: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT layer, action, COUNT(*) FROM decisions GROUP BY layer, action ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    eprintln!(
        "chaos: {} messages acknowledged ({messages} stored) in {} conversations, {} agent \
         replies, {runs} job runs over {} server lives; jobs by state and give-up cause: \
         {outcomes:?}; decisions by layer and action: {layers:?}",
        acked.messages.len(),
        acked.conversations.len(),
        acked.agent_replies,
        LIVES.len()
    );
    pool.close().await;
}
