//! The OpenAI-compatible endpoints and the model runtime behind them, with
//! the real models: multilingual-e5-small for embeddings and SmolLM2-135M
//! for chat (fast enough for a 2-core CI box). One runtime is loaded per
//! test binary and shared by the servers the tests start; admission control
//! gets a runtime of its own with room for one request.

use std::sync::OnceLock;
use std::time::Duration;

use kedai::config::Settings;
use kedai::engine::Engine;
use kedai::http::ModelReadiness;
use kedai::inference::chat::{ChatMessage, ChatRole, GenerationParams};
use kedai::inference::EmbedRole;
use kedai::models::PreparedModels;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{eventually, spawn_app, Spawn, TestApp};

const E5: &str = "multilingual-e5-small";
const SMOL: &str = "smollm2-135m-instruct";

fn prepared(embedding: &str) -> PreparedModels {
    PreparedModels::pair(
        crate::embeddings::resolve(embedding),
        crate::embeddings::resolve(SMOL),
    )
}

fn settings_for(embedding: &str) -> Settings {
    let mut settings = Settings::defaults();
    settings.models.embedding = format!("bundle:{embedding}");
    settings.models.chat = format!("bundle:{SMOL}");
    settings.models.device = "cpu".into();
    settings
}

fn start_engine(settings: &Settings, models: &PreparedModels) -> Engine {
    let engine = Engine::new(&settings.models);
    engine.load(models);
    assert!(engine.wait_until_settled(Duration::from_secs(600)));
    assert!(engine.all_ready(), "{:?}", engine.models());
    engine
}

/// e5 and SmolLM2, loaded once for every test here.
pub fn shared() -> &'static (Settings, PreparedModels, Engine) {
    static SHARED: OnceLock<(Settings, PreparedModels, Engine)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let settings = settings_for(E5);
        let models = prepared(E5);
        let engine = start_engine(&settings, &models);
        (settings, models, engine)
    })
}

async fn app_with(
    settings: &Settings,
    models: &PreparedModels,
    engine: &Engine,
) -> (TestApp, TempDir) {
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    spawn.settings.models = settings.models.clone();
    spawn.settings.models.fetch_on_start = false;
    // The suite runs real models in parallel on a 2-core box; a non-streamed
    // answer must not meet the production request timeout there.
    spawn.settings.server.request_timeout_secs = 600;
    spawn.models = ModelReadiness::Ready(models.clone());
    spawn.engine = Some(engine.clone());
    (spawn.start().await, dir)
}

async fn app() -> (TestApp, TempDir) {
    let (settings, models, engine) = tokio::task::spawn_blocking(shared).await.unwrap();
    app_with(settings, models, engine).await
}

async fn post(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(&app.token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{path}: {status} with a body that is not JSON ({e}): {text:?}")
    });
    (status, body)
}

/// Asserts OpenAI's error shape and returns the message.
fn error_message(body: &Value) -> String {
    let error = &body["error"];
    assert!(error["type"].is_string(), "{body}");
    assert!(error["code"].is_string(), "{body}");
    error["message"].as_str().expect("error.message").to_owned()
}

fn vectors(body: &Value) -> Vec<Vec<f32>> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn worst_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[tokio::test]
async fn models_not_loaded_answer_503_with_retry_after_and_need_a_token() {
    let (app, _dir) = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/embeddings"))
        .json(&json!({"model": E5, "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = app.client.get(app.url("/v1/models")).send().await.unwrap();
    assert_eq!(response.status(), 401);

    let response = app
        .client
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&app.token)
        .json(&json!({"model": E5, "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: Value = response.json().await.unwrap();
    assert!(error_message(&body).contains(E5), "{body}");

    let listed = app.get_json("/v1/models").await;
    let states: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["not_loaded", "not_loaded"], "{listed}");
}

#[tokio::test]
async fn models_are_listed_ready_and_readyz_reports_each() {
    let (app, _dir) = app().await;
    let listed = app.get_json("/v1/models").await;
    assert_eq!(listed["object"], "list");
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [E5, SMOL]);
    assert!(listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["state"] == "ready"));

    // Ready once the classifiers are trained and the knowledge indexes
    // built (seconds with the exemplar vectors cached; minutes on a fresh,
    // busy 2-core machine).
    let app_ref = &app;
    crate::helpers::eventually(Duration::from_secs(600), "ready", || async move {
        app_ref.get("/readyz").await.status() == 200
    })
    .await;
    let ready: Value = app.get_as_operator("/readyz").await.json().await.unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["understand"]["detail"], "trained", "{ready}");
    assert_eq!(ready["knowledge"]["detail"], "built", "{ready}");
    let runtime = &ready["models"]["detail"]["runtime"];
    assert_eq!(runtime[E5]["state"], "ready", "{ready}");
    assert_eq!(runtime[SMOL]["state"], "ready", "{ready}");
    assert!(runtime[SMOL]["load_seconds"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn embeddings_equal_the_text_embedders_vectors() {
    let (app, _dir) = app().await;
    let texts = [
        "Where is my order? It has been five days.",
        "Apakah barang ini ready stok ukuran XL?",
        "这个商品什么时候发货？",
    ];
    let (_, direct) = crate::embeddings::e5();
    for (input_type, role) in [
        (None, EmbedRole::Query),
        (Some("passage"), EmbedRole::Passage),
    ] {
        let mut body = json!({"model": E5, "input": texts, "encoding_format": "float"});
        if let Some(kind) = input_type {
            body["input_type"] = json!(kind);
        }
        let (status, body) = post(&app, "/v1/embeddings", &body).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "list");
        assert_eq!(body["model"], E5);
        let expected = direct.embed(&texts, role).unwrap();
        let served = vectors(&body);
        assert_eq!(served.len(), texts.len());
        for (i, vector) in served.iter().enumerate() {
            assert_eq!(body["data"][i]["index"], i);
            assert_eq!(body["data"][i]["truncated"], false);
            // Other tests' requests may share the batch and change the
            // padding, hence a tolerance rather than equality.
            let worst = worst_difference(vector, expected.get(i).unwrap());
            assert!(worst <= 1e-4, "{role:?} {i}: differs by {worst}");
        }
        let tokens: usize = expected.inputs().iter().map(|r| r.tokens).sum();
        assert_eq!(body["usage"]["prompt_tokens"], tokens);
        assert_eq!(body["usage"]["total_tokens"], tokens);
    }

    // A single string is one input.
    let (status, body) = post(
        &app,
        "/v1/embeddings",
        &json!({"model": E5, "input": texts[0]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let query = direct.embed(&texts[..1], EmbedRole::Query).unwrap();
    assert!(worst_difference(&vectors(&body)[0], query.get(0).unwrap()) <= 1e-4);
}

#[tokio::test]
async fn a_100k_char_input_is_truncated_and_reported() {
    let (app, _dir) = app().await;
    let long = "Pesanan saya belum sampai. ".repeat(3704);
    assert!(long.chars().count() >= 100_000);
    let (status, body) = post(
        &app,
        "/v1/embeddings",
        &json!({"model": E5, "input": [long, "short one"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["truncated"], true);
    assert_eq!(body["data"][0]["tokens"], 512);
    assert_eq!(body["data"][1]["truncated"], false);
}

#[tokio::test]
async fn bad_embedding_requests_get_clear_errors_and_the_worker_stays_healthy() {
    let (app, _dir) = app().await;
    let too_many: Vec<String> = (0..65).map(|i| format!("text {i}")).collect();
    let cases = [
        (json!({"model": E5, "input": ""}), 422, "`input[0]`"),
        (
            json!({"model": E5, "input": ["ok", "  "]}),
            422,
            "`input[1]`",
        ),
        (json!({"model": E5, "input": []}), 422, "at least one"),
        (json!({"model": E5, "input": too_many}), 422, "at most 64"),
        (
            json!({"model": E5, "input": "hi", "encoding_format": "base64"}),
            422,
            "encoding_format",
        ),
        (
            json!({"model": E5, "input": "hi", "dimensions": 128}),
            422,
            "`dimensions` must be 384",
        ),
        (json!({"model": "gpt-4o", "input": "hi"}), 404, "gpt-4o"),
        (json!({"model": SMOL, "input": "hi"}), 422, "chat model"),
        (json!({"model": E5, "input": [1, 2, 3]}), 422, "input"),
        (json!({"input": "hi"}), 422, "model"),
    ];
    for (body, status, expected) in cases {
        let (got, answer) = post(&app, "/v1/embeddings", &body).await;
        assert_eq!(got, status, "{body} -> {answer}");
        let message = error_message(&answer);
        assert!(message.contains(expected), "{body} -> {message}");
    }

    for raw in [
        &b"{\"model\": \"x\", \"input\": \"\xff\xfe\"}"[..],
        b"{\"model\": ",
    ] {
        let response = app
            .client
            .post(app.url("/v1/embeddings"))
            .bearer_auth(&app.token)
            .header("content-type", "application/json")
            .body(raw.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        error_message(&body);
    }

    let (status, body) = post(
        &app,
        "/v1/embeddings",
        &json!({"model": E5, "input": "still here?"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn chat(app: &TestApp, body: &Value) -> (u16, Value) {
    post(app, "/v1/chat/completions", body).await
}

fn question(max_tokens: usize) -> Value {
    json!({
        "model": SMOL,
        "messages": [
            {"role": "system", "content": "You are a helpful shop assistant."},
            {"role": "user", "content": "Do you ship to Bali?"},
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

#[tokio::test]
async fn greedy_chat_completions_are_reproducible_and_match_the_model() {
    let (app, _dir) = app().await;
    let (status, first) = chat(&app, &question(16)).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = chat(&app, &question(16)).await;
    assert_eq!(first["object"], "chat.completion");
    assert_eq!(first["model"], SMOL);
    let choice = &first["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap();
    assert!(!content.trim().is_empty());
    assert_eq!(content, second["choices"][0]["message"]["content"]);
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let usage = &first["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=16).contains(&completion), "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + completion
    );

    let direct = tokio::task::spawn_blocking(|| {
        let mut model = crate::chat::model(crate::chat::SMOLLM2);
        let messages = [
            ChatMessage::new(ChatRole::System, "You are a helpful shop assistant."),
            ChatMessage::new(ChatRole::User, "Do you ship to Bali?"),
        ];
        let params = GenerationParams {
            max_tokens: 16,
            ..GenerationParams::default()
        };
        model
            .generate(&messages, &params, &mut |_| {
                std::ops::ControlFlow::Continue(())
            })
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(content, direct.text);
    assert_eq!(usage["prompt_tokens"], direct.prompt_tokens);
}

/// The `data:` payloads of a server-sent event stream.
fn sse_payloads(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_streamed_chat_completion_is_the_same_answer_in_chunks() {
    let (app, _dir) = app().await;
    let (_, whole) = chat(&app, &question(16)).await;

    let mut body = question(16);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&app.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let payloads = sse_payloads(&response.text().await.unwrap());
    assert_eq!(
        payloads.last().map(String::as_str),
        Some("[DONE]"),
        "{payloads:?}"
    );
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, whole["choices"][0]["message"]["content"]);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(
        finish["choices"][0]["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], whole["usage"]);
}

#[tokio::test]
async fn bad_chat_requests_get_clear_errors() {
    let (app, _dir) = app().await;
    let huge = "Where is my order? ".repeat(5300);
    assert!(huge.len() >= 100_000);
    let with = |patch: Value| {
        let mut body = question(8);
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let cases = [
        (with(json!({"max_tokens": 0})), 422, "got 0"),
        (with(json!({"max_tokens": 5000})), 422, "got 5000"),
        (with(json!({"temperature": 3.0})), 422, "temperature"),
        (with(json!({"messages": []})), 422, "at least one message"),
        (with(json!({"model": "gpt-4o"})), 404, "gpt-4o"),
        (with(json!({"model": E5})), 422, "embedding model"),
        (with(json!({"stop": ["", "x"]})), 422, "stop[0]"),
        (
            with(json!({"messages": [{"role": "user", "content": huge}]})),
            422,
            "tokens; at most 4096",
        ),
    ];
    for (body, status, expected) in cases {
        let (got, answer) = chat(&app, &body).await;
        assert_eq!(got, status, "{expected} -> {answer}");
        let message = error_message(&answer);
        assert!(message.contains(expected), "{expected} -> {message}");
    }
    let (status, body) = chat(&app, &question(4)).await;
    assert_eq!(status, 200, "{body}");
}

/// The count of `kedai_model_request_duration_seconds` for `model` and
/// `outcome` on the server's /metrics.
async fn requests_with_outcome(app: &TestApp, model: &str, outcome: &str) -> u64 {
    let text = app.get_as_operator("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("kedai_model_request_duration_seconds_count"))
        .filter(|l| l.contains(&format!("model=\"{model}\"")))
        .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_full_queue_answers_429_and_a_disconnect_cancels_generation() {
    let mut settings = settings_for("all-minilm-l6-v2");
    settings.models.chat_queue_capacity = 1;
    settings.models.embedding_queue_capacity = 1;
    let models = tokio::task::spawn_blocking(|| prepared("all-minilm-l6-v2"))
        .await
        .unwrap();
    let engine = {
        let (settings, models) = (settings.clone(), models.clone());
        tokio::task::spawn_blocking(move || start_engine(&settings, &models))
            .await
            .unwrap()
    };
    let (app, _dir) = app_with(&settings, &models, &engine).await;
    let cancelled_before = requests_with_outcome(&app, SMOL, "cancelled").await;

    let mut long = question(1000);
    long["messages"][1]["content"] = json!("Write a very long story about a batik shop.");
    long["stream"] = json!(true);
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&app.token)
        .json(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response;
    // The role chunk comes first; a content chunk means generation runs.
    let mut seen = String::new();
    while sse_payloads(&seen).len() < 2 {
        let bytes = stream.chunk().await.unwrap().expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }

    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&app.token)
        .json(&question(4))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert!(error_message(&body).contains("busy"), "{body}");

    // The client goes away: generation stops at the next token and the
    // slot frees up long before 1000 tokens could have been made.
    drop(stream);
    eventually(Duration::from_secs(60), "the slot to free up", || {
        let engine = engine.clone();
        async move { engine.models().iter().all(|m| m.in_flight == 0) }
    })
    .await;
    let cancelled_after = requests_with_outcome(&app, SMOL, "cancelled").await;
    assert_eq!(cancelled_after, cancelled_before + 1);

    let (status, body) = chat(&app, &question(4)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn model_metrics_are_exported() {
    let (app, _dir) = app().await;
    let (status, _) = post(
        &app,
        "/v1/embeddings",
        &json!({"model": E5, "input": ["a b c", "d e f"]}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = chat(&app, &question(2)).await;
    assert_eq!(status, 200);
    let text = app.get_as_operator("/metrics").await.text().await.unwrap();
    for needle in [
        "kedai_model_batch_inputs_bucket",
        // Every metric also carries the replica's `instance`.
        "model=\"multilingual-e5-small\",kind=\"input\"",
        "model=\"smollm2-135m-instruct\",kind=\"completion\"",
        "kedai_model_tokens_total{",
        "kedai_model_forward_duration_seconds_bucket",
        "kedai_model_request_duration_seconds_bucket",
        "kedai_model_queue_wait_seconds_bucket",
        "kedai_model_in_flight",
        "kedai_model_load_seconds",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }
}
