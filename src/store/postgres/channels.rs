//! Channel accounts, platform threads, reconciliation cursors, web-chat
//! sessions and response deadlines. PostgreSQL implementation of
//! [`ChannelStore`].

use super::*;
use crate::store::credentials;

/// A shop's columns (as `tenants::ShopRow` reads them), first in a row.
pub(super) const SHOP_COLUMNS: &str = "s.id, s.tenant_id, s.platform, s.shop_key, s.name, \
     s.country, s.currency, s.language, s.policy, s.created_at";
/// How many columns [`SHOP_COLUMNS`] takes.
pub(super) const SHOP_WIDTH: usize = 10;

pub(super) fn shop_of(row: &sqlx::postgres::PgRow, offset: usize) -> Result<Shop, StoreError> {
    use sqlx::Row;
    Shop::try_from(tenants::ShopRow {
        id: row.try_get(offset)?,
        tenant_id: row.try_get(offset + 1)?,
        platform: row.try_get(offset + 2)?,
        shop_key: row.try_get(offset + 3)?,
        name: row.try_get(offset + 4)?,
        country: row.try_get(offset + 5)?,
        currency: row.try_get(offset + 6)?,
        language: row.try_get(offset + 7)?,
        policy: row.try_get(offset + 8)?,
        created_at: row.try_get(offset + 9)?,
    })
}

pub(super) fn opt_ts(raw: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    raw.as_deref().map(parse_ts).transpose()
}

/// Control characters removed and length capped: platform error texts end
/// up in an agent's note.
pub(super) fn note_safe(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

impl PostgresStore {
    /// A shop's credentials as the adapters need them. Credentials that do
    /// not open (a different credentials key) leave that shop unconnected,
    /// logged, rather than every shop unreachable.
    fn open_credentials(&self, shop: &Shop, stored: &str) -> SecretString {
        let binding = credentials::binding(&shop.tenant_id.to_string(), shop.key.as_str());
        match self.credentials.open(&binding, stored) {
            Ok(plain) => plain,
            Err(err) => {
                tracing::warn!(shop = %shop.key, error = %err, "shop credentials unreadable; the shop is treated as not connected");
                SecretString::from("{}")
            }
        }
    }
}

#[async_trait]
impl ChannelStore for PostgresStore {
    async fn channel_shops(
        &self,
        platform: Option<Platform>,
    ) -> Result<Vec<ChannelShop>, StoreError> {
        use sqlx::Row;
        let rows = sqlx::query(&pg(&format!(
            "SELECT {SHOP_COLUMNS}, s.credentials, a.account_id FROM shops s \
             LEFT JOIN channel_accounts a ON a.shop_id = s.id \
             WHERE (? IS NULL OR s.platform = ?) ORDER BY s.created_at"
        )))
        .bind(platform.map(Platform::as_str))
        .bind(platform.map(Platform::as_str))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let shop = shop_of(row, 0)?;
                Ok(ChannelShop {
                    credentials: self
                        .open_credentials(&shop, &row.try_get::<String, _>(SHOP_WIDTH)?),
                    shop,
                    account_id: row.try_get(SHOP_WIDTH + 1)?,
                })
            })
            .collect()
    }

    async fn channel_shop(&self, shop: ShopId) -> Result<Option<ChannelShop>, StoreError> {
        use sqlx::Row;
        let row = sqlx::query(&pg(&format!(
            "SELECT {SHOP_COLUMNS}, s.credentials, a.account_id FROM shops s \
             LEFT JOIN channel_accounts a ON a.shop_id = s.id WHERE s.id = ?"
        )))
        .bind(shop.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            let shop = shop_of(&row, 0)?;
            Ok(ChannelShop {
                credentials: self.open_credentials(&shop, &row.try_get::<String, _>(SHOP_WIDTH)?),
                shop,
                account_id: row.try_get(SHOP_WIDTH + 1)?,
            })
        })
        .transpose()
    }

    async fn set_credentials(
        &self,
        tenant: TenantId,
        shop: ShopId,
        update: &CredentialsUpdate,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let key: Option<String> = sqlx::query_scalar(&pg(
            "SELECT shop_key FROM shops WHERE tenant_id = ? AND id = ?",
        ))
        .bind(tenant.to_string())
        .bind(shop.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = key else {
            return Err(StoreError::NotFound {
                what: format!("shop {shop}"),
            });
        };
        let sealed = self.credentials.seal(
            &credentials::binding(&tenant.to_string(), &key),
            &update.credentials,
        )?;
        let platform: Option<String> = sqlx::query_scalar(&pg(
            "UPDATE shops SET credentials = ? WHERE tenant_id = ? AND id = ? RETURNING platform",
        ))
        .bind(sealed)
        .bind(tenant.to_string())
        .bind(shop.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(platform) = platform else {
            return Err(StoreError::NotFound {
                what: format!("shop {shop}"),
            });
        };
        sqlx::query(&pg("DELETE FROM channel_accounts WHERE shop_id = ?"))
            .bind(shop.to_string())
            .execute(&mut *tx)
            .await?;
        if let Some(account) = &update.account_id {
            let inserted = sqlx::query(&pg("INSERT INTO channel_accounts (shop_id, tenant_id, platform, account_id, updated_at) \
                 VALUES (?, ?, ?, ?, ?)"),
            )
            .bind(shop.to_string())
            .bind(tenant.to_string())
            .bind(&platform)
            .bind(account)
            .bind(ts(now()))
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::AlreadyExists {
                        what: format!("{platform} account {account:?} (connected to another shop)"),
                    })
                }
                other => other?,
            };
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.to_owned(),
                action: "shop.credentials_set".into(),
                subject_type: "shop".into(),
                subject_id: shop.to_string(),
                details: serde_json::json!({ "account_id": update.account_id }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_thread(
        &self,
        shop: ShopId,
        thread: &str,
        buyer: &PlatformBuyerId,
    ) -> Result<(), StoreError> {
        // Most pushes come from a thread already known as the buyer's
        // latest: then there is nothing to write, and a webhook's
        // acknowledgement does not wait for a second commit.
        if self.buyer_thread(shop, buyer).await?.as_deref() == Some(thread) {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        sqlx::query(&pg(
            "INSERT INTO channel_threads (shop_id, thread_id, platform_buyer_id, updated_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (shop_id, thread_id) DO UPDATE SET \
             platform_buyer_id = excluded.platform_buyer_id, updated_at = excluded.updated_at",
        ))
        .bind(shop.to_string())
        .bind(thread)
        .bind(buyer.as_str())
        .bind(ts(now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn thread_buyer(&self, shop: ShopId, thread: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(&pg(
            "SELECT platform_buyer_id FROM channel_threads WHERE shop_id = ? AND thread_id = ?",
        ))
        .bind(shop.to_string())
        .bind(thread)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn buyer_thread(
        &self,
        shop: ShopId,
        buyer: &PlatformBuyerId,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(&pg(
            "SELECT thread_id FROM channel_threads WHERE shop_id = ? AND platform_buyer_id = ? \
             ORDER BY updated_at DESC LIMIT 1",
        ))
        .bind(shop.to_string())
        .bind(buyer.as_str())
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn has_message(&self, shop: ShopId, external_id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(&pg(
            "SELECT 1::BIGINT FROM messages WHERE shop_id = ? AND external_id = ?",
        ))
        .bind(shop.to_string())
        .bind(external_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(found.is_some())
    }

    async fn cursor(&self, scope: &str, name: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(&pg(
            "SELECT value FROM channel_cursors WHERE scope = ? AND name = ?",
        ))
        .bind(scope)
        .bind(name)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn set_cursor(&self, scope: &str, name: &str, value: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&pg(
            "INSERT INTO channel_cursors (scope, name, value, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
        ))
        .bind(scope)
        .bind(name)
        .bind(value)
        .bind(ts(now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_widget_session(
        &self,
        shop: &Shop,
        secret_hash: &str,
        name: Option<&str>,
    ) -> Result<WidgetSession, StoreError> {
        let session = WidgetSession {
            id: uuid::Uuid::now_v7().simple().to_string(),
            tenant_id: shop.tenant_id,
            shop: shop.clone(),
            secret_hash: secret_hash.to_owned(),
            name: name.map(str::to_owned),
        };
        let at = ts(now());
        let mut tx = self.begin_write().await?;
        sqlx::query(&pg(
            "INSERT INTO widget_sessions (id, tenant_id, shop_id, secret_hash, name, created_at, \
             last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&session.id)
        .bind(shop.tenant_id.to_string())
        .bind(shop.id.to_string())
        .bind(secret_hash)
        .bind(name)
        .bind(&at)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(session)
    }

    async fn widget_session(&self, id: &str) -> Result<Option<WidgetSession>, StoreError> {
        use sqlx::Row;
        let row = sqlx::query(&pg(&format!(
            "SELECT {SHOP_COLUMNS}, w.id, w.secret_hash, w.name FROM widget_sessions w \
             JOIN shops s ON s.id = w.shop_id WHERE w.id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            let shop = shop_of(&row, 0)?;
            Ok(WidgetSession {
                id: row.try_get(SHOP_WIDTH)?,
                tenant_id: shop.tenant_id,
                shop,
                secret_hash: row.try_get(SHOP_WIDTH + 1)?,
                name: row.try_get(SHOP_WIDTH + 2)?,
            })
        })
        .transpose()
    }

    async fn visitor_messages(
        &self,
        shop: ShopId,
        buyer: &PlatformBuyerId,
        limit: u32,
    ) -> Result<Vec<VisitorMessage>, StoreError> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(&pg(
            "SELECT m.id, m.direction, m.author, m.text, m.sent_at FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id JOIN buyers b ON b.id = c.buyer_id \
             WHERE b.shop_id = ? AND b.platform_buyer_id = ? AND m.direction != 'note' \
             ORDER BY m.sent_at DESC, m.id DESC LIMIT ?",
        ))
        .bind(shop.to_string())
        .bind(buyer.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        let mut messages = rows
            .into_iter()
            .map(|(id, direction, author, text, sent_at)| {
                Ok(VisitorMessage {
                    id: parse_id(&id, "message")?,
                    from: if direction == "inbound" {
                        "visitor"
                    } else {
                        "shop"
                    },
                    author: parse_enum(&author, "author")?,
                    text,
                    sent_at: parse_ts(&sent_at)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        messages.reverse();
        Ok(messages)
    }

    async fn unanswered(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Unanswered>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: String,
            tenant_id: String,
            conversation_id: String,
            shop_key: String,
            platform: String,
            sent_at: String,
            received_at: String,
            language: Option<String>,
            flagged_at: Option<String>,
            acknowledged_at: Option<String>,
        }
        let rows: Vec<Row> = sqlx::query_as(&pg(&format!(
            "SELECT m.id, m.tenant_id, m.conversation_id, s.shop_key, s.platform, m.sent_at, \
             m.received_at, COALESCE(m.language, b.language) AS language, d.flagged_at, \
             d.acknowledged_at \
             FROM conversations c JOIN shops s ON s.id = c.shop_id JOIN buyers b ON b.id = c.buyer_id \
             JOIN messages m ON m.id = (SELECT x.id FROM messages x WHERE x.conversation_id = c.id \
                  AND x.direction = 'inbound' AND x.seq > {ANSWERED_UP_TO} ORDER BY x.seq LIMIT 1) \
             LEFT JOIN response_deadlines d ON d.message_id = m.id \
             WHERE c.status != 'resolved' AND c.last_message_at >= ? \
             ORDER BY c.last_message_at LIMIT ?"
        )))
        .bind(ts(since))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Unanswered {
                    message_id: parse_id(&row.id, "message")?,
                    tenant_id: parse_id(&row.tenant_id, "tenant")?,
                    conversation_id: parse_id(&row.conversation_id, "conversation")?,
                    shop_key: row.shop_key,
                    platform: row
                        .platform
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("platform {:?}", row.platform)))?,
                    sent_at: parse_ts(&row.sent_at)?,
                    received_at: parse_ts(&row.received_at)?,
                    language: row.language,
                    flagged: row.flagged_at.is_some(),
                    acknowledged: row.acknowledged_at.is_some(),
                })
            })
            .collect()
    }

    async fn deadline_action(
        &self,
        message: &Unanswered,
        action: &DeadlineAction,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let still: Option<(String, i64)> = sqlx::query_as(&pg(&format!(
            "SELECT m.shop_id, m.seq FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.id = ? AND m.tenant_id = ? AND c.status != 'resolved' \
               AND m.seq > (SELECT {ANSWERED_UP_TO_OF} FROM messages r WHERE r.conversation_id = m.conversation_id \
                            AND r.direction = 'outbound' AND r.author != 'system')"
        )))
        .bind(message.message_id.to_string())
        .bind(message.tenant_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((shop_id, _)) = still else {
            return Ok(false);
        };
        let (due_at, column) = match action {
            DeadlineAction::Flag { due_at } => (due_at, "flagged_at"),
            DeadlineAction::Acknowledge { due_at, .. } => (due_at, "acknowledged_at"),
        };
        let at = ts(now());
        sqlx::query(&pg(
            "INSERT INTO response_deadlines (message_id, tenant_id, conversation_id, due_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
        ))
        .bind(message.message_id.to_string())
        .bind(message.tenant_id.to_string())
        .bind(message.conversation_id.to_string())
        .bind(ts(*due_at))
        .execute(&mut *tx)
        .await?;
        let changed = sqlx::query(&pg(&format!(
            "UPDATE response_deadlines SET {column} = ? WHERE message_id = ? AND {column} IS NULL"
        )))
        .bind(&at)
        .bind(message.message_id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        match action {
            DeadlineAction::Flag { due_at } => {
                insert_audit(
                    &mut tx,
                    Some(message.tenant_id),
                    &AuditEvent {
                        actor: "system".into(),
                        action: "conversation.at_risk".into(),
                        subject_type: "conversation".into(),
                        subject_id: message.conversation_id.to_string(),
                        details: serde_json::json!({
                            "message_id": message.message_id,
                            "due_at": ts(*due_at),
                            "shop": message.shop_key,
                        }),
                    },
                )
                .await?;
            }
            DeadlineAction::Acknowledge { text, .. } => {
                let reply = NewReply {
                    text: text.clone(),
                    direction: Direction::Outbound,
                    author: Author::System,
                    author_name: Some("kedai".into()),
                    external_id: None,
                };
                let sent = insert_message(
                    &mut tx,
                    message.tenant_id,
                    message.conversation_id,
                    &shop_id,
                    &reply,
                    now(),
                )
                .await?;
                insert_audit(
                    &mut tx,
                    Some(message.tenant_id),
                    &AuditEvent {
                        actor: "system".into(),
                        action: "deadline.acknowledged".into(),
                        subject_type: "message".into(),
                        subject_id: sent.id.to_string(),
                        details: serde_json::json!({
                            "conversation_id": message.conversation_id,
                            "for_message_id": message.message_id,
                        }),
                    },
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn at_risk(&self, tenant: TenantId) -> Result<Vec<DeadlineRecord>, StoreError> {
        let rows: Vec<(String, String, String, Option<String>, Option<String>)> =
            sqlx::query_as(&pg(&format!(
                "SELECT d.message_id, d.conversation_id, d.due_at, d.flagged_at, d.acknowledged_at \
                 FROM response_deadlines d JOIN messages m ON m.id = d.message_id \
                 JOIN conversations c ON c.id = d.conversation_id \
                 WHERE d.tenant_id = ? AND d.flagged_at IS NOT NULL AND c.status != 'resolved' \
                   AND m.seq > (SELECT {ANSWERED_UP_TO_OF} FROM messages r \
                                WHERE r.conversation_id = m.conversation_id \
                                  AND r.direction = 'outbound' AND r.author != 'system') \
                 ORDER BY d.due_at LIMIT 500"
            )))
            .bind(tenant.to_string())
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter()
            .map(|(message, conversation, due, flagged, acked)| {
                Ok(DeadlineRecord {
                    message_id: parse_id(&message, "message")?,
                    conversation_id: parse_id(&conversation, "conversation")?,
                    due_at: parse_ts(&due)?,
                    flagged_at: opt_ts(flagged)?,
                    acknowledged_at: opt_ts(acked)?,
                })
            })
            .collect()
    }

    async fn conversation_shop(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Option<Shop>, StoreError> {
        let row = sqlx::query(&pg(&format!(
            "SELECT {SHOP_COLUMNS} FROM conversations c JOIN shops s ON s.id = c.shop_id \
             WHERE c.tenant_id = ? AND c.id = ?"
        )))
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| shop_of(&row, 0)).transpose()
    }

    async fn message_facts(&self, message: MessageId) -> Result<Option<MessageFacts>, StoreError> {
        use sqlx::Row;
        let row = sqlx::query(&pg(&format!(
            "SELECT {SHOP_COLUMNS}, m.conversation_id, m.kind, m.text, b.platform_buyer_id \
             FROM messages m JOIN shops s ON s.id = m.shop_id \
             JOIN conversations c ON c.id = m.conversation_id JOIN buyers b ON b.id = c.buyer_id \
             WHERE m.id = ?"
        )))
        .bind(message.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            let shop = shop_of(&row, 0)?;
            Ok(MessageFacts {
                tenant_id: shop.tenant_id,
                shop,
                conversation_id: parse_id(&row.try_get::<String, _>(SHOP_WIDTH)?, "conversation")?,
                kind: parse_enum(&row.try_get::<String, _>(SHOP_WIDTH + 1)?, "message kind")?,
                text: row.try_get(SHOP_WIDTH + 2)?,
                buyer: row.try_get(SHOP_WIDTH + 3)?,
            })
        })
        .transpose()
    }

    async fn order_updated_at(
        &self,
        shop: ShopId,
        order_number: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<String> = sqlx::query_scalar(&pg(
            "SELECT updated_at FROM orders WHERE shop_id = ? AND order_number = ?",
        ))
        .bind(shop.to_string())
        .bind(order_number)
        .fetch_optional(&self.reader)
        .await?;
        opt_ts(at)
    }
}

/// The `seq` up to which a conversation `c` is answered: its last outbound
/// message that is not kedai's own holding text.
const ANSWERED_UP_TO: &str = "COALESCE((SELECT MAX(r.seq) FROM messages r \
     WHERE r.conversation_id = c.id AND r.direction = 'outbound' AND r.author != 'system'), 0)";
/// The same over a subquery's `messages r` rows.
const ANSWERED_UP_TO_OF: &str = "COALESCE(MAX(r.seq), 0)";
