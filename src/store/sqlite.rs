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
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::*;
use crate::config::{Durability, StoreSettings};

mod audit;
mod channels;
mod conversations;
mod decisions;
mod desk;
mod facts;
mod jobs;
mod kb;
mod learning;
mod operators;
mod orders;
mod outbox;
mod privacy;
mod reports;
mod schema;
mod suggestions;
mod tenants;
mod timers;
mod translations;
mod users;

use audit::insert_audit;
use conversations::insert_message;
use jobs::insert_job;
use schema::{ahead_message, backup_before_migrating, latest_version, schema_state, SchemaState};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    credentials: std::sync::Arc<super::credentials::CredentialKey>,
    changes: std::sync::Arc<InProcessFeed>,
}

impl Store for SqliteStore {
    fn changes(&self) -> &dyn ChangeFeed {
        self.changes.as_ref()
    }
}

/// What opening the store may do to the database's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Bring the schema up to date, backing the database up first when it
    /// already holds data: `kedai serve` and `kedai migrate` only.
    Migrate,
    /// Require the schema this kedai was built for and change nothing;
    /// every other command.
    Current,
}

/// What [`SqliteStore::open_migrating`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    /// The schema version before and after (0: an empty database).
    pub from: i64,
    pub to: i64,
    /// The copy of the database taken before migrating it, when it held
    /// data.
    pub backup: Option<std::path::PathBuf>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `settings.data_dir`; with
    /// [`Schema::Current`] an out-of-date or newer schema is an error that
    /// says what to do, with [`Schema::Migrate`] the schema is brought up
    /// to date.
    pub async fn open(settings: &StoreSettings, schema: Schema) -> Result<SqliteStore, StoreError> {
        match schema {
            Schema::Migrate => Ok(Self::open_migrating(settings).await?.0),
            Schema::Current => {
                let writer = Self::writer_pool(settings).await?;
                let latest = latest_version();
                let problem = match schema_state(&writer).await? {
                    SchemaState::Current(_) => None,
                    SchemaState::Behind { applied: 0, .. } => Some(format!(
                        "the database in {} is not set up yet; run `kedai migrate` (or start \
                         `kedai serve`, which sets it up) first",
                        settings.data_dir.display()
                    )),
                    SchemaState::Behind { applied, latest } => Some(format!(
                        "the database in {} has schema version {applied} but this kedai needs \
                         {latest}; stop the server and run `kedai migrate` (it backs the \
                         database up first)",
                        settings.data_dir.display()
                    )),
                    SchemaState::Ahead { applied, .. } => Some(ahead_message(settings, applied)),
                };
                if let Some(problem) = problem {
                    writer.close().await;
                    return Err(StoreError::Schema(problem));
                }
                tracing::debug!(version = latest, "schema is current");
                Self::with_reader(settings, writer).await
            }
        }
    }

    /// Opens the database and brings its schema up to date, first copying a
    /// database that holds data to `<data_dir>/backups/`. A schema newer
    /// than this kedai's is refused.
    pub async fn open_migrating(
        settings: &StoreSettings,
    ) -> Result<(SqliteStore, MigrationReport), StoreError> {
        let writer = Self::writer_pool(settings).await?;
        let latest = latest_version();
        let (from, backup) = match schema_state(&writer).await? {
            SchemaState::Current(version) => (version, None),
            SchemaState::Ahead { applied, .. } => {
                writer.close().await;
                return Err(StoreError::Schema(ahead_message(settings, applied)));
            }
            SchemaState::Behind { applied: 0, .. } => (0, None),
            SchemaState::Behind { applied, .. } => {
                let backup = backup_before_migrating(settings, &writer, applied).await?;
                (applied, Some(backup))
            }
        };
        if from != latest {
            MIGRATOR.run(&writer).await?;
            tracing::info!(from, to = latest, backup = ?backup, "database schema migrated");
        }
        let store = Self::with_reader(settings, writer).await?;
        Ok((
            store,
            MigrationReport {
                from,
                to: latest,
                backup,
            },
        ))
    }

    fn options(settings: &StoreSettings) -> SqliteConnectOptions {
        let synchronous = match settings.durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Normal => SqliteSynchronous::Normal,
        };
        SqliteConnectOptions::new()
            .filename(settings.data_dir.join("kedai.sqlite"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_millis(settings.busy_timeout_ms))
    }

    async fn writer_pool(settings: &StoreSettings) -> Result<SqlitePool, StoreError> {
        let data_dir_error = |source| StoreError::DataDir {
            path: settings.data_dir.clone(),
            source,
        };
        // Buyer conversations and the credentials key live here: the
        // directory and the database are the owner's alone.
        super::private_file::private_dir(&settings.data_dir).map_err(data_dir_error)?;
        let path = settings.data_dir.join("kedai.sqlite");
        if !path.exists() {
            // SQLite gives its -wal and -shm files the database's mode.
            match super::private_file::create_new(&path) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(data_dir_error(err)),
            }
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            super::private_file::restrict(std::path::Path::new(&file), 0o600);
        }
        Ok(SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(Self::options(settings))
            .await?)
    }

    async fn with_reader(
        settings: &StoreSettings,
        writer: SqlitePool,
    ) -> Result<SqliteStore, StoreError> {
        let credentials = std::sync::Arc::new(super::credentials::CredentialKey::load(settings)?);
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.read_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(Self::options(settings).read_only(true))
            .await?;
        let store = SqliteStore {
            writer,
            reader,
            credentials,
            changes: Default::default(),
        };
        store.seal_plain_credentials().await?;
        Ok(store)
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Tells live pages, after a commit, that a conversation changed.
    fn announce(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        shop: Option<ShopId>,
        kind: ChangeKind,
    ) {
        self.changes.publish(Change {
            tenant,
            conversation,
            shop,
            kind,
        });
    }

    /// The writer's connection, for `kedai store copy`.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Checkpoints the write-ahead log into the database file and closes
    /// both pools; the server calls it on shutdown, after its workers have
    /// stopped, so the database is whole in one file.
    pub async fn close(&self) {
        self.reader.close().await;
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await
        {
            tracing::warn!(error = %err, "could not checkpoint the write-ahead log");
        }
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

#[cfg(test)]
pub(crate) mod testkit {
    //! What the store tests of every aggregate share.
    use super::*;
    use crate::config::Settings;
    use crate::domain::{BuyerRef, TextLimits};

    pub async fn open() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::TempDir::new().unwrap();
        let mut settings = Settings::defaults().store;
        settings.data_dir = dir.path().to_path_buf();
        (
            SqliteStore::open(&settings, Schema::Migrate).await.unwrap(),
            dir,
        )
    }

    pub async fn tenant_with_shop(store: &SqliteStore, name: &str) -> Shop {
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
                market: Market::default(),
                credentials: secrecy::SecretString::from(r#"{"partner_key":"s3cret"}"#),
            })
            .await
            .unwrap()
    }

    pub fn inbound(external_id: &str, buyer: &str) -> InboundMessage {
        InboundMessage {
            shop: ShopKey::parse("shop-1").unwrap(),
            external_id: crate::domain::ExternalMessageId::parse(external_id).unwrap(),
            buyer: BuyerRef {
                id: PlatformBuyerId::parse(buyer).unwrap(),
                name: None,
            },
            text: MessageText::parse("where is my order?", TextLimits { max_chars: 100 }).unwrap(),
            sent_at: Utc::now(),
            sender: crate::domain::Sender::Buyer,
            attachment: None,
        }
    }

    pub fn order(number: &str, status: &str) -> OrderRecord {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    use super::testkit::{inbound, open, order, tenant_with_shop};

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
            is_vip: Some(true),
            lifetime_value_cents: Some(18_240),
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
            action: Action::Send,
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
            lane: None,
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
        // A conversation's jobs run one at a time: the follow-up waits for
        // the buyer message in hand.
        assert!(store.lease_jobs(lease(10, None)).await.unwrap().is_empty());
        for job in [&first[0], &second[0]] {
            assert!(store.complete_job(job.id, "w").await.unwrap());
        }
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

        let enrichment = DecisionEnrichment {
            translation: Some("Where is my parcel SPE-1?".into()),
            draft: Some("Your parcel SPE-1 is on its way.".into()),
            follow_up: serde_json::json!({"summary": "Buyer asks for SPE-1."}),
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
        assert_eq!(
            enriched.follow_up.as_ref().unwrap()["summary"],
            "Buyer asks for SPE-1."
        );
        assert_eq!(
            enriched.trace["intent"], "order_status",
            "the trace is kept"
        );
        assert_eq!(
            enriched.draft.as_deref(),
            Some("Your parcel SPE-1 is on its way."),
            "a draft left to the follow-up is kept where the decision had none"
        );
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
            store.ingest(&shop, &inbound(id, id), 1).await.unwrap();
        }
        let lease = |limit| LeaseRequest {
            owner: "w",
            limit,
            lease: chrono::Duration::seconds(30),
            kinds: None,
            lane: None,
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
    async fn l10_shop_credentials_are_encrypted_at_rest_and_never_in_audit_details() {
        let (store, dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        let audit = store.audit_log(shop.tenant_id, 100).await.unwrap();
        let text = serde_json::to_string(&audit).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        let stored: String = sqlx::query_scalar("SELECT credentials FROM shops WHERE id = ?")
            .bind(shop.id.to_string())
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert!(stored.starts_with("enc:v1:"), "{stored}");
        assert!(!stored.contains("s3cret"));
        let opened = store
            .shop_credentials(shop.tenant_id, &shop.key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&opened),
            r#"{"partner_key":"s3cret"}"#
        );

        // Credentials written before encryption existed are sealed when the
        // store next opens.
        sqlx::query("UPDATE shops SET credentials = ? WHERE id = ?")
            .bind(r#"{"partner_key":"old"}"#)
            .bind(shop.id.to_string())
            .execute(&store.writer)
            .await
            .unwrap();
        store.close().await;
        let mut settings = Settings::defaults().store;
        settings.data_dir = dir.path().to_path_buf();
        let store = SqliteStore::open(&settings, Schema::Migrate).await.unwrap();
        let stored: String = sqlx::query_scalar("SELECT credentials FROM shops WHERE id = ?")
            .bind(shop.id.to_string())
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert!(stored.starts_with("enc:v1:"), "{stored}");
        let opened = store
            .shop_credentials(shop.tenant_id, &shop.key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&opened),
            r#"{"partner_key":"old"}"#
        );
    }

    #[tokio::test]
    async fn m8_tokens_made_before_scopes_existed_stay_tenant_admins() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        // The columns of the first schema only, as an older kedai wrote.
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, label, token_hash, prefix, created_at) \
             VALUES (?, ?, 'old', 'hash-of-old', 'kd_old', ?)",
        )
        .bind(TokenId::new().to_string())
        .bind(shop.tenant_id.to_string())
        .bind(ts(now()))
        .execute(&store.writer)
        .await
        .unwrap();
        let grant = store.authenticate("hash-of-old").await.unwrap().unwrap();
        assert_eq!(grant.scopes, crate::auth::Scopes::admin());
        assert!(grant.expires_at.is_none() && grant.shop.is_none());
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
            lane: None,
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
                lane: None,
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
    async fn l5_inbound_and_outbound_external_ids_are_separate_namespaces() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        let buyer = store.ingest(&shop, &inbound("42", "b"), 3).await.unwrap();
        let reply = NewReply {
            text: MessageText::from_stored("On its way.".into()),
            direction: Direction::Outbound,
            author: Author::Agent,
            author_name: Some("Sam".into()),
            external_id: Some(crate::domain::ExternalMessageId::parse("42").unwrap()),
        };
        let (stored, repeated) = store
            .add_reply(shop.tenant_id, buyer.conversation_id, &reply, "agent:sam")
            .await
            .unwrap();
        assert!(!repeated, "a reply may reuse an inbound message's id");
        assert_ne!(stored.id, buyer.message_id);
        assert_eq!(stored.text.as_str(), "On its way.");
        let (again, repeated) = store
            .add_reply(shop.tenant_id, buyer.conversation_id, &reply, "agent:sam")
            .await
            .unwrap();
        assert!(repeated, "the reply's own redelivery is recognised");
        assert_eq!(again.id, stored.id);

        let later = store.ingest(&shop, &inbound("43", "b"), 3).await.unwrap();
        let reply_43 = NewReply {
            external_id: Some(crate::domain::ExternalMessageId::parse("43").unwrap()),
            ..reply
        };
        store
            .add_reply(
                shop.tenant_id,
                buyer.conversation_id,
                &reply_43,
                "agent:sam",
            )
            .await
            .unwrap();
        let redelivered = store.ingest(&shop, &inbound("43", "b"), 3).await.unwrap();
        assert!(redelivered.duplicate);
        assert_eq!(
            redelivered.message_id, later.message_id,
            "the buyer's message, not the reply"
        );
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
