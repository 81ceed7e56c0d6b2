//! Tag edits and the resolution figure's rows. PostgreSQL implementation
//! of [`ReportStore`]: the same statements, `RESOLUTION_SQL` included, with
//! the parameters numbered by [`pg`].

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
impl ReportStore for PostgresStore {
    async fn tag_edits(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<TagEdit>, StoreError> {
        let rows: Vec<TagRow> = sqlx::query_as(&pg(
            "SELECT t.conversation_id, t.tag, t.present, t.edited_by, t.edited_at \
             FROM conversation_tags t JOIN conversations c ON c.id = t.conversation_id \
             WHERE t.tenant_id = ? AND c.tenant_id = t.tenant_id AND c.created_at >= ? \
             ORDER BY t.conversation_id, t.tag",
        ))
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
        let rows: Vec<TagRow> = sqlx::query_as(&pg(
            "SELECT conversation_id, tag, present, edited_by, edited_at \
             FROM conversation_tags WHERE tenant_id = ? AND conversation_id = ? ORDER BY tag",
        ))
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
        let exists: Option<(String,)> = sqlx::query_as(&pg(
            "SELECT id FROM conversations WHERE tenant_id = ? AND id = ?",
        ))
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
        sqlx::query(&pg("INSERT INTO conversation_tags \
             (tenant_id, conversation_id, tag, present, edited_by, edited_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (conversation_id, tag) DO UPDATE SET present = excluded.present, \
             edited_by = excluded.edited_by, edited_at = excluded.edited_at"))
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
        let rows: Vec<ResolutionSqlRow> = sqlx::query_as(&pg(RESOLUTION_SQL))
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
