//! The replica kill test (issue 15): three real `kedai serve` processes,
//! each on a port and data directory of its own, share one PostgreSQL
//! database. A burst of signed TikTok Shop pushes (5,000 messages across
//! 200 conversations, some delivered twice at once to two replicas) is
//! spread over the live replicas while one replica after another is killed
//! with SIGKILL and restarted; agents answer now and then through the API.
//! Replies leave through the outbox to a fake TikTok Shop send API in this
//! process, which counts every delivery and can list what it received (the
//! outbox's in-doubt check). Then it reads the database and the replicas'
//! JSON logs:
//!
//! - every acknowledged push is stored once, and every buyer message is
//!   decided exactly once (no buyer job left waiting);
//! - no two jobs of one conversation ever ran at the same time, on any
//!   replica, in any life (a killed replica's runs end at its kill);
//! - no reply reached the platform twice (one send per idempotency key),
//!   and every reply the outbox calls sent reached it.
//!
//! It runs the stand-in models (a plumbing test) and only on PostgreSQL
//! (`KEDAI_TEST_STORE=postgres`); on SQLite it returns at once, saying so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::PgPool;
use tempfile::TempDir;

use crate::channels::{push, signer, ACCOUNTS};
use crate::helpers::{on_postgres, postgres_for, small_intents};

const REPLICAS: usize = 3;
const CONVERSATIONS: usize = 200;
const MESSAGES: usize = 5_000;
/// Pushes in flight at once (each a sender owning its buyers).
const SENDERS: usize = 20;
/// Share of pushes delivered twice at once, to two replicas.
const DUPLICATE_RATE: f64 = 0.1;
/// A replica is killed this often, one after another, while pushes arrive
/// and until every replica was killed twice.
const KILL_EVERY: Duration = Duration::from_millis(2500);
const MIN_KILLS: usize = 2 * REPLICAS;

/// One message the fake TikTok Shop received.
#[derive(Clone)]
struct Sent {
    thread: String,
    text: String,
    /// kedai's `X-Kedai-Idempotency-Key`: `reply:MESSAGE#PART`.
    key: String,
    at: i64,
}

#[derive(Clone, Default)]
struct FakePlatform {
    sent: Arc<Mutex<Vec<Sent>>>,
}

async fn fake_send(
    State(fake): State<FakePlatform>,
    UrlPath(thread): UrlPath<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let content: Value = serde_json::from_str(body["content"].as_str().unwrap_or("{}")).unwrap();
    let key = headers
        .get("X-Kedai-Idempotency-Key")
        .and_then(|k| k.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut sent = fake.sent.lock().unwrap();
    let id = format!("sent-{}", sent.len() + 1);
    sent.push(Sent {
        thread,
        text: content["content"].as_str().unwrap_or("").to_owned(),
        key,
        at: Utc::now().timestamp(),
    });
    Json(json!({"code": 0, "message": "Success", "data": {"message_id": id}}))
}

/// The thread's messages, newest first, as the seller's: what the outbox
/// asks before resending a reply whose earlier attempt is in doubt.
async fn fake_list(
    State(fake): State<FakePlatform>,
    UrlPath(thread): UrlPath<String>,
) -> Json<Value> {
    let sent = fake.sent.lock().unwrap();
    let mut messages: Vec<Value> = sent
        .iter()
        .enumerate()
        .filter(|(_, s)| s.thread == thread)
        .map(|(i, s)| {
            json!({"message_id": format!("sent-{}", i + 1), "conversation_id": s.thread,
                "type": "TEXT", "content": json!({"content": s.text}).to_string(),
                "create_time": s.at, "is_visible": true,
                "sender": {"im_user_id": "shop", "role": "SHOP"}})
        })
        .collect();
    messages.reverse();
    Json(json!({"code": 0, "message": "Success",
        "data": {"messages": messages, "next_page_token": ""}}))
}

async fn serve_fake() -> (FakePlatform, String) {
    let fake = FakePlatform::default();
    let router = Router::new()
        .route(
            "/customer_service/202309/conversations/{id}/messages",
            post(fake_send).get(fake_list),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (fake, base)
}

/// Every replica's configuration: the shared database and credentials key,
/// stand-in models, short leases so a killed replica's jobs and sends come
/// back quickly, two attempts (a kill may meet a last attempt: handed to a
/// human), and JSON logs with the queue's job events.
fn config(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("kedai.toml");
    let intents = small_intents(dir);
    let text = format!(
        r#"[store]
url = "{url}"
credentials_key_file = "{key}"
read_connections = 8
[models]
dir = "{models}"
fetch_on_start = false
embedding = "stand-in:hashing"
chat = "stand-in:echo"
stand_in_delay_ms = 0
[queue]
workers = 2
lease_secs = 2
max_attempts = 2
backoff_base_ms = 50
backoff_max_ms = 400
poll_interval_ms = 100
[channels]
outbox_poll_ms = 100
send_timeout_secs = 2
outbox_lease_secs = 3
backoff_base_ms = 50
backoff_max_ms = 400
max_attempts = 8
reconcile_on_start = false
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
        key = dir.join("credentials.key").display(),
        models = dir.join("models").display(),
        intents = intents.display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// One life of one replica.
struct Life {
    child: Child,
    base: String,
    log: PathBuf,
    /// When it was killed (or stopped): its unfinished job runs end here.
    ended: Option<DateTime<Utc>>,
}

fn start(dir: &Path, replica: usize, life: usize) -> Life {
    let data = dir.join(format!("replica-{replica}"));
    let log = dir.join(format!("replica-{replica}-life-{life}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_kedai"))
        .arg("--config")
        .arg(dir.join("kedai.toml"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
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
    Life {
        child,
        base: base.unwrap_or_else(|| {
            panic!(
                "replica {replica} announces its address: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        }),
        log,
        ended: None,
    }
}

/// The live replicas' addresses (None while one is down).
type Bases = Arc<RwLock<Vec<Option<String>>>>;

fn live(bases: &Bases, rng: &mut StdRng) -> Option<String> {
    let all: Vec<String> = bases.read().unwrap().iter().flatten().cloned().collect();
    (!all.is_empty()).then(|| all[rng.random_range(0..all.len())].clone())
}

/// Pushes one message until a replica acknowledges it, switching replicas
/// when one does not answer, as a platform redelivers a webhook.
async fn deliver(client: &reqwest::Client, bases: &Bases, body: &str, rng: &mut StdRng) {
    let (platform, ..) = ACCOUNTS[2];
    let signature = signer(platform).sign(body.as_bytes());
    loop {
        if let Some(base) = live(bases, rng) {
            let sent = client
                .post(format!("{base}/webhooks/{platform}"))
                .header("Content-Type", "application/json")
                .header("Authorization", &signature)
                .body(body.to_owned())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if sent.is_ok_and(|r| r.status() == 200) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends the messages of its buyers, each buyer's in order.
async fn sender(index: usize, bases: Bases, acked: Arc<Mutex<HashSet<String>>>) {
    let (platform, account, _) = ACCOUNTS[2];
    let client = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(index as u64);
    let buyers: Vec<usize> = (index..CONVERSATIONS).step_by(SENDERS).collect();
    let per_buyer = MESSAGES / CONVERSATIONS;
    for n in 0..per_buyer {
        for buyer in &buyers {
            let id = format!("m-{buyer}-{n}");
            let text = ["hello", "where is my order", "is it waterproof", "thanks"][n % 4];
            let body = push(
                platform,
                account,
                &id,
                &format!("70788556518116{buyer:04}"),
                &format!("{text} ({n})"),
                Utc::now().timestamp(),
            );
            if rng.random_bool(DUPLICATE_RATE) {
                let mut twin = StdRng::seed_from_u64(rng.random());
                tokio::join!(
                    deliver(&client, &bases, &body, &mut rng),
                    deliver(&client, &bases, &body, &mut twin)
                );
            } else {
                deliver(&client, &bases, &body, &mut rng).await;
            }
            acked.lock().unwrap().insert(id);
        }
    }
}

/// Now and then an agent answers a conversation on a live replica.
async fn agent(bases: Bases, token: String, replies: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(99);
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Some(base) = live(&bases, &mut rng) else {
            continue;
        };
        let Ok(list) = client
            .get(format!("{base}/api/v1/conversations?limit=200"))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        else {
            continue;
        };
        let Ok(list) = list.json::<Value>().await else {
            continue;
        };
        let Some(all) = list["conversations"].as_array().filter(|a| !a.is_empty()) else {
            continue;
        };
        let conversation = all[rng.random_range(0..all.len())]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        n += 1;
        let sent = client
            .post(format!(
                "{base}/api/v1/conversations/{conversation}/replies"
            ))
            .bearer_auth(&token)
            .json(
                &json!({"text": format!("An agent here ({n}): let me check that for you."),
                "external_id": format!("agent-{n}")}),
            )
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            replies.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Waits until every buyer message is decided, no buyer job waits and no
/// reply is still on its way.
async fn wait_until_settled(pool: &PgPool, deadline: tokio::time::Instant) {
    loop {
        let undecided = count(
            pool,
            "SELECT COUNT(*) FROM messages m WHERE m.direction = 'inbound' \
             AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.message_id = m.id)",
        )
        .await;
        let waiting = count(
            pool,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'inbound_message' \
             AND state IN ('queued', 'leased')",
        )
        .await;
        let unsent = count(
            pool,
            "SELECT COUNT(*) FROM outbox WHERE kind = 'reply' AND state IN ('pending', 'sending')",
        )
        .await;
        if undecided == 0 && waiting == 0 && unsent == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{undecided} messages undecided, {waiting} buyer jobs waiting, {unsent} replies unsent"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One job run read from a log: conversation, job, start and end.
struct Run {
    conversation: String,
    job: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// Reads one life's JSON log: `job started` / `job ran` pairs; a run still
/// open when the life ended ends with it.
fn runs_of(life: &Life) -> Vec<Run> {
    let ended = life.ended.expect("every life has ended");
    let mut open: HashMap<String, (String, DateTime<Utc>)> = HashMap::new();
    let mut runs = Vec::new();
    for line in std::fs::read_to_string(&life.log).unwrap().lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let fields = &event["fields"];
        let Some(conversation) = fields["conversation"].as_str().filter(|c| !c.is_empty()) else {
            continue;
        };
        let job = fields["job"].as_str().unwrap_or_default().to_owned();
        let at: DateTime<Utc> = event["timestamp"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{}: an event without a timestamp", life.log.display()));
        match fields["message"].as_str() {
            Some("job started") => {
                if let Some((other, _)) = open.insert(conversation.to_owned(), (job.clone(), at)) {
                    panic!(
                        "{}: job {job} of conversation {conversation} started while job {other} \
                         was still running",
                        life.log.display()
                    );
                }
            }
            Some("job ran") => {
                let (started, start) = open.remove(conversation).expect("a started run");
                assert_eq!(started, job);
                runs.push(Run {
                    conversation: conversation.to_owned(),
                    job,
                    start,
                    end: at,
                });
            }
            _ => {}
        }
    }
    runs.extend(open.into_iter().map(|(conversation, (job, start))| Run {
        conversation,
        job,
        start,
        end: ended,
    }));
    runs
}

/// No two runs of one conversation overlap, across every replica's lives.
fn check_no_concurrent_runs(lives: &[Life]) -> usize {
    let mut by_conversation: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    let mut total = 0;
    for life in lives {
        for run in runs_of(life) {
            total += 1;
            by_conversation
                .entry(run.conversation.clone())
                .or_default()
                .push(run);
        }
    }
    for (conversation, mut runs) in by_conversation {
        runs.sort_by_key(|r| r.start);
        for pair in runs.windows(2) {
            assert!(
                pair[1].start >= pair[0].end,
                "conversation {conversation}: job {} started at {} while job {} ran until {}",
                pair[1].job,
                pair[1].start,
                pair[0].job,
                pair[0].end
            );
        }
    }
    total
}

fn kill(life: &mut Life) {
    life.child.kill().unwrap();
    life.child.wait().unwrap();
    life.ended = Some(Utc::now());
}

/// Connects the demo TikTok shop to the fake platform, from the command
/// line, as an operator would.
fn connect(dir: &Path, api_base: &str) {
    let (_, account, _) = ACCOUNTS[2];
    let credentials = json!({"app_key": "29a39d", "app_secret": "tiktok-secret",
        "shop_id": account, "shop_cipher": "cipher", "access_token": "tok", "api_base": api_base});
    let mut child = Command::new(env!("CARGO_BIN_EXE_kedai"))
        .arg("--config")
        .arg(dir.join("kedai.toml"))
        .arg("--data-dir")
        .arg(dir.join("replica-0"))
        .args([
            "shop",
            "set",
            "--tenant",
            "demo",
            "--id",
            "demo-tiktok",
            "--credentials",
            "-",
        ])
        .env("KEDAI__LOG__FILTER", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(credentials.to_string().as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "kedai shop set");
}

/// Every acknowledged push stored once, nothing else stored; each AI reply
/// the reply of one decision.
async fn check_messages(pool: &PgPool, acked: &HashSet<String>) {
    assert_eq!(acked.len(), MESSAGES);
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT external_id, COUNT(*) FROM messages WHERE direction = 'inbound' \
         GROUP BY external_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let stored: HashMap<String, i64> = stored.into_iter().collect();
    for id in acked {
        assert_eq!(stored.get(id), Some(&1), "message {id}");
    }
    assert_eq!(stored.len(), MESSAGES, "nothing stored that was not sent");
    // Each AI reply is the reply of one decision (none written twice).
    let stray_ai_replies = count(
        pool,
        "SELECT COUNT(*) FROM messages m WHERE m.author = 'ai' AND m.direction = 'outbound' \
         AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.reply_message_id = m.id)",
    )
    .await;
    assert_eq!(stray_ai_replies, 0, "AI replies that no decision sent");
    let conversations = count(pool, "SELECT COUNT(*) FROM conversations").await;
    assert_eq!(conversations, CONVERSATIONS as i64);
}

/// No reply part reached the platform twice; every part the outbox
/// recorded as sent reached it, and it received nothing else.
async fn check_deliveries(pool: &PgPool, sent: &[Sent]) {
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for s in sent {
        assert!(!s.key.is_empty(), "every send carries its idempotency key");
        *keys.entry(s.key.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = keys.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "replies sent twice: {twice:?}");
    let delivered: Vec<(String, i64)> = sqlx::query_as(
        "SELECT message_id, parts_sent FROM outbox WHERE kind = 'reply' AND state = 'sent'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    // A part recorded as sent reached the platform (an in-doubt part was
    // found there under its first attempt's key); the platform got nothing
    // the outbox does not know as sent.
    let recorded: HashSet<String> = delivered
        .iter()
        .flat_map(|(message, parts)| (0..*parts).map(move |i| format!("reply:{message}#{i}")))
        .collect();
    let unsent: Vec<_> = recorded
        .iter()
        .filter(|k| !keys.contains_key(k.as_str()))
        .collect();
    assert!(
        unsent.is_empty(),
        "recorded as sent, never received: {unsent:?}"
    );
    let unrecorded: Vec<_> = keys.keys().filter(|k| !recorded.contains(**k)).collect();
    assert!(
        unrecorded.is_empty(),
        "received, not recorded as sent: {unrecorded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_replicas_lose_nothing_decide_once_and_never_send_twice() {
    if !on_postgres() {
        eprintln!("replica tests need KEDAI_TEST_STORE=postgres; skipped");
        return;
    }
    let dir = TempDir::new().unwrap();
    let url = postgres_for(dir.path()).unwrap();
    config(dir.path(), &url);
    let (fake, api_base) = serve_fake().await;

    // The first replica seeds the demo tenant; then the shop is connected
    // and the others start.
    let first = start(dir.path(), 0, 0);
    let token = std::fs::read_to_string(dir.path().join("replica-0").join("demo-token"))
        .expect("the first start writes the demo token")
        .trim()
        .to_owned();
    connect(dir.path(), &api_base);
    let mut current = vec![first];
    for replica in 1..REPLICAS {
        current.push(start(dir.path(), replica, 0));
    }
    let bases: Bases = Arc::new(RwLock::new(
        current.iter().map(|l| Some(l.base.clone())).collect(),
    ));
    let pool = PgPool::connect(&url).await.unwrap();

    let started = std::time::Instant::now();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| tokio::spawn(sender(i, bases.clone(), acked.clone())))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let agent_replies = Arc::new(AtomicUsize::new(0));
    let agent = tokio::spawn(agent(
        bases.clone(),
        token,
        agent_replies.clone(),
        stop.clone(),
    ));

    // One replica after another: SIGKILL, then a fresh start on a new port.
    let mut ended = Vec::new();
    let mut kills = 0;
    while kills < MIN_KILLS || senders.iter().any(|s| !s.is_finished()) {
        tokio::time::sleep(KILL_EVERY).await;
        let replica = kills % REPLICAS;
        bases.write().unwrap()[replica] = None;
        kill(&mut current[replica]);
        let next = tokio::task::spawn_blocking({
            let dir = dir.path().to_owned();
            move || start(&dir, replica, kills / REPLICAS + 1)
        })
        .await
        .unwrap();
        ended.push(std::mem::replace(&mut current[replica], next));
        bases.write().unwrap()[replica] = Some(current[replica].base.clone());
        kills += 1;
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let burst = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    agent.await.unwrap();

    wait_until_settled(
        &pool,
        tokio::time::Instant::now() + Duration::from_secs(300),
    )
    .await;
    let settled = started.elapsed();
    for mut life in current {
        kill(&mut life);
        ended.push(life);
    }

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    check_messages(&pool, &acked).await;
    // No conversation's jobs ran at once, on any replica, in any life.
    let runs = check_no_concurrent_runs(&ended);
    assert!(
        runs >= MESSAGES,
        "{runs} job runs logged for {MESSAGES} messages"
    );

    let retaken = count(
        &pool,
        "SELECT COUNT(*) FROM jobs WHERE kind = 'inbound_message' AND attempts > 1",
    )
    .await;
    assert!(retaken >= 1, "no kill met a buyer's job in hand");

    let sent = fake.sent.lock().unwrap().clone();
    check_deliveries(&pool, &sent).await;
    let agent_replies = agent_replies.load(Ordering::SeqCst);
    assert!(agent_replies >= 3, "only {agent_replies} agent replies");
    assert!(!sent.is_empty(), "replies reached the platform");

    let outcomes: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT state, give_up, COUNT(*) FROM jobs GROUP BY state, give_up ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let outbox: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, COUNT(*) FROM outbox WHERE kind = 'reply' GROUP BY state ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    eprintln!(
        "replica kill: {MESSAGES} messages in {CONVERSATIONS} conversations over {REPLICAS} \
         replicas, {kills} kills, {retaken} buyer jobs taken over from a killed replica; burst acknowledged in {:.1} s, settled in {:.1} s; {runs} job \
         runs; {} sends to the platform, \
         {agent_replies} agent replies; jobs by state and give-up cause: {outcomes:?}; replies \
         by state: {outbox:?}",
        burst.as_secs_f64(),
        settled.as_secs_f64(),
        sent.len(),
    );
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    // Each run leaves tens of megabytes (and their WAL) behind otherwise.
    let base = std::env::var("KEDAI_TEST_POSTGRES_URL").unwrap();
    let name = url.rsplit('/').next().unwrap();
    let admin = PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    eprintln!("replica kill: the database held {} MB", size >> 20);
}
