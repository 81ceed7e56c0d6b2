//! The workbench over HTTP, and the helpers its tests share: sessions,
//! CSRF, throttling, shop access, escaping, replies, approvals.
//! (`web_pages.rs` covers each page's features; `browser.rs` drives the
//! same pages in Chromium.)

use std::time::Duration;

use kedai::domain::{ConversationId, ConversationStatus, Layer, MessageId, TenantId};
use kedai::store::users::{Email, NewUser, Role, ShopAccess};
use kedai::store::NewDecision;
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};

pub const PASSWORD: &str = "a long enough password";

/// Creates a user of the demo tenant; `shops`: keys, or every shop.
pub async fn create_user(app: &TestApp, email: &str, role: Role, shops: Option<&[&str]>) {
    let store = &app.store;
    let tenant = store.tenant_by_name("demo").await.unwrap().unwrap();
    let access = match shops {
        None => ShopAccess::All,
        Some(keys) => {
            let all = store.list_shops(tenant.id).await.unwrap();
            ShopAccess::Only(
                keys.iter()
                    .map(|k| all.iter().find(|s| s.key.as_str() == *k).unwrap().id)
                    .collect(),
            )
        }
    };
    store
        .create_user(
            &NewUser {
                tenant_id: tenant.id,
                email: Email::parse(email).unwrap(),
                display_name: email.split('@').next().unwrap().to_owned(),
                role,
                password_hash: kedai::web::session::hash_password(PASSWORD).unwrap(),
                language: "en".into(),
                shops: access,
            },
            "test",
        )
        .await
        .unwrap();
}

pub async fn demo_tenant(app: &TestApp) -> TenantId {
    app.store.tenant_by_name("demo").await.unwrap().unwrap().id
}

/// A browser-like client: keeps the session cookie, reads CSRF tokens.
pub struct Desk {
    pub base: String,
    pub client: reqwest::Client,
    pub cookie: String,
}

pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("the page has a form") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

impl Desk {
    pub fn new(app: &TestApp) -> Desk {
        Desk {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            cookie: String::new(),
        }
    }

    pub async fn login(app: &TestApp, email: &str) -> Desk {
        Desk::login_with(app, email, PASSWORD).await
    }

    pub async fn login_with(app: &TestApp, email: &str, password: &str) -> Desk {
        let mut desk = Desk::new(app);
        let response = desk.try_login(email, password).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "login of {email}");
        desk.cookie = session_cookie(&response).expect("a session cookie");
        desk
    }

    pub async fn try_login(&self, email: &str, password: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/app/login", self.base))
            .form(&[
                ("email", email),
                ("password", password),
                ("next", "/app/inbox"),
            ])
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    pub async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.unwrap()
    }

    /// Posts a form with the session's CSRF token (read from `from`).
    pub async fn post(&self, path: &str, from: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let csrf = csrf_of(&self.page(from).await);
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        self.client
            .post(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap()
    }
}

fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("kedai_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

pub struct Ingested {
    pub conversation: ConversationId,
    pub message: MessageId,
}

/// Sends a buyer message through the API.
pub async fn ingest(app: &TestApp, body: &Value) -> Ingested {
    let response = app.ingest(body).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    Ingested {
        conversation: body["conversation_id"].as_str().unwrap().parse().unwrap(),
        message: body["message_id"].as_str().unwrap().parse().unwrap(),
    }
}

/// Records what the pipeline would have decided for a message.
pub async fn decide(app: &TestApp, at: &Ingested, layer: u8, draft: Option<&str>, trace: Value) {
    let tenant = demo_tenant(app).await;
    app.store
        .record_decision(
            tenant,
            &NewDecision {
                conversation: at.conversation,
                message: at.message,
                layer: Layer::try_from(layer).unwrap(),
                action: match layer {
                    1 => kedai::domain::Action::Send,
                    2 => kedai::domain::Action::Draft,
                    _ => kedai::domain::Action::Handoff,
                },
                language: trace["lang"].as_str().map(str::to_owned),
                translation: None,
                // The trace's `reply`, when it has one, is sent as the AI's.
                reply: trace["reply"].as_str().map(|text| kedai::domain::NewReply {
                    text: kedai::domain::MessageText::parse(
                        text,
                        kedai::domain::TextLimits { max_chars: 5000 },
                    )
                    .unwrap(),
                    direction: kedai::domain::Direction::Outbound,
                    author: kedai::domain::Author::Ai,
                    author_name: None,
                    external_id: None,
                }),
                draft: draft.map(str::to_owned),
                status: ConversationStatus::Pending,
                trace,
                follow_up: false,
            },
        )
        .await
        .unwrap();
}

/// [`Desk::post`] with owned values.
pub async fn post_owned(
    desk: &Desk,
    path: &str,
    from: &str,
    fields: Vec<(&str, String)>,
) -> reqwest::Response {
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    desk.post(path, from, &borrowed).await
}

/// Creates or replaces an FAQ entry through the API.
pub async fn put_faq(app: &TestApp, id: &str, body: Value) {
    let response = app
        .client
        .put(app.url(&format!("/api/v1/kb/entries/faq/{id}")))
        .bearer_auth(&app.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

pub async fn next_chunk(events: &mut reqwest::Response) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(5), events.chunk())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .expect("the stream stays open")
        .to_vec()
}

/// Text as the templates escape it.
pub fn escaped(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

pub const XSS: &str = "<img src=x onerror=alert(1)>";

#[tokio::test]
async fn pages_need_a_session_and_login_sets_a_strict_http_only_cookie() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "owner@shop.test", Role::Admin, None).await;
    let desk = Desk::new(&app);
    let response = desk.get("/app/inbox?tab=drafts").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()["location"],
        "/app/login?next=/app/inbox%3Ftab%3Ddrafts"
    );

    let login = desk.try_login("Owner@Shop.test", PASSWORD).await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("kedai_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let desk = Desk::login(&app, "owner@shop.test").await;
    let page = desk.get("/app/inbox").await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
}

#[tokio::test]
async fn wrong_passwords_are_throttled_per_account() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "agent@shop.test", Role::Agent, None).await;
    let desk = Desk::new(&app);
    for _ in 0..10 {
        let r = desk.try_login("agent@shop.test", "wrong password!").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.text().await.unwrap().contains("do not match"));
    }
    let blocked = desk.try_login("agent@shop.test", PASSWORD).await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn forms_without_the_sessions_csrf_token_or_from_another_site_change_nothing() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "agent@shop.test", Role::Agent, None).await;
    let at = ingest(&app, &message("demo-shopee", "m1", "b1", "Halo kak")).await;
    let desk = Desk::login(&app, "agent@shop.test").await;
    let path = format!("/app/c/{}/reply", at.conversation);
    let forged = desk
        .client
        .post(format!("{}{path}", desk.base))
        .header("Cookie", &desk.cookie)
        .form(&[
            ("csrf", "guessed"),
            ("text", "hi"),
            ("action", "send"),
            ("nonce", "n1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let csrf = csrf_of(&desk.page("/app/inbox").await);
    let cross_site = desk
        .client
        .post(format!("{}{path}", desk.base))
        .header("Cookie", &desk.cookie)
        .header("Origin", "https://evil.example")
        .form(&[
            ("csrf", csrf.as_str()),
            ("text", "hi"),
            ("action", "send"),
            ("nonce", "n2"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let tenant = demo_tenant(&app).await;
    let detail = app
        .store
        .conversation(tenant, at.conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.messages.len(), 1, "nothing was sent");
}

#[tokio::test]
async fn buyer_product_and_model_text_is_escaped_on_every_page() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "owner@shop.test", Role::Admin, None).await;
    let body = json!({
        "shop": "demo-shopee", "external_id": "x1",
        "buyer": {"id": "b-xss", "name": XSS},
        "text": "<script>alert('text')</script> where is my parcel?",
        "sent_at": "2026-11-21T10:15:00Z",
    });
    let at = ingest(&app, &body).await;
    decide(
        &app,
        &at,
        3,
        Some("<svg onload=alert('draft')>"),
        json!({"lang": "en", "intent": "<b>order_status</b>", "reasons": [{"reason": "<i>x</i>"}],
               "follow_up": {"summary": "<iframe src=javascript:alert(1)>"}}),
    )
    .await;
    put_faq(&app, "xss-faq", json!({"id": "xss-faq", "questions": [XSS], "answer": "<script>alert(2)</script>", "lang": "en"})).await;
    let desk = Desk::login(&app, "owner@shop.test").await;
    for path in [
        "/app/inbox?tab=human".to_owned(),
        format!("/app/c/{}", at.conversation),
        "/app/kb".to_owned(),
        "/app/kb/faq/xss-faq".to_owned(),
        "/app/approvals".to_owned(),
        "/app/dashboard".to_owned(),
        "/app/audit".to_owned(),
    ] {
        let html = desk.page(&path).await;
        for raw in [
            "<img src=x",
            "<script>alert",
            "<svg onload",
            "<iframe",
            "<b>order",
            "<i>x",
        ] {
            assert!(!html.contains(raw), "{path} renders {raw:?} unescaped");
        }
        assert!(
            !html.contains("<script>") || html.matches("<script").count() == 1,
            "{path}"
        );
    }
    let conversation = desk.page(&format!("/app/c/{}", at.conversation)).await;
    assert!(
        conversation.contains(&escaped(XSS)),
        "the buyer's name is shown as text"
    );
    assert!(conversation.contains(&escaped("<svg onload=alert('draft')>")));
}

#[tokio::test]
async fn a_user_without_access_to_a_shop_cannot_see_or_act_on_its_conversations() {
    let (app, _dir) = spawn_app().await;
    create_user(
        &app,
        "lazada@shop.test",
        Role::Agent,
        Some(&["demo-lazada"]),
    )
    .await;
    let hidden = ingest(
        &app,
        &message("demo-shopee", "s1", "b1", "Shopee buyer asks"),
    )
    .await;
    decide(
        &app,
        &hidden,
        3,
        Some("draft"),
        json!({"lang": "en", "intent": "complaint"}),
    )
    .await;
    let visible = ingest(
        &app,
        &message("demo-lazada", "l1", "b2", "Lazada buyer asks"),
    )
    .await;
    decide(
        &app,
        &visible,
        3,
        None,
        json!({"lang": "en", "intent": "complaint"}),
    )
    .await;
    let desk = Desk::login(&app, "lazada@shop.test").await;
    let inbox = desk.page("/app/inbox?tab=human").await;
    assert!(inbox.contains("Lazada buyer asks"));
    assert!(!inbox.contains("Shopee buyer asks"));
    let page = desk.get(&format!("/app/c/{}", hidden.conversation)).await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    for (action, fields) in [
        (
            "reply",
            vec![("text", "hello"), ("action", "send"), ("nonce", "abc")],
        ),
        ("note", vec![("text", "note")]),
        ("holder", vec![("holder", "me")]),
        ("status", vec![("status", "resolved")]),
        (
            "approval",
            vec![("kind", "refund"), ("decision", "decline")],
        ),
    ] {
        let r = desk
            .post(
                &format!("/app/c/{}/{action}", hidden.conversation),
                "/app/inbox",
                &fields,
            )
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{action}");
    }
    let tenant = demo_tenant(&app).await;
    let detail = app
        .store
        .conversation(tenant, hidden.conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.messages.len(), 1);
    assert_eq!(detail.summary.status, ConversationStatus::Pending);
    assert!(desk
        .get(&format!("/app/c/{}", visible.conversation))
        .await
        .status()
        .is_success());
}

#[tokio::test]
async fn a_reply_sent_from_the_workbench_is_stored_once_and_claims_the_conversation() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "agent@shop.test", Role::Agent, None).await;
    let at = ingest(
        &app,
        &message("demo-tiktok", "t1", "b1", "Barangnya rusak kak"),
    )
    .await;
    decide(
        &app,
        &at,
        3,
        Some("Maaf kak, kami cek dulu ya."),
        json!({"lang": "id", "intent": "damaged_item"}),
    )
    .await;
    let desk = Desk::login(&app, "agent@shop.test").await;
    let page_path = format!("/app/c/{}", at.conversation);
    let page = desk.page(&page_path).await;
    assert!(
        page.contains("Maaf kak, kami cek dulu ya."),
        "the draft is in the reply box"
    );
    let fields = [
        ("text", "Maaf kak, kami kirim pengganti besok."),
        ("action", "send"),
        ("nonce", "fixed-nonce-1"),
    ];
    for _ in 0..2 {
        let r = desk
            .post(&format!("{page_path}/reply"), &page_path, &fields)
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    let tenant = demo_tenant(&app).await;
    let detail = app
        .store
        .conversation(tenant, at.conversation)
        .await
        .unwrap()
        .unwrap();
    let replies: Vec<_> = detail
        .messages
        .iter()
        .filter(|m| m.direction == kedai::domain::Direction::Outbound)
        .collect();
    assert_eq!(replies.len(), 1, "a double submit sends once");
    assert_eq!(
        replies[0].text.as_str(),
        "Maaf kak, kami kirim pengganti besok."
    );
    assert_eq!(replies[0].author_name.as_deref(), Some("agent"));
    assert!(matches!(
        app.store.holder(tenant, at.conversation).await.unwrap(),
        kedai::store::desk::Holder::Agent { .. }
    ));
    let note = desk
        .post(
            &format!("{page_path}/note"),
            &page_path,
            &[("text", "called the courier")],
        )
        .await;
    assert_eq!(note.status(), StatusCode::SEE_OTHER);
    let give_back = desk
        .post(
            &format!("{page_path}/holder"),
            &page_path,
            &[("holder", "ai")],
        )
        .await;
    assert_eq!(give_back.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.store.holder(tenant, at.conversation).await.unwrap(),
        kedai::store::desk::Holder::Ai
    );
    let resolved = desk
        .post(
            &format!("{page_path}/status"),
            &page_path,
            &[("status", "resolved")],
        )
        .await;
    assert_eq!(resolved.status(), StatusCode::SEE_OTHER);
    let detail = app
        .store
        .conversation(tenant, at.conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.summary.status, ConversationStatus::Resolved);
}

#[tokio::test]
async fn read_only_users_see_but_cannot_act() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "viewer@shop.test", Role::Readonly, None).await;
    let at = ingest(&app, &message("demo-web", "w1", "b1", "hello")).await;
    let desk = Desk::login(&app, "viewer@shop.test").await;
    let page_path = format!("/app/c/{}", at.conversation);
    let page = desk.page(&page_path).await;
    assert!(!page.contains("id=\"composer\""));
    let r = desk
        .post(
            &format!("{page_path}/reply"),
            "/app/inbox",
            &[("text", "x"), ("action", "send"), ("nonce", "n")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(desk.get("/app/admin").await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_approval_within_the_owners_limit_answers_the_buyer_in_their_language_and_is_audited() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "owner@shop.test", Role::Admin, None).await;
    create_user(&app, "agent@shop.test", Role::Agent, None).await;
    let at = ingest(
        &app,
        &message(
            "demo-shopee",
            "r1",
            "b1",
            "Kak bisa kasih kompensasi? barangnya telat seminggu",
        ),
    )
    .await;
    decide(
        &app,
        &at,
        3,
        None,
        json!({"lang": "id", "intent": "not_received", "binding_request": "compensation",
        "reasons": [{"reason": "risky_request"}]}),
    )
    .await;
    let owner = Desk::login(&app, "owner@shop.test").await;
    let agent = Desk::login(&app, "agent@shop.test").await;
    let page_path = format!("/app/c/{}", at.conversation);
    let approval = format!("{page_path}/approval");
    let request = at.message.to_string();

    // No limit yet: nothing can be approved with an amount.
    let fields = [
        ("kind", "compensation"),
        ("decision", "approve"),
        ("amount", "5.00"),
        ("request_message", request.as_str()),
    ];
    assert_eq!(
        agent.post(&approval, &page_path, &fields).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Agents cannot set limits; the owner can.
    let limit = [("kind", "compensation"), ("max", "10.00")];
    assert_eq!(
        agent
            .post("/app/settings/limits", "/app/settings", &limit)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        owner
            .post("/app/settings/limits", "/app/settings", &limit)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let over = [
        ("kind", "compensation"),
        ("decision", "approve"),
        ("amount", "10.01"),
        ("request_message", request.as_str()),
    ];
    assert_eq!(
        agent.post(&approval, &page_path, &over).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let approvals_page = agent.page("/app/approvals").await;
    assert!(approvals_page.contains("Compensation"));
    assert_eq!(
        agent.post(&approval, &page_path, &fields).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        agent.post(&approval, &page_path, &fields).await.status(),
        StatusCode::CONFLICT
    );

    let tenant = demo_tenant(&app).await;
    let detail = app
        .store
        .conversation(tenant, at.conversation)
        .await
        .unwrap()
        .unwrap();
    let answer = detail.messages.last().unwrap();
    assert_eq!(
        answer.text.as_str(),
        "Kabar baik: kami menyetujui kompensasi sebesar 5.00 USD untuk pesanan Anda."
    );
    assert_eq!(answer.author, kedai::domain::Author::Agent);
    let audit = app.store.audit_log(tenant, 20).await.unwrap();
    let event = audit
        .iter()
        .find(|e| e.event.action == "approval.approved")
        .unwrap();
    assert_eq!(event.event.details["amount_cents"], 500);
    assert_eq!(event.event.details["kind"], "compensation");
    assert!(event.event.actor.starts_with("user:"));
    assert!(
        !agent.page("/app/approvals").await.contains("Compensation"),
        "answered requests leave the queue"
    );
}

#[tokio::test]
async fn changing_a_password_ends_every_other_session() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "agent@shop.test", Role::Agent, None).await;
    let laptop = Desk::login(&app, "agent@shop.test").await;
    let phone = Desk::login(&app, "agent@shop.test").await;
    let r = laptop
        .post(
            "/app/account",
            "/app/account",
            &[
                ("current", PASSWORD),
                ("new_password", "another long password"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        phone.get("/app/inbox").await.status(),
        StatusCode::SEE_OTHER,
        "logged out"
    );
    let mut laptop = laptop;
    laptop.cookie = session_cookie(&r).expect("a fresh session for the one who changed it");
    assert_eq!(laptop.get("/app/inbox").await.status(), StatusCode::OK);
    let old = Desk::new(&app).try_login("agent@shop.test", PASSWORD).await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
}
