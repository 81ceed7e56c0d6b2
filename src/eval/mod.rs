//! `kedai eval`: measures kedai's components on labelled data files, with
//! the real models, and prints figures as a table or as JSON.
//!
//! Each evaluation owns its file format and metrics; this module only
//! dispatches. It never writes to the store.

pub mod guard;
pub mod intents;
pub mod langid;
pub mod retrieval;
pub mod translations;

use std::sync::Arc;

use clap::Subcommand;

use crate::config::Settings;
use crate::kb::{Embedder, SearchMode};

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Recall@1, recall@5 and MRR of knowledge-base retrieval on a JSONL file.
    Retrieval(retrieval::RetrievalArgs),
    /// Run the whole reply pipeline on labelled conversations with the demo
    /// shop (a fresh temporary data directory) and score layer, intent and
    /// facts.
    Replies(RepliesArgs),
    /// How well the translation checks tell faithful translations of the
    /// seller's answers from wrong ones (kb/eval/translations.jsonl).
    Translations(TranslationsArgs),
    /// How the reply guard recognises promises, by words and by meaning,
    /// and how often it flags ordinary replies; calibrates the meaning
    /// threshold.
    Guard(guard::GuardArgs),
    /// Intents, sentiment, data splits and language identification.
    #[command(flatten)]
    Understand(intents::EvalCommand),
}

#[derive(Debug, clap::Args)]
pub struct RepliesArgs {
    /// Conversations, one JSON object per line (see kb/eval/README.md).
    #[arg(long, default_value = "kb/eval/replies.jsonl")]
    pub data: std::path::PathBuf,
    /// Only the first N conversations.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only the conversations of one part: `tuning` (what routing is tuned
    /// on) or `held-out` (measured, never tuned on).
    #[arg(long, value_parser = ["tuning", "held-out"])]
    pub part: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct TranslationsArgs {
    /// Faithful translations, one JSON object per line
    /// (`{"source_id", "lang", "text"}`).
    #[arg(long, default_value = "kb/eval/translations.jsonl")]
    pub data: std::path::PathBuf,
    /// The FAQ file holding the source answers.
    #[arg(long, default_value = "kb/demo/faq.jsonl")]
    pub faq: std::path::PathBuf,
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
        EvalCommand::Replies(args) => replies(args, settings, output),
        EvalCommand::Translations(args) => {
            let pairs = translations::read(&args.data, &args.faq)?;
            let report = translations::evaluate(&pairs, load_embedder(settings)?.as_ref())?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&report)?),
                Output::Human => print!("{}", report.table()),
            }
            Ok(())
        }
        EvalCommand::Guard(args) => guard::run(&args, settings, output),
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

fn replies(args: RepliesArgs, settings: &Settings, output: Output) -> anyhow::Result<()> {
    use crate::pipeline::evaluate;
    let mut cases = evaluate::read_cases(&args.data)?;
    if let Some(part) = &args.part {
        let wanted = if part == "tuning" {
            evaluate::Part::Tuning
        } else {
            evaluate::Part::HeldOut
        };
        cases.retain(|c| evaluate::Part::of(&c.id) == wanted);
    }
    if let Some(limit) = args.limit {
        cases.truncate(limit);
    }
    let data_dir = tempfile::TempDir::new()?;
    let mut settings = settings.clone();
    settings.store.data_dir = data_dir.path().to_path_buf();
    // The cases are the demo shops' conversations.
    settings.server.demo = true;
    let report = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let harness = crate::startup::PipelineHarness::start(settings).await?;
            let store = harness.app.store();
            let tenant = store
                .tenant_by_name(crate::startup::DEMO_TENANT)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the demo tenant was not created"))?;
            evaluate::run(store.as_ref(), tenant.id, &harness.pipeline, &cases).await
        })?;
    match output {
        Output::Json => println!("{}", serde_json::to_string(&report)?),
        Output::Human => {
            println!("conversations      {}", report.conversations);
            println!("layer accuracy     {:.3}", report.layer_accuracy);
            println!("intent accuracy    {:.3}", report.intent_accuracy);
            println!("facts recall       {:.3}", report.facts_recall);
            println!("unsafe sends       {}", report.unsafe_sends);
            println!("silent messages    {}", report.silent_messages);
            println!("unverified sends   {}", report.unverified_auto_sends);
            println!("layer confusion (rows expected 1-3, columns decided 1-3):");
            for row in report.layer_confusion {
                println!("    {:>4} {:>4} {:>4}", row[0], row[1], row[2]);
            }
            for (lang, accuracy) in &report.layer_accuracy_by_language {
                println!("layer accuracy {lang:<3} {accuracy:.3}");
            }
            for (part, of) in &report.by_part {
                let langs: Vec<String> = of
                    .layer_accuracy_by_language
                    .iter()
                    .map(|(lang, (acc, n))| format!("{lang} {acc:.2} ({n})"))
                    .collect();
                println!(
                    "{:<9} {} cases, layer accuracy {:.3}, unsafe {}, silent {}: {}",
                    part.as_str(),
                    of.conversations,
                    of.layer_accuracy,
                    of.unsafe_sends,
                    of.silent_messages,
                    langs.join(", ")
                );
            }
            for (kind, (p50, p95)) in &report.timings_ms {
                println!("ack->stored ms {kind:<15} p50 {p50:>8.1}  p95 {p95:>8.1}");
            }
            for (stage, (p50, p95)) in &report.stage_timings_ms {
                println!("stage ms       {stage:<15} p50 {p50:>8.1}  p95 {p95:>8.1}");
            }
        }
    }
    Ok(())
}
