//! Who may call what: token scopes route by route, expiry, shop-bound
//! tokens, operator-only routes, failed-authentication throttling, and
//! what the operations endpoints tell whom (review findings M5, M7, M8).

use std::time::Duration;

use kedai::auth::{issue_scoped_token, Scope, Scopes, TokenGrant};
use kedai::domain::ShopKey;
use kedai::http::access::{access_for, Access};
use kedai::http::ModelReadiness;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{message, spawn_app, Spawn, TestApp};

async fn demo_tenant(app: &TestApp) -> kedai::store::Tenant {
    app.store.tenant_by_name("demo").await.unwrap().unwrap()
}

async fn token_with(app: &TestApp, scopes: Scopes, shop: Option<&str>) -> String {
    let tenant = demo_tenant(app).await;
    let shop = match shop {
        Some(key) => Some(
            app.store
                .shop_by_key(tenant.id, &ShopKey::parse(key).unwrap())
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
            tenant: tenant.id,
            label: "test".into(),
            scopes,
            expires_at: None,
            shop,
        },
    )
    .await
    .unwrap()
    .1
}

fn every_scope_but(scope: Scope) -> Scopes {
    let others: Vec<Scope> = Scope::ALL
        .into_iter()
        .filter(|s| *s != scope && *s != Scope::Admin)
        .collect();
    Scopes::of(&others)
}

async fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let url = app.url(
        &path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{kind}", "faq"),
    );
    let request = match method {
        "get" => app.client.get(url),
        "post" => app.client.post(url).json(&json!({})),
        "put" => app.client.put(url).json(&json!({})),
        "delete" => app.client.delete(url),
        other => panic!("unexpected method {other}"),
    };
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The table test: every operation of the OpenAPI document has an access
/// rule, and a token without the rule's scope gets 403 while one with only
/// that scope gets past authorisation.
#[tokio::test]
async fn m8_every_documented_route_enforces_its_scope() {
    let (app, _dir) = spawn_app().await;
    let api = serde_json::to_value(kedai::http::openapi()).unwrap();
    let mut checked = 0;
    for (path, operations) in api["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let access = access_for(method, path)
                .unwrap_or_else(|| panic!("{method} {path} has no entry in http::access::ROUTES"));
            match access {
                Access::Public | Access::PublicWithDetails => {
                    let (status, _) = call(&app, method, path, None).await;
                    assert!(![401, 403].contains(&status), "{method} {path}: {status}");
                    assert!(
                        operation.get("security").is_none() || access == Access::PublicWithDetails
                    );
                }
                Access::Tenant(scope) => {
                    let without = token_with(&app, every_scope_but(scope), None).await;
                    let (status, body) = call(&app, method, path, Some(&without)).await;
                    assert_eq!(status, 403, "{method} {path} without `{scope}`: {body}");
                    assert!(
                        body["error"]["message"]
                            .as_str()
                            .unwrap()
                            .contains(scope.as_str()),
                        "{body}"
                    );
                    let with = token_with(&app, Scopes::of(&[scope]), None).await;
                    let (status, body) = call(&app, method, path, Some(&with)).await;
                    assert!(
                        ![401, 403].contains(&status),
                        "{method} {path} with `{scope}`: {body}"
                    );
                    let (status, _) = call(&app, method, path, Some(&app.operator)).await;
                    assert_eq!(
                        status, 403,
                        "{method} {path}: operator tokens reach no tenant data"
                    );
                    let (status, _) = call(&app, method, path, None).await;
                    assert_eq!(status, 401, "{method} {path} without a token");
                    assert_eq!(
                        operation["security"],
                        json!([{"bearer": [scope.as_str()]}]),
                        "{method} {path}: the document names the scope"
                    );
                }
                Access::OwnCredentials => {
                    // A webhook or the widget: no kedai token opens it, and
                    // without its own credentials it refuses.
                    let (status, _) = call(&app, method, path, Some(&app.token)).await;
                    assert!(
                        (400..500).contains(&status),
                        "{method} {path} with a tenant token: {status}"
                    );
                    let (status, _) = call(&app, method, path, None).await;
                    assert!((400..500).contains(&status), "{method} {path}: {status}");
                }
                Access::Operator => {
                    let (status, _) = call(&app, method, path, Some(&app.token)).await;
                    assert_eq!(status, 403, "{method} {path} with a tenant admin token");
                    let (status, body) = call(&app, method, path, Some(&app.operator)).await;
                    assert!(![401, 403].contains(&status), "{method} {path}: {body}");
                    assert_eq!(operation["security"], json!([{"operator": []}]));
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} operations checked");
    // And every rule names a route that exists.
    for (method, path, _) in kedai::http::access::ROUTES {
        if *path == "/api/v1/openapi.json" {
            continue;
        }
        assert!(
            api["paths"][*path][method.to_ascii_lowercase()].is_object(),
            "{method} {path} is in the access table but not in the API"
        );
    }
}

#[tokio::test]
async fn m8_integration_tokens_post_as_agents_or_notes_never_as_ai_or_system() {
    let (app, _dir) = spawn_app().await;
    let integration = token_with(&app, Scopes::parse("integration").unwrap(), None).await;
    let ack: Value = app
        .client
        .post(app.url("/api/v1/messages"))
        .bearer_auth(&integration)
        .json(&message("demo-web", "m1", "b1", "hi"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conversation = ack["conversation_id"].as_str().unwrap();
    let reply = |body: Value| {
        app.client
            .post(app.url(&format!("/api/v1/conversations/{conversation}/replies")))
            .bearer_auth(&integration)
            .json(&body)
            .send()
    };
    for author in ["ai", "system"] {
        let response = reply(json!({"text": "refund approved", "author": author}))
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{author}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("must be \"agent\""), "{message}");
    }
    let agent = reply(json!({"text": "Hello!", "author": "agent"}))
        .await
        .unwrap();
    assert_eq!(agent.status(), 201);
    let note = reply(json!({"text": "VIP, be nice", "internal": true}))
        .await
        .unwrap();
    assert_eq!(note.status(), 201);
    let detail = app
        .get_json(&format!("/api/v1/conversations/{conversation}"))
        .await;
    let authors: Vec<&str> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["author"].as_str().unwrap())
        .collect();
    assert_eq!(authors, ["buyer", "agent", "agent"]);
}

#[tokio::test]
async fn m8_expired_and_revoked_tokens_are_refused_and_use_is_recorded() {
    let (app, _dir) = spawn_app().await;
    let tenant = demo_tenant(&app).await;
    let grant = |expires_at| TokenGrant {
        tenant: tenant.id,
        label: "short".into(),
        scopes: Scopes::parse("read-only").unwrap(),
        expires_at,
        shop: None,
    };
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    let (info, token) = issue_scoped_token(app.store.as_ref(), grant(Some(soon)))
        .await
        .unwrap();
    let list = || {
        app.client
            .get(app.url("/api/v1/conversations"))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(list().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let expired = list().await.unwrap();
    assert_eq!(expired.status(), 401);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(body["error"]["code"], "expired_token");

    let tokens = app.store.list_tokens(tenant.id).await.unwrap();
    let listed = tokens.iter().find(|t| t.id == info.id).unwrap();
    assert!(listed.last_used_at.is_some(), "the first use was recorded");
    assert!(listed.expires_at.is_some());
}

#[tokio::test]
async fn m8_a_shop_bound_token_acts_for_its_shop_alone() {
    let (app, _dir) = spawn_app().await;
    app.ingest(&message("demo-shopee", "s1", "b1", "halo kak"))
        .await;
    let other: Value = app
        .ingest(&message("demo-lazada", "l1", "b2", "hello"))
        .await
        .json()
        .await
        .unwrap();
    let bound = token_with(
        &app,
        Scopes::parse("integration").unwrap(),
        Some("demo-shopee"),
    )
    .await;
    let send = |body: Value| {
        app.client
            .post(app.url("/api/v1/messages"))
            .bearer_auth(&bound)
            .json(&body)
            .send()
    };
    assert_eq!(
        send(message("demo-shopee", "s2", "b1", "ok"))
            .await
            .unwrap()
            .status(),
        202
    );
    let refused = send(message("demo-lazada", "l2", "b2", "x")).await.unwrap();
    assert_eq!(refused.status(), 403);

    let list: Value = app
        .client
        .get(app.url("/api/v1/conversations"))
        .bearer_auth(&bound)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shops: Vec<&str> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["shop"].as_str().unwrap())
        .collect();
    assert_eq!(shops, ["demo-shopee"]);
    let conversation = other["conversation_id"].as_str().unwrap();
    for (method, path, body) in [
        ("GET", format!("/api/v1/conversations/{conversation}"), None),
        (
            "POST",
            format!("/api/v1/conversations/{conversation}/replies"),
            Some(json!({"text": "hi"})),
        ),
        (
            "PUT",
            format!("/api/v1/conversations/{conversation}/status"),
            Some(json!({"status": "resolved"})),
        ),
    ] {
        let request = app
            .client
            .request(method.parse().unwrap(), app.url(&path))
            .bearer_auth(&bound);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        assert_eq!(
            request.send().await.unwrap().status(),
            404,
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn m8_failed_authentication_is_throttled_per_client_without_the_store() {
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    spawn.settings.access.failed_auth_limit = 3;
    let app = spawn.start().await;
    let with = |token: &'static str| {
        app.client
            .get(app.url("/api/v1/conversations"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(with("kd_not-a-real-token").await.unwrap().status(), 401);
    assert_eq!(
        with("kd_0000000000000000000000000000000000000000")
            .await
            .unwrap()
            .status(),
        401
    );
    let third = with("garbage").await.unwrap();
    assert_eq!(third.status(), 429, "the third failure uses up the budget");
    let retry: u64 = third.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Throttled: even a good token waits, and nothing asks the store.
    let good = app
        .client
        .get(app.url("/api/v1/conversations"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 429);
    let body: Value = good.json().await.unwrap();
    assert_eq!(body["error"]["code"], "throttled");
    // Public routes stay open.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn m7_readiness_tells_anyone_only_whether_and_the_operator_why() {
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    spawn.models = ModelReadiness::Unavailable(
        "pip download failed: ERROR: Could not find /root/.cache/kedai/models/x.whl".into(),
    );
    let app = spawn.start().await;
    let anonymous = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(anonymous.status(), 503);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body, json!({"ready": false}));

    let admin: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(admin["models"]["ok"], false);
    let shown = admin.to_string();
    for secret in ["pip", "/root", "bundle:", "queued"] {
        assert!(
            !shown.contains(secret),
            "a tenant admin sees {secret:?}: {shown}"
        );
    }

    let operator: Value = app.get_as_operator("/readyz").await.json().await.unwrap();
    assert!(operator["models"]["detail"]["unavailable"]
        .as_str()
        .unwrap()
        .contains("pip download failed"));
    assert!(operator["queue"]["queued"].is_number());

    let bad = app
        .client
        .get(app.url("/readyz"))
        .bearer_auth("kd_0000000000000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401, "a bad token is refused, not ignored");
}

#[tokio::test]
async fn m7_metrics_need_an_operator_token_or_the_private_listener() {
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    spawn.settings.server.metrics_listen = "127.0.0.1:0".into();
    let app = spawn.start().await;
    let anonymous = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        app.get("/metrics").await.status(),
        403,
        "tenant tokens see no server metrics"
    );
    let metrics = app.get_as_operator("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("kedai_http_requests_total"), "{metrics}");

    let private = app
        .metrics_base
        .clone()
        .expect("the metrics listener is bound");
    let scraped = app
        .client
        .get(format!("{private}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped
        .text()
        .await
        .unwrap()
        .contains("kedai_auth_refused_total"));
    let elsewhere = app
        .client
        .get(format!("{private}/api/v1/conversations"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        elsewhere.status(),
        404,
        "the metrics listener serves nothing else"
    );
}

#[tokio::test]
async fn m7_a_client_that_trickles_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    spawn.settings.server.header_read_timeout_secs = 1;
    let app = spawn.start().await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The blank line that ends the headers never comes.
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buffer))
        .await
        .expect("the server closes the connection");
    assert!(
        read.is_err() || buffer.is_empty() || String::from_utf8_lossy(&buffer).contains("408"),
        "{}",
        String::from_utf8_lossy(&buffer)
    );
    // A prompt client is served as usual.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn m8_the_demo_tenant_exists_only_when_asked_for_and_its_token_is_private() {
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    spawn.settings.server.demo = false;
    let settings = spawn.settings.clone();
    let app = kedai::startup::Application::build(
        settings,
        kedai::startup::BuildOptions {
            models: ModelReadiness::NotRequired("tests".into()),
            handler: None,
            kb_embedder: None,
            engine: None,
            schema: kedai::store::Schema::Migrate,
        },
    )
    .await
    .unwrap();
    assert!(app.demo.is_none());
    assert!(app.store().list_tenants().await.unwrap().is_empty());
    assert!(!dir.path().join("demo-token").exists());
    drop(app);

    let demo_dir = TempDir::new().unwrap();
    let app = Spawn::new(demo_dir.path()).start().await;
    let file = demo_dir.path().join("demo-token");
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.trim(), app.token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600, "l10: the token file is the owner's");
        assert_eq!(
            mode(demo_dir.path()),
            0o700,
            "l10: the data directory is the owner's"
        );
        if !crate::helpers::on_postgres() {
            assert_eq!(mode(&demo_dir.path().join("kedai.sqlite")), 0o600);
        }
        assert_eq!(mode(&demo_dir.path().join("credentials.key")), 0o600);
    }
}

#[tokio::test]
async fn l10_erasing_a_buyer_removes_their_data_and_leaves_a_tombstone() {
    let (app, _dir) = spawn_app().await;
    app.ingest(&message(
        "demo-web",
        "e1",
        "web:erin",
        "my address is 1 Main St",
    ))
    .await;
    app.ingest(&message(
        "demo-web",
        "e2",
        "web:erin",
        "and my phone 0812345678",
    ))
    .await;
    app.ingest(&message("demo-web", "k1", "web:kept", "hello"))
        .await;
    let tenant = demo_tenant(&app).await;
    let shop = ShopKey::parse("demo-web").unwrap();
    let erased = app
        .store
        .erase_buyer(tenant.id, &shop, "web:erin", "test")
        .await
        .unwrap()
        .expect("the buyer exists");
    assert_eq!((erased.conversations, erased.messages), (1, 2));
    let list = app.get_json("/api/v1/conversations").await;
    let buyers: Vec<&str> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["buyer"]["platform_id"].as_str().unwrap())
        .collect();
    assert_eq!(buyers, ["web:kept"]);
    let audit = app.store.audit_log(tenant.id, 50).await.unwrap();
    let tombstone = audit
        .iter()
        .find(|r| r.event.action == "buyer.erased")
        .expect("a tombstone");
    assert!(!tombstone.event.details.to_string().contains("erin"));
    assert!(app
        .store
        .erase_buyer(tenant.id, &shop, "web:erin", "test")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn l6_an_order_update_without_vip_status_keeps_it() {
    let (app, _dir) = spawn_app().await;
    let order = |buyer: Value| {
        json!({
            "shop": "demo-shopee", "order_number": "SPE-1", "buyer": buyer,
            "status": "paid", "currency": "USD", "total": 10.0,
            "items": [{"sku": "A", "name": "A", "quantity": 1, "unit_price": 10.0}],
            "placed_at": "2026-11-20T09:30:00Z",
        })
    };
    let post = |body: Value| {
        app.client
            .post(app.url("/api/v1/orders"))
            .bearer_auth(&app.token)
            .json(&body)
            .send()
    };
    let first = post(order(
        json!({"id": "shopee:v", "vip": true, "lifetime_value": 900.0}),
    ));
    assert_eq!(first.await.unwrap().status(), 200);
    let second = post(order(json!({"id": "shopee:v", "name": "Vera"})));
    assert_eq!(second.await.unwrap().status(), 200);
    let ack: Value = app
        .ingest(&message("demo-shopee", "v1", "shopee:v", "hi"))
        .await
        .json()
        .await
        .unwrap();
    let detail = app
        .get_json(&format!(
            "/api/v1/conversations/{}",
            ack["conversation_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(detail["buyer_profile"]["vip"], true, "{detail:#}");
    assert_eq!(detail["buyer_profile"]["lifetime_value_cents"], 90_000);
}

/// An embedder that takes its time, so a training is still running when
/// the next request comes.
struct SlowEmbedder(kedai::kb::HashingEmbedder);

impl kedai::kb::Embedder for SlowEmbedder {
    fn model_id(&self) -> &str {
        "slow-hashing"
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn embed(
        &self,
        texts: &[&str],
        role: kedai::inference::EmbedRole,
    ) -> Result<Vec<Vec<f32>>, kedai::kb::KbError> {
        std::thread::sleep(Duration::from_millis(1500));
        self.0.embed(texts, role)
    }
}

#[tokio::test]
async fn m5_retraining_is_the_operators_one_at_a_time_and_spaced() {
    let dir = TempDir::new().unwrap();
    let intents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/understand/intents");
    let mut spawn = Spawn::new(dir.path());
    spawn.settings.pipeline.intents_dir = intents.to_string_lossy().into_owned();
    spawn.settings.pipeline.sentiment_dir = String::new();
    spawn.settings.pipeline.exemplars_poll_secs = 0;
    spawn.settings.models.dir = dir.path().join("models").to_string_lossy().into_owned();
    spawn.kb_embedder = Some(std::sync::Arc::new(SlowEmbedder(
        kedai::kb::HashingEmbedder::new(64),
    )));
    let app = spawn.start().await;
    let reload = |token: String| {
        app.client
            .post(app.url("/api/v1/understand/reload"))
            .bearer_auth(token)
            .send()
    };
    let tenant = reload(app.token.clone()).await.unwrap();
    assert_eq!(
        tenant.status(),
        403,
        "a tenant cannot retrain the shared classifiers"
    );

    // The start-up training is still running: a reload does not queue.
    let during = reload(app.operator.clone()).await.unwrap();
    assert_eq!(during.status(), 409);
    let app_ref = &app;
    crate::helpers::eventually(
        Duration::from_secs(120),
        "the first training",
        || async move {
            let report: Value = app_ref
                .get_as_operator("/readyz")
                .await
                .json()
                .await
                .unwrap();
            report["understand"]["detail"] == "trained"
        },
    )
    .await;
    let done = reload(app.operator.clone()).await.unwrap();
    assert_eq!(done.status(), 200);
    let body: Value = done.json().await.unwrap();
    assert_eq!(body["files"], json!(["intents/train.jsonl"]), "{body}");
    let soon = reload(app.operator.clone()).await.unwrap();
    assert_eq!(soon.status(), 429);
    assert!(soon.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn l10_retention_deletes_old_conversations_and_records_the_pass() {
    let (app, _dir) = spawn_app().await;
    app.ingest(&message("demo-web", "r1", "web:old", "hello"))
        .await;
    app.ingest(&message("demo-web", "r2", "web:older", "hi"))
        .await;
    let tenant = demo_tenant(&app).await;
    let kept = app
        .store
        .apply_retention(chrono::Utc::now() - chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(kept.conversations, 0, "nothing is older than a day");
    let removed = app
        .store
        .apply_retention(chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!((removed.conversations, removed.messages), (2, 2));
    let list = app.get_json("/api/v1/conversations").await;
    assert_eq!(list["conversations"], json!([]));
    let audit = app.store.audit_log(tenant.id, 50).await.unwrap();
    assert!(audit.iter().any(|r| r.event.action == "retention.applied"));
}

/// What was learned from a buyer's words goes with them: the exemplar made
/// of their corrected message, and a pending suggestion quoting them;
/// another buyer's stay.
#[tokio::test]
async fn erasing_a_buyer_removes_what_was_learned_from_their_words() {
    use kedai::store::learning::NewLearnedExemplar;
    use kedai::store::suggestions::NewFaqSuggestion;
    let (app, _dir) = spawn_app().await;
    let ack = |body: Value| {
        let app = &app;
        async move {
            let ack: Value = app.ingest(&body).await.json().await.unwrap();
            (
                ack["message_id"].as_str().unwrap().parse().unwrap(),
                ack["conversation_id"].as_str().unwrap().parse().unwrap(),
            )
        }
    };
    let (erin_message, erin_conversation) = ack(message(
        "demo-web",
        "e1",
        "web:erin",
        "can the power bank go in hand luggage?",
    ))
    .await;
    let (kept_message, kept_conversation) = ack(message(
        "demo-web",
        "k1",
        "web:kept",
        "power bank in cabin bag ok?",
    ))
    .await;
    let tenant = demo_tenant(&app).await;
    for (message_id, text) in [
        (erin_message, "can the power bank go in hand luggage?"),
        (kept_message, "power bank in cabin bag ok?"),
    ] {
        app.store
            .add_learned_exemplar(
                tenant.id,
                &NewLearnedExemplar {
                    message_id: Some(message_id),
                    text: text.into(),
                    label: "product_question".into(),
                    previous_label: Some("out_of_scope".into()),
                    kind: kedai::store::learning::ExemplarKind::Intent,
                    route_intent: None,
                    created_by: "user:agent".into(),
                },
            )
            .await
            .unwrap();
    }
    let suggestion = |key: &str, conversations| NewFaqSuggestion {
        answer_key: key.into(),
        questions: vec!["can the power bank go in hand luggage?".into()],
        answer: format!("Yes ({key})"),
        lang: "en".into(),
        asked: 2,
        conversations,
    };
    app.store
        .upsert_faq_suggestion(
            tenant.id,
            &suggestion("both", vec![erin_conversation, kept_conversation]),
        )
        .await
        .unwrap();
    app.store
        .upsert_faq_suggestion(tenant.id, &suggestion("kept", vec![kept_conversation]))
        .await
        .unwrap();

    let shop = ShopKey::parse("demo-web").unwrap();
    app.store
        .erase_buyer(tenant.id, &shop, "web:erin", "test")
        .await
        .unwrap()
        .expect("the buyer exists");
    let learned = app.store.learned_exemplars(tenant.id).await.unwrap();
    assert_eq!(
        learned.iter().map(|e| e.message_id).collect::<Vec<_>>(),
        [Some(kept_message)]
    );
    let suggestions = app.store.faq_suggestions(tenant.id, None).await.unwrap();
    assert_eq!(
        suggestions
            .iter()
            .map(|s| s.answer.as_str())
            .collect::<Vec<_>>(),
        ["Yes (kept)"]
    );
}
