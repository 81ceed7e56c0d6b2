//! Assembles a running kedai from `Settings`: opens the store, seeds the demo
//! tenant on first start, starts the queue workers, the channels' background
//! work (outbox, events, reconciliation, deadlines) and the HTTP server, and
//! shuts them down in order on a signal.
//!
//! Model files are prepared by the caller before [`Application::build`]; the
//! server never downloads anything while it serves requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::channels::jobs::ChannelJobs;
use crate::channels::{Channels, ChannelsConfig};
use crate::config::Settings;
use crate::domain::{Platform, ShopKey, TenantName, TextLimits};
use crate::engine::Engine;
use crate::http::{self, ApiLimits, AppState, ModelReadiness, Readiness};
use crate::kb::{Embedder, KbService};
use crate::pipeline::stages::{
    EngineEmbedder, EngineWriter, KbKnowledge, UnderstandSources, UnderstandStage,
};
use crate::pipeline::{Pipeline, PipelineConfig, PipelineParts};
use crate::queue::{JobHandler, MarkProcessed, Queue};
use crate::store::{KbStore, NewShop, SqliteStore, Store, StoreError};

pub const DEMO_TENANT: &str = "demo";

/// The demo tenant's shops, one per platform.
pub const DEMO_SHOPS: [(&str, Platform, &str); 4] = [
    ("demo-shopee", Platform::Shopee, "Demo shop on Shopee"),
    ("demo-lazada", Platform::Lazada, "Demo shop on Lazada"),
    ("demo-tiktok", Platform::Tiktok, "Demo shop on TikTok Shop"),
    ("demo-web", Platform::Web, "Demo web shop"),
];

/// Credentials minted for the demo tenant on the first start, shown once.
#[derive(Debug, Clone)]
pub struct DemoCredentials {
    pub tenant: String,
    pub token: String,
}

/// Creates the demo tenant and its shops unless a tenant called "demo"
/// already exists; returns the new token when it made one.
pub async fn seed_demo(store: &dyn Store) -> Result<Option<DemoCredentials>, StoreError> {
    if store.tenant_by_name(DEMO_TENANT).await?.is_some() {
        return Ok(None);
    }
    let name = TenantName::parse(DEMO_TENANT).expect("demo tenant name is valid");
    let tenant = match store.create_tenant(&name).await {
        Ok(tenant) => tenant,
        // Another process seeded it between our check and our insert.
        Err(StoreError::AlreadyExists { .. }) => return Ok(None),
        Err(err) => return Err(err),
    };
    for (key, platform, label) in DEMO_SHOPS {
        store
            .add_shop(NewShop {
                tenant_id: tenant.id,
                platform,
                key: ShopKey::parse(key).expect("demo shop keys are valid"),
                name: label.to_owned(),
                // Cross-border shops: they sell to every country of the
                // region, in US dollars, so only the currency is fixed.
                market: crate::domain::Market {
                    currency: Some(
                        crate::domain::CurrencyCode::parse("USD").expect("USD is a currency"),
                    ),
                    ..Default::default()
                },
                credentials: SecretString::from("{}"),
            })
            .await?;
    }
    let (_, token) = crate::auth::issue_token(store, tenant.id, "demo").await?;
    Ok(Some(DemoCredentials {
        tenant: tenant.name,
        token,
    }))
}

/// What `build` needs besides the settings.
pub struct BuildOptions {
    /// `Ready` models are loaded into the runtime (unless `engine` is given).
    pub models: ModelReadiness,
    /// What processes inbound-message jobs; `None` for the default.
    pub handler: Option<Arc<dyn JobHandler>>,
    /// What embeds knowledge-base passages and queries; `None` loads the
    /// configured embedding model when the models are ready, and otherwise
    /// leaves the knowledge base on BM25 alone.
    pub kb_embedder: Option<Arc<dyn Embedder>>,
    /// A model runtime to serve instead of starting one, e.g. one shared by
    /// several servers in a test process.
    pub engine: Option<Engine>,
}

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    state: AppState,
    settings: Settings,
    pub demo: Option<DemoCredentials>,
}

impl Application {
    pub async fn build(settings: Settings, options: BuildOptions) -> anyhow::Result<Application> {
        let metrics = crate::metrics::install();
        let sqlite = Arc::new(SqliteStore::open(&settings.store).await.with_context(|| {
            format!("opening the store in {}", settings.store.data_dir.display())
        })?);
        let store: Arc<dyn Store> = sqlite.clone();
        let kb_store: Arc<dyn KbStore> = sqlite;
        let demo = seed_demo(store.as_ref())
            .await
            .context("seeding the demo tenant")?;
        let engine = match options.engine {
            Some(engine) => engine,
            None => {
                crate::engine::init_threads(settings.models.threads);
                let engine = Engine::new(&settings.models);
                // Loading runs on each model's own thread; build returns at
                // once and /readyz reports progress.
                if let ModelReadiness::Ready(prepared) = &options.models {
                    engine.load(prepared);
                }
                engine
            }
        };
        // The knowledge base and the understand stage embed through the
        // runtime: one copy of the model, every pass batched and admitted.
        let kb_embedder: Option<Arc<dyn Embedder>> = match options.kb_embedder {
            Some(embedder) => Some(embedder),
            None if matches!(options.models, ModelReadiness::Ready(_)) => {
                EngineEmbedder::new(engine.clone()).map(|e| Arc::new(e) as Arc<dyn Embedder>)
            }
            None => None,
        };
        let kb = Arc::new(KbService::new(
            kb_store,
            kb_embedder.clone(),
            settings.store.data_dir.join("kb"),
        ));
        seed_demo_kb(store.as_ref(), &kb, &settings.kb.demo_dir).await;
        if demo.is_some() {
            seed_demo_orders(store.as_ref(), &settings.kb.demo_orders).await;
        }
        // The understand stage, shared by the pipeline and the reload
        // endpoint; none without the embedding model.
        let understand = match (&options.handler, &kb_embedder) {
            (None, Some(embedder)) => Some(understand_stage(&settings, embedder.clone())),
            _ => None,
        };
        let handler: Arc<dyn JobHandler> = match (options.handler, understand.clone()) {
            (Some(handler), _) => handler,
            (None, Some(understand)) => Arc::new(reply_pipeline(
                &settings,
                store.clone(),
                kb.clone(),
                engine.clone(),
                understand,
                kb_embedder.clone(),
            )),
            // Without the embedding model nothing can be understood: messages
            // are stored and marked, and wait for a human.
            (None, None) => Arc::new(MarkProcessed {
                store: store.clone(),
            }),
        };
        // The channels wake the queue when they store a message, and wrap
        // the queue's handler; the queue is made after them.
        let waker: Arc<std::sync::OnceLock<Queue>> = Arc::default();
        let wake = waker.clone();
        let channels = Channels::new(ChannelsConfig {
            store: store.clone(),
            settings: settings.channels.clone(),
            text: TextLimits {
                max_chars: settings.server.max_text_chars,
            },
            max_attempts: settings.queue.max_attempts,
            inbound_wake: Arc::new(move || {
                if let Some(queue) = wake.get() {
                    queue.wake();
                }
            }),
            policy: settings.policy.clone(),
        });
        let handler: Arc<dyn JobHandler> = Arc::new(ChannelJobs {
            inner: handler,
            channels: channels.clone(),
        });
        let queue = Queue::new(store.clone(), handler, settings.queue.clone());
        let _ = waker.set(queue.clone());
        let state = AppState {
            store,
            queue,
            limits: ApiLimits {
                text: TextLimits {
                    max_chars: settings.server.max_text_chars,
                },
                body_bytes: settings.server.body_limit_bytes,
                model_body_bytes: settings.models.request_body_limit_bytes,
                timeout: Duration::from_secs(settings.server.request_timeout_secs),
                max_attempts: settings.queue.max_attempts,
            },
            readiness: Arc::new(Readiness::new(options.models)),
            metrics,
            kb,
            engine,
            policy: settings.policy.clone(),
            understand,
            channels,
        };
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let address = listener.local_addr()?;
        Ok(Application {
            listener,
            address,
            state,
            settings,
            demo,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    pub fn readiness(&self) -> Arc<Readiness> {
        self.state.readiness.clone()
    }

    /// Serves until `shutdown` fires; then stops accepting, lets in-flight
    /// requests finish (up to `server.shutdown_grace_secs`), stops the
    /// workers and hands their leased jobs back to the queue.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut workers = self.state.queue.spawn(shutdown.child_token());
        if let Err(err) = self.state.channels.reload().await {
            tracing::warn!(error = %err, "cannot read the shops' channel credentials yet");
        }
        let mut channel_tasks = self.state.channels.spawn(shutdown.child_token());
        let poll = self.settings.pipeline.exemplars_poll_secs;
        if let (Some(understand), true) = (&self.state.understand, poll > 0) {
            understand.watch(Duration::from_secs(poll), shutdown.child_token());
        }
        tokio::spawn(warm_kb_indexes(
            self.state.store.clone(),
            self.state.kb.clone(),
        ));
        let app = http::router(self.state.clone());
        let grace = Duration::from_secs(self.settings.server.shutdown_grace_secs);
        let signal = shutdown.clone();
        // The peer's address reaches handlers that limit per client (the
        // web-chat widget).
        let server = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { signal.cancelled().await });
        tracing::info!(address = %self.address, "kedai is listening");
        let mut server = tokio::spawn(async move { server.await });
        let early_exit = tokio::select! {
            joined = &mut server => Some(joined),
            _ = shutdown.cancelled() => None,
        };
        let result = match early_exit {
            Some(joined) => {
                shutdown.cancel();
                joined
                    .context("server task")
                    .and_then(|r| r.context("server"))
            }
            None => {
                tracing::info!("shutting down: finishing in-flight requests");
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(joined) => joined
                        .context("server task")
                        .and_then(|r| r.context("server")),
                    Err(_) => {
                        tracing::warn!(
                            grace_secs = grace.as_secs(),
                            "in-flight requests did not finish within the grace period"
                        );
                        server.abort();
                        Ok(())
                    }
                }
            }
        };
        while workers.join_next().await.is_some() {}
        while channel_tasks.join_next().await.is_some() {}
        tracing::info!("stopped");
        result
    }
}

/// A server's parts without a listener or queue workers, for one-shot tools
/// (`kedai ask`, `kedai eval replies`): the store with the demo tenant
/// seeded on first use, the runtime with both models loaded, and a reply
/// pipeline over them that the caller drives message by message.
pub struct PipelineHarness {
    pub app: Application,
    pub pipeline: Pipeline,
}

impl PipelineHarness {
    pub async fn start(mut settings: Settings) -> anyhow::Result<PipelineHarness> {
        settings.server.listen = "127.0.0.1:0".parse().expect("valid address");
        crate::engine::init_threads(settings.models.threads);
        let models = settings.models.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let mode =
                crate::models::PrepareMode::from_settings(&models, crate::models::Progress::Lines);
            crate::models::prepare(&models, mode)
        })
        .await?
        .context("the pipeline needs the configured models (see `kedai models pull`)")?;
        let app = Application::build(
            settings.clone(),
            BuildOptions {
                models: ModelReadiness::Ready(prepared),
                // No queue workers run here; the caller drives the pipeline.
                handler: None,
                kb_embedder: None,
                engine: None,
            },
        )
        .await?;
        let engine = app.state.engine.clone();
        let waiting = engine.clone();
        tokio::task::spawn_blocking(move || waiting.wait_until_settled(Duration::from_secs(900)))
            .await?;
        if !engine.all_ready() {
            anyhow::bail!("the models did not load: {:?}", engine.models());
        }
        let embedder: Arc<dyn Embedder> = Arc::new(
            EngineEmbedder::new(engine.clone()).context("no embedding model is configured")?,
        );
        let pipeline = reply_pipeline(
            &settings,
            app.state.store.clone(),
            app.state.kb.clone(),
            engine,
            understand_stage(&settings, embedder.clone()),
            Some(embedder),
        );
        Ok(PipelineHarness { app, pipeline })
    }
}

/// The reply pipeline over the real stages: the understand stage (trained
/// from the exemplar folders), the knowledge base, the runtime's chat model,
/// and its embedding model for verifying translations.
fn reply_pipeline(
    settings: &Settings,
    store: Arc<dyn Store>,
    kb: Arc<KbService>,
    engine: Engine,
    understand: Arc<UnderstandStage>,
    meaning: Option<Arc<dyn Embedder>>,
) -> Pipeline {
    Pipeline::new(PipelineParts {
        store,
        understand,
        knowledge: Some(Arc::new(KbKnowledge { kb })),
        writer: Some(Arc::new(EngineWriter { engine })),
        meaning,
        policy: settings.policy.clone(),
        config: PipelineConfig::from(&settings.pipeline),
    })
}

/// The understand stage over the configured exemplar folders; its training
/// starts at once, in the background.
fn understand_stage(settings: &Settings, embedder: Arc<dyn Embedder>) -> Arc<UnderstandStage> {
    let optional =
        |dir: &str| (!dir.trim().is_empty()).then(|| std::path::PathBuf::from(dir.trim()));
    let stage = Arc::new(UnderstandStage::new(
        embedder,
        UnderstandSources {
            intents_dir: std::path::PathBuf::from(settings.pipeline.intents_dir.trim()),
            sentiment_dir: optional(&settings.pipeline.sentiment_dir),
            cache_dir: settings.models.cache_dir().join("embeddings"),
        },
    ));
    // Train now, in the background, rather than when the first buyer writes.
    stage.start_training();
    stage
}

/// Imports the demo orders into the demo tenant (first start only). A broken
/// file is logged and skipped: the server starts regardless.
async fn seed_demo_orders(store: &dyn Store, path: &str) {
    if path.trim().is_empty() {
        return;
    }
    let tenant = match store.tenant_by_name(DEMO_TENANT).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(error = %err, "demo orders not imported");
            return;
        }
    };
    let path = std::path::Path::new(path.trim());
    match crate::demo::import_orders(store, tenant.id, path, chrono::Utc::now()).await {
        Ok(n) => tracing::info!(orders = n, file = %path.display(), "demo orders imported"),
        Err(err) => tracing::warn!(error = %err, "demo orders not imported"),
    }
}

/// Imports `demo_dir` into the demo tenant while its knowledge base has
/// never been changed (the first start). A broken folder is logged and
/// skipped: the server starts regardless.
async fn seed_demo_kb(store: &dyn Store, kb: &KbService, demo_dir: &str) {
    let dir = std::path::Path::new(demo_dir.trim());
    if demo_dir.trim().is_empty() {
        return;
    }
    let tenant = match store.tenant_by_name(DEMO_TENANT).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(error = %err, "cannot look up the demo tenant");
            return;
        }
    };
    match kb.revision(tenant.id).await {
        Ok(0) => {}
        Ok(_) => return,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the demo knowledge base");
            return;
        }
    }
    if !dir.is_dir() {
        tracing::info!(dir = %dir.display(), "no demo knowledge base folder; skipping");
        return;
    }
    let entries = match crate::kb::import::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            tracing::warn!(error = %err, "demo knowledge base not imported");
            return;
        }
    };
    match kb.import(tenant.id, &entries, "system").await {
        Ok(applied) => tracing::info!(
            dir = %dir.display(),
            created = applied.created,
            "demo knowledge base imported"
        ),
        Err(err) => tracing::warn!(error = %err, "demo knowledge base not imported"),
    }
}

/// Brings every tenant's knowledge-base index up to date in the background
/// after a start, so a missing, stale or half-built index (a crash) is
/// rebuilt before the first search needs it.
async fn warm_kb_indexes(store: Arc<dyn Store>, kb: Arc<KbService>) {
    let tenants = match store.list_tenants().await {
        Ok(tenants) => tenants,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list tenants to warm kb indexes");
            return;
        }
    };
    for tenant in tenants {
        if matches!(kb.revision(tenant.id).await, Ok(0)) {
            continue;
        }
        if let Err(err) = kb.current(tenant.id).await {
            tracing::warn!(tenant = %tenant.id, error = %err, "kb index not built");
        }
    }
}

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
