//! The v1 HTTP API: ingest, conversations, replies, bad input and tenant
//! isolation.

use futures::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error bodies are JSON");
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

async fn nothing_stored(app: &TestApp) {
    let list = app.get_json("/api/v1/conversations").await;
    assert_eq!(
        list["conversations"],
        json!([]),
        "a rejected request stored something"
    );
    let counts = app.store.job_counts().await.unwrap();
    assert_eq!(counts.queued + counts.leased + counts.done + counts.dead, 0);
}

#[tokio::test]
async fn ingest_acknowledges_and_the_conversation_shows_the_message() {
    let (app, _dir) = spawn_app().await;
    let response = app
        .ingest(&message(
            "demo-shopee",
            "m-1",
            "b-1",
            "Apakah ukuran XL masih ada?",
        ))
        .await;
    assert_eq!(response.status(), 202);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["duplicate"], false);
    let conversation_id = ack["conversation_id"].as_str().unwrap();

    let detail = app
        .get_json(&format!("/api/v1/conversations/{conversation_id}"))
        .await;
    assert_eq!(detail["shop"], "demo-shopee");
    assert_eq!(detail["platform"], "shopee");
    assert_eq!(detail["status"], "open");
    assert_eq!(detail["buyer"]["platform_id"], "b-1");
    assert_eq!(detail["buyer_profile"]["name"], "Buyer b-1");
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["id"], ack["message_id"]);
    assert_eq!(messages[0]["text"], "Apakah ukuran XL masih ada?");
    assert_eq!(messages[0]["direction"], "inbound");
    assert_eq!(messages[0]["author"], "buyer");
    assert_eq!(messages[0]["sent_at"], "2026-11-21T10:15:00Z");
}

#[tokio::test]
async fn a_buyers_next_message_joins_the_open_conversation_in_order() {
    let (app, _dir) = spawn_app().await;
    let first: Value = app
        .ingest(&message("demo-lazada", "a", "b-1", "hello"))
        .await
        .json()
        .await
        .unwrap();
    let second: Value = app
        .ingest(&message("demo-lazada", "b", "b-1", "where is my order?"))
        .await
        .json()
        .await
        .unwrap();
    let other: Value = app
        .ingest(&message("demo-lazada", "c", "b-2", "hi"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["conversation_id"], second["conversation_id"]);
    assert_ne!(first["conversation_id"], other["conversation_id"]);
    let detail = app
        .get_json(&format!(
            "/api/v1/conversations/{}",
            first["conversation_id"].as_str().unwrap()
        ))
        .await;
    let texts: Vec<&str> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello", "where is my order?"]);
    assert_eq!(detail["message_count"], 2);
}

#[tokio::test]
async fn ten_concurrent_deliveries_of_one_message_store_it_once() {
    let (app, _dir) = spawn_app().await;
    let body = message("demo-tiktok", "dup-1", "b-9", "Is this waterproof?");
    let responses = join_all((0..10).map(|_| app.ingest(&body))).await;
    let mut acks = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 202);
        acks.push(response.json::<Value>().await.unwrap());
    }
    let fresh = acks.iter().filter(|a| a["duplicate"] == false).count();
    assert_eq!(
        fresh, 1,
        "exactly one delivery stores the message: {acks:?}"
    );
    assert!(acks
        .iter()
        .all(|a| a["message_id"] == acks[0]["message_id"]));
    let list = app.get_json("/api/v1/conversations").await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(list["conversations"][0]["message_count"], 1);
    // One snapshot: a worker may move the job between states meanwhile.
    let jobs = app.store.job_counts().await.unwrap();
    assert_eq!(
        jobs.queued + jobs.leased + jobs.done + jobs.dead,
        1,
        "{jobs:?}"
    );
}

#[tokio::test]
async fn card_numbers_never_reach_the_store() {
    let (app, _dir) = spawn_app().await;
    let ack: Value = app
        .ingest(&message(
            "demo-web",
            "card-1",
            "b-1",
            "please charge 4111 1111 1111 1111 again",
        ))
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
    assert_eq!(
        detail["messages"][0]["text"],
        "please charge [card number removed] again"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let (app, _dir) = spawn_app().await;
    let post_raw = |body: Vec<u8>, content_type: &'static str| {
        app.client
            .post(app.url("/api/v1/messages"))
            .bearer_auth(&app.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let (status, code, _) = error_of(
        post_raw(b"{\"shop\": ".to_vec(), "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "malformed_request"));

    let (status, _, _) = error_of(
        post_raw(
            b"{\"shop\": \"demo-web\", \"text\": \"\xff\xfe\"}".to_vec(),
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "invalid UTF-8");

    let (status, code, _) = error_of(
        post_raw(
            b"shop=demo-web".to_vec(),
            "application/x-www-form-urlencoded",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));

    let mut wrong_type = message("demo-web", "x", "b", "hi");
    wrong_type["external_id"] = json!(42);
    let (status, _, text) = error_of(app.ingest(&wrong_type).await).await;
    assert_eq!(status, 422);
    assert!(text.contains("external_id"), "{text}");

    let (status, _, text) =
        error_of(app.ingest(&json!({"shop": "demo-web", "text": "hi"})).await).await;
    assert_eq!(status, 422);
    assert!(text.contains("missing field"), "{text}");

    let mut unknown_field = message("demo-web", "x", "b", "hi");
    unknown_field["shopp"] = json!("typo");
    let (status, _, text) = error_of(app.ingest(&unknown_field).await).await;
    assert_eq!(status, 422);
    assert!(text.contains("shopp"), "{text}");

    let (status, _, text) = error_of(app.ingest(&message("demo-web", "x", "b", "   ")).await).await;
    assert_eq!((status, text.as_str()), (422, "text: must not be empty"));

    let (status, _, text) = error_of(
        app.ingest(&message("demo-web", "x", "b", &"a".repeat(5001)))
            .await,
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (422, "text: must be at most 5000 characters, got 5001")
    );

    let (status, code, _) = error_of(
        app.ingest(&message("demo-web", "x", "b", &"a".repeat(100_000)))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));

    let mut bad_time = message("demo-web", "x", "b", "hi");
    bad_time["sent_at"] = json!("yesterday");
    let (status, _, text) = error_of(app.ingest(&bad_time).await).await;
    assert_eq!(status, 422);
    assert!(
        text.starts_with("sent_at: must be an RFC 3339 timestamp"),
        "{text}"
    );

    let (status, _, text) = error_of(app.ingest(&message("", "x", "b", "hi")).await).await;
    assert_eq!((status, text.as_str()), (422, "shop: must not be empty"));

    let (status, code, text) =
        error_of(app.ingest(&message("no-such-shop", "x", "b", "hi")).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    assert!(text.contains("no-such-shop"), "{text}");

    let no_token = app
        .client
        .post(app.url("/api/v1/messages"))
        .json(&message("demo-web", "x", "b", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.headers()["www-authenticate"], "Bearer");
    let (status, code, _) = error_of(no_token).await;
    assert_eq!((status, code.as_str()), (401, "missing_token"));

    let wrong_token = app
        .client
        .post(app.url("/api/v1/messages"))
        .bearer_auth("kd_not-a-real-token")
        .json(&message("demo-web", "x", "b", "hi"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(wrong_token).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));

    nothing_stored(&app).await;
}

#[tokio::test]
async fn revoked_tokens_stop_working() {
    let (app, _dir) = spawn_app().await;
    let tenant = app.store.tenant_by_name("demo").await.unwrap().unwrap();
    let (info, token) = kedai::auth::issue_token(app.store.as_ref(), tenant.id, "temp")
        .await
        .unwrap();
    let list = |token: String| {
        app.client
            .get(app.url("/api/v1/conversations"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(list(token.clone()).await.unwrap().status(), 200);
    assert!(app.store.revoke_token(info.id).await.unwrap());
    assert_eq!(list(token).await.unwrap().status(), 401);
}

#[tokio::test]
async fn one_tenants_ids_are_invisible_to_another() {
    let (app, _dir) = spawn_app().await;
    let ack: Value = app
        .ingest(&message(
            "demo-shopee",
            "secret-1",
            "b-1",
            "my address is ...",
        ))
        .await
        .json()
        .await
        .unwrap();
    let conversation = ack["conversation_id"].as_str().unwrap();

    let other = app
        .store
        .create_tenant(&kedai::domain::TenantName::parse("other").unwrap())
        .await
        .unwrap();
    let (_, other_token) = kedai::auth::issue_token(app.store.as_ref(), other.id, "t")
        .await
        .unwrap();

    let get = app
        .client
        .get(app.url(&format!("/api/v1/conversations/{conversation}")))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404);

    let reply = app
        .client
        .post(app.url(&format!("/api/v1/conversations/{conversation}/replies")))
        .bearer_auth(&other_token)
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 404);

    let list: Value = app
        .client
        .get(app.url("/api/v1/conversations"))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["conversations"], json!([]));

    let ingest = app
        .client
        .post(app.url("/api/v1/messages"))
        .bearer_auth(&other_token)
        .json(&message("demo-shopee", "secret-2", "b-1", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ingest.status(),
        404,
        "another tenant's shop is an unknown shop"
    );

    let detail = app
        .get_json(&format!("/api/v1/conversations/{conversation}"))
        .await;
    assert_eq!(detail["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn replies_and_notes_are_stored_in_order_and_idempotent() {
    let (app, _dir) = spawn_app().await;
    let ack: Value = app
        .ingest(&message("demo-web", "q-1", "b-1", "Do you ship to Brazil?"))
        .await
        .json()
        .await
        .unwrap();
    let id = ack["conversation_id"].as_str().unwrap();
    let replies = app.url(&format!("/api/v1/conversations/{id}/replies"));
    let post = |body: Value| {
        app.client
            .post(replies.clone())
            .bearer_auth(&app.token)
            .json(&body)
            .send()
    };

    let reply =
        post(json!({"text": "Yes, 7-12 days.", "author_name": "Ana", "external_id": "r-1"}))
            .await
            .unwrap();
    assert_eq!(reply.status(), 201);
    let reply: Value = reply.json().await.unwrap();
    assert_eq!(reply["direction"], "outbound");
    assert_eq!(reply["author"], "agent");

    let again = post(json!({"text": "Yes, 7-12 days.", "external_id": "r-1"}))
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], reply["id"]);

    let note = post(json!({"text": "VIP, be nice", "internal": true}))
        .await
        .unwrap();
    assert_eq!(note.status(), 201);

    let empty = post(json!({"text": ""})).await.unwrap();
    assert_eq!(empty.status(), 422);
    let bad_author = post(json!({"text": "x", "author": "buyer"})).await.unwrap();
    assert_eq!(bad_author.status(), 422);
    let unknown = app
        .client
        .post(app.url("/api/v1/conversations/not-a-uuid/replies"))
        .bearer_auth(&app.token)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let detail = app.get_json(&format!("/api/v1/conversations/{id}")).await;
    let seen: Vec<(String, String)> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("inbound".to_owned(), "Do you ship to Brazil?".to_owned()),
            ("outbound".to_owned(), "Yes, 7-12 days.".to_owned()),
            ("note".to_owned(), "VIP, be nice".to_owned()),
        ]
    );
    let audit = app
        .store
        .audit_log(
            app.store.tenant_by_name("demo").await.unwrap().unwrap().id,
            50,
        )
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.event.action.as_str()).collect();
    assert!(
        actions.contains(&"reply.added")
            && actions.contains(&"note.added")
            && actions.contains(&"message.received"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_resolved_conversation_ends_and_the_next_message_starts_another() {
    let (app, _dir) = spawn_app().await;
    let first: Value = app
        .ingest(&message("demo-web", "s-1", "b-7", "Do you ship to Brazil?"))
        .await
        .json()
        .await
        .unwrap();
    let id = first["conversation_id"].as_str().unwrap();
    let put = |url: String, body: Value| {
        app.client
            .put(app.url(&url))
            .bearer_auth(&app.token)
            .json(&body)
            .send()
    };
    let status_url = format!("/api/v1/conversations/{id}/status");

    let bad = put(status_url.clone(), json!({"status": "closed"}))
        .await
        .unwrap();
    let (code, kind, detail) = error_of(bad).await;
    assert_eq!((code, kind.as_str()), (422, "invalid_request"), "{detail}");
    assert!(detail.contains("open, pending or resolved"), "{detail}");
    let unknown = put(
        "/api/v1/conversations/01936d6e-7d4b-7000-8000-000000000000/status".into(),
        json!({"status": "resolved"}),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 404);
    let detail = app.get_json(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(detail["status"], "open", "bad input changes nothing");

    let resolved = put(status_url, json!({"status": "resolved"}))
        .await
        .unwrap();
    assert_eq!(resolved.status(), 200);
    let resolved: Value = resolved.json().await.unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["id"], id);

    let next: Value = app
        .ingest(&message("demo-web", "s-2", "b-7", "One more question"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(next["conversation_id"], first["conversation_id"]);
}

#[tokio::test]
async fn conversation_list_filters_and_pages() {
    let (app, _dir) = spawn_app().await;
    for i in 0..7 {
        let shop = if i % 2 == 0 {
            "demo-shopee"
        } else {
            "demo-lazada"
        };
        let response = app
            .ingest(&message(shop, &format!("m-{i}"), &format!("b-{i}"), "hi"))
            .await;
        assert_eq!(response.status(), 202);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/conversations?limit=3&cursor={c}"),
            None => "/api/v1/conversations?limit=3".to_owned(),
        };
        let page = app.get_json(&path).await;
        for c in page["conversations"].as_array().unwrap() {
            seen.push(c["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7, "pages overlap: {seen:?}");

    let shopee = app.get_json("/api/v1/conversations?shop=demo-shopee").await;
    assert_eq!(shopee["conversations"].as_array().unwrap().len(), 4);
    let open = app.get_json("/api/v1/conversations?status=open").await;
    assert_eq!(open["conversations"].as_array().unwrap().len(), 7);
    let resolved = app.get_json("/api/v1/conversations?status=resolved").await;
    assert_eq!(resolved["conversations"].as_array().unwrap().len(), 0);
    let unrouted = app.get_json("/api/v1/conversations?layer=3").await;
    assert_eq!(unrouted["conversations"].as_array().unwrap().len(), 0);
    let future = app
        .get_json("/api/v1/conversations?since=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(future["conversations"].as_array().unwrap().len(), 0);

    for bad in [
        "limit=0",
        "limit=201",
        "status=closed",
        "layer=4",
        "since=yesterday",
        "cursor=zz",
    ] {
        let response = app.get(&format!("/api/v1/conversations?{bad}")).await;
        assert!(
            matches!(response.status().as_u16(), 400 | 422),
            "{bad} gave {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let (app, _dir) = spawn_app().await;
    let health: Value = app.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    let ready: Value = app.get_as_operator("/readyz").await.json().await.unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["store"]["ok"], true);
    assert!(ready["models"]["detail"]["not_required"].is_string());

    app.ingest(&message("demo-web", "m", "b", "hi")).await;
    let metrics = app.get_as_operator("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("kedai_ingest_messages_total"), "{metrics}");
    assert!(
        metrics.contains("instance=\""),
        "every metric names its replica: {metrics}"
    );
    assert!(
        metrics.contains("kedai_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("kedai_queue_jobs"), "{metrics}");

    let unknown = app.get("/api/v1/nope").await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn readiness_fails_while_required_models_are_missing() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut spawn = crate::helpers::Spawn::new(dir.path());
    spawn.models =
        kedai::http::ModelReadiness::Unavailable("multilingual-e5-small is missing".into());
    let app = spawn.start().await;
    let response = app.get_as_operator("/readyz").await;
    assert_eq!(response.status(), 503);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["ready"], false);
    assert_eq!(report["store"]["ok"], true);
    assert_eq!(
        report["models"]["detail"]["unavailable"],
        "multilingual-e5-small is missing"
    );
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "alive even when not ready"
    );
    let accepted = app.ingest(&message("demo-web", "m", "b", "hi")).await;
    assert_eq!(accepted.status(), 202, "the inbox works without models");
}
