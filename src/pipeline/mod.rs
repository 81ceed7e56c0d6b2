//! The reply pipeline: understand a buyer message, decide which layer
//! handles it, answer or hand off.
//!
//! - `policy`: the pure decision (layers 1-3, modes, business hours, the
//!   kill switch), configured per shop.
//! - `guard`: the checks every generated reply passes before it may be sent.
//!
//! `pipeline` never sees HTTP types and never talks to a marketplace.

pub mod guard;
pub mod policy;
pub mod prompt;
pub mod templates;
