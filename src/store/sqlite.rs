//! [`Store`] on embedded SQLite in WAL mode.
//!
//! Writes go through a pool of exactly one connection, so writers queue in
//! the pool instead of fighting over SQLite's lock, and each write
//! transaction starts with `BEGIN IMMEDIATE` so another process (the CLI)
//! can only make it wait, never fail half-way. Reads use their own pool and
//! never block the writer. With `durability = "full"` every commit is fsynced
//! before the call returns.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::*;
use crate::config::{Durability, StoreSettings};

mod kb;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `settings.data_dir` and
    /// brings its schema up to date.
    pub async fn open(settings: &StoreSettings) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| StoreError::DataDir {
            path: settings.data_dir.clone(),
            source,
        })?;
        let path = settings.data_dir.join("kedai.sqlite");
        let synchronous = match settings.durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Normal => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_millis(settings.busy_timeout_ms));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.read_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Closes both pools, checkpointing the write-ahead log.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn parse_id<T: FromStr>(raw: &str, what: &str) -> Result<T, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad {what} id {raw:?}")))
}

fn parse_enum<T: serde::de::DeserializeOwned>(raw: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("bad {what} {raw:?}")))
}

fn enum_str<T: Serialize>(value: T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("unit enums serialise to strings, got {other:?}"),
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: String,
    name: String,
    created_at: String,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(row: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            id: parse_id(&row.id, "tenant")?,
            name: row.name,
            created_at: parse_ts(&row.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ShopRow {
    id: String,
    tenant_id: String,
    platform: String,
    shop_key: String,
    name: String,
    created_at: String,
}

impl TryFrom<ShopRow> for Shop {
    type Error = StoreError;
    fn try_from(row: ShopRow) -> Result<Self, StoreError> {
        Ok(Shop {
            id: parse_id(&row.id, "shop")?,
            tenant_id: parse_id(&row.tenant_id, "tenant")?,
            platform: row
                .platform
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("bad platform {:?}", row.platform)))?,
            key: ShopKey::parse(&row.shop_key).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            name: row.name,
            created_at: parse_ts(&row.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    tenant_id: String,
    label: String,
    prefix: String,
    created_at: String,
    revoked_at: Option<String>,
}

impl TryFrom<TokenRow> for TokenInfo {
    type Error = StoreError;
    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        Ok(TokenInfo {
            id: parse_id(&row.id, "token")?,
            tenant_id: parse_id(&row.tenant_id, "tenant")?,
            label: row.label,
            prefix: row.prefix,
            created_at: parse_ts(&row.created_at)?,
            revoked_at: row.revoked_at.as_deref().map(parse_ts).transpose()?,
        })
    }
}

const SUMMARY_COLUMNS: &str = "c.id, s.shop_key, s.platform, b.id AS buyer_id, \
     b.platform_buyer_id, b.display_name, c.status, c.layer, c.created_at, \
     c.last_message_at, c.message_count";

const SUMMARY_FROM: &str = "FROM conversations c \
     JOIN shops s ON s.id = c.shop_id \
     JOIN buyers b ON b.id = c.buyer_id";

#[derive(sqlx::FromRow)]
struct SummaryRow {
    id: String,
    shop_key: String,
    platform: String,
    buyer_id: String,
    platform_buyer_id: String,
    display_name: Option<String>,
    status: String,
    layer: Option<i64>,
    created_at: String,
    last_message_at: String,
    message_count: i64,
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
            created_at: parse_ts(&row.created_at)?,
            last_message_at: parse_ts(&row.last_message_at)?,
            message_count: row.message_count,
        })
    }
}

const MESSAGE_COLUMNS: &str = "id, conversation_id, external_id, direction, author, \
     author_name, text, language, translation, sent_at, received_at";

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: String,
    conversation_id: String,
    external_id: Option<String>,
    direction: String,
    author: String,
    author_name: Option<String>,
    text: String,
    language: Option<String>,
    translation: Option<String>,
    sent_at: String,
    received_at: String,
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
            language: row.language,
            translation: row.translation,
            sent_at: parse_ts(&row.sent_at)?,
            received_at: parse_ts(&row.received_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct BuyerRow {
    id: String,
    platform_buyer_id: String,
    display_name: Option<String>,
    language: Option<String>,
    member_level: Option<String>,
    is_vip: bool,
    lifetime_value_cents: i64,
    currency: Option<String>,
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

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: String,
    shop_key: String,
    platform_buyer_id: Option<String>,
    order_number: String,
    status: String,
    currency: String,
    total_cents: i64,
    items: String,
    carrier: Option<String>,
    tracking_number: Option<String>,
    tracking_events: String,
    placed_at: String,
    updated_at: String,
    destination: Option<String>,
    expected_delivery: Option<String>,
}

impl TryFrom<OrderRow> for Order {
    type Error = StoreError;
    fn try_from(row: OrderRow) -> Result<Self, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("order json: {e}"));
        Ok(Order {
            id: parse_id(&row.id, "order")?,
            shop: ShopKey::parse(&row.shop_key).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            record: OrderRecord {
                order_number: row.order_number,
                buyer: row
                    .platform_buyer_id
                    .as_deref()
                    .map(PlatformBuyerId::parse)
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                status: row.status,
                currency: row.currency,
                total_cents: row.total_cents,
                items: serde_json::from_str(&row.items).map_err(corrupt)?,
                carrier: row.carrier,
                tracking_number: row.tracking_number,
                tracking_events: serde_json::from_str(&row.tracking_events).map_err(corrupt)?,
                placed_at: parse_ts(&row.placed_at)?,
                destination: row.destination,
                expected_delivery: row.expected_delivery.as_deref().map(parse_ts).transpose()?,
            },
            updated_at: parse_ts(&row.updated_at)?,
        })
    }
}

/// Queues a job about `message_id`, due at once.
async fn insert_job(
    tx: &mut Transaction<'static, Sqlite>,
    tenant: TenantId,
    kind: &str,
    message_id: MessageId,
    max_attempts: u32,
    at: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO jobs (id, tenant_id, kind, payload, state, max_attempts, run_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
    )
    .bind(JobId::new().to_string())
    .bind(tenant.to_string())
    .bind(kind)
    .bind(serde_json::json!({ "message_id": message_id }).to_string())
    .bind(max_attempts)
    .bind(at)
    .bind(at)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_audit(
    tx: &mut Transaction<'static, Sqlite>,
    tenant: Option<TenantId>,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, at, actor, action, subject_type, subject_id, details) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant.map(|t| t.to_string()))
    .bind(ts(now()))
    .bind(&event.actor)
    .bind(&event.action)
    .bind(&event.subject_type)
    .bind(&event.subject_id)
    .bind(event.details.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The buyer's id, creating the buyer on first contact and taking a newer
/// display name when the channel sends one.
async fn upsert_buyer(
    tx: &mut Transaction<'static, Sqlite>,
    shop: &Shop,
    buyer: &crate::domain::BuyerRef,
) -> Result<BuyerId, StoreError> {
    let at = ts(now());
    let id: String = sqlx::query_scalar(
        "INSERT INTO buyers (id, tenant_id, shop_id, platform_buyer_id, display_name, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (shop_id, platform_buyer_id) DO UPDATE SET \
           display_name = COALESCE(excluded.display_name, buyers.display_name), \
           updated_at = excluded.updated_at \
         RETURNING id",
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

/// The columns of an `OrderRow`, with the shop and buyer keys joined in.
const ORDER_SELECT: &str = "SELECT o.id, s.shop_key, b.platform_buyer_id, o.order_number, \
     o.status, o.currency, o.total_cents, o.items, o.carrier, o.tracking_number, \
     o.tracking_events, o.placed_at, o.updated_at, o.destination, o.expected_delivery \
     FROM orders o JOIN shops s ON s.id = o.shop_id LEFT JOIN buyers b ON b.id = o.buyer_id";

async fn upsert_buyer_profile(
    tx: &mut Transaction<'static, Sqlite>,
    shop: &Shop,
    profile: &BuyerProfile,
    at: DateTime<Utc>,
) -> Result<BuyerId, StoreError> {
    let at = ts(at);
    let id: String = sqlx::query_scalar(
        "INSERT INTO buyers (id, tenant_id, shop_id, platform_buyer_id, display_name, language, \
         member_level, is_vip, lifetime_value_cents, currency, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (shop_id, platform_buyer_id) DO UPDATE SET \
           display_name = COALESCE(excluded.display_name, buyers.display_name), \
           language = COALESCE(excluded.language, buyers.language), \
           member_level = COALESCE(excluded.member_level, buyers.member_level), \
           is_vip = excluded.is_vip, \
           lifetime_value_cents = excluded.lifetime_value_cents, \
           currency = COALESCE(excluded.currency, buyers.currency), \
           updated_at = excluded.updated_at \
         RETURNING id",
    )
    .bind(BuyerId::new().to_string())
    .bind(shop.tenant_id.to_string())
    .bind(shop.id.to_string())
    .bind(profile.platform_buyer_id.as_str())
    .bind(profile.display_name.as_deref())
    .bind(profile.language.as_deref())
    .bind(profile.member_level.as_deref())
    .bind(profile.is_vip)
    .bind(profile.lifetime_value_cents)
    .bind(profile.currency.as_deref())
    .bind(&at)
    .bind(&at)
    .fetch_one(&mut **tx)
    .await?;
    parse_id(&id, "buyer")
}

/// Adds an outbound message or note to a conversation; outbound messages
/// also move the conversation's last-message time and count.
async fn insert_message(
    tx: &mut Transaction<'static, Sqlite>,
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
        language: None,
        translation: None,
        sent_at: at,
        received_at: at,
    };
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, conversation_id, shop_id, external_id, direction, \
         author, author_name, text, sent_at, received_at, seq) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
         (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?))",
    )
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
        sqlx::query(
            "UPDATE conversations SET last_message_at = ?, message_count = message_count + 1 \
             WHERE id = ?",
        )
        .bind(ts(at))
        .bind(conversation.to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(message)
}

#[derive(sqlx::FromRow)]
struct DecisionRow {
    id: String,
    conversation_id: String,
    message_id: String,
    layer: i64,
    action: String,
    draft: Option<String>,
    reply_message_id: Option<String>,
    trace: String,
    created_at: String,
}

/// Attempts for a decision's follow-up: it only adds a translation and a
/// summary, so a model that keeps failing is not worth more.
const ENRICH_MAX_ATTEMPTS: u32 = 3;

const DECISION_COLUMNS: &str = "id, conversation_id, message_id, layer, action, draft, \
     reply_message_id, trace, created_at";

impl TryFrom<DecisionRow> for Decision {
    type Error = StoreError;
    fn try_from(row: DecisionRow) -> Result<Self, StoreError> {
        let layer = u8::try_from(row.layer)
            .ok()
            .and_then(|l| Layer::try_from(l).ok())
            .ok_or_else(|| StoreError::Corrupt(format!("decision layer {}", row.layer)))?;
        Ok(Decision {
            id: parse_id(&row.id, "decision")?,
            conversation_id: parse_id(&row.conversation_id, "conversation")?,
            message_id: parse_id(&row.message_id, "message")?,
            layer,
            action: row.action,
            draft: row.draft,
            reply_message_id: row
                .reply_message_id
                .as_deref()
                .map(|id| parse_id(id, "message"))
                .transpose()?,
            trace: serde_json::from_str(&row.trace)
                .map_err(|e| StoreError::Corrupt(format!("decision trace: {e}")))?,
            created_at: parse_ts(&row.created_at)?,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &TenantName) -> Result<Tenant, StoreError> {
        let tenant = Tenant {
            id: TenantId::new(),
            name: name.as_str().to_owned(),
            created_at: now(),
        };
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
            .bind(tenant.id.to_string())
            .bind(&tenant.name)
            .bind(ts(tenant.created_at))
            .execute(&mut *tx)
            .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists {
                    what: format!("tenant {:?}", tenant.name),
                })
            }
            other => other?,
        };
        insert_audit(
            &mut tx,
            Some(tenant.id),
            &AuditEvent {
                actor: "system".into(),
                action: "tenant.created".into(),
                subject_type: "tenant".into(),
                subject_id: tenant.id.to_string(),
                details: serde_json::json!({ "name": tenant.name }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(tenant)
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        sqlx::query_as::<_, TenantRow>("SELECT id, name, created_at FROM tenants WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?
            .map(Tenant::try_from)
            .transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        sqlx::query_as::<_, TenantRow>("SELECT id, name, created_at FROM tenants ORDER BY name")
            .fetch_all(&self.reader)
            .await?
            .into_iter()
            .map(Tenant::try_from)
            .collect()
    }

    async fn create_token(&self, token: NewToken) -> Result<TokenInfo, StoreError> {
        let info = TokenInfo {
            id: TokenId::new(),
            tenant_id: token.tenant_id,
            label: token.label,
            prefix: token.prefix,
            created_at: now(),
            revoked_at: None,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, label, token_hash, prefix, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(info.id.to_string())
        .bind(info.tenant_id.to_string())
        .bind(&info.label)
        .bind(&token.token_hash)
        .bind(&info.prefix)
        .bind(ts(info.created_at))
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            Some(info.tenant_id),
            &AuditEvent {
                actor: "system".into(),
                action: "token.created".into(),
                subject_type: "token".into(),
                subject_id: info.id.to_string(),
                details: serde_json::json!({ "label": info.label, "prefix": info.prefix }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn revoke_token(&self, id: TokenId) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let tenant: Option<String> = sqlx::query_scalar(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL \
             RETURNING tenant_id",
        )
        .bind(ts(now()))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(tenant) = tenant else {
            return Ok(false);
        };
        insert_audit(
            &mut tx,
            Some(parse_id(&tenant, "tenant")?),
            &AuditEvent {
                actor: "system".into(),
                action: "token.revoked".into(),
                subject_type: "token".into(),
                subject_id: id.to_string(),
                details: serde_json::json!({}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_tokens(&self, tenant: TenantId) -> Result<Vec<TokenInfo>, StoreError> {
        sqlx::query_as::<_, TokenRow>(
            "SELECT id, tenant_id, label, prefix, created_at, revoked_at FROM api_tokens \
             WHERE tenant_id = ? ORDER BY created_at",
        )
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(TokenInfo::try_from)
        .collect()
    }

    async fn authenticate(
        &self,
        token_hash: &str,
    ) -> Result<Option<(TenantId, TokenId)>, StoreError> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT tenant_id, id FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|(tenant, token)| Ok((parse_id(&tenant, "tenant")?, parse_id(&token, "token")?)))
            .transpose()
    }

    async fn add_shop(&self, shop: NewShop) -> Result<Shop, StoreError> {
        let record = Shop {
            id: ShopId::new(),
            tenant_id: shop.tenant_id,
            platform: shop.platform,
            key: shop.key,
            name: shop.name,
            created_at: now(),
        };
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO shops (id, tenant_id, platform, shop_key, name, credentials, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.id.to_string())
        .bind(record.tenant_id.to_string())
        .bind(record.platform.as_str())
        .bind(record.key.as_str())
        .bind(&record.name)
        .bind(shop.credentials.expose_secret())
        .bind(ts(record.created_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists {
                    what: format!("shop {:?}", record.key.as_str()),
                })
            }
            other => other?,
        };
        insert_audit(
            &mut tx,
            Some(record.tenant_id),
            &AuditEvent {
                actor: "system".into(),
                action: "shop.added".into(),
                subject_type: "shop".into(),
                subject_id: record.id.to_string(),
                details: serde_json::json!({
                    "platform": record.platform,
                    "shop": record.key,
                    "name": record.name,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn list_shops(&self, tenant: TenantId) -> Result<Vec<Shop>, StoreError> {
        sqlx::query_as::<_, ShopRow>(
            "SELECT id, tenant_id, platform, shop_key, name, created_at FROM shops \
             WHERE tenant_id = ? ORDER BY shop_key",
        )
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(Shop::try_from)
        .collect()
    }

    async fn shop_by_key(
        &self,
        tenant: TenantId,
        key: &ShopKey,
    ) -> Result<Option<Shop>, StoreError> {
        sqlx::query_as::<_, ShopRow>(
            "SELECT id, tenant_id, platform, shop_key, name, created_at FROM shops \
             WHERE tenant_id = ? AND shop_key = ?",
        )
        .bind(tenant.to_string())
        .bind(key.as_str())
        .fetch_optional(&self.reader)
        .await?
        .map(Shop::try_from)
        .transpose()
    }

    async fn ingest(
        &self,
        shop: &Shop,
        message: &InboundMessage,
        max_attempts: u32,
    ) -> Result<IngestOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let existing: Option<(String, String)> = sqlx::query_as(
            "SELECT id, conversation_id FROM messages WHERE shop_id = ? AND external_id = ?",
        )
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
        let open: Option<String> = sqlx::query_scalar(
            "SELECT id FROM conversations WHERE buyer_id = ? AND status != 'resolved' \
             ORDER BY last_message_at DESC LIMIT 1",
        )
        .bind(buyer_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let conversation_id = match open {
            Some(id) => {
                sqlx::query(
                    "UPDATE conversations SET last_message_at = ?, message_count = message_count + 1, \
                     status = 'open' WHERE id = ?",
                )
                .bind(&received_ts)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                parse_id(&id, "conversation")?
            }
            None => {
                let id = ConversationId::new();
                sqlx::query(
                    "INSERT INTO conversations (id, tenant_id, shop_id, buyer_id, status, created_at, \
                     last_message_at, message_count) VALUES (?, ?, ?, ?, 'open', ?, ?, 1)",
                )
                .bind(id.to_string())
                .bind(shop.tenant_id.to_string())
                .bind(shop.id.to_string())
                .bind(buyer_id.to_string())
                .bind(&received_ts)
                .bind(&received_ts)
                .execute(&mut *tx)
                .await?;
                id
            }
        };

        let message_id = MessageId::new();
        sqlx::query(
            "INSERT INTO messages (id, tenant_id, conversation_id, shop_id, external_id, direction, \
             author, author_name, text, sent_at, received_at, seq) \
             VALUES (?, ?, ?, ?, ?, 'inbound', 'buyer', ?, ?, ?, ?, \
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?))",
        )
        .bind(message_id.to_string())
        .bind(shop.tenant_id.to_string())
        .bind(conversation_id.to_string())
        .bind(shop.id.to_string())
        .bind(message.external_id.as_str())
        .bind(message.buyer.name.as_deref())
        .bind(message.text.as_str())
        .bind(ts(message.sent_at))
        .bind(&received_ts)
        .bind(conversation_id.to_string())
        .execute(&mut *tx)
        .await?;

        insert_job(
            &mut tx,
            shop.tenant_id,
            JOB_INBOUND_MESSAGE,
            message_id,
            max_attempts,
            &received_ts,
        )
        .await?;

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
                }),
            },
        )
        .await?;
        tx.commit().await?;
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
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(format!(
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
        let row: Option<SummaryRow> = sqlx::query_as(&format!(
            "SELECT {SUMMARY_COLUMNS} {SUMMARY_FROM} WHERE c.tenant_id = ? AND c.id = ?"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let summary = ConversationSummary::try_from(row)?;
        let buyer: BuyerRow = sqlx::query_as(
            "SELECT id, platform_buyer_id, display_name, language, member_level, is_vip, \
             lifetime_value_cents, currency FROM buyers WHERE id = ?",
        )
        .bind(summary.buyer_id.to_string())
        .fetch_one(&mut *conn)
        .await?;
        let messages = sqlx::query_as::<_, MessageRow>(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY seq"
        ))
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
        let shop_id: Option<String> =
            sqlx::query_scalar("SELECT shop_id FROM conversations WHERE tenant_id = ? AND id = ?")
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
            let existing: Option<MessageRow> = sqlx::query_as(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE shop_id = ? AND external_id = ?"
            ))
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
        Ok((message, false))
    }

    async fn record_decision(
        &self,
        tenant: TenantId,
        decision: &NewDecision,
    ) -> Result<(Decision, bool), StoreError> {
        let mut tx = self.begin_write().await?;
        let existing: Option<DecisionRow> = sqlx::query_as(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE tenant_id = ? AND message_id = ?"
        ))
        .bind(tenant.to_string())
        .bind(decision.message.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = existing {
            return Ok((Decision::try_from(existing)?, true));
        }
        let shop_id: Option<String> = sqlx::query_scalar(
            "SELECT c.shop_id FROM conversations c JOIN messages m ON m.conversation_id = c.id \
             WHERE c.tenant_id = ? AND c.id = ? AND m.id = ? AND m.direction = 'inbound'",
        )
        .bind(tenant.to_string())
        .bind(decision.conversation.to_string())
        .bind(decision.message.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(shop_id) = shop_id else {
            return Err(StoreError::NotFound {
                what: format!(
                    "inbound message {} in conversation {}",
                    decision.message, decision.conversation
                ),
            });
        };
        let at = now();
        let reply = match &decision.reply {
            Some(reply) => Some(
                insert_message(&mut tx, tenant, decision.conversation, &shop_id, reply, at).await?,
            ),
            None => None,
        };
        let trace = serde_json::to_string(&decision.trace)
            .map_err(|e| StoreError::Corrupt(format!("decision trace: {e}")))?;
        let stored = Decision {
            id: DecisionId::new(),
            conversation_id: decision.conversation,
            message_id: decision.message,
            layer: decision.layer,
            action: decision.action.clone(),
            draft: decision.draft.clone(),
            reply_message_id: reply.as_ref().map(|m| m.id),
            trace: decision.trace.clone(),
            created_at: at,
        };
        sqlx::query(&format!(
            "INSERT INTO decisions ({DECISION_COLUMNS}, tenant_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(stored.id.to_string())
        .bind(stored.conversation_id.to_string())
        .bind(stored.message_id.to_string())
        .bind(i64::from(stored.layer.get()))
        .bind(&stored.action)
        .bind(stored.draft.as_deref())
        .bind(stored.reply_message_id.map(|id| id.to_string()))
        .bind(trace)
        .bind(ts(at))
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE messages SET processed_at = COALESCE(processed_at, ?), \
             language = COALESCE(?, language), translation = COALESCE(?, translation) WHERE id = ?",
        )
        .bind(ts(at))
        .bind(decision.language.as_deref())
        .bind(decision.translation.as_deref())
        .bind(decision.message.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE conversations SET layer = ?, status = ? WHERE id = ?")
            .bind(i64::from(decision.layer.get()))
            .bind(enum_str(decision.status))
            .bind(decision.conversation.to_string())
            .execute(&mut *tx)
            .await?;
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: "ai".into(),
                action: "pipeline.decided".into(),
                subject_type: "message".into(),
                subject_id: decision.message.to_string(),
                details: serde_json::json!({
                    "conversation_id": decision.conversation,
                    "decision_id": stored.id,
                    "layer": decision.layer,
                    "action": decision.action,
                    "reasons": decision.trace.get("reasons"),
                    "reply_message_id": stored.reply_message_id,
                }),
            },
        )
        .await?;
        if decision.follow_up {
            insert_job(
                &mut tx,
                tenant,
                JOB_ENRICH_DECISION,
                decision.message,
                ENRICH_MAX_ATTEMPTS,
                &ts(at),
            )
            .await?;
        }
        tx.commit().await?;
        Ok((stored, false))
    }

    async fn set_conversation_status(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        status: ConversationStatus,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed =
            sqlx::query("UPDATE conversations SET status = ? WHERE tenant_id = ? AND id = ?")
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
        Ok(true)
    }

    async fn enrich_decision(
        &self,
        tenant: TenantId,
        message: MessageId,
        enrichment: &DecisionEnrichment,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT id, trace FROM decisions WHERE tenant_id = ? AND message_id = ?",
        )
        .bind(tenant.to_string())
        .bind(message.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, trace)) = row else {
            return Ok(false);
        };
        let mut trace: serde_json::Value = serde_json::from_str(&trace)
            .map_err(|e| StoreError::Corrupt(format!("decision {id} trace: {e}")))?;
        let Some(fields) = trace.as_object_mut() else {
            return Err(StoreError::Corrupt(format!(
                "decision {id} trace is not an object"
            )));
        };
        for (key, value) in &enrichment.trace {
            fields.insert(key.clone(), value.clone());
        }
        sqlx::query("UPDATE decisions SET trace = ? WHERE id = ?")
            .bind(trace.to_string())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        if let Some(translation) = &enrichment.translation {
            sqlx::query("UPDATE messages SET translation = ? WHERE tenant_id = ? AND id = ?")
                .bind(translation)
                .bind(tenant.to_string())
                .bind(message.to_string())
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: "ai".into(),
                action: "pipeline.enriched".into(),
                subject_type: "message".into(),
                subject_id: message.to_string(),
                details: serde_json::json!({
                    "decision_id": id,
                    "added": enrichment.trace.keys().collect::<Vec<_>>(),
                    "translation": enrichment.translation.is_some(),
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn message_conversation(
        &self,
        tenant: TenantId,
        message: MessageId,
    ) -> Result<Option<ConversationId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT conversation_id FROM messages WHERE tenant_id = ? AND id = ?",
        )
        .bind(tenant.to_string())
        .bind(message.to_string())
        .fetch_optional(&self.reader)
        .await?;
        id.as_deref()
            .map(|id| parse_id(id, "conversation"))
            .transpose()
    }

    async fn decisions(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Vec<Decision>, StoreError> {
        sqlx::query_as::<_, DecisionRow>(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE tenant_id = ? AND conversation_id = ? \
             ORDER BY created_at, id"
        ))
        .bind(tenant.to_string())
        .bind(conversation.to_string())
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(Decision::try_from)
        .collect()
    }

    async fn upsert_order(
        &self,
        shop: &Shop,
        order: &OrderRecord,
        buyer: Option<&BuyerProfile>,
    ) -> Result<Order, StoreError> {
        let mut tx = self.begin_write().await?;
        let at = now();
        if let Some(profile) = buyer {
            upsert_buyer_profile(&mut tx, shop, profile, at).await?;
        }
        let buyer_id: Option<String> = match &order.buyer {
            Some(buyer) => {
                sqlx::query_scalar(
                    "SELECT id FROM buyers WHERE shop_id = ? AND platform_buyer_id = ?",
                )
                .bind(shop.id.to_string())
                .bind(buyer.as_str())
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let encode = |e: serde_json::Result<String>| {
            e.map_err(|e| StoreError::Corrupt(format!("order json: {e}")))
        };
        let items = encode(serde_json::to_string(&order.items))?;
        let events = encode(serde_json::to_string(&order.tracking_events))?;
        let id: String = sqlx::query_scalar(
            "INSERT INTO orders (id, tenant_id, shop_id, buyer_id, order_number, status, currency, \
             total_cents, items, carrier, tracking_number, tracking_events, placed_at, updated_at, \
             destination, expected_delivery) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (shop_id, order_number) DO UPDATE SET \
               buyer_id = COALESCE(excluded.buyer_id, orders.buyer_id), status = excluded.status, \
               currency = excluded.currency, total_cents = excluded.total_cents, \
               items = excluded.items, carrier = excluded.carrier, \
               tracking_number = excluded.tracking_number, \
               tracking_events = excluded.tracking_events, placed_at = excluded.placed_at, \
               updated_at = excluded.updated_at, destination = excluded.destination, \
               expected_delivery = excluded.expected_delivery \
             RETURNING id",
        )
        .bind(OrderId::new().to_string())
        .bind(shop.tenant_id.to_string())
        .bind(shop.id.to_string())
        .bind(buyer_id)
        .bind(&order.order_number)
        .bind(&order.status)
        .bind(&order.currency)
        .bind(order.total_cents)
        .bind(items)
        .bind(order.carrier.as_deref())
        .bind(order.tracking_number.as_deref())
        .bind(events)
        .bind(ts(order.placed_at))
        .bind(ts(at))
        .bind(order.destination.as_deref())
        .bind(order.expected_delivery.map(ts))
        .fetch_one(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            Some(shop.tenant_id),
            &AuditEvent {
                actor: format!("channel:{}", shop.platform),
                action: "order.upserted".into(),
                subject_type: "order".into(),
                subject_id: id.clone(),
                details: serde_json::json!({
                    "shop": shop.key,
                    "order_number": order.order_number,
                    "status": order.status,
                    "buyer": order.buyer.as_ref().map(|b| b.as_str()),
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Order {
            id: parse_id(&id, "order")?,
            shop: shop.key.clone(),
            record: order.clone(),
            updated_at: at,
        })
    }

    async fn order(&self, tenant: TenantId, id: OrderId) -> Result<Option<Order>, StoreError> {
        sqlx::query_as::<_, OrderRow>(&format!(
            "{ORDER_SELECT} WHERE o.tenant_id = ? AND o.id = ?"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await?
        .map(Order::try_from)
        .transpose()
    }

    async fn list_orders(
        &self,
        tenant: TenantId,
        filter: &OrderFilter,
    ) -> Result<Vec<Order>, StoreError> {
        sqlx::query_as::<_, OrderRow>(&format!(
            "{ORDER_SELECT} WHERE o.tenant_id = ? \
             AND (? IS NULL OR s.shop_key = ?) \
             AND (? IS NULL OR b.platform_buyer_id = ?) \
             ORDER BY o.placed_at DESC, o.id DESC LIMIT ?"
        ))
        .bind(tenant.to_string())
        .bind(filter.shop.as_ref().map(|s| s.as_str()))
        .bind(filter.shop.as_ref().map(|s| s.as_str()))
        .bind(filter.buyer.as_ref().map(|b| b.as_str()))
        .bind(filter.buyer.as_ref().map(|b| b.as_str()))
        .bind(i64::from(filter.limit.max(1)))
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(Order::try_from)
        .collect()
    }

    async fn orders_for_buyer(
        &self,
        tenant: TenantId,
        buyer: BuyerId,
    ) -> Result<Vec<Order>, StoreError> {
        sqlx::query_as::<_, OrderRow>(&format!(
            "{ORDER_SELECT} WHERE o.tenant_id = ? AND o.buyer_id = ? ORDER BY o.placed_at DESC"
        ))
        .bind(tenant.to_string())
        .bind(buyer.to_string())
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(Order::try_from)
        .collect()
    }

    async fn append_audit(
        &self,
        tenant: Option<TenantId>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_audit(&mut tx, tenant, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_log(
        &self,
        tenant: TenantId,
        limit: u32,
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
        sqlx::query_as::<_, Row>(
            "SELECT seq, at, actor, action, subject_type, subject_id, details FROM audit_log \
             WHERE tenant_id = ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(tenant.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(|row| {
            Ok(AuditRecord {
                seq: row.seq,
                at: parse_ts(&row.at)?,
                event: AuditEvent {
                    actor: row.actor,
                    action: row.action,
                    subject_type: row.subject_type,
                    subject_id: row.subject_id,
                    details: serde_json::from_str(&row.details)
                        .map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))?,
                },
            })
        })
        .collect()
    }

    async fn lease_jobs(&self, request: LeaseRequest<'_>) -> Result<Vec<Job>, StoreError> {
        let at = now();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_until = NULL, \
             last_error = COALESCE(last_error, 'lease expired on the final attempt'), updated_at = ? \
             WHERE state = 'leased' AND lease_until <= ? AND attempts >= max_attempts",
        )
        .bind(ts(at))
        .bind(ts(at))
        .execute(&mut *tx)
        .await?;
        // Kinds go in as a JSON array, so the statement stays one prepared
        // query whatever their number.
        let kinds = request
            .kinds
            .map(|k| serde_json::to_string(k).unwrap_or_else(|_| "[]".into()));
        let rows: Vec<(String, Option<String>, String, String, i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET state = 'leased', lease_owner = ?, lease_until = ?, \
             attempts = attempts + 1, updated_at = ? \
             WHERE id IN (SELECT id FROM jobs \
                          WHERE ((state = 'queued' AND run_at <= ?) \
                                 OR (state = 'leased' AND lease_until <= ?)) \
                            AND (? IS NULL OR kind IN (SELECT value FROM json_each(?))) \
                          ORDER BY kind != ?, run_at LIMIT ?) \
             RETURNING id, tenant_id, kind, payload, attempts, max_attempts",
        )
        .bind(request.owner)
        .bind(ts(at + request.lease))
        .bind(ts(at))
        .bind(ts(at))
        .bind(ts(at))
        .bind(kinds.as_deref())
        .bind(kinds.as_deref())
        .bind(JOB_INBOUND_MESSAGE)
        .bind(i64::from(request.limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|(id, tenant, kind, payload, attempts, max_attempts)| {
                Ok(Job {
                    id: parse_id(&id, "job")?,
                    tenant_id: tenant
                        .as_deref()
                        .map(|t| parse_id(t, "tenant"))
                        .transpose()?,
                    kind,
                    payload: serde_json::from_str(&payload)
                        .map_err(|e| StoreError::Corrupt(format!("job payload: {e}")))?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    async fn complete_job(&self, id: JobId, owner: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL, updated_at = ? \
             WHERE id = ? AND state = 'leased' AND lease_owner = ?",
        )
        .bind(ts(now()))
        .bind(id.to_string())
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(done == 1)
    }

    async fn fail_job(
        &self,
        id: JobId,
        owner: &str,
        error: &str,
        failure: JobFailure,
    ) -> Result<bool, StoreError> {
        let at = ts(now());
        let (state, run_at) = match failure {
            JobFailure::RetryAt(when) => ("queued", ts(when)),
            JobFailure::Dead => ("dead", at.clone()),
        };
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE jobs SET state = ?, run_at = ?, last_error = ?, lease_owner = NULL, \
             lease_until = NULL, updated_at = ? \
             WHERE id = ? AND state = 'leased' AND lease_owner = ?",
        )
        .bind(state)
        .bind(run_at)
        .bind(error)
        .bind(&at)
        .bind(id.to_string())
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated == 1)
    }

    async fn release_jobs(&self, owner: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let released = sqlx::query(
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, \
             attempts = MAX(attempts - 1, 0), updated_at = ? \
             WHERE state = 'leased' AND lease_owner = ?",
        )
        .bind(ts(now()))
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(released)
    }

    async fn prune_done_jobs(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let pruned = sqlx::query("DELETE FROM jobs WHERE state = 'done' AND updated_at < ?")
            .bind(ts(before))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    async fn job_counts(&self) -> Result<JobCounts, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
                .fetch_all(&self.reader)
                .await?;
        let mut counts = JobCounts::default();
        for (state, n) in rows {
            match state.as_str() {
                "queued" => counts.queued = n,
                "leased" => counts.leased = n,
                "done" => counts.done = n,
                "dead" => counts.dead = n,
                other => return Err(StoreError::Corrupt(format!("bad job state {other:?}"))),
            }
        }
        Ok(counts)
    }

    async fn mark_processed(&self, message: MessageId) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE messages SET processed_at = COALESCE(processed_at, ?) WHERE id = ?")
            .bind(ts(now()))
            .bind(message.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::domain::{BuyerRef, TextLimits};

    async fn open() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::TempDir::new().unwrap();
        let mut settings = Settings::defaults().store;
        settings.data_dir = dir.path().to_path_buf();
        (SqliteStore::open(&settings).await.unwrap(), dir)
    }

    async fn tenant_with_shop(store: &SqliteStore, name: &str) -> Shop {
        let tenant = store
            .create_tenant(&TenantName::parse(name).unwrap())
            .await
            .unwrap();
        store
            .add_shop(NewShop {
                tenant_id: tenant.id,
                platform: Platform::Shopee,
                key: ShopKey::parse("shop-1").unwrap(),
                name: "Shop".into(),
                credentials: secrecy::SecretString::from(r#"{"partner_key":"s3cret"}"#),
            })
            .await
            .unwrap()
    }

    fn inbound(external_id: &str, buyer: &str) -> InboundMessage {
        InboundMessage {
            shop: ShopKey::parse("shop-1").unwrap(),
            external_id: crate::domain::ExternalMessageId::parse(external_id).unwrap(),
            buyer: BuyerRef {
                id: PlatformBuyerId::parse(buyer).unwrap(),
                name: None,
            },
            text: MessageText::parse("where is my order?", TextLimits { max_chars: 100 }).unwrap(),
            sent_at: Utc::now(),
        }
    }

    fn order(number: &str, status: &str) -> OrderRecord {
        OrderRecord {
            order_number: number.into(),
            buyer: Some(PlatformBuyerId::parse("buyer-1").unwrap()),
            status: status.into(),
            currency: "THB".into(),
            total_cents: 45_900,
            items: vec![OrderItem {
                sku: "DRS-RED-XL".into(),
                name: "Red dress, XL".into(),
                quantity: 1,
                unit_price_cents: 45_900,
            }],
            carrier: Some("Flash Express".into()),
            tracking_number: Some("TH0123456789".into()),
            tracking_events: vec![TrackingEvent {
                at: Utc::now(),
                status: "picked up".into(),
                location: Some("Bangkok".into()),
                description: None,
            }],
            placed_at: Utc::now(),
            destination: Some("TH".into()),
            expected_delivery: None,
        }
    }

    #[tokio::test]
    async fn orders_upsert_by_number_and_attach_to_the_buyer() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        let ack = store
            .ingest(&shop, &inbound("m-1", "buyer-1"), 3)
            .await
            .unwrap();
        let first = store
            .upsert_order(&shop, &order("ORD-1", "shipped"), None)
            .await
            .unwrap();
        let second = store
            .upsert_order(&shop, &order("ORD-1", "delivered"), None)
            .await
            .unwrap();
        assert_eq!(first.id, second.id, "same order number, same order");

        let detail = store
            .conversation(shop.tenant_id, ack.conversation_id)
            .await
            .unwrap()
            .unwrap();
        let orders = store
            .orders_for_buyer(shop.tenant_id, detail.buyer.id)
            .await
            .unwrap();
        assert_eq!(orders.len(), 1);
        assert_eq!(orders[0].record.status, "delivered");
        assert_eq!(orders[0].record.items, order("ORD-1", "x").items);
        assert_eq!(
            orders[0].record.tracking_number.as_deref(),
            Some("TH0123456789")
        );

        let other = tenant_with_shop(&store, "other").await;
        assert!(store
            .orders_for_buyer(other.tenant_id, detail.buyer.id)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn an_order_with_a_buyer_profile_creates_the_buyer_and_lists_by_filter() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        let profile = BuyerProfile {
            platform_buyer_id: PlatformBuyerId::parse("buyer-9").unwrap(),
            display_name: Some("Nadia".into()),
            language: Some("id".into()),
            member_level: Some("gold".into()),
            is_vip: true,
            lifetime_value_cents: 18_240,
            currency: Some("USD".into()),
        };
        let mut record = order("ORD-9", "shipped");
        record.buyer = Some(profile.platform_buyer_id.clone());
        record.expected_delivery = Some(Utc::now());
        let stored = store
            .upsert_order(&shop, &record, Some(&profile))
            .await
            .unwrap();
        store
            .upsert_order(&shop, &order("ORD-10", "paid"), None)
            .await
            .unwrap();

        let read = store
            .order(shop.tenant_id, stored.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.record.destination.as_deref(), Some("TH"));
        assert_eq!(
            read.record.expected_delivery.map(|t| t.timestamp()),
            record.expected_delivery.map(|t| t.timestamp())
        );
        let by_buyer = store
            .list_orders(
                shop.tenant_id,
                &OrderFilter {
                    buyer: Some(profile.platform_buyer_id.clone()),
                    limit: 10,
                    ..OrderFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(by_buyer.len(), 1);
        assert_eq!(by_buyer[0].record.order_number, "ORD-9");
        let all = store
            .list_orders(
                shop.tenant_id,
                &OrderFilter {
                    limit: 10,
                    ..OrderFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(all.len(), 2);

        let other = tenant_with_shop(&store, "other").await;
        assert!(store
            .order(other.tenant_id, stored.id)
            .await
            .unwrap()
            .is_none());
        assert!(store
            .list_orders(
                other.tenant_id,
                &OrderFilter {
                    limit: 10,
                    ..OrderFilter::default()
                }
            )
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_decision_is_stored_once_with_its_reply_and_moves_the_conversation() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        let ack = store
            .ingest(&shop, &inbound("m-1", "buyer-1"), 3)
            .await
            .unwrap();
        let decision = NewDecision {
            conversation: ack.conversation_id,
            message: ack.message_id,
            layer: Layer::try_from(1).unwrap(),
            action: "send".into(),
            language: Some("id".into()),
            translation: Some("Where is my parcel?".into()),
            reply: Some(NewReply {
                text: MessageText::from_stored("Pesanan SPE-1 dalam perjalanan.".into()),
                direction: Direction::Outbound,
                author: Author::Ai,
                author_name: None,
                external_id: None,
            }),
            draft: None,
            status: ConversationStatus::Open,
            trace: serde_json::json!({"intent": "order_status", "reasons": []}),
            follow_up: true,
        };
        let (first, repeated) = store
            .record_decision(shop.tenant_id, &decision)
            .await
            .unwrap();
        assert!(!repeated);
        let (second, repeated) = store
            .record_decision(shop.tenant_id, &decision)
            .await
            .unwrap();
        assert!(repeated, "a job that runs twice decides once");
        assert_eq!(first.id, second.id);
        assert_eq!(second.trace["intent"], "order_status");

        let detail = store
            .conversation(shop.tenant_id, ack.conversation_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(detail.summary.layer.map(Layer::get), Some(1));
        assert_eq!(
            detail.messages.len(),
            2,
            "the buyer's message and one reply"
        );
        assert_eq!(detail.messages[0].language.as_deref(), Some("id"));
        assert_eq!(detail.messages[1].author, Author::Ai);
        assert_eq!(Some(detail.messages[1].id), first.reply_message_id);
        let listed = store
            .decisions(shop.tenant_id, ack.conversation_id)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);

        let other = tenant_with_shop(&store, "other").await;
        assert!(store
            .decisions(other.tenant_id, ack.conversation_id)
            .await
            .unwrap()
            .is_empty());
        let foreign = store.record_decision(other.tenant_id, &decision).await;
        assert!(
            matches!(foreign, Err(StoreError::NotFound { .. })),
            "another tenant cannot decide on this message"
        );
        let log = store.audit_log(shop.tenant_id, 100).await.unwrap();
        assert_eq!(
            log.iter()
                .filter(|r| r.event.action == "pipeline.decided")
                .count(),
            1
        );

        // A buyer message that arrives after the follow-up was queued is
        // still leased first; a worker for buyer messages alone never
        // gets the follow-up.
        let later = store
            .ingest(&shop, &inbound("m-later", "other-buyer"), 1)
            .await
            .unwrap();
        let lease = |limit, kinds| LeaseRequest {
            owner: "w",
            limit,
            lease: chrono::Duration::seconds(30),
            kinds,
        };
        let buyers_only = [JOB_INBOUND_MESSAGE];
        let first = store.lease_jobs(lease(1, None)).await.unwrap();
        assert_eq!(first[0].kind, JOB_INBOUND_MESSAGE);
        let second = store.lease_jobs(lease(1, None)).await.unwrap();
        assert_eq!(second[0].kind, JOB_INBOUND_MESSAGE);
        let leased_messages = [&first[0], &second[0]]
            .iter()
            .map(|j| j.payload["message_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        assert!(leased_messages.contains(&later.message_id.to_string()));
        assert!(store
            .lease_jobs(lease(10, Some(&buyers_only)))
            .await
            .unwrap()
            .is_empty());
        let follow_ups = store.lease_jobs(lease(10, None)).await.unwrap();
        assert_eq!(
            follow_ups.len(),
            1,
            "one follow-up, queued once: {follow_ups:?}"
        );
        assert_eq!(follow_ups[0].kind, JOB_ENRICH_DECISION);
        assert_eq!(
            follow_ups[0].payload["message_id"],
            ack.message_id.to_string()
        );

        let mut added = serde_json::Map::new();
        added.insert("summary".into(), serde_json::json!("Buyer asks for SPE-1."));
        let enrichment = DecisionEnrichment {
            translation: Some("Where is my parcel SPE-1?".into()),
            trace: added,
        };
        assert!(store
            .enrich_decision(shop.tenant_id, ack.message_id, &enrichment)
            .await
            .unwrap());
        assert!(
            !store
                .enrich_decision(other.tenant_id, ack.message_id, &enrichment)
                .await
                .unwrap(),
            "another tenant's decision is out of reach"
        );
        let enriched = &store
            .decisions(shop.tenant_id, ack.conversation_id)
            .await
            .unwrap()[0];
        assert_eq!(enriched.trace["summary"], "Buyer asks for SPE-1.");
        assert_eq!(enriched.trace["intent"], "order_status", "the rest is kept");
        let detail = store
            .conversation(shop.tenant_id, ack.conversation_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            detail.messages[0].translation.as_deref(),
            Some("Where is my parcel SPE-1?")
        );
    }

    #[tokio::test]
    async fn old_done_jobs_are_pruned_and_others_kept() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        for id in ["m-1", "m-2", "m-3"] {
            store.ingest(&shop, &inbound(id, "b"), 1).await.unwrap();
        }
        let lease = |limit| LeaseRequest {
            owner: "w",
            limit,
            lease: chrono::Duration::seconds(30),
            kinds: None,
        };
        let jobs = store.lease_jobs(lease(2)).await.unwrap();
        assert!(store.complete_job(jobs[0].id, "w").await.unwrap());
        store
            .fail_job(jobs[1].id, "w", "broken", JobFailure::Dead)
            .await
            .unwrap();

        let kept = store
            .prune_done_jobs(Utc::now() - chrono::Duration::hours(1))
            .await
            .unwrap();
        assert_eq!(kept, 0, "a job done just now is kept");
        let pruned = store
            .prune_done_jobs(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(pruned, 1, "only the done job goes");
        let counts = store.job_counts().await.unwrap();
        assert_eq!((counts.done, counts.dead, counts.queued), (0, 1, 1));
    }

    #[tokio::test]
    async fn the_audit_log_refuses_updates_and_deletes() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        let before = store.audit_log(shop.tenant_id, 100).await.unwrap().len();
        assert!(before >= 2, "tenant and shop creation are audited");
        let update = sqlx::query("UPDATE audit_log SET action = 'x'")
            .execute(&store.writer)
            .await;
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = sqlx::query("DELETE FROM audit_log")
            .execute(&store.writer)
            .await;
        assert!(delete.unwrap_err().to_string().contains("append-only"));
        assert_eq!(
            store.audit_log(shop.tenant_id, 100).await.unwrap().len(),
            before
        );
    }

    #[tokio::test]
    async fn shop_credentials_are_stored_but_never_in_audit_details() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        let audit = store.audit_log(shop.tenant_id, 100).await.unwrap();
        let text = serde_json::to_string(&audit).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        let stored: String = sqlx::query_scalar("SELECT credentials FROM shops WHERE id = ?")
            .bind(shop.id.to_string())
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert!(stored.contains("s3cret"));
    }

    #[tokio::test]
    async fn a_lease_that_runs_out_passes_the_job_to_another_worker() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        store.ingest(&shop, &inbound("m-1", "b"), 2).await.unwrap();
        let short = LeaseRequest {
            owner: "crashed-worker",
            limit: 10,
            lease: chrono::Duration::milliseconds(-1),
            kinds: None,
        };
        let first = store.lease_jobs(short).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].attempts, 1);
        let takeover = store
            .lease_jobs(LeaseRequest {
                owner: "second-worker",
                limit: 10,
                lease: chrono::Duration::seconds(60),
                kinds: None,
            })
            .await
            .unwrap();
        assert_eq!(takeover.len(), 1, "an expired lease is up for grabs");
        assert_eq!(takeover[0].attempts, 2);
        assert!(
            !store
                .complete_job(first[0].id, "crashed-worker")
                .await
                .unwrap(),
            "the first owner lost its lease"
        );
        assert!(store
            .complete_job(first[0].id, "second-worker")
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn a_job_whose_last_lease_runs_out_is_dead_lettered() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        store.ingest(&shop, &inbound("m-1", "b"), 1).await.unwrap();
        let expired = LeaseRequest {
            owner: "w",
            limit: 10,
            lease: chrono::Duration::milliseconds(-1),
            kinds: None,
        };
        assert_eq!(store.lease_jobs(expired).await.unwrap().len(), 1);
        assert!(store.lease_jobs(expired).await.unwrap().is_empty());
        let counts = store.job_counts().await.unwrap();
        assert_eq!((counts.dead, counts.leased, counts.queued), (1, 0, 0));
    }

    #[tokio::test]
    async fn a_resolved_conversation_is_not_reopened_by_a_new_message() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        let first = store.ingest(&shop, &inbound("m-1", "b"), 3).await.unwrap();
        let other = tenant_with_shop(&store, "other").await;
        assert!(
            !store
                .set_conversation_status(
                    other.tenant_id,
                    first.conversation_id,
                    ConversationStatus::Resolved,
                    "agent"
                )
                .await
                .unwrap(),
            "another tenant cannot resolve it"
        );
        assert!(store
            .set_conversation_status(
                shop.tenant_id,
                first.conversation_id,
                ConversationStatus::Resolved,
                "agent"
            )
            .await
            .unwrap());
        let second = store.ingest(&shop, &inbound("m-2", "b"), 3).await.unwrap();
        assert_ne!(first.conversation_id, second.conversation_id);
        let log = store.audit_log(shop.tenant_id, 100).await.unwrap();
        assert!(log.iter().any(|r| r.event.action == "conversation.status"));
    }
}
