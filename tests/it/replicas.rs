//! Several kedai replicas on one PostgreSQL database, each with a data
//! directory of its own (only the credentials key is shared, as an
//! operator shares it): deliveries spread over replicas are stored once,
//! and a knowledge-base edit made on one replica is searched on another.
//! These run only on PostgreSQL (`KEDAI_TEST_STORE=postgres`); on SQLite
//! they return at once, saying so.

use std::path::Path;
use std::sync::Arc;

use futures::future::join_all;
use kedai::kb::HashingEmbedder;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{message, on_postgres, postgres_for, Spawn, TestApp};

/// `count` replicas on the database of `shared`, each in its own directory
/// under it; the first seeds the demo tenant.
async fn replicas(shared: &Path, count: usize) -> Vec<TestApp> {
    let url = postgres_for(shared).expect("on PostgreSQL");
    let mut apps = Vec::new();
    for i in 0..count {
        let dir = shared.join(format!("replica-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut spawn = Spawn::new(&dir);
        spawn.settings.store.url = kedai::config::StoreUrl(url.clone());
        spawn.settings.store.credentials_key_file = shared
            .join("credentials.key")
            .to_string_lossy()
            .into_owned();
        spawn.kb_embedder = Some(Arc::new(HashingEmbedder::new(256)));
        apps.push(spawn.start().await);
    }
    apps
}

#[tokio::test]
async fn ten_concurrent_deliveries_spread_over_three_replicas_store_it_once() {
    if !on_postgres() {
        eprintln!("replica tests need KEDAI_TEST_STORE=postgres; skipped");
        return;
    }
    let shared = TempDir::new().unwrap();
    let apps = replicas(shared.path(), 3).await;
    let body = message("demo-tiktok", "spread-1", "b-9", "Is this waterproof?");
    let responses = join_all((0..10).map(|i| apps[i % 3].ingest(&body))).await;
    let mut acks = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 202);
        acks.push(response.json::<Value>().await.unwrap());
    }
    let fresh = acks.iter().filter(|a| a["duplicate"] == false).count();
    assert_eq!(
        fresh, 1,
        "exactly one delivery stores the message: {acks:?}"
    );
    assert!(acks
        .iter()
        .all(|a| a["message_id"] == acks[0]["message_id"]));
    for app in &apps {
        let list = app.get_json("/api/v1/conversations").await;
        assert_eq!(list["conversations"].as_array().unwrap().len(), 1);
        assert_eq!(list["conversations"][0]["message_count"], 1);
    }
    let jobs = apps[0].store.job_counts().await.unwrap();
    assert_eq!(
        jobs.queued + jobs.leased + jobs.done + jobs.dead,
        1,
        "{jobs:?}"
    );
    for app in apps {
        app.stop().await;
    }
}

#[tokio::test]
async fn a_kb_edit_on_one_replica_is_found_by_a_search_on_another() {
    if !on_postgres() {
        eprintln!("replica tests need KEDAI_TEST_STORE=postgres; skipped");
        return;
    }
    let shared = TempDir::new().unwrap();
    let apps = replicas(shared.path(), 2).await;
    let search = |app: &TestApp| {
        app.client
            .post(app.url("/api/v1/kb/search"))
            .bearer_auth(&app.token)
            .json(&json!({"query": "gift wrapping", "top_k": 1}))
            .send()
    };
    let before: Value = search(&apps[1]).await.unwrap().json().await.unwrap();
    assert!(before["hits"].as_array().unwrap().is_empty(), "{before}");

    let created = apps[0]
        .client
        .put(apps[0].url("/api/v1/kb/entries/faq/gift-wrap"))
        .bearer_auth(&apps[0].token)
        .json(&json!({"questions": ["Do you offer gift wrapping?"], "answer": "Gift wrapping costs 1 USD.", "lang": "en"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let after: Value = search(&apps[1]).await.unwrap().json().await.unwrap();
    assert_eq!(after["hits"][0]["id"], "gift-wrap", "{after}");
    assert!(after["hits"][0]["text"].as_str().unwrap().contains("1 USD"));
    for app in apps {
        app.stop().await;
    }
}

#[tokio::test]
async fn store_copy_moves_a_sqlite_directory_into_postgres_with_nothing_lost() {
    if !on_postgres() {
        eprintln!("replica tests need KEDAI_TEST_STORE=postgres; skipped");
        return;
    }
    let source = TempDir::new().unwrap();
    let mut spawn = Spawn::new(source.path());
    spawn.settings.store.url = kedai::config::StoreUrl::default();
    let app = spawn.start().await;
    for (id, buyer) in [("c-1", "b-1"), ("c-2", "b-1"), ("c-3", "b-2")] {
        let ack = app
            .ingest(&message("demo-web", id, buyer, "Do you ship to Brazil?"))
            .await;
        assert_eq!(ack.status(), 202);
    }
    app.stop().await;

    let target = TempDir::new().unwrap();
    let url = postgres_for(target.path()).unwrap();
    let copy = |to: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kedai"))
            .arg("--data-dir")
            .arg(source.path())
            .args(["--json", "store", "copy", "--from"])
            .arg(format!("sqlite://{}", source.path().display()))
            .args(["--to", to])
            .env("KEDAI__LOG__FILTER", "warn")
            .output()
            .expect("kedai runs")
    };
    let output = copy(&url);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["rows"]["messages"], 3, "{report}");
    assert_eq!(report["rows"]["conversations"], 2, "{report}");
    assert_eq!(report["rows"]["jobs"], 3, "{report}");
    assert!(
        report["rows"]["audit_log"].as_i64().unwrap() > 0,
        "{report}"
    );

    let again = copy(&url);
    assert!(
        !again.status.success(),
        "a second copy into a database with data is refused"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // A replica on the copy, with the source's key, sees everything.
    let replica_dir = target.path().join("replica");
    let mut spawn = Spawn::new(&replica_dir);
    spawn.settings.store.url = kedai::config::StoreUrl(url);
    spawn.settings.store.credentials_key_file = source
        .path()
        .join("credentials.key")
        .to_string_lossy()
        .into_owned();
    let replica = spawn.start().await;
    let list = replica.get_json("/api/v1/conversations").await;
    let mut counts: Vec<i64> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message_count"].as_i64().unwrap())
        .collect();
    counts.sort();
    assert_eq!(counts, [1, 2], "{list}");
    replica.stop().await;
}

/// A fake TikTok Shop API that counts conversation listings (what a
/// reconciliation pass asks first) and has none to list.
async fn counting_platform() -> (Arc<std::sync::atomic::AtomicUsize>, String) {
    use axum::routing::get;
    let listings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = listings.clone();
    let router = axum::Router::new().route(
        "/customer_service/202309/conversations",
        get(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {
                axum::Json(json!({"code": 0, "message": "Success",
                    "data": {"conversations": [], "next_page_token": ""}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (listings, base)
}

/// Every replica's reconciliation timer fires each second; across the
/// three the platform is asked at most once per second (once per replica
/// per second without the claims).
#[tokio::test]
async fn a_timer_on_three_replicas_does_its_work_once_per_period() {
    if !on_postgres() {
        eprintln!("replica tests need KEDAI_TEST_STORE=postgres; skipped");
        return;
    }
    let (listings, api_base) = counting_platform().await;
    let shared = TempDir::new().unwrap();
    let url = postgres_for(shared.path()).expect("on PostgreSQL");
    let spawn = |i: usize| {
        let dir = shared.path().join(format!("replica-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut spawn = Spawn::new(&dir);
        spawn.settings.store.url = kedai::config::StoreUrl(url.clone());
        spawn.settings.store.credentials_key_file = shared
            .path()
            .join("credentials.key")
            .to_string_lossy()
            .into_owned();
        spawn.settings.channels.reconcile_on_start = false;
        spawn.settings.channels.tiktok.reconcile_interval_secs = 1;
        spawn
    };
    // The shop is connected before the replicas start, so every one of
    // them reconciles it (each reads its shops every 30 s).
    let setup = spawn(0).start().await;
    let (platform, account, _) = crate::channels::ACCOUNTS[2];
    crate::channels::connect(&setup, platform, account, &api_base).await;
    setup.stop().await;
    let mut apps = Vec::new();
    for i in 0..3 {
        apps.push(spawn(i).start().await);
    }
    crate::helpers::eventually(
        std::time::Duration::from_secs(20),
        "a replica reconciles the shop",
        || {
            let listings = listings.clone();
            async move { listings.load(std::sync::atomic::Ordering::SeqCst) > 0 }
        },
    )
    .await;
    let first = listings.load(std::sync::atomic::Ordering::SeqCst);
    let window = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let calls = listings.load(std::sync::atomic::Ordering::SeqCst) - first;
    let periods = window.elapsed().as_secs_f64().ceil() as usize;
    assert!(
        calls <= periods + 1,
        "{calls} reconciliations in {periods} one-second periods over three replicas"
    );
    assert!(calls >= 1, "the timer kept running");
    for app in apps {
        app.stop().await;
    }
}

/// Claims raced from two stores on one database: one wins each period.
#[tokio::test]
async fn concurrent_timer_claims_from_two_stores_are_won_once_per_period() {
    use kedai::store::{PostgresStore, Schema, TimerStore};
    if !on_postgres() {
        eprintln!("replica tests need KEDAI_TEST_STORE=postgres; skipped");
        return;
    }
    let shared = TempDir::new().unwrap();
    let url = kedai::config::StoreUrl(postgres_for(shared.path()).unwrap());
    let mut stores = Vec::new();
    for name in ["a", "b"] {
        let mut settings = kedai::config::Settings::defaults().store;
        settings.data_dir = shared.path().join(name);
        settings.credentials_key_file = shared
            .path()
            .join("credentials.key")
            .to_string_lossy()
            .into_owned();
        stores.push(
            PostgresStore::open(&url, &settings, Schema::Migrate)
                .await
                .unwrap(),
        );
    }
    let race = |name: &'static str, period: std::time::Duration| {
        join_all((0..8).map(|i| stores[i % 2].claim_timer(name, period)))
    };
    let hour = std::time::Duration::from_secs(3600);
    let won: Vec<bool> = race("sweep", hour)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let again: Vec<bool> = race("sweep", hour)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(again.iter().all(|w| !w), "claimed again within the hour");

    let short = std::time::Duration::from_secs(2);
    for round in 0..2 {
        let won: Vec<bool> = race("tick", short)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: {won:?}"
        );
        tokio::time::sleep(short + std::time::Duration::from_millis(50)).await;
    }
    for store in stores {
        store.close().await;
    }
}

/// Workers of two replicas lease one database's jobs at once (SKIP LOCKED,
/// no global lock): no conversation ever has two jobs held at once, and each
/// conversation's messages are taken in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_of_two_replicas_lease_one_job_per_conversation_in_order() {
    use kedai::domain::{
        BuyerRef, ExternalMessageId, InboundMessage, MessageText, PlatformBuyerId, ShopKey,
        TextLimits,
    };
    use kedai::store::{LeaseRequest, PostgresStore, Schema, Store};
    if !on_postgres() {
        eprintln!("replica tests need KEDAI_TEST_STORE=postgres; skipped");
        return;
    }
    const CONVERSATIONS: usize = 12;
    const PER_CONVERSATION: usize = 6;
    let shared = TempDir::new().unwrap();
    let url = kedai::config::StoreUrl(postgres_for(shared.path()).unwrap());
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for name in ["a", "b"] {
        let mut settings = kedai::config::Settings::defaults().store;
        settings.data_dir = shared.path().join(name);
        settings.credentials_key_file = shared
            .path()
            .join("credentials.key")
            .to_string_lossy()
            .into_owned();
        stores.push(Arc::new(
            PostgresStore::open(&url, &settings, Schema::Migrate)
                .await
                .unwrap(),
        ));
    }
    kedai::startup::seed_demo(&*stores[0], &shared.path().join("a"))
        .await
        .unwrap();
    let tenant = stores[0].tenant_by_name("demo").await.unwrap().unwrap();
    let shop = stores[0]
        .shop_by_key(tenant.id, &ShopKey::parse("demo-web").unwrap())
        .await
        .unwrap()
        .unwrap();
    let start = chrono::Utc::now() - chrono::Duration::minutes(5);
    // message id -> its place in its conversation
    let mut place = std::collections::HashMap::new();
    for n in 0..PER_CONVERSATION {
        for c in 0..CONVERSATIONS {
            let message = InboundMessage {
                shop: shop.key.clone(),
                external_id: ExternalMessageId::parse(&format!("m-{c}-{n}")).unwrap(),
                buyer: BuyerRef {
                    id: PlatformBuyerId::parse(&format!("b-{c}")).unwrap(),
                    name: None,
                },
                text: MessageText::parse(&format!("question {n}"), TextLimits { max_chars: 100 })
                    .unwrap(),
                sent_at: start + chrono::Duration::seconds(n as i64),
                sender: kedai::domain::Sender::Buyer,
                attachment: None,
            };
            let stored = stores[c % 2].ingest(&shop, &message, 3).await.unwrap();
            place.insert(stored.message_id.to_string(), n);
        }
    }

    // conversation -> the job held now; conversation -> messages taken.
    let held: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>> = Arc::default();
    let taken: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>> =
        Arc::default();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let store = stores[w % 2].clone();
            let (held, taken) = (held.clone(), taken.clone());
            tokio::spawn(async move {
                let owner = format!("worker-{w}");
                let mut idle = 0;
                while idle < 20 {
                    let jobs = store
                        .lease_jobs(LeaseRequest {
                            owner: &owner,
                            limit: 2,
                            lease: chrono::Duration::seconds(60),
                            kinds: None,
                            lane: None,
                        })
                        .await
                        .unwrap();
                    if jobs.is_empty() {
                        idle += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                    idle = 0;
                    for job in &jobs {
                        let conversation = job.conversation_id.unwrap().to_string();
                        let message = job.payload["message_id"].as_str().unwrap().to_owned();
                        if let Some(other) = held
                            .lock()
                            .unwrap()
                            .insert(conversation.clone(), job.id.to_string())
                        {
                            panic!(
                                "conversation {conversation}: job {} leased while {other} was held",
                                job.id
                            );
                        }
                        taken
                            .lock()
                            .unwrap()
                            .entry(conversation)
                            .or_default()
                            .push(message);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    for job in &jobs {
                        let conversation = job.conversation_id.unwrap().to_string();
                        held.lock().unwrap().remove(&conversation);
                        assert!(store.complete_job(job.id, &owner).await.unwrap());
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let counts = stores[0].job_counts().await.unwrap();
    assert_eq!(
        counts.done as usize,
        CONVERSATIONS * PER_CONVERSATION,
        "{counts:?}"
    );
    // Taken in the order the buyer wrote them.
    let taken = taken.lock().unwrap().clone();
    assert_eq!(taken.len(), CONVERSATIONS);
    for (conversation, messages) in taken {
        let order: Vec<usize> = messages.iter().map(|m| place[m]).collect();
        assert_eq!(
            order,
            (0..PER_CONVERSATION).collect::<Vec<_>>(),
            "conversation {conversation}"
        );
    }
}

/// The audit log and the knowledge-base history refuse every rewrite in
/// the database itself, whoever connects: UPDATE, DELETE and TRUNCATE fail
/// and the rows stay as written.
#[tokio::test]
async fn the_audit_log_and_kb_history_are_append_only_in_postgres() {
    if !on_postgres() {
        eprintln!("replica tests need KEDAI_TEST_STORE=postgres; skipped");
        return;
    }
    let shared = TempDir::new().unwrap();
    let app = replicas(shared.path(), 1).await.pop().unwrap();
    let created = app
        .client
        .put(app.url("/api/v1/kb/entries/faq/gift-wrap"))
        .bearer_auth(&app.token)
        .json(&json!({"questions": ["Do you offer gift wrapping?"], "answer": "Gift wrapping costs 1 USD.", "lang": "en"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let pool = sqlx::PgPool::connect(&postgres_for(shared.path()).unwrap())
        .await
        .unwrap();
    for table in ["audit_log", "kb_versions"] {
        let count = format!("SELECT COUNT(*) FROM {table}");
        let before: i64 = sqlx::query_scalar(&count).fetch_one(&pool).await.unwrap();
        assert!(before > 0, "{table} has rows to protect");
        let column = if table == "audit_log" {
            "actor"
        } else {
            "tenant_id"
        };
        for statement in [
            format!("UPDATE {table} SET {column} = {column}"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            let err = sqlx::query(&statement)
                .execute(&pool)
                .await
                .expect_err(&statement);
            assert!(
                err.to_string().contains("append-only"),
                "{statement}: {err}"
            );
        }
        let after: i64 = sqlx::query_scalar(&count).fetch_one(&pool).await.unwrap();
        assert_eq!(before, after, "{table}");
    }
    pool.close().await;
    app.stop().await;
}
