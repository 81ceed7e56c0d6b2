//! The knowledge base: the seller's FAQ entries, policy documents, product
//! catalogue and shipping rules, and hybrid search over them.
//!
//! The store is the source of truth (`store::KbStore`): entries are
//! validated here (`entry`), read from kb folders (`import`), cut into
//! chunks (`chunk`) and indexed per tenant (`index`: Tantivy BM25 with
//! per-language analysers, exact search over multilingual-e5 vectors, and
//! reciprocal rank fusion). `service` keeps each tenant's index in step with
//! the store: an index records the store revision it was built from, and a
//! missing, stale or unreadable index is rebuilt from the store.
//!
//! This module knows nothing of HTTP. It never runs a model or a Tantivy
//! search on an async worker thread: those go through `spawn_blocking`.
//! Every search names its tenant, and each tenant has an index of its own,
//! so one tenant's entries cannot appear in another's results.

pub mod analysis;
pub mod chunk;
pub mod embed;
pub mod entry;
pub mod import;
pub mod index;
pub mod service;

use std::path::PathBuf;

use crate::store::StoreError;

pub use chunk::Chunk;
pub use embed::{Embedder, HashingEmbedder};
pub use entry::{KbEntry, Lang};
pub use index::{ComponentHit, SearchMode};
pub use service::{KbQuery, KbService, SearchHit, SearchResults, TrialHit};

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    /// A kb folder file is malformed; `line` is 1-based (0: the file or
    /// folder as a whole).
    #[error("{}:{line}: {reason}", file.display())]
    Import {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    InvalidEntry(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error(
        "dense retrieval needs the embedding model, which is not loaded; use mode \"bm25\" \
         or start kedai with its models"
    )]
    DenseUnavailable,
    #[error("embedding failed: {0}")]
    Embedding(String),
    #[error("search index error: {0}")]
    Index(String),
    #[error("knowledge base is corrupt: {reason}")]
    Corrupt { reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("background task failed: {0}")]
    Task(String),
}
