//! Tag edits and the resolution figure's rows. SQLite implementation of
//! [`ReportStore`].

use super::*;
use crate::store::reports::{ReportStore, ResolutionRow, Tag, TagEdit, RESOLUTION_SQL};

#[derive(sqlx::FromRow)]
struct TagRow {
    conversation_id: String,
    tag: String,
    present: i64,
    edited_by: String,
    edited_at: String,
}

impl TagRow {
    fn edit(self) -> Result<TagEdit, StoreError> {
        Ok(TagEdit {
            conversation_id: parse_id(&self.conversation_id, "conversation")?,
            tag: Tag::parse(&self.tag).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            present: self.present != 0,
            edited_by: self.edited_by,
            edited_at: parse_ts(&self.edited_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ResolutionSqlRow {
    id: String,
    shop_key: String,
    platform: String,
    status: String,
    created_at: String,
    buyer_messages: i64,
    ai_replies: i64,
    human_replies: i64,
}

#[async_trait]
impl ReportStore for SqliteStore {
    async fn tag_edits(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<TagEdit>, StoreError> {
        let rows: Vec<TagRow> = sqlx::query_as(
            "SELECT t.conversation_id, t.tag, t.present, t.edited_by, t.edited_at \
             FROM conversation_tags t JOIN conversations c ON c.id = t.conversation_id \
             WHERE t.tenant_id = ? AND c.tenant_id = t.tenant_id AND c.created_at >= ? \
             ORDER BY t.conversation_id, t.tag",
        )
        .bind(tenant.to_string())
        .bind(ts(since))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(TagRow::edit).collect()
    }

    async fn conversation_tag_edits(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Vec<TagEdit>, StoreError> {
        let rows: Vec<TagRow> = sqlx::query_as(
            "SELECT conversation_id, tag, present, edited_by, edited_at \
             FROM conversation_tags WHERE tenant_id = ? AND conversation_id = ? ORDER BY tag",
        )
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(TagRow::edit).collect()
    }

    async fn edit_tag(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        tag: &Tag,
        present: bool,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT id FROM conversations WHERE tenant_id = ? AND id = ?")
                .bind(tenant.to_string())
                .bind(conversation.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound {
                what: format!("conversation {conversation}"),
            });
        }
        // Portable upsert: SQLite 3.24+ and PostgreSQL both spell it so.
        sqlx::query(
            "INSERT INTO conversation_tags \
             (tenant_id, conversation_id, tag, present, edited_by, edited_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (conversation_id, tag) DO UPDATE SET present = excluded.present, \
             edited_by = excluded.edited_by, edited_at = excluded.edited_at",
        )
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .bind(tag.as_str())
        .bind(i64::from(present))
        .bind(actor)
        .bind(ts(now()))
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.into(),
                action: if present {
                    "conversation.tag_added"
                } else {
                    "conversation.tag_removed"
                }
                .into(),
                subject_type: "conversation".into(),
                subject_id: conversation.to_string(),
                details: serde_json::json!({ "tag": tag }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn resolution_rows(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ResolutionRow>, StoreError> {
        let rows: Vec<ResolutionSqlRow> = sqlx::query_as(RESOLUTION_SQL)
            .bind(tenant.to_string())
            .bind(ts(since))
            .bind(ts(until))
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ResolutionRow {
                    conversation_id: parse_id(&r.id, "conversation")?,
                    shop: r.shop_key,
                    platform: r.platform,
                    status: r.status,
                    created_at: parse_ts(&r.created_at)?,
                    buyer_messages: r.buyer_messages,
                    ai_replies: r.ai_replies,
                    human_replies: r.human_replies,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testkit::{inbound, open, tenant_with_shop};
    use super::*;
    use crate::domain::{Action, Author, ConversationStatus, Direction, Layer, NewReply};
    use crate::store::users::ShopAccess;
    use crate::store::NewDecision;

    async fn ask(
        store: &SqliteStore,
        shop: &Shop,
        buyer: &str,
        text: &str,
        trace: serde_json::Value,
        reply: Option<&str>,
    ) -> IngestOutcome {
        let mut message = inbound(&format!("m-{buyer}"), buyer);
        message.text = MessageText::from_stored(text.into());
        let ack = store.ingest(shop, &message, 1).await.unwrap();
        let layer = trace["layer"].as_u64().unwrap_or(2) as u8;
        store
            .record_decision(
                shop.tenant_id,
                &NewDecision {
                    conversation: ack.conversation_id,
                    message: ack.message_id,
                    layer: Layer::try_from(layer).unwrap(),
                    action: if reply.is_some() {
                        Action::Send
                    } else {
                        Action::Draft
                    },
                    language: Some("en".into()),
                    translation: None,
                    reply: reply.map(|text| NewReply {
                        text: MessageText::from_stored(text.into()),
                        direction: Direction::Outbound,
                        author: Author::Ai,
                        author_name: None,
                        external_id: None,
                    }),
                    draft: None,
                    status: ConversationStatus::Open,
                    trace,
                    follow_up: false,
                },
            )
            .await
            .unwrap();
        ack
    }

    fn unanswerable() -> serde_json::Value {
        serde_json::json!({"lang": "en", "intent": "product_specs", "layer": 2,
            "reasons": [{"reason": "no_grounded_answer"}], "answer_kind": "none",
            "sources": [], "sentiment": "neutral", "anger": 0, "repeated": false,
            "entities": [["sku", "PWR-10K"]]})
    }

    /// The whole read path on SQLite: trace fields through `json_extract`,
    /// status changes from the audit log, tag edits, the published
    /// resolution SQL, and the gaps grouped with a (hashing) embedder.
    #[tokio::test]
    async fn reports_read_the_stored_records_and_stay_within_their_tenant() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "acme").await;
        let tenant = shop.tenant_id;
        let one = ask(
            &store,
            &shop,
            "b1",
            "can the power bank go in hand luggage?",
            unanswerable(),
            None,
        )
        .await;
        store
            .add_reply(
                tenant,
                one.conversation_id,
                &NewReply {
                    text: MessageText::from_stored("Yes, under 100 Wh.".into()),
                    direction: Direction::Outbound,
                    author: Author::Agent,
                    author_name: None,
                    external_id: None,
                },
                "agent",
            )
            .await
            .unwrap();
        let two = ask(
            &store,
            &shop,
            "b2",
            "do you ship to Brunei?",
            unanswerable(),
            None,
        )
        .await;
        let status = serde_json::json!({"lang": "en", "intent": "order_status", "layer": 1,
            "reasons": [], "answer_kind": "order_status", "sources": [],
            "sentiment": "positive", "anger": 0, "repeated": true,
            "entities": [["order_number", "SPE-1"]]});
        let three = ask(
            &store,
            &shop,
            "b3",
            "where is SPE-1?",
            status,
            Some("On its way."),
        )
        .await;
        for status in [
            ConversationStatus::Resolved,
            ConversationStatus::Open,
            ConversationStatus::Resolved,
        ] {
            store
                .set_conversation_status(tenant, three.conversation_id, status, "agent")
                .await
                .unwrap();
        }
        let vip = Tag::parse("vip").unwrap();
        store
            .edit_tag(tenant, two.conversation_id, &vip, true, "agent")
            .await
            .unwrap();

        let since = Utc::now() - chrono::Duration::hours(1);
        let facts = store
            .conversation_facts(tenant, &ShopAccess::All, since)
            .await
            .unwrap();
        assert_eq!(facts.len(), 3);
        let d = &facts[0].decisions[0];
        assert_eq!(d.reasons, vec!["no_grounded_answer"]);
        assert_eq!(d.entities, vec![("sku".to_owned(), "PWR-10K".to_owned())]);
        assert_eq!(
            (d.answer_kind.as_deref(), d.top_similarity),
            (Some("none"), None)
        );
        let d = &facts[2].decisions[0];
        assert!(d.repeated);
        assert_eq!(d.sentiment.as_deref(), Some("positive"));
        let statuses: Vec<_> = facts[2]
            .status_changes
            .iter()
            .map(|s| s.status.as_str())
            .collect();
        assert_eq!(statuses, vec!["resolved", "open", "resolved"]);

        let now = Utc::now() + chrono::Duration::seconds(1);
        let rows = store.resolution_rows(tenant, since, now).await.unwrap();
        let resolved: Vec<_> = rows
            .iter()
            .map(|r| (r.status.as_str(), r.ai_replies, r.human_replies))
            .collect();
        assert_eq!(
            resolved,
            vec![("open", 0, 1), ("open", 0, 0), ("resolved", 1, 0)]
        );

        let filter = crate::figures::Filter {
            since,
            until: now,
            shop: None,
            platform: None,
            language: None,
            intent: None,
            tag: None,
        };
        let report = crate::reports::build(&store, tenant, &ShopAccess::All, &filter, now)
            .await
            .unwrap();
        let tags = &report.conversations[2].tags;
        assert!(
            tags.contains(&Tag::parse("outcome:reopened").unwrap()),
            "{tags:?}"
        );
        assert!(
            tags.contains(&Tag::parse("order:spe-1").unwrap()),
            "{tags:?}"
        );
        assert!(report.conversations[1].tags.contains(&vip));
        let resolution = crate::reports::resolution(&store, tenant, &report)
            .await
            .unwrap();
        assert_eq!(
            (resolution.counted, resolution.resolved_by_ai_alone),
            (3, 1)
        );

        let embedder = Arc::new(crate::kb::embed::HashingEmbedder::new(256));
        let gaps = crate::reports::gaps(&store, tenant, &report, embedder)
            .await
            .unwrap();
        let asked: usize = gaps.iter().map(|g| g.count).sum();
        assert_eq!(asked, 2, "{gaps:?}");
        let luggage = gaps
            .iter()
            .find(|g| g.question.contains("luggage"))
            .unwrap();
        assert_eq!(luggage.resolved_by, vec!["Yes, under 100 Wh."]);

        // Another tenant reads none of it.
        let other = tenant_with_shop(&store, "other").await.tenant_id;
        assert!(store.tag_edits(other, since).await.unwrap().is_empty());
        assert!(store
            .resolution_rows(other, since, now)
            .await
            .unwrap()
            .is_empty());
        assert!(matches!(
            store
                .edit_tag(other, two.conversation_id, &vip, false, "x")
                .await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(
            store
                .conversation_tag_edits(tenant, two.conversation_id)
                .await
                .unwrap()[0]
                .present
        );
    }
}
