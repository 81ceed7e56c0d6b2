//! The reply pipeline's decisions: each one stored with everything it changes, and the follow-ups that enrich it. SQLite implementation of [`DecisionStore`].

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
    pub(super) created_at: String,
}

/// Attempts for a decision's follow-up: it only adds a translation and a
/// summary, so a model that keeps failing is not worth more.
pub(super) const ENRICH_MAX_ATTEMPTS: u32 = 3;

pub(super) const DECISION_COLUMNS: &str = "id, conversation_id, message_id, layer, action, draft, \
     reply_message_id, trace, created_at";

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
            action: row.action,
            draft: row.draft,
            reply_message_id: row
                .reply_message_id
                .as_deref()
                .map(|id| parse_id(id, "message"))
                .transpose()?,
            trace: serde_json::from_str(&row.trace)
                .map_err(|e| StoreError::Corrupt(format!("decision trace: {e}")))?,
            created_at: parse_ts(&row.created_at)?,
        })
    }
}

#[async_trait]
impl DecisionStore for SqliteStore {
    async fn record_decision(
        &self,
        tenant: TenantId,
        decision: &NewDecision,
    ) -> Result<(Decision, bool), StoreError> {
        let mut tx = self.begin_write().await?;
        let existing: Option<DecisionRow> = sqlx::query_as(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE tenant_id = ? AND message_id = ?"
        ))
        .bind(tenant.to_string())
        .bind(decision.message.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = existing {
            return Ok((Decision::try_from(existing)?, true));
        }
        let shop_id: Option<String> = sqlx::query_scalar(
            "SELECT c.shop_id FROM conversations c JOIN messages m ON m.conversation_id = c.id \
             WHERE c.tenant_id = ? AND c.id = ? AND m.id = ? AND m.direction = 'inbound'",
        )
        .bind(tenant.to_string())
        .bind(decision.conversation.to_string())
        .bind(decision.message.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(shop_id) = shop_id else {
            return Err(StoreError::NotFound {
                what: format!(
                    "inbound message {} in conversation {}",
                    decision.message, decision.conversation
                ),
            });
        };
        let at = now();
        let reply = match &decision.reply {
            Some(reply) => Some(
                insert_message(&mut tx, tenant, decision.conversation, &shop_id, reply, at).await?,
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
            action: decision.action.clone(),
            draft: decision.draft.clone(),
            reply_message_id: reply.as_ref().map(|m| m.id),
            trace: decision.trace.clone(),
            created_at: at,
        };
        sqlx::query(&format!(
            "INSERT INTO decisions ({DECISION_COLUMNS}, tenant_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(stored.id.to_string())
        .bind(stored.conversation_id.to_string())
        .bind(stored.message_id.to_string())
        .bind(i64::from(stored.layer.get()))
        .bind(&stored.action)
        .bind(stored.draft.as_deref())
        .bind(stored.reply_message_id.map(|id| id.to_string()))
        .bind(trace)
        .bind(ts(at))
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE messages SET processed_at = COALESCE(processed_at, ?), \
             language = COALESCE(?, language), translation = COALESCE(?, translation) WHERE id = ?",
        )
        .bind(ts(at))
        .bind(decision.language.as_deref())
        .bind(decision.translation.as_deref())
        .bind(decision.message.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE conversations SET layer = ?, status = ? WHERE id = ?")
            .bind(i64::from(decision.layer.get()))
            .bind(enum_str(decision.status))
            .bind(decision.conversation.to_string())
            .execute(&mut *tx)
            .await?;
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
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT id, trace, conversation_id FROM decisions WHERE tenant_id = ? AND message_id = ?",
        )
        .bind(tenant.to_string())
        .bind(message.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, trace, conversation)) = row else {
            return Ok(false);
        };
        let mut trace: serde_json::Value = serde_json::from_str(&trace)
            .map_err(|e| StoreError::Corrupt(format!("decision {id} trace: {e}")))?;
        let Some(fields) = trace.as_object_mut() else {
            return Err(StoreError::Corrupt(format!(
                "decision {id} trace is not an object"
            )));
        };
        for (key, value) in &enrichment.trace {
            fields.insert(key.clone(), value.clone());
        }
        sqlx::query("UPDATE decisions SET trace = ? WHERE id = ?")
            .bind(trace.to_string())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        if let Some(translation) = &enrichment.translation {
            sqlx::query("UPDATE messages SET translation = ? WHERE tenant_id = ? AND id = ?")
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
                    "added": enrichment.trace.keys().collect::<Vec<_>>(),
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

    async fn decisions(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Vec<Decision>, StoreError> {
        sqlx::query_as::<_, DecisionRow>(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE tenant_id = ? AND conversation_id = ? \
             ORDER BY created_at, id"
        ))
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(Decision::try_from)
        .collect()
    }
}
