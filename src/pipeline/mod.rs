//! The reply pipeline: understand a buyer message, decide which layer
//! handles it, answer or hand off.
//!
//! - `policy`: the pure decision (layers 1-3, modes, business hours, the
//!   kill switch), configured per shop.
//! - `guard`: the checks every generated reply passes before it may be sent.
//! - `templates`: fast-path answers from records, in nine languages.
//! - `prompt`: drafting prompts with untrusted text fenced, and injection
//!   detection.
//! - `ports`: what the pipeline needs from the rest of kedai (understand,
//!   knowledge, chat model), as traits.
//! - `run`: the [`Pipeline`] job handler that ties them together.
//!
//! `pipeline` never sees HTTP types and never talks to a marketplace.

pub mod evaluate;
pub mod facts;
pub mod guard;
pub mod policy;
pub mod ports;
pub mod prompt;
pub mod run;
pub mod stages;
pub mod templates;

pub use run::{Pipeline, PipelineConfig};
