//! Events for integrations: a seller's ERP or CRM follows every
//! conversation through signed webhooks instead of polling.
//!
//! The events come from the audit log, which every change writes in its
//! own transaction: the dispatcher reads the log from its cursor, turns the
//! rows that matter into event deliveries for the tenant's endpoints, and
//! moves the cursor in the same transaction as it enqueues them. So an
//! event exists exactly when its change committed, and the outbox delivers
//! it (with retries) at least once; receivers deduplicate by `id`.
//!
//! Types: `message.received`, `decision.made`, `conversation.handed_off`,
//! `reply.sent`, `conversation.resolved`, `conversation.at_risk`.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Channels;
use crate::store::{AuditEntry, EventBatch, NewEvent};

pub const EVENT_TYPES: [&str; 6] = [
    "message.received",
    "decision.made",
    "conversation.handed_off",
    "reply.sent",
    "conversation.resolved",
    "conversation.at_risk",
];

/// What an endpoint receives (the OpenAPI document's `webhooks` section
/// describes it).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventEnvelope {
    /// Unique per event; a redelivery has the same id.
    #[schema(example = "evt_1042_0")]
    pub id: String,
    #[schema(example = "message.received")]
    #[serde(rename = "type")]
    pub kind: String,
    /// When the change was committed.
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub tenant_id: String,
    /// Position in the tenant's history: events may arrive out of order
    /// after retries; sort by this.
    pub sequence: i64,
    /// What changed: `subject_type` and `subject_id` (a message or a
    /// conversation) and the change's details (conversation id, shop,
    /// layer and action of a decision, ...).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Documents the outgoing event webhooks in the OpenAPI document's
/// `webhooks` section (OpenAPI 3.1), one entry per event type.
pub struct EventWebhooks;

impl utoipa::Modify for EventWebhooks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::{PartialSchema, ToSchema};
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert(EventEnvelope::name().into_owned(), EventEnvelope::schema());
        let header = |name: &str, description: &str| {
            serde_json::json!({"name": name, "in": "header", "required": true,
                "description": description, "schema": {"type": "string"}})
        };
        let describe = |kind: &str| {
            match kind {
            "message.received" => "A message was stored: a buyer's (from any channel) or one the seller wrote in a marketplace's own app.",
            "decision.made" => "The reply pipeline decided on a buyer message (layer, action, reasons).",
            "conversation.handed_off" => "A conversation went to a human: the pipeline's layer 3, or a reply that could not be delivered (`reason: delivery_failed`).",
            "reply.sent" => "A reply reached the buyer's platform (with the platform's message ids).",
            "conversation.resolved" => "A conversation was resolved.",
            _ => "A buyer message nobody answered is near its platform's response deadline.",
        }
        };
        let mut webhooks = serde_json::Map::new();
        for kind in EVENT_TYPES {
            webhooks.insert(
                kind.to_owned(),
                serde_json::json!({"post": {
                    "tags": ["channels"],
                    "summary": kind,
                    "description": format!(
                        "{} Sent to each endpoint added with `kedai events add`, from a durable \
                         outbox with retries (exponential backoff with jitter, \
                         `channels.event_max_attempts`); delivery is at least once, so deduplicate \
                         by `id`. Verify `X-Kedai-Signature` = `v1=` + lowercase hex \
                         HMAC-SHA256(secret, `X-Kedai-Timestamp` + \".\" + raw body), compared in \
                         constant time, and refuse timestamps more than 5 minutes old (replays).",
                        describe(kind)
                    ),
                    "parameters": [
                        header("X-Kedai-Event", "The event type."),
                        header("X-Kedai-Delivery", "This delivery's id (the same on retries)."),
                        header("X-Kedai-Timestamp", "Unix seconds when this attempt was signed."),
                        header("X-Kedai-Signature", "`v1=<hex HMAC-SHA256>` over timestamp, `.`, body."),
                    ],
                    "requestBody": {"required": true, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/EventEnvelope"}}}},
                    "responses": {"2XX": {"description": "Received. Any other answer, or none within the timeout, is retried."}},
                }}),
            );
        }
        openapi
            .extensions
            .get_or_insert_with(Default::default)
            .insert("webhooks".into(), serde_json::Value::Object(webhooks));
    }
}

/// The event types an audit row stands for.
pub fn types_of(entry: &AuditEntry) -> Vec<&'static str> {
    let details = &entry.details;
    match entry.action.as_str() {
        "message.received" => vec!["message.received"],
        "pipeline.decided" => {
            let handoff = details["action"] == "handoff" || details["layer"] == 3;
            if handoff {
                vec!["decision.made", "conversation.handed_off"]
            } else {
                vec!["decision.made"]
            }
        }
        "reply.sent" => vec!["reply.sent"],
        "reply.dead_letter" => vec!["conversation.handed_off"],
        "conversation.status" if details["status"] == "resolved" => vec!["conversation.resolved"],
        "conversation.at_risk" => vec!["conversation.at_risk"],
        _ => Vec::new(),
    }
}

fn data_of(entry: &AuditEntry, kind: &str) -> serde_json::Value {
    let mut data = serde_json::json!({
        "subject_type": entry.subject_type,
        "subject_id": entry.subject_id,
    });
    if let (Some(target), Some(details)) = (data.as_object_mut(), entry.details.as_object()) {
        for (key, value) in details {
            target.insert(key.clone(), value.clone());
        }
        if kind == "conversation.handed_off" && entry.action == "reply.dead_letter" {
            target.insert("reason".into(), "delivery_failed".into());
        }
    }
    data
}

/// One pass: reads the next audit rows and enqueues their events; returns
/// how many rows it read.
pub async fn dispatch_once(
    channels: &Channels,
    limit: u32,
) -> Result<usize, crate::store::StoreError> {
    let (entries, endpoints) = channels.store.audit_after_cursor(limit).await?;
    let Some(last) = entries.last() else {
        return Ok(0);
    };
    let mut events = Vec::new();
    for entry in &entries {
        let Some(tenant) = entry.tenant_id else {
            continue;
        };
        for (n, kind) in types_of(entry).into_iter().enumerate() {
            for (endpoint, _) in endpoints.iter().filter(|(e, _)| {
                e.tenant_id == tenant
                    && e.created_at <= entry.at
                    && (e.events.is_empty() || e.events.iter().any(|t| t == kind))
            }) {
                let envelope = EventEnvelope {
                    id: format!("evt_{}_{n}", entry.seq),
                    kind: kind.to_owned(),
                    created_at: entry.at,
                    tenant_id: tenant.to_string(),
                    sequence: entry.seq,
                    data: data_of(entry, kind),
                };
                events.push(NewEvent {
                    tenant_id: tenant,
                    endpoint_id: endpoint.id.clone(),
                    idempotency_key: format!("event:{}:{}", endpoint.id, envelope.id),
                    conversation_id: None,
                    body: serde_json::to_string(&envelope).unwrap_or_default(),
                });
            }
        }
    }
    let queued = !events.is_empty();
    channels
        .store
        .enqueue_events(&EventBatch {
            through_seq: last.seq,
            events,
        })
        .await?;
    if queued {
        channels.outbox_wake.notify_one();
    }
    Ok(entries.len())
}

/// Runs until `cancel`.
pub async fn run(channels: Arc<Channels>, cancel: CancellationToken) {
    const BATCH: u32 = 500;
    let poll = Duration::from_millis(channels.settings.events_poll_ms);
    loop {
        let read = match dispatch_once(&channels, BATCH).await {
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(error = %err, "event dispatch failed; retrying");
                0
            }
        };
        if read as u32 >= BATCH {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str, details: serde_json::Value) -> AuditEntry {
        AuditEntry {
            seq: 7,
            tenant_id: None,
            at: chrono::Utc::now(),
            action: action.into(),
            subject_type: "message".into(),
            subject_id: "m".into(),
            details,
        }
    }

    #[test]
    fn audit_actions_map_to_event_types() {
        use serde_json::json;
        let rows: &[(&str, serde_json::Value, &[&str])] = &[
            ("message.received", json!({}), &["message.received"]),
            (
                "pipeline.decided",
                json!({"layer": 1, "action": "send"}),
                &["decision.made"],
            ),
            (
                "pipeline.decided",
                json!({"layer": 3, "action": "handoff"}),
                &["decision.made", "conversation.handed_off"],
            ),
            ("reply.sent", json!({}), &["reply.sent"]),
            ("reply.dead_letter", json!({}), &["conversation.handed_off"]),
            (
                "conversation.status",
                json!({"status": "resolved"}),
                &["conversation.resolved"],
            ),
            ("conversation.status", json!({"status": "pending"}), &[]),
            ("conversation.at_risk", json!({}), &["conversation.at_risk"]),
            ("token.created", json!({}), &[]),
        ];
        for (action, details, expected) in rows {
            assert_eq!(
                &types_of(&entry(action, details.clone())),
                expected,
                "{action} {details}"
            );
        }
        let data = data_of(
            &entry("reply.dead_letter", json!({"error": "x"})),
            "conversation.handed_off",
        );
        assert_eq!(data["reason"], "delivery_failed");
        assert_eq!(data["subject_id"], "m");
    }
}
