//! Reports over the HTTP API: figures, CSV, the resolution figure's rule,
//! SQL and list, agents' tags, filters, and what another tenant or a
//! shop-bound token sees. The figures themselves are checked against
//! hand-computed ones in `figures::report`'s unit tests.

use kedai::auth::{issue_scoped_token, Scopes, TokenGrant};
use kedai::domain::ShopKey;
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};

async fn conversation(app: &TestApp, shop: &str, id: &str) -> String {
    let ack: Value = app
        .ingest(&message(
            shop,
            id,
            &format!("buyer-{id}"),
            "is the jacket warm?",
        ))
        .await
        .json()
        .await
        .unwrap();
    ack["conversation_id"].as_str().unwrap().to_owned()
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(token)
        .json(&if path.ends_with("/status") {
            json!({"status": "resolved"})
        } else {
            json!({"text": "Yes, down-filled, good to -10 C."})
        })
        .send()
        .await
        .unwrap()
}

async fn token_for(app: &TestApp, tenant: kedai::domain::TenantId, shop: Option<&str>) -> String {
    let shop = match shop {
        Some(key) => Some(
            app.store
                .shop_by_key(tenant, &ShopKey::parse(key).unwrap())
                .await
                .unwrap()
                .unwrap()
                .id,
        ),
        None => None,
    };
    issue_scoped_token(
        app.store.as_ref(),
        TokenGrant {
            tenant,
            label: "reports".into(),
            scopes: Scopes::admin(),
            expires_at: None,
            shop,
        },
    )
    .await
    .unwrap()
    .1
}

/// Three conversations: (1) answered by an agent and resolved, (2) not
/// answered, (3) on Lazada, answered by an agent.
async fn history(app: &TestApp) -> [String; 3] {
    let one = conversation(app, "demo-shopee", "r-1").await;
    let two = conversation(app, "demo-shopee", "r-2").await;
    let three = conversation(app, "demo-lazada", "r-3").await;
    for id in [&one, &three] {
        let path = format!("/api/v1/conversations/{id}/replies");
        assert_eq!(
            send(app, reqwest::Method::POST, &path, &app.token)
                .await
                .status(),
            201
        );
    }
    let path = format!("/api/v1/conversations/{one}/status");
    assert_eq!(
        send(app, reqwest::Method::PUT, &path, &app.token)
            .await
            .status(),
        200
    );
    [one, two, three]
}

#[tokio::test]
async fn reports_count_the_stored_history_in_json_and_csv() {
    let (app, _dir) = spawn_app().await;
    let [one, two, _three] = history(&app).await;

    let summary = app.get_json("/api/v1/reports/summary?since=1d").await;
    let report = &summary["report"];
    assert_eq!(report["figures"]["conversations"], 3, "{report}");
    assert_eq!(report["figures"]["with_buyer_message"], 3);
    // No AI ran: nothing involved or automated; two first responses by people.
    assert_eq!(report["involvement"], 0.0);
    assert_eq!(report["figures"]["first_response_human"]["count"], 2);
    assert_eq!(report["figures"]["first_response_ai"], Value::Null);
    assert_eq!(report["rows"][0]["dimension"], "all");

    let resolution = app.get_json("/api/v1/reports/resolution?since=1d").await;
    assert_eq!(resolution["counted"], 3);
    assert_eq!(resolution["resolved"], 1);
    assert!((resolution["rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert!(resolution["sql"]
        .as_str()
        .unwrap()
        .starts_with("SELECT c.id"));
    assert!(resolution["rule"]
        .as_str()
        .unwrap()
        .contains("status is `resolved`"));
    let resolved: Vec<&str> = resolution["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["resolved"] == true)
        .map(|c| c["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(resolved, vec![one.as_str()]);

    let csv = app.get("/api/v1/reports/summary?since=1d&format=csv").await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let body = csv.text().await.unwrap();
    assert!(body.starts_with("dimension,value,conversations,"), "{body}");
    assert!(
        body.lines().nth(1).unwrap().starts_with("all,all,3,3,"),
        "{body}"
    );
    let listed = app
        .get("/api/v1/reports/resolution?format=csv")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert!(
        listed.contains(&format!("{two},demo-shopee,shopee,open,")),
        "{listed}"
    );

    let lazada = app
        .get_json("/api/v1/reports/summary?shop=demo-lazada")
        .await;
    assert_eq!(lazada["report"]["figures"]["conversations"], 1);
    for bad in [
        "since=yesterday",
        "platform=ebay",
        "format=xml",
        "since=2026-12-08&until=2026-12-01",
        "nope=1",
    ] {
        let response = app.get(&format!("/api/v1/reports/summary?{bad}")).await;
        assert!(
            response.status().is_client_error(),
            "{bad}: {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn agents_tags_are_kept_and_filter_reports() {
    let (app, _dir) = spawn_app().await;
    let [_one, two, _three] = history(&app).await;
    let tags = |v: &Value| -> Vec<String> {
        v["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    };

    let path = format!("/api/v1/conversations/{two}/tags/VIP");
    let put: Value = send(&app, reqwest::Method::PUT, &path, &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(tags(&put).contains(&"vip".to_owned()), "{put}");
    assert!(tags(&put).contains(&"shop:demo-shopee".to_owned()), "{put}");
    let path = format!("/api/v1/conversations/{two}/tags/platform:shopee");
    let off: Value = send(&app, reqwest::Method::DELETE, &path, &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(!tags(&off).contains(&"platform:shopee".to_owned()), "{off}");

    let vip = app.get_json("/api/v1/reports/conversations?tag=vip").await;
    let listed = vip["conversations"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], two.as_str());
    let csv = app
        .get("/api/v1/reports/conversations?format=csv&tag=vip")
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.contains("vip") && csv.contains(&two), "{csv}");

    let bad = format!("/api/v1/conversations/{two}/tags/%3Cb%3E");
    assert_eq!(
        send(&app, reqwest::Method::PUT, &bad, &app.token)
            .await
            .status(),
        422
    );
    let unknown = "/api/v1/conversations/01936d6e-7d4b-7000-8000-000000000000/tags/vip";
    assert_eq!(
        send(&app, reqwest::Method::PUT, unknown, &app.token)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn another_tenant_and_another_shop_see_nothing_of_a_tenant_s_reports() {
    let (app, _dir) = spawn_app().await;
    let [one, _two, _three] = history(&app).await;
    let other = app
        .store
        .create_tenant(&kedai::domain::TenantName::parse("other").unwrap())
        .await
        .unwrap();
    let other_token = token_for(&app, other.id, None).await;
    let get = |path: &'static str, token: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let theirs: Value = get("/api/v1/reports/summary", other_token.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["report"]["figures"]["conversations"], 0);
    let resolution: Value = get("/api/v1/reports/resolution", other_token.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resolution["counted"], 0);
    let path = format!("/api/v1/conversations/{one}/tags/mine");
    assert_eq!(
        send(&app, reqwest::Method::PUT, &path, &other_token)
            .await
            .status(),
        404
    );

    let demo = app.store.tenant_by_name("demo").await.unwrap().unwrap();
    let lazada = token_for(&app, demo.id, Some("demo-lazada")).await;
    let own: Value = get("/api/v1/reports/summary", lazada.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["report"]["figures"]["conversations"], 1);
    let own: Value = get("/api/v1/reports/resolution", lazada.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["counted"], 1);
    let response = get("/api/v1/reports/summary?shop=demo-shopee", lazada.clone()).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        send(&app, reqwest::Method::PUT, &path, &lazada)
            .await
            .status(),
        404
    );
}

/// The gaps themselves (which messages, grouped how) are checked on the
/// store in `store::sqlite::reports`' tests and `figures::gaps`'; here the
/// route: served where an embedding model runs, 503 where none does.
#[tokio::test]
async fn knowledge_gaps_need_an_embedding_model() {
    let dir = tempfile::TempDir::new().unwrap();
    let app = crate::helpers::Spawn::stand_in(dir.path()).start().await;
    let gaps = app.get_json("/api/v1/reports/gaps?since=7d").await;
    assert!(gaps["gaps"].is_array(), "{gaps}");
    assert_eq!(
        app.get("/api/v1/reports/gaps?format=csv").await.status(),
        422
    );

    let (plain, _dir) = spawn_app().await;
    assert_eq!(plain.get("/api/v1/reports/gaps").await.status(), 503);
}
