//! The workbench's pages over HTTP: the inbox, "why did the AI say this",
//! live updates, admin, dashboard, knowledge base and translations, shop
//! policies, and `kedai user create`.

use std::time::Duration;

use kedai::store::users::{Email, Role, ShopAccess};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app};
use crate::web::{create_user, decide, demo_tenant, escaped, ingest, next_chunk, post_owned, Desk};

#[tokio::test]
async fn every_ai_message_says_why_the_ai_said_it() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "agent@shop.test", Role::Agent, None).await;
    let at = ingest(
        &app,
        &message("demo-shopee", "w1", "b1", "Apakah ukuran XL masih ada?"),
    )
    .await;
    decide(&app, &at, 1, None, json!({
        "lang": "id", "intent": "stock_availability", "confidence": 0.93, "sentiment": "neutral",
        "answer_kind": "catalogue", "reply": "Ada kak, ukuran XL masih tersedia.",
        "sources": [{"id": "tee-ovs-01", "kind": "product", "score": 0.03, "similarity": 0.91}],
        "guard": [], "models": ["multilingual-e5-small"], "timings_ms": {"understand": 40.0, "answer": 12.5}
    })).await;
    let desk = Desk::login(&app, "agent@shop.test").await;
    let page = desk.page(&format!("/app/c/{}", at.conversation)).await;
    let why = &page[page
        .find("Why did the AI say this?")
        .expect("a why section")..];
    for shown in [
        "catalogue",
        "product tee-ovs-01 (match 0.91)",
        "passed the output guard",
        "multilingual-e5-small",
        "52 ms",
    ] {
        assert!(why.contains(shown), "{shown} missing from {why}");
    }
}

#[tokio::test]
async fn the_inbox_sorts_conversations_into_tabs_with_counts_and_filters() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "agent@shop.test", Role::Agent, None).await;
    let cases = [
        ("demo-shopee", "a1", 1, "th", "order_status"),
        ("demo-shopee", "a2", 2, "id", "size_fit"),
        ("demo-lazada", "a3", 3, "vi", "complaint"),
        ("demo-tiktok", "a4", 3, "id", "refund_request"),
    ];
    for (shop, id, layer, lang, intent) in cases {
        let at = ingest(&app, &message(shop, id, id, &format!("message {id}"))).await;
        decide(
            &app,
            &at,
            layer,
            None,
            json!({"lang": lang, "intent": intent}),
        )
        .await;
    }
    let desk = Desk::login(&app, "agent@shop.test").await;
    let human = desk.page("/app/inbox?tab=human").await;
    assert!(
        human.contains("message a3")
            && human.contains("message a4")
            && !human.contains("message a1")
    );
    assert!(
        human.contains(
            r#"data-tab="human" class="active">Needs a human <span class="count">2</span>"#
        ),
        "{human}"
    );
    assert!(human.contains(r#"data-tab="drafts">Drafts to review <span class="count">1</span>"#));
    let filtered = desk.page("/app/inbox?tab=human&language=id").await;
    assert!(filtered.contains("message a4") && !filtered.contains("message a3"));
    let by_shop = desk.page("/app/inbox?tab=human&shop=demo-lazada").await;
    assert!(by_shop.contains("message a3") && !by_shop.contains("message a4"));
    let by_platform = desk.page("/app/inbox?tab=ai&platform=shopee").await;
    assert!(by_platform.contains("message a1"));
    let mine = desk.page("/app/inbox?tab=human&agent=me").await;
    assert!(!mine.contains("message a3"));
    assert_eq!(
        desk.get("/app/inbox?tab=nope").await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn open_pages_hear_about_new_conversations_of_their_shops_only() {
    let (app, _dir) = spawn_app().await;
    create_user(
        &app,
        "lazada@shop.test",
        Role::Agent,
        Some(&["demo-lazada"]),
    )
    .await;
    let desk = Desk::login(&app, "lazada@shop.test").await;
    let mut events = desk.get("/app/events").await;
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    while !seen.contains("event: ready") {
        seen.push_str(&String::from_utf8_lossy(&next_chunk(&mut events).await));
    }
    let not_theirs = ingest(&app, &message("demo-shopee", "e1", "b1", "not for them")).await;
    let theirs = ingest(&app, &message("demo-lazada", "e2", "b2", "for them")).await;
    let mut change = String::new();
    while !change.contains("event: change") {
        change.push_str(&String::from_utf8_lossy(&next_chunk(&mut events).await));
    }
    assert!(
        change.contains(&theirs.conversation.to_string()),
        "{change}"
    );
    assert!(
        !change.contains(&not_theirs.conversation.to_string()),
        "{change}"
    );
}

#[tokio::test]
async fn admins_create_users_with_shop_access_and_issue_and_revoke_tokens() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "owner@shop.test", Role::Admin, None).await;
    let owner = Desk::login(&app, "owner@shop.test").await;
    let admin = owner.page("/app/admin").await;
    let lazada_id = {
        let tenant = demo_tenant(&app).await;
        let shops = app.store.list_shops(tenant).await.unwrap();
        shops
            .iter()
            .find(|s| s.key.as_str() == "demo-lazada")
            .unwrap()
            .id
            .to_string()
    };
    assert!(admin.contains(&lazada_id));
    let r = owner
        .post(
            "/app/admin/users",
            "/app/admin",
            &[
                ("email", "new@shop.test"),
                ("name", "New Agent"),
                ("role", "agent"),
                ("language", "th"),
                ("password", "new agent password"),
                ("shop", lazada_id.as_str()),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let newcomer = Desk::login_with(&app, "new@shop.test", "new agent password").await;
    assert!(newcomer.page("/app/inbox").await.contains("New Agent"));
    let tenant = demo_tenant(&app).await;
    let user = app
        .store
        .user_for_login(&Email::parse("new@shop.test").unwrap())
        .await
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(user.language, "th");
    assert!(matches!(user.shops, ShopAccess::Only(ref s) if s.len() == 1));

    let created = owner
        .post("/app/admin/tokens", "/app/admin", &[("label", "erp sync")])
        .await;
    let html = created.text().await.unwrap();
    let start = html.find("id=\"new-token\">").unwrap() + "id=\"new-token\">".len();
    let token = &html[start..start + html[start..].find('<').unwrap()];
    let api = reqwest::Client::new();
    let ok = api
        .get(format!("{}/api/v1/conversations", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let info = app
        .store
        .list_tokens(tenant)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.label == "erp sync")
        .unwrap();
    let revoked = owner
        .post(
            &format!("/app/admin/tokens/{}/revoke", info.id),
            "/app/admin",
            &[],
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let refused = api
        .get(format!("{}/api/v1/conversations", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_dashboard_shows_the_figures_of_the_viewers_shops() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "owner@shop.test", Role::Admin, None).await;
    let at = ingest(
        &app,
        &message("demo-shopee", "d1", "b1", "Where is my order?"),
    )
    .await;
    decide(&app, &at, 3, None, json!({"lang": "en", "intent": "order_status", "reasons": [{"reason": "angry", "level": 2}]})).await;
    let desk = Desk::login(&app, "owner@shop.test").await;
    let html = desk.page("/app/dashboard?days=7").await;
    assert!(html.contains("1 conversations, last 7 days"), "{html}");
    assert!(html.contains("order status"));
    assert!(html.contains(">angry</text>"));
    assert!(!html.contains("style="), "no inline styles");
}

#[tokio::test]
async fn the_knowledge_base_is_searched_edited_and_versioned_from_the_workbench() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "agent@shop.test", Role::Agent, None).await;
    let desk = Desk::login(&app, "agent@shop.test").await;
    let body = r#"{"questions": ["Do you ship to Bali?"], "answer": "Yes, in 3 to 5 days.", "lang": "en"}"#;
    let r = desk
        .post(
            "/app/kb/faq/new",
            "/app/kb/new?kind=faq",
            &[("id", "ship-bali"), ("body", body)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/app/kb/faq/ship-bali");
    let edited = r#"{"questions": ["Do you ship to Bali?"], "answer": "Yes, in 2 to 4 days.", "lang": "en"}"#;
    desk.post(
        "/app/kb/faq/ship-bali",
        "/app/kb/faq/ship-bali",
        &[("body", edited)],
    )
    .await;
    let page = desk.page("/app/kb/faq/ship-bali").await;
    assert!(page.contains("2 to 4 days") && page.contains("v2") && page.contains("v1"));
    let found = desk.page("/app/kb?q=shipping+to+bali").await;
    assert!(found.contains("ship-bali"));
    let bad = desk
        .post(
            "/app/kb/faq/ship-bali",
            "/app/kb/faq/ship-bali",
            &[("body", "{not json")],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// The store's side of live updates, for stores other than SQLite later.
#[tokio::test]
async fn the_store_announces_committed_changes() {
    let (app, _dir) = spawn_app().await;
    let mut rx = app.store.changes().subscribe();
    let at = ingest(&app, &message("demo-web", "c1", "b1", "hi")).await;
    let change = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(change.conversation, at.conversation);
    assert_eq!(change.kind, kedai::store::ChangeKind::Message);
}

#[tokio::test]
async fn machine_translations_that_failed_a_check_wait_for_a_person_to_approve_or_reject() {
    use kedai::store::{KbKind, NewTranslation, OpenedStore, TranslationKey, TranslationStatus};
    let (app, dir) = spawn_app().await;
    create_user(&app, "agent@shop.test", Role::Agent, None).await;
    let tenant = demo_tenant(&app).await;
    let settings = crate::helpers::test_settings(dir.path()).store;
    let store = OpenedStore::open(&settings, kedai::store::Schema::Current)
        .await
        .unwrap();
    let source = "Returns are free within 15 days.";
    for (lang, text) in [
        ("th", "คืนสินค้าฟรีภายใน 15 วัน"),
        ("vi", "Đổi trả <b>miễn phí</b> trong 15 ngày."),
    ] {
        store
            .save_translation(
                tenant,
                &NewTranslation {
                    key: TranslationKey::new(KbKind::Faq, "returns", source, lang),
                    source_text: source.into(),
                    text: text.into(),
                    status: TranslationStatus::Unverified,
                    model: Some("qwen".into()),
                    verification: json!({"numbers": "missing 15"}),
                },
            )
            .await
            .unwrap();
    }
    let desk = Desk::login(&app, "agent@shop.test").await;
    let page = desk.page("/app/kb/translations").await;
    assert!(page.contains("คืนสินค้าฟรีภายใน 15 วัน") && page.contains(&escaped("<b>miễn phí</b>")));
    let th = TranslationKey::new(KbKind::Faq, "returns", source, "th");
    let vi = TranslationKey::new(KbKind::Faq, "returns", source, "vi");
    let review = |key: &TranslationKey, decision: &'static str, text: &'static str| {
        [
            ("kind", "faq".to_owned()),
            ("entry_id", key.entry_id.clone()),
            ("source_hash", key.source_hash.clone()),
            ("lang", key.lang.clone()),
            ("decision", decision.to_owned()),
            ("text", text.to_owned()),
        ]
    };
    for (key, decision, text) in [
        (&th, "approve", "คืนสินค้าได้ฟรีภายใน 15 วันค่ะ"),
        (&vi, "reject", ""),
    ] {
        let fields = review(key, decision, text);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = desk
            .post(
                "/app/kb/translations/review",
                "/app/kb/translations",
                &fields,
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    let approved = store.translation(tenant, &th).await.unwrap().unwrap();
    assert_eq!(approved.status, TranslationStatus::Approved);
    assert_eq!(approved.text, "คืนสินค้าได้ฟรีภายใน 15 วันค่ะ");
    assert_eq!(
        store
            .translation(tenant, &vi)
            .await
            .unwrap()
            .unwrap()
            .status,
        TranslationStatus::Rejected
    );
    assert!(desk
        .page("/app/kb/translations")
        .await
        .contains("No translation is waiting."));
}

fn kedai_user_create(
    data_dir: &std::path::Path,
    args: &[&str],
    password: &str,
) -> std::process::Output {
    use std::io::Write;
    let mut child = crate::helpers::kedai_command(data_dir)
        .args(["user", "create"])
        .args(args)
        .env("KEDAI__LOG__FILTER", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kedai runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn kedai_user_create_makes_the_first_admin_who_can_log_in() {
    let dir = tempfile::TempDir::new().unwrap();
    let migrated = crate::helpers::kedai_command(dir.path())
        .arg("migrate")
        .env("KEDAI__LOG__FILTER", "warn")
        .output()
        .unwrap();
    assert!(migrated.status.success());
    let tenant = crate::helpers::kedai_command(dir.path())
        .args(["tenant", "create", "shopco", "--json"])
        .env("KEDAI__LOG__FILTER", "warn")
        .output()
        .unwrap();
    assert!(
        tenant.status.success(),
        "{}",
        String::from_utf8_lossy(&tenant.stderr)
    );
    let args = [
        "--tenant",
        "shopco",
        "--email",
        "Owner@ShopCo.test",
        "--role",
        "admin",
        "--password-stdin",
        "--json",
    ];
    let created = kedai_user_create(dir.path(), &args, "first admin password\n");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let out: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(out["email"], "owner@shopco.test");
    assert_eq!(out["role"], "admin");

    let again = kedai_user_create(dir.path(), &args, "first admin password\n");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let short = kedai_user_create(
        dir.path(),
        &[
            "--tenant",
            "shopco",
            "--email",
            "b@shopco.test",
            "--password-stdin",
        ],
        "short\n",
    );
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 10 characters"));
    let no_stdin = kedai_user_create(
        dir.path(),
        &["--tenant", "shopco", "--email", "c@shopco.test"],
        "",
    );
    assert!(String::from_utf8_lossy(&no_stdin.stderr).contains("--password-stdin"));
    let unknown = kedai_user_create(
        dir.path(),
        &[
            "--tenant",
            "nope",
            "--email",
            "d@shopco.test",
            "--password-stdin",
        ],
        "long enough password\n",
    );
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no tenant \"nope\""));

    let app = crate::helpers::Spawn::new(dir.path()).start().await;
    let desk = Desk::new(&app);
    assert_eq!(
        desk.try_login("owner@shopco.test", "first admin password")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        desk.try_login("owner@shopco.test", "wrong password!")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn admins_change_a_shops_policy_and_only_what_differs_is_stored() {
    let (app, _dir) = spawn_app().await;
    create_user(&app, "owner@shop.test", Role::Admin, None).await;
    create_user(&app, "agent@shop.test", Role::Agent, None).await;
    let owner = Desk::login(&app, "owner@shop.test").await;
    let page = owner.page("/app/settings").await;
    assert!(
        page.contains("id=\"ai-enabled-demo-lazada\""),
        "{}",
        &page[page.find("policies").unwrap_or(0)..][..1500]
    );
    let defaults = kedai::config::Settings::defaults().policy.defaults;
    let auto = format!("{}", defaults.auto_min_confidence);
    let generated = format!("{}", defaults.generated_min_confidence);
    let below = format!("{}", defaults.human_below_confidence);
    let anger = defaults.human_anger_level.to_string();
    let vip = defaults.vip_to_human;
    let fields = |threshold: &str| {
        let mut fields = vec![
            ("shop", "demo-lazada".to_owned()),
            ("mode", "suggest".to_owned()),
            ("intent_modes", "order status = auto".to_owned()),
            ("auto_min_confidence", threshold.to_owned()),
            ("generated_min_confidence", generated.clone()),
            ("human_below_confidence", below.clone()),
            ("human_anger_level", anger.clone()),
            ("hours_days", String::new()),
            ("hours_open", String::new()),
            ("hours_close", String::new()),
            ("hours_offset_minutes", "0".to_owned()),
        ];
        if vip {
            fields.push(("vip_to_human", "1".to_owned()));
        }
        fields
    };
    let agent = Desk::login(&app, "agent@shop.test").await;
    assert_eq!(
        post_owned(
            &agent,
            "/app/settings/policy",
            "/app/settings",
            fields(&auto)
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post_owned(
            &owner,
            "/app/settings/policy",
            "/app/settings",
            fields("2.5")
        )
        .await
        .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let tenant = demo_tenant(&app).await;
    let key = kedai::domain::ShopKey::parse("demo-lazada").unwrap();
    let shop = app.store.shop_by_key(tenant, &key).await.unwrap().unwrap();
    assert_eq!(shop.policy, json!({}), "an invalid policy changes nothing");

    // ai_enabled is left unticked: the kill switch.
    assert_eq!(
        post_owned(
            &owner,
            "/app/settings/policy",
            "/app/settings",
            fields(&auto)
        )
        .await
        .status(),
        StatusCode::SEE_OTHER
    );
    let shop = app.store.shop_by_key(tenant, &key).await.unwrap().unwrap();
    let mut expected = serde_json::Map::new();
    if defaults.ai_enabled {
        expected.insert("ai_enabled".into(), json!(false));
    }
    if defaults.mode != kedai::pipeline::policy::Mode::Suggest {
        expected.insert("mode".into(), json!("suggest"));
    }
    expected.insert("intent_modes".into(), json!({"order_status": "auto"}));
    assert_eq!(shop.policy, Value::Object(expected));
    let page = owner.page("/app/settings").await;
    assert!(page.contains("off (kill switch)") && page.contains("changed here"));
    // The change was measured and recorded; one action restores the
    // defaults it replaced.
    let listed = owner.page("/app/settings?policy=applied").await;
    assert!(
        listed.contains("id=\"notice\""),
        "the saved notice is shown"
    );
    let id = listed
        .split("class=\"change applied\" data-id=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the applied change is listed")
        .to_owned();
    assert!(listed.contains("Measured on "), "the measurement is shown");
    let r = post_owned(
        &owner,
        "/app/settings/policy/restore",
        "/app/settings",
        vec![("shop", "demo-lazada".to_owned()), ("change", id)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let shop = app.store.shop_by_key(tenant, &key).await.unwrap().unwrap();
    assert_eq!(shop.policy, json!({}), "the defaults are back");
    let page = owner.page("/app/settings").await;
    assert!(
        page.contains("class=\"change restored\""),
        "the restore is listed"
    );
}
