//! The dashboard: the service figures of `figures` for the last days of
//! the viewer's shops, as gauges, bar charts and a column chart a person
//! would rather look at than read, with the reports' quality figures
//! (resolved, drafts sent unchanged, AI answers asked again, inferred
//! satisfaction; definitions in docs/reports.md).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::charts::{BarChart, ColumnChart, Gauge};
use super::session::Viewer;
use super::view::{duration, render, Nav};
use super::{WebError, WebState};
use crate::figures::{self, Spread};

const DEFAULT_DAYS: u32 = 14;
const MAX_DAYS: u32 = 90;
const MAX_BARS: usize = 8;

#[derive(Debug, Deserialize)]
pub struct DashboardQuery {
    days: Option<u32>,
}

/// One entry per day of the period, oldest first, days without
/// conversations included.
fn every_day(counted: &[(String, usize)], days: u32, now: DateTime<Utc>) -> Vec<(String, usize)> {
    (0..i64::from(days))
        .rev()
        .map(|back| {
            let day = (now - Duration::days(back)).format("%Y-%m-%d").to_string();
            let count = counted
                .iter()
                .find(|(d, _)| *d == day)
                .map_or(0, |(_, n)| *n);
            (day, count)
        })
        .collect()
}

fn share(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn named_languages(counts: &[(String, usize)]) -> Vec<(String, usize)> {
    counts
        .iter()
        .map(|(code, n)| (super::view::language_name(code), *n))
        .collect()
}

pub struct SpreadView {
    pub label: &'static str,
    pub p50: String,
    pub p90: String,
    pub count: usize,
}

impl SpreadView {
    fn new(label: &'static str, spread: Option<Spread>) -> SpreadView {
        match spread {
            Some(s) => SpreadView {
                label,
                p50: duration(s.p50_secs),
                p90: duration(s.p90_secs),
                count: s.count,
            },
            None => SpreadView {
                label,
                p50: "–".into(),
                p90: "–".into(),
                count: 0,
            },
        }
    }
}

#[derive(Template)]
#[template(path = "web/dashboard.html")]
struct DashboardPage {
    nav: Nav,
    days: u32,
    day_choices: Vec<(u32, bool)>,
    conversations: usize,
    gauges: Vec<Gauge>,
    spreads: Vec<SpreadView>,
    waiting_for_human: usize,
    volume: ColumnChart,
    charts: Vec<BarChart>,
}

pub async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, WebError> {
    let days = query.days.unwrap_or(DEFAULT_DAYS).clamp(1, MAX_DAYS);
    let now = Utc::now();
    let facts = state
        .app
        .store
        .conversation_facts(
            viewer.user.tenant_id,
            &viewer.user.shops,
            now - Duration::days(i64::from(days)),
        )
        .await?;
    let f = figures::compute(&facts, now);
    let refs: Vec<&_> = facts.iter().collect();
    let drafts = figures::quality::drafts(&refs);
    let follow_ups = figures::quality::follow_ups(&refs);
    let satisfaction = figures::quality::satisfaction(&refs);
    let resolved = facts.iter().filter(|c| c.resolved).count();
    render(&DashboardPage {
        nav: Nav::new(&viewer, "dashboard"),
        days,
        day_choices: [1, 7, 14, 30, 90]
            .into_iter()
            .map(|d| (d, d == days))
            .collect(),
        conversations: f.conversations,
        gauges: vec![
            Gauge::new("AI involvement", f.involvement()),
            Gauge::new("Automation", f.automation()),
            Gauge::new("Resolved", share(resolved, f.conversations)),
            Gauge::new(
                "Drafts sent unchanged",
                share(drafts.sent_unchanged, drafts.sent_unchanged + drafts.edited),
            ),
            Gauge::new("AI answers asked again", follow_ups.share()),
            Gauge::new(
                "Buyers satisfied (inferred)",
                share(
                    satisfaction.satisfied,
                    satisfaction.satisfied + satisfaction.neutral + satisfaction.dissatisfied,
                ),
            ),
        ],
        spreads: vec![
            SpreadView::new("First response, all", f.first_response),
            SpreadView::new("First response by AI", f.first_response_ai),
            SpreadView::new("First response by a human", f.first_response_human),
            SpreadView::new("Time to a human after handoff", f.time_to_human),
        ],
        waiting_for_human: f.waiting_for_human,
        volume: ColumnChart::new(&every_day(&f.by_day, days, now)),
        charts: vec![
            BarChart::new("By platform", &f.by_platform, MAX_BARS),
            BarChart::new("By shop", &f.by_shop, MAX_BARS),
            BarChart::new("By language", &named_languages(&f.by_language), MAX_BARS),
            BarChart::new("By intent", &f.by_intent, MAX_BARS),
            BarChart::new("Escalation reasons", &f.escalation_reasons, MAX_BARS),
        ],
    })
}
