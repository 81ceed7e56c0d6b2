//! `kedai report`: a tenant's report printed as text, JSON (`--json`) or
//! one of its tables as CSV (`--csv`), from the store alone (no server,
//! no model).

use std::fmt::Write as _;

use clap::{Args, ValueEnum};
use serde_json::json;

use super::{build, resolution, FilterText};
use crate::figures::{Report, Resolution, Spread};
use crate::store::users::ShopAccess;
use crate::store::SqliteStore;

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

pub async fn run(store: SqliteStore, args: ReportArgs, json_output: bool) -> anyhow::Result<()> {
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
    let report = build(&store, tenant.id, &ShopAccess::All, &filter, now).await?;
    let resolved = resolution(&store, tenant.id, &report).await?;
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
