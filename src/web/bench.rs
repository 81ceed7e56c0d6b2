//! `kedai bench web`: how fast the workbench's pages answer with a
//! realistic amount of data. Starts kedai in-process on loopback with a
//! temporary data directory and no models, fills it with conversations
//! (messages, decisions with traces, replies, orders) through the store,
//! logs in over HTTP, and requests each page in turn, reporting p50, p90,
//! p99 and the slowest answer per page, with the load average. A
//! measurement, not a test: it fails only when a page answers an error.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use hdrhistogram::Histogram;
use serde_json::json;

use super::session::hash_password;
use crate::bench::client::{BenchClient, Call};
use crate::bench::Output;
use crate::config::{Durability, Settings};
use crate::domain::{
    Action, BuyerRef, ConversationStatus, ExternalMessageId, InboundMessage, Layer, MessageText,
    PlatformBuyerId, ShopKey, TextLimits,
};
use crate::http::ModelReadiness;
use crate::startup::{Application, BuildOptions, DEMO_SHOPS, DEMO_TENANT};
use crate::store::users::{Email, NewUser, Role, ShopAccess};
use crate::store::{NewDecision, Store};

#[derive(Debug, clap::Args)]
pub struct WebArgs {
    /// Conversations to create before measuring.
    #[arg(long, default_value_t = 1000)]
    pub conversations: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
}

/// Requests per page sent before measuring.
const WARM_UP: usize = 10;
const EMAIL: &str = "bench@kedai.invalid";
const PASSWORD: &str = "benchmark password";
const TEXTS: [(&str, &str, &str); 6] = [
    (
        "id",
        "order_status",
        "Halo kak, paket saya sudah sampai mana ya?",
    ),
    ("th", "size_fit", "เสื้อไซซ์ L อก 40 ใส่ได้ไหมคะ"),
    ("vi", "refund_request", "Hàng bị lỗi, tôi muốn hoàn tiền"),
    (
        "en",
        "complaint",
        "This is the second time my parcel is late. Not happy.",
    ),
    ("zh", "price_coupon", "能便宜一点吗？买三件"),
    (
        "tl",
        "shipping_time_cost",
        "Magkano po shipping papuntang Cebu?",
    ),
];

async fn seed(store: &dyn Store, conversations: usize) -> anyhow::Result<Vec<String>> {
    let tenant = store
        .tenant_by_name(DEMO_TENANT)
        .await?
        .context("the demo tenant")?;
    store
        .create_user(
            &NewUser {
                tenant_id: tenant.id,
                email: Email::parse(EMAIL).map_err(|e| anyhow::anyhow!(e.problem))?,
                display_name: "Bench".into(),
                role: Role::Admin,
                password_hash: hash_password(PASSWORD).map_err(|e| anyhow::anyhow!("{e}"))?,
                language: "en".into(),
                shops: ShopAccess::All,
            },
            "bench",
        )
        .await?;
    let mut shops = Vec::new();
    for (key, _, _) in DEMO_SHOPS {
        let key = ShopKey::parse(key).map_err(|e| anyhow::anyhow!(e.problem))?;
        shops.push(
            store
                .shop_by_key(tenant.id, &key)
                .await?
                .context("demo shop")?,
        );
    }
    let limits = TextLimits { max_chars: 5000 };
    let mut ids = Vec::with_capacity(conversations);
    for i in 0..conversations {
        let shop = &shops[i % shops.len()];
        let (lang, intent, text) = TEXTS[i % TEXTS.len()];
        let message = InboundMessage {
            shop: shop.key.clone(),
            external_id: ExternalMessageId::parse(&format!("bench-{i}"))
                .map_err(|e| anyhow::anyhow!(e.problem))?,
            buyer: BuyerRef {
                id: PlatformBuyerId::parse(&format!("buyer-{i}"))
                    .map_err(|e| anyhow::anyhow!(e.problem))?,
                name: Some(format!("Buyer {i}")),
            },
            text: MessageText::parse(text, limits).map_err(|e| anyhow::anyhow!(e.problem))?,
            sent_at: Utc::now(),
            sender: crate::domain::Sender::Buyer,
            attachment: None,
        };
        let outcome = store.ingest(shop, &message, 1).await?;
        let layer = [1u8, 2, 3][i % 3];
        store
            .record_decision(
                tenant.id,
                &NewDecision {
                    conversation: outcome.conversation_id,
                    message: outcome.message_id,
                    layer: Layer::try_from(layer).map_err(|e| anyhow::anyhow!(e.problem))?,
                    action: [Action::Send, Action::Draft, Action::Handoff][i % 3],
                    language: Some(lang.into()),
                    translation: None,
                    reply: None,
                    draft: (layer > 1).then(|| "Thank you, we are checking this for you.".into()),
                    status: ConversationStatus::Pending,
                    trace: json!({
                        "lang": lang, "intent": intent, "confidence": 0.8, "sentiment": "neutral",
                        "reasons": [{"reason": "mode_suggest"}], "sources": [], "guard": [],
                        "models": ["bench"], "timings_ms": {"understand": 30.0},
                        "follow_up": {"summary": "The buyer asks about their order."}
                    }),
                    follow_up: false,
                },
            )
            .await?;
        ids.push(outcome.conversation_id.to_string());
    }
    Ok(ids)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

struct Page {
    name: &'static str,
    paths: Vec<String>,
}

pub async fn run(args: WebArgs, settings: &Settings, output: Output) -> anyhow::Result<()> {
    let dir = tempfile::TempDir::new()?;
    let mut settings = settings.clone();
    settings.server.listen = "127.0.0.1:0".parse()?;
    settings.store.data_dir = dir.path().to_path_buf();
    settings.store.durability = Durability::Normal;
    settings.models.fetch_on_start = false;
    settings.models.required = false;
    settings.kb.demo_orders = String::new();
    settings.server.demo = true;
    settings.queue.workers = 0;
    settings.queue.draft_workers = 0;
    let app = Application::build(
        settings,
        BuildOptions {
            models: ModelReadiness::NotRequired("kedai bench web runs without models".into()),
            handler: None,
            kb_embedder: None,
            engine: None,
            schema: crate::store::Schema::Migrate,
        },
    )
    .await?;
    let base = format!("http://{}", app.address());
    let store = app.store();
    eprintln!("seeding {} conversations…", args.conversations);
    let seeded = Instant::now();
    let ids = seed(store.as_ref(), args.conversations).await?;
    eprintln!("seeded in {:.1} s", seeded.elapsed().as_secs_f64());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    // Never follows redirects: the login's answer carries the cookie.
    let client = BenchClient::new(Duration::from_secs(60));
    let login = client
        .send(
            Call::new(axum::http::Method::POST, format!("{base}/app/login"))
                .form(&[("email", EMAIL), ("password", PASSWORD)]),
        )
        .await?;
    let cookie = login
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("kedai_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .context("the login gave no session cookie")?;
    let pages = [
        Page {
            name: "inbox: needs a human",
            paths: vec!["/app/inbox?tab=human".into()],
        },
        Page {
            name: "inbox: drafts",
            paths: vec!["/app/inbox?tab=drafts".into()],
        },
        Page {
            name: "inbox: filtered",
            paths: vec!["/app/inbox?tab=ai&language=id&shop=demo-shopee".into()],
        },
        Page {
            name: "conversation",
            paths: ids
                .iter()
                .step_by(7)
                .map(|id| format!("/app/c/{id}"))
                .collect(),
        },
        Page {
            name: "approvals",
            paths: vec!["/app/approvals".into()],
        },
        Page {
            name: "dashboard (14 d)",
            paths: vec!["/app/dashboard".into()],
        },
        Page {
            name: "audit log",
            paths: vec!["/app/audit".into()],
        },
    ];
    let mut rows = Vec::new();
    for page in &pages {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        // The first requests of a page fill caches (SQLite's pages, the
        // statement cache); they are sent but not counted.
        for i in 0..WARM_UP.min(args.requests) {
            let path = &page.paths[i % page.paths.len()];
            client
                .send(Call::get(format!("{base}{path}")).cookie(&cookie))
                .await?;
        }
        for i in 0..args.requests {
            let path = &page.paths[i % page.paths.len()];
            let started = Instant::now();
            let response = client
                .send(Call::get(format!("{base}{path}")).cookie(&cookie))
                .await?;
            let status = response.status;
            let micros = started.elapsed().as_micros() as u64;
            if !status.is_success() {
                bail!("GET {path} answered {status}");
            }
            histogram.record(micros.max(1))?;
        }
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        rows.push((
            page.name,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            histogram.max() as f64 / 1000.0,
        ));
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
    let load = load_average();
    match output {
        Output::Json => println!(
            "{}",
            json!({
                "conversations": args.conversations,
                "requests_per_page": args.requests,
                "load_average": load,
                "pages": rows.iter().map(|(name, p50, p90, p99, max)| json!({
                    "page": name, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max,
                })).collect::<Vec<_>>(),
            })
        ),
        Output::Human => {
            println!(
                "workbench pages, {} conversations, {} requests each (load average {load})",
                args.conversations, args.requests
            );
            println!(
                "{:<24} {:>9} {:>9} {:>9} {:>9}",
                "page", "p50 ms", "p90 ms", "p99 ms", "max ms"
            );
            for (name, p50, p90, p99, max) in &rows {
                println!("{name:<24} {p50:>9.1} {p90:>9.1} {p99:>9.1} {max:>9.1}");
            }
        }
    }
    Ok(())
}
