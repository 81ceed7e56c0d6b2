//! Understanding one buyer message: its language, intent (with a calibrated
//! confidence and out-of-scope detection), sentiment, anger and urgency,
//! whether the buyer asks for a human, the order numbers, tracking numbers,
//! SKUs, emails and phone numbers it mentions, and whether it repeats an
//! earlier question, and whether the tenant's people taught a route for
//! messages like it.
//!
//! Classifiers are linear heads trained here, in Rust, on e5 `query:`
//! embeddings of labelled exemplars; they retrain from exemplar files at run
//! time. This module reaches the embedding model only through
//! [`QueryEmbedder`], knows nothing of HTTP, the store, the queue or how a
//! reply is chosen, and its calls block: run them off the async runtime.

pub mod binding;
mod classifier;
mod embed;
pub mod entities;
pub mod exemplars;
pub mod human;
pub mod lang;
pub mod ngrams;
pub mod reload;
pub mod repeat;
pub mod routes;
pub mod scope;
mod understander;

pub use classifier::{
    ClassWeighting, FitReport, HeldOut, LinearHead, Prediction, Scaling, TrainConfig, OUT_OF_SCOPE,
};
pub use embed::{pooled_model_id, CachedEmbedder, PooledQueries, QueryEmbedder};
pub use exemplars::{Example, ExemplarSet, TextClassifier};
pub use reload::{retrain, retrain_saved, ExemplarSources, Fingerprint, TrainingReport};
pub use scope::{GateReport, ScopeGate, ScopeRule, Signals};
pub use understander::{Heads, Sentiment, Understander, Understanding};

use crate::inference::InferenceError;

/// Everything that can go wrong understanding a message or training its
/// classifiers.
#[derive(Debug, thiserror::Error)]
pub enum UnderstandError {
    #[error("embedding failed: {0}")]
    Embedding(#[from] InferenceError),
    #[error("classifier arithmetic failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("embedding cache {path}: {source}")]
    Cache {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read exemplars from {path}: {reason}")]
    Exemplars {
        path: std::path::PathBuf,
        reason: String,
    },
    /// One line of an exemplar file is wrong: shown as `FILE:LINE: reason`
    /// so a seller can go straight to it.
    #[error("{}:{line}: {reason}", path.display())]
    BadExemplar {
        path: std::path::PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
}
