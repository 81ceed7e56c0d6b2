//! `kedai report`: a tenant's report printed as text, JSON (`--json`) or
//! one of its tables as CSV (`--csv`), from the store alone (no server,
//! no model).

use std::fmt::Write as _;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;

use super::{build, resolution, FilterText};
use crate::figures::{Report, Resolution, Spread};
use crate::store::users::ShopAccess;
use crate::store::OpenedStore;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CsvTable {
    /// The figures for all conversations, per language and per intent.
    Summary,
    /// The conversations with their tags.
    Conversations,
    /// The conversations the resolution figure counted.
    Resolution,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long, default_value = crate::startup::DEMO_TENANT)]
    tenant: String,
    /// Start of the period: RFC 3339, a date (2026-12-01) or a span back
    /// from now (7d, 12h); default 30 days before --until.
    #[arg(long)]
    since: Option<String>,
    /// End of the period (exclusive), written the same ways; default now.
    #[arg(long)]
    until: Option<String>,
    /// Only this shop (its key).
    #[arg(long)]
    shop: Option<String>,
    /// Only this platform: shopee, lazada, tiktok, web, generic.
    #[arg(long)]
    platform: Option<String>,
    /// Only conversations in this language (ISO 639-1).
    #[arg(long)]
    language: Option<String>,
    /// Only conversations with this intent.
    #[arg(long)]
    intent: Option<String>,
    /// Only conversations with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Print one table as CSV instead.
    #[arg(long, value_enum)]
    csv: Option<CsvTable>,
}

pub async fn run(store: OpenedStore, args: ReportArgs, json_output: bool) -> anyhow::Result<()> {
    let tenant = crate::cli::tenant_named(&store, &args.tenant).await?;
    let now = chrono::Utc::now();
    let filter = FilterText {
        since: args.since,
        until: args.until,
        shop: args.shop,
        platform: args.platform,
        language: args.language,
        intent: args.intent,
        tag: args.tag,
    }
    .parse(now)?;
    let report = build(&*store, tenant.id, &ShopAccess::All, &filter, now).await?;
    let resolved = resolution(&*store, tenant.id, &report).await?;
    match (args.csv, json_output) {
        (Some(CsvTable::Summary), _) => print!("{}", super::csv::summary(&report)),
        (Some(CsvTable::Conversations), _) => print!("{}", super::csv::conversations(&report)),
        (Some(CsvTable::Resolution), _) => print!("{}", super::csv::resolution(&resolved)),
        (None, true) => println!("{}", json!({ "report": report, "resolution": resolved })),
        (None, false) => print!("{}", text(&report, &resolved)),
    }
    Ok(())
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}

fn spread(s: Option<Spread>) -> String {
    s.map_or("-".into(), |s| {
        format!(
            "p50 {:.0} s, p90 {:.0} s (n={})",
            s.p50_secs, s.p90_secs, s.count
        )
    })
}

/// The report as a person reads it in a terminal.
pub fn text(r: &Report, res: &Resolution) -> String {
    let f = &r.figures;
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<28}{value}");
    };
    line(
        "period",
        format!(
            "{} to {}",
            r.filter.since.to_rfc3339(),
            r.filter.until.to_rfc3339()
        ),
    );
    line("conversations", f.conversations.to_string());
    line("involvement", percent(f.involvement()));
    line("automation", percent(f.automation()));
    line(
        "resolution",
        format!(
            "{} ({} of {}; by the AI alone {})",
            percent(res.rate),
            res.resolved,
            res.counted,
            percent(res.ai_alone_rate)
        ),
    );
    line("first response", spread(f.first_response));
    line("  by the AI", spread(f.first_response_ai));
    line("  by a person", spread(f.first_response_human));
    line("time to a human", spread(f.time_to_human));
    line("waiting for a human", f.waiting_for_human.to_string());
    let d = &r.drafts;
    line(
        "drafts",
        format!(
            "{} offered, {} sent unchanged, {} edited (median edit distance {}), {} unanswered",
            d.offered,
            d.sent_unchanged,
            d.edited,
            d.edit_distance_p50
                .map_or("-".into(), |e| format!("{e:.2}")),
            d.unanswered
        ),
    );
    line(
        "asked again after the AI",
        format!(
            "{} of {} AI answers ({})",
            r.follow_ups.asked_again,
            r.follow_ups.ai_answers,
            percent(r.follow_ups.share())
        ),
    );
    let s = &r.satisfaction;
    line(
        "satisfaction signal",
        format!(
            "{} satisfied, {} neutral, {} dissatisfied (score {})",
            s.satisfied,
            s.neutral,
            s.dissatisfied,
            s.score.map_or("-".into(), |v| format!("{v:+.2}"))
        ),
    );
    let top = |items: &[(String, usize)]| {
        items
            .iter()
            .take(8)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    line("escalation reasons", top(&f.escalation_reasons));
    line("tags", top(&r.tags));
    let _ = writeln!(
        out,
        "\n{:<10}{:<20}{:>6}{:>13}{:>12}",
        "", "", "convs", "involvement", "automation"
    );
    for row in &r.rows {
        let _ = writeln!(
            out,
            "{:<10}{:<20}{:>6}{:>13}{:>12}",
            row.dimension,
            row.value,
            row.conversations,
            percent(row.involvement),
            percent(row.automation)
        );
    }
    out
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Past buyer messages: JSON lines, or CSV when the name ends in .csv
    /// (conversation_id, shop, buyer_id, sent_at, text, human_reply).
    history: std::path::PathBuf,
    #[arg(long, default_value = crate::startup::DEMO_TENANT)]
    tenant: String,
    /// Replay into a fresh demo tenant instead of a copy of this data
    /// directory's store.
    #[arg(long)]
    demo: bool,
}

/// The e5 model of the runtime, behind [`Meaning`](super::replay::Meaning).
struct EngineMeaning(std::sync::Arc<crate::pipeline::stages::EngineEmbedder>);

#[async_trait::async_trait]
impl super::replay::Meaning for EngineMeaning {
    async fn similarity(&self, a: &str, b: &str) -> anyhow::Result<f32> {
        use crate::kb::Embedder;
        let embedder = self.0.clone();
        let (a, b) = (a.to_owned(), b.to_owned());
        let vectors = tokio::task::spawn_blocking(move || {
            embedder.embed(&[&a, &b], crate::inference::EmbedRole::Query)
        })
        .await??;
        Ok(vectors[0].iter().zip(&vectors[1]).map(|(x, y)| x * y).sum())
    }
}

/// Copies the store into `into` (SQLite's `VACUUM INTO`, a consistent
/// snapshot while the server runs); the credentials key stays behind, so
/// nothing replayed can reach a platform.
async fn copy_store(from: &std::path::Path, into: &std::path::Path) -> anyhow::Result<()> {
    use sqlx::ConnectOptions;
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(from)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("opening {}", from.display()))?;
    sqlx::query("VACUUM INTO ?")
        .bind(into.to_string_lossy().into_owned())
        .execute(&mut connection)
        .await
        .with_context(|| format!("copying {} for the replay", from.display()))?;
    Ok(())
}

pub fn replay(
    settings: &crate::config::Settings,
    args: ReplayArgs,
    json_output: bool,
) -> anyhow::Result<()> {
    let lines = super::replay::read_history(&args.history)?;
    if !args.demo {
        if let crate::config::StoreLocation::Postgres(_) = settings.store.location() {
            anyhow::bail!(
                "kedai replay works on a copy of a SQLite store, and store.url names \
                 PostgreSQL; replay a SQLite copy of the history (--data-dir) or the demo \
                 shops (--demo)"
            );
        }
    }
    let scratch = tempfile::TempDir::new()?;
    let mut settings = settings.clone();
    let source = settings.database_path();
    settings.store.data_dir = scratch.path().to_path_buf();
    // The replay's own store is always the scratch SQLite copy.
    settings.store.url = crate::config::StoreUrl::default();
    settings.server.demo = args.demo;
    let report = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            if !args.demo {
                anyhow::ensure!(
                    source.exists(),
                    "no database at {}; run `kedai migrate` first or replay with --demo",
                    source.display()
                );
                copy_store(&source, &settings.database_path()).await?;
            }
            let harness = crate::startup::PipelineHarness::start(settings).await?;
            let store = harness.app.store();
            let tenant = store
                .tenant_by_name(&args.tenant)
                .await?
                .with_context(|| format!("no tenant named {:?} in the store", args.tenant))?
                .id;
            let embedder = crate::pipeline::stages::EngineEmbedder::new(
                harness.app.engine(),
                crate::engine::Role::Retrieval,
            )
            .context("replay needs the embedding model")?;
            let meaning = EngineMeaning(std::sync::Arc::new(embedder));
            let judged =
                super::replay::run(store.as_ref(), tenant, &harness.pipeline, &meaning, &lines)
                    .await?;
            anyhow::Ok(super::replay::summarise(judged))
        })?;
    if json_output {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", replay_text(&report));
    }
    Ok(())
}

fn replay_text(r: &super::replay::ReplayReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} messages in {} conversations; kedai would have answered {} on its own; \
         agreement with people's replies {} of {} compared (cosine >= {:.2})",
        r.all.messages,
        r.conversations,
        percent(Some(r.all.projected_automation)),
        percent(r.all.agreement),
        r.all.compared,
        r.agreement_min
    );
    let _ = writeln!(
        out,
        "\n{:<6}{:<22}{:>6}{:>6}{:>6}{:>6}{:>12}{:>11}{:>7}",
        "lang", "intent", "msgs", "L1", "L2", "L3", "automation", "agreement", "wrong"
    );
    for g in &r.groups {
        let _ = writeln!(
            out,
            "{:<6}{:<22}{:>6}{:>6}{:>6}{:>6}{:>12}{:>11}{:>7}",
            g.language,
            g.intent,
            g.messages,
            g.layers[0],
            g.layers[1],
            g.layers[2],
            percent(Some(g.projected_automation)),
            percent(g.agreement),
            g.wrong
        );
    }
    if !r.wrong.is_empty() {
        let _ = writeln!(out, "\nwould have sent, and the person said otherwise:");
        for w in &r.wrong {
            let _ = writeln!(
                out,
                "- [{}] {:?}\n  kedai:  {:?}\n  person: {:?}",
                w.conversation_id,
                w.text,
                w.kedai_text.as_deref().unwrap_or_default(),
                w.human_reply.as_deref().unwrap_or_default()
            );
        }
    }
    out
}
