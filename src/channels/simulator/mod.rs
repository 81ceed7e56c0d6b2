//! `kedai simulate`: fake Shopee, Lazada and TikTok Shop servers on
//! loopback that push signed webhooks (the platforms' envelopes and
//! signature schemes) for many shops and buyers in several languages,
//! accept sent messages, and serve conversations, orders and tracking;
//! they can drop, delay, reorder and duplicate pushes, and retry the ones
//! kedai did not acknowledge, as the platforms do. The driver runs a real
//! `kedai serve` child against them, SIGKILLs and restarts it on a timer,
//! and reports per platform what was delivered, acknowledged, stored, lost
//! or duplicated, and what kedai sent back.
//!
//! It is the acceptance test of the channels' guarantees and the
//! newcomer's demo ("watch kedai answer three marketplaces").

mod census;
mod history_check;
#[cfg(test)]
mod history_tests;
mod kedai;
mod servers;
mod traffic;
mod world;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use secrecy::SecretString;
use tokio::sync::Semaphore;

use census::{CensusInput, PlatformReport};
use kedai::{Server, ServerSpec};
use servers::Shared;
use traffic::{agent, drive, echo, killer, lock, world_lock, Sim};
use world::{SimShop, World};

use crate::cli::Output;
use crate::config::Settings;
use crate::domain::{Platform, ShopKey, TenantName};
use crate::store::{ChannelStore, CredentialsUpdate, NewShop, SqliteStore, TenantStore};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Messages buyers (and sellers) write, one push each before duplicates.
    #[arg(long, default_value_t = 30)]
    pub deliveries: usize,
    /// Share of pushes the platform sends twice.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_rate: f64,
    /// Share of pushes the platform never sends (reconciliation must
    /// recover them).
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Pushes are delayed by up to this many send intervals, so they
    /// arrive out of order.
    #[arg(long, default_value_t = 0)]
    pub reorder_window: u32,
    /// SIGKILL kedai and restart it every SECONDS (0: never).
    #[arg(long, default_value_t = 0.0)]
    pub kill_every: f64,
    /// Messages per second, on a fixed schedule.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Run for this many seconds at `--rate` instead of `--deliveries`.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Shops per platform.
    #[arg(long, default_value_t = 1)]
    pub shops: usize,
    /// Buyers per shop.
    #[arg(long, default_value_t = 8)]
    pub buyers: usize,
    /// Share of conversations an agent also answers through the API.
    #[arg(long, default_value_t = 0.0)]
    pub agent_reply_rate: f64,
    /// Share of messages the seller writes in the marketplace's own app.
    #[arg(long, default_value_t = 0.0)]
    pub seller_rate: f64,
    /// `configured`: the configuration's models (kedai answers); `none`:
    /// no models (the inbox and agents' replies only).
    #[arg(long, default_value = "configured")]
    pub models: String,
    /// Seconds to wait at the end for reconciliation and replies.
    #[arg(long, default_value_t = 120)]
    pub settle_secs: u64,
    /// Keep kedai's data in this directory (default: a temporary one).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Seed of the simulation's random choices.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// What buyers write, in the languages kedai serves.
pub(super) const PHRASES: &[(&str, &str)] = &[
    ("en", "Is the red oversized tee still available in XL?"),
    ("en", "Where is my parcel? It has been a week."),
    ("id", "Kak, kaos oversize merah ukuran XL masih ada?"),
    ("id", "Paket saya sudah sampai mana ya kak?"),
    ("ms", "Berapa lama penghantaran ke Johor Bahru?"),
    ("th", "เสื้อยืดโอเวอร์ไซส์สีแดงไซส์ XL ยังมีไหมคะ"),
    ("th", "พัสดุของฉันถึงไหนแล้วคะ"),
    ("vi", "Áo thun oversize màu đỏ size XL còn hàng không shop?"),
    ("vi", "Đơn hàng của mình giao đến đâu rồi ạ?"),
    ("tl", "Meron pa po ba kayong XL na pulang oversized tee?"),
    (
        "pt",
        "A camiseta oversized vermelha ainda tem no tamanho GG?",
    ),
    ("es", "¿Tienen la camiseta oversize roja en talla XL?"),
    ("zh", "红色宽松T恤还有XL码吗？"),
    ("zh", "我的包裹到哪里了？"),
];

pub(super) const SELLER_PHRASE: &str = "Hi! This is the shop owner, checking your order now.";
pub(super) const AGENT_REPLY: &str =
    "Thanks for waiting! I have checked this for you and will update you shortly.";

/// The simulated shops: the demo tenant's three marketplace shops first.
fn shops(per_platform: usize) -> Vec<SimShop> {
    let mut shops = Vec::new();
    for n in 0..per_platform.max(1) {
        for (platform, app_key) in [
            (Platform::Shopee, "2001887"),
            (Platform::Lazada, "123456"),
            (Platform::Tiktok, "29a39d"),
        ] {
            let key = if n == 0 {
                format!("demo-{platform}")
            } else {
                format!("sim-{platform}-{}", n + 1)
            };
            let account = match platform {
                Platform::Shopee => (727_720_655 + n as u64).to_string(),
                Platform::Lazada => format!("{}", 1_234_567 + n),
                _ => format!("74940496426424416{n:02}"),
            };
            shops.push(SimShop {
                platform,
                key,
                account,
                app_key: app_key.into(),
                secret: format!("sim-secret-{platform}"),
                access_token: format!("sim-token-{platform}-{n}"),
                callback_url: "https://kedai.example/webhooks/shopee".into(),
            });
        }
    }
    shops
}

pub(super) fn buyer_id(platform: Platform, shop: usize, n: usize) -> String {
    match platform {
        Platform::Shopee => (165_105_353 + shop * 1000 + n).to_string(),
        Platform::Lazada => format!("1891549{:03}{n:03}", shop),
        _ => format!("70788556518{:03}{n:04}", shop),
    }
}

/// Registers the simulated shops with the demo tenant and connects them to
/// the fake servers; returns the demo tenant's API token.
async fn prepare_store(
    settings: &Settings,
    shops: &[SimShop],
    bases: &HashMap<Platform, String>,
) -> anyhow::Result<String> {
    let store = SqliteStore::open(&settings.store, crate::store::Schema::Migrate)
        .await
        .context("opening the simulation's store")?;
    let token = match crate::startup::seed_demo(&store, &settings.store.data_dir).await? {
        Some(demo) => demo.token,
        None => {
            let tenant = store
                .tenant_by_name(crate::startup::DEMO_TENANT)
                .await?
                .context("the demo tenant")?;
            crate::auth::issue_token(&store, tenant.id, "simulate")
                .await?
                .1
        }
    };
    let tenant = store
        .tenant_by_name(crate::startup::DEMO_TENANT)
        .await?
        .context("the demo tenant")?;
    let _ = TenantName::parse(crate::startup::DEMO_TENANT)?;
    for sim in shops {
        let key = ShopKey::parse(&sim.key)?;
        let shop = match store.shop_by_key(tenant.id, &key).await? {
            Some(shop) => shop,
            None => {
                store
                    .add_shop(NewShop {
                        tenant_id: tenant.id,
                        platform: sim.platform,
                        key,
                        name: format!("Simulated {} shop", sim.platform),
                        market: crate::domain::Market::default(),
                        credentials: SecretString::from("{}"),
                    })
                    .await?
            }
        };
        let credentials = sim.credentials(&bases[&sim.platform]);
        store
            .set_credentials(
                tenant.id,
                shop.id,
                &CredentialsUpdate {
                    credentials: SecretString::from(credentials.to_string()),
                    account_id: Some(sim.account.clone()),
                },
                "simulate",
            )
            .await?;
    }
    store.close().await;
    Ok(token)
}

/// Settings the child server runs with: fast retries, leases and
/// reconciliation, so a minute-long run exercises all of them.
fn child_env(args: &SimulateArgs, data_dir: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("KEDAI__LOG__FILTER", "warn"),
        ("KEDAI__QUEUE__POLL_INTERVAL_MS", "100"),
        ("KEDAI__CHANNELS__SEND_TIMEOUT_SECS", "3"),
        ("KEDAI__CHANNELS__OUTBOX_LEASE_SECS", "5"),
        ("KEDAI__CHANNELS__OUTBOX_POLL_MS", "100"),
        ("KEDAI__CHANNELS__BACKOFF_BASE_MS", "200"),
        ("KEDAI__CHANNELS__BACKOFF_MAX_MS", "3000"),
        ("KEDAI__CHANNELS__RECONCILE_LOOKBACK_HOURS", "1"),
        // The fake platforms do not throttle; kedai's own limits are
        // raised so a run measures delivery, not waiting.
        ("KEDAI__CHANNELS__SHOPEE__SHOP_RATE_PER_SEC", "50"),
        ("KEDAI__CHANNELS__LAZADA__SHOP_RATE_PER_SEC", "50"),
        ("KEDAI__CHANNELS__TIKTOK__SHOP_RATE_PER_SEC", "50"),
        ("KEDAI__CHANNELS__SHOPEE__RATE_PER_SEC", "200"),
        ("KEDAI__CHANNELS__LAZADA__RATE_PER_SEC", "200"),
        ("KEDAI__CHANNELS__TIKTOK__RATE_PER_SEC", "200"),
        ("KEDAI__CHANNELS__SHOPEE__RECONCILE_INTERVAL_SECS", "10"),
        ("KEDAI__CHANNELS__LAZADA__RECONCILE_INTERVAL_SECS", "10"),
        ("KEDAI__CHANNELS__TIKTOK__RECONCILE_INTERVAL_SECS", "10"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    if args.models == "none" {
        for (k, v) in [
            ("KEDAI__MODELS__FETCH_ON_START", "false".to_owned()),
            ("KEDAI__MODELS__REQUIRED", "false".to_owned()),
            (
                "KEDAI__MODELS__DIR",
                data_dir.join("no-models").display().to_string(),
            ),
        ] {
            env.push((k.to_owned(), v));
        }
    }
    env
}

async fn serve_fakes(world: Shared) -> anyhow::Result<HashMap<Platform, String>> {
    let mut bases = HashMap::new();
    for (platform, router) in servers::routers(world) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        bases.insert(platform, format!("http://{}", listener.local_addr()?));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
    }
    Ok(bases)
}

/// The run's result.
#[derive(Debug, serde::Serialize)]
pub struct SimulationReport {
    pub deliveries: usize,
    pub kills: usize,
    pub seconds: f64,
    pub platforms: BTreeMap<&'static str, PlatformReport>,
    /// Every guarantee held: nothing lost, nothing twice, every reply sent.
    pub ok: bool,
    pub data_dir: String,
    /// Conversations as kedai shows them (a few per platform), for people.
    #[serde(skip)]
    pub transcript: Vec<String>,
}

async fn census_report(
    sim: &Sim,
    token: &str,
    shop_platform: &HashMap<String, Platform>,
) -> anyhow::Result<(BTreeMap<&'static str, PlatformReport>, Vec<String>)> {
    let stored = census::read_all(&sim.client, &sim.base, token).await?;
    let keys: HashMap<String, u32> = {
        let world = world_lock(&sim.world);
        let mut keys = HashMap::new();
        for r in &world.received {
            if let Some(k) = &r.key {
                *keys.entry(k.clone()).or_default() += 1;
            }
        }
        keys
    };
    let generated = lock(&sim.generated).clone();
    let stats = lock(&sim.stats).clone();
    let reports = census::report(&CensusInput {
        stored: &stored,
        generated: &generated,
        stats: &stats,
        keys: &keys,
        shop_platform,
    });
    // Conversations kedai answered first, one platform after another.
    let mut shown: Vec<&Vec<census::StoredMessage>> =
        stored.iter().filter(|c| c.len() >= 2).collect();
    shown.sort_by_key(|c| !c.iter().any(|m| m.author == "ai"));
    let transcript = shown
        .into_iter()
        .take(6)
        .flat_map(|c| {
            let mut lines = vec![format!("[{}]", c[0].shop)];
            lines.extend(c.iter().take(4).map(|m| {
                let who = if m.direction == "inbound" {
                    "buyer".to_owned()
                } else {
                    format!("kedai ({})", m.author)
                };
                format!("  {who:>14}: {}", m.text)
            }));
            lines
        })
        .collect();
    Ok((reports, transcript))
}

async fn simulate(
    args: &SimulateArgs,
    settings: &Settings,
    config: Option<&Path>,
) -> anyhow::Result<SimulationReport> {
    if !(0.0..=1.0).contains(&args.duplicate_rate) || !(0.0..=1.0).contains(&args.drop_rate) {
        bail!("--duplicate-rate and --drop-rate must be within 0..=1");
    }
    if args.rate <= 0.0 || !args.rate.is_finite() {
        bail!("--rate must be > 0, got {}", args.rate);
    }
    if !matches!(args.models.as_str(), "configured" | "none") {
        bail!("--models must be configured or none, got {:?}", args.models);
    }
    let temp = tempfile::TempDir::new()?;
    let data_dir = args
        .keep
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&data_dir)?;
    let mut settings = settings.clone();
    settings.store.data_dir = data_dir.clone();

    let world: Shared = Arc::new(Mutex::new(World {
        shops: shops(args.shops),
        ..World::default()
    }));
    let bases = serve_fakes(world.clone()).await?;
    let sim_shops = world_lock(&world).shops.clone();
    let token = prepare_store(&settings, &sim_shops, &bases).await?;
    let shop_platform: HashMap<String, Platform> = sim_shops
        .iter()
        .map(|s| (s.key.clone(), s.platform))
        .collect();

    let mut server = Server::new(ServerSpec {
        exe: std::env::current_exe()?,
        data_dir: data_dir.clone(),
        address: kedai::free_address()?,
        config: config.map(Path::to_path_buf),
        env: child_env(args, &data_dir),
    });
    let base = server.base();
    let server = tokio::task::spawn_blocking(move || -> anyhow::Result<Server> {
        server.start(Duration::from_secs(600))?;
        Ok(server)
    })
    .await??;
    let sim = Arc::new(Sim {
        world,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?,
        base,
        stats: Mutex::default(),
        generated: Mutex::default(),
        server: Arc::new(Mutex::new(server)),
        pushes: Arc::new(Semaphore::new(512)),
    });

    let started = Instant::now();
    let run_started = chrono::Utc::now();
    let total = args
        .duration
        .map_or(args.deliveries, |d| (d * args.rate).round() as usize);
    let done = Arc::new(AtomicBool::new(false));
    let kills_done = Arc::new(AtomicBool::new(false));
    let echoes = tokio::spawn(echo(sim.clone(), done.clone()));
    let agents = (args.agent_reply_rate > 0.0).then(|| {
        tokio::spawn(agent(
            sim.clone(),
            token.clone(),
            args.agent_reply_rate,
            done.clone(),
        ))
    });
    let killing = (args.kill_every > 0.0).then(|| {
        tokio::spawn(killer(
            sim.server.clone(),
            Duration::from_secs_f64(args.kill_every),
            kills_done.clone(),
        ))
    });

    let mut pushes = drive(&sim, args, total).await;
    while pushes.join_next().await.is_some() {}
    kills_done.store(true, Ordering::Relaxed);
    if let Some(killing) = killing {
        let _ = killing.await;
    }
    {
        let server = sim.server.clone();
        tokio::task::spawn_blocking(move || lock(&server).start(Duration::from_secs(120)))
            .await??;
    }

    // Settle: reconciliation recovers dropped pushes, the outbox drains.
    let deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    while Instant::now() < deadline {
        let (reports, _) = census_report(&sim, &token, &shop_platform).await?;
        // With models, also until kedai has decided on every message.
        let pending = reports.values().any(|r| {
            r.lost > 0 || r.replies_missing > 0 || (args.models != "none" && r.undecided > 0)
        });
        if !pending {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    done.store(true, Ordering::Relaxed);
    let _ = echoes.await;
    if let Some(agents) = agents {
        let _ = agents.await;
    }
    // Replies the agent posted last are still leaving: give them a moment.
    let mut final_report = census_report(&sim, &token, &shop_platform).await?;
    for _ in 0..20 {
        if final_report.0.values().all(|r| r.replies_missing == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        final_report = census_report(&sim, &token, &shop_platform).await?;
    }
    let (mut reports, transcript) = final_report;
    let kills = {
        let mut server = lock(&sim.server);
        let kills = server.kills;
        server.kill();
        kills
    };
    let generated = lock(&sim.generated).clone();
    history_check::check(
        &settings,
        &generated,
        run_started - chrono::Duration::minutes(1),
        &mut reports,
    )
    .await?;
    if args.keep.is_none() {
        // The temporary directory goes with `temp`.
        drop(temp);
    }
    Ok(SimulationReport {
        deliveries: total,
        kills,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        ok: census::all_kept(&reports),
        platforms: reports,
        data_dir: args
            .keep
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        transcript,
    })
}

pub fn run(
    args: SimulateArgs,
    settings: &Settings,
    config: Option<&Path>,
    output: Output,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(simulate(&args, settings, config))?;
    let ok = report.ok;
    output.print(serde_json::to_value(&report)?, || human(&report));
    if !ok {
        bail!("the simulation found a broken guarantee (see the report)");
    }
    Ok(())
}

fn human(report: &SimulationReport) -> String {
    let mut out = String::new();
    for line in &report.transcript {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!(
        "\n{} messages in {} s, kedai killed {} times\n{:<8} {:>9} {:>7} {:>7} {:>5} {:>9} {:>7} {:>8} {:>9} {:>8} {:>8}\n",
        report.deliveries, report.seconds, report.kills, "", "delivered", "acked", "stored", "lost",
        "dup msgs", "replies", "dup rep", "recovered", "ack p99", "history"
    ));
    for (platform, r) in &report.platforms {
        out.push_str(&format!(
            "{platform:<8} {:>9} {:>7} {:>7} {:>5} {:>9} {:>7} {:>8} {:>9} {:>6.1}ms {:>8}\n",
            r.delivered,
            r.acked,
            r.stored,
            r.lost,
            r.duplicate_messages,
            r.replies_sent,
            r.duplicate_replies,
            r.recovered,
            r.ack_ms_p99,
            if r.history_wrong == 0 {
                format!("{} ok", r.history_lines)
            } else {
                format!("{} WRONG", r.history_wrong)
            }
        ));
    }
    out.push_str(if report.ok {
        "every guarantee held"
    } else {
        "A GUARANTEE WAS BROKEN"
    });
    out
}
