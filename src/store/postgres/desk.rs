//! The workbench's own records and reads: holders, approvals and their
//! limits, inbox rows and counts, dashboard facts, the filtered audit log.
//! PostgreSQL implementation of [`DeskStore`].
//!
//! Decision traces are JSON text; the few fields read here go through
//! `json_extract` (PostgreSQL: `trace::jsonb ->> 'field'`), and every read
//! tolerates a field that is missing or shaped differently.

use sqlx::QueryBuilder;

use super::conversations::{SummaryRow, SUMMARY_COLUMNS, SUMMARY_FROM};
use super::*;
use crate::domain::ApprovalId;
use crate::store::desk::{
    Approval, ApprovalLimit, AuditFilter, BindingKind, ConversationFacts, Holder, InboxCounts,
    InboxFilter, InboxRow, InboxTab, NewApproval, OpenRequest,
};
use crate::store::users::ShopAccess;

/// Characters of the last message shown in an inbox row.
const PREVIEW_CHARS: usize = 140;

/// Intents whose requests only a human may grant (see
/// [`BindingKind::from_trace`]).
const BINDING_INTENTS: &str =
    "('refund_request','return_request','damaged_item','wrong_item','not_received','cancel_order')";

/// Restricts `c.shop_id` to the viewer's shops.
pub(super) fn push_access(query: &mut QueryBuilder<'_, Postgres>, access: &ShopAccess) {
    match access {
        ShopAccess::All => {}
        ShopAccess::Only(shops) if shops.is_empty() => {
            query.push(" AND 1 = 0");
        }
        ShopAccess::Only(shops) => {
            query.push(" AND c.shop_id IN (");
            let mut list = query.separated(", ");
            for shop in shops {
                list.push_bind(shop.to_string());
            }
            query.push(")");
        }
    }
}

/// The inbox's rows before the tab and the per-decision filters: one row
/// per conversation with its latest decision's language and intent, its
/// holder, and how long the buyer has waited.
fn push_inbox_cte(
    query: &mut QueryBuilder<'_, Postgres>,
    tenant: TenantId,
    access: &ShopAccess,
    filter: &InboxFilter,
) {
    query.push(format!(
        "WITH inbox AS (SELECT {SUMMARY_COLUMNS}, \
         (d.trace::jsonb ->> 'lang') AS lang, \
         (d.trace::jsonb ->> 'intent') AS intent, \
         u.display_name AS agent_name, \
         (SELECT MIN(m.received_at) FROM messages m WHERE m.conversation_id = c.id \
            AND m.direction = 'inbound' AND m.seq > COALESCE((SELECT MAX(o.seq) FROM messages o \
            WHERE o.conversation_id = c.id AND o.direction = 'outbound'), 0)) AS awaiting_since, \
         (SELECT p.text FROM messages p WHERE p.conversation_id = c.id AND p.direction != 'note' \
            ORDER BY p.seq DESC LIMIT 1) AS preview \
         {SUMMARY_FROM} \
         LEFT JOIN decisions d ON d.id = (SELECT d2.id FROM decisions d2 \
            WHERE d2.conversation_id = c.id ORDER BY d2.created_at DESC LIMIT 1) \
         LEFT JOIN users u ON u.id = c.assignee AND u.tenant_id = c.tenant_id \
         WHERE c.tenant_id = "
    ));
    query.push_bind(tenant.to_string());
    query.push(if filter.resolved {
        " AND c.status = 'resolved'"
    } else {
        " AND c.status != 'resolved'"
    });
    push_access(query, access);
    if let Some(shop) = &filter.shop {
        query.push(" AND s.shop_key = ").push_bind(shop.to_string());
    }
    if let Some(platform) = filter.platform {
        query
            .push(" AND s.platform = ")
            .push_bind(platform.to_string());
    }
    query.push(") SELECT * FROM inbox WHERE 1 = 1");
    if let Some(language) = &filter.language {
        query.push(" AND lang = ").push_bind(language.clone());
    }
    if let Some(intent) = &filter.intent {
        query.push(" AND intent = ").push_bind(intent.clone());
    }
    if let Some(agent) = filter.agent {
        query
            .push(" AND custody = 'human' AND assignee = ")
            .push_bind(agent.to_string());
    }
}

fn push_tab(query: &mut QueryBuilder<'_, Postgres>, tab: InboxTab, at_risk_before: &str) {
    match tab {
        InboxTab::Human => query.push(" AND layer = 3"),
        InboxTab::Drafts => query.push(" AND layer = 2"),
        InboxTab::Ai => query.push(" AND layer = 1"),
        InboxTab::AtRisk => query
            .push(" AND awaiting_since IS NOT NULL AND awaiting_since < ")
            .push_bind(at_risk_before.to_owned()),
    };
}

#[derive(sqlx::FromRow)]
struct InboxSqlRow {
    #[sqlx(flatten)]
    summary: SummaryRow,
    lang: Option<String>,
    intent: Option<String>,
    agent_name: Option<String>,
    awaiting_since: Option<String>,
    preview: Option<String>,
}

fn holder_of(custody: Custody, assignee: Option<String>, name: Option<String>) -> Holder {
    match (custody, assignee) {
        (Custody::Ai, _) => Holder::Ai,
        (Custody::Human, None) => Holder::Unassigned,
        (Custody::Human, Some(assignee)) => Holder::Agent {
            id: name.as_ref().and_then(|_| assignee.parse().ok()),
            name: name.unwrap_or(assignee),
        },
    }
}

fn preview(text: Option<String>) -> Option<String> {
    let text = text?;
    if text.chars().count() <= PREVIEW_CHARS {
        return Some(text);
    }
    let mut cut: String = text.chars().take(PREVIEW_CHARS).collect();
    cut.push('…');
    Some(cut)
}

/// A trace's `binding_request`: a plain kind today; an object with a
/// `kind` is read too.
fn binding_name(raw: Option<String>) -> Option<String> {
    let raw = raw?;
    if raw.trim_start().starts_with('{') {
        return serde_json::from_str::<serde_json::Value>(&raw)
            .ok()?
            .get("kind")?
            .as_str()
            .map(str::to_owned);
    }
    Some(raw)
}

/// A trace's reasons as names: `[{"reason": "angry", ...}, "vip"]`.
pub(super) fn reason_names(raw: Option<&str>) -> Vec<String> {
    let Some(Ok(serde_json::Value::Array(items))) = raw.map(serde_json::from_str) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o
                .get("reason")
                .or_else(|| o.get("code"))
                .and_then(|r| r.as_str())
                .map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct ApprovalRow {
    id: String,
    conversation_id: String,
    message_id: Option<String>,
    kind: String,
    outcome: String,
    amount_cents: Option<i64>,
    currency: Option<String>,
    order_number: Option<String>,
    decided_by: String,
    decided_by_name: Option<String>,
    reply_message_id: String,
    created_at: String,
}

impl TryFrom<ApprovalRow> for Approval {
    type Error = StoreError;
    fn try_from(row: ApprovalRow) -> Result<Self, StoreError> {
        Ok(Approval {
            id: parse_id(&row.id, "approval")?,
            conversation_id: parse_id(&row.conversation_id, "conversation")?,
            message_id: row
                .message_id
                .as_deref()
                .map(|m| parse_id(m, "message"))
                .transpose()?,
            kind: parse_enum(&row.kind, "binding kind")?,
            outcome: parse_enum(&row.outcome, "approval outcome")?,
            amount_cents: row.amount_cents,
            currency: row.currency,
            order_number: row.order_number,
            decided_by: parse_id(&row.decided_by, "user")?,
            decided_by_name: row.decided_by_name.unwrap_or_default(),
            reply_message_id: parse_id(&row.reply_message_id, "message")?,
            created_at: parse_ts(&row.created_at)?,
        })
    }
}

const APPROVAL_SELECT: &str = "SELECT a.id, a.conversation_id, a.message_id, a.kind, a.outcome, \
     a.amount_cents, a.currency, a.order_number, a.decided_by, u.display_name AS decided_by_name, \
     a.reply_message_id, a.created_at FROM approvals a LEFT JOIN users u ON u.id = a.decided_by";

#[async_trait]
impl DeskStore for PostgresStore {
    async fn conversation_shop_id(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Option<ShopId>, StoreError> {
        let shop: Option<String> = sqlx::query_scalar(&pg(
            "SELECT shop_id FROM conversations WHERE tenant_id = ? AND id = ?",
        ))
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .fetch_optional(&self.reader)
        .await?;
        shop.map(|s| parse_id(&s, "shop")).transpose()
    }

    async fn holder(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Holder, StoreError> {
        let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(&pg(
            "SELECT c.custody, c.assignee, u.display_name FROM conversations c \
             LEFT JOIN users u ON u.id = c.assignee AND u.tenant_id = c.tenant_id \
             WHERE c.tenant_id = ? AND c.id = ?",
        ))
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .fetch_optional(&self.reader)
        .await?;
        let Some((custody, assignee, name)) = row else {
            return Err(StoreError::NotFound {
                what: format!("conversation {conversation}"),
            });
        };
        Ok(holder_of(parse_enum(&custody, "custody")?, assignee, name))
    }

    async fn inbox(
        &self,
        tenant: TenantId,
        access: &ShopAccess,
        filter: &InboxFilter,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let at_risk_before = ts(filter.at_risk_before);
        let mut query = QueryBuilder::new("");
        push_inbox_cte(&mut query, tenant, access, filter);
        push_tab(&mut query, filter.tab, &at_risk_before);
        query
            .push(" ORDER BY last_message_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows: Vec<InboxSqlRow> = query.build_query_as().fetch_all(&self.reader).await?;
        rows.into_iter()
            .map(|row| {
                let summary = ConversationSummary::try_from(row.summary)?;
                let holder = holder_of(summary.custody, summary.assignee.clone(), row.agent_name);
                Ok(InboxRow {
                    summary,
                    language: row.lang,
                    intent: row.intent,
                    holder,
                    awaiting_since: row.awaiting_since.as_deref().map(parse_ts).transpose()?,
                    preview: preview(row.preview),
                })
            })
            .collect()
    }

    async fn inbox_counts(
        &self,
        tenant: TenantId,
        access: &ShopAccess,
        filter: &InboxFilter,
    ) -> Result<InboxCounts, StoreError> {
        // The inbox's filtered rows, counted per tab.
        let mut sql = QueryBuilder::new(
            "SELECT \
             COALESCE(SUM(CASE WHEN layer = 3 THEN 1 ELSE 0 END), 0) AS human, \
             COALESCE(SUM(CASE WHEN layer = 2 THEN 1 ELSE 0 END), 0) AS drafts, \
             COALESCE(SUM(CASE WHEN layer = 1 THEN 1 ELSE 0 END), 0) AS ai, \
             COALESCE(SUM(CASE WHEN awaiting_since IS NOT NULL AND awaiting_since < ",
        );
        sql.push_bind(ts(filter.at_risk_before));
        sql.push(" THEN 1 ELSE 0 END), 0) AS at_risk FROM (");
        push_inbox_cte(&mut sql, tenant, access, filter);
        sql.push(") counted");
        let (human, drafts, ai, at_risk): (i64, i64, i64, i64) =
            sql.build_query_as().fetch_one(&self.reader).await?;
        Ok(InboxCounts {
            human,
            drafts,
            ai,
            at_risk,
        })
    }

    async fn approval_limits(&self, tenant: TenantId) -> Result<Vec<ApprovalLimit>, StoreError> {
        let rows: Vec<(String, i64, String, String)> = sqlx::query_as(&pg(
            "SELECT kind, max_cents, updated_at, updated_by FROM approval_limits \
             WHERE tenant_id = ? ORDER BY kind",
        ))
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(kind, max_cents, at, by)| {
                Ok(ApprovalLimit {
                    kind: parse_enum(&kind, "binding kind")?,
                    max_cents,
                    updated_at: parse_ts(&at)?,
                    updated_by: by,
                })
            })
            .collect()
    }

    async fn set_approval_limit(
        &self,
        tenant: TenantId,
        kind: BindingKind,
        max_cents: i64,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&pg(
            "INSERT INTO approval_limits (tenant_id, kind, max_cents, updated_at, updated_by) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, kind) DO UPDATE SET \
             max_cents = excluded.max_cents, updated_at = excluded.updated_at, \
             updated_by = excluded.updated_by",
        ))
        .bind(tenant.to_string())
        .bind(kind.as_str())
        .bind(max_cents)
        .bind(ts(now()))
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.to_owned(),
                action: "approval_limit.set".into(),
                subject_type: "approval_limit".into(),
                subject_id: kind.as_str().into(),
                details: serde_json::json!({ "max_cents": max_cents }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_approval(
        &self,
        tenant: TenantId,
        approval: &NewApproval,
        actor: &str,
    ) -> Result<(Approval, Message), StoreError> {
        let mut tx = self.begin_write().await?;
        let shop_id: Option<String> = sqlx::query_scalar(&pg(
            "SELECT shop_id FROM conversations WHERE tenant_id = ? AND id = ?",
        ))
        .bind(tenant.to_string())
        .bind(approval.conversation.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(shop_id) = shop_id else {
            return Err(StoreError::NotFound {
                what: format!("conversation {}", approval.conversation),
            });
        };
        let at = now();
        let message = insert_message(
            &mut tx,
            tenant,
            approval.conversation,
            &shop_id,
            &approval.reply,
            at,
        )
        .await?;
        let id = ApprovalId::new();
        let outcome = enum_str(approval.outcome);
        let inserted = sqlx::query(&pg(
            "INSERT INTO approvals (id, tenant_id, conversation_id, message_id, kind, outcome, \
             amount_cents, currency, order_number, decided_by, reply_message_id, created_at) \
             SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, id, ?, ? FROM users WHERE tenant_id = ? AND id = ?",
        ))
        .bind(id.to_string())
        .bind(tenant.to_string())
        .bind(approval.conversation.to_string())
        .bind(approval.message.map(|m| m.to_string()))
        .bind(approval.kind.as_str())
        .bind(&outcome)
        .bind(approval.amount_cents)
        .bind(approval.currency.as_deref())
        .bind(approval.order_number.as_deref())
        .bind(message.id.to_string())
        .bind(ts(at))
        .bind(tenant.to_string())
        .bind(approval.decided_by.to_string())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(err) if is_unique_violation(&err) => {
                return Err(StoreError::AlreadyExists {
                    what: "an answer to this request".into(),
                })
            }
            Err(err) => return Err(err.into()),
            Ok(done) if done.rows_affected() == 0 => {
                return Err(StoreError::NotFound {
                    what: format!("user {}", approval.decided_by),
                })
            }
            Ok(_) => {}
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.to_owned(),
                action: format!("approval.{outcome}"),
                subject_type: "conversation".into(),
                subject_id: approval.conversation.to_string(),
                details: serde_json::json!({
                    "approval_id": id,
                    "kind": approval.kind,
                    "amount_cents": approval.amount_cents,
                    "currency": approval.currency,
                    "order_number": approval.order_number,
                    "request_message_id": approval.message,
                    "reply_message_id": message.id,
                    "decided_by": approval.decided_by,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        self.announce(
            tenant,
            approval.conversation,
            Some(parse_id(&shop_id, "shop")?),
            ChangeKind::Reply,
        );
        let stored = self
            .approvals(tenant, approval.conversation)
            .await?
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| StoreError::Corrupt(format!("approval {id} vanished")))?;
        Ok((stored, message))
    }

    async fn approvals(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Vec<Approval>, StoreError> {
        let rows: Vec<ApprovalRow> = sqlx::query_as(&pg(&format!(
            "{APPROVAL_SELECT} WHERE a.tenant_id = ? AND a.conversation_id = ? ORDER BY a.created_at"
        )))
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(Approval::try_from).collect()
    }

    async fn open_requests(
        &self,
        tenant: TenantId,
        access: &ShopAccess,
        limit: u32,
    ) -> Result<Vec<OpenRequest>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            conversation_id: String,
            message_id: String,
            shop_key: String,
            display_name: Option<String>,
            binding: Option<String>,
            intent: Option<String>,
            text: String,
            received_at: String,
        }
        let mut query = QueryBuilder::new(format!(
            "SELECT c.id AS conversation_id, d.message_id, s.shop_key, b.display_name, \
             (d.trace::jsonb ->> 'binding_request') AS binding, \
             (d.trace::jsonb ->> 'intent') AS intent, m.text, m.received_at \
             FROM decisions d JOIN conversations c ON c.id = d.conversation_id \
             JOIN shops s ON s.id = c.shop_id JOIN buyers b ON b.id = c.buyer_id \
             JOIN messages m ON m.id = d.message_id \
             WHERE c.status != 'resolved' AND ((d.trace::jsonb ->> 'binding_request') IS NOT NULL \
             OR (d.trace::jsonb ->> 'intent') IN {BINDING_INTENTS}) \
             AND NOT EXISTS (SELECT 1::BIGINT FROM approvals a WHERE a.message_id = d.message_id) \
             AND d.tenant_id = "
        ));
        query.push_bind(tenant.to_string());
        push_access(&mut query, access);
        query
            .push(" ORDER BY d.created_at DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows: Vec<Row> = query.build_query_as().fetch_all(&self.reader).await?;
        let mut requests = Vec::with_capacity(rows.len());
        for row in rows {
            let binding = binding_name(row.binding);
            let Some(kind) = BindingKind::from_trace(binding.as_deref(), row.intent.as_deref())
            else {
                continue;
            };
            requests.push(OpenRequest {
                conversation_id: parse_id(&row.conversation_id, "conversation")?,
                message_id: parse_id(&row.message_id, "message")?,
                shop: ShopKey::parse(&row.shop_key)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                buyer_name: row.display_name,
                kind,
                text: row.text,
                at: parse_ts(&row.received_at)?,
            });
        }
        Ok(requests)
    }

    async fn conversation_facts(
        &self,
        tenant: TenantId,
        access: &ShopAccess,
        since: DateTime<Utc>,
    ) -> Result<Vec<ConversationFacts>, StoreError> {
        super::facts::conversation_facts(&self.reader, tenant, access, since).await
    }

    async fn audit_search(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            seq: i64,
            at: String,
            actor: String,
            action: String,
            subject_type: String,
            subject_id: String,
            details: String,
        }
        let mut query = QueryBuilder::new(
            "SELECT seq, at, actor, action, subject_type, subject_id, details FROM audit_log \
             WHERE tenant_id = ",
        );
        query.push_bind(tenant.to_string());
        if let Some(action) = &filter.action {
            let escaped = action
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            query
                .push(" AND action LIKE ")
                .push_bind(format!("{escaped}%"))
                .push(" ESCAPE '\\'");
        }
        if let Some(actor) = &filter.actor {
            query.push(" AND actor = ").push_bind(actor.clone());
        }
        if let Some(subject) = &filter.subject_id {
            query.push(" AND subject_id = ").push_bind(subject.clone());
        }
        if let Some(before) = filter.before {
            query.push(" AND seq < ").push_bind(before);
        }
        query
            .push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows: Vec<Row> = query.build_query_as().fetch_all(&self.reader).await?;
        rows.into_iter()
            .map(|r| {
                Ok(AuditRecord {
                    seq: r.seq,
                    at: parse_ts(&r.at)?,
                    event: AuditEvent {
                        actor: r.actor,
                        action: r.action,
                        subject_type: r.subject_type,
                        subject_id: r.subject_id,
                        details: serde_json::from_str(&r.details)
                            .map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))?,
                    },
                })
            })
            .collect()
    }
}
