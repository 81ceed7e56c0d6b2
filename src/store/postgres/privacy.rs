//! Buyer erasure and retention. PostgreSQL implementation of [`PrivacyStore`].
//!
//! Rows go children first (decisions, jobs, messages, conversations, then
//! orders and the buyer), all in one write transaction; the audit log is
//! only appended to.

use sha2::{Digest, Sha256};

use super::*;

/// Conversations being deleted, by a condition on `conversations`.
struct Doomed<'a> {
    /// A condition on the conversations table, with `?` for `binds`.
    condition: &'a str,
    binds: Vec<String>,
}

impl Doomed<'_> {
    fn subquery(&self) -> String {
        format!("SELECT id FROM conversations WHERE {}", self.condition)
    }

    /// Runs `DELETE FROM table WHERE column IN (the conversations)`.
    async fn delete(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        table: &str,
        column: &str,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM {table} WHERE {column} IN ({})",
            self.subquery()
        );
        let sql = pg(&sql);
        let mut query = sqlx::query(&sql);
        for bind in &self.binds {
            query = query.bind(bind);
        }
        Ok(query.execute(&mut **tx).await?.rows_affected())
    }

    /// Deletes the conversations and everything that hangs off them.
    async fn delete_all(
        &self,
        tx: &mut Transaction<'static, Postgres>,
    ) -> Result<(u64, u64, u64, u64), StoreError> {
        let decisions = self.delete(tx, "decisions", "conversation_id").await?;
        // Jobs name their message in the payload. json_extract is SQLite's;
        // PostgreSQL spells it payload->>'message_id'.
        let jobs_sql = format!(
            "DELETE FROM jobs WHERE (payload::jsonb ->> 'message_id') IN \
             (SELECT id FROM messages WHERE conversation_id IN ({}))",
            self.subquery()
        );
        let jobs_sql = pg(&jobs_sql);
        let mut jobs = sqlx::query(&jobs_sql);
        for bind in &self.binds {
            jobs = jobs.bind(bind);
        }
        let jobs = jobs.execute(&mut **tx).await?.rows_affected();
        // What the channels and the workbench keep about these
        // conversations: deadlines, approvals, and deliveries with the
        // parts that were sent.
        self.delete(tx, "response_deadlines", "conversation_id")
            .await?;
        self.delete(tx, "approvals", "conversation_id").await?;
        self.delete(tx, "conversation_tags", "conversation_id")
            .await?;
        // What was learned from these buyers' words: their corrected
        // messages as exemplars (a tenant's heads fitted again later leave
        // them out), and suggested FAQ entries quoting them: pending and
        // dismissed ones go (they are suggested again from what remains),
        // accepted ones keep only the entry a person made of them.
        let learned_sql = format!(
            "DELETE FROM learned_exemplars WHERE message_id IN \
             (SELECT id FROM messages WHERE conversation_id IN ({}))",
            self.subquery()
        );
        let suggestions = "EXISTS (SELECT 1::BIGINT FROM jsonb_array_elements_text(faq_suggestions.conversations::jsonb) c WHERE c IN ({sub}))";
        let dropped_sql = format!(
            "DELETE FROM faq_suggestions WHERE status != 'accepted' AND {}",
            suggestions.replace("{sub}", &self.subquery())
        );
        let scrubbed_sql = format!(
            "UPDATE faq_suggestions SET questions = '[]', conversations = '[]' \
             WHERE status = 'accepted' AND {}",
            suggestions.replace("{sub}", &self.subquery())
        );
        for sql in [learned_sql, dropped_sql, scrubbed_sql] {
            let sql = pg(&sql);
            let mut query = sqlx::query(&sql);
            for bind in &self.binds {
                query = query.bind(bind);
            }
            query.execute(&mut **tx).await?;
        }
        let sent_sql = format!(
            "DELETE FROM channel_sent WHERE outbox_id IN \
             (SELECT id FROM outbox WHERE conversation_id IN ({}))",
            self.subquery()
        );
        let sent_sql = pg(&sent_sql);
        let mut sent = sqlx::query(&sent_sql);
        for bind in &self.binds {
            sent = sent.bind(bind);
        }
        sent.execute(&mut **tx).await?;
        self.delete(tx, "outbox", "conversation_id").await?;
        let messages = self.delete(tx, "messages", "conversation_id").await?;
        let sql = format!("DELETE FROM conversations WHERE {}", self.condition);
        let sql = pg(&sql);
        let mut query = sqlx::query(&sql);
        for bind in &self.binds {
            query = query.bind(bind);
        }
        let conversations = query.execute(&mut **tx).await?.rows_affected();
        Ok((conversations, messages, decisions, jobs))
    }
}

#[async_trait]
impl PrivacyStore for PostgresStore {
    async fn erase_buyer(
        &self,
        tenant: TenantId,
        shop: &ShopKey,
        platform_buyer_id: &str,
        actor: &str,
    ) -> Result<Option<BuyerErasure>, StoreError> {
        let mut tx = self.begin_write().await?;
        let buyer: Option<String> = sqlx::query_scalar(&pg(
            "SELECT b.id FROM buyers b JOIN shops s ON s.id = b.shop_id \
             WHERE b.tenant_id = ? AND s.tenant_id = ? AND s.shop_key = ? \
             AND b.platform_buyer_id = ?",
        ))
        .bind(tenant.to_string())
        .bind(tenant.to_string())
        .bind(shop.as_str())
        .bind(platform_buyer_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(buyer) = buyer else {
            return Ok(None);
        };
        let doomed = Doomed {
            condition: "tenant_id = ? AND buyer_id = ?",
            binds: vec![tenant.to_string(), buyer.clone()],
        };
        let (conversations, messages, decisions, jobs) = doomed.delete_all(&mut tx).await?;
        // The platform's threads with this buyer name them too.
        sqlx::query(&pg(
            "DELETE FROM channel_threads WHERE platform_buyer_id = ? AND shop_id = \
             (SELECT shop_id FROM buyers WHERE tenant_id = ? AND id = ?)",
        ))
        .bind(platform_buyer_id)
        .bind(tenant.to_string())
        .bind(&buyer)
        .execute(&mut *tx)
        .await?;
        let orders = sqlx::query(&pg(
            "DELETE FROM orders WHERE tenant_id = ? AND buyer_id = ?",
        ))
        .bind(tenant.to_string())
        .bind(&buyer)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(&pg("DELETE FROM buyers WHERE tenant_id = ? AND id = ?"))
            .bind(tenant.to_string())
            .bind(&buyer)
            .execute(&mut *tx)
            .await?;
        let erased = BuyerErasure {
            conversations,
            messages,
            decisions,
            orders,
            jobs,
        };
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.to_owned(),
                action: "buyer.erased".into(),
                subject_type: "buyer".into(),
                subject_id: buyer,
                // The tombstone proves the erasure without keeping what was
                // erased: a hash lets the seller answer "was X erased?".
                details: serde_json::json!({
                    "shop": shop,
                    "platform_buyer_id_sha256": hex::encode(Sha256::digest(
                        format!("{}\u{1f}{platform_buyer_id}", shop.as_str()).as_bytes()
                    )),
                    "removed": erased,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Some(erased))
    }

    async fn apply_retention(&self, before: DateTime<Utc>) -> Result<RetentionOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let tenants: Vec<String> = sqlx::query_scalar(&pg(
            "SELECT DISTINCT tenant_id FROM conversations WHERE last_message_at < ?",
        ))
        .bind(ts(before))
        .fetch_all(&mut *tx)
        .await?;
        let mut outcome = RetentionOutcome::default();
        for tenant in tenants {
            let doomed = Doomed {
                condition: "tenant_id = ? AND last_message_at < ?",
                binds: vec![tenant.clone(), ts(before)],
            };
            let (conversations, messages, decisions, _jobs) = doomed.delete_all(&mut tx).await?;
            outcome.conversations += conversations;
            outcome.messages += messages;
            outcome.decisions += decisions;
            insert_audit(
                &mut tx,
                Some(parse_id(&tenant, "tenant")?),
                &AuditEvent {
                    actor: "system".into(),
                    action: "retention.applied".into(),
                    subject_type: "tenant".into(),
                    subject_id: tenant,
                    details: serde_json::json!({
                        "before": ts(before),
                        "conversations": conversations,
                        "messages": messages,
                        "decisions": decisions,
                    }),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }
}
