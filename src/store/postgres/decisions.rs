//! The reply pipeline's decisions: each one stored with everything it changes, and the follow-ups that enrich it. PostgreSQL implementation of [`DecisionStore`].

use super::*;

#[derive(sqlx::FromRow)]
pub(super) struct DecisionRow {
    pub(super) id: String,
    pub(super) conversation_id: String,
    pub(super) message_id: String,
    pub(super) layer: i64,
    pub(super) action: String,
    pub(super) draft: Option<String>,
    pub(super) reply_message_id: Option<String>,
    pub(super) trace: String,
    pub(super) follow_up: Option<String>,
    pub(super) created_at: String,
}

/// Attempts for a decision's follow-up: it only adds a translation and a
/// summary, so a model that keeps failing is not worth more.
pub(super) const ENRICH_MAX_ATTEMPTS: u32 = 3;

pub(super) const DECISION_COLUMNS: &str = "id, conversation_id, message_id, layer, action, draft, \
     reply_message_id, trace, follow_up, created_at";

impl TryFrom<DecisionRow> for Decision {
    type Error = StoreError;
    fn try_from(row: DecisionRow) -> Result<Self, StoreError> {
        let layer = u8::try_from(row.layer)
            .ok()
            .and_then(|l| Layer::try_from(l).ok())
            .ok_or_else(|| StoreError::Corrupt(format!("decision layer {}", row.layer)))?;
        Ok(Decision {
            id: parse_id(&row.id, "decision")?,
            conversation_id: parse_id(&row.conversation_id, "conversation")?,
            message_id: parse_id(&row.message_id, "message")?,
            layer,
            action: parse_enum(&row.action, "decision action")?,
            draft: row.draft,
            reply_message_id: row
                .reply_message_id
                .as_deref()
                .map(|id| parse_id(id, "message"))
                .transpose()?,
            trace: serde_json::from_str(&row.trace)
                .map_err(|e| StoreError::Corrupt(format!("decision trace: {e}")))?,
            follow_up: row
                .follow_up
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("decision follow-up: {e}")))?,
            created_at: parse_ts(&row.created_at)?,
        })
    }
}

/// The conversation and message a decision is about, as they stand inside
/// the decision's transaction.
#[derive(sqlx::FromRow)]
struct DecisionTarget {
    shop_id: String,
    status: String,
    custody: String,
    decided_seq: Option<i64>,
    /// The decided message's position in its conversation.
    seq: i64,
}

/// Refuses an AI reply when a person holds the conversation, resolved it,
/// or wrote to the buyer after the message being answered: the pipeline
/// decided on an older state and must decide again.
async fn check_ai_may_send(
    tx: &mut Transaction<'static, Postgres>,
    decision: &NewDecision,
    target: &DecisionTarget,
) -> Result<(), StoreError> {
    if target.custody == "human" {
        return Err(StoreError::Conflict(format!(
            "conversation {} is held by a person",
            decision.conversation
        )));
    }
    if target.status == "resolved" {
        return Err(StoreError::Conflict(format!(
            "conversation {} is resolved",
            decision.conversation
        )));
    }
    let answered: Option<i64> = sqlx::query_scalar(&pg(
        "SELECT seq FROM messages WHERE conversation_id = ? AND seq > ? \
         AND direction = 'outbound' AND author = 'agent' LIMIT 1",
    ))
    .bind(decision.conversation.to_string())
    .bind(target.seq)
    .fetch_optional(&mut **tx)
    .await?;
    if answered.is_some() {
        return Err(StoreError::Conflict(format!(
            "a person already answered in conversation {}",
            decision.conversation
        )));
    }
    Ok(())
}

#[async_trait]
impl DecisionStore for PostgresStore {
    async fn record_decision(
        &self,
        tenant: TenantId,
        decision: &NewDecision,
    ) -> Result<(Decision, bool), StoreError> {
        let mut tx = self.begin_write().await?;
        let existing: Option<DecisionRow> = sqlx::query_as(&pg(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE tenant_id = ? AND message_id = ?"
        )))
        .bind(tenant.to_string())
        .bind(decision.message.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = existing {
            return Ok((Decision::try_from(existing)?, true));
        }
        let target: Option<DecisionTarget> = sqlx::query_as(&pg(
            "SELECT c.shop_id, c.status, c.custody, c.decided_seq, m.seq FROM conversations c \
             JOIN messages m ON m.conversation_id = c.id \
             WHERE c.tenant_id = ? AND c.id = ? AND m.id = ? AND m.direction = 'inbound'",
        ))
        .bind(tenant.to_string())
        .bind(decision.conversation.to_string())
        .bind(decision.message.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(target) = target else {
            return Err(StoreError::NotFound {
                what: format!(
                    "inbound message {} in conversation {}",
                    decision.message, decision.conversation
                ),
            });
        };
        if decision.reply.is_some() {
            check_ai_may_send(&mut tx, decision, &target).await?;
        }
        let at = now();
        let reply = match &decision.reply {
            Some(reply) => Some(
                insert_message(
                    &mut tx,
                    tenant,
                    decision.conversation,
                    &target.shop_id,
                    reply,
                    at,
                )
                .await?,
            ),
            None => None,
        };
        let trace = serde_json::to_string(&decision.trace)
            .map_err(|e| StoreError::Corrupt(format!("decision trace: {e}")))?;
        let stored = Decision {
            id: DecisionId::new(),
            conversation_id: decision.conversation,
            message_id: decision.message,
            layer: decision.layer,
            action: decision.action,
            draft: decision.draft.clone(),
            reply_message_id: reply.as_ref().map(|m| m.id),
            trace: decision.trace.clone(),
            follow_up: None,
            created_at: at,
        };
        sqlx::query(&pg(&format!(
            "INSERT INTO decisions ({DECISION_COLUMNS}, tenant_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)"
        )))
        .bind(stored.id.to_string())
        .bind(stored.conversation_id.to_string())
        .bind(stored.message_id.to_string())
        .bind(i64::from(stored.layer.get()))
        .bind(stored.action.as_str())
        .bind(stored.draft.as_deref())
        .bind(stored.reply_message_id.map(|id| id.to_string()))
        .bind(trace)
        .bind(ts(at))
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(&pg(
            "UPDATE messages SET processed_at = COALESCE(processed_at, ?), \
             language = COALESCE(?, language), translation = COALESCE(?, translation) WHERE id = ?",
        ))
        .bind(ts(at))
        .bind(decision.language.as_deref())
        .bind(decision.translation.as_deref())
        .bind(decision.message.to_string())
        .execute(&mut *tx)
        .await?;
        if target.decided_seq.is_none_or(|seq| seq <= target.seq) {
            // The latest message decided sets the route; a late decision on
            // an older message never hides a newer escalation, and nothing
            // reopens a resolved conversation.
            let status = if target.status == "resolved" {
                ConversationStatus::Resolved
            } else {
                decision.status
            };
            let custody = match decision.action {
                Action::Handoff => "human",
                _ => target.custody.as_str(),
            };
            sqlx::query(&pg(
                "UPDATE conversations SET layer = ?, status = ?, custody = ?, decided_seq = ? \
                 WHERE id = ?",
            ))
            .bind(i64::from(decision.layer.get()))
            .bind(enum_str(status))
            .bind(custody)
            .bind(target.seq)
            .bind(decision.conversation.to_string())
            .execute(&mut *tx)
            .await?;
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: "ai".into(),
                action: "pipeline.decided".into(),
                subject_type: "message".into(),
                subject_id: decision.message.to_string(),
                details: serde_json::json!({
                    "conversation_id": decision.conversation,
                    "decision_id": stored.id,
                    "layer": decision.layer,
                    "action": decision.action,
                    "reasons": decision.trace.get("reasons"),
                    "reply_message_id": stored.reply_message_id,
                }),
            },
        )
        .await?;
        if decision.follow_up {
            insert_job(
                &mut tx,
                tenant,
                JOB_ENRICH_DECISION,
                decision.message,
                ENRICH_MAX_ATTEMPTS,
                &ts(at),
            )
            .await?;
        }
        tx.commit().await?;
        self.announce(tenant, decision.conversation, None, ChangeKind::Decision);
        Ok((stored, false))
    }

    async fn enrich_decision(
        &self,
        tenant: TenantId,
        message: MessageId,
        enrichment: &DecisionEnrichment,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<(String, String)> = sqlx::query_as(&pg(
            "SELECT id, conversation_id FROM decisions WHERE tenant_id = ? AND message_id = ?",
        ))
        .bind(tenant.to_string())
        .bind(message.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, conversation)) = row else {
            return Ok(false);
        };
        sqlx::query(&pg(
            "UPDATE decisions SET follow_up = ?, draft = COALESCE(draft, ?) WHERE id = ?",
        ))
        .bind(enrichment.follow_up.to_string())
        .bind(enrichment.draft.as_deref())
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        if let Some(translation) = &enrichment.translation {
            sqlx::query(&pg(
                "UPDATE messages SET translation = ? WHERE tenant_id = ? AND id = ?",
            ))
            .bind(translation)
            .bind(tenant.to_string())
            .bind(message.to_string())
            .execute(&mut *tx)
            .await?;
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: "ai".into(),
                action: "pipeline.enriched".into(),
                subject_type: "message".into(),
                subject_id: message.to_string(),
                details: serde_json::json!({
                    "decision_id": id,
                    "translation": enrichment.translation.is_some(),
                }),
            },
        )
        .await?;
        tx.commit().await?;
        self.announce(
            tenant,
            parse_id(&conversation, "conversation")?,
            None,
            ChangeKind::Decision,
        );
        Ok(true)
    }

    async fn decision_for_message(
        &self,
        tenant: TenantId,
        message: MessageId,
    ) -> Result<Option<Decision>, StoreError> {
        sqlx::query_as::<_, DecisionRow>(&pg(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE tenant_id = ? AND message_id = ?"
        )))
        .bind(tenant.to_string())
        .bind(message.to_string())
        .fetch_optional(&self.reader)
        .await?
        .map(Decision::try_from)
        .transpose()
    }

    async fn decisions(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Vec<Decision>, StoreError> {
        sqlx::query_as::<_, DecisionRow>(&pg(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE tenant_id = ? AND conversation_id = ? \
             ORDER BY created_at, id"
        )))
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(Decision::try_from)
        .collect()
    }
}
