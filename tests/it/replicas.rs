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
        spawn.settings.store.credentials_key_file =
            shared.join("credentials.key").to_string_lossy().into_owned();
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
    assert_eq!(fresh, 1, "exactly one delivery stores the message: {acks:?}");
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
    assert!(after["hits"][0]["text"]
        .as_str()
        .unwrap()
        .contains("1 USD"));
    for app in apps {
        app.stop().await;
    }
}
