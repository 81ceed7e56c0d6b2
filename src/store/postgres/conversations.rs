//! Buyers, conversations and messages: ingest of inbound messages, replies and notes, and the conversation lists agents read. PostgreSQL implementation of [`ConversationStore`].
//!
//! A conversation's messages are read in the order their senders sent them
//! (the platform's `sent_at`, then arrival), so a delivery that arrives late
//! still takes its place.

use super::*;
use crate::domain::Sender;

pub(super) const SUMMARY_COLUMNS: &str = "c.id, s.shop_key, s.platform, b.id AS buyer_id, \
     b.platform_buyer_id, b.display_name, c.status, c.layer, c.custody, c.assignee, \
     c.created_at, c.last_message_at, c.message_count";

pub(super) const SUMMARY_FROM: &str = "FROM conversations c \
     JOIN shops s ON s.id = c.shop_id \
     JOIN buyers b ON b.id = c.buyer_id";

#[derive(sqlx::FromRow)]
pub(super) struct SummaryRow {
    pub(super) id: String,
    pub(super) shop_key: String,
    pub(super) platform: String,
    pub(super) buyer_id: String,
    pub(super) platform_buyer_id: String,
    pub(super) display_name: Option<String>,
    pub(super) status: String,
    pub(super) layer: Option<i64>,
    pub(super) custody: String,
    pub(super) assignee: Option<String>,
    pub(super) created_at: String,
    pub(super) last_message_at: String,
    pub(super) message_count: i64,
}

impl TryFrom<SummaryRow> for ConversationSummary {
    type Error = StoreError;
    fn try_from(row: SummaryRow) -> Result<Self, StoreError> {
        let layer = row
            .layer
            .map(|l| {
                u8::try_from(l)
                    .ok()
                    .and_then(|l| Layer::try_from(l).ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("bad layer {l}")))
            })
            .transpose()?;
        Ok(ConversationSummary {
            id: parse_id(&row.id, "conversation")?,
            shop: ShopKey::parse(&row.shop_key).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            platform: row
                .platform
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("bad platform {:?}", row.platform)))?,
            buyer_id: parse_id(&row.buyer_id, "buyer")?,
            buyer_platform_id: row.platform_buyer_id,
            buyer_name: row.display_name,
            status: parse_enum(&row.status, "conversation status")?,
            layer,
            custody: parse_enum(&row.custody, "custody")?,
            assignee: row.assignee,
            created_at: parse_ts(&row.created_at)?,
            last_message_at: parse_ts(&row.last_message_at)?,
            message_count: row.message_count,
        })
    }
}

pub(super) const MESSAGE_COLUMNS: &str = "id, conversation_id, external_id, direction, author, \
     author_name, text, kind, attachment, language, translation, sent_at, received_at";

#[derive(sqlx::FromRow)]
pub(super) struct MessageRow {
    pub(super) id: String,
    pub(super) conversation_id: String,
    pub(super) external_id: Option<String>,
    pub(super) direction: String,
    pub(super) author: String,
    pub(super) author_name: Option<String>,
    pub(super) text: String,
    pub(super) kind: String,
    pub(super) attachment: Option<String>,
    pub(super) language: Option<String>,
    pub(super) translation: Option<String>,
    pub(super) sent_at: String,
    pub(super) received_at: String,
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;
    fn try_from(row: MessageRow) -> Result<Self, StoreError> {
        Ok(Message {
            id: parse_id(&row.id, "message")?,
            conversation_id: parse_id(&row.conversation_id, "conversation")?,
            external_id: row.external_id,
            direction: parse_enum(&row.direction, "direction")?,
            author: parse_enum(&row.author, "author")?,
            author_name: row.author_name,
            text: MessageText::from_stored(row.text),
            kind: parse_enum(&row.kind, "message kind")?,
            attachment: row
                .attachment
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("message attachment: {e}")))?,
            language: row.language,
            translation: row.translation,
            sent_at: parse_ts(&row.sent_at)?,
            received_at: parse_ts(&row.received_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct BuyerRow {
    pub(super) id: String,
    pub(super) platform_buyer_id: String,
    pub(super) display_name: Option<String>,
    pub(super) language: Option<String>,
    pub(super) member_level: Option<String>,
    pub(super) is_vip: bool,
    pub(super) lifetime_value_cents: i64,
    pub(super) currency: Option<String>,
}

impl TryFrom<BuyerRow> for Buyer {
    type Error = StoreError;
    fn try_from(row: BuyerRow) -> Result<Self, StoreError> {
        Ok(Buyer {
            id: parse_id(&row.id, "buyer")?,
            platform_buyer_id: row.platform_buyer_id,
            display_name: row.display_name,
            language: row.language,
            member_level: row.member_level,
            is_vip: row.is_vip,
            lifetime_value_cents: row.lifetime_value_cents,
            currency: row.currency,
        })
    }
}

/// The buyer's id, creating the buyer on first contact and taking a newer
/// display name when the channel sends one.
pub(super) async fn upsert_buyer(
    tx: &mut Transaction<'static, Postgres>,
    shop: &Shop,
    buyer: &crate::domain::BuyerRef,
) -> Result<BuyerId, StoreError> {
    let at = ts(now());
    let id: String = sqlx::query_scalar(&pg("INSERT INTO buyers (id, tenant_id, shop_id, platform_buyer_id, display_name, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (shop_id, platform_buyer_id) DO UPDATE SET \
           display_name = COALESCE(excluded.display_name, buyers.display_name), \
           updated_at = excluded.updated_at \
         RETURNING id"),
    )
    .bind(BuyerId::new().to_string())
    .bind(shop.tenant_id.to_string())
    .bind(shop.id.to_string())
    .bind(buyer.id.as_str())
    .bind(buyer.name.as_deref())
    .bind(&at)
    .bind(&at)
    .fetch_one(&mut **tx)
    .await?;
    parse_id(&id, "buyer")
}

/// Adds an outbound message or note to a conversation; outbound messages
/// also move the conversation's last-message time and count.
pub(super) async fn insert_message(
    tx: &mut Transaction<'static, Postgres>,
    tenant: TenantId,
    conversation: ConversationId,
    shop_id: &str,
    reply: &NewReply,
    at: DateTime<Utc>,
) -> Result<Message, StoreError> {
    let message = Message {
        id: MessageId::new(),
        conversation_id: conversation,
        external_id: reply.external_id.as_ref().map(|e| e.as_str().to_owned()),
        direction: reply.direction,
        author: reply.author,
        author_name: reply.author_name.clone(),
        text: reply.text.clone(),
        kind: MessageKind::Text,
        attachment: None,
        language: None,
        translation: None,
        sent_at: at,
        received_at: at,
    };
    sqlx::query(&pg(
        "INSERT INTO messages (id, tenant_id, conversation_id, shop_id, external_id, direction, \
         author, author_name, text, sent_at, received_at, seq) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
         (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?))",
    ))
    .bind(message.id.to_string())
    .bind(tenant.to_string())
    .bind(conversation.to_string())
    .bind(shop_id)
    .bind(message.external_id.as_deref())
    .bind(enum_str(message.direction))
    .bind(enum_str(message.author))
    .bind(message.author_name.as_deref())
    .bind(message.text.as_str())
    .bind(ts(at))
    .bind(ts(at))
    .bind(conversation.to_string())
    .execute(&mut **tx)
    .await?;
    if reply.direction == Direction::Outbound {
        sqlx::query(&pg(
            "UPDATE conversations SET last_message_at = ?, message_count = message_count + 1 \
             WHERE id = ?",
        ))
        .bind(ts(at))
        .bind(conversation.to_string())
        .execute(&mut **tx)
        .await?;
        // A reply to a shop with a channel leaves through the outbox, which
        // is written in this transaction: committed means it will be sent.
        super::outbox::enqueue_reply(tx, tenant, conversation, shop_id, message.id, at).await?;
    }
    Ok(message)
}

/// The buyer's open conversation, moved to now and reopened, or a new one.
async fn buyer_conversation(
    tx: &mut Transaction<'static, Postgres>,
    shop: &Shop,
    buyer: BuyerId,
    received_ts: &str,
) -> Result<ConversationId, StoreError> {
    let open: Option<String> = sqlx::query_scalar(&pg(
        "SELECT id FROM conversations WHERE buyer_id = ? AND status != 'resolved' \
         ORDER BY last_message_at DESC LIMIT 1",
    ))
    .bind(buyer.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    match open {
        Some(id) => {
            sqlx::query(&pg(
                "UPDATE conversations SET last_message_at = ?, message_count = message_count + 1, \
                 status = 'open' WHERE id = ?",
            ))
            .bind(received_ts)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
            parse_id(&id, "conversation")
        }
        None => new_conversation(tx, shop, buyer, "open", received_ts).await,
    }
}

/// Where a message the seller wrote in the marketplace's app belongs: the
/// buyer's latest conversation, whatever its status (the seller's words do
/// not reopen it), or a new resolved one when the seller wrote first.
async fn seller_conversation(
    tx: &mut Transaction<'static, Postgres>,
    shop: &Shop,
    buyer: BuyerId,
    received_ts: &str,
) -> Result<ConversationId, StoreError> {
    let latest: Option<String> =
        sqlx::query_scalar(&pg("SELECT id FROM conversations WHERE buyer_id = ? \
         ORDER BY (status != 'resolved') DESC, last_message_at DESC LIMIT 1"))
        .bind(buyer.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    match latest {
        Some(id) => {
            sqlx::query(&pg(
                "UPDATE conversations SET last_message_at = ?, message_count = message_count + 1 \
                 WHERE id = ?",
            ))
            .bind(received_ts)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
            parse_id(&id, "conversation")
        }
        None => new_conversation(tx, shop, buyer, "resolved", received_ts).await,
    }
}

async fn new_conversation(
    tx: &mut Transaction<'static, Postgres>,
    shop: &Shop,
    buyer: BuyerId,
    status: &str,
    received_ts: &str,
) -> Result<ConversationId, StoreError> {
    let id = ConversationId::new();
    sqlx::query(&pg(
        "INSERT INTO conversations (id, tenant_id, shop_id, buyer_id, status, created_at, \
         last_message_at, message_count) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
    ))
    .bind(id.to_string())
    .bind(shop.tenant_id.to_string())
    .bind(shop.id.to_string())
    .bind(buyer.to_string())
    .bind(status)
    .bind(received_ts)
    .bind(received_ts)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

#[async_trait]
impl ConversationStore for PostgresStore {
    async fn ingest(
        &self,
        shop: &Shop,
        message: &InboundMessage,
        max_attempts: u32,
    ) -> Result<IngestOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let existing: Option<(String, String)> =
            sqlx::query_as(&pg("SELECT id, conversation_id FROM messages \
             WHERE shop_id = ? AND external_id = ? AND direction = 'inbound'"))
            .bind(shop.id.to_string())
            .bind(message.external_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some((message_id, conversation_id)) = existing {
            return Ok(IngestOutcome {
                message_id: parse_id(&message_id, "message")?,
                conversation_id: parse_id(&conversation_id, "conversation")?,
                duplicate: true,
            });
        }

        let received = now();
        let received_ts = ts(received);
        let buyer_id = upsert_buyer(&mut tx, shop, &message.buyer).await?;
        let from_seller = matches!(message.sender, Sender::Seller { .. });
        let conversation_id = if from_seller {
            seller_conversation(&mut tx, shop, buyer_id, &received_ts).await?
        } else {
            buyer_conversation(&mut tx, shop, buyer_id, &received_ts).await?
        };
        let (direction, author, author_name) = match &message.sender {
            Sender::Buyer => ("inbound", "buyer", message.buyer.name.as_deref()),
            Sender::Seller { name } => ("outbound", "agent", name.as_deref()),
        };
        let kind = message
            .attachment
            .as_ref()
            .map_or(MessageKind::Text, |a| a.kind);
        let attachment = message
            .attachment
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("attachment: {e}")))?;

        let message_id = MessageId::new();
        sqlx::query(&pg("INSERT INTO messages (id, tenant_id, conversation_id, shop_id, external_id, direction, \
             author, author_name, text, kind, attachment, sent_at, received_at, seq) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?))"),
        )
        .bind(message_id.to_string())
        .bind(shop.tenant_id.to_string())
        .bind(conversation_id.to_string())
        .bind(shop.id.to_string())
        .bind(message.external_id.as_str())
        .bind(direction)
        .bind(author)
        .bind(author_name)
        .bind(message.text.as_str())
        .bind(kind.as_str())
        .bind(attachment)
        .bind(ts(message.sent_at))
        .bind(&received_ts)
        .bind(conversation_id.to_string())
        .execute(&mut *tx)
        .await?;

        if from_seller {
            // The seller answered in the marketplace's app: a person holds
            // the conversation now, as when an agent replies through kedai.
            sqlx::query(&pg("UPDATE conversations SET custody = 'human', \
                 assignee = COALESCE(assignee, ?) WHERE id = ?"))
            .bind(author_name)
            .bind(conversation_id.to_string())
            .execute(&mut *tx)
            .await?;
        } else {
            insert_job(
                &mut tx,
                shop.tenant_id,
                JOB_INBOUND_MESSAGE,
                message_id,
                max_attempts,
                &received_ts,
            )
            .await?;
        }

        insert_audit(
            &mut tx,
            Some(shop.tenant_id),
            &AuditEvent {
                actor: format!("channel:{}", shop.platform),
                action: "message.received".into(),
                subject_type: "message".into(),
                subject_id: message_id.to_string(),
                details: serde_json::json!({
                    "shop": shop.key,
                    "external_id": message.external_id,
                    "conversation_id": conversation_id,
                    "author": author,
                    "kind": kind,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        self.announce(
            shop.tenant_id,
            conversation_id,
            Some(shop.id),
            ChangeKind::Message,
        );
        Ok(IngestOutcome {
            message_id,
            conversation_id,
            duplicate: false,
        })
    }

    async fn list_conversations(
        &self,
        tenant: TenantId,
        filter: &ConversationFilter,
    ) -> Result<Page<ConversationSummary>, StoreError> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(format!(
            "SELECT {SUMMARY_COLUMNS} {SUMMARY_FROM} WHERE c.tenant_id = "
        ));
        query.push_bind(tenant.to_string());
        if let Some(shop) = &filter.shop {
            query
                .push(" AND s.shop_key = ")
                .push_bind(shop.as_str().to_owned());
        }
        if let Some(status) = filter.status {
            query.push(" AND c.status = ").push_bind(enum_str(status));
        }
        if let Some(layer) = filter.layer {
            query
                .push(" AND c.layer = ")
                .push_bind(i64::from(layer.get()));
        }
        if let Some(since) = filter.since {
            query
                .push(" AND c.last_message_at >= ")
                .push_bind(ts(since));
        }
        if let Some(after) = &filter.after {
            let at = ts(after.last_message_at);
            query
                .push(" AND (c.last_message_at < ")
                .push_bind(at.clone())
                .push(" OR (c.last_message_at = ")
                .push_bind(at)
                .push(" AND c.id < ")
                .push_bind(after.id.to_string())
                .push("))");
        }
        let limit = filter.limit.max(1);
        query
            .push(" ORDER BY c.last_message_at DESC, c.id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows: Vec<SummaryRow> = query.build_query_as().fetch_all(&self.reader).await?;
        let mut items = rows
            .into_iter()
            .map(ConversationSummary::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|last| PageCursor {
                last_message_at: last.last_message_at,
                id: last.id,
            })
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn conversation(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Option<ConversationDetail>, StoreError> {
        let mut conn = self.reader.begin().await?;
        let row: Option<SummaryRow> = sqlx::query_as(&pg(&format!(
            "SELECT {SUMMARY_COLUMNS} {SUMMARY_FROM} WHERE c.tenant_id = ? AND c.id = ?"
        )))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let summary = ConversationSummary::try_from(row)?;
        let buyer: BuyerRow = sqlx::query_as(&pg(
            "SELECT id, platform_buyer_id, display_name, language, member_level, is_vip, \
             lifetime_value_cents, currency FROM buyers WHERE id = ?",
        ))
        .bind(summary.buyer_id.to_string())
        .fetch_one(&mut *conn)
        .await?;
        let messages = sqlx::query_as::<_, MessageRow>(&pg(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY sent_at, seq"
        )))
        .bind(id.to_string())
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(Message::try_from)
        .collect::<Result<Vec<_>, _>>()?;
        conn.commit().await?;
        Ok(Some(ConversationDetail {
            summary,
            buyer: buyer.try_into()?,
            messages,
        }))
    }

    async fn add_reply(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        reply: &NewReply,
        actor: &str,
    ) -> Result<(Message, bool), StoreError> {
        let mut tx = self.begin_write().await?;
        let shop_id: Option<String> = sqlx::query_scalar(&pg(
            "SELECT shop_id FROM conversations WHERE tenant_id = ? AND id = ?",
        ))
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(shop_id) = shop_id else {
            return Err(StoreError::NotFound {
                what: format!("conversation {conversation}"),
            });
        };
        if let Some(external_id) = &reply.external_id {
            let existing: Option<MessageRow> = sqlx::query_as(&pg(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages \
                 WHERE shop_id = ? AND external_id = ? AND direction != 'inbound'"
            )))
            .bind(&shop_id)
            .bind(external_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(existing) = existing {
                let existing = Message::try_from(existing)?;
                if existing.conversation_id != conversation {
                    return Err(StoreError::AlreadyExists {
                        what: format!("message with external_id {:?}", external_id.as_str()),
                    });
                }
                return Ok((existing, true));
            }
        }
        let message = insert_message(&mut tx, tenant, conversation, &shop_id, reply, now()).await?;
        if reply.direction == Direction::Outbound && reply.author == Author::Agent {
            // A person answered: from now on they hold the conversation, and
            // the AI does not answer on top of them until it is given back.
            sqlx::query(&pg("UPDATE conversations SET custody = 'human', \
                 assignee = COALESCE(assignee, ?) WHERE id = ?"))
            .bind(reply.author_name.as_deref())
            .bind(conversation.to_string())
            .execute(&mut *tx)
            .await?;
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.to_owned(),
                action: match reply.direction {
                    Direction::Note => "note.added",
                    _ => "reply.added",
                }
                .into(),
                subject_type: "message".into(),
                subject_id: message.id.to_string(),
                details: serde_json::json!({
                    "conversation_id": conversation,
                    "author": message.author,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        self.announce(tenant, conversation, None, ChangeKind::Reply);
        Ok((message, false))
    }

    async fn set_conversation_status(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        status: ConversationStatus,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(&pg(
            "UPDATE conversations SET status = ? WHERE tenant_id = ? AND id = ?",
        ))
        .bind(enum_str(status))
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.into(),
                action: "conversation.status".into(),
                subject_type: "conversation".into(),
                subject_id: conversation.to_string(),
                details: serde_json::json!({ "status": status }),
            },
        )
        .await?;
        tx.commit().await?;
        self.announce(tenant, conversation, None, ChangeKind::State);
        Ok(true)
    }

    async fn set_custody(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        custody: Custody,
        assignee: Option<&str>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let assignee = match custody {
            Custody::Human => assignee,
            Custody::Ai => None,
        };
        let changed = sqlx::query(&pg(
            "UPDATE conversations SET custody = ?, assignee = ? WHERE tenant_id = ? AND id = ?",
        ))
        .bind(enum_str(custody))
        .bind(assignee)
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.into(),
                action: "conversation.custody".into(),
                subject_type: "conversation".into(),
                subject_id: conversation.to_string(),
                details: serde_json::json!({ "custody": custody, "assignee": assignee }),
            },
        )
        .await?;
        tx.commit().await?;
        self.announce(tenant, conversation, None, ChangeKind::State);
        Ok(true)
    }

    async fn message_conversation(
        &self,
        tenant: TenantId,
        message: MessageId,
    ) -> Result<Option<ConversationId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(&pg(
            "SELECT conversation_id FROM messages WHERE tenant_id = ? AND id = ?",
        ))
        .bind(tenant.to_string())
        .bind(message.to_string())
        .fetch_optional(&self.reader)
        .await?;
        id.as_deref()
            .map(|id| parse_id(id, "conversation"))
            .transpose()
    }

    async fn mark_processed(&self, message: MessageId) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&pg(
            "UPDATE messages SET processed_at = COALESCE(processed_at, ?) WHERE id = ?",
        ))
        .bind(ts(now()))
        .bind(message.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
