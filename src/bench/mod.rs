//! Load generators an operator runs against kedai: `kedai bench ...`.
//!
//! A benchmark here is a measurement, not a test: it reports figures and
//! exits non-zero only when requests failed, never because something was
//! slow. Each benchmark talks to kedai the way a client does, over HTTP
//! (starting a throwaway server as a child process when none is given), so
//! this module knows nothing of the store, the queue or the handlers; it only
//! knows the public API and the command line (`replies` reads its cases in
//! the format of `kedai eval replies`). The exception is `models`, which runs
//! the model files in-process, as llama.cpp's `llama-bench` does.

pub(crate) mod client;
pub mod ingest;
pub mod load;
mod messages;
pub mod models;
pub mod replies;
mod report;
mod server;

use std::path::Path;

use anyhow::Context;

use crate::config::Settings;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A small table for a terminal; progress goes to stderr.
    Human,
    /// One JSON document on stdout, for scripts and release gates.
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Ingest acknowledgement latency and throughput
    Ingest(ingest::IngestArgs),
    /// Many conversations at once at fixed rates with a shop's mix of
    /// messages: time to the AI's decision per layer, queue depth, and the
    /// highest rate at which layer-1 answers stay within a target
    Load(load::LoadArgs),
    /// Load time, embedding, prefill and decode speed, peak RSS of the models
    Models(models::ModelsArgs),
    /// Acknowledgement-to-decision latency of labelled buyer messages, per
    /// answer kind, against a fresh `kedai serve` with the models and the
    /// demo shops (run it from the kedai checkout: `kb/` paths are relative)
    Replies(replies::RepliesArgs),
    /// Workbench page latency (p50 / p90 / p99) with many conversations,
    /// in-process on loopback, without models
    Web(crate::web::bench::WebArgs),
}

/// Runs one benchmark to completion on a runtime of its own, so the caller
/// needs none.
/// `config` is the configuration file kedai was started with; servers the
/// benchmarks start use it too.
pub fn run(
    cmd: BenchCommand,
    settings: &Settings,
    output: Output,
    config: Option<&Path>,
) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(args) => {
            runtime()?.block_on(ingest::run(args, settings, output, config))
        }
        BenchCommand::Load(args) => runtime()?.block_on(load::run(args, settings, output, config)),
        BenchCommand::Models(args) => models::run(args, settings, output),
        BenchCommand::Replies(args) => {
            runtime()?.block_on(replies::run(args, settings, output, config))
        }
        BenchCommand::Web(args) => {
            runtime()?.block_on(crate::web::bench::run(args, settings, output))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kedai-bench")
        .build()
        .context("cannot start the benchmark runtime")
}
