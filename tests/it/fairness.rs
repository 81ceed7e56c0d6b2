//! One tenant's use of the models cannot starve another's buyers (review
//! finding M6), the runtime's caches never cross tenants (L9), and the
//! embedding dimension comes from the loaded model (L4). With the real
//! models: multilingual-e5-small and SmolLM2, on a runtime of this test's
//! own so the flood does not touch the other tests' shared one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kedai::auth::{issue_scoped_token, Scopes, TokenGrant};
use kedai::domain::TenantName;
use kedai::engine::Engine;
use kedai::http::ModelReadiness;
use kedai::inference::chat::{ChatMessage, ChatRole};
use kedai::kb::Embedder;
use kedai::pipeline::ports::Writer;
use kedai::pipeline::stages::{EngineEmbedder, EngineWriter};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{message, Spawn, TestApp};

const SMOL: &str = "smollm2-135m-instruct";

async fn flooder_token(app: &TestApp) -> String {
    let tenant = app
        .store
        .create_tenant(&TenantName::parse("flooder").unwrap())
        .await
        .unwrap();
    issue_scoped_token(
        app.store.as_ref(),
        TokenGrant {
            tenant: tenant.id,
            label: "flood".into(),
            scopes: Scopes::parse("models").unwrap(),
            expires_at: None,
            shop: None,
        },
    )
    .await
    .unwrap()
    .1
}

/// Requests streamed answers without pause until `stop`, counting what
/// was admitted and what was refused with 429.
async fn flood(app: &TestApp, token: String, stop: Arc<AtomicBool>, counts: Arc<[AtomicUsize; 2]>) {
    let mut senders = Vec::new();
    for _ in 0..6 {
        let client = app.client.clone();
        let url = app.url("/v1/chat/completions");
        let (token, stop, counts) = (token.clone(), stop.clone(), counts.clone());
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({
                        "model": SMOL, "stream": true, "max_tokens": 48,
                        "messages": [{"role": "user", "content": "Write a long poem about shipping."}],
                    }))
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    200 => {
                        counts[0].fetch_add(1, Ordering::SeqCst);
                        let _ = response.bytes().await;
                    }
                    429 => {
                        counts[1].fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => panic!("unexpected {other}"),
                }
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
}

#[tokio::test]
async fn m6_a_tenant_flooding_v1_does_not_starve_a_buyers_reply() {
    let (settings, models, _) = tokio::task::spawn_blocking(crate::openai::shared)
        .await
        .unwrap();
    let mut own = settings.models.clone();
    own.chat_queue_capacity = 2;
    let engine = {
        let (own, models) = (own.clone(), models.clone());
        tokio::task::spawn_blocking(move || {
            let engine = Engine::new(&own);
            engine.load(&models);
            assert!(engine.wait_until_settled(Duration::from_secs(600)));
            engine
        })
        .await
        .unwrap()
    };
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    spawn.settings.models = own;
    spawn.settings.models.fetch_on_start = false;
    spawn.settings.server.request_timeout_secs = 600;
    spawn.settings.access.models_requests_per_minute = 10_000;
    spawn.settings.kb.demo_dir = "kb/demo".into();
    spawn.models = ModelReadiness::Ready(models.clone());
    spawn.engine = Some(engine.clone());
    let app = spawn.start().await;

    let token = flooder_token(&app).await;
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let flooding = {
        let (stop, counts) = (stop.clone(), counts.clone());
        let app = &app;
        async move { flood(app, token, stop, counts).await }
    };
    let writer = EngineWriter {
        engine: engine.clone(),
        role: kedai::engine::Role::Drafts,
    };
    let deciding = async {
        // Let the flood take every /v1 slot of the chat model first.
        let api_busy = || {
            let chat = engine
                .models()
                .into_iter()
                .find(|m| m.kind == kedai::engine::ModelKind::Chat)
                .unwrap();
            chat.in_flight - engine.pipeline_in_flight(&chat.id)
        };
        let full = tokio::time::Instant::now() + Duration::from_secs(120);
        while api_busy() < 2 {
            assert!(
                tokio::time::Instant::now() < full,
                "the flood never filled its slots"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The pipeline's writer drafts and follows up while the flood
        // holds every /v1 slot, without waiting for the flood to end.
        assert_eq!(writer.in_flight(), 0, "the flood is not the pipeline's");
        let prompt = vec![ChatMessage::new(ChatRole::User, "Say hello to a buyer.")];
        let draft = writer.write(prompt.clone(), 8).await.expect("a draft");
        assert!(draft.completion_tokens > 0);
        let follow_up = writer
            .write_in_background(prompt, 8)
            .await
            .expect("a follow-up");
        assert!(follow_up.completion_tokens > 0);
        let ack: Value = app
            .ingest(&message(
                "demo-shopee",
                "fair-1",
                "shopee:fair",
                "Kak, gimana cara mencuci kaos katun supaya tidak menyusut?",
            ))
            .await
            .json()
            .await
            .unwrap();
        let conversation = ack["conversation_id"].as_str().unwrap().to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
        let decision = loop {
            let detail = app
                .get_json(&format!("/api/v1/conversations/{conversation}"))
                .await;
            if let Some(decision) = detail["decisions"].as_array().unwrap().first() {
                break decision.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "no decision");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        // The follow-up (the agents' translation and summary) is done
        // while the flood goes on too.
        loop {
            let jobs = app.store.job_counts().await.unwrap();
            if jobs.queued + jobs.leased == 0 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{jobs:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        stop.store(true, Ordering::SeqCst);
        decision
    };
    let ((), decision) = tokio::join!(flooding, deciding);
    let trace = decision["trace"].to_string();
    assert!(
        !trace.contains("busy")
            && !trace.contains("overloaded")
            && !trace.contains("request slots"),
        "the pipeline met the flood: {trace}"
    );
    let (admitted, refused) = (
        counts[0].load(Ordering::SeqCst),
        counts[1].load(Ordering::SeqCst),
    );
    assert!(
        refused > 0,
        "the flood outran its share ({admitted} admitted)"
    );
    let jobs = app.store.job_counts().await.unwrap();
    assert_eq!(jobs.dead, 0, "{jobs:?}");
}

#[tokio::test]
async fn m6_a_tenants_model_requests_are_capped_by_its_own_rate() {
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    spawn.settings.access.models_requests_per_minute = 6;
    let app = spawn.start().await;
    let flooder = flooder_token(&app).await;
    let embed = |token: String| {
        app.client
            .post(app.url("/v1/embeddings"))
            .bearer_auth(token)
            .json(&json!({"model": "multilingual-e5-small", "input": "hi"}))
            .send()
    };
    // No model is loaded: an admitted request answers 503; the second
    // within the burst of one is refused before it reaches the runtime.
    assert_eq!(embed(flooder.clone()).await.unwrap().status(), 503);
    let throttled = embed(flooder.clone()).await.unwrap();
    assert_eq!(throttled.status(), 429);
    let wait: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&wait), "{wait}");
    // Another tenant's share is its own.
    assert_eq!(embed(app.token.clone()).await.unwrap().status(), 503);
}

#[tokio::test]
async fn l4_the_embedding_dimension_comes_from_the_loaded_model_and_a_failure_is_not_kept() {
    let (settings, models, _) = tokio::task::spawn_blocking(crate::openai::shared)
        .await
        .unwrap();
    let engine = Engine::new(&settings.models);
    let embedder = EngineEmbedder::new(engine.clone(), kedai::engine::Role::Retrieval).unwrap();
    let embedder = Arc::new(embedder);
    let probe = embedder.clone();
    let before = tokio::task::spawn_blocking(move || probe.dim())
        .await
        .unwrap();
    assert_eq!(before, 0, "not loaded: unknown, answered at once");
    let loading = engine.clone();
    let models = models.clone();
    tokio::task::spawn_blocking(move || {
        loading.load(&models);
        loading.wait_until_settled(Duration::from_secs(600))
    })
    .await
    .unwrap();
    let after = tokio::task::spawn_blocking(move || embedder.dim())
        .await
        .unwrap();
    assert_eq!(after, 384, "the model's own dimension, not the earlier 0");
    assert_eq!(
        engine.embedding_dimension("multilingual-e5-small"),
        Some(384)
    );
}
