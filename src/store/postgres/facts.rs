//! Conversations' timelines for the dashboard and the reports: every
//! conversation of a period with its messages, its decisions (the route and
//! the few trace fields the figures read) and its status changes from the
//! audit log. Read-only; PostgreSQL implementation behind
//! [`DeskStore::conversation_facts`](crate::store::DeskStore), reading the
//! same fields as SQLite's.
//!
//! Trace fields go through `trace::jsonb`; numbers and booleans are read
//! only when the field has that JSON type, so every read tolerates a field
//! that is missing or shaped differently, since traces of older builds lack
//! some of them.

use std::collections::HashMap;

use sqlx::QueryBuilder;

use super::desk::{push_access, reason_names};
use super::*;
use crate::store::desk::{ConversationFacts, DecisionFact, MessageFact, StatusFact};
use crate::store::users::ShopAccess;

#[derive(sqlx::FromRow)]
struct DecisionRow {
    conversation_id: String,
    message_id: String,
    layer: i64,
    action: String,
    created_at: String,
    draft: Option<String>,
    lang: Option<String>,
    intent: Option<String>,
    reasons: Option<String>,
    answer_kind: Option<String>,
    sentiment: Option<String>,
    anger: Option<i64>,
    repeated: Option<i64>,
    similarity: Option<f64>,
    entities: Option<String>,
}

impl DecisionRow {
    fn fact(self) -> Result<DecisionFact, StoreError> {
        Ok(DecisionFact {
            message_id: Some(parse_id(&self.message_id, "message")?),
            layer: u8::try_from(self.layer).unwrap_or(0),
            action: self.action,
            at: parse_ts(&self.created_at)?,
            reasons: reason_names(self.reasons.as_deref()),
            language: self.lang,
            intent: self.intent,
            answer_kind: self.answer_kind,
            draft: self.draft,
            sentiment: self.sentiment,
            anger: self.anger.and_then(|a| u8::try_from(a).ok()).unwrap_or(0),
            repeated: self.repeated.unwrap_or(0) != 0,
            top_similarity: self.similarity.map(|s| s as f32),
            entities: entity_pairs(self.entities.as_deref()),
        })
    }
}

/// A trace's entities, `[["order_number", "SPE-1"], ...]`, as pairs.
fn entity_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.and_then(|r| serde_json::from_str::<Vec<(String, String)>>(r).ok())
        .unwrap_or_default()
}

pub(super) async fn conversation_facts(
    reader: &PgPool,
    tenant: TenantId,
    access: &ShopAccess,
    since: DateTime<Utc>,
) -> Result<Vec<ConversationFacts>, StoreError> {
    let scope = |query: &mut QueryBuilder<'_, Postgres>| {
        query.push_bind(tenant.to_string());
        query.push(" AND c.created_at >= ").push_bind(ts(since));
        push_access(query, access);
    };
    let mut query = QueryBuilder::new(
        "SELECT c.id, s.shop_key, s.platform, c.status, c.created_at FROM conversations c \
         JOIN shops s ON s.id = c.shop_id WHERE c.tenant_id = ",
    );
    scope(&mut query);
    query.push(" ORDER BY c.created_at");
    let conversations: Vec<(String, String, String, String, String)> =
        query.build_query_as().fetch_all(reader).await?;

    let mut query = QueryBuilder::new(
        "SELECT m.conversation_id, m.id, m.direction, m.author, m.received_at, m.text FROM messages m \
         JOIN conversations c ON c.id = m.conversation_id WHERE c.tenant_id = ",
    );
    scope(&mut query);
    query.push(" ORDER BY m.conversation_id, m.seq");
    let messages: Vec<(String, String, String, String, String, String)> =
        query.build_query_as().fetch_all(reader).await?;

    let mut query = QueryBuilder::new(
        "SELECT d.conversation_id, d.message_id, d.layer, d.action, d.created_at, d.draft, \
         (d.trace::jsonb ->> 'lang') AS lang, \
         (d.trace::jsonb ->> 'intent') AS intent, \
         (d.trace::jsonb ->> 'reasons') AS reasons, \
         (d.trace::jsonb ->> 'answer_kind') AS answer_kind, \
         (d.trace::jsonb ->> 'sentiment') AS sentiment, \
         CASE WHEN jsonb_typeof(d.trace::jsonb -> 'anger') = 'number' \
              THEN (d.trace::jsonb ->> 'anger')::float8::bigint END AS anger, \
         CASE jsonb_typeof(d.trace::jsonb -> 'repeated') \
              WHEN 'boolean' THEN (d.trace::jsonb ->> 'repeated')::boolean::int::bigint \
              WHEN 'number' THEN ((d.trace::jsonb ->> 'repeated')::float8 <> 0)::int::bigint \
         END AS repeated, \
         CASE WHEN jsonb_typeof(d.trace::jsonb -> 'sources' -> 0 -> 'similarity') = 'number' \
              THEN (d.trace::jsonb -> 'sources' -> 0 ->> 'similarity')::float8 END AS similarity, \
         (d.trace::jsonb ->> 'entities') AS entities \
         FROM decisions d JOIN conversations c ON c.id = d.conversation_id WHERE c.tenant_id = ",
    );
    scope(&mut query);
    query.push(" ORDER BY d.conversation_id, d.created_at");
    let decisions: Vec<DecisionRow> = query.build_query_as().fetch_all(reader).await?;

    let mut query = QueryBuilder::new(
        "SELECT a.subject_id, a.at, (a.details::jsonb ->> 'status') FROM audit_log a \
         JOIN conversations c ON c.id = a.subject_id \
         WHERE a.action = 'conversation.status' AND a.tenant_id = c.tenant_id \
         AND c.tenant_id = ",
    );
    scope(&mut query);
    query.push(" ORDER BY a.seq");
    let statuses: Vec<(String, String, Option<String>)> =
        query.build_query_as().fetch_all(reader).await?;

    let mut by_id: HashMap<String, ConversationFacts> = HashMap::new();
    let mut order = Vec::with_capacity(conversations.len());
    for (id, shop, platform, status, created_at) in conversations {
        let facts = ConversationFacts {
            id: parse_id(&id, "conversation")?,
            shop: ShopKey::parse(&shop).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            platform: platform
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("bad platform {platform:?}")))?,
            resolved: status == "resolved",
            created_at: parse_ts(&created_at)?,
            language: None,
            intent: None,
            messages: Vec::new(),
            decisions: Vec::new(),
            status_changes: Vec::new(),
        };
        order.push(id.clone());
        by_id.insert(id, facts);
    }
    for (conversation, id, direction, author, at, text) in messages {
        if let Some(facts) = by_id.get_mut(&conversation) {
            facts.messages.push(MessageFact {
                id: parse_id(&id, "message")?,
                direction: parse_enum(&direction, "direction")?,
                author: parse_enum(&author, "author")?,
                at: parse_ts(&at)?,
                text,
            });
        }
    }
    for row in decisions {
        if let Some(facts) = by_id.get_mut(&row.conversation_id) {
            let decision = row.fact()?;
            if facts.language.is_none() {
                facts.language.clone_from(&decision.language);
            }
            if facts.intent.is_none() {
                facts.intent.clone_from(&decision.intent);
            }
            facts.decisions.push(decision);
        }
    }
    for (conversation, at, status) in statuses {
        if let (Some(facts), Some(status)) = (by_id.get_mut(&conversation), status) {
            facts.status_changes.push(StatusFact {
                at: parse_ts(&at)?,
                status,
            });
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_read_as_pairs_and_anything_else_as_none() {
        assert_eq!(
            entity_pairs(Some(r#"[["order_number","SPE-1"],["sku","PWR-10K"]]"#)),
            vec![
                ("order_number".to_owned(), "SPE-1".to_owned()),
                ("sku".to_owned(), "PWR-10K".to_owned())
            ]
        );
        assert!(entity_pairs(Some(r#"{"x":1}"#)).is_empty());
        assert!(entity_pairs(None).is_empty());
    }
}
