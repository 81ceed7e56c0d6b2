//! Settings: each shop's routing policy (modes per intent, thresholds,
//! business hours, the kill switch) with its measured changes and their
//! one-action restore, the approval limits an admin sets, and the audit
//! log viewer with filters.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::session::Viewer;
use super::view::{money, parse_money, render, stamp, Nav};
use super::{see_other, WebError, WebState};
use crate::learning::policy_trial::Move;
use crate::learning::{ChangeOutcome, PolicyChange};
use crate::store::desk::{AuditFilter, BindingKind};

pub struct ShopPolicy {
    pub shop: String,
    pub name: String,
    pub ai_enabled: bool,
    pub mode: String,
    pub intent_modes: Vec<(String, String)>,
    pub auto_min_confidence: String,
    pub generated_min_confidence: String,
    pub human_below_confidence: String,
    pub human_anger_level: u8,
    pub vip_to_human: bool,
    pub auto_intents: String,
    pub human_intents: String,
    pub business_hours: String,
    /// The form's values.
    pub intent_modes_text: String,
    pub hours_days: String,
    pub hours_open: String,
    pub hours_close: String,
    pub hours_offset: String,
    pub modes: Vec<(&'static str, bool)>,
    /// Whether an admin changed anything here (stored with the shop).
    pub customised: bool,
    /// Why the stored changes are not applied (the AI is then off).
    pub problem: Option<String>,
    /// The latest recorded changes, newest first.
    pub changes: Vec<ChangeRow>,
}

/// A recorded policy change as the settings page lists it.
pub struct ChangeRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    /// `applied`, `refused` or `restored`.
    pub outcome: &'static str,
    /// What the measurement found, in a sentence.
    pub summary: String,
    /// Why it was refused.
    pub reasons: Vec<String>,
    /// Messages it would have let the AI send alone, and why not.
    pub unsafe_examples: Vec<String>,
    /// Messages it sends to the AI alone or to a person now.
    pub moved_examples: Vec<String>,
    /// Whether restoring the policy before it is possible.
    pub restorable: bool,
}

/// Changes listed per shop.
const CHANGES_SHOWN: u32 = 5;

fn change_row(change: PolicyChange) -> ChangeRow {
    let outcome = match change.outcome {
        ChangeOutcome::Applied => "applied",
        ChangeOutcome::Refused => "refused",
        ChangeOutcome::Restored => "restored",
    };
    let quoted = |m: &Move| format!("“{}” ({})", m.text, m.intent.replace('_', " "));
    let (summary, reasons, unsafe_examples, moved_examples) = match &change.trial {
        Some(t) => (
            format!(
                "Measured on {} past messages of this shop and {} evaluation conversations: \
                 {} would be sent by the AI alone that were not, {} the AI answered would go \
                 to a person, {} other moves.",
                t.history, t.evaluation, t.to_ai, t.to_person, t.other
            ),
            t.reasons.clone(),
            t.unsafe_sends
                .iter()
                .take(5)
                .map(|m| {
                    format!(
                        "{}: {}",
                        quoted(m),
                        m.unsafe_because.as_deref().unwrap_or_default()
                    )
                })
                .collect(),
            t.to_ai_examples
                .iter()
                .take(3)
                .map(|m| format!("to the AI alone: {}", quoted(m)))
                .chain(
                    t.to_person_examples
                        .iter()
                        .take(3)
                        .map(|m| format!("to a person: {}", quoted(m))),
                )
                .collect(),
        ),
        None => (
            change.restores.map_or_else(
                || "Restored an earlier policy.".into(),
                |id| format!("Restored the policy in force before change #{id}."),
            ),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        ),
    };
    ChangeRow {
        id: change.id,
        at: stamp(change.at),
        actor: change.actor,
        outcome,
        summary,
        reasons,
        unsafe_examples,
        moved_examples,
        restorable: change.outcome != ChangeOutcome::Refused,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SettingsQuery {
    /// What became of the policy change just saved.
    policy: Option<String>,
    /// The shop it was for: its section is shown open.
    shop: Option<String>,
}

fn policy_notice(query: &SettingsQuery) -> Option<&'static str> {
    Some(match query.policy.as_deref()? {
        "applied" => "Saved: the change was measured against this shop's history and applies from the next message.",
        "refused" => "Not saved: the measurement found messages the AI would send alone that need a person. What it found is under the shop's changes below.",
        "restored" => "Restored: the earlier policy applies from the next message.",
        "unchanged" => "Nothing changed.",
        _ => return None,
    })
}

pub struct LimitRow {
    pub kind: &'static str,
    pub label: &'static str,
    pub current: String,
    pub value: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "web/settings.html")]
struct SettingsPage {
    nav: Nav,
    shops: Vec<ShopPolicy>,
    limits: Vec<LimitRow>,
    currency: String,
    notice: Option<&'static str>,
    /// The shop whose section opens (the one just changed, else the first).
    open_shop: Option<String>,
}

fn mode(m: crate::pipeline::policy::Mode) -> String {
    format!("{m:?}").to_lowercase()
}

pub async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<SettingsQuery>,
) -> Result<Response, WebError> {
    let tenant = viewer.user.tenant_id;
    let mut shops = Vec::new();
    for shop in state.app.store.list_shops(tenant).await? {
        if !viewer.user.shops.allows(shop.id) {
            continue;
        }
        let changes = state
            .app
            .learning
            .policy_changes(tenant, &shop, CHANGES_SHOWN)
            .await?;
        shops.push((shop, changes));
    }
    let limits = state.app.store.approval_limits(tenant).await?;
    let currency = state.settings.currency.clone();
    render(&SettingsPage {
        nav: Nav::new(&viewer, "settings"),
        notice: policy_notice(&query),
        open_shop: query
            .shop
            .clone()
            .or_else(|| shops.first().map(|(s, _)| s.key.to_string())),
        shops: shops
            .into_iter()
            .map(|(s, changes)| {
                let (p, problem) = super::policy::effective(&state.policy, &s);
                let hours = p.business_hours.clone();
                ShopPolicy {
                    intent_modes_text: p
                        .intent_modes
                        .iter()
                        .map(|(intent, m)| format!("{intent} = {}", mode(*m)))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    hours_days: hours.as_ref().map(|h| h.days.join(" ")).unwrap_or_default(),
                    hours_open: hours.as_ref().map(|h| h.open.clone()).unwrap_or_default(),
                    hours_close: hours.as_ref().map(|h| h.close.clone()).unwrap_or_default(),
                    hours_offset: hours
                        .as_ref()
                        .map(|h| h.utc_offset_minutes.to_string())
                        .unwrap_or_else(|| "0".into()),
                    modes: ["auto", "suggest", "shadow"]
                        .into_iter()
                        .map(|m| (m, m == mode(p.mode)))
                        .collect(),
                    customised: s.policy.as_object().is_some_and(|o| !o.is_empty()),
                    problem,
                    changes: changes.into_iter().map(change_row).collect(),
                    shop: s.key.to_string(),
                    name: s.name,
                    ai_enabled: p.ai_enabled,
                    mode: mode(p.mode),
                    intent_modes: p
                        .intent_modes
                        .iter()
                        .map(|(intent, m)| (intent.replace('_', " "), mode(*m)))
                        .collect(),
                    auto_min_confidence: p.auto_min_confidence.to_string(),
                    generated_min_confidence: p.generated_min_confidence.to_string(),
                    human_below_confidence: p.human_below_confidence.to_string(),
                    human_anger_level: p.human_anger_level,
                    vip_to_human: p.vip_to_human,
                    auto_intents: p
                        .auto_intents
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    human_intents: p
                        .human_intents
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    business_hours: p.business_hours.map_or_else(
                        || "always open".into(),
                        |h| {
                            format!(
                                "{} {}–{} (UTC{:+}h)",
                                h.days.join(" "),
                                h.open,
                                h.close,
                                f64::from(h.utc_offset_minutes) / 60.0
                            )
                        },
                    ),
                }
            })
            .collect(),
        limits: BindingKind::ALL
            .into_iter()
            .filter(|k| k.has_amount())
            .map(|kind| {
                let set = limits.iter().find(|l| l.kind == kind);
                LimitRow {
                    kind: kind.as_str(),
                    label: kind.label(),
                    current: set.map_or_else(
                        || "not set: amounts cannot be approved".into(),
                        |l| money(l.max_cents, &currency),
                    ),
                    value: set
                        .map(|l| format!("{}.{:02}", l.max_cents / 100, l.max_cents % 100))
                        .unwrap_or_default(),
                    updated: set.map(|l| stamp(l.updated_at)).unwrap_or_default(),
                }
            })
            .collect(),
        currency,
    })
}

#[derive(Debug, Deserialize)]
pub struct LimitForm {
    csrf: String,
    kind: String,
    max: String,
}

pub async fn set_limit(
    State(state): State<WebState>,
    viewer: Viewer,
    Form(form): Form<LimitForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_admin()?;
    let kind = BindingKind::parse(&form.kind)?;
    if !kind.has_amount() {
        return Err(WebError::Invalid(format!("{} has no amount", kind.label())));
    }
    let cents = parse_money(&form.max).ok_or_else(|| {
        WebError::Invalid(format!(
            "limit must be a number such as 50.00, got {:?}",
            form.max
        ))
    })?;
    state
        .app
        .store
        .set_approval_limit(viewer.user.tenant_id, kind, cents, &viewer.user.actor())
        .await?;
    Ok(see_other("/app/settings#limits"))
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    subject: Option<String>,
    before: Option<i64>,
}

pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "web/audit.html")]
struct AuditPage {
    nav: Nav,
    action: String,
    actor: String,
    subject: String,
    rows: Vec<AuditRow>,
    older: Option<String>,
}

const AUDIT_PAGE: u32 = 100;

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub async fn audit(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<AuditQuery>,
) -> Result<Response, WebError> {
    viewer.require_admin()?;
    let filter = AuditFilter {
        action: non_empty(query.action),
        actor: non_empty(query.actor),
        subject_id: non_empty(query.subject),
        before: query.before,
        limit: AUDIT_PAGE,
    };
    let records = state
        .app
        .store
        .audit_search(viewer.user.tenant_id, &filter)
        .await?;
    let older = (records.len() == AUDIT_PAGE as usize)
        .then(|| records.last().map(|r| r.seq))
        .flatten()
        .map(|seq| {
            let mut link = format!("/app/audit?before={seq}");
            for (key, value) in [
                ("action", &filter.action),
                ("actor", &filter.actor),
                ("subject", &filter.subject_id),
            ] {
                if let Some(v) = value {
                    link.push_str(&format!("&{key}={}", super::inbox::urlencode(v)));
                }
            }
            link
        });
    render(&AuditPage {
        nav: Nav::new(&viewer, "settings"),
        action: filter.action.unwrap_or_default(),
        actor: filter.actor.unwrap_or_default(),
        subject: filter.subject_id.unwrap_or_default(),
        rows: records
            .into_iter()
            .map(|r| AuditRow {
                seq: r.seq,
                at: stamp(r.at),
                actor: r.event.actor,
                action: r.event.action,
                subject: format!("{} {}", r.event.subject_type, r.event.subject_id),
                details: r.event.details.to_string(),
            })
            .collect(),
        older,
    })
}
