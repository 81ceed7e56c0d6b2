//! `[store]`: which database (`store.url`, SQLite in a directory or
//! PostgreSQL), durability and retention. `StoreUrl` never prints a
//! password. Nothing here opens a database.

use std::path::PathBuf;

use serde::Deserialize;

/// `store.url` as configured; `{:?}` hides a password in it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct StoreUrl(pub String);

/// The database a [`StoreUrl`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// SQLite in this directory.
    Sqlite(PathBuf),
    /// PostgreSQL at this connection URL.
    Postgres(StoreUrl),
}

impl StoreUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Empty and `sqlite://` URLs use `data_dir`; `sqlite://<dir>` another
    /// directory; `postgres://` and `postgresql://` PostgreSQL.
    pub fn location(&self, data_dir: &std::path::Path) -> Result<StoreLocation, String> {
        let url = self.0.trim();
        if url.is_empty() {
            return Ok(StoreLocation::Sqlite(data_dir.to_path_buf()));
        }
        if let Some(dir) = url.strip_prefix("sqlite://") {
            return Ok(StoreLocation::Sqlite(if dir.is_empty() {
                data_dir.to_path_buf()
            } else {
                PathBuf::from(dir)
            }));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(StoreUrl(url.to_owned())));
        }
        Err(format!(
            "store.url must start with sqlite:// or postgres://, got {:?}",
            self.redacted()
        ))
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://") else {
            return url.clone();
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => match rest[..at].find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &rest[..colon],
                    &rest[at..]
                ),
                None => url.clone(),
            },
            None => url.clone(),
        }
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl StoreSettings {
    /// The database these settings name (validated at start).
    pub fn location(&self) -> StoreLocation {
        self.url
            .location(&self.data_dir)
            .unwrap_or_else(|_| StoreLocation::Sqlite(self.data_dir.clone()))
    }

    /// The same settings with SQLite's directory taken from `sqlite://<dir>`.
    pub fn sqlite_in(&self, dir: PathBuf) -> StoreSettings {
        StoreSettings {
            url: StoreUrl::default(),
            data_dir: dir,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous = FULL`: a commit is on disk before it is acknowledged.
    Full,
    /// `synchronous = NORMAL`: survives process crashes, not power loss.
    Normal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Which database: empty or `sqlite://<dir>` for the embedded SQLite
    /// store (in `data_dir`, or `<dir>` when given), or
    /// `postgres://user:password@host:port/db` for PostgreSQL.
    pub url: StoreUrl,
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub busy_timeout_ms: u64,
    pub read_connections: u32,
    /// Days conversations are kept after their last message; 0 forever.
    pub retention_days: u32,
    /// File holding the key that encrypts shop credentials; empty means
    /// `<data_dir>/credentials.key`. `KEDAI_CREDENTIALS_KEY` overrides it.
    pub credentials_key_file: String,
}
