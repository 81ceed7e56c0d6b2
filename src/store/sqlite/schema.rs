//! The database schema against this build's migrations: whether it is
//! current, behind (migrations to apply) or ahead (migrated by a newer
//! kedai), and the copy taken before migrating a database that holds data.

use super::*;

/// Where a database's schema stands against this build's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SchemaState {
    Current(i64),
    /// Migrations of this build not applied yet (`applied` is the highest
    /// applied version, 0 for none).
    Behind {
        applied: i64,
        latest: i64,
    },
    /// Applied migrations this build does not know, or knows differently.
    Ahead {
        applied: i64,
        latest: i64,
    },
}

/// The newest migration this build carries.
pub(super) fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

pub(super) fn ahead_message(settings: &StoreSettings, applied: i64) -> String {
    format!(
        "the database in {} was migrated by a newer kedai (schema version {applied}, this \
         kedai knows up to {}); run that version, or restore the copy in {} taken before it \
         migrated",
        settings.data_dir.display(),
        latest_version(),
        settings.data_dir.join("backups").display()
    )
}

/// Compares the migrations applied to the database with this build's.
pub(super) async fn schema_state(pool: &SqlitePool) -> Result<SchemaState, StoreError> {
    let latest = latest_version();
    let table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await?;
    if table.is_none() {
        return Ok(SchemaState::Behind { applied: 0, latest });
    }
    let applied: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await?;
    let highest = applied.iter().map(|(v, _, _)| *v).max().unwrap_or(0);
    let known = |version: i64, checksum: &[u8]| {
        MIGRATOR
            .iter()
            .any(|m| m.version == version && *m.checksum == *checksum)
    };
    if applied
        .iter()
        .any(|(version, checksum, success)| !success || !known(*version, checksum))
    {
        return Ok(SchemaState::Ahead {
            applied: highest,
            latest,
        });
    }
    let missing = MIGRATOR
        .iter()
        .any(|m| !applied.iter().any(|(v, _, _)| *v == m.version));
    Ok(if missing {
        SchemaState::Behind {
            applied: highest,
            latest,
        }
    } else {
        SchemaState::Current(highest)
    })
}

/// Copies the database, consistently and compacted, to
/// `<data_dir>/backups/kedai-schema-<version>-<time>.sqlite`.
pub(super) async fn backup_before_migrating(
    settings: &StoreSettings,
    pool: &SqlitePool,
    version: i64,
) -> Result<std::path::PathBuf, StoreError> {
    let dir = settings.data_dir.join("backups");
    std::fs::create_dir_all(&dir).map_err(|source| StoreError::DataDir {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(format!(
        "kedai-schema-{version}-{}.sqlite",
        now().format("%Y%m%dT%H%M%SZ")
    ));
    sqlx::query("VACUUM INTO ?")
        .bind(path.to_string_lossy().into_owned())
        .execute(pool)
        .await?;
    tracing::info!(backup = %path.display(), "database copied before migrating");
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::Connection;

    use super::*;
    use crate::config::Settings;

    fn settings(dir: &std::path::Path) -> StoreSettings {
        let mut settings = Settings::defaults().store;
        settings.data_dir = dir.to_path_buf();
        settings.busy_timeout_ms = 50;
        settings
    }

    /// The migration that made the queue's give-up and per-conversation
    /// order (`0006_queue.sql`).
    const QUEUE_MIGRATION: i64 = 6;

    /// A database as the kedai before the queue migration left it: every
    /// migration before it, with a tenant and a message whose job an earlier
    /// version completed without deciding it (no models then), and one it
    /// dead-lettered without a handoff.
    async fn previous_version_database(dir: &std::path::Path) -> i64 {
        let previous = sqlx::migrate::Migrator {
            migrations: Cow::Owned(
                MIGRATOR
                    .iter()
                    .filter(|m| m.version < QUEUE_MIGRATION)
                    .cloned()
                    .collect(),
            ),
            ignore_missing: false,
            locking: true,
            no_tx: false,
        };
        let pool = SqliteStore::writer_pool(&settings(dir)).await.unwrap();
        previous.run(&pool).await.unwrap();
        let at = "2026-11-21T10:00:00.000000Z";
        for sql in [
            "INSERT INTO tenants (id, name, created_at) VALUES ('t', 'old', ?1)",
            "INSERT INTO shops (id, tenant_id, platform, shop_key, name, created_at) \
             VALUES ('s', 't', 'web', 'web', 'Web', ?1)",
            "INSERT INTO buyers (id, tenant_id, shop_id, platform_buyer_id, created_at, updated_at) \
             VALUES ('b', 't', 's', 'ana', ?1, ?1)",
            "INSERT INTO conversations (id, tenant_id, shop_id, buyer_id, status, created_at, \
             last_message_at, message_count) VALUES ('c', 't', 's', 'b', 'open', ?1, ?1, 2)",
            "INSERT INTO messages (id, tenant_id, conversation_id, shop_id, external_id, direction, \
             author, text, sent_at, received_at, processed_at, seq) \
             VALUES ('m1', 't', 'c', 's', 'x-1', 'inbound', 'buyer', 'hi', ?1, ?1, ?1, 1)",
            "INSERT INTO messages (id, tenant_id, conversation_id, shop_id, external_id, direction, \
             author, text, sent_at, received_at, seq) \
             VALUES ('m2', 't', 'c', 's', 'x-2', 'inbound', 'buyer', 'hello?', ?1, ?1, 2)",
            "INSERT INTO jobs (id, tenant_id, kind, payload, state, attempts, max_attempts, run_at, \
             created_at, updated_at) VALUES ('j1', 't', 'inbound_message', \
             '{\"message_id\":\"m1\"}', 'done', 1, 5, ?1, ?1, ?1)",
            "INSERT INTO jobs (id, tenant_id, kind, payload, state, attempts, max_attempts, run_at, \
             created_at, updated_at) VALUES ('j2', 't', 'inbound_message', \
             '{\"message_id\":\"m2\"}', 'dead', 5, 5, ?1, ?1, ?1)",
        ] {
            sqlx::query(sql).bind(at).execute(&pool).await.unwrap();
        }
        pool.close().await;
        previous.migrations.iter().map(|m| m.version).max().unwrap()
    }

    #[tokio::test]
    async fn l1_tools_refuse_a_database_that_is_not_set_up_or_behind() {
        let dir = tempfile::TempDir::new().unwrap();
        let err = SqliteStore::open(&settings(dir.path()), Schema::Current)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not set up yet") && err.contains("kedai migrate"),
            "{err}"
        );

        let previous = previous_version_database(dir.path()).await;
        let err = SqliteStore::open(&settings(dir.path()), Schema::Current)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("schema version {previous}")) && err.contains("kedai migrate"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn l1_migrating_backs_up_first_and_m4_requeues_undecided_messages() {
        let dir = tempfile::TempDir::new().unwrap();
        let previous = previous_version_database(dir.path()).await;
        let (store, report) = SqliteStore::open_migrating(&settings(dir.path()))
            .await
            .unwrap();
        assert_eq!((report.from, report.to), (previous, latest_version()));
        let backup = report.backup.expect("a database with data is copied first");
        assert!(backup.is_file(), "{}", backup.display());
        let jobs: Vec<(String, String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT id, state, give_up, conversation_id FROM jobs ORDER BY id")
                .fetch_all(&store.reader)
                .await
                .unwrap();
        assert_eq!(
            jobs,
            [
                ("j1".into(), "queued".into(), None, Some("c".into())),
                (
                    "j2".into(),
                    "queued".into(),
                    Some("lease_expired".into()),
                    Some("c".into())
                ),
            ],
            "the message consumed without a decision runs again; the dead one is handed off"
        );
        store.close().await;
        let again = SqliteStore::open(&settings(dir.path()), Schema::Current).await;
        assert!(again.is_ok(), "current now");
    }

    #[tokio::test]
    async fn l1_a_database_migrated_by_a_newer_kedai_is_refused_untouched() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = SqliteStore::open(&settings(dir.path()), Schema::Migrate)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', 1, x'00', 0)",
        )
        .execute(&store.writer)
        .await
        .unwrap();
        store.close().await;
        for schema in [Schema::Current, Schema::Migrate] {
            let err = SqliteStore::open(&settings(dir.path()), schema)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("newer kedai") && err.contains("9999"), "{err}");
        }
    }

    #[tokio::test]
    async fn l1_a_locked_database_is_busy_not_an_internal_error() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = SqliteStore::open(&settings(dir.path()), Schema::Migrate)
            .await
            .unwrap();
        // Another process (the CLI, say) holds the write lock.
        let mut other =
            sqlx::SqliteConnection::connect_with(&SqliteStore::options(&settings(dir.path())))
                .await
                .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let err = store
            .create_tenant(&crate::domain::TenantName::parse("t").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Busy(_)), "{err:?}");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        assert!(store
            .create_tenant(&crate::domain::TenantName::parse("t").unwrap())
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn closing_checkpoints_the_write_ahead_log() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = SqliteStore::open(&settings(dir.path()), Schema::Migrate)
            .await
            .unwrap();
        store
            .create_tenant(&crate::domain::TenantName::parse("t").unwrap())
            .await
            .unwrap();
        store.close().await;
        let wal = dir.path().join("kedai.sqlite-wal");
        let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert_eq!(len, 0, "everything is in the database file");
    }
}
