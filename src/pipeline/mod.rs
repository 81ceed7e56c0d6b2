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
//! - `context`: the conversation, buyer, orders, shop and custody around a
//!   message, loaded once.
//! - `clarify`: questions that need one more fact (which product, order or
//!   country) and where a parcel is going.
//! - `answer`: the one candidate answer and its provenance.
//! - `verify`: the checks machine-written text passes before it is sent.
//! - `trace`: the typed record of a run, stored with the decision.
//! - `followup`: what a person reads besides the draft, with warnings.
//! - `run`: the [`Pipeline`] job handler that ties them together.
//!
//! `pipeline` never sees HTTP types and never talks to a marketplace.

pub mod answer;
pub mod clarify;
pub mod context;
pub mod evaluate;
pub mod facts;
pub mod followup;
pub mod guard;
pub mod policy;
pub mod ports;
pub mod prepare;
pub mod prompt;
pub mod run;
pub mod stages;
pub mod templates;
pub mod trace;
pub mod verify;

#[cfg(test)]
mod tests;

pub use run::{Generation, Pipeline, PipelineConfig, PipelineParts};
