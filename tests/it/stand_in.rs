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
