//! The outbox: enqueueing replies with their messages, leasing due
//! deliveries (one `UPDATE … RETURNING` over a subquery that picks due rows
//! and skips any reply with an older undelivered reply in its
//! conversation; on PostgreSQL the subquery becomes `FOR UPDATE SKIP
//! LOCKED`), recording outcomes and dead-lettering to a human, and the
//! event dispatcher's endpoints and cursor. PostgreSQL implementation of
//! [`OutboxStore`].

use super::channels::{note_safe, opt_ts, shop_of, SHOP_COLUMNS, SHOP_WIDTH};
use super::*;
use secrecy::ExposeSecret;

/// Writes the outbox row of an outbound message when its shop has a
/// channel; a no-op for other shops and for a message enqueued before.
pub(super) async fn enqueue_reply(
    tx: &mut Transaction<'static, Postgres>,
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
    sqlx::query(&pg("INSERT INTO outbox (id, tenant_id, kind, idempotency_key, shop_id, conversation_id, \
         message_id, payload, state, next_attempt_at, created_at, updated_at, traceparent) \
         SELECT ?, ?, 'reply', ?, s.id, ?, ?, '{}', 'pending', ?, ?, ?, ? FROM shops s \
         WHERE s.id = ? AND s.tenant_id = ? AND s.platform IN (SELECT value FROM jsonb_array_elements_text(?::jsonb)) \
         ON CONFLICT (idempotency_key) DO NOTHING"),
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(tenant.to_string())
    .bind(format!("reply:{message}"))
    .bind(conversation.to_string())
    .bind(message.to_string())
    .bind(&at)
    .bind(&at)
    .bind(&at)
    .bind(crate::telemetry::current_traceparent())
    .bind(shop_id)
    .bind(tenant.to_string())
    .bind(serde_json::to_string(&with_channel).unwrap_or_else(|_| "[]".into()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn lease_one(
    tx: &mut Transaction<'static, Postgres>,
    id: &str,
) -> Result<Option<OutboxItem>, StoreError> {
    use sqlx::Row;
    let row = sqlx::query(&pg(
        "SELECT o.id, o.tenant_id, o.kind, o.attempts, o.doubt_since, o.created_at, o.parts_sent, \
         o.conversation_id, o.message_id, o.endpoint_id, o.payload, o.traceparent \
         FROM outbox o WHERE o.id = ?",
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let kind: String = row.try_get(2)?;
    let target = if kind == "reply" {
        let detail = sqlx::query(&pg(&format!(
            "SELECT {SHOP_COLUMNS}, b.platform_buyer_id, m.text FROM outbox o \
             JOIN shops s ON s.id = o.shop_id JOIN conversations c ON c.id = o.conversation_id \
             JOIN buyers b ON b.id = c.buyer_id JOIN messages m ON m.id = o.message_id \
             WHERE o.id = ?"
        )))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
        let buyer: String = detail.try_get(SHOP_WIDTH)?;
        OutboxTarget::Reply {
            shop: shop_of(&detail, 0)?,
            conversation_id: parse_id(&row.try_get::<String, _>(7)?, "conversation")?,
            message_id: parse_id(&row.try_get::<String, _>(8)?, "message")?,
            buyer: PlatformBuyerId::parse(&buyer)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            text: detail.try_get(SHOP_WIDTH + 1)?,
            parts_sent: u32::try_from(row.try_get::<i64, _>(6)?).unwrap_or(0),
        }
    } else {
        let endpoint_id: String = row.try_get(9)?;
        let endpoint: Option<(String, String)> = sqlx::query_as(&pg(
            "SELECT url, secret FROM event_endpoints WHERE id = ? AND removed_at IS NULL",
        ))
        .bind(&endpoint_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((url, secret)) = endpoint else {
            // The endpoint was removed: nothing left to deliver to.
            sqlx::query(&pg(
                "UPDATE outbox SET state = 'dead', last_error = 'endpoint removed', \
                 lease_owner = NULL, lease_until = NULL WHERE id = ?",
            ))
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
        traceparent: row.try_get(11)?,
    }))
}

/// Hands a reply's conversation to a human: it goes back to pending at
/// layer 3, with an internal note saying why the reply did not reach the
/// buyer.
async fn dead_letter_handoff(
    tx: &mut Transaction<'static, Postgres>,
    id: &str,
    error: &str,
) -> Result<(), StoreError> {
    let row: Option<(String, String, String, String, String)> = sqlx::query_as(&pg(
        "SELECT o.tenant_id, o.conversation_id, o.shop_id, o.message_id, s.platform FROM outbox o \
         JOIN shops s ON s.id = o.shop_id WHERE o.id = ? AND o.kind = 'reply'",
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((tenant, conversation, shop_id, message, platform)) = row else {
        return Ok(());
    };
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    let conversation: ConversationId = parse_id(&conversation, "conversation")?;
    sqlx::query(&pg(
        "UPDATE conversations SET status = 'pending', layer = 3 WHERE id = ?",
    ))
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

async fn record_part(
    tx: &mut Transaction<'static, Postgres>,
    outbox_id: &str,
    part: u32,
    platform_message_id: &str,
) -> Result<(), StoreError> {
    let shop: Option<String> = sqlx::query_scalar(&pg("UPDATE outbox SET parts_sent = GREATEST(parts_sent, ?), doubt_since = NULL, updated_at = ?, \
         platform_ids = CASE WHEN EXISTS (SELECT 1::BIGINT FROM jsonb_array_elements_text(platform_ids::jsonb) WHERE value = ?) \
                             THEN platform_ids ELSE (platform_ids::jsonb || to_jsonb(?::text))::text END \
         WHERE id = ? AND state IN ('pending', 'sending') RETURNING shop_id"),
    )
    .bind(i64::from(part) + 1)
    .bind(ts(now()))
    .bind(platform_message_id)
    .bind(platform_message_id)
    .bind(outbox_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(shop) = shop {
        sqlx::query(&pg(
            "INSERT INTO channel_sent (shop_id, platform_message_id, outbox_id) VALUES (?, ?, ?) \
             ON CONFLICT (shop_id, platform_message_id) DO NOTHING",
        ))
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

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn is_own_message(
        &self,
        shop: ShopId,
        platform_message_id: &str,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(&pg(
            "SELECT 1::BIGINT FROM channel_sent WHERE shop_id = ? AND platform_message_id = ?",
        ))
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
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as(&pg("SELECT o.id, m.text, o.parts_sent FROM outbox o \
             JOIN messages m ON m.id = o.message_id \
             JOIN conversations c ON c.id = o.conversation_id \
             JOIN buyers b ON b.id = c.buyer_id \
             WHERE o.kind = 'reply' AND o.shop_id = ? \
               AND (o.state = 'sending' OR (o.state = 'pending' AND o.doubt_since IS NOT NULL)) \
               AND b.platform_buyer_id = ? ORDER BY o.created_at, o.id"))
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
        // The outbox polls several times a second; asking a read
        // connection first keeps idle polls off the one write connection,
        // where webhooks wait to commit.
        let due: Option<i64> = sqlx::query_scalar(&pg(
            "SELECT 1::BIGINT FROM outbox WHERE (state = 'pending' AND next_attempt_at <= ?) \
             OR (state = 'sending' AND lease_until <= ?) LIMIT 1",
        ))
        .bind(ts(at))
        .bind(ts(at))
        .fetch_optional(&self.reader)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        // No global write lock: the search locks what it takes `FOR UPDATE
        // SKIP LOCKED`, so replicas' outbox workers take different
        // deliveries at once. A reply whose earlier sibling another replica
        // is taking is still `pending` to this search, so it waits its turn.
        let mut tx = self.writer.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(&pg("UPDATE outbox SET state = 'sending', lease_owner = ?, lease_until = ?, \
             attempts = attempts + 1, \
             doubt_since = CASE WHEN state = 'sending' THEN COALESCE(doubt_since, attempt_started_at) \
                                ELSE doubt_since END, \
             attempt_started_at = ?, updated_at = ? \
             WHERE id IN (SELECT o.id FROM outbox o \
               WHERE ((o.state = 'pending' AND o.next_attempt_at <= ?) \
                      OR (o.state = 'sending' AND o.lease_until <= ?)) \
                 AND (o.kind = 'event' OR NOT EXISTS (SELECT 1::BIGINT FROM outbox p \
                      WHERE p.kind = 'reply' AND p.conversation_id = o.conversation_id \
                        AND p.state IN ('pending', 'sending') \
                        AND (p.created_at < o.created_at OR (p.created_at = o.created_at AND p.id < o.id)))) \
               ORDER BY o.next_attempt_at, o.created_at LIMIT ? \
               FOR UPDATE OF o SKIP LOCKED) \
             RETURNING id"),
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
        let held: Option<(String, String, Option<String>, Option<String>)> = sqlx::query_as(&pg(
            "SELECT kind, tenant_id, message_id, conversation_id FROM outbox \
             WHERE id = ? AND state = 'sending' AND lease_owner = ?",
        ))
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((kind, tenant, message, conversation)) = held else {
            return Ok(false);
        };
        // Open conversation pages show where a reply stands.
        let announce = match (kind.as_str(), &conversation) {
            ("reply", Some(conversation)) => Some((
                parse_id::<TenantId>(&tenant, "tenant")?,
                parse_id::<ConversationId>(conversation, "conversation")?,
            )),
            _ => None,
        };
        let at = ts(now());
        match outcome {
            OutboxOutcome::PartSent { part, platform_id } => {
                record_part(&mut tx, id, *part, platform_id).await?;
            }
            OutboxOutcome::Delivered => {
                sqlx::query(&pg(
                    "UPDATE outbox SET state = 'sent', sent_at = ?, updated_at = ?, \
                     lease_owner = NULL, lease_until = NULL, doubt_since = NULL, last_error = NULL \
                     WHERE id = ?",
                ))
                .bind(&at)
                .bind(&at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if kind == "reply" {
                    let platform_ids: String =
                        sqlx::query_scalar(&pg("SELECT platform_ids FROM outbox WHERE id = ?"))
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
                sqlx::query(&pg(
                    "UPDATE outbox SET state = 'pending', next_attempt_at = ?, last_error = ?, \
                     lease_owner = NULL, lease_until = NULL, updated_at = ?, \
                     attempts = CASE WHEN ? THEN attempts ELSE GREATEST(attempts - 1, 0) END, \
                     doubt_since = CASE WHEN ? THEN COALESCE(doubt_since, attempt_started_at) \
                                        ELSE doubt_since END \
                     WHERE id = ?",
                ))
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
                sqlx::query(&pg(
                    "UPDATE outbox SET state = 'dead', last_error = ?, updated_at = ?, \
                     lease_owner = NULL, lease_until = NULL WHERE id = ?",
                ))
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
        if let Some((tenant, conversation)) = announce {
            self.announce(tenant, conversation, None, ChangeKind::Delivery);
        }
        Ok(true)
    }

    async fn prune_outbox(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&pg("DELETE FROM channel_sent WHERE outbox_id IN \
             (SELECT id FROM outbox WHERE state = 'sent' AND updated_at < ?)"))
        .bind(ts(before))
        .execute(&mut *tx)
        .await?;
        let pruned = sqlx::query(&pg(
            "DELETE FROM outbox WHERE state = 'sent' AND updated_at < ?",
        ))
        .bind(ts(before))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as(&pg("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
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

    async fn reply_deliveries(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Vec<ReplyDelivery>, StoreError> {
        let rows: Vec<(String, String, i64, i64, Option<String>, String)> = sqlx::query_as(&pg(
            "SELECT message_id, state, attempts, parts_sent, last_error, updated_at FROM outbox \
             WHERE tenant_id = ? AND conversation_id = ? AND kind = 'reply' \
             ORDER BY created_at, id",
        ))
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(message, state, attempts, parts, error, updated)| {
                Ok(ReplyDelivery {
                    message_id: parse_id(&message, "message")?,
                    state: DeliveryState::parse(&state).ok_or_else(|| {
                        StoreError::Corrupt(format!("bad outbox state {state:?}"))
                    })?,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    parts_sent: u32::try_from(parts).unwrap_or(0),
                    last_error: error,
                    updated_at: parse_ts(&updated)?,
                })
            })
            .collect()
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
        sqlx::query(&pg(
            "INSERT INTO event_endpoints (id, tenant_id, url, secret, events, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        ))
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
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(&pg(
            "SELECT id, tenant_id, url, events, created_at FROM event_endpoints \
             WHERE tenant_id = ? AND removed_at IS NULL ORDER BY created_at",
        ))
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(endpoint_of).collect()
    }

    async fn remove_endpoint(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query(&pg("UPDATE event_endpoints SET removed_at = ? \
             WHERE tenant_id = ? AND id = ? AND removed_at IS NULL"))
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
        let rows: Vec<Row> = sqlx::query_as(&pg(
            "SELECT seq, tenant_id, at, action, subject_type, subject_id, details FROM audit_log \
             WHERE seq > (SELECT audit_seq FROM event_cursor WHERE id = 1) ORDER BY seq LIMIT ?",
        ))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let endpoints: Vec<(String, String, String, String, String, String)> = sqlx::query_as(&pg(
            "SELECT id, tenant_id, url, events, created_at, secret FROM event_endpoints \
             WHERE removed_at IS NULL",
        ))
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
            sqlx::query(&pg(
                "INSERT INTO outbox (id, tenant_id, kind, idempotency_key, endpoint_id, payload, \
                 state, next_attempt_at, created_at, updated_at) \
                 VALUES (?, ?, 'event', ?, ?, ?, 'pending', ?, ?, ?) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            ))
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
        sqlx::query(&pg(
            "UPDATE event_cursor SET audit_seq = GREATEST(audit_seq, ?) WHERE id = 1",
        ))
        .bind(batch.through_seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
