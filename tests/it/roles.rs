//! Model roles with the real models: two chat models loaded side by side,
//! SmolLM2 writing buyer-facing drafts and Qwen2.5-Coder-0.5B (the default
//! bundle's) writing translations and agent summaries, both behind one
//! multilingual-e5-small that serves understanding and retrieval. What each
//! model did is read back from `/v1/models` and from the decision's
//! follow-up, as an operator would.

use std::time::Duration;

use kedai::http::ModelReadiness;
use kedai::models::{self, FetchPolicy, PrepareMode, Progress};
use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::{message, Spawn, TestApp};

const DRAFTS: &str = "smollm2-135m-instruct";
const TRANSLATIONS: &str = "qwen2.5-coder-0.5b-instruct";

async fn app_with_two_chat_models() -> (TestApp, TempDir) {
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    let models = &mut spawn.settings.models;
    models.embedding = "bundle:multilingual-e5-small".into();
    models.chat = format!("bundle:{DRAFTS}");
    models.roles.translations = Some(format!("bundle:{TRANSLATIONS}"));
    models.device = "cpu".into();
    models.fetch_on_start = false;
    spawn.settings.kb.demo_dir = "kb/demo".into();
    spawn.settings.kb.demo_orders = "kb/orders/demo.jsonl".into();
    let settings = spawn.settings.models.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        let mode = PrepareMode {
            fetch: FetchPolicy::FetchMissing,
            progress: Progress::Lines,
        };
        models::prepare(&settings, mode).expect("the three models prepared")
    })
    .await
    .unwrap();
    assert_eq!(
        prepared.models.len(),
        3,
        "e5 is prepared once for two roles"
    );
    spawn.models = ModelReadiness::Ready(prepared);
    (spawn.start().await, dir)
}

/// The decision on a new buyer message, once its follow-up has run.
async fn followed_up_decision(app: &TestApp, text: &str) -> Value {
    let ack: Value = app
        .ingest(&message("demo-shopee", "roles-1", "shopee:roles", text))
        .await
        .json()
        .await
        .unwrap();
    let conversation = ack["conversation_id"].as_str().unwrap().to_string();
    let message_id = ack["message_id"].as_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    loop {
        let detail = app
            .get_json(&format!("/api/v1/conversations/{conversation}"))
            .await;
        let decision = detail["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["message_id"] == message_id.as_str())
            .cloned();
        if let Some(decision) = decision.filter(|d| !d["follow_up"].is_null()) {
            return decision;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no follow-up for {text:?}: {detail:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn translations_and_summaries_use_their_own_chat_model_while_drafts_use_another() {
    let (app, _dir) = app_with_two_chat_models().await;

    let listed = app.get_json("/v1/models").await;
    let roles_of = |id: &str| -> Vec<String> {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed: {listed:#}"))["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        roles_of("multilingual-e5-small"),
        ["understand", "retrieval"]
    );
    assert_eq!(roles_of(DRAFTS), ["drafts"]);
    assert_eq!(roles_of(TRANSLATIONS), ["translations"]);
    assert_eq!(listed["data"].as_array().unwrap().len(), 3, "{listed:#}");

    // An angry Indonesian buyer goes to a person; the follow-up translates
    // the message for the agent and summarises the conversation.
    let decision = followed_up_decision(
        &app,
        "Sudah tiga kali saya tanya!!! Barang saya rusak dan saya mau uang saya kembali sekarang",
    )
    .await;
    let follow_up = &decision["follow_up"];
    assert_eq!(follow_up["model"], TRANSLATIONS, "{decision:#}");
    assert!(
        follow_up["summary"].as_str().is_some_and(|s| !s.is_empty())
            || follow_up["translation"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
        "the translations model wrote something: {follow_up:#}"
    );
    let trace_models: Vec<&str> = decision["trace"]["models"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        !trace_models.contains(&TRANSLATIONS),
        "the decision itself ran no translation: {trace_models:?}"
    );

    // Both chat models are loaded and answer under their own names.
    for model in [DRAFTS, TRANSLATIONS] {
        let response = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&app.token)
            .json(&serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 4,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{model}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["model"], model);
    }
}
