//! Channel accounts, platform threads, the outbox, cursors, event endpoints,
//! web-chat sessions and response deadlines. SQLite implementation of
//! [`ChannelStore`].
//!
//! The outbox lease is one `UPDATE … RETURNING` over a subquery that picks
//! due rows and skips any reply with an older undelivered reply in its
//! conversation; on PostgreSQL the subquery becomes `FOR UPDATE SKIP
//! LOCKED`.

use super::*;

/// Writes the outbox row of an outbound message when its shop has a
/// channel; a no-op for other shops and for a message enqueued before.
pub(super) async fn enqueue_reply(
    tx: &mut Transaction<'static, Sqlite>,
    tenant: TenantId,
    conversation: ConversationId,
    shop_id: &str,
    message: MessageId,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let with_channel: Vec<&str> = Platform::ALL
        .into_iter()
        .filter(|p| p.has_channel())
        .map(Platform::as_str)
        .collect();
    let at = ts(at);
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, kind, idempotency_key, shop_id, conversation_id, \
         message_id, payload, state, next_attempt_at, created_at, updated_at) \
         SELECT ?, ?, 'reply', ?, s.id, ?, ?, '{}', 'pending', ?, ?, ? FROM shops s \
         WHERE s.id = ? AND s.tenant_id = ? AND s.platform IN (SELECT value FROM json_each(?)) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(tenant.to_string())
    .bind(format!("reply:{message}"))
    .bind(conversation.to_string())
    .bind(message.to_string())
    .bind(&at)
    .bind(&at)
    .bind(&at)
    .bind(shop_id)
    .bind(tenant.to_string())
    .bind(serde_json::to_string(&with_channel).unwrap_or_else(|_| "[]".into()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const SHOP_COLUMNS: &str = "s.id, s.tenant_id, s.platform, s.shop_key, s.name, s.created_at";

fn shop_of(row: &sqlx::sqlite::SqliteRow, offset: usize) -> Result<Shop, StoreError> {
    use sqlx::Row;
    Shop::try_from(tenants::ShopRow {
        id: row.try_get(offset)?,
        tenant_id: row.try_get(offset + 1)?,
        platform: row.try_get(offset + 2)?,
        shop_key: row.try_get(offset + 3)?,
        name: row.try_get(offset + 4)?,
        created_at: row.try_get(offset + 5)?,
    })
}

fn opt_ts(raw: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    raw.as_deref().map(parse_ts).transpose()
}

/// Control characters removed and length capped: platform error texts end
/// up in an agent's note.
fn note_safe(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

async fn lease_one(
    tx: &mut Transaction<'static, Sqlite>,
    id: &str,
) -> Result<Option<OutboxItem>, StoreError> {
    use sqlx::Row;
    let row = sqlx::query(
        "SELECT o.id, o.tenant_id, o.kind, o.attempts, o.doubt_since, o.created_at, o.parts_sent, \
         o.conversation_id, o.message_id, o.endpoint_id, o.payload FROM outbox o WHERE o.id = ?",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let kind: String = row.try_get(2)?;
    let target = if kind == "reply" {
        let detail = sqlx::query(&format!(
            "SELECT {SHOP_COLUMNS}, b.platform_buyer_id, m.text FROM outbox o \
             JOIN shops s ON s.id = o.shop_id JOIN conversations c ON c.id = o.conversation_id \
             JOIN buyers b ON b.id = c.buyer_id JOIN messages m ON m.id = o.message_id \
             WHERE o.id = ?"
        ))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
        let buyer: String = detail.try_get(6)?;
        OutboxTarget::Reply {
            shop: shop_of(&detail, 0)?,
            conversation_id: parse_id(&row.try_get::<String, _>(7)?, "conversation")?,
            message_id: parse_id(&row.try_get::<String, _>(8)?, "message")?,
            buyer: PlatformBuyerId::parse(&buyer)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            text: detail.try_get(7)?,
            parts_sent: u32::try_from(row.try_get::<i64, _>(6)?).unwrap_or(0),
        }
    } else {
        let endpoint_id: String = row.try_get(9)?;
        let endpoint: Option<(String, String)> = sqlx::query_as(
            "SELECT url, secret FROM event_endpoints WHERE id = ? AND removed_at IS NULL",
        )
        .bind(&endpoint_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((url, secret)) = endpoint else {
            // The endpoint was removed: nothing left to deliver to.
            sqlx::query(
                "UPDATE outbox SET state = 'dead', last_error = 'endpoint removed', \
                 lease_owner = NULL, lease_until = NULL WHERE id = ?",
            )
            .bind(id)
            .execute(&mut **tx)
            .await?;
            return Ok(None);
        };
        let body: String = row.try_get(10)?;
        let event_type = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        OutboxTarget::Event {
            endpoint_id,
            url,
            secret: SecretString::from(secret),
            event_type,
            body,
        }
    };
    Ok(Some(OutboxItem {
        id: row.try_get(0)?,
        tenant_id: parse_id(&row.try_get::<String, _>(1)?, "tenant")?,
        target,
        attempts: u32::try_from(row.try_get::<i64, _>(3)?).unwrap_or(u32::MAX),
        in_doubt: row.try_get::<Option<String>, _>(4)?.is_some(),
        previous_attempt_at: opt_ts(row.try_get(4)?)?,
        created_at: parse_ts(&row.try_get::<String, _>(5)?)?,
    }))
}

/// Hands a reply's conversation to a human: it goes back to pending at
/// layer 3, with an internal note saying why the reply did not reach the
/// buyer.
async fn dead_letter_handoff(
    tx: &mut Transaction<'static, Sqlite>,
    id: &str,
    error: &str,
) -> Result<(), StoreError> {
    let row: Option<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT o.tenant_id, o.conversation_id, o.shop_id, o.message_id, s.platform FROM outbox o \
         JOIN shops s ON s.id = o.shop_id WHERE o.id = ? AND o.kind = 'reply'",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((tenant, conversation, shop_id, message, platform)) = row else {
        return Ok(());
    };
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    let conversation: ConversationId = parse_id(&conversation, "conversation")?;
    sqlx::query("UPDATE conversations SET status = 'pending', layer = 3 WHERE id = ?")
        .bind(conversation.to_string())
        .execute(&mut **tx)
        .await?;
    let reason = note_safe(error, 300);
    let note = NewReply {
        text: MessageText::from_stored(format!(
            "A reply could not be delivered to the buyer on {platform} ({reason}). \
             The conversation is yours: please answer the buyer."
        )),
        direction: Direction::Note,
        author: Author::System,
        author_name: Some("kedai".into()),
        external_id: None,
    };
    insert_message(tx, tenant, conversation, &shop_id, &note, now()).await?;
    insert_audit(
        tx,
        Some(tenant),
        &AuditEvent {
            actor: "system".into(),
            action: "reply.dead_letter".into(),
            subject_type: "message".into(),
            subject_id: message,
            details: serde_json::json!({
                "conversation_id": conversation,
                "outbox_id": id,
                "error": reason,
            }),
        },
    )
    .await
}

#[async_trait]
impl ChannelStore for SqliteStore {
    async fn channel_shops(
        &self,
        platform: Option<Platform>,
    ) -> Result<Vec<ChannelShop>, StoreError> {
        use sqlx::Row;
        let rows = sqlx::query(&format!(
            "SELECT {SHOP_COLUMNS}, s.credentials, a.account_id FROM shops s \
             LEFT JOIN channel_accounts a ON a.shop_id = s.id \
             WHERE (? IS NULL OR s.platform = ?) ORDER BY s.created_at"
        ))
        .bind(platform.map(Platform::as_str))
        .bind(platform.map(Platform::as_str))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ChannelShop {
                    shop: shop_of(row, 0)?,
                    credentials: SecretString::from(row.try_get::<String, _>(6)?),
                    account_id: row.try_get(7)?,
                })
            })
            .collect()
    }

    async fn channel_shop(&self, shop: ShopId) -> Result<Option<ChannelShop>, StoreError> {
        use sqlx::Row;
        let row = sqlx::query(&format!(
            "SELECT {SHOP_COLUMNS}, s.credentials, a.account_id FROM shops s \
             LEFT JOIN channel_accounts a ON a.shop_id = s.id WHERE s.id = ?"
        ))
        .bind(shop.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(ChannelShop {
                shop: shop_of(&row, 0)?,
                credentials: SecretString::from(row.try_get::<String, _>(6)?),
                account_id: row.try_get(7)?,
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
        let platform: Option<String> = sqlx::query_scalar(
            "UPDATE shops SET credentials = ? WHERE tenant_id = ? AND id = ? RETURNING platform",
        )
        .bind(update.credentials.expose_secret())
        .bind(tenant.to_string())
        .bind(shop.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(platform) = platform else {
            return Err(StoreError::NotFound {
                what: format!("shop {shop}"),
            });
        };
        sqlx::query("DELETE FROM channel_accounts WHERE shop_id = ?")
            .bind(shop.to_string())
            .execute(&mut *tx)
            .await?;
        if let Some(account) = &update.account_id {
            let inserted = sqlx::query(
                "INSERT INTO channel_accounts (shop_id, tenant_id, platform, account_id, updated_at) \
                 VALUES (?, ?, ?, ?, ?)",
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
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO channel_threads (shop_id, thread_id, platform_buyer_id, updated_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (shop_id, thread_id) DO UPDATE SET \
             platform_buyer_id = excluded.platform_buyer_id, updated_at = excluded.updated_at",
        )
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
        Ok(sqlx::query_scalar(
            "SELECT platform_buyer_id FROM channel_threads WHERE shop_id = ? AND thread_id = ?",
        )
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
        Ok(sqlx::query_scalar(
            "SELECT thread_id FROM channel_threads WHERE shop_id = ? AND platform_buyer_id = ? \
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(shop.to_string())
        .bind(buyer.as_str())
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn has_message(&self, shop: ShopId, external_id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM messages WHERE shop_id = ? AND external_id = ?")
                .bind(shop.to_string())
                .bind(external_id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(found.is_some())
    }

    async fn is_own_message(
        &self,
        shop: ShopId,
        platform_message_id: &str,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM channel_sent WHERE shop_id = ? AND platform_message_id = ?",
        )
        .bind(shop.to_string())
        .bind(platform_message_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(found.is_some())
    }

    async fn in_flight_replies(
        &self,
        shop: ShopId,
        buyer: &PlatformBuyerId,
    ) -> Result<Vec<InFlightReply>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT o.id, m.text, o.parts_sent FROM outbox o \
             JOIN messages m ON m.id = o.message_id \
             JOIN conversations c ON c.id = o.conversation_id \
             JOIN buyers b ON b.id = c.buyer_id \
             WHERE o.kind = 'reply' AND o.shop_id = ? AND o.state IN ('pending', 'sending') \
               AND b.platform_buyer_id = ? ORDER BY o.created_at, o.id",
        )
        .bind(shop.to_string())
        .bind(buyer.as_str())
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(outbox_id, text, parts)| InFlightReply {
                outbox_id,
                text,
                parts_sent: u32::try_from(parts).unwrap_or(0),
            })
            .collect())
    }

    async fn record_part_sent(
        &self,
        outbox_id: &str,
        part: u32,
        platform_message_id: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        record_part(&mut tx, outbox_id, part, platform_message_id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn lease_outbox(
        &self,
        owner: &str,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let at = now();
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE outbox SET state = 'sending', lease_owner = ?, lease_until = ?, \
             attempts = attempts + 1, \
             doubt_since = CASE WHEN state = 'sending' THEN COALESCE(doubt_since, attempt_started_at) \
                                ELSE doubt_since END, \
             attempt_started_at = ?, updated_at = ? \
             WHERE id IN (SELECT o.id FROM outbox o \
               WHERE ((o.state = 'pending' AND o.next_attempt_at <= ?) \
                      OR (o.state = 'sending' AND o.lease_until <= ?)) \
                 AND (o.kind = 'event' OR NOT EXISTS (SELECT 1 FROM outbox p \
                      WHERE p.kind = 'reply' AND p.conversation_id = o.conversation_id \
                        AND p.state IN ('pending', 'sending') \
                        AND (p.created_at < o.created_at OR (p.created_at = o.created_at AND p.id < o.id)))) \
               ORDER BY o.next_attempt_at, o.created_at LIMIT ?) \
             RETURNING id",
        )
        .bind(owner)
        .bind(ts(at + lease))
        .bind(ts(at))
        .bind(ts(at))
        .bind(ts(at))
        .bind(ts(at))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(item) = lease_one(&mut tx, &id).await? {
                items.push(item);
            }
        }
        tx.commit().await?;
        Ok(items)
    }

    async fn finish_outbox(
        &self,
        id: &str,
        owner: &str,
        outcome: &OutboxOutcome,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let held: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT kind, message_id, conversation_id FROM outbox \
             WHERE id = ? AND state = 'sending' AND lease_owner = ?",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((kind, message, conversation)) = held else {
            return Ok(false);
        };
        let at = ts(now());
        match outcome {
            OutboxOutcome::PartSent { part, platform_id } => {
                record_part(&mut tx, id, *part, platform_id).await?;
            }
            OutboxOutcome::Delivered => {
                sqlx::query(
                    "UPDATE outbox SET state = 'sent', sent_at = ?, updated_at = ?, \
                     lease_owner = NULL, lease_until = NULL, doubt_since = NULL, last_error = NULL \
                     WHERE id = ?",
                )
                .bind(&at)
                .bind(&at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if kind == "reply" {
                    let (tenant, platform_ids): (String, String) =
                        sqlx::query_as("SELECT tenant_id, platform_ids FROM outbox WHERE id = ?")
                            .bind(id)
                            .fetch_one(&mut *tx)
                            .await?;
                    insert_audit(
                        &mut tx,
                        Some(parse_id(&tenant, "tenant")?),
                        &AuditEvent {
                            actor: "system".into(),
                            action: "reply.sent".into(),
                            subject_type: "message".into(),
                            subject_id: message.unwrap_or_default(),
                            details: serde_json::json!({
                                "conversation_id": conversation,
                                "outbox_id": id,
                                "platform_message_ids": serde_json::from_str::<serde_json::Value>(&platform_ids)
                                    .unwrap_or_default(),
                            }),
                        },
                    )
                    .await?;
                }
            }
            OutboxOutcome::Retry {
                at: retry_at,
                error,
                in_doubt,
                counted,
            } => {
                sqlx::query(
                    "UPDATE outbox SET state = 'pending', next_attempt_at = ?, last_error = ?, \
                     lease_owner = NULL, lease_until = NULL, updated_at = ?, \
                     attempts = CASE WHEN ? THEN attempts ELSE MAX(attempts - 1, 0) END, \
                     doubt_since = CASE WHEN ? THEN COALESCE(doubt_since, attempt_started_at) \
                                        ELSE doubt_since END \
                     WHERE id = ?",
                )
                .bind(ts(*retry_at))
                .bind(note_safe(error, 1000))
                .bind(&at)
                .bind(*counted)
                .bind(*in_doubt)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            OutboxOutcome::Dead { error } => {
                sqlx::query(
                    "UPDATE outbox SET state = 'dead', last_error = ?, updated_at = ?, \
                     lease_owner = NULL, lease_until = NULL WHERE id = ?",
                )
                .bind(note_safe(error, 1000))
                .bind(&at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if kind == "reply" {
                    dead_letter_handoff(&mut tx, id, error).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM outbox GROUP BY state")
                .fetch_all(&self.reader)
                .await?;
        let mut counts = OutboxCounts::default();
        for (state, n) in rows {
            match state.as_str() {
                "pending" => counts.pending = n,
                "sending" => counts.sending = n,
                "sent" => counts.sent = n,
                "dead" => counts.dead = n,
                other => return Err(StoreError::Corrupt(format!("bad outbox state {other:?}"))),
            }
        }
        Ok(counts)
    }

    async fn cursor(&self, scope: &str, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM channel_cursors WHERE scope = ? AND name = ?")
                .bind(scope)
                .bind(name)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    async fn set_cursor(&self, scope: &str, name: &str, value: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO channel_cursors (scope, name, value, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
        )
        .bind(scope)
        .bind(name)
        .bind(value)
        .bind(ts(now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_endpoint(
        &self,
        tenant: TenantId,
        url: &str,
        secret: &SecretString,
        events: &[String],
    ) -> Result<EventEndpoint, StoreError> {
        let endpoint = EventEndpoint {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant,
            url: url.to_owned(),
            events: events.to_vec(),
            created_at: now(),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO event_endpoints (id, tenant_id, url, secret, events, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&endpoint.id)
        .bind(tenant.to_string())
        .bind(url)
        .bind(secret.expose_secret())
        .bind(serde_json::to_string(events).unwrap_or_else(|_| "[]".into()))
        .bind(ts(endpoint.created_at))
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: "cli".into(),
                action: "endpoint.added".into(),
                subject_type: "endpoint".into(),
                subject_id: endpoint.id.clone(),
                details: serde_json::json!({ "url": url, "events": events }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(endpoint)
    }

    async fn list_endpoints(&self, tenant: TenantId) -> Result<Vec<EventEndpoint>, StoreError> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT id, tenant_id, url, events, created_at FROM event_endpoints \
             WHERE tenant_id = ? AND removed_at IS NULL ORDER BY created_at",
        )
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(endpoint_of).collect()
    }

    async fn remove_endpoint(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query(
            "UPDATE event_endpoints SET removed_at = ? \
             WHERE tenant_id = ? AND id = ? AND removed_at IS NULL",
        )
        .bind(ts(now()))
        .bind(tenant.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if removed == 0 {
            return Ok(false);
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: "cli".into(),
                action: "endpoint.removed".into(),
                subject_type: "endpoint".into(),
                subject_id: id.to_owned(),
                details: serde_json::json!({}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn audit_after_cursor(
        &self,
        limit: u32,
    ) -> Result<(Vec<AuditEntry>, Vec<(EventEndpoint, SecretString)>), StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            seq: i64,
            tenant_id: Option<String>,
            at: String,
            action: String,
            subject_type: String,
            subject_id: String,
            details: String,
        }
        let mut conn = self.reader.begin().await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT seq, tenant_id, at, action, subject_type, subject_id, details FROM audit_log \
             WHERE seq > (SELECT audit_seq FROM event_cursor WHERE id = 1) ORDER BY seq LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let endpoints: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
            "SELECT id, tenant_id, url, events, created_at, secret FROM event_endpoints \
             WHERE removed_at IS NULL",
        )
        .fetch_all(&mut *conn)
        .await?;
        conn.commit().await?;
        let entries = rows
            .into_iter()
            .map(|row| {
                Ok(AuditEntry {
                    seq: row.seq,
                    tenant_id: row
                        .tenant_id
                        .as_deref()
                        .map(|t| parse_id(t, "tenant"))
                        .transpose()?,
                    at: parse_ts(&row.at)?,
                    action: row.action,
                    subject_type: row.subject_type,
                    subject_id: row.subject_id,
                    details: serde_json::from_str(&row.details).unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let endpoints = endpoints
            .into_iter()
            .map(|(id, tenant, url, events, created, secret)| {
                Ok((
                    endpoint_of((id, tenant, url, events, created))?,
                    SecretString::from(secret),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((entries, endpoints))
    }

    async fn enqueue_events(&self, batch: &EventBatch) -> Result<(), StoreError> {
        let at = ts(now());
        let mut tx = self.begin_write().await?;
        for event in &batch.events {
            sqlx::query(
                "INSERT INTO outbox (id, tenant_id, kind, idempotency_key, endpoint_id, payload, \
                 state, next_attempt_at, created_at, updated_at) \
                 VALUES (?, ?, 'event', ?, ?, ?, 'pending', ?, ?, ?) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(event.tenant_id.to_string())
            .bind(&event.idempotency_key)
            .bind(&event.endpoint_id)
            .bind(&event.body)
            .bind(&at)
            .bind(&at)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE event_cursor SET audit_seq = MAX(audit_seq, ?) WHERE id = 1")
            .bind(batch.through_seq)
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
        sqlx::query(
            "INSERT INTO widget_sessions (id, tenant_id, shop_id, secret_hash, name, created_at, \
             last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
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
        let row = sqlx::query(&format!(
            "SELECT {SHOP_COLUMNS}, w.id, w.secret_hash, w.name FROM widget_sessions w \
             JOIN shops s ON s.id = w.shop_id WHERE w.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            let shop = shop_of(&row, 0)?;
            Ok(WidgetSession {
                id: row.try_get(6)?,
                tenant_id: shop.tenant_id,
                shop,
                secret_hash: row.try_get(7)?,
                name: row.try_get(8)?,
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
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT m.id, m.direction, m.author, m.text, m.sent_at FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id JOIN buyers b ON b.id = c.buyer_id \
             WHERE b.shop_id = ? AND b.platform_buyer_id = ? AND m.direction != 'note' \
             ORDER BY m.sent_at DESC, m.id DESC LIMIT ?",
        )
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
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT m.id, m.tenant_id, m.conversation_id, s.shop_key, s.platform, m.sent_at, \
             m.received_at, COALESCE(m.language, b.language) AS language, d.flagged_at, \
             d.acknowledged_at \
             FROM conversations c JOIN shops s ON s.id = c.shop_id JOIN buyers b ON b.id = c.buyer_id \
             JOIN messages m ON m.id = (SELECT x.id FROM messages x WHERE x.conversation_id = c.id \
                  AND x.direction = 'inbound' AND x.seq > {ANSWERED_UP_TO} ORDER BY x.seq LIMIT 1) \
             LEFT JOIN response_deadlines d ON d.message_id = m.id \
             WHERE c.status != 'resolved' AND c.last_message_at >= ? \
             ORDER BY c.last_message_at LIMIT ?"
        ))
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
        let still: Option<(String, i64)> = sqlx::query_as(&format!(
            "SELECT m.shop_id, m.seq FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.id = ? AND m.tenant_id = ? AND c.status != 'resolved' \
               AND m.seq > (SELECT {ANSWERED_UP_TO_OF} FROM messages r WHERE r.conversation_id = m.conversation_id \
                            AND r.direction = 'outbound' AND r.author != 'system')"
        ))
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
        sqlx::query(
            "INSERT INTO response_deadlines (message_id, tenant_id, conversation_id, due_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(message.message_id.to_string())
        .bind(message.tenant_id.to_string())
        .bind(message.conversation_id.to_string())
        .bind(ts(*due_at))
        .execute(&mut *tx)
        .await?;
        let changed = sqlx::query(&format!(
            "UPDATE response_deadlines SET {column} = ? WHERE message_id = ? AND {column} IS NULL"
        ))
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
            sqlx::query_as(&format!(
                "SELECT d.message_id, d.conversation_id, d.due_at, d.flagged_at, d.acknowledged_at \
                 FROM response_deadlines d JOIN messages m ON m.id = d.message_id \
                 JOIN conversations c ON c.id = d.conversation_id \
                 WHERE d.tenant_id = ? AND d.flagged_at IS NOT NULL AND c.status != 'resolved' \
                   AND m.seq > (SELECT {ANSWERED_UP_TO_OF} FROM messages r \
                                WHERE r.conversation_id = m.conversation_id \
                                  AND r.direction = 'outbound' AND r.author != 'system') \
                 ORDER BY d.due_at LIMIT 500"
            ))
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
        let row = sqlx::query(&format!(
            "SELECT {SHOP_COLUMNS} FROM conversations c JOIN shops s ON s.id = c.shop_id \
             WHERE c.tenant_id = ? AND c.id = ?"
        ))
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| shop_of(&row, 0)).transpose()
    }

    async fn message_facts(&self, message: MessageId) -> Result<Option<MessageFacts>, StoreError> {
        use sqlx::Row;
        let row = sqlx::query(&format!(
            "SELECT {SHOP_COLUMNS}, m.conversation_id, m.kind, m.text, b.platform_buyer_id \
             FROM messages m JOIN shops s ON s.id = m.shop_id \
             JOIN conversations c ON c.id = m.conversation_id JOIN buyers b ON b.id = c.buyer_id \
             WHERE m.id = ?"
        ))
        .bind(message.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            let shop = shop_of(&row, 0)?;
            Ok(MessageFacts {
                tenant_id: shop.tenant_id,
                shop,
                conversation_id: parse_id(&row.try_get::<String, _>(6)?, "conversation")?,
                kind: parse_enum(&row.try_get::<String, _>(7)?, "message kind")?,
                text: row.try_get(8)?,
                buyer: row.try_get(9)?,
            })
        })
        .transpose()
    }

    async fn order_updated_at(
        &self,
        shop: ShopId,
        order_number: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<String> = sqlx::query_scalar(
            "SELECT updated_at FROM orders WHERE shop_id = ? AND order_number = ?",
        )
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

async fn record_part(
    tx: &mut Transaction<'static, Sqlite>,
    outbox_id: &str,
    part: u32,
    platform_message_id: &str,
) -> Result<(), StoreError> {
    let shop: Option<String> = sqlx::query_scalar(
        "UPDATE outbox SET parts_sent = MAX(parts_sent, ?), doubt_since = NULL, updated_at = ?, \
         platform_ids = CASE WHEN EXISTS (SELECT 1 FROM json_each(platform_ids) WHERE value = ?) \
                             THEN platform_ids ELSE json_insert(platform_ids, '$[#]', ?) END \
         WHERE id = ? AND state IN ('pending', 'sending') RETURNING shop_id",
    )
    .bind(i64::from(part) + 1)
    .bind(ts(now()))
    .bind(platform_message_id)
    .bind(platform_message_id)
    .bind(outbox_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(shop) = shop {
        sqlx::query(
            "INSERT INTO channel_sent (shop_id, platform_message_id, outbox_id) VALUES (?, ?, ?) \
             ON CONFLICT (shop_id, platform_message_id) DO NOTHING",
        )
        .bind(shop)
        .bind(platform_message_id)
        .bind(outbox_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn endpoint_of(
    (id, tenant, url, events, created): (String, String, String, String, String),
) -> Result<EventEndpoint, StoreError> {
    Ok(EventEndpoint {
        id,
        tenant_id: parse_id(&tenant, "tenant")?,
        url,
        events: serde_json::from_str(&events)
            .map_err(|e| StoreError::Corrupt(format!("endpoint events: {e}")))?,
        created_at: parse_ts(&created)?,
    })
}
