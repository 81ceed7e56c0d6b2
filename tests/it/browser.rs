//! The workbench in a real browser: Debian's Chromium, headless, driven
//! over WebDriver (chromedriver) with fantoccini. Screenshots of the
//! inbox, a conversation and the dashboard are saved under
//! `target/browser-artifacts/` for a person to look at.
//!
//! Without Chromium the tests say so and pass, unless `CI` is set: CI
//! installs it (`.ci/run`), so there its absence is a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use kedai::store::users::Role;
use serde_json::json;

use crate::helpers::{message, spawn_app, TestApp};
use crate::web::{create_user, decide, demo_tenant, ingest, put_faq, PASSWORD, XSS};

const BROWSERS: [&str; 3] = [
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];
const DRIVERS: [&str; 2] = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

/// How long a step waits for the page. Generous on purpose: on a 2-core CI
/// machine the browser shares the cores with model-backed tests, and a page
/// that needs 15 s there is slow, not wrong. A passing step returns as soon
/// as the page is right, so this costs nothing when nothing is wrong.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Chromium and its driver, or `None` (after saying why) when this machine
/// has none and CI is not set.
pub(crate) fn chromium() -> Option<(PathBuf, PathBuf)> {
    match (first_existing(&BROWSERS), first_existing(&DRIVERS)) {
        (Some(browser), Some(driver)) => Some((browser, driver)),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but Chromium or chromedriver is missing: .ci/run installs them")
        }
        _ => {
            eprintln!(
                "SKIPPED: browser tests need Debian's chromium and chromium-driver \
                 (apt-get install chromium chromium-driver); .ci/run installs them"
            );
            None
        }
    }
}

/// A chromedriver on a free loopback port, stopped when dropped.
pub(crate) struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn start_browser(browser: &Path, driver: &Path) -> (Driver, Client) {
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::TempDir::new().unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": browser,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                "--lang=en-US",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ]
        }),
    );
    let mut last_error = None;
    for _ in 0..50 {
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        match builder
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(client) => return (driver, client),
            Err(err) => last_error = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("cannot start a Chromium session: {last_error:?}");
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

pub(crate) async fn login(client: &Client, app: &TestApp, email: &str) {
    client
        .goto(&format!("{}/app/login", app.base))
        .await
        .unwrap();
    client
        .find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys(email)
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    client
        .find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("inbox-list"))
        .await
        .expect("the inbox after logging in");
}

/// Waits until `css` matches an element whose text contains `text`.
pub(crate) async fn wait_for_text(client: &Client, css: &str, text: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if let Ok(el) = client.find(Locator::Css(css)).await {
            if el.text().await.unwrap_or_default().contains(text) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let source = client.source().await.unwrap_or_default();
    panic!("no {css:?} with {text:?}; page:\n{source}");
}

/// No alert opened and no element the payloads would have made exists.
pub(crate) async fn assert_no_injection(client: &Client) {
    assert!(
        client.get_alert_text().await.is_err(),
        "a script ran and opened an alert"
    );
    let injected = client
        .execute(
            "return document.querySelectorAll('img[src=x], script:not([src]), svg[onload], iframe').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!(0), "markup from data was rendered as HTML");
}

#[tokio::test]
async fn the_workbench_in_chromium() {
    let Some((browser, driver)) = chromium() else {
        return;
    };
    let (app, _dir) = spawn_app().await;
    create_user(&app, "owner@shop.test", Role::Admin, None).await;
    create_user(
        &app,
        "lazada@shop.test",
        Role::Agent,
        Some(&["demo-lazada"]),
    )
    .await;
    let (_driver, client) = start_browser(&browser, &driver).await;

    // A conversation answered by the AI and one with a draft, for the inbox.
    let answered = ingest(
        &app,
        &message("demo-shopee", "b-1", "siti", "Apakah ukuran XL masih ada?"),
    )
    .await;
    decide(
        &app,
        &answered,
        1,
        None,
        json!({
            "lang": "id", "intent": "stock_availability", "confidence": 0.93,
            "sentiment": "neutral", "answer_kind": "catalogue",
            "reply": "Ada kak, ukuran XL masih tersedia 14 pcs.",
            "sources": [{"id": "tee-ovs-01", "kind": "product", "score": 0.03, "similarity": 0.91}],
            "guard": [], "models": ["multilingual-e5-small"],
            "timings_ms": {"understand": 40.0, "answer": 12.5}
        }),
    )
    .await;
    let drafted = ingest(
        &app,
        &message("demo-lazada", "b-2", "nok", "เสื้อตัวนี้ผ้าอะไรคะ"),
    )
    .await;
    decide(
        &app,
        &drafted,
        2,
        Some("ผ้าฝ้าย 100% ค่ะ"),
        json!({"lang": "th", "intent": "product_specs", "confidence": 0.71,
        "reasons": [{"reason": "mode_suggest"}]}),
    )
    .await;

    login(&client, &app, "owner@shop.test").await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("body[data-live-ready='1']"))
        .await
        .expect("the live-update stream connects");
    // Once the stream is ready the page fetches itself again: what changed
    // between its render and the stream's start is not missed.
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("body[data-refreshes]"))
        .await
        .expect("the page refreshes once the stream is ready");

    // A layer-3 conversation arrives while the inbox is open: it appears
    // without a reload, with an XSS payload as the buyer's name.
    let body = json!({
        "shop": "demo-tiktok", "external_id": "b-3",
        "buyer": {"id": "angry-1", "name": XSS},
        "text": "<script>alert('msg')</script> Barangnya rusak! Saya mau refund sekarang!",
        "sent_at": "2026-11-21T10:15:00Z",
    });
    let urgent = ingest(&app, &body).await;
    decide(&app, &urgent, 3, Some("<img src=x onerror=alert('draft')> Mohon maaf kak, kami bantu cek."), json!({
        "lang": "id", "intent": "refund_request", "confidence": 0.88, "sentiment": "negative",
        "reasons": [{"reason": "angry", "level": 2}, {"reason": "risky_request"}],
        "follow_up": {"state": "done", "summary": "The buyer received a damaged item and wants a refund now."},
        "sources": [{"id": "refund-policy", "kind": "policy", "score": 0.82, "similarity": 0.86}],
        "guard": [], "models": ["qwen2.5-coder-0.5b-instruct"], "timings_ms": {"understand": 41.0, "draft": 880.0}
    })).await;
    wait_for_text(&client, "#inbox-list", "Barangnya rusak").await;
    assert_no_injection(&client).await;
    let tenant = demo_tenant(&app).await;
    let orders = kedai::store::OrderRecord {
        order_number: "TTS-2611-00077".into(),
        buyer: Some(kedai::domain::PlatformBuyerId::parse("angry-1").unwrap()),
        status: "delivered".into(),
        currency: "USD".into(),
        total_cents: 2590,
        items: vec![kedai::store::OrderItem {
            sku: "MUG-01".into(),
            name: "Ceramic mug".into(),
            quantity: 2,
            unit_price_cents: 1295,
        }],
        carrier: Some("J&T".into()),
        tracking_number: Some("JT0001234".into()),
        tracking_events: vec![],
        placed_at: chrono::Utc::now() - chrono::Duration::days(6),
        destination: Some("ID".into()),
        expected_delivery: None,
    };
    let shop = app
        .store
        .shop_by_key(
            tenant,
            &kedai::domain::ShopKey::parse("demo-tiktok").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    app.store.upsert_order(&shop, &orders, None).await.unwrap();
    screenshot(&client, "inbox").await;

    // Open it: the buyer's name and message are text, the draft is editable.
    client
        .find(Locator::Css(&format!(
            "li[data-id='{}'] a",
            urgent.conversation
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("composer"))
        .await
        .expect("the conversation page with its composer");
    assert_eq!(
        client
            .find(Locator::Id("buyer-name"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        XSS
    );
    assert_no_injection(&client).await;
    let why = client
        .find(Locator::Css("#side #summary"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(why.contains("damaged item"));

    // An admin sets the refund limit; then the refund is approved.
    let limits_client = crate::web::Desk::login(&app, "owner@shop.test").await;
    let r = limits_client
        .post(
            "/app/settings/limits",
            "/app/settings",
            &[("kind", "refund"), ("max", "30.00")],
        )
        .await;
    assert_eq!(r.status(), 303);
    client.refresh().await.unwrap();
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("approval-form"))
        .await
        .expect("the approval form after the refund limit was set");
    let request = client
        .find(Locator::Id("open-request"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(request.contains("Refund"), "{request}");
    screenshot(&client, "conversation").await;

    // Edit and send the suggested reply.
    let reply = client.find(Locator::Id("reply-text")).await.unwrap();
    reply.clear().await.unwrap();
    reply
        .send_keys("Mohon maaf kak, refund kami proses hari ini.")
        .await
        .unwrap();
    client
        .find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&client, "#thread", "refund kami proses hari ini").await;
    let detail = app
        .store
        .conversation(tenant, urgent.conversation)
        .await
        .unwrap()
        .unwrap();
    assert!(detail.messages.iter().any(|m| m.text.as_str()
        == "Mohon maaf kak, refund kami proses hari ini."
        && m.author == kedai::domain::Author::Agent));

    client
        .find(Locator::Id("approval-amount"))
        .await
        .unwrap()
        .send_keys("25.90")
        .await
        .unwrap();
    client
        .find(Locator::Id("approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(
        &client,
        "#thread",
        "Kabar baik: pengembalian dana sebesar 25.90 USD untuk pesanan TTS-2611-00077 telah disetujui.",
    )
    .await;
    wait_for_text(&client, "#approval-status", "Refund approved: 25.90 USD").await;
    assert_no_injection(&client).await;

    reply_reaches_the_marketplace(&client, &app).await;

    // The knowledge base shows an entry with a payload as text.
    put_faq(&app, "xss", json!({"id": "xss", "questions": [XSS], "answer": "<script>alert('kb')</script>", "lang": "en"})).await;
    client
        .goto(&format!("{}/app/kb/faq/xss", app.base))
        .await
        .unwrap();
    wait_for_text(&client, "#entry-title", XSS).await;
    assert_no_injection(&client).await;

    client
        .goto(&format!("{}/app/dashboard", app.base))
        .await
        .unwrap();
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("svg.chart"))
        .await
        .expect("the dashboard's chart");
    screenshot(&client, "dashboard").await;

    // An AI answer explains itself.
    client
        .goto(&format!("{}/app/c/{}", app.base, answered.conversation))
        .await
        .unwrap();
    client
        .find(Locator::Css(".msg.ai details.why summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(
        &client,
        ".msg.ai details.why",
        "product tee-ovs-01 (match 0.91)",
    )
    .await;
    screenshot(&client, "conversation-ai").await;

    // Another agent, without the TikTok shop, neither sees nor opens it.
    client.delete_all_cookies().await.unwrap();
    login(&client, &app, "lazada@shop.test").await;
    let inbox = client
        .find(Locator::Id("inbox-list"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!inbox.contains("Barangnya rusak"));
    client
        .goto(&format!("{}/app/c/{}", app.base, urgent.conversation))
        .await
        .unwrap();
    let page = client.source().await.unwrap();
    assert!(page.contains("Not found") && !page.contains("Barangnya rusak"));

    client.close().await.unwrap();
}

/// A TikTok Shop buyer writes through the platform; the agent answers in
/// the workbench; the reply leaves through the platform's send API, once,
/// in the buyer's thread, and the page shows it was delivered without a
/// reload.
async fn reply_reaches_the_marketplace(client: &Client, app: &TestApp) {
    use crate::channels::{connect, conversations, deliver, push, serve_fake, signer, ACCOUNTS};
    let (fake, api) = serve_fake().await;
    let (platform, account, buyer) = ACCOUNTS[2];
    connect(app, platform, account, &api).await;
    let known: Vec<String> = conversations(app)
        .await
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let body = push(
        platform,
        account,
        "m-browser-1",
        buyer,
        "Kak, pesanan saya sudah dikirim belum?",
        chrono::Utc::now().timestamp(),
    );
    let signature = signer(platform).sign(body.as_bytes());
    assert_eq!(
        deliver(app, platform, &body, Some(&signature))
            .await
            .status(),
        200
    );
    let conversation = conversations(app)
        .await
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .find(|id| !known.contains(id))
        .expect("the push opened a conversation");
    let detail = app
        .get_json(&format!("/api/v1/conversations/{conversation}"))
        .await;
    let pushed = crate::web::Ingested {
        conversation: conversation.parse().unwrap(),
        message: detail["messages"][0]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    };
    decide(
        app,
        &pushed,
        2,
        Some("Sudah kak."),
        json!({"lang": "id", "intent": "order_status", "confidence": 0.64,
        "reasons": [{"reason": "mode_suggest"}]}),
    )
    .await;

    client
        .goto(&format!("{}/app/c/{conversation}", app.base))
        .await
        .unwrap();
    let reply = client.find(Locator::Id("reply-text")).await.unwrap();
    assert_eq!(
        reply.prop("value").await.unwrap().as_deref(),
        Some("Sudah kak.")
    );
    reply.clear().await.unwrap();
    let text = "Sudah dikirim kemarin kak, resi JT0001234 via J&T.";
    reply.send_keys(text).await.unwrap();
    client
        .find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(client, "#thread .msg.agent .text", text).await;
    // Delivered (the outbox's part), then shown without a reload (the
    // page's part): a failure says which of the two did not happen.
    let delivery = || async {
        app.get_json(&format!("/api/v1/conversations/{conversation}"))
            .await["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["text"] == text)
            .map(|m| m["delivery"].clone())
            .unwrap_or_default()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = delivery().await;
        if state["state"] == "delivered" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reply was not delivered: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_text(
        client,
        "#thread .delivery.delivered",
        "Delivered to TikTok Shop",
    )
    .await;
    screenshot(client, "conversation-delivered").await;

    let sent = |fake: &crate::channels::FakeTiktok| {
        fake.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(thread, body, _)| thread == &format!("c-{buyer}") && body == text)
            .count()
    };
    assert_eq!(sent(&fake), 1, "the reply reached the platform");
    // Nothing sends it again: the outbox polls several times meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sent(&fake), 1, "the reply was sent twice");
    let delivery = &app
        .get_json(&format!("/api/v1/conversations/{conversation}"))
        .await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == text)
        .unwrap()["delivery"]
        .clone();
    assert_eq!(delivery["state"], "delivered", "{delivery}");
}
