//! kedai: a self-hosted AI customer-service server for marketplace sellers.
//!
//! The library holds everything; `main.rs` only parses the command line and
//! calls [`cli::run`]. See `ARCHITECTURE.md` for the map of modules.

pub mod access_cli;
pub mod auth;
pub mod bench;
pub mod channels;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod eval;
pub mod figures;
pub mod http;
pub mod inference;
pub mod kb;
pub mod learning;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod queue;
pub mod reports;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod understand;
pub mod web;
