//! The OpenAPI document: generated from the handlers, served by the server,
//! committed as `docs/openapi.json`, and every path in it is really routed.

use serde_json::Value;

use crate::helpers::spawn_app;

const COMMITTED: &str = "docs/openapi.json";

#[tokio::test]
async fn served_document_matches_the_committed_one() {
    let generated = serde_json::to_value(kedai::http::openapi()).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    if std::env::var_os("KEDAI_UPDATE_OPENAPI").is_some() {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&generated).unwrap() + "\n",
        )
        .unwrap();
    }
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("docs/openapi.json exists"))
            .unwrap();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date; regenerate it with \
         `KEDAI_UPDATE_OPENAPI=1 cargo test --test it openapi` and review the diff"
    );

    let (app, _dir) = spawn_app().await;
    let served: Value = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(served, generated);
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let (app, _dir) = spawn_app().await;
    let api = serde_json::to_value(kedai::http::openapi()).unwrap();
    let paths = api["paths"].as_object().unwrap();
    assert!(paths.len() >= 7, "{paths:?}");
    for (path, operations) in paths {
        let concrete = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{kind}", "faq");
        for method in operations.as_object().unwrap().keys() {
            let request = match method.as_str() {
                "get" => app.client.get(app.url(&concrete)),
                "post" => app
                    .client
                    .post(app.url(&concrete))
                    .json(&serde_json::json!({})),
                "put" => app
                    .client
                    .put(app.url(&concrete))
                    .json(&serde_json::json!({})),
                "delete" => app.client.delete(app.url(&concrete)),
                other => panic!("unexpected method {other} on {path}"),
            };
            let response = request.bearer_auth(&app.token).send().await.unwrap();
            let status = response.status().as_u16();
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            if status == 404 {
                let body: Value = response.json().await.unwrap();
                assert_ne!(
                    body["error"]["message"], "route not found",
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }
}
