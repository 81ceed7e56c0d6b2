//! Approvals that keep the buyer: a buyer's binding request (refund,
//! partial refund, discount, cancellation, compensation) is shown with the
//! order and the owner's limit; an agent approves an amount within it or
//! declines, and the buyer gets the answer in their language from a
//! template, in the same conversation, with who decided what in the audit
//! log. The approvals page lists requests no one has answered yet.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use chrono::Utc;
use serde::Deserialize;

use super::answers::{answer, AnswerParams};
use super::conversation::{buyer_language, parse_id};
use super::session::Viewer;
use super::trace;
use super::view::{ago, money, parse_money, render, Nav};
use super::{see_other, WebError, WebState};
use crate::domain::{Author, Direction, MessageId, MessageText, NewReply};
use crate::store::desk::{ApprovalOutcome, BindingKind, NewApproval};
use crate::store::{ConversationDetail, Decision, Order, StoreError};

const OPEN_REQUESTS: u32 = 200;

pub struct KindChoice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
    pub limit: String,
}

pub struct PastApproval {
    pub kind: &'static str,
    pub outcome: &'static str,
    pub amount: String,
    pub order: String,
    pub by: String,
    pub when: String,
}

/// The approval box on a conversation page.
#[derive(Default)]
pub struct ApprovalPanel {
    /// A detected request nobody has answered yet.
    pub request: Option<String>,
    pub request_message: String,
    pub kinds: Vec<KindChoice>,
    pub orders: Vec<String>,
    pub currency: String,
    pub language: String,
    pub past: Vec<PastApproval>,
}

/// The latest decision pointing at a binding request, when no answer
/// names its message yet.
fn open_request(
    decisions: &[Decision],
    answered: &[Option<MessageId>],
) -> Option<(BindingKind, MessageId)> {
    decisions.iter().rev().find_map(|d| {
        let binding = trace::field(&d.trace, "binding_request").or_else(|| {
            d.trace
                .pointer("/binding_request/kind")
                .and_then(|k| k.as_str())
                .map(str::to_owned)
        });
        let intent = trace::field(&d.trace, "intent");
        let kind = BindingKind::from_trace(binding.as_deref(), intent.as_deref())?;
        (!answered.contains(&Some(d.message_id))).then_some((kind, d.message_id))
    })
}

pub async fn panel(
    state: &WebState,
    viewer: &Viewer,
    detail: &ConversationDetail,
    decisions: &[Decision],
    orders: &[Order],
    language: &str,
) -> Result<ApprovalPanel, WebError> {
    let tenant = viewer.user.tenant_id;
    let store = &state.app.store;
    let (past, limits) = tokio::try_join!(
        store.approvals(tenant, detail.summary.id),
        store.approval_limits(tenant),
    )?;
    let answered: Vec<_> = past.iter().map(|a| a.message_id).collect();
    let request = open_request(decisions, &answered);
    let currency = state.settings.currency.clone();
    let now = Utc::now();
    Ok(ApprovalPanel {
        request: request.map(|(kind, _)| kind.label().to_owned()),
        request_message: request.map(|(_, m)| m.to_string()).unwrap_or_default(),
        kinds: BindingKind::ALL
            .into_iter()
            .map(|kind| KindChoice {
                value: kind.as_str(),
                label: kind.label(),
                selected: request.is_some_and(|(k, _)| k == kind),
                limit: match (kind.has_amount(), limits.iter().find(|l| l.kind == kind)) {
                    (false, _) => "no amount".into(),
                    (true, Some(l)) => format!("up to {}", money(l.max_cents, &currency)),
                    (true, None) => "no limit set: only declining is possible".into(),
                },
            })
            .collect(),
        orders: orders
            .iter()
            .map(|o| o.record.order_number.clone())
            .collect(),
        currency,
        language: super::view::language_name(language),
        past: past
            .into_iter()
            .map(|a| PastApproval {
                kind: a.kind.label(),
                outcome: match a.outcome {
                    ApprovalOutcome::Approved => "approved",
                    ApprovalOutcome::Declined => "declined",
                },
                amount: a
                    .amount_cents
                    .map(|c| money(c, a.currency.as_deref().unwrap_or("")))
                    .unwrap_or_default(),
                order: a.order_number.unwrap_or_default(),
                by: a.decided_by_name,
                when: ago(a.created_at, now),
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize)]
pub struct DecideForm {
    csrf: String,
    kind: String,
    /// `approve` or `decline`.
    decision: String,
    amount: Option<String>,
    order: Option<String>,
    /// The detected request's message, when answering one.
    request_message: Option<String>,
}

pub async fn decide(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_agent()?;
    let id = parse_id(&id)?;
    viewer.conversation_shop(&state, id).await?;
    let tenant = viewer.user.tenant_id;
    let store = &state.app.store;
    let kind = BindingKind::parse(&form.kind)?;
    let outcome = match form.decision.as_str() {
        "approve" => ApprovalOutcome::Approved,
        "decline" => ApprovalOutcome::Declined,
        other => return Err(WebError::Invalid(format!("no decision {other:?}"))),
    };
    let currency = state.settings.currency.clone();
    let amount_cents = match (outcome, kind.has_amount()) {
        (ApprovalOutcome::Approved, true) => {
            let raw = form.amount.as_deref().unwrap_or("").trim();
            let cents = parse_money(raw).ok_or_else(|| {
                WebError::Invalid(format!(
                    "amount must be a number such as 12.50, got {raw:?}"
                ))
            })?;
            let limits = store.approval_limits(tenant).await?;
            let limit = limits.iter().find(|l| l.kind == kind).ok_or_else(|| {
                WebError::Invalid(format!(
                    "no limit is set for {}; an admin sets one under Settings",
                    kind.label().to_lowercase()
                ))
            })?;
            if cents == 0 || cents > limit.max_cents {
                return Err(WebError::Invalid(format!(
                    "amount must be more than 0 and at most {}, got {}",
                    money(limit.max_cents, &currency),
                    money(cents, &currency)
                )));
            }
            Some(cents)
        }
        _ => None,
    };
    let decisions = store.decisions(tenant, id).await?;
    let detail = store
        .conversation(tenant, id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("conversation {id}")))?;
    let orders = store.orders_for_buyer(tenant, detail.buyer.id).await?;
    let order_number = form
        .order
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            orders
                .iter()
                .find(|known| known.record.order_number == o)
                .map(|known| known.record.order_number.clone())
                .ok_or_else(|| WebError::Invalid(format!("the buyer has no order {o:?}")))
        })
        .transpose()?;
    let message = form
        .request_message
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(|m| {
            let message: MessageId = m
                .parse()
                .map_err(|_| WebError::Invalid("no such request".into()))?;
            decisions
                .iter()
                .any(|d| d.message_id == message)
                .then_some(message)
                .ok_or_else(|| WebError::Invalid("no such request".into()))
        })
        .transpose()?;
    let language = buyer_language(&detail, &decisions, "en");
    let amount = amount_cents.map(|c| money(c, &currency));
    let text = answer(&AnswerParams {
        language: &language,
        kind,
        outcome,
        amount: amount.as_deref(),
        order_number: order_number.as_deref(),
    })
    .text;
    let approval = NewApproval {
        conversation: id,
        message,
        kind,
        outcome,
        amount_cents,
        currency: amount_cents.map(|_| currency.clone()),
        order_number,
        decided_by: viewer.user.id,
        reply: NewReply {
            text: MessageText::parse(&text, state.app.limits.text)?,
            direction: Direction::Outbound,
            author: Author::Agent,
            author_name: Some(viewer.user.display_name.clone()),
            external_id: None,
        },
    };
    match store
        .record_approval(tenant, &approval, &viewer.user.actor())
        .await
    {
        Ok(_) => Ok(see_other(&format!("/app/c/{id}#approval"))),
        Err(StoreError::AlreadyExists { .. }) => Err(WebError::Conflict(
            "this request has been answered already".into(),
        )),
        Err(err) => Err(err.into()),
    }
}

pub struct RequestRow {
    pub conversation: String,
    pub buyer: String,
    pub shop: String,
    pub kind: &'static str,
    pub text: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "web/approvals.html")]
struct ApprovalsPage {
    nav: Nav,
    requests: Vec<RequestRow>,
}

pub async fn page(State(state): State<WebState>, viewer: Viewer) -> Result<Response, WebError> {
    let requests = state
        .app
        .store
        .open_requests(viewer.user.tenant_id, &viewer.user.shops, OPEN_REQUESTS)
        .await?;
    let now = Utc::now();
    render(&ApprovalsPage {
        nav: Nav::new(&viewer, "approvals"),
        requests: requests
            .into_iter()
            .map(|r| RequestRow {
                conversation: r.conversation_id.to_string(),
                buyer: r.buyer_name.unwrap_or_default(),
                shop: r.shop.to_string(),
                kind: r.kind.label(),
                text: r.text,
                when: ago(r.at, now),
            })
            .collect(),
    })
}
