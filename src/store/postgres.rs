//! [`Store`] on PostgreSQL, for many kedai replicas sharing one database.
//!
//! The SQL of each aggregate lives in `postgres/<aggregate>.rs`, written in
//! SQLite's parameter style (`?`, `?N`) and numbered for PostgreSQL by
//! [`pg`] before it is sent; dialect differences (JSON functions, locking)
//! are spelled out in those files. Every write transaction first takes one
//! transaction-scoped advisory lock ([`WRITE_LOCK`]), so writers from every
//! replica are serialised exactly as SQLite's one writer serialises them:
//! the read-then-write steps of ingest, leasing and the outbox keep the
//! guarantees they have on SQLite (acknowledged means committed, one job
//! per conversation, one message per delivery) without re-deriving each
//! under READ COMMITTED. Reads never take it, and neither do the queue's
//! per-job statements (lease, renew, complete, fail, release) and the
//! outbox's lease: they lock the rows they take `FOR UPDATE SKIP LOCKED`
//! and lean on the schema's unique indexes (`jobs.rs`, `outbox.rs` say
//! how), so workers of every replica lease side by side. docs/scaling.md
//! says what this costs and what to partition when it becomes the
//! bottleneck.
//!
//! The module knows nothing of HTTP, models or the pipeline, and nothing of
//! SQLite's files: its schema is `migrations/postgres/`, numbered in step
//! with SQLite's.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Postgres, Transaction};

use super::*;
use crate::config::{StoreSettings, StoreUrl};

mod audit;
mod channels;
mod conversations;
mod decisions;
mod desk;
mod facts;
mod jobs;
mod kb;
mod learning;
mod notify;
mod operators;
mod orders;
mod outbox;
mod privacy;
mod reports;
mod suggestions;
mod tenants;
mod timers;
mod translations;
mod users;

use audit::insert_audit;
use conversations::insert_message;
use jobs::insert_job;
pub use notify::DatabaseFeed;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock every write transaction holds until it ends.
const WRITE_LOCK: i64 = 0x6b65_6461_6901;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// One pool; `writer` and `reader` are the same connections, named as
    /// the per-aggregate SQL (shared in shape with SQLite's) names them.
    writer: PgPool,
    reader: PgPool,
    credentials: std::sync::Arc<super::credentials::CredentialKey>,
    changes: DatabaseFeed,
}

impl Store for PostgresStore {
    fn changes(&self) -> &dyn ChangeFeed {
        &self.changes
    }
}

impl PostgresStore {
    /// Connects to `url`; with [`Schema::Migrate`] the schema is brought up
    /// to date (sqlx holds PostgreSQL's migration lock, so replicas starting
    /// together migrate once), with [`Schema::Current`] an out-of-date or
    /// newer schema is an error that says what to run.
    pub async fn open(
        url: &StoreUrl,
        settings: &StoreSettings,
        schema: Schema,
    ) -> Result<PostgresStore, StoreError> {
        Ok(Self::open_migrating_if(url, settings, schema).await?.0)
    }

    /// Connects and migrates, saying from which version to which.
    pub async fn open_migrating(
        url: &StoreUrl,
        settings: &StoreSettings,
    ) -> Result<(PostgresStore, MigrationReport), StoreError> {
        Self::open_migrating_if(url, settings, Schema::Migrate).await
    }

    async fn open_migrating_if(
        url: &StoreUrl,
        settings: &StoreSettings,
        schema: Schema,
    ) -> Result<(PostgresStore, MigrationReport), StoreError> {
        let options: PgConnectOptions = url
            .expose()
            .parse::<PgConnectOptions>()
            .map_err(|e| StoreError::Schema(format!("store.url {}: {e}", url.redacted())))?
            .log_statements(tracing::log::LevelFilter::Trace);
        // One pool for reads and writes; a writer waiting for the write
        // lock holds one of its connections.
        let pool = PgPoolOptions::new()
            .max_connections(settings.read_connections.max(4))
            .acquire_timeout(Duration::from_millis(settings.busy_timeout_ms.max(1000)))
            .connect_with(options)
            .await?;
        let latest = latest_version();
        let applied = applied_version(&pool).await?;
        if applied > latest {
            pool.close().await;
            return Err(StoreError::Schema(format!(
                "the database at {} was migrated by a newer kedai (schema version {applied}, \
                 this kedai knows up to {latest}); run that version",
                url.redacted()
            )));
        }
        match schema {
            Schema::Migrate if applied < latest => {
                MIGRATOR.run(&pool).await?;
                tracing::info!(from = applied, to = latest, "database schema migrated");
            }
            Schema::Current if applied == 0 => {
                pool.close().await;
                return Err(StoreError::Schema(format!(
                    "the database at {} is not set up yet; run `kedai migrate` (or start \
                     `kedai serve`, which sets it up) first",
                    url.redacted()
                )));
            }
            Schema::Current if applied < latest => {
                pool.close().await;
                return Err(StoreError::Schema(format!(
                    "the database at {} has schema version {applied} but this kedai needs \
                     {latest}; run `kedai migrate`",
                    url.redacted()
                )));
            }
            _ => {}
        }
        // The credentials key and the derived search indexes live here:
        // the directory is the owner's alone, as on SQLite.
        super::private_file::private_dir(&settings.data_dir).map_err(|source| {
            StoreError::DataDir {
                path: settings.data_dir.clone(),
                source,
            }
        })?;
        let credentials = std::sync::Arc::new(super::credentials::CredentialKey::load(settings)?);
        let changes = DatabaseFeed::new(pool.clone());
        changes.spawn_listener();
        let store = PostgresStore {
            writer: pool.clone(),
            reader: pool,
            credentials,
            changes,
        };
        store.seal_plain_credentials().await?;
        Ok((
            store,
            MigrationReport {
                from: applied,
                to: latest,
                backup: None,
            },
        ))
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
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

    /// Closes the pool; the server calls it on shutdown.
    pub async fn close(&self) {
        self.writer.close().await;
    }

    /// Signalled when any replica queued a job (LISTEN/NOTIFY).
    pub fn jobs_queued(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.changes.jobs_queued()
    }

    /// The pool, for `kedai store copy`.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.writer
    }
}

/// The newest migration this build carries.
pub(crate) fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The highest migration applied to the database (0: none).
async fn applied_version(pool: &PgPool) -> Result<i64, StoreError> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await?;
    if table.is_none() {
        return Ok(0);
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?;
    Ok(version.unwrap_or(0))
}

/// SQL written with SQLite's parameters (`?` and `?N`) numbered for
/// PostgreSQL (`$N`); question marks inside quoted literals are left alone.
/// A bare `?` takes the number after the highest used so far, as in SQLite.
pub(crate) fn pg(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    let mut highest = 0u32;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                let n = if digits.is_empty() {
                    highest + 1
                } else {
                    digits.parse().unwrap_or(highest + 1)
                };
                highest = highest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn parse_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, StoreError> {
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
mod tests {
    use super::pg;

    #[test]
    fn sqlite_parameters_are_numbered_for_postgres() {
        let cases = [
            ("SELECT 1", "SELECT 1"),
            ("a = ? AND b = ?", "a = $1 AND b = $2"),
            ("a = ?1 OR b = ?1 AND c = ?2", "a = $1 OR b = $1 AND c = $2"),
            ("a = ?2 AND b = ?", "a = $2 AND b = $3"),
            ("x LIKE 'a?b' AND y = ?", "x LIKE 'a?b' AND y = $1"),
        ];
        for (sqlite, postgres) in cases {
            assert_eq!(pg(sqlite), postgres, "{sqlite}");
        }
    }
}

#[cfg(test)]
mod schema_tests {
    #[test]
    fn both_stores_carry_the_same_migration_versions() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut sqlite: Vec<i64> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().to_str()?.split('_').next()?.parse().ok())
            .collect();
        sqlite.sort();
        let postgres: Vec<i64> = super::MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(sqlite, postgres);
    }
}
