//! The stand-in models (`stand-in:hashing`, `stand-in:echo`): the whole
//! server runs on them without model files, and every surface says they
//! are stand-ins.

use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{eventually, message, Spawn};

#[tokio::test]
async fn stand_in_models_run_the_whole_pipeline_and_say_what_they_are() {
    let dir = TempDir::new().unwrap();
    let app = Spawn::stand_in(dir.path()).start().await;

    let models = app.get_json("/v1/models").await;
    let data = models["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for model in data {
        assert!(
            model["id"].as_str().unwrap().starts_with("stand-in:"),
            "{model}"
        );
        assert_eq!(model["owned_by"], "kedai-stand-in");
    }

    let client = app.client.clone();
    let readyz = app.url("/readyz");
    eventually(Duration::from_secs(60), "ready on stand-ins", || {
        let (client, readyz) = (client.clone(), readyz.clone());
        async move {
            let report: Value = client
                .get(&readyz)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            report["ready"] == true
        }
    })
    .await;
    let report = app
        .get_as_operator("/readyz")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(report["models"]["detail"]["stand_in"], true, "{report}");
    assert_eq!(report["models"]["detail"]["chat"]["source"], "stand-in");
    // Ready means a message is answered at once: the classifiers are
    // trained and the knowledge indexes built before.
    assert_eq!(report["understand"]["detail"], "trained", "{report}");
    assert_eq!(report["knowledge"]["detail"], "built", "{report}");

    let chat: Value = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&app.token)
        .json(&json!({"model": "stand-in:echo",
                      "messages": [{"role": "user", "content": "Do you ship to Bali?"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let content = chat["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with("[stand-in "), "{chat}");
    let embedded: Value = app
        .client
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&app.token)
        .json(&json!({"model": "stand-in:hashing", "input": ["halo", "hello"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        embedded["data"][0]["embedding"].as_array().unwrap().len(),
        384
    );

    let ack: Value = app
        .ingest(&message("demo-shopee", "m-1", "siti", "where is my order"))
        .await
        .json()
        .await
        .unwrap();
    let path = format!(
        "/api/v1/conversations/{}",
        ack["conversation_id"].as_str().unwrap()
    );
    let client = app.client.clone();
    let (url, token) = (app.url(&path), app.token.clone());
    // Training waits for any other test's training in this process (one at
    // a time), which can take minutes on the real exemplars.
    eventually(Duration::from_secs(600), "a decision", || {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        async move {
            let detail: Value = client
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            detail["decisions"].as_array().is_some_and(|d| d.len() == 1)
        }
    })
    .await;
    app.stop().await;
}

/// `kedai bench load` drives a running server: every message it sends is
/// decided and counted once, per layer, with the queue depth sampled. A
/// plumbing test on the stand-ins; the figures come from the real models.
#[tokio::test]
async fn bench_load_drives_a_running_server_and_accounts_for_every_message() {
    let dir = TempDir::new().unwrap();
    let app = Spawn::stand_in(dir.path()).start().await;
    let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kb/eval/replies.jsonl");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kedai"));
    command
        .arg("--data-dir")
        .arg(dir.path().join("bench-cli"))
        .args(["--json", "bench", "load", "--url", &app.base])
        .args(["--token", &app.token, "--operator-token", &app.operator])
        .arg("--cases")
        .arg(&cases)
        .arg("--orders")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kb/orders/demo.jsonl"))
        .args(["--conversations", "6", "--rates", "4,8", "--duration", "2"])
        .args([
            "--follow-ups",
            "50",
            "--poll-ms",
            "50",
            "--drain-timeout-secs",
            "60",
        ])
        .env("KEDAI__LOG__FILTER", "warn");
    let output = command.output().await.expect("kedai runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["benchmark"], "load");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{report}");
    for (step, sent) in steps.iter().zip([8, 16]) {
        assert_eq!(step["sent"], sent, "{step}");
        assert_eq!(step["decided"], sent, "{step}");
        assert_eq!(step["timed_out"], 0, "{step}");
        let counted: u64 = step["by_layer"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["n"].as_u64().unwrap())
            .sum();
        assert_eq!(counted, sent, "every decision in one layer: {step}");
        assert!(step["queue_max"].as_u64().is_some(), "{step}");
        assert!(step["follow_ups"].as_u64().unwrap() > 0, "{step}");
    }
    // Six conversations and 24 messages: the rest went into open ones.
    let tenant = app.store.tenant_by_name("demo").await.unwrap().unwrap();
    let list = app
        .store
        .list_conversations(
            tenant.id,
            &kedai::store::ConversationFilter {
                limit: 200,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(list.items.len() <= 6, "{} conversations", list.items.len());
    // Order questions were asked about the synthetic buyers' own copies of
    // the case buyers' orders, never about the demo buyers' orders.
    let orders = app
        .store
        .list_orders(
            tenant.id,
            &kedai::store::OrderFilter {
                shop: None,
                buyer: None,
                limit: 500,
            },
        )
        .await
        .unwrap();
    let copies: Vec<_> = orders
        .iter()
        .filter(|o| o.record.order_number.contains("-L"))
        .collect();
    assert!(!copies.is_empty(), "no order copied for a synthetic buyer");
}
