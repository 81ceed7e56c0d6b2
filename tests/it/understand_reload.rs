//! The classifiers retrain without a restart: a seller drops a new exemplar
//! file with a new intent into the intents folder, the folder watcher (or
//! `POST /api/v1/understand/reload`) retrains, and the new intent is
//! recognised; a file with a bad line is rejected with its FILE:LINE and
//! the previous classifiers stay. With the real multilingual-e5 model.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kedai::pipeline::ports::Understand;
use kedai::pipeline::stages::{ReloadError, UnderstandSources, UnderstandStage};
use serde_json::Value;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::helpers::{eventually, Spawn};

const NEW_INTENT: [&str; 9] = [
    r#"{"text": "can you gift wrap my order?", "label": "gift_wrap"}"#,
    r#"{"text": "please wrap it as a present", "label": "gift_wrap"}"#,
    r#"{"text": "do you offer gift wrapping", "label": "gift_wrap"}"#,
    r#"{"text": "add a gift box and a greeting card please", "label": "gift_wrap"}"#,
    r#"{"text": "I want it wrapped as a birthday gift", "label": "gift_wrap"}"#,
    r#"{"text": "bisa dibungkus kado?", "label": "gift_wrap"}"#,
    r#"{"text": "tolong dibungkus kado ya kak", "label": "gift_wrap"}"#,
    r#"{"text": "ada layanan bungkus kado gak", "label": "gift_wrap"}"#,
    r#"{"text": "minta pakai kotak hadiah dan kartu ucapan", "label": "gift_wrap"}"#,
];

const PROBE: &str = "could you wrap it as a gift for my mum's birthday?";

/// An intents folder holding the test fixtures as `base.jsonl`.
fn intents_dir() -> TempDir {
    let dir = TempDir::new().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/understand/intents");
    for entry in std::fs::read_dir(fixture).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join("base.jsonl")).unwrap();
    }
    dir
}

fn write_lines(path: &Path, lines: &[&str]) {
    // Written beside and renamed, as an editor saves, so the watcher never
    // sees half a file.
    let temp = path.with_extension("part");
    std::fs::write(&temp, lines.join("\n") + "\n").unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[tokio::test]
async fn a_new_exemplar_file_is_learned_by_the_watcher_and_a_bad_one_keeps_the_old_heads() {
    let intents = intents_dir();
    let cache = TempDir::new().unwrap();
    let embedder: Arc<dyn kedai::kb::Embedder> = crate::understand::e5();
    let stage = UnderstandStage::new(
        embedder,
        UnderstandSources {
            intents_dir: intents.path().to_path_buf(),
            sentiment_dir: None,
            cache_dir: cache.path().to_path_buf(),
        },
    );
    let before = stage.understand(PROBE, &[]).await.unwrap();
    assert_ne!(before.intent, "gift_wrap");
    let stop = CancellationToken::new();
    stage
        .watch(Duration::from_millis(100), stop.clone())
        .expect("the stage has folders to watch");

    let mine = intents.path().join("mine.jsonl");
    write_lines(&mine, &NEW_INTENT);
    let stage = &stage;
    eventually(Duration::from_secs(120), "the new intent", || async move {
        stage.understand(PROBE, &[]).await.unwrap().intent == "gift_wrap"
    })
    .await;
    let indonesian = stage
        .understand("kak, bisa bungkus kado buat ulang tahun?", &[])
        .await
        .unwrap();
    assert_eq!(indonesian.intent, "gift_wrap", "{indonesian:?}");
    let old = stage
        .understand("where is my package? it has been a week", &[])
        .await
        .unwrap();
    assert_eq!(old.intent, "order_status", "old intents still known");

    // A bad third line: the watcher's retraining fails, and so does an
    // explicit one, naming the file and line; the heads in use stay.
    let mut broken = NEW_INTENT[..2].to_vec();
    broken.push(r#"{"text": "gift box please", "labl": "gift_wrap"}"#);
    write_lines(&mine, &broken);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = stage.reload().await.expect_err("a bad line is rejected");
    assert!(matches!(err, ReloadError::Exemplars(_)), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("mine.jsonl:3: "), "{shown}");
    assert!(shown.contains("labl"), "{shown}");
    let after = stage.understand(PROBE, &[]).await.unwrap();
    assert_eq!(after.intent, "gift_wrap", "the previous heads stay");

    // Fixed: learned again; removed: forgotten.
    write_lines(&mine, &NEW_INTENT);
    let report = stage.reload().await.unwrap();
    assert_eq!(report.intents["gift_wrap"], NEW_INTENT.len());
    std::fs::remove_file(&mine).unwrap();
    let report = stage.reload().await.unwrap();
    assert!(!report.intents.contains_key("gift_wrap"));
    assert_ne!(
        stage.understand(PROBE, &[]).await.unwrap().intent,
        "gift_wrap"
    );
    stop.cancel();
}

#[tokio::test]
async fn the_reload_endpoint_retrains_and_reports_what_it_learned() {
    let data = TempDir::new().unwrap();
    let intents = intents_dir();
    let mut spawn = Spawn::new(data.path());
    spawn.settings.pipeline.intents_dir = intents.path().to_string_lossy().into_owned();
    spawn.settings.pipeline.sentiment_dir = String::new();
    spawn.settings.pipeline.exemplars_poll_secs = 0;
    // Exemplar vectors are cached under the models folder: a fresh one.
    spawn.settings.models.dir = data.path().join("models").to_string_lossy().into_owned();
    spawn.settings.access.reload_min_interval_secs = 0;
    spawn.kb_embedder = Some(crate::understand::e5());
    let app = spawn.start().await;
    // A retraining already running (the start-up one) answers 409: ask
    // again once it has finished, as an operator's script would.
    let reload = || async {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let response = app
                .client
                .post(app.url("/api/v1/understand/reload"))
                .bearer_auth(&app.operator)
                .send()
                .await
                .unwrap();
            if response.status() != 409 || std::time::Instant::now() > deadline {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };

    let unauthenticated = app
        .client
        .post(app.url("/api/v1/understand/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let first = reload().await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["languages"]["base"], 66, "{first:#}");
    assert!(first["intents"].get("gift_wrap").is_none());

    let mine = intents.path().join("id.jsonl");
    write_lines(&mine, &NEW_INTENT[5..]);
    std::fs::write(intents.path().join("en.jsonl"), NEW_INTENT[..5].join("\n")).unwrap();
    let second: Value = reload().await.json().await.unwrap();
    assert_eq!(second["intents"]["gift_wrap"], 9, "{second:#}");
    assert_eq!(second["intent_languages"]["gift_wrap"]["en"], 5);
    assert_eq!(second["intent_languages"]["gift_wrap"]["id"], 4);
    assert_eq!(second["exemplars"], 66 + 9);
    assert!(second["training_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(second["files"].as_array().unwrap().len(), 3);
    assert!(
        second["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f.as_str().unwrap().starts_with("intents/")),
        "files are named within their folder, not by server path: {second:#}"
    );

    std::fs::write(
        &mine,
        "{\"text\": \"bungkus kado\", \"label\": \"gift_wrap\"}\nnot json\n",
    )
    .unwrap();
    let rejected = reload().await;
    assert_eq!(rejected.status(), 422);
    let body: Value = rejected.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("intents/id.jsonl:2: "), "{message}");
    assert!(
        !message.contains(&intents.path().display().to_string()),
        "no server path: {message}"
    );

    let metrics = crate::helpers::without_instance(
        &app.get_as_operator("/metrics").await.text().await.unwrap(),
    );
    assert!(
        metrics.contains(r#"kedai_understand_reloads_total{trigger="api",outcome="error"}"#)
            || metrics.contains(r#"kedai_understand_reloads_total{outcome="error",trigger="api"}"#),
        "{metrics}"
    );
    // Other tests in this process retrain too: the gauge exists, its value
    // is theirs or ours.
    assert!(
        metrics.contains(r#"kedai_understand_exemplars{kind="intent"}"#),
        "{metrics}"
    );
    app.stop().await;
}

/// A server whose exemplar folder is missing (a relative path started from
/// another directory, a typo) cannot understand anything: every message
/// would go to a human. `/readyz` says so and why, and turns ready once
/// the folder is there and the classifiers are retrained.
#[tokio::test]
async fn readiness_reports_classifiers_that_failed_to_train() {
    let data = TempDir::new().unwrap();
    let missing = data.path().join("no-such-exemplars");
    let mut spawn = Spawn::new(data.path());
    spawn.settings.pipeline.intents_dir = missing.to_string_lossy().into_owned();
    spawn.settings.pipeline.sentiment_dir = String::new();
    spawn.settings.pipeline.exemplars_poll_secs = 0;
    spawn.kb_embedder = Some(crate::understand::e5());
    let app = spawn.start().await;
    let app = &app;

    eventually(Duration::from_secs(60), "training to fail", || async move {
        let report: Value = app.get_as_operator("/readyz").await.json().await.unwrap();
        report["understand"]["detail"]["failed"].is_string()
    })
    .await;
    assert_eq!(app.get("/readyz").await.status(), 503);
    let report: Value = app.get_as_operator("/readyz").await.json().await.unwrap();
    assert_eq!(report["ready"], false, "{report:#}");
    assert_eq!(report["store"]["ok"], true);
    assert_eq!(report["understand"]["ok"], false);
    let why = report["understand"]["detail"]["failed"].as_str().unwrap();
    assert!(why.contains("no-such-exemplars"), "{why}");

    // The folder appears; a reload trains and the server is ready.
    std::fs::create_dir(&missing).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/understand/intents");
    for entry in std::fs::read_dir(fixture).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, missing.join("base.jsonl")).unwrap();
    }
    let reload = app
        .client
        .post(app.url("/api/v1/understand/reload"))
        .bearer_auth(&app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let report: Value = app.get_as_operator("/readyz").await.json().await.unwrap();
    assert_eq!(report["ready"], true, "{report:#}");
    assert_eq!(report["understand"]["detail"], "trained");
}
