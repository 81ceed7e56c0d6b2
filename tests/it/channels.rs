//! Marketplace webhooks, the outbox, the web-chat widget, event webhooks
//! and deadlines, against the real application on port 0; the marketplace
//! simulator against the real binary with SIGKILLs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use kedai::channels::signature::PushSigner;
use kedai::domain::{Platform, ShopKey};
use kedai::store::{CredentialsUpdate, Store};
use secrecy::SecretString;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{eventually, Spawn, TestApp};

const CALLBACK: &str = "https://kedai.example/webhooks/shopee";

/// Stands in for the reply pipeline: decides nothing, so what the
/// channels' own step does with a message (orders, pictures) shows alone.
struct NoPipeline;

#[async_trait::async_trait]
impl kedai::queue::JobHandler for NoPipeline {
    async fn handle(
        &self,
        _: &kedai::store::Job,
    ) -> Result<kedai::queue::Handled, kedai::queue::JobError> {
        Ok(kedai::queue::Handled::Done)
    }

    async fn give_up(
        &self,
        _: &kedai::store::Job,
        _: &kedai::store::GiveUp,
    ) -> Result<(), kedai::queue::JobError> {
        Ok(())
    }
}

/// A channel-ready test server: fast retries and polls.
async fn start() -> (TestApp, TempDir) {
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    spawn.handler = Some(std::sync::Arc::new(NoPipeline));
    let c = &mut spawn.settings.channels;
    c.outbox_poll_ms = 50;
    c.backoff_base_ms = 50;
    c.backoff_max_ms = 200;
    c.max_attempts = 3;
    c.events_poll_ms = 50;
    c.reconcile_on_start = false;
    (spawn.start().await, dir)
}

/// Connects the demo shop of `platform` to account `account`, with its API
/// at `api_base`, and waits for the server to see it.
pub(crate) async fn connect(app: &TestApp, platform: Platform, account: &str, api_base: &str) {
    let credentials = match platform {
        Platform::Shopee => json!({"partner_id": 2001887, "partner_key": "partner-key",
            "callback_url": CALLBACK, "shop_id": account.parse::<u64>().unwrap(),
            "access_token": "tok", "api_base": api_base}),
        Platform::Lazada => json!({"app_key": "123456", "app_secret": "lazada-secret",
            "seller_id": account, "access_token": "tok", "api_base": api_base}),
        _ => json!({"app_key": "29a39d", "app_secret": "tiktok-secret", "shop_id": account,
            "shop_cipher": "cipher", "access_token": "tok", "api_base": api_base}),
    };
    let tenant = app.store.tenant_by_name("demo").await.unwrap().unwrap();
    let key = ShopKey::parse(&format!("demo-{platform}")).unwrap();
    let shop = app
        .store
        .shop_by_key(tenant.id, &key)
        .await
        .unwrap()
        .unwrap();
    app.store
        .set_credentials(
            tenant.id,
            shop.id,
            &CredentialsUpdate {
                credentials: SecretString::from(credentials.to_string()),
                account_id: Some(account.to_owned()),
            },
            "test",
        )
        .await
        .unwrap();
    // The server re-reads shops at most twice a second on a miss.
    tokio::time::sleep(Duration::from_millis(600)).await;
}

pub(crate) fn signer(platform: Platform) -> PushSigner {
    match platform {
        Platform::Shopee => PushSigner::shopee("partner-key".into(), CALLBACK),
        Platform::Lazada => PushSigner::app("lazada-secret".into(), "123456"),
        _ => PushSigner::app("tiktok-secret".into(), "29a39d"),
    }
}

/// A buyer's text message push in the platform's envelope.
pub(crate) fn push(
    platform: Platform,
    account: &str,
    id: &str,
    buyer: &str,
    text: &str,
    at: i64,
) -> String {
    match platform {
        Platform::Shopee => json!({"msg_id": "", "shop_id": account.parse::<u64>().unwrap(), "code": 10,
            "timestamp": at, "data": {"type": "message", "content": {
                "message_id": id, "conversation_id": format!("c-{buyer}"), "shop_id": 1,
                "from_id": buyer.parse::<u64>().unwrap(), "from_user_name": "siti",
                "to_id": 9, "to_user_name": "shop", "message_type": "text",
                "content": {"text": text}, "created_timestamp": at}}})
        .to_string(),
        Platform::Lazada => json!({"seller_id": account, "message_type": 2, "timestamp": at * 1000,
            "data": {"session_id": format!("s-{buyer}"), "message_id": id,
                "content": json!({"txt": text}).to_string(), "from_account_id": buyer,
                "from_account_type": 1, "to_account_id": account, "send_time": at * 1000,
                "template_id": 1, "type": 1, "status": 0}})
        .to_string(),
        _ => json!({"type": 14, "tts_notification_id": format!("n-{id}"), "shop_id": account,
            "timestamp": at, "data": {"content": json!({"content": text}).to_string(),
                "conversation_id": format!("c-{buyer}"), "create_time": at, "is_visible": true,
                "message_id": id, "type": "TEXT", "sender": {"im_user_id": buyer, "role": "BUYER"}}})
        .to_string(),
    }
}

pub(crate) async fn deliver(
    app: &TestApp,
    platform: Platform,
    body: &str,
    signature: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/webhooks/{platform}")))
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("Authorization", signature);
    }
    request.send().await.unwrap()
}

pub(crate) async fn conversations(app: &TestApp) -> Vec<Value> {
    app.get_json("/api/v1/conversations?limit=200").await["conversations"]
        .as_array()
        .unwrap()
        .clone()
}

async fn detail(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/api/v1/conversations/{id}")).await
}

/// Rows a push could have written: messages, jobs, audit events.
async fn footprint(store: &Arc<dyn Store>) -> (i64, i64, usize) {
    let tenant = store.tenant_by_name("demo").await.unwrap().unwrap();
    let jobs = store.job_counts().await.unwrap();
    let list = store
        .list_conversations(
            tenant.id,
            &kedai::store::ConversationFilter {
                limit: 200,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let messages = list.items.iter().map(|c| c.message_count).sum();
    let audit = store.audit_log(tenant.id, 10_000).await.unwrap().len();
    (
        messages,
        jobs.queued + jobs.leased + jobs.done + jobs.dead,
        audit,
    )
}

pub(crate) const ACCOUNTS: [(Platform, &str, &str); 3] = [
    (Platform::Shopee, "727720655", "165105353"),
    (Platform::Lazada, "1234567", "1891549323"),
    (
        Platform::Tiktok,
        "7494049642642441621",
        "707885565181165594",
    ),
];

#[tokio::test]
async fn a_signed_push_is_stored_once_and_acknowledged_with_an_empty_body() {
    let (app, _dir) = start().await;
    for (platform, account, buyer) in ACCOUNTS {
        connect(&app, platform, account, "http://127.0.0.1:9").await;
        let body = push(
            platform,
            account,
            &format!("m-{platform}"),
            buyer,
            "Masih ada XL?",
            Utc::now().timestamp(),
        );
        let signature = signer(platform).sign(body.as_bytes());
        let response = deliver(&app, platform, &body, Some(&signature)).await;
        assert_eq!(response.status(), 200, "{platform}");
        assert_eq!(
            response.bytes().await.unwrap().len(),
            0,
            "{platform}: empty body"
        );
        let again = deliver(&app, platform, &body, Some(&signature)).await;
        assert_eq!(
            again.status(),
            200,
            "{platform}: a redelivery is acknowledged"
        );
    }
    let list = conversations(&app).await;
    assert_eq!(list.len(), 3, "{list:?}");
    for c in &list {
        assert_eq!(c["message_count"], 1, "a redelivery stores nothing: {c}");
        let d = detail(&app, c["id"].as_str().unwrap()).await;
        assert_eq!(d["messages"][0]["text"], "Masih ada XL?");
        assert_eq!(d["messages"][0]["author"], "buyer");
        assert_eq!(d["messages"][0]["kind"], "text");
    }
}

#[tokio::test]
async fn bad_signatures_and_replays_get_401_and_change_nothing() {
    let (app, _dir) = start().await;
    for (platform, account, _) in ACCOUNTS {
        connect(&app, platform, account, "http://127.0.0.1:9").await;
    }
    let before = footprint(&app.store).await;
    for (platform, account, buyer) in ACCOUNTS {
        let now = Utc::now().timestamp();
        let body = push(platform, account, "m-1", buyer, "hello", now);
        let good = signer(platform).sign(body.as_bytes());
        let tampered = body.replace("hello", "hellp");
        let reserialised =
            serde_json::to_string_pretty(&serde_json::from_str::<Value>(&body).unwrap()).unwrap();
        let wrong_key = PushSigner::app("not-the-secret".into(), "29a39d").sign(body.as_bytes());
        let old = push(platform, account, "m-old", buyer, "hello", now - 3 * 86_400);
        let old_signature = signer(platform).sign(old.as_bytes());
        let cases: [(&str, &str, Option<&str>); 7] = [
            ("missing header", &body, None),
            ("not hex", &body, Some("Bearer abc")),
            ("one byte changed", &tampered, Some(&good)),
            ("wrong key", &body, Some(&wrong_key)),
            ("re-serialised body", &reserialised, Some(&good)),
            ("replay of an old push", &old, Some(&old_signature)),
            ("empty signature", &body, Some(" ")),
        ];
        for (name, body, signature) in cases {
            let response = deliver(&app, platform, body, signature).await;
            assert_eq!(response.status(), 401, "{platform}: {name}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(
                error["error"]["code"], "bad_signature",
                "{platform}: {name}"
            );
        }
    }
    assert_eq!(
        footprint(&app.store).await,
        before,
        "a refused push writes nothing"
    );
}

#[tokio::test]
async fn a_validly_signed_push_for_a_shop_kedai_does_not_serve_is_404() {
    let (app, _dir) = start().await;
    connect(&app, Platform::Tiktok, "111", "http://127.0.0.1:9").await;
    let body = push(
        Platform::Tiktok,
        "222",
        "m-1",
        "5",
        "hi",
        Utc::now().timestamp(),
    );
    let response = deliver(
        &app,
        Platform::Tiktok,
        &body,
        Some(&signer(Platform::Tiktok).sign(body.as_bytes())),
    )
    .await;
    assert_eq!(response.status(), 404);
    let malformed = "{\"type\": 14, \"shop_id\": \"111\"";
    let response = deliver(
        &app,
        Platform::Tiktok,
        malformed,
        Some(&signer(Platform::Tiktok).sign(malformed.as_bytes())),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(conversations(&app).await.is_empty());
}

#[tokio::test]
async fn late_pushes_take_their_place_by_the_platforms_timestamps() {
    let (app, _dir) = start().await;
    let (platform, account, buyer) = ACCOUNTS[1];
    connect(&app, platform, account, "http://127.0.0.1:9").await;
    let t = Utc::now().timestamp() - 60;
    for (id, text, at) in [
        ("m-2", "second", t + 10),
        ("m-3", "third", t + 20),
        ("m-1", "first", t),
    ] {
        let body = push(platform, account, id, buyer, text, at);
        let status = deliver(
            &app,
            platform,
            &body,
            Some(&signer(platform).sign(body.as_bytes())),
        )
        .await
        .status();
        assert_eq!(status, 200);
    }
    let list = conversations(&app).await;
    let d = detail(&app, list[0]["id"].as_str().unwrap()).await;
    let texts: Vec<&str> = d["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["first", "second", "third"]);
}

#[tokio::test]
async fn the_sellers_own_messages_are_agent_messages_and_pictures_go_to_a_human() {
    let (app, _dir) = start().await;
    let (platform, account, buyer) = ACCOUNTS[0];
    connect(&app, platform, account, "http://127.0.0.1:9").await;
    let at = Utc::now().timestamp();
    let picture = json!({"shop_id": 727720655, "code": 10, "timestamp": at, "data": {"type": "message",
        "content": {"message_id": "m-pic", "conversation_id": "c-1", "shop_id": 1, "from_id": 165105353,
            "from_user_name": "siti", "to_id": 9, "message_type": "image",
            "content": {"image_url": "https://cf.shopee.co.id/file/abc<script>"}, "created_timestamp": at}}})
    .to_string();
    let seller = json!({"shop_id": 727720655, "code": 10, "timestamp": at, "data": {"type": "message",
        "content": {"message_id": "m-seller", "conversation_id": "c-1", "from_shop_id": 727720655,
            "from_id": 9, "from_user_name": "Demo shop", "to_id": 165105353, "to_user_name": "siti",
            "message_type": "text", "content": {"text": "Halo kak, kami cek dulu ya"}, "created_timestamp": at + 1}}})
    .to_string();
    for body in [&picture, &seller] {
        let status = deliver(
            &app,
            platform,
            body,
            Some(&signer(platform).sign(body.as_bytes())),
        )
        .await
        .status();
        assert_eq!(status, 200);
    }
    let list = conversations(&app).await;
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_str().unwrap().to_owned();
    eventually(
        Duration::from_secs(10),
        "the picture is handed to a human",
        || {
            let app = &app;
            let id = id.clone();
            async move {
                detail(app, &id).await["decisions"]
                    .as_array()
                    .is_some_and(|d| !d.is_empty())
            }
        },
    )
    .await;
    let d = detail(&app, &id).await;
    let pic = &d["messages"][0];
    assert_eq!(pic["kind"], "image");
    assert_eq!(
        pic["attachment"]["url"],
        "https://cf.shopee.co.id/file/abc<script>"
    );
    assert_eq!(
        pic["text"],
        "[image] https://cf.shopee.co.id/file/abc<script>"
    );
    let seller_message = &d["messages"][1];
    assert_eq!(seller_message["direction"], "outbound");
    assert_eq!(seller_message["author"], "agent");
    assert_eq!(seller_message["author_name"], "Demo shop");
    let decisions = d["decisions"].as_array().unwrap();
    assert_eq!(
        decisions.len(),
        1,
        "only the buyer's message is decided: {decisions:?}"
    );
    assert_eq!(decisions[0]["layer"], 3);
    assert_eq!(
        decisions[0]["trace"]["reasons"][0]["reason"],
        "non_text_message"
    );
    assert_eq!(d["status"], "pending");
    assert_eq!(buyer, d["buyer_profile"]["platform_id"]);
}

/// A fake TikTok Shop send API: records what arrives; `refuse` makes it
/// answer with a conversation-rules error.
#[derive(Clone, Default)]
pub(crate) struct FakeTiktok {
    pub(crate) sent: Arc<Mutex<Vec<(String, String, String)>>>,
    refuse: Arc<std::sync::atomic::AtomicBool>,
    /// Milliseconds each send takes.
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Answer the next send with 503 (overloaded, nothing sent).
    fail_next: Arc<std::sync::atomic::AtomicBool>,
}

async fn fake_send(
    State(fake): State<FakeTiktok>,
    Path(thread): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let delay = fake.delay_ms.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    if fake
        .fail_next
        .swap(false, std::sync::atomic::Ordering::Relaxed)
    {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    fake_answer(fake, thread, headers, body).into_response()
}

fn fake_answer(fake: FakeTiktok, thread: String, headers: HeaderMap, body: Value) -> Json<Value> {
    if fake.refuse.load(std::sync::atomic::Ordering::Relaxed) {
        return Json(
            json!({"code": 45109001, "message": "Unable to send messages due to conversation rules"}),
        );
    }
    let content: Value = serde_json::from_str(body["content"].as_str().unwrap_or("{}")).unwrap();
    let key = headers
        .get("X-Kedai-Idempotency-Key")
        .map(|k| k.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let mut sent = fake.sent.lock().unwrap();
    sent.push((
        thread,
        content["content"].as_str().unwrap_or("").to_owned(),
        key,
    ));
    Json(
        json!({"code": 0, "message": "Success", "data": {"message_id": format!("sent-{}", sent.len())}}),
    )
}

pub(crate) async fn serve_fake() -> (FakeTiktok, String) {
    let fake = FakeTiktok::default();
    let router = Router::new()
        .route(
            "/customer_service/202309/conversations/{id}/messages",
            post(fake_send),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (fake, base)
}

async fn tiktok_conversation(app: &TestApp) -> String {
    let (platform, account, buyer) = ACCOUNTS[2];
    let body = push(
        platform,
        account,
        "m-q",
        buyer,
        "Apakah ada warna hitam?",
        Utc::now().timestamp(),
    );
    assert_eq!(
        deliver(
            app,
            platform,
            &body,
            Some(&signer(platform).sign(body.as_bytes()))
        )
        .await
        .status(),
        200
    );
    conversations(app).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn reply(app: &TestApp, conversation: &str, text: &str, external: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/v1/conversations/{conversation}/replies")))
        .bearer_auth(&app.token)
        .json(&json!({"text": text, "external_id": external}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn replies_leave_through_the_platform_once_in_parts_within_its_limit() {
    let (app, _dir) = start().await;
    let (fake, base) = serve_fake().await;
    connect(&app, Platform::Tiktok, ACCOUNTS[2].1, &base).await;
    let conversation = tiktok_conversation(&app).await;
    let long = "Ukuran XL tersedia dalam warna hitam dan putih. ".repeat(60);
    assert_eq!(
        reply(&app, &conversation, &long, "agent-1").await.status(),
        201
    );
    assert_eq!(
        reply(&app, &conversation, &long, "agent-1").await.status(),
        200,
        "a repeat"
    );
    eventually(Duration::from_secs(15), "both parts are sent", || {
        let fake = fake.clone();
        async move { fake.sent.lock().unwrap().len() >= 2 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = fake.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "sent once, in two parts: {sent:?}");
    assert!(sent
        .iter()
        .all(|(thread, text, _)| thread == "c-707885565181165594" && text.chars().count() <= 2000));
    assert_eq!(
        format!("{} {}", sent[0].1, sent[1].1)
            .split_whitespace()
            .count(),
        long.split_whitespace().count()
    );
    let message = detail(&app, &conversation).await["messages"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sent[0].2, format!("reply:{message}#0"));
    assert_eq!(sent[1].2, format!("reply:{message}#1"));
    let delivery = &detail(&app, &conversation).await["messages"][1]["delivery"];
    assert_eq!(delivery["state"], "delivered", "{delivery}");
    assert_eq!(delivery["parts_sent"], 2, "{delivery}");
    let log = app
        .store
        .audit_log(
            app.store.tenant_by_name("demo").await.unwrap().unwrap().id,
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        log.iter()
            .filter(|r| r.event.action == "reply.sent")
            .count(),
        1
    );
}

/// Found by the simulator: a late copy of an earlier reply, pushed back
/// while a reply with the same words was being sent, was taken for the one
/// in flight, which was then never sent.
#[tokio::test]
async fn a_late_echo_of_an_earlier_reply_is_not_taken_for_the_one_in_flight() {
    let (app, _dir) = start().await;
    let (fake, base) = serve_fake().await;
    connect(&app, Platform::Tiktok, ACCOUNTS[2].1, &base).await;
    let conversation = tiktok_conversation(&app).await;
    let words = "Baik kak, kami cek dulu ya.";
    assert_eq!(
        reply(&app, &conversation, words, "agent-1").await.status(),
        201
    );
    eventually(Duration::from_secs(10), "the first reply is sent", || {
        let fake = fake.clone();
        async move { fake.sent.lock().unwrap().len() == 1 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The second reply's first attempt is slow and then fails (nothing
    // sent); its retry must still send it.
    fake.delay_ms
        .store(1500, std::sync::atomic::Ordering::Relaxed);
    fake.fail_next
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        reply(&app, &conversation, words, "agent-2").await.status(),
        201
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // TikTok Shop pushes the first reply back (a retry, late) while the
    // second is on its way.
    let (_, account, buyer) = ACCOUNTS[2];
    let echo = json!({"type": 14, "tts_notification_id": "n-echo", "shop_id": account,
        "timestamp": Utc::now().timestamp(), "data": {"content": json!({"content": words}).to_string(),
            "conversation_id": format!("c-{buyer}"), "create_time": Utc::now().timestamp(),
            "is_visible": true, "message_id": "sent-1", "type": "TEXT",
            "sender": {"im_user_id": account, "role": "CUSTOMER_SERVICE"}}})
    .to_string();
    let status = deliver(
        &app,
        Platform::Tiktok,
        &echo,
        Some(&signer(Platform::Tiktok).sign(echo.as_bytes())),
    )
    .await
    .status();
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(10),
        "the second reply is sent too",
        || {
            let fake = fake.clone();
            async move { fake.sent.lock().unwrap().len() == 2 }
        },
    )
    .await;
    let d = detail(&app, &conversation).await;
    let messages = d["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        3,
        "the buyer's and two replies, no copy: {messages:?}"
    );
}

#[tokio::test]
async fn a_reply_the_platform_refuses_is_handed_to_a_human_with_the_reason() {
    let (app, _dir) = start().await;
    let (fake, base) = serve_fake().await;
    fake.refuse
        .store(true, std::sync::atomic::Ordering::Relaxed);
    connect(&app, Platform::Tiktok, ACCOUNTS[2].1, &base).await;
    let conversation = tiktok_conversation(&app).await;
    assert_eq!(
        reply(
            &app,
            &conversation,
            "Ada kak, warna hitam ready.",
            "agent-1"
        )
        .await
        .status(),
        201
    );
    eventually(
        Duration::from_secs(15),
        "the conversation goes to a human",
        || {
            let (app, id) = (&app, conversation.clone());
            async move { detail(app, &id).await["messages"].as_array().unwrap().len() == 3 }
        },
    )
    .await;
    let d = detail(&app, &conversation).await;
    assert_eq!(d["status"], "pending");
    assert_eq!(d["layer"], 3);
    let note = &d["messages"][2];
    assert_eq!(note["direction"], "note");
    let text = note["text"].as_str().unwrap();
    assert!(
        text.contains("could not be delivered") && text.contains("45109001"),
        "{text}"
    );
    let delivery = &d["messages"][1]["delivery"];
    assert_eq!(delivery["state"], "failed", "{delivery}");
    assert!(delivery["last_error"]
        .as_str()
        .unwrap()
        .contains("45109001"));
    assert_eq!(
        d["messages"][0]["delivery"],
        Value::Null,
        "buyer messages have none"
    );
}

#[tokio::test]
async fn a_human_reply_with_contact_details_gets_a_clear_422_on_a_marketplace() {
    let (app, _dir) = start().await;
    connect(&app, Platform::Tiktok, ACCOUNTS[2].1, "http://127.0.0.1:9").await;
    let conversation = tiktok_conversation(&app).await;
    let response = reply(
        &app,
        &conversation,
        "WhatsApp me on +62 812 3456 7890",
        "a-1",
    )
    .await;
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("off-platform contact details"),
        "{message}"
    );
    assert_eq!(
        detail(&app, &conversation).await["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // An internal note may say anything; the buyer never sees it.
    let note = app
        .client
        .post(app.url(&format!("/api/v1/conversations/{conversation}/replies")))
        .bearer_auth(&app.token)
        .json(&json!({"text": "buyer asked for +62 812 3456 7890", "internal": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(note.status(), 201);
}

async fn widget_session(app: &TestApp) -> (String, Value) {
    let page = app.client.get(app.url("/chat/demo")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
    let shop = html
        .split("data-kedai-shop=\"")
        .nth(2)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let session: Value = app
        .client
        .post(app.url("/widget/v1/sessions"))
        .json(&json!({"shop": shop, "name": "Rina"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (shop, session)
}

#[tokio::test]
async fn widget_visitors_see_replies_live_over_server_sent_events() {
    let (app, _dir) = start().await;
    let (_, session) = widget_session(&app).await;
    let token = session["token"].as_str().unwrap().to_owned();
    let sent = app
        .client
        .post(app.url("/widget/v1/messages"))
        .bearer_auth(&token)
        .json(&json!({"text": "<b>do you ship to Bali?</b>", "client_id": "c-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let mut events = app
        .client
        .get(app.url("/widget/v1/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let conversation = conversations(&app).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        detail(&app, &conversation).await["buyer_profile"]["name"],
        "Rina"
    );
    assert_eq!(
        reply(
            &app,
            &conversation,
            "Yes, we ship to Bali in 2-4 days.",
            "agent-1"
        )
        .await
        .status(),
        201
    );
    let mut stream = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !stream.contains("we ship to Bali") {
        let chunk = tokio::time::timeout_at(deadline, events.chunk())
            .await
            .expect("the reply arrives")
            .unwrap()
            .unwrap();
        stream.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(stream.contains("event: message"), "{stream}");
    assert!(
        stream.contains(r#""from":"visitor""#) && stream.contains(r#""from":"shop""#),
        "{stream}"
    );
    assert!(
        stream.contains("<b>do you ship to Bali?</b>"),
        "the text is data; the widget shows it with textContent"
    );

    let bad = app
        .client
        .get(app.url("/widget/v1/events"))
        .bearer_auth("wgt_nope.nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let forged = token.rsplit_once('.').unwrap().0.to_owned() + ".00";
    let bad = app
        .client
        .post(app.url("/widget/v1/messages"))
        .bearer_auth(forged)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let empty = app
        .client
        .post(app.url("/widget/v1/messages"))
        .bearer_auth(&token)
        .json(&json!({"text": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 422);
    let script = app.client.get(app.url("/widget.js")).send().await.unwrap();
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    let script = script.text().await.unwrap();
    assert!(script.contains("textContent") && !script.contains("innerHTML"));
}

#[tokio::test]
async fn signed_events_reach_an_integration_endpoint() {
    let (app, _dir) = start().await;
    let received: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
    let sink = received.clone();
    let router = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let tenant = app.store.tenant_by_name("demo").await.unwrap().unwrap();
    app.store
        .add_endpoint(
            tenant.id,
            &url,
            &SecretString::from("whsec_test"),
            &["message.received".to_string()],
        )
        .await
        .unwrap();
    let ack = app
        .ingest(&crate::helpers::message("demo-web", "m-1", "b-1", "hi"))
        .await;
    assert_eq!(ack.status(), 202);
    eventually(Duration::from_secs(10), "the event arrives", || {
        let received = received.clone();
        async move { !received.lock().unwrap().is_empty() }
    })
    .await;
    let (headers, body) = received.lock().unwrap()[0].clone();
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "message.received");
    assert_eq!(event["data"]["shop"], "demo-web");
    let timestamp: i64 = headers["x-kedai-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((Utc::now().timestamp() - timestamp).abs() < 60);
    let expected = kedai::channels::signature::event("whsec_test", timestamp, body.as_bytes());
    assert_eq!(headers["x-kedai-signature"].to_str().unwrap(), expected);
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "only the subscribed type"
    );
}

#[tokio::test]
async fn conversations_near_their_deadline_are_flagged_and_acknowledged() {
    let dir = TempDir::new().unwrap();
    let mut spawn = Spawn::new(dir.path());
    let c = &mut spawn.settings.channels;
    c.deadline_scan_secs = 1;
    c.outbox_poll_ms = 50;
    c.web.response_deadline_hours = 0.5;
    c.at_risk_before_mins = 40;
    c.auto_ack_before_mins = 35;
    let app = spawn.start().await;
    let mut message =
        crate::helpers::message("demo-web", "m-1", "b-1", "Apakah bisa kirim ke Bali?");
    message["sent_at"] = json!(Utc::now().to_rfc3339());
    assert_eq!(app.ingest(&message).await.status(), 202);
    eventually(
        Duration::from_secs(15),
        "the conversation is at risk",
        || {
            let app = &app;
            async move {
                let list = app.get_json("/api/v1/deadlines").await;
                list["at_risk"]
                    .as_array()
                    .is_some_and(|l| l.len() == 1 && !l[0]["acknowledged_at"].is_null())
            }
        },
    )
    .await;
    let conversation = conversations(&app).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = detail(&app, &conversation).await;
    let ack = &d["messages"][1];
    assert_eq!(ack["author"], "system");
    assert!(ack["text"]
        .as_str()
        .unwrap()
        .starts_with("Thank you for your message!"));
    // A person's answer clears the flag; the acknowledgement did not.
    assert_eq!(
        reply(&app, &conversation, "Bisa kak, 2-4 hari.", "agent-1")
            .await
            .status(),
        201
    );
    let list = app.get_json("/api/v1/deadlines").await;
    assert_eq!(list["at_risk"].as_array().unwrap().len(), 0);
}

#[test]
fn simulate_keeps_every_guarantee_through_duplicates_drops_and_sigkills() {
    let dir = TempDir::new().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kedai"))
        .args(["--json", "simulate", "--deliveries", "300", "--rate", "30"])
        .args([
            "--duplicate-rate",
            "0.1",
            "--drop-rate",
            "0.05",
            "--reorder-window",
            "8",
        ])
        .args([
            "--kill-every",
            "2",
            "--agent-reply-rate",
            "0.5",
            "--seller-rate",
            "0.05",
        ])
        .args(["--models", "none", "--settle-secs", "90", "--keep"])
        .arg(dir.path())
        .env("KEDAI__LOG__FILTER", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.lines().next().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&output.stderr)));
    assert!(report["kills"].as_u64().unwrap() >= 3, "{report}");
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for (platform, r) in report["platforms"].as_object().unwrap() {
        for key in [
            "lost",
            "lost_acked",
            "duplicate_messages",
            "duplicate_replies",
            "replies_missing",
            "refused",
            "misordered",
            "history_wrong",
        ] {
            assert_eq!(r[key], 0, "{platform} {key}: {r}");
        }
        assert!(
            r["history_lines"].as_u64().unwrap() > 0,
            "{platform}: the pulled history has the buyers' messages: {r}"
        );
        assert_eq!(
            r["recovered"], r["dropped"],
            "{platform}: reconciliation recovers every dropped push"
        );
        assert!(r["stored"].as_u64().unwrap() > 0);
        for key in [
            "replies_sent",
            "dropped",
            "seller_messages_as_agent",
            "echoes",
        ] {
            *totals.entry(key).or_default() += r[key].as_u64().unwrap();
        }
    }
    assert!(
        totals.values().all(|n| *n > 0),
        "every path was exercised: {totals:?}"
    );
    assert_eq!(report["ok"], true);
    assert!(output.status.success());
}

fn kedai_cli(
    data_dir: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kedai"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("KEDAI__LOG__FILTER", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn shops_are_connected_from_the_command_line_and_their_secrets_never_printed() {
    let dir = TempDir::new().unwrap();
    let ok = |output: std::process::Output| -> Value {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    ok(kedai_cli(dir.path(), &["--json", "migrate"], None));
    ok(kedai_cli(
        dir.path(),
        &["--json", "tenant", "create", "acme"],
        None,
    ));
    let credentials = r#"{"app_key": "29a39d", "app_secret": "very-secret-value", "shop_id": "7494",
        "shop_cipher": "GCP_x", "access_token": "token-secret-value"}"#;
    let file = dir.path().join("tiktok.json");
    std::fs::write(&file, credentials).unwrap();
    let added = ok(kedai_cli(
        dir.path(),
        &[
            "--json",
            "shop",
            "add",
            "--tenant",
            "acme",
            "--platform",
            "tiktok",
            "--id",
            "acme-my",
            "--credentials",
            file.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(added["connected"], true);
    assert_eq!(added["account_id"], "7494");
    let bad = kedai_cli(
        dir.path(),
        &[
            "shop",
            "set",
            "--tenant",
            "acme",
            "--id",
            "acme-my",
            "--credentials",
            "-",
        ],
        Some(r#"{"app_key": "29a39d"}"#),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing field `app_secret`"));
    let replaced = ok(kedai_cli(
        dir.path(),
        &[
            "--json",
            "shop",
            "set",
            "--tenant",
            "acme",
            "--id",
            "acme-my",
            "--credentials",
            "-",
        ],
        Some(&credentials.replace("7494", "7495")),
    ));
    assert_eq!(replaced["account_id"], "7495");
    ok(kedai_cli(
        dir.path(),
        &[
            "--json",
            "shop",
            "add",
            "--tenant",
            "acme",
            "--platform",
            "web",
            "--id",
            "acme-web",
        ],
        None,
    ));
    let listed = kedai_cli(
        dir.path(),
        &["--json", "shop", "list", "--tenant", "acme"],
        None,
    );
    let human = kedai_cli(dir.path(), &["shop", "list", "--tenant", "acme"], None);
    for output in [&listed, &human] {
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            !text.contains("very-secret-value") && !text.contains("token-secret-value"),
            "{text}"
        );
    }
    let shops = ok(listed)["shops"].as_array().unwrap().clone();
    assert_eq!(shops.len(), 2);
    assert!(shops.iter().all(|s| s["connected"] == true), "{shops:?}");

    let events = ok(kedai_cli(
        dir.path(),
        &[
            "--json",
            "events",
            "add",
            "--tenant",
            "acme",
            "--url",
            "https://erp.example/hook",
            "--event",
            "reply.sent",
        ],
        None,
    ));
    let secret = events["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let listed = kedai_cli(
        dir.path(),
        &["--json", "events", "list", "--tenant", "acme"],
        None,
    );
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&secret));
    let unknown = kedai_cli(
        dir.path(),
        &[
            "events",
            "add",
            "--tenant",
            "acme",
            "--url",
            "https://x",
            "--event",
            "nope",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--event must be one of"));

    let csv = dir.path().join("orders.csv");
    std::fs::write(
        &csv,
        "shop,order_number,status,currency,total,placed_at,sku,item_name,quantity,unit_price\n\
         acme-my,576461413038785752,in_transit,MYR,59.9,2026-11-20T09:30:00Z,CAP-1,Cap,1,59.9\n",
    )
    .unwrap();
    let imported = ok(kedai_cli(
        dir.path(),
        &[
            "--json",
            "orders",
            "import",
            csv.to_str().unwrap(),
            "--tenant",
            "acme",
        ],
        None,
    ));
    assert_eq!(imported["orders"], 1);
    std::fs::write(&csv, "shop,order_number,status,currency,total,placed_at,sku,item_name,quantity,unit_price\nnope,1,paid,MYR,1,2026-11-20T09:30:00Z,A,A,1,1\n").unwrap();
    let refused = kedai_cli(
        dir.path(),
        &[
            "orders",
            "import",
            csv.to_str().unwrap(),
            "--tenant",
            "acme",
        ],
        None,
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("orders.csv:2: unknown shop \"nope\"")
    );
}
