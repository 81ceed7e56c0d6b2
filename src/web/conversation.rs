//! One conversation: the thread (original and agent-language text, "why
//! did the AI say this" for each AI message), who holds it, the AI's
//! summary and route, the buyer card with orders, the suggested reply to
//! edit and send (shown in the buyer's language first when the agent
//! writes in another), internal notes, take over / give back / assign,
//! resolve, and the approval panel for binding requests.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use chrono::Utc;
use rand::distr::{Alphanumeric, SampleString};
use serde::Deserialize;

use super::approvals::{self, ApprovalPanel};
use super::session::Viewer;
use super::trace::{self, Why};
use super::translate;
use super::view::{ago, language_name, money, render, stamp, Nav};
use super::{see_other, WebError, WebState};
use crate::domain::Custody;
use crate::domain::{
    Author, ConversationId, ConversationStatus, Direction, ExternalMessageId, MessageText,
    NewReply, Platform,
};
use crate::store::desk::{Holder, InboxFilter, InboxTab};
use crate::store::{ConversationDetail, Decision, DeliveryState, Order, ReplyDelivery};

pub fn parse_id(raw: &str) -> Result<ConversationId, WebError> {
    raw.parse()
        .map_err(|_| WebError::NotFound(format!("conversation {raw:?}")))
}

pub struct MessageView {
    pub id: String,
    pub class: &'static str,
    pub author: String,
    pub text: String,
    pub translation: String,
    pub language: String,
    pub when: String,
    pub stamp: String,
    /// For AI messages: the decision behind them.
    pub why: Option<Why>,
    /// For buyer messages: how the pipeline read them.
    pub read_as: Option<Why>,
    /// For replies through a platform: where the reply stands.
    pub delivery: Option<DeliveryView>,
}

/// A reply's way to the buyer's platform, as a badge.
pub struct DeliveryView {
    /// `queued`, `sending`, `delivered` or `failed`.
    pub state: &'static str,
    pub label: String,
}

impl DeliveryView {
    fn new(delivery: &ReplyDelivery, platform: Platform) -> DeliveryView {
        let to = platform.display_name();
        let error = delivery.last_error.as_deref().unwrap_or("no answer");
        let (state, label) = match delivery.state {
            DeliveryState::Queued if delivery.attempts > 0 => (
                "queued",
                format!(
                    "Not yet delivered to {to} after {} tries ({error}); trying again",
                    delivery.attempts
                ),
            ),
            DeliveryState::Queued => ("queued", format!("Waiting to be sent to {to}")),
            DeliveryState::Sending => ("sending", format!("Sending to {to}")),
            DeliveryState::Delivered => ("delivered", format!("Delivered to {to}")),
            DeliveryState::Failed => (
                "failed",
                format!("Not delivered to {to}: {error}. The conversation waits for a person."),
            ),
        };
        DeliveryView { state, label }
    }
}

pub struct OrderView {
    pub number: String,
    pub status: String,
    pub total: String,
    pub carrier: String,
    pub tracking: String,
    pub last_event: String,
    pub items: String,
}

impl OrderView {
    fn new(order: &Order) -> OrderView {
        let r = &order.record;
        OrderView {
            number: r.order_number.clone(),
            status: r.status.replace('_', " "),
            total: money(r.total_cents, &r.currency),
            carrier: r.carrier.clone().unwrap_or_default(),
            tracking: r.tracking_number.clone().unwrap_or_default(),
            last_event: r
                .tracking_events
                .last()
                .map(|e| format!("{} · {}", e.status, stamp(e.at)))
                .unwrap_or_default(),
            items: r
                .items
                .iter()
                .map(|i| format!("{} × {}", i.quantity, i.name))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

pub struct BuyerCard {
    pub name: String,
    pub platform_id: String,
    pub member_level: String,
    pub vip: bool,
    pub lifetime_value: String,
    pub language: String,
    pub orders: Vec<OrderView>,
}

pub struct AgentChoice {
    pub id: String,
    pub name: String,
}

/// The reply box: the draft or the agent's text, and, after a preview,
/// the buyer-language version to send.
#[derive(Default)]
pub struct Composer {
    pub text: String,
    pub translated: Option<String>,
    pub notice: Option<String>,
    pub nonce: String,
    pub buyer_language: String,
    pub needs_translation: bool,
}

#[derive(Template)]
#[template(path = "web/conversation.html")]
struct ConversationPage {
    nav: Nav,
    id: String,
    shop: String,
    platform: String,
    status: String,
    resolved: bool,
    layer: String,
    holder: String,
    holder_is_me: bool,
    holder_is_ai: bool,
    summary: Option<String>,
    latest: Option<Why>,
    suggestions: Vec<String>,
    messages: Vec<MessageView>,
    buyer: BuyerCard,
    composer: Composer,
    agents: Vec<AgentChoice>,
    approval: ApprovalPanel,
    next: Option<String>,
    /// The intents an agent may correct a reading to; empty when the
    /// classifiers are not trained.
    intents: Vec<String>,
}

fn holder_label(holder: &Holder) -> String {
    match holder {
        Holder::Ai => "The AI answers".into(),
        Holder::Unassigned => "Waiting for an agent".into(),
        Holder::Agent { name, .. } => format!("Held by {name}"),
    }
}

fn message_views(
    detail: &ConversationDetail,
    decisions: &[Decision],
    deliveries: &[ReplyDelivery],
) -> Vec<MessageView> {
    let now = Utc::now();
    detail
        .messages
        .iter()
        .map(|m| {
            let why = decisions
                .iter()
                .find(|d| d.reply_message_id == Some(m.id))
                .map(trace::why);
            let read_as = (m.direction == Direction::Inbound)
                .then(|| decisions.iter().find(|d| d.message_id == m.id))
                .flatten()
                .map(trace::why);
            MessageView {
                id: m.id.to_string(),
                class: match (m.direction, m.author) {
                    (Direction::Note, _) => "note",
                    (Direction::Inbound, _) => "buyer",
                    (_, Author::Ai) => "ai",
                    (_, Author::System) => "system",
                    _ => "agent",
                },
                author: match (m.direction, m.author) {
                    (Direction::Note, _) => format!(
                        "Note by {}",
                        m.author_name.clone().unwrap_or_else(|| "an agent".into())
                    ),
                    (_, Author::Buyer) => m
                        .author_name
                        .clone()
                        .or_else(|| detail.buyer.display_name.clone())
                        .unwrap_or_else(|| "Buyer".into()),
                    (_, Author::Ai) => "AI".into(),
                    (_, Author::System) => "System".into(),
                    (_, Author::Agent) => m.author_name.clone().unwrap_or_else(|| "Agent".into()),
                },
                text: m.text.as_str().to_owned(),
                translation: m.translation.clone().unwrap_or_default(),
                language: m.language.clone().unwrap_or_default(),
                when: ago(m.received_at, now),
                stamp: stamp(m.received_at),
                why,
                read_as,
                delivery: deliveries
                    .iter()
                    .find(|d| d.message_id == m.id)
                    .map(|d| DeliveryView::new(d, detail.summary.platform)),
            }
        })
        .collect()
}

/// The buyer's language: the pipeline's reading of their latest message,
/// else their profile's, else the agent's own.
pub fn buyer_language(
    detail: &ConversationDetail,
    decisions: &[Decision],
    fallback: &str,
) -> String {
    decisions
        .iter()
        .rev()
        .find_map(|d| trace::field(&d.trace, "lang"))
        .or_else(|| {
            detail
                .messages
                .iter()
                .rev()
                .find(|m| m.direction == Direction::Inbound)
                .and_then(|m| m.language.clone())
        })
        .or_else(|| detail.buyer.language.clone())
        .unwrap_or_else(|| fallback.to_owned())
}

/// The draft still waiting: the latest decision's, unless someone has
/// replied since.
fn pending_draft(detail: &ConversationDetail, decisions: &[Decision]) -> Option<String> {
    let latest = decisions.last()?;
    let draft = latest.draft.clone()?;
    let replied = detail
        .messages
        .iter()
        .any(|m| m.direction == Direction::Outbound && m.received_at > latest.created_at);
    (!replied).then_some(draft)
}

fn same_language(a: &str, b: &str) -> bool {
    let base = |l: &str| {
        l.split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    base(a) == base(b)
}

pub async fn render_page(
    state: &WebState,
    viewer: &Viewer,
    id: ConversationId,
    composer: Option<Composer>,
) -> Result<Response, WebError> {
    let shop = viewer.conversation_shop(state, id).await?;
    let tenant = viewer.user.tenant_id;
    let store = &state.app.store;
    // Decisions first: a decision and its reply are committed together, so
    // every decision read here finds its reply among the messages.
    let decisions = store.decisions(tenant, id).await?;
    let detail = store
        .conversation(tenant, id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("conversation {id}")))?;
    let (orders, holder, users, deliveries) = tokio::try_join!(
        store.orders_for_buyer(tenant, detail.buyer.id),
        store.holder(tenant, id),
        store.list_users(tenant),
        store.reply_deliveries(tenant, id),
    )?;
    let language = buyer_language(&detail, &decisions, &viewer.user.language);
    let approval = approvals::panel(state, viewer, &detail, &decisions, &orders, &language).await?;
    let mut composer = composer.unwrap_or_else(|| Composer {
        text: pending_draft(&detail, &decisions).unwrap_or_default(),
        ..Composer::default()
    });
    composer.nonce = Alphanumeric.sample_string(&mut rand::rng(), 24);
    composer.needs_translation = !same_language(&language, &viewer.user.language);
    composer.buyer_language = language_name(&language);
    let latest = decisions.last();
    let summary = detail.summary.clone();
    let next = next_conversation(state, viewer, id).await?;
    render(&ConversationPage {
        nav: Nav::new(viewer, "inbox"),
        id: id.to_string(),
        shop: summary.shop.to_string(),
        platform: summary.platform.to_string(),
        status: format!("{:?}", summary.status).to_lowercase(),
        resolved: summary.status == ConversationStatus::Resolved,
        layer: summary
            .layer
            .map_or("not routed yet".into(), |l| format!("layer {}", l.get())),
        holder_is_me: matches!(&holder, Holder::Agent { id, .. } if *id == Some(viewer.user.id)),
        holder_is_ai: holder == Holder::Ai,
        holder: holder_label(&holder),
        summary: latest.and_then(trace::summary),
        latest: latest.map(trace::why),
        suggestions: latest
            .map(|d| trace::suggestions(&d.trace))
            .unwrap_or_default(),
        messages: message_views(&detail, &decisions, &deliveries),
        intents: state.app.learning.known_intents(),
        buyer: BuyerCard {
            name: detail
                .buyer
                .display_name
                .clone()
                .unwrap_or_else(|| detail.buyer.platform_buyer_id.clone()),
            platform_id: detail.buyer.platform_buyer_id.clone(),
            member_level: detail.buyer.member_level.clone().unwrap_or_default(),
            vip: detail.buyer.is_vip,
            lifetime_value: money(
                detail.buyer.lifetime_value_cents,
                detail.buyer.currency.as_deref().unwrap_or(""),
            ),
            language: language_name(&language),
            orders: orders.iter().map(OrderView::new).collect(),
        },
        composer,
        agents: users
            .into_iter()
            .filter(|u| u.role.can_act() && !u.disabled && u.shops.allows(shop))
            .map(|u| AgentChoice {
                id: u.id.to_string(),
                name: u.display_name,
            })
            .collect(),
        approval,
        next,
    })
}

/// The next conversation that needs a human, for the `n` key.
async fn next_conversation(
    state: &WebState,
    viewer: &Viewer,
    current: ConversationId,
) -> Result<Option<String>, WebError> {
    let filter = InboxFilter {
        tab: InboxTab::Human,
        shop: None,
        platform: None,
        language: None,
        intent: None,
        agent: None,
        resolved: false,
        at_risk_before: Utc::now(),
        limit: 2,
    };
    let rows = state
        .app
        .store
        .inbox(viewer.user.tenant_id, &viewer.user.shops, &filter)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| r.summary.id)
        .find(|id| *id != current)
        .map(|id| id.to_string()))
}

pub async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    render_page(&state, &viewer, parse_id(&id)?, None).await
}

#[derive(Debug, Deserialize)]
pub struct ReplyForm {
    csrf: String,
    text: String,
    /// The buyer-language version, after a preview.
    translated: Option<String>,
    /// `preview` or `send`.
    action: String,
    /// Makes a double submit one reply.
    nonce: String,
}

pub async fn reply(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<ReplyForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_agent()?;
    let id = parse_id(&id)?;
    viewer.conversation_shop(&state, id).await?;
    let limits = state.app.limits.text;
    if form.action == "preview" {
        let text = MessageText::parse(&form.text, limits)?;
        let tenant = viewer.user.tenant_id;
        let decisions = state.app.store.decisions(tenant, id).await?;
        let detail = state
            .app
            .store
            .conversation(tenant, id)
            .await?
            .ok_or_else(|| WebError::NotFound(format!("conversation {id}")))?;
        let to = buyer_language(&detail, &decisions, &viewer.user.language);
        let composer = match translate::translate(state.writer.as_deref(), text.as_str(), &to).await
        {
            Ok(translated) => Composer {
                text: form.text,
                translated: Some(translated),
                ..Composer::default()
            },
            Err(err) => Composer {
                text: form.text,
                notice: Some(err.to_string()),
                ..Composer::default()
            },
        };
        return render_page(&state, &viewer, id, Some(composer)).await;
    }
    let to_send = form
        .translated
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or(&form.text);
    let reply = NewReply {
        text: MessageText::parse(to_send, limits)?,
        direction: Direction::Outbound,
        author: Author::Agent,
        author_name: Some(viewer.user.display_name.clone()),
        external_id: Some(ExternalMessageId::parse(&format!("web-{}", form.nonce))?),
    };
    let tenant = viewer.user.tenant_id;
    let unclaimed = matches!(
        state.app.store.holder(tenant, id).await?,
        Holder::Ai | Holder::Unassigned
    );
    state
        .app
        .store
        .add_reply(tenant, id, &reply, &viewer.user.actor())
        .await?;
    // Sent as typed (not through the preview's translation): an edited
    // machine translation becomes the approved one.
    if form
        .translated
        .as_deref()
        .is_none_or(|t| t.trim().is_empty())
    {
        let learned = crate::learning::translations::approve_edited_translation(
            state.app.store.as_ref(),
            tenant,
            id,
            reply.text.as_str(),
            &viewer.user.actor(),
        )
        .await;
        if let Err(err) = learned {
            tracing::warn!(error = %err, "an edited translation was not recorded");
        }
    }
    // Whoever answers a conversation nobody holds now holds it.
    if unclaimed {
        let me = viewer.user.id.to_string();
        state
            .app
            .store
            .set_custody(tenant, id, Custody::Human, Some(&me), &viewer.user.actor())
            .await?;
    }
    Ok(see_other(&format!("/app/c/{id}")))
}

#[derive(Debug, Deserialize)]
pub struct NoteForm {
    csrf: String,
    text: String,
}

pub async fn note(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<NoteForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_agent()?;
    let id = parse_id(&id)?;
    viewer.conversation_shop(&state, id).await?;
    let note = NewReply {
        text: MessageText::parse(&form.text, state.app.limits.text)?,
        direction: Direction::Note,
        author: Author::Agent,
        author_name: Some(viewer.user.display_name.clone()),
        external_id: None,
    };
    state
        .app
        .store
        .add_reply(viewer.user.tenant_id, id, &note, &viewer.user.actor())
        .await?;
    Ok(see_other(&format!("/app/c/{id}#notes")))
}

#[derive(Debug, Deserialize)]
pub struct HolderForm {
    csrf: String,
    /// `me`, `ai`, or an agent's user id.
    holder: String,
}

pub async fn holder(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<HolderForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_agent()?;
    let id = parse_id(&id)?;
    let shop = viewer.conversation_shop(&state, id).await?;
    let agent = match form.holder.as_str() {
        "ai" => None,
        "me" => Some(viewer.user.clone()),
        other => {
            let user = other
                .parse()
                .map_err(|_| WebError::Invalid(format!("no agent {other:?}")))?;
            let agent = state
                .app
                .store
                .user(viewer.user.tenant_id, user)
                .await?
                .ok_or_else(|| WebError::Invalid("no such agent".into()))?;
            if !agent.role.can_act() || agent.disabled {
                return Err(WebError::Invalid(format!(
                    "{} cannot answer buyers",
                    agent.display_name
                )));
            }
            if !agent.shops.allows(shop) {
                return Err(WebError::Invalid(format!(
                    "{} has no access to this shop",
                    agent.display_name
                )));
            }
            Some(agent)
        }
    };
    let (custody, assignee) = match &agent {
        Some(agent) => (Custody::Human, Some(agent.id.to_string())),
        None => (Custody::Ai, None),
    };
    state
        .app
        .store
        .set_custody(
            viewer.user.tenant_id,
            id,
            custody,
            assignee.as_deref(),
            &viewer.user.actor(),
        )
        .await?;
    Ok(see_other(&format!("/app/c/{id}")))
}

#[derive(Debug, Deserialize)]
pub struct StatusForm {
    csrf: String,
    status: String,
}

pub async fn status(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<StatusForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_agent()?;
    let id = parse_id(&id)?;
    viewer.conversation_shop(&state, id).await?;
    let status = match form.status.as_str() {
        "resolved" => ConversationStatus::Resolved,
        "open" => ConversationStatus::Open,
        other => return Err(WebError::Invalid(format!("no status {other:?}"))),
    };
    state
        .app
        .store
        .set_conversation_status(viewer.user.tenant_id, id, status, &viewer.user.actor())
        .await?;
    Ok(if status == ConversationStatus::Resolved {
        see_other("/app/inbox")
    } else {
        see_other(&format!("/app/c/{id}"))
    })
}
