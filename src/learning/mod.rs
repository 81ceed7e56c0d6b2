//! Learning from people, per tenant: an agent's correction of the intent
//! kedai read, or of where it sent a message (`routes`), becomes that
//! tenant's labelled exemplar, the tenant's
//! classifier heads retrain in the background, and nothing learned goes
//! live unmeasured: the retrained heads are scored against the tenant's
//! confirmed history and the shipped evaluation set and promoted only when
//! routing, safety and accuracy do not get worse; every version is kept
//! with its comparison and the previous one is restored with one action.
//!
//! `measure` is pure; `train` blocks on the embedding model; `service`
//! holds the loop over the store. Nothing here knows HTTP or pages, and one
//! tenant's exemplars never reach another tenant's heads.

pub mod claim;
pub mod faq_trial;
pub mod measure;
pub mod policy_changes;
pub mod policy_trial;
pub mod routes;
pub mod service;
pub mod suggestions;
pub mod train;
pub mod translations;
pub mod vectors;

pub use measure::{Case, CaseSource, Comparison, Figures, Score};
pub use policy_changes::{ChangeOutcome, PolicyChange};
pub use routes::RouteCorrection;
pub use service::{Correction, Learning};

use crate::store::StoreError;

/// Why a learning action could not be done.
#[derive(Debug, thiserror::Error)]
pub enum LearningError {
    /// The embedding model or the classifiers are not ready yet.
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// What was learned was measured and would make something worse.
    #[error("{0}")]
    Refused(String),
    #[error("training failed: {0}")]
    Training(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
