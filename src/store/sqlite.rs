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

mod audit;
mod channels;
mod conversations;
mod decisions;
mod jobs;
mod kb;
mod orders;
mod outbox;
mod tenants;
mod translations;

use audit::insert_audit;
use conversations::insert_message;
use jobs::insert_job;

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
        (SqliteStore::open(&settings).await.unwrap(), dir)
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

        let enrichment = DecisionEnrichment {
            translation: Some("Where is my parcel SPE-1?".into()),
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
