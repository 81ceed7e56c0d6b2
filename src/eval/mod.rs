//! `kedai eval`: measures kedai's components on labelled data files, with
//! the real models, and prints figures as a table or as JSON.
//!
//! Each evaluation owns its file format and metrics; this module only
//! dispatches. It never writes to the store.

pub mod intents;
pub mod langid;
pub mod retrieval;

use std::sync::Arc;

use clap::Subcommand;

use crate::config::Settings;
use crate::kb::{Embedder, SearchMode};

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Recall@1, recall@5 and MRR of knowledge-base retrieval on a JSONL file.
    Retrieval(retrieval::RetrievalArgs),
    /// Intents, sentiment, data splits and language identification.
    #[command(flatten)]
    Understand(intents::EvalCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Human,
    Json,
}

/// Loads the configured embedding model (fetching it only when
/// `models.fetch_on_start` allows).
pub fn load_embedder(settings: &Settings) -> anyhow::Result<Arc<dyn Embedder>> {
    let mode = crate::models::PrepareMode::from_settings(
        &settings.models,
        crate::models::Progress::Silent,
    );
    let model = crate::models::resolve(&settings.models, &settings.models.embedding, mode)?;
    let device = crate::inference::select_device("auto")?;
    Ok(Arc::new(crate::inference::TextEmbedder::load(
        &model, &device,
    )?))
}

pub fn run(command: EvalCommand, settings: &Settings, output: Output) -> anyhow::Result<()> {
    match command {
        EvalCommand::Understand(command) => intents::run(
            command,
            settings,
            match output {
                Output::Human => intents::Output::Human,
                Output::Json => intents::Output::Json,
            },
        ),
        EvalCommand::Retrieval(args) if args.kb.is_some() => {
            let dir = args.kb.clone().unwrap_or_default();
            let embedder = match args.mode {
                SearchMode::Bm25 => None,
                SearchMode::Hybrid | SearchMode::Dense => Some(load_embedder(settings)?),
            };
            let report = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(retrieval::evaluate_kb(
                    &dir, &args.data, args.mode, embedder,
                ))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&report)?),
                Output::Human => println!("{}", report.table(&args.data)),
            }
            Ok(())
        }
        EvalCommand::Retrieval(args) => {
            let mut set = retrieval::EvalSet::read(&args.data)?;
            if let Some(n) = args.sample {
                set.sample(n);
            }
            let embedder = match args.mode {
                SearchMode::Bm25 => None,
                SearchMode::Hybrid | SearchMode::Dense => Some(load_embedder(settings)?),
            };
            let report = retrieval::evaluate(&set, args.mode, embedder.as_deref())?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&report)?),
                Output::Human => println!("{}", report.table(&args.data)),
            }
            Ok(())
        }
    }
}
