//! Opening the store `store.url` names: the embedded SQLite database (the
//! default) or PostgreSQL. Callers get an [`OpenedStore`], which is the
//! [`Store`] (through `Deref`) and the [`KbStore`] of the same database, and
//! never name an implementation. Knows nothing of SQL.

use std::sync::Arc;

use super::{KbStore, MigrationReport, PostgresStore, Schema, SqliteStore, Store, StoreError};
use crate::config::{StoreLocation, StoreSettings};

/// The store of one database, whichever kind it is.
#[derive(Clone)]
pub enum OpenedStore {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl std::fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenedStore::Sqlite(_) => f.write_str("OpenedStore::Sqlite"),
            OpenedStore::Postgres(_) => f.write_str("OpenedStore::Postgres"),
        }
    }
}

impl OpenedStore {
    /// Opens the database of `settings`; see [`Schema`] for what may happen
    /// to its schema.
    pub async fn open(settings: &StoreSettings, schema: Schema) -> Result<Self, StoreError> {
        Ok(match settings.location() {
            StoreLocation::Sqlite(dir) => OpenedStore::Sqlite(Arc::new(
                SqliteStore::open(&settings.sqlite_in(dir), schema).await?,
            )),
            StoreLocation::Postgres(url) => {
                OpenedStore::Postgres(Arc::new(PostgresStore::open(&url, settings, schema).await?))
            }
        })
    }

    /// Opens the database and brings its schema up to date (`kedai migrate`).
    pub async fn open_migrating(
        settings: &StoreSettings,
    ) -> Result<(Self, MigrationReport), StoreError> {
        Ok(match settings.location() {
            StoreLocation::Sqlite(dir) => {
                let (store, report) = SqliteStore::open_migrating(&settings.sqlite_in(dir)).await?;
                (OpenedStore::Sqlite(Arc::new(store)), report)
            }
            StoreLocation::Postgres(url) => {
                let (store, report) = PostgresStore::open_migrating(&url, settings).await?;
                (OpenedStore::Postgres(Arc::new(store)), report)
            }
        })
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            OpenedStore::Sqlite(store) => store.clone(),
            OpenedStore::Postgres(store) => store.clone(),
        }
    }

    pub fn kb(&self) -> Arc<dyn KbStore> {
        match self {
            OpenedStore::Sqlite(store) => store.clone(),
            OpenedStore::Postgres(store) => store.clone(),
        }
    }

    /// Where the database is, for messages (a PostgreSQL password hidden).
    pub fn describe(settings: &StoreSettings) -> String {
        match settings.location() {
            StoreLocation::Sqlite(dir) => format!("the store in {}", dir.display()),
            StoreLocation::Postgres(url) => format!("the store at {}", url.redacted()),
        }
    }

    /// Closes the connections (on SQLite, after checkpointing the log).
    pub async fn close(&self) {
        match self {
            OpenedStore::Sqlite(store) => store.close().await,
            OpenedStore::Postgres(store) => store.close().await,
        }
    }
}

impl std::ops::Deref for OpenedStore {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        match self {
            OpenedStore::Sqlite(store) => store.as_ref(),
            OpenedStore::Postgres(store) => store.as_ref(),
        }
    }
}
