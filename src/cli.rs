//! The `kedai` command line: `serve`, model management, tenant / shop /
//! token administration and benchmarks. Every command a script may call
//! takes `--json` and then prints exactly one JSON document on stdout.
//!
//! This is the one place that turns command-line arguments into settings and
//! domain values; it holds no logic of its own beyond wiring.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod migrate;

use crate::config::Settings;
use crate::domain::TenantName;
use crate::http::ModelReadiness;
use crate::startup::{Application, BuildOptions};
use crate::store::{OpenedStore, Schema, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "kedai",
    version,
    about = "Self-hosted AI customer service for marketplace sellers"
)]
pub struct Cli {
    /// Configuration file (TOML) layered over the built-in defaults.
    #[arg(long, global = true, env = "KEDAI_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory holding the database (overrides store.data_dir).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (fetches the model bundle on first start).
    Serve {
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Create the demo tenant, shops, knowledge base, orders and token
        /// on start (sets server.demo); its token goes to <data dir>/demo-token.
        #[arg(long)]
        demo: bool,
    },
    /// Fetch, list and verify model files.
    #[command(subcommand)]
    Models(crate::models::ModelsCommand),
    /// Manage tenants (seller organisations).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage a tenant's shops and connect them to their platforms.
    #[command(subcommand)]
    Shop(crate::channels::cli::ShopCommand),
    /// Signed event webhooks for integrations.
    #[command(subcommand)]
    Events(crate::channels::cli::EventsCommand),
    /// Import orders from a CSV or JSON file.
    #[command(subcommand)]
    Orders(crate::channels::cli::OrdersCommand),
    /// Run fake Shopee, Lazada and TikTok Shop servers against a kedai it
    /// starts (and kills), and report what was delivered, stored and sent.
    Simulate(crate::channels::simulator::SimulateArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The server operator's credentials, which belong to no tenant.
    #[command(subcommand)]
    Operator(crate::access_cli::OperatorCommand),
    /// A buyer's personal data: erase it on request.
    #[command(subcommand)]
    Buyer(crate::access_cli::BuyerCommand),
    /// Manage workbench users (people who log in at /app).
    #[command(subcommand)]
    User(crate::web::cli::UserCommand),
    /// Measure this machine: load generators and model benchmarks.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Import, list and search a tenant's knowledge base.
    #[command(subcommand)]
    Kb(KbCommand),
    /// Reports over a tenant's conversations: involvement, automation,
    /// resolution, response times, drafts, satisfaction, tags.
    Report(crate::reports::cli::ReportArgs),
    /// Run past buyer messages and people's replies through the pipeline
    /// on a copy of the store, nothing sent: what kedai would have done,
    /// agreement by meaning, projected automation, what it would get wrong.
    Replay(crate::reports::cli::ReplayArgs),
    /// Measure kedai's components on labelled data.
    #[command(subcommand)]
    Eval(crate::eval::EvalCommand),
    /// Create the database or bring its schema up to date (a copy of the
    /// database is kept in <data dir>/backups first); stop the server
    /// before. `kedai serve` does this itself at start.
    Migrate,
    /// Move a store to another database: `kedai store copy --from
    /// sqlite://./data --to postgres://...`.
    #[command(subcommand)]
    Store(crate::store::copy::StoreCommand),
    /// Run the whole reply pipeline once on a message and print its trace
    /// (the message is stored as the buyer's, like one from a marketplace).
    Ask {
        text: String,
        #[arg(long, default_value = "demo-shopee")]
        shop: String,
        /// The platform's buyer id: the message joins that buyer's
        /// conversation, with its history, orders and repeats. Without it
        /// every ask is a new buyer's first message.
        #[arg(long)]
        buyer: Option<String>,
        #[arg(long, default_value = crate::startup::DEMO_TENANT)]
        tenant: String,
        /// Create the demo tenant first if it does not exist.
        #[arg(long)]
        demo: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Import a kb folder (docs/kb-format.md): all of it, or nothing.
    Import {
        dir: PathBuf,
        #[arg(long, default_value = crate::startup::DEMO_TENANT)]
        tenant: String,
    },
    /// List entries.
    List {
        #[arg(long, default_value = crate::startup::DEMO_TENANT)]
        tenant: String,
        /// faq, policy, product or shipping.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Search, printing the hits with each component's rank and score.
    Search {
        query: String,
        #[arg(long, default_value = crate::startup::DEMO_TENANT)]
        tenant: String,
        #[arg(long, default_value_t = crate::kb::service::DEFAULT_TOP_K)]
        top_k: usize,
        /// hybrid, bm25 or dense.
        #[arg(long, default_value = "hybrid")]
        mode: String,
        /// Only this kind (repeatable): faq, policy, product, shipping.
        #[arg(long)]
        kind: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its first API token (scope admin).
    Create { name: String },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a new API token for a tenant.
    Create {
        #[arg(long)]
        tenant: String,
        /// What it may do: admin, integration (ingest, reply, orders,
        /// read), read-only, or a list of ingest, reply, orders, read, kb,
        /// models, e.g. `integration,kb`.
        #[arg(long)]
        scope: String,
        /// Only this shop's messages, conversations and orders.
        #[arg(long)]
        shop: Option<String>,
        /// When it stops working: `90d`, `12h`, `30m` or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long, default_value = "api")]
        label: String,
    },
    /// Revoke a token by its id.
    Revoke { id: String },
    /// List a tenant's tokens (never the tokens themselves).
    List {
        #[arg(long)]
        tenant: String,
    },
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Human,
    Json,
}

impl Output {
    pub(crate) fn print(self, value: serde_json::Value, human: impl FnOnce() -> String) {
        match self {
            Output::Json => println!("{value}"),
            Output::Human => println!("{}", human()),
        }
    }
}

/// Parses the process arguments and runs the command.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.data_dir {
        settings.store.data_dir = dir.clone();
    }
    // Dropped when the command ends, after its runtime: flushes the last spans.
    let _exporter = crate::telemetry::init(
        &settings.log,
        &settings.telemetry,
        &settings.server.instance_name(),
    )?;
    let output = if cli.json {
        Output::Json
    } else {
        Output::Human
    };
    match cli.command {
        Command::Serve { listen, demo } => {
            if let Some(listen) = listen {
                settings.server.listen = listen;
            }
            settings.server.demo |= demo;
            serve(settings)
        }
        Command::Models(cmd) => crate::models::run(cmd, &settings, models_output(output)),
        Command::Migrate => migrate::run(&settings, output),
        Command::Store(cmd) => runtime()?.block_on(crate::store::copy::run(cmd, &settings, output)),
        Command::Bench(cmd) => {
            crate::bench::run(cmd, &settings, bench_output(output), cli.config.as_deref())
        }
        Command::Tenant(cmd) => admin(&settings, |store| tenant(store, cmd, output)),
        Command::Shop(cmd) => admin(&settings, |store| {
            crate::channels::cli::shop(store, cmd, &settings, output)
        }),
        Command::Events(cmd) => admin(&settings, |store| {
            crate::channels::cli::events(store, cmd, output)
        }),
        Command::Orders(cmd) => admin(&settings, |store| {
            crate::channels::cli::orders(store, cmd, output)
        }),
        Command::Simulate(args) => {
            crate::channels::simulator::run(args, &settings, cli.config.as_deref(), output)
        }
        Command::Token(cmd) => admin(&settings, |store| token(store, cmd, output)),
        Command::Operator(cmd) => admin(&settings, |store| {
            crate::access_cli::operator(store, cmd, access_output(output))
        }),
        Command::Buyer(cmd) => admin(&settings, |store| {
            crate::access_cli::buyer(store, cmd, access_output(output))
        }),
        Command::User(cmd) => admin(&settings, |store| user(store, cmd, output)),
        Command::Replay(args) => {
            crate::reports::cli::replay(&settings, args, output == Output::Json)
        }
        Command::Report(args) => admin(&settings, |store| {
            crate::reports::cli::run(store, args, output == Output::Json)
        }),
        Command::Kb(cmd) => {
            let kb_settings = settings.clone();
            admin(&settings, |store| kb(store, cmd, &kb_settings, output))
        }
        Command::Ask {
            text,
            shop,
            buyer,
            tenant,
            demo,
        } => ask(
            {
                settings.server.demo |= demo;
                settings
            },
            AskArgs {
                text,
                shop,
                buyer,
                tenant,
            },
            output,
        ),
        Command::Eval(cmd) => crate::eval::run(
            cmd,
            &settings,
            match output {
                Output::Human => crate::eval::Output::Human,
                Output::Json => crate::eval::Output::Json,
            },
        ),
    }
}

fn access_output(output: Output) -> crate::access_cli::Output {
    match output {
        Output::Human => crate::access_cli::Output::Human,
        Output::Json => crate::access_cli::Output::Json,
    }
}

fn models_output(output: Output) -> crate::models::Output {
    match output {
        Output::Human => crate::models::Output::Human,
        Output::Json => crate::models::Output::Json,
    }
}

fn bench_output(output: Output) -> crate::bench::Output {
    match output {
        Output::Human => crate::bench::Output::Human,
        Output::Json => crate::bench::Output::Json,
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

struct AskArgs {
    text: String,
    shop: String,
    buyer: Option<String>,
    tenant: String,
}

fn ask(settings: Settings, args: AskArgs, output: Output) -> anyhow::Result<()> {
    use crate::domain::{
        BuyerRef, ExternalMessageId, InboundMessage, MessageText, PlatformBuyerId, ShopKey,
        TextLimits,
    };
    let limits = TextLimits {
        max_chars: settings.server.max_text_chars,
    };
    let text = MessageText::parse(&args.text, limits)?;
    let shop_key = ShopKey::parse(&args.shop)?;
    let buyer = match &args.buyer {
        Some(buyer) => PlatformBuyerId::parse(buyer)?,
        None => PlatformBuyerId::parse(&format!("cli:ask-{}", uuid::Uuid::now_v7().simple()))?,
    };
    runtime()?.block_on(async move {
        let harness = crate::startup::PipelineHarness::start(settings).await?;
        let store = harness.app.store();
        let tenant = store.tenant_by_name(&args.tenant).await?.ok_or_else(|| {
            anyhow::anyhow!(
                "no tenant named {:?}; for the demo shops add --demo (or start \
                     `kedai serve --demo` once)",
                args.tenant
            )
        })?;
        let shop = store
            .shop_by_key(tenant.id, &shop_key)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no shop {:?} in {:?}", args.shop, args.tenant))?;
        let ack = store
            .ingest(
                &shop,
                &InboundMessage {
                    shop: shop_key,
                    external_id: ExternalMessageId::parse(&format!(
                        "ask-{}",
                        uuid::Uuid::now_v7()
                    ))?,
                    buyer: BuyerRef {
                        id: buyer,
                        name: None,
                    },
                    text,
                    sent_at: chrono::Utc::now(),
                    sender: crate::domain::Sender::Buyer,
                    attachment: None,
                },
                1,
            )
            .await?;
        let mut trace = harness
            .pipeline
            .process(tenant.id, ack.message_id, chrono::Utc::now())
            .await?;
        // The server runs the follow-up as a job of its own; here it runs
        // right after, so the trace shows what an agent would get.
        if trace["follow_up"].is_object() {
            if let Some(added) = harness
                .pipeline
                .follow_up(tenant.id, ack.message_id)
                .await?
            {
                trace["follow_up"] = added;
            }
        }
        match output {
            Output::Json => println!("{}", serde_json::to_string(&trace)?),
            Output::Human => {
                let text = |key: &str| trace[key].as_str().unwrap_or("-").to_string();
                println!("language    {}", text("lang"));
                println!(
                    "intent      {} ({:.2})",
                    text("intent"),
                    trace["confidence"].as_f64().unwrap_or_default()
                );
                println!(
                    "sentiment   {}, anger {}",
                    text("sentiment"),
                    trace["anger"].as_u64().unwrap_or_default()
                );
                println!("layer       {} -> {}", trace["layer"], text("action"));
                println!("reasons     {}", trace["reasons"]);
                let verified = match trace["answer"]["verification"]["passed"].as_bool() {
                    Some(true) => ", verified",
                    Some(false) => ", failed verification",
                    None => "",
                };
                println!("answer      {}{verified}", text("answer_kind"));
                if let Some(reply) = trace["reply"].as_str() {
                    println!("reply       {reply}");
                }
                if let Some(draft) = trace["draft"].as_str() {
                    println!("draft       {draft}");
                }
                for warning in trace["follow_up"]["warnings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    println!("warning     {}", warning.as_str().unwrap_or_default());
                }
                if let Some(summary) = trace["follow_up"]["summary"].as_str() {
                    println!("summary     {summary}");
                }
                if let Some(translation) = trace["follow_up"]["translation"].as_str() {
                    println!("translation {translation}");
                }
                println!("sources     {}", trace["sources"]);
                println!("timings ms  {}", trace["timings_ms"]);
                if trace["follow_up"]["timings_ms"].is_object() {
                    println!("follow-up   {}", trace["follow_up"]["timings_ms"]);
                }
            }
        }
        Ok(())
    })
}

/// Says where the demo tenant's token is. Its value is printed only to a
/// terminal, where a person reads it: output that is not a terminal (a
/// container's log, a service manager's journal) is kept and read by
/// others, so it gets the file's path alone.
fn announce_demo(app: &Application, demo_file: &Option<PathBuf>) {
    use std::io::IsTerminal;
    let Some(file) = demo_file else {
        return;
    };
    match &app.demo {
        Some(demo) => {
            println!(
                "Created the demo tenant {:?} with shops demo-shopee, demo-lazada, demo-tiktok \
                 and demo-web.\nIts API token (scope admin) is in {} (mode 0600).",
                demo.tenant,
                demo.token_file.display()
            );
            if std::io::stdout().is_terminal() {
                println!("\n    {}\n", demo.token);
            }
        }
        None if file.is_file() => {
            println!("The demo tenant's API token is in {}.", file.display());
        }
        None => println!(
            "The demo tenant exists; its token file {} is gone. Issue another with \
             `kedai token create --tenant demo --scope admin`.",
            file.display()
        ),
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    crate::engine::init_threads(settings.models.threads);
    let demo_file = settings.server.demo.then(|| {
        settings
            .store
            .data_dir
            .join(crate::startup::DEMO_TOKEN_FILE)
    });
    let models = prepare_models(&settings);
    runtime()?.block_on(async move {
        let app = Application::build(
            settings,
            BuildOptions {
                models,
                handler: None,
                kb_embedder: None,
                engine: None,
                schema: Schema::Migrate,
            },
        )
        .await?;
        announce_demo(&app, &demo_file);
        println!("kedai is listening on http://{}", app.address());
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            crate::startup::shutdown_signal().await;
            trigger.cancel();
        });
        app.run_until_stopped(shutdown).await
    })
}

/// Makes sure the configured models are on disk before the server starts,
/// fetching them when allowed. A failure does not stop the server: the
/// inbox keeps working and /readyz says what is missing.
fn prepare_models(settings: &Settings) -> ModelReadiness {
    let mode =
        crate::models::PrepareMode::from_settings(&settings.models, crate::models::Progress::Bar);
    match crate::models::prepare(&settings.models, mode) {
        Ok(prepared) => ModelReadiness::Ready(prepared),
        Err(err) if !settings.models.required => {
            ModelReadiness::NotRequired(format!("models not loaded: {err}"))
        }
        Err(err) => {
            eprintln!("\nkedai could not prepare its models:\n  {err}\n");
            eprintln!(
                "The server starts anyway: buyer messages are accepted and wait in the queue \
                 (nothing processes them yet), and /readyz reports not ready until the models \
                 are in place. Fix the cause, then run `kedai models pull`: the server picks \
                 the models up within models.recheck_secs (or at the next start) and processes \
                 the waiting messages; those older than queue.max_message_age_secs by then go \
                 to a human."
            );
            ModelReadiness::Unavailable(err.to_string())
        }
    }
}

pub(crate) fn admin<F, Fut>(settings: &Settings, command: F) -> anyhow::Result<()>
where
    F: FnOnce(OpenedStore) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    runtime()?.block_on(async {
        let store = OpenedStore::open(&settings.store, Schema::Current)
            .await
            .with_context(|| format!("opening {}", OpenedStore::describe(&settings.store)))?;
        let result = command(store.clone()).await;
        store.close().await;
        result
    })
}

pub(crate) async fn tenant_named(
    store: &OpenedStore,
    name: &str,
) -> anyhow::Result<crate::store::Tenant> {
    store
        .tenant_by_name(name)
        .await?
        .with_context(|| format!("no tenant named {name:?} (see `kedai tenant list`)"))
}

async fn tenant(store: OpenedStore, cmd: TenantCommand, output: Output) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Create { name } => {
            let name = TenantName::parse(&name)?;
            let tenant = match store.create_tenant(&name).await {
                Err(StoreError::AlreadyExists { .. }) => {
                    bail!("a tenant named {:?} already exists", name.as_str())
                }
                other => other?,
            };
            let (_, token) = crate::auth::issue_token(&*store, tenant.id, "initial").await?;
            output.print(
                json!({ "tenant_id": tenant.id, "name": tenant.name, "token": token }),
                || {
                    format!(
                        "Created tenant {:?} ({}).\nAdmin API token (shown only this once): {token}",
                        tenant.name, tenant.id
                    )
                },
            );
        }
        TenantCommand::List => {
            let tenants = store.list_tenants().await?;
            output.print(json!({ "tenants": tenants }), || {
                let mut out = format!("{:<38} {}", "ID", "NAME");
                for t in &tenants {
                    out.push_str(&format!("\n{:<38} {}", t.id, t.name));
                }
                out
            });
        }
    }
    Ok(())
}

async fn user(
    store: OpenedStore,
    cmd: crate::web::cli::UserCommand,
    output: Output,
) -> anyhow::Result<()> {
    let u = crate::web::cli::run(&*store, cmd).await?;
    output.print(
        json!({ "user_id": u.id, "email": u.email, "role": u.role, "tenant": u.tenant }),
        || {
            format!(
                "Created {} {} for tenant {:?}; log in at /app/login.",
                u.role, u.email, u.tenant
            )
        },
    );
    Ok(())
}

async fn token(store: OpenedStore, cmd: TokenCommand, output: Output) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            tenant,
            scope,
            shop,
            expires,
            label,
        } => {
            let tenant = tenant_named(&store, &tenant).await?;
            let grant = crate::access_cli::token_grant(
                &store,
                &tenant,
                crate::access_cli::GrantArgs {
                    scope,
                    shop,
                    expires,
                    label,
                },
            )
            .await?;
            let (info, token) = crate::auth::issue_scoped_token(&*store, grant).await?;
            output.print(
                json!({
                    "token_id": info.id, "tenant_id": tenant.id, "label": info.label,
                    "scopes": info.scopes, "shop_id": info.shop_id,
                    "expires_at": info.expires_at, "token": token,
                }),
                || {
                    format!(
                        "Token {} for tenant {:?}, scopes {}{} (shown only this once): {token}",
                        info.id,
                        tenant.name,
                        info.scopes,
                        info.expires_at
                            .map(|at| format!(", expires {}", at.to_rfc3339()))
                            .unwrap_or_default()
                    )
                },
            );
        }
        TokenCommand::Revoke { id } => {
            let parsed = id.parse().map_err(|_| {
                anyhow::anyhow!("{id:?} is not a token id (see `kedai token list`)")
            })?;
            if !store.revoke_token(parsed).await? {
                bail!("no active token with id {id}");
            }
            output.print(json!({ "token_id": id, "revoked": true }), || {
                format!("Revoked token {id}.")
            });
        }
        TokenCommand::List { tenant } => {
            let tenant = tenant_named(&store, &tenant).await?;
            let tokens = store.list_tokens(tenant.id).await?;
            output.print(json!({ "tokens": tokens }), || {
                crate::access_cli::token_table(&tokens)
            });
        }
    }
    Ok(())
}

async fn kb(
    store: OpenedStore,
    cmd: KbCommand,
    settings: &Settings,
    output: Output,
) -> anyhow::Result<()> {
    use crate::kb::{KbQuery, KbService, SearchMode};
    use crate::store::KbKind;

    let service = |embedder| {
        KbService::new(store.kb(), embedder, settings.store.data_dir.join("kb"))
            .with_vector_cache(settings.models.cache_dir().join("embeddings"))
    };
    match cmd {
        KbCommand::Import { dir, tenant } => {
            let tenant = tenant_named(&store, &tenant).await?;
            let entries = crate::kb::import::read_dir(&dir)?;
            let applied = service(None).import(tenant.id, &entries, "cli").await?;
            output.print(
                json!({ "tenant": tenant.name, "entries": entries.len(), "applied": applied }),
                || {
                    format!(
                    "Imported {} entries from {} into {:?}: {} created, {} updated, {} unchanged \
                     (knowledge-base revision {}).",
                    entries.len(),
                    dir.display(),
                    tenant.name,
                    applied.created,
                    applied.updated,
                    applied.unchanged,
                    applied.revision
                )
                },
            );
        }
        KbCommand::List { tenant, kind } => {
            let tenant = tenant_named(&store, &tenant).await?;
            let kind = kind
                .as_deref()
                .map(str::parse::<KbKind>)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let records = service(None).list(tenant.id, kind).await?;
            output.print(json!({ "entries": records }), || {
                let mut out = format!("{:<9} {:<40} {:<4} {}", "KIND", "ID", "LANG", "VERSION");
                for r in &records {
                    out.push_str(&format!(
                        "\n{:<9} {:<40} {:<4} {}",
                        r.document.kind, r.document.id, r.document.lang, r.version
                    ));
                }
                out
            });
        }
        KbCommand::Search {
            query,
            tenant,
            top_k,
            mode,
            kind,
        } => {
            let tenant = tenant_named(&store, &tenant).await?;
            let mode: SearchMode = mode.parse().map_err(anyhow::Error::msg)?;
            let kinds = if kind.is_empty() {
                None
            } else {
                Some(
                    kind.iter()
                        .map(|k| k.parse::<KbKind>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(anyhow::Error::msg)?,
                )
            };
            let query = KbQuery::parse(&query, Some(top_k), Some(mode), kinds)?;
            let embedder = match mode {
                SearchMode::Bm25 => None,
                SearchMode::Hybrid | SearchMode::Dense => {
                    let settings = settings.clone();
                    match tokio::task::spawn_blocking(move || crate::eval::load_embedder(&settings))
                        .await?
                    {
                        Ok(embedder) => Some(embedder),
                        Err(err) if mode == SearchMode::Hybrid => {
                            eprintln!("embedding model unavailable ({err:#}); BM25 only");
                            None
                        }
                        Err(err) => return Err(err),
                    }
                }
            };
            let results = service(embedder).search(tenant.id, &query).await?;
            output.print(serde_json::to_value(&results)?, || {
                let component = |c: Option<crate::kb::ComponentHit>| match c {
                    Some(c) => format!("#{:<2} {:>7.3}", c.rank, c.score),
                    None => format!("{:>11}", "-"),
                };
                let mut out = format!(
                    "mode {}{}\n{:>3} {:<8} {:<32} {:>11} {:>11} {:>7}  TITLE",
                    results.mode.as_str(),
                    results
                        .degraded
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default(),
                    "#",
                    "KIND",
                    "ID",
                    "BM25",
                    "DENSE",
                    "RRF"
                );
                for (i, hit) in results.hits.iter().enumerate() {
                    out.push_str(&format!(
                        "\n{:>3} {:<8} {:<32} {} {} {:>7.4}  {}",
                        i + 1,
                        hit.kind,
                        hit.id,
                        component(hit.bm25),
                        component(hit.dense),
                        hit.score,
                        hit.title
                    ));
                    if !hit.matched_variants.is_empty() {
                        out.push_str(&format!(
                            "\n    matching variants: {}",
                            hit.matched_variants.join(", ")
                        ));
                    }
                }
                out
            });
        }
    }
    Ok(())
}
