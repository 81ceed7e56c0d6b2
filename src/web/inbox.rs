//! The inbox: every open conversation of the viewer's shops, in tabs
//! (needs a human, drafts to review, answered by AI, deadline at risk)
//! with counts, filters by shop, platform, language, intent and agent, and
//! live updates (the page's script reloads the list on each change note).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{Duration, Utc};
use serde::Deserialize;

use super::session::Viewer;
use super::view::{ago, render, waited, Nav};
use super::{WebError, WebState};
use crate::domain::{Platform, ShopKey, UserId};
use crate::store::desk::{Holder, InboxFilter, InboxRow, InboxTab};

const INBOX_ROWS: u32 = 200;

#[derive(Debug, Default, Deserialize)]
pub struct InboxQuery {
    tab: Option<String>,
    shop: Option<String>,
    platform: Option<String>,
    language: Option<String>,
    intent: Option<String>,
    /// `me` or a user id.
    agent: Option<String>,
    /// `resolved` for closed conversations.
    status: Option<String>,
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl InboxQuery {
    fn parse(&self, viewer: &Viewer, deadline: Duration) -> Result<InboxFilter, WebError> {
        let tab = match non_empty(&self.tab) {
            Some(raw) => InboxTab::parse(raw)
                .ok_or_else(|| WebError::Invalid(format!("no inbox tab {raw:?}")))?,
            None => InboxTab::Human,
        };
        let platform = non_empty(&self.platform)
            .map(|p| {
                p.parse::<Platform>()
                    .map_err(|_| WebError::Invalid(format!("no platform {p:?}")))
            })
            .transpose()?;
        let agent = match non_empty(&self.agent) {
            Some("me") => Some(viewer.user.id),
            Some(raw) => Some(
                raw.parse::<UserId>()
                    .map_err(|_| WebError::Invalid(format!("no agent {raw:?}")))?,
            ),
            None => None,
        };
        Ok(InboxFilter {
            tab,
            shop: non_empty(&self.shop).map(ShopKey::parse).transpose()?,
            platform,
            language: non_empty(&self.language).map(str::to_owned),
            intent: non_empty(&self.intent).map(str::to_owned),
            agent,
            resolved: non_empty(&self.status) == Some("resolved"),
            at_risk_before: Utc::now() - deadline,
            limit: INBOX_ROWS,
        })
    }

    /// This query with another tab, for the tab links.
    fn with_tab(&self, tab: InboxTab) -> String {
        let mut pairs = vec![("tab", tab.as_str().to_owned())];
        for (key, value) in [
            ("shop", &self.shop),
            ("platform", &self.platform),
            ("language", &self.language),
            ("intent", &self.intent),
            ("agent", &self.agent),
            ("status", &self.status),
        ] {
            if let Some(v) = non_empty(value) {
                pairs.push((key, v.to_owned()));
            }
        }
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        format!("/app/inbox?{query}")
    }
}

/// Percent-encodes a query value.
pub fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub struct TabLink {
    pub label: &'static str,
    pub key: &'static str,
    pub href: String,
    pub count: i64,
    pub active: bool,
}

pub struct Row {
    pub id: String,
    pub buyer: String,
    pub shop: String,
    pub platform: String,
    pub layer: String,
    pub language: String,
    pub intent: String,
    pub holder: String,
    pub waiting: String,
    pub at_risk: bool,
    pub preview: String,
    pub when: String,
}

impl Row {
    fn new(row: InboxRow, at_risk_before: chrono::DateTime<Utc>) -> Row {
        let now = Utc::now();
        let s = row.summary;
        Row {
            id: s.id.to_string(),
            buyer: s.buyer_name.unwrap_or(s.buyer_platform_id),
            shop: s.shop.to_string(),
            platform: s.platform.to_string(),
            layer: s.layer.map_or("–".into(), |l| format!("L{}", l.get())),
            language: row.language.unwrap_or_default(),
            intent: row.intent.unwrap_or_default().replace('_', " "),
            holder: match row.holder {
                Holder::Ai => "AI".into(),
                Holder::Unassigned => "Unassigned".into(),
                Holder::Agent { name, .. } => name,
            },
            waiting: row
                .awaiting_since
                .map(|at| format!("waiting {}", waited(at, now)))
                .unwrap_or_default(),
            at_risk: row.awaiting_since.is_some_and(|at| at < at_risk_before),
            preview: row.preview.unwrap_or_default(),
            when: ago(s.last_message_at, now),
        }
    }
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "web/inbox.html")]
struct InboxPage {
    nav: Nav,
    tabs: Vec<TabLink>,
    rows: Vec<Row>,
    shops: Vec<Choice>,
    platforms: Vec<Choice>,
    agents: Vec<Choice>,
    language: String,
    intent: String,
    tab: &'static str,
    resolved: bool,
}

fn choice(value: &str, label: &str, current: &Option<String>) -> Choice {
    Choice {
        value: value.to_owned(),
        label: label.to_owned(),
        selected: non_empty(current) == Some(value),
    }
}

pub async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<InboxQuery>,
) -> Result<Response, WebError> {
    let deadline = Duration::minutes(i64::from(state.settings.deadline_warning_minutes));
    let filter = query.parse(&viewer, deadline)?;
    let tenant = viewer.user.tenant_id;
    let store = &state.app.store;
    let (rows, counts) = tokio::try_join!(
        store.inbox(tenant, &viewer.user.shops, &filter),
        store.inbox_counts(tenant, &viewer.user.shops, &filter),
    )?;
    let tabs = [
        (InboxTab::Human, "Needs a human"),
        (InboxTab::Drafts, "Drafts to review"),
        (InboxTab::Ai, "Answered by AI"),
        (InboxTab::AtRisk, "Deadline at risk"),
    ]
    .into_iter()
    .map(|(tab, label)| TabLink {
        label,
        key: tab.as_str(),
        href: query.with_tab(tab),
        count: counts.get(tab),
        active: tab == filter.tab,
    })
    .collect();
    let shops = store
        .list_shops(tenant)
        .await?
        .into_iter()
        .filter(|s| viewer.user.shops.allows(s.id))
        .map(|s| choice(s.key.as_str(), &s.name, &query.shop))
        .collect();
    let platforms = ["shopee", "lazada", "tiktok", "web", "generic"]
        .into_iter()
        .map(|p| choice(p, p, &query.platform))
        .collect();
    let mut agents = vec![choice("me", "Me", &query.agent)];
    agents.extend(
        store
            .list_users(tenant)
            .await?
            .into_iter()
            .filter(|u| u.role.can_act() && !u.disabled && u.id != viewer.user.id)
            .map(|u| choice(&u.id.to_string(), &u.display_name, &query.agent)),
    );
    render(&InboxPage {
        nav: Nav::new(&viewer, "inbox"),
        tabs,
        rows: rows
            .into_iter()
            .map(|r| Row::new(r, filter.at_risk_before))
            .collect(),
        shops,
        platforms,
        agents,
        language: non_empty(&query.language).unwrap_or_default().to_owned(),
        intent: non_empty(&query.intent).unwrap_or_default().to_owned(),
        tab: filter.tab.as_str(),
        resolved: filter.resolved,
    })
}
