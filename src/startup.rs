//! Assembles a running kedai from `Settings`: opens the store, seeds the demo
//! tenant when asked to (`server.demo`, `serve --demo`), starts the queue
//! workers, the channels' background work (outbox, events, reconciliation,
//! deadlines), the HTTP server (and the metrics listener, when configured)
//! and the retention task, and shuts them down in order on a signal, closing
//! the store last.
//!
//! Model files are prepared by the caller before [`Application::build`]; the
//! server never downloads anything while it serves requests. When they were
//! not ready, the queue's workers take no jobs (messages wait, queued) and
//! the server checks every `models.recheck_secs` whether they have been put
//! in place (`kedai models pull`); then it loads them, installs the reply
//! pipeline and the waiting messages are processed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::channels::jobs::ChannelJobs;
use crate::channels::{Channels, ChannelsConfig};
use crate::config::Settings;
use crate::domain::TextLimits;
use crate::engine::{Engine, Role};
use crate::http::{self, ApiLimits, AppState, ModelReadiness, Readiness};
use crate::inference::EmbedTask;
use crate::kb::{Embedder, KbService};
use crate::pipeline::stages::{
    EngineEmbedder, EngineWriter, KbKnowledge, UnderstandSources, UnderstandStage,
};
use crate::pipeline::{Pipeline, PipelineConfig, PipelineParts};
use crate::queue::{JobHandler, Queue};
use crate::store::{KbStore, OpenedStore, Schema, Store};

mod demo;

pub use demo::{seed_demo, DemoCredentials, DEMO_SHOPS, DEMO_TENANT, DEMO_TOKEN_FILE};
use demo::{seed_demo_kb, seed_demo_orders};

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
    /// Whether the store may migrate its schema (`kedai serve`) or must find
    /// it current (tools working on an existing data directory).
    pub schema: Schema,
}

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    /// `server.metrics_listen`'s listener, when one is configured.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    settings: Settings,
    /// The store, closed (on SQLite, its write-ahead log checkpointed) on
    /// shutdown.
    opened: OpenedStore,
    pub demo: Option<DemoCredentials>,
}

impl Application {
    pub async fn build(settings: Settings, options: BuildOptions) -> anyhow::Result<Application> {
        let metrics = crate::metrics::install(&settings.server.instance_name());
        if let ModelReadiness::Ready(prepared) = &options.models {
            if prepared.uses_stand_ins() {
                tracing::warn!(
                    embedding = %prepared.roles.retrieval,
                    chat = %prepared.roles.drafts,
                    "running with STAND-IN models: replies are placeholders, not answers; \
                     for plumbing tests and the simulator only, never for real buyers"
                );
            }
        }
        let opened = OpenedStore::open(&settings.store, options.schema)
            .await
            .with_context(|| format!("opening {}", OpenedStore::describe(&settings.store)))?;
        let store: Arc<dyn Store> = opened.store();
        let kb_store: Arc<dyn KbStore> = opened.kb();
        let demo = if settings.server.demo {
            seed_demo(store.as_ref(), &settings.store.data_dir)
                .await
                .context("seeding the demo tenant")?
        } else {
            None
        };
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
                EngineEmbedder::new(engine.clone(), Role::Retrieval)
                    .map(|e| Arc::new(e) as Arc<dyn Embedder>)
            }
            None => None,
        };
        let kb = Arc::new(
            KbService::new(
                kb_store,
                kb_embedder.clone(),
                settings.store.data_dir.join("kb"),
            )
            .with_vector_cache(settings.models.cache_dir().join("embeddings")),
        );
        if settings.server.demo {
            seed_demo_kb(store.as_ref(), &kb, &settings.kb.demo_dir).await;
        }
        if demo.is_some() {
            seed_demo_orders(store.as_ref(), &settings.kb.demo_orders).await;
        }
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
        let queue = Queue::new(store.clone(), None, settings.queue.clone());
        let _ = waker.set(queue.clone());
        if let OpenedStore::Postgres(postgres) = &opened {
            // Jobs queued by other replicas wake this one's workers too.
            let queued = postgres.jobs_queued();
            let queue = queue.clone();
            tokio::spawn(async move {
                loop {
                    queued.notified().await;
                    queue.wake();
                }
            });
        }
        let understand = Arc::new(std::sync::OnceLock::new());
        let store_for_learning = store.clone();
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
                max_concurrent_requests: settings.server.max_concurrent_requests,
            },
            readiness: Arc::new(Readiness::new(options.models)),
            metrics,
            kb,
            engine,
            policy: settings.policy.clone(),
            understand: understand.clone(),
            access: Arc::new(crate::http::access::AccessState::new(&settings.access)),
            channels,
            pipeline: Arc::default(),
            learning: Arc::new(
                crate::learning::Learning::new(
                    store_for_learning,
                    understand,
                    (!settings.pipeline.learning_eval_set.is_empty())
                        .then(|| settings.pipeline.learning_eval_set.clone().into()),
                )
                .with_faq_min_similarity(settings.pipeline.faq_min_similarity),
            ),
        };
        match (options.handler, kb_embedder) {
            (Some(handler), _) => install_handler(&state, handler),
            (None, Some(embedder)) => install_pipeline(&state, &settings, embedder),
            // Without the embedding model nothing can be understood: the
            // workers take no jobs, and messages wait for the models.
            (None, None) => tracing::warn!(
                "no reply pipeline without the models: messages are stored and wait in the \
                 queue until the models are in place"
            ),
        }
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let address = listener.local_addr()?;
        let metrics_listener = match settings.server.metrics_address() {
            Some(metrics) => Some(
                TcpListener::bind(metrics)
                    .await
                    .with_context(|| format!("binding server.metrics_listen {metrics}"))?,
            ),
            None => None,
        };
        Ok(Application {
            listener,
            address,
            metrics_listener,
            state,
            settings,
            opened,
            demo,
        })
    }

    /// The workbench's state: the API's, plus its own settings.
    fn web_state(&self, shutdown: CancellationToken) -> crate::web::WebState {
        let web = &self.settings.web;
        // Without a chat model the writer answers "unavailable", and pages
        // say that a translation cannot be shown.
        let writer: Arc<dyn crate::pipeline::ports::Writer> = Arc::new(EngineWriter {
            engine: self.state.engine.clone(),
            role: Role::Translations,
        });
        crate::web::WebState {
            app: self.state.clone(),
            settings: Arc::new(web.clone()),
            policy: Arc::new(self.settings.policy.clone()),
            limiter: Arc::new(crate::web::session::LoginLimiter::new(
                web.login_attempts,
                Duration::from_secs(15 * 60),
            )),
            writer: Some(writer),
            agent_language: self.settings.pipeline.agent_language.clone(),
            shutdown,
        }
    }

    /// The address actually bound (useful with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The metrics listener's address, when `server.metrics_listen` is set.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    pub fn readiness(&self) -> Arc<Readiness> {
        self.state.readiness.clone()
    }

    /// The model runtime.
    pub fn engine(&self) -> Engine {
        self.state.engine.clone()
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
        if let (Some(understand), true) = (self.state.understand.get(), poll > 0) {
            understand.watch(Duration::from_secs(poll), shutdown.child_token());
        }
        let recheck = self.settings.models.recheck_secs;
        if !self.state.queue.health().report().processing && recheck > 0 {
            tokio::spawn(await_models(
                self.state.clone(),
                self.settings.clone(),
                shutdown.child_token(),
            ));
        }
        tokio::spawn(warm_kb_indexes(self.state.clone()));
        tokio::spawn(announce_ready(self.state.clone(), shutdown.child_token()));
        let idle = self.settings.pipeline.prepare_translations_after_idle_secs;
        if idle > 0 {
            let state = self.state.clone();
            let ahead = crate::pipeline::prepare::schedule::Ahead {
                store: state.store.clone(),
                kb: state.kb.clone(),
                // (Knowledge untracked: no index is being built for readiness.)
                ready: Box::new(move || {
                    let ready = state.understand.get().is_some_and(|u| u.is_ready())
                        && state.readiness.knowledge_is_warm() != Some(false);
                    state.pipeline.get().filter(|_| ready).cloned()
                }),
            };
            tokio::spawn(crate::pipeline::prepare::schedule::run(
                ahead,
                Duration::from_secs(idle),
                shutdown.child_token(),
            ));
        }
        // A tenant's classifiers promoted or rolled back on another replica
        // of the same database are used here within seconds.
        tokio::spawn(
            self.state
                .learning
                .clone()
                .follow(LEARNING_FOLLOW_EVERY, shutdown.child_token()),
        );
        if self.settings.store.retention_days > 0 {
            tokio::spawn(apply_retention(
                self.state.store.clone(),
                self.settings.store.retention_days,
                shutdown.child_token(),
            ));
        }
        let serve_options = http::serve::ServeOptions {
            header_read_timeout: Duration::from_secs(self.settings.server.header_read_timeout_secs),
        };
        let web = self.web_state(shutdown.clone());
        if let Some(listener) = self.metrics_listener {
            if let Ok(address) = listener.local_addr() {
                tracing::info!(%address, "metrics are served without credentials on this address");
            }
            tokio::spawn(http::serve::serve(
                listener,
                http::health::metrics_router(self.state.clone()),
                serve_options,
                shutdown.child_token(),
            ));
        }
        let app = http::router(self.state.clone()).merge(crate::web::router(web));
        let grace = Duration::from_secs(self.settings.server.shutdown_grace_secs);
        let server = http::serve::serve(self.listener, app, serve_options, shutdown.clone());
        tracing::info!(address = %self.address, "kedai is listening");
        let mut server = tokio::spawn(server);
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
        self.opened.close().await;
        tracing::info!("stopped");
        result
    }
}

/// Runs each job in its tenant's cache scope (`engine::scope`), so the
/// model work the pipeline caches for one tenant is never reused for
/// another's.
struct TenantScoped<H>(H);

#[async_trait::async_trait]
impl<H: JobHandler> JobHandler for TenantScoped<H> {
    async fn handle(
        &self,
        job: &crate::store::Job,
    ) -> Result<crate::queue::Handled, crate::queue::JobError> {
        let owner = job.tenant_id.map_or(0, |t| t.0.as_u128());
        crate::engine::scope::within(crate::engine::scope::pipeline(owner), self.0.handle(job))
            .await
    }

    async fn give_up(
        &self,
        job: &crate::store::Job,
        why: &crate::store::GiveUp,
    ) -> Result<(), crate::queue::JobError> {
        let owner = job.tenant_id.map_or(0, |t| t.0.as_u128());
        crate::engine::scope::within(
            crate::engine::scope::pipeline(owner),
            self.0.give_up(job, why),
        )
        .await
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
                // A new database is created at the current schema; an
                // existing one must already be current (`kedai migrate`).
                schema: if settings.database_path().exists() {
                    Schema::Current
                } else {
                    Schema::Migrate
                },
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
            EngineEmbedder::new(engine.clone(), Role::Retrieval)
                .context("no embedding model is configured")?,
        );
        // The application installed its pipeline, and with it an
        // understand stage in training: the harness's pipeline shares it
        // rather than training the same heads a second time.
        let understand = match app.state.understand.get() {
            Some(stage) => stage.clone(),
            None => understand_stage(&settings, heads_embedder(&engine, &embedder)),
        };
        let pipeline = reply_pipeline(
            &settings,
            app.state.store.clone(),
            app.state.kb.clone(),
            engine,
            understand,
            Some(embedder),
        );
        Ok(PipelineHarness { app, pipeline })
    }
}

/// Installs the reply pipeline over the runtime's models as the queue's
/// handler, with its understand stage where the HTTP handlers find it.
fn install_pipeline(state: &AppState, settings: &Settings, embedder: Arc<dyn Embedder>) {
    let understand = state
        .understand
        .get_or_init(|| understand_stage(settings, heads_embedder(&state.engine, &embedder)))
        .clone();
    // Tenants' own classifiers come back once the shared ones are trained;
    // until then their messages are read with the shared ones.
    let learning = state.learning.clone();
    let training = understand.clone();
    tokio::spawn(async move {
        if training.trained().await.is_ok() {
            learning.restore().await;
        }
    });
    let pipeline = Arc::new(reply_pipeline(
        settings,
        state.store.clone(),
        state.kb.clone(),
        state.engine.clone(),
        understand,
        Some(embedder),
    ));
    let _ = state.pipeline.set(pipeline.clone());
    install_handler(state, Arc::new(TenantScoped(pipeline)));
}

/// Gives the queue its handler, behind the channels' own step (orders
/// fetched first, non-text messages handed to a person).
fn install_handler(state: &AppState, handler: Arc<dyn JobHandler>) {
    state.queue.install(Arc::new(ChannelJobs {
        inner: handler,
        channels: state.channels.clone(),
    }));
}

/// Checks every `models.recheck_secs` whether the configured models are now
/// on disk (`kedai models pull` ran meanwhile, or a volume was mounted);
/// once they are, loads them, gives the knowledge base its embedder and
/// installs the reply pipeline, so the messages waiting in the queue are
/// processed. Never downloads anything itself.
async fn await_models(state: AppState, settings: Settings, cancel: CancellationToken) {
    let every = Duration::from_secs(settings.models.recheck_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => return,
        }
        let models = settings.models.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let mode = crate::models::PrepareMode {
                fetch: crate::models::FetchPolicy::Offline,
                progress: crate::models::Progress::Silent,
            };
            crate::models::prepare(&models, mode)
        })
        .await;
        let prepared = match prepared {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "models still not in place");
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "checking for the models failed");
                continue;
            }
        };
        tracing::info!("the models are in place: loading them and processing waiting messages");
        state.engine.load(&prepared);
        state.readiness.set_models(ModelReadiness::Ready(prepared));
        let Some(embedder) = EngineEmbedder::new(state.engine.clone(), Role::Retrieval) else {
            tracing::error!("no embedding model is configured; messages keep waiting");
            return;
        };
        let embedder: Arc<dyn Embedder> = Arc::new(embedder);
        state.kb.set_embedder(embedder.clone());
        install_pipeline(&state, &settings, embedder);
        let poll = settings.pipeline.exemplars_poll_secs;
        if let (Some(understand), true) = (state.understand.get(), poll > 0) {
            understand.watch(Duration::from_secs(poll), cancel.clone());
        }
        tokio::spawn(warm_kb_indexes(state.clone()));
        return;
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
        writer: Some(Arc::new(EngineWriter {
            engine: engine.clone(),
            role: Role::Drafts,
        })),
        meaning,
        policy: settings.policy.clone(),
        config: PipelineConfig::from(&settings.pipeline),
    })
    .with_draft_lane(settings.queue.draft_workers > 0)
    .with_translator(translator(&engine))
}

/// The writer of translations and summaries when the translations role
/// names another chat model than drafts; `None` when one model does both.
fn translator(engine: &Engine) -> Option<Arc<dyn crate::pipeline::ports::Writer>> {
    (engine.model_for(Role::Translations) != engine.model_for(Role::Drafts)).then(|| {
        Arc::new(EngineWriter {
            engine: engine.clone(),
            role: Role::Translations,
        }) as Arc<dyn crate::pipeline::ports::Writer>
    })
}

/// The encoder behind the heads: `retrieval` itself when the understand
/// role names the same model and its vectors are the same (no task
/// prompts), so a message is embedded once for both; else the runtime's
/// understand model, queries under its classification prompt.
fn heads_embedder(engine: &Engine, retrieval: &Arc<dyn Embedder>) -> Arc<dyn Embedder> {
    let model = engine.model_for(Role::Understand);
    let same = model == engine.model_for(Role::Retrieval)
        && engine.vector_id(&model, EmbedTask::Classification) == model;
    if same {
        return retrieval.clone();
    }
    match EngineEmbedder::new(engine.clone(), Role::Understand) {
        Some(heads) => Arc::new(heads),
        None => retrieval.clone(),
    }
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

/// Brings every tenant's knowledge-base index up to date in the background
/// after a start, so a missing, stale or half-built index (a crash) is
/// rebuilt before the first search needs it.
async fn warm_kb_indexes(state: AppState) {
    let (store, kb) = (state.store.clone(), state.kb.clone());
    // Indexes built before the embedding model arrives lack vectors and
    // are built again then; readiness waits for the ones that serve.
    let serving = state.queue.health().report().processing;
    if serving {
        state.readiness.knowledge_warming();
    }
    let tenants = match store.list_tenants().await {
        Ok(tenants) => tenants,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list tenants to warm kb indexes");
            // Built on first use instead; not worth holding readiness.
            if serving {
                state.readiness.knowledge_warm();
            }
            return;
        }
    };
    let started = std::time::Instant::now();
    for tenant in tenants {
        if matches!(kb.revision(tenant.id).await, Ok(0)) {
            continue;
        }
        if let Err(err) = kb.current(tenant.id).await {
            tracing::warn!(tenant = %tenant.id, error = %err, "kb index not built");
        }
    }
    if serving {
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "knowledge indexes built"
        );
        state.readiness.knowledge_warm();
    }
}

/// How often a replica checks which version of each tenant's classifiers
/// is active in the store.
const LEARNING_FOLLOW_EVERY: Duration = Duration::from_secs(5);

/// Logs once that kedai answers messages now: the models loaded, the
/// classifiers trained and the knowledge indexes built (what `/readyz`
/// waits for), with the seconds it took since start.
async fn announce_ready(state: AppState, stop: CancellationToken) {
    let started = std::time::Instant::now();
    loop {
        let processing = state.queue.health().report().processing;
        let trained = state.understand.get().is_some_and(|u| u.is_ready());
        let indexed = state.readiness.knowledge_is_warm() == Some(true);
        if processing && trained && indexed {
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "kedai is ready: the models are loaded, the classifiers trained and the \
                 knowledge indexes built"
            );
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Deletes conversations older than `days` once an hour until `stop`.
async fn apply_retention(store: Arc<dyn Store>, days: u32, stop: CancellationToken) {
    loop {
        let before = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
        // Once per period across every replica of the database.
        let pass = match store.claim_timer("retention", RETENTION_EVERY).await {
            Ok(true) => store.apply_retention(before).await,
            Ok(false) => Ok(Default::default()),
            Err(err) => Err(err),
        };
        match pass {
            Ok(outcome) if outcome.conversations > 0 => tracing::info!(
                conversations = outcome.conversations,
                messages = outcome.messages,
                "conversations past the retention period deleted"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "retention pass failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETENTION_EVERY) => {}
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
