//! Buyer erasure and retention. SQLite implementation of [`PrivacyStore`].
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
        tx: &mut Transaction<'static, Sqlite>,
        table: &str,
        column: &str,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM {table} WHERE {column} IN ({})",
            self.subquery()
        );
        let mut query = sqlx::query(&sql);
        for bind in &self.binds {
            query = query.bind(bind);
        }
        Ok(query.execute(&mut **tx).await?.rows_affected())
    }

    /// Deletes the conversations and everything that hangs off them.
    async fn delete_all(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
    ) -> Result<(u64, u64, u64, u64), StoreError> {
        let decisions = self.delete(tx, "decisions", "conversation_id").await?;
        // Jobs name their message in the payload. json_extract is SQLite's;
        // PostgreSQL spells it payload->>'message_id'.
        let jobs_sql = format!(
            "DELETE FROM jobs WHERE json_extract(payload, '$.message_id') IN \
             (SELECT id FROM messages WHERE conversation_id IN ({}))",
            self.subquery()
        );
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
        let suggestions = "EXISTS (SELECT 1 FROM json_each(faq_suggestions.conversations) c WHERE c.value IN ({sub}))";
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
        let mut sent = sqlx::query(&sent_sql);
        for bind in &self.binds {
            sent = sent.bind(bind);
        }
        sent.execute(&mut **tx).await?;
        self.delete(tx, "outbox", "conversation_id").await?;
        let messages = self.delete(tx, "messages", "conversation_id").await?;
        let sql = format!("DELETE FROM conversations WHERE {}", self.condition);
        let mut query = sqlx::query(&sql);
        for bind in &self.binds {
            query = query.bind(bind);
        }
        let conversations = query.execute(&mut **tx).await?.rows_affected();
        Ok((conversations, messages, decisions, jobs))
    }
}

#[async_trait]
impl PrivacyStore for SqliteStore {
    async fn erase_buyer(
        &self,
        tenant: TenantId,
        shop: &ShopKey,
        platform_buyer_id: &str,
        actor: &str,
    ) -> Result<Option<BuyerErasure>, StoreError> {
        let mut tx = self.begin_write().await?;
        let buyer: Option<String> = sqlx::query_scalar(
            "SELECT b.id FROM buyers b JOIN shops s ON s.id = b.shop_id \
             WHERE b.tenant_id = ? AND s.tenant_id = ? AND s.shop_key = ? \
             AND b.platform_buyer_id = ?",
        )
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
        sqlx::query(
            "DELETE FROM channel_threads WHERE platform_buyer_id = ? AND shop_id = \
             (SELECT shop_id FROM buyers WHERE tenant_id = ? AND id = ?)",
        )
        .bind(platform_buyer_id)
        .bind(tenant.to_string())
        .bind(&buyer)
        .execute(&mut *tx)
        .await?;
        let orders = sqlx::query("DELETE FROM orders WHERE tenant_id = ? AND buyer_id = ?")
            .bind(tenant.to_string())
            .bind(&buyer)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM buyers WHERE tenant_id = ? AND id = ?")
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
        let tenants: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT tenant_id FROM conversations WHERE last_message_at < ?",
        )
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

#[cfg(test)]
mod tests {
    use super::super::testkit::{inbound, open, tenant_with_shop};
    use super::*;

    /// A conversation with everything the channels keep about it: a
    /// response deadline, a reply delivery and the part it sent, and the
    /// platform's thread with the buyer.
    async fn with_channel_rows(store: &SqliteStore, shop: &Shop) -> IngestOutcome {
        let stored = store
            .ingest(shop, &inbound("m-1", "buyer-1"), 5)
            .await
            .unwrap();
        let at = "2026-12-01T10:00:00.000000Z";
        for sql in [
            "INSERT INTO response_deadlines (message_id, tenant_id, conversation_id, due_at) \
             VALUES (?1, ?2, ?3, ?4)",
            "INSERT INTO outbox (id, tenant_id, kind, idempotency_key, shop_id, conversation_id, \
             message_id, payload, state, next_attempt_at, created_at, updated_at) \
             VALUES ('o-1', ?2, 'reply', 'k-1', ?5, ?3, ?1, '{}', 'sent', ?4, ?4, ?4)",
            "INSERT INTO channel_sent (shop_id, platform_message_id, outbox_id) \
             VALUES (?5, 'p-1', 'o-1')",
            "INSERT INTO channel_threads (shop_id, thread_id, platform_buyer_id, updated_at) \
             VALUES (?5, 't-1', 'buyer-1', ?4)",
        ] {
            sqlx::query(sql)
                .bind(stored.message_id.to_string())
                .bind(shop.tenant_id.to_string())
                .bind(stored.conversation_id.to_string())
                .bind(at)
                .bind(shop.id.to_string())
                .execute(&store.writer)
                .await
                .unwrap();
        }
        stored
    }

    async fn count(store: &SqliteStore, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&store.reader)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn l10_retention_takes_the_channels_rows_of_a_conversation_with_it() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "acme").await;
        with_channel_rows(&store, &shop).await;
        let removed = store
            .apply_retention(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!((removed.conversations, removed.messages), (1, 1));
        for table in ["response_deadlines", "outbox", "channel_sent", "messages"] {
            assert_eq!(count(&store, table).await, 0, "{table}");
        }
    }

    #[tokio::test]
    async fn l10_erasing_a_buyer_takes_their_channel_threads_and_deliveries() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "acme").await;
        with_channel_rows(&store, &shop).await;
        let erased = store
            .erase_buyer(shop.tenant_id, &shop.key, "buyer-1", "test")
            .await
            .unwrap()
            .expect("the buyer exists");
        assert_eq!(erased.conversations, 1);
        for table in [
            "response_deadlines",
            "outbox",
            "channel_sent",
            "channel_threads",
        ] {
            assert_eq!(count(&store, table).await, 0, "{table}");
        }
    }
}
