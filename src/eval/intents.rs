//! `kedai eval intents`, `kedai eval sentiment` and `kedai eval split`:
//! train a classifier head on one JSONL file, score it on another, and cut
//! a data set into the two deterministically.
//!
//! Input lines are JSON objects with `text` and `label`; `"in_scope": false`
//! marks an out-of-scope line (its label becomes `out_of_scope`), and an
//! `anger` boolean feeds the anger task of `eval sentiment`. Embeddings are
//! cached on disk under the model cache (`<models dir>/embeddings/`), keyed
//! by model id (with the pooled layers, `--e5-layers`) and text, so a
//! second run embeds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::inference::{select_device, LayerMix, Pooling, TextEmbedder};
use crate::models::{PrepareMode, Progress};
use crate::understand::ngrams::CharNgrams;
use crate::understand::{
    CachedEmbedder, FitReport, GateReport, LinearHead, PooledQueries, Scaling, ScopeGate,
    TrainConfig, OUT_OF_SCOPE,
};

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Train the intent classifier on --train's lines and score it on --test's.
    Intents(ClassifierArgs),
    /// Train a sentiment (or anger) classifier and score it the same way.
    Sentiment {
        #[command(flatten)]
        args: ClassifierArgs,
        /// What to predict. `auto`: `anger` when every line has an `anger`
        /// boolean, else `sentiment`.
        #[arg(long, value_enum, default_value_t = SentimentTask::Auto)]
        task: SentimentTask,
    },
    /// Split a JSONL data set into train.jsonl and test.jsonl by a hash of
    /// each line's `id`, optionally filtered and subsampled.
    Split(SplitArgs),
    /// Compare language detectors on lines that carry a `lang` tag.
    Langid(super::langid::LangidArgs),
}

#[derive(Debug, Args)]
pub struct ClassifierArgs {
    /// Training lines (JSONL with `text` and `label`).
    #[arg(long)]
    pub train: PathBuf,
    /// Test lines, same format.
    #[arg(long)]
    pub test: PathBuf,
    /// Where cached embeddings live (default: <models dir>/embeddings).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// How many of the most frequent confusions to list.
    #[arg(long, default_value_t = 15)]
    pub confusions: usize,
    /// Add hashed character 1-4-gram TF-IDF features in this many buckets
    /// beside the embedding (0: the embedding alone).
    #[arg(long, default_value_t = 0)]
    pub char_ngrams: usize,
    /// With --char-ngrams: the weight of the standardised embedding against
    /// the unit-length n-gram vector.
    #[arg(long, default_value_t = 0.05)]
    pub embedding_scale: f32,
    /// L2 penalties to choose from on a held-out fifth of --train
    /// (comma-separated; default: the classifier's own grid).
    #[arg(long, value_delimiter = ',')]
    pub l2: Vec<f32>,
    /// Pool these e5 layers (comma-separated, 1 to 12; 12 is the final
    /// one), each layer's token mean unit-length, instead of the sentence
    /// embedding (the final layer's mean).
    #[arg(long, value_delimiter = ',')]
    pub e5_layers: Vec<usize>,
    /// How --e5-layers are put together.
    #[arg(long, value_enum, default_value_t = LayerMixArg::Concat)]
    pub e5_layer_mix: LayerMixArg,
    /// Add the final layer's token-wise maximum as one more unit-length block.
    #[arg(long)]
    pub e5_max_pool: bool,
    /// For models with task prompts (EmbeddingGemma): the prompt put before
    /// every line. `retrieval` is the one the server's single embedding
    /// model gives buyer messages today.
    #[arg(long, value_enum, default_value_t = TaskPromptArg::Retrieval)]
    pub task_prompt: TaskPromptArg,
    /// Decide out of scope by the head's probability threshold alone, not
    /// by the gate over nearest exemplars, margin and support (the gate is
    /// what the server uses; this shows what it adds).
    #[arg(long)]
    pub no_scope_gate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskPromptArg {
    /// The search prompt (`task: search result | query: `).
    Retrieval,
    /// The classification prompt (`task: classification | query: `).
    Classification,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayerMixArg {
    /// One block per layer, side by side.
    Concat,
    /// One block, the average of the layers' unit-length means.
    Average,
}

impl ClassifierArgs {
    /// The pooling these options ask for on a model of `layers` layers.
    fn pooling(&self, layers: usize) -> anyhow::Result<Pooling> {
        let chosen = if self.e5_layers.is_empty() {
            vec![layers]
        } else {
            self.e5_layers.clone()
        };
        let mix = match self.e5_layer_mix {
            LayerMixArg::Concat => LayerMix::Concat,
            LayerMixArg::Average => LayerMix::Average,
        };
        Pooling::new(&chosen, mix, self.e5_max_pool)
            .map_err(|e| anyhow::anyhow!("--e5-layers: {e}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SentimentTask {
    Auto,
    /// positive / neutral / negative (`pos`, `neu`, `neg` accepted; Wisesight's
    /// `q`, a question, counts as neutral).
    Sentiment,
    /// angry / not_angry from the `anger` boolean.
    Anger,
    /// The `label` strings exactly as they are (emotion classes, 4-class
    /// Wisesight).
    Labels,
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// The data set (JSONL; lines need an `id`, else the text is hashed).
    pub input: PathBuf,
    /// Directory to write train.jsonl and test.jsonl into.
    #[arg(long)]
    pub out: PathBuf,
    /// Share of lines that go to the test file, in percent.
    #[arg(long, default_value_t = 20)]
    pub test_percent: u8,
    /// Keep only lines whose field equals the value, e.g. `lang=id` or
    /// `bot=curekart`; repeatable (all must hold).
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Keep at most this many lines (after filtering), chosen by a hash of
    /// the id so the sample is the same on every run.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Mixed into the hash that assigns lines to the two files, so a split
    /// file can be split again (a validation part of a training file):
    /// with the default the same hash would send every line to one side.
    #[arg(long, default_value = "split")]
    pub salt: String,
}

/// How the command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Human,
    Json,
}

pub fn run(cmd: EvalCommand, settings: &Settings, output: Output) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Intents(args) => {
            let report = evaluate(&args, Task::Intents, settings)?;
            print(&report, output);
        }
        EvalCommand::Sentiment { args, task } => {
            let task = match task {
                SentimentTask::Auto => {
                    let lines = read_lines(&args.train)?;
                    if lines
                        .iter()
                        .all(|l| l.get("anger").is_some_and(Value::is_boolean))
                    {
                        Task::Anger
                    } else {
                        Task::Sentiment
                    }
                }
                SentimentTask::Sentiment => Task::Sentiment,
                SentimentTask::Anger => Task::Anger,
                SentimentTask::Labels => Task::Labels,
            };
            let report = evaluate(&args, task, settings)?;
            print(&report, output);
        }
        EvalCommand::Split(args) => {
            let counts = split(&args)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&counts)?),
                Output::Human => println!(
                    "{} lines kept: {} to {}, {} to {}",
                    counts.kept,
                    counts.train,
                    args.out.join("train.jsonl").display(),
                    counts.test,
                    args.out.join("test.jsonl").display()
                ),
            }
        }
        EvalCommand::Langid(args) => super::langid::run(&args, output)?,
    }
    Ok(())
}

/// What a classifier learns from a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Intents,
    Sentiment,
    Anger,
    Labels,
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<Value>> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    raw.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            let value: Value = serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not JSON", path.display(), n + 1))?;
            if !value.is_object() {
                bail!("{} line {}: not a JSON object", path.display(), n + 1);
            }
            Ok(value)
        })
        .collect()
}

/// `(text, label)` of every line for `task`.
pub fn labelled(path: &Path, task: Task) -> anyhow::Result<Vec<(String, String)>> {
    let lines = read_lines(path)?;
    let mut out = Vec::with_capacity(lines.len());
    for (n, line) in lines.iter().enumerate() {
        let at = || format!("{} line {}", path.display(), n + 1);
        let text = match line.get("text") {
            Some(Value::String(t)) if !t.trim().is_empty() => t.clone(),
            _ => bail!("{}: `text` must be a non-empty string", at()),
        };
        let label = line.get("label");
        let label = match task {
            Task::Anger => match line.get("anger") {
                Some(Value::Bool(true)) => "angry".to_owned(),
                Some(Value::Bool(false)) => "not_angry".to_owned(),
                _ => bail!("{}: `anger` must be true or false", at()),
            },
            _ if line.get("in_scope") == Some(&Value::Bool(false)) => OUT_OF_SCOPE.to_owned(),
            Task::Intents | Task::Labels => match label {
                Some(Value::String(l)) if !l.is_empty() => l.clone(),
                _ => bail!("{}: `label` must be a non-empty string", at()),
            },
            Task::Sentiment => match label {
                Some(Value::String(l)) => sentiment_label(l).with_context(at)?.to_owned(),
                _ => bail!("{}: `label` must be a sentiment string", at()),
            },
        };
        out.push((text, label));
    }
    if out.is_empty() {
        bail!("{} holds no lines", path.display());
    }
    Ok(out)
}

/// Maps the sentiment spellings of the data sets onto kedai's three labels.
pub fn sentiment_label(raw: &str) -> anyhow::Result<&'static str> {
    Ok(match raw.to_ascii_lowercase().as_str() {
        "positive" | "pos" => "positive",
        "negative" | "neg" => "negative",
        "neutral" | "neu" | "q" => "neutral",
        other => bail!(
            "sentiment label {other:?} is not one of positive, neutral, negative \
             (or pos, neu, neg, q)"
        ),
    })
}

/// Scores of one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub task: Task,
    pub embedding_model: String,
    /// The e5 layers pooled (`12` is the sentence embedding).
    pub pooling: String,
    pub train_examples: usize,
    pub examples: usize,
    pub labels: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub in_scope_accuracy: Option<f64>,
    pub oos_recall: Option<f64>,
    pub oos_precision: Option<f64>,
    pub per_label: BTreeMap<String, LabelScore>,
    pub confusions: Vec<Confusion>,
    pub fit: FitReport,
    /// The out-of-scope gate's rule and its objective on the held-out fold
    /// (absent without out-of-scope training lines or with
    /// `--no-scope-gate`).
    pub scope_gate: Option<GateReport>,
    pub timings: Timings,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelScore {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Confusion {
    pub gold: String,
    pub predicted: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    /// Embedding both files; near zero when every text was cached.
    pub embed_seconds: f64,
    /// Texts the model actually ran on (the rest came from the cache).
    pub embedded_texts: usize,
    pub fit_seconds: f64,
    pub predict_seconds: f64,
}

fn evaluate(args: &ClassifierArgs, task: Task, settings: &Settings) -> anyhow::Result<Report> {
    let train = labelled(&args.train, task)?;
    let test = labelled(&args.test, task)?;
    let model = crate::models::resolve(
        &settings.models,
        &settings.models.embedding,
        PrepareMode::from_settings(&settings.models, Progress::Lines),
    )?;
    let device = select_device("auto")?;
    let prompt_task = match args.task_prompt {
        TaskPromptArg::Retrieval => crate::inference::EmbedTask::Retrieval,
        TaskPromptArg::Classification => crate::inference::EmbedTask::Classification,
    };
    let options = crate::inference::EmbedderOptions {
        task: prompt_task,
        ..Default::default()
    };
    let embedder = TextEmbedder::load_with(&model, &device, options)?;
    let pooling = args.pooling(embedder.layers())?;
    let embedder = PooledQueries::new(embedder, pooling.clone())?;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| settings.models.cache_dir().join("embeddings"));
    let cached = CachedEmbedder::open(embedder, &cache_dir)?;
    let texts: Vec<&str> = train.iter().chain(&test).map(|(t, _)| t.as_str()).collect();
    let started = Instant::now();
    let mut embedded = 0;
    let vectors = cached.embed_with_progress(&texts, &mut |done, total| {
        embedded = total;
        eprint!("\rembedding {done}/{total} new texts");
        let _ = std::io::stderr().flush();
        if done == total {
            eprintln!();
        }
    })?;
    let embed_seconds = started.elapsed().as_secs_f64();
    let (train_vectors, test_vectors) = vectors.split_at(train.len());
    let train_labels: Vec<&str> = train.iter().map(|(_, l)| l.as_str()).collect();
    let started = Instant::now();
    // Intents keep the data's label frequencies; sentiment, anger and
    // emotion labels are weighed equally (their rare labels matter most).
    let mut config = match task {
        Task::Intents => TrainConfig::default(),
        Task::Sentiment | Task::Anger | Task::Labels => TrainConfig::balanced(),
    };
    if !args.l2.is_empty() {
        config.l2_grid = args.l2.clone();
    }
    let (head, train_x, test_vectors) = if args.char_ngrams > 0 {
        let train_texts: Vec<&str> = train.iter().map(|(t, _)| t.as_str()).collect();
        let ngrams = CharNgrams::fit(&train_texts, args.char_ngrams)?;
        let with_ngrams = |vectors: &[Vec<f32>], texts: &mut dyn Iterator<Item = &str>| {
            vectors
                .iter()
                .zip(texts)
                .map(|(v, t)| {
                    let mut v = v.clone();
                    v.extend(ngrams.features(t));
                    v
                })
                .collect::<Vec<_>>()
        };
        let train_x = with_ngrams(train_vectors, &mut train.iter().map(|(t, _)| t.as_str()));
        let test_x = with_ngrams(test_vectors, &mut test.iter().map(|(t, _)| t.as_str()));
        let config = TrainConfig {
            scaling: Scaling::Leading {
                dims: train_vectors.first().map_or(0, Vec::len),
                scale: args.embedding_scale,
            },
            ..config
        };
        (
            LinearHead::fit(&train_x, &train_labels, &config)?,
            train_x,
            test_x,
        )
    } else {
        (
            LinearHead::fit(train_vectors, &train_labels, &config)?,
            train_vectors.to_vec(),
            test_vectors.to_vec(),
        )
    };
    let gate = match task {
        Task::Intents if !args.no_scope_gate => ScopeGate::fit(&train_x, &head),
        _ => None,
    };
    drop(train_x);
    let fit_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut predictions = head.predict_batch(&test_vectors)?;
    if let Some((gate, _)) = &gate {
        for (prediction, vector) in predictions.iter_mut().zip(&test_vectors) {
            let p = head.probabilities(vector)?;
            *prediction = gate.apply(&head, vector, &p);
        }
    }
    let predict_seconds = started.elapsed().as_secs_f64();
    let gold: Vec<&str> = test.iter().map(|(_, l)| l.as_str()).collect();
    let predicted: Vec<&str> = predictions.iter().map(|p| p.label.as_str()).collect();
    let scores = score(&gold, &predicted, args.confusions);
    Ok(Report {
        task,
        embedding_model: cached_model_id(&cached),
        pooling: pooling.to_string(),
        train_examples: train.len(),
        examples: test.len(),
        labels: head.labels().len(),
        accuracy: scores.accuracy,
        macro_f1: scores.macro_f1,
        in_scope_accuracy: scores.in_scope_accuracy,
        oos_recall: scores.oos_recall,
        oos_precision: scores.oos_precision,
        per_label: scores.per_label,
        confusions: scores.confusions,
        fit: head.report().clone(),
        scope_gate: gate.map(|(_, report)| report),
        timings: Timings {
            embed_seconds,
            embedded_texts: embedded,
            fit_seconds,
            predict_seconds,
        },
    })
}

fn cached_model_id<E: crate::understand::QueryEmbedder>(cached: &CachedEmbedder<E>) -> String {
    crate::understand::QueryEmbedder::model_id(cached).to_owned()
}

/// Classification scores of predictions against gold labels.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub accuracy: f64,
    /// Mean F1 over every label that is gold or predicted at least once.
    pub macro_f1: f64,
    /// Present only when some gold label is `out_of_scope`.
    pub in_scope_accuracy: Option<f64>,
    pub oos_recall: Option<f64>,
    pub oos_precision: Option<f64>,
    pub per_label: BTreeMap<String, LabelScore>,
    pub confusions: Vec<Confusion>,
}

pub fn score(gold: &[&str], predicted: &[&str], confusions: usize) -> Scores {
    let n = gold.len().max(1) as f64;
    let correct = gold.iter().zip(predicted).filter(|(g, p)| g == p).count();
    let labels: BTreeSet<&str> = gold.iter().chain(predicted).copied().collect();
    let mut per_label = BTreeMap::new();
    for label in &labels {
        let tp = gold
            .iter()
            .zip(predicted)
            .filter(|(g, p)| g == &label && p == &label)
            .count() as f64;
        let gold_n = gold.iter().filter(|g| *g == label).count();
        let pred_n = predicted.iter().filter(|p| *p == label).count();
        let precision = if pred_n > 0 { tp / pred_n as f64 } else { 0.0 };
        let recall = if gold_n > 0 { tp / gold_n as f64 } else { 0.0 };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        per_label.insert(
            (*label).to_owned(),
            LabelScore {
                precision,
                recall,
                f1,
                support: gold_n,
            },
        );
    }
    let macro_f1 = per_label.values().map(|s| s.f1).sum::<f64>() / per_label.len().max(1) as f64;
    let has_oos = gold.contains(&OUT_OF_SCOPE);
    let (in_scope_accuracy, oos_recall, oos_precision) = if has_oos {
        let in_scope: Vec<(&&str, &&str)> = gold
            .iter()
            .zip(predicted)
            .filter(|(g, _)| **g != OUT_OF_SCOPE)
            .collect();
        let in_acc =
            in_scope.iter().filter(|(g, p)| g == p).count() as f64 / in_scope.len().max(1) as f64;
        let s = &per_label[OUT_OF_SCOPE];
        let predicted_oos = predicted.contains(&OUT_OF_SCOPE);
        (
            Some(in_acc),
            Some(s.recall),
            Some(if predicted_oos { s.precision } else { 0.0 }),
        )
    } else {
        (None, None, None)
    };
    let mut pairs: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (g, p) in gold.iter().zip(predicted).filter(|(g, p)| g != p) {
        *pairs.entry((g, p)).or_default() += 1;
    }
    let mut pairs: Vec<((&str, &str), usize)> = pairs.into_iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Scores {
        accuracy: correct as f64 / n,
        macro_f1,
        in_scope_accuracy,
        oos_recall,
        oos_precision,
        per_label,
        confusions: pairs
            .into_iter()
            .take(confusions)
            .map(|((g, p), count)| Confusion {
                gold: g.to_owned(),
                predicted: p.to_owned(),
                count,
            })
            .collect(),
    }
}

fn print(report: &Report, output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string(report)
                .unwrap_or_else(|e| json!({ "error": e.to_string() }).to_string())
        ),
        Output::Human => {
            let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
            println!(
                "{:?}: trained on {} lines ({} labels), tested on {}",
                report.task, report.train_examples, report.labels, report.examples
            );
            println!(
                "accuracy {:.4}  macro-F1 {:.4}  in-scope accuracy {}  OOS recall {}  OOS precision {}",
                report.accuracy,
                report.macro_f1,
                opt(report.in_scope_accuracy),
                opt(report.oos_recall),
                opt(report.oos_precision)
            );
            println!(
                "fit: l2 {}  temperature {:.3}  OOS threshold {}  {:.1}s; embedded {} new texts in {:.1}s",
                report.fit.l2,
                report.fit.temperature,
                report
                    .fit
                    .out_of_scope_threshold
                    .map_or("-".to_owned(), |t| format!("{t:.3}")),
                report.timings.fit_seconds,
                report.timings.embedded_texts,
                report.timings.embed_seconds
            );
            if !report.confusions.is_empty() {
                println!("most frequent confusions (gold -> predicted):");
                for c in &report.confusions {
                    println!("  {:>4}  {} -> {}", c.count, c.gold, c.predicted);
                }
            }
        }
    }
}

/// How many lines a split kept and wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SplitCounts {
    pub read: usize,
    pub kept: usize,
    pub train: usize,
    pub test: usize,
}

fn hash64(salt: &str, id: &str) -> u64 {
    let digest = Sha256::digest(format!("{salt}:{id}").as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

fn field_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn split(args: &SplitArgs) -> anyhow::Result<SplitCounts> {
    if args.test_percent == 0 || args.test_percent >= 100 {
        bail!(
            "--test-percent must be between 1 and 99, got {}",
            args.test_percent
        );
    }
    let filters: Vec<(&str, &str)> = args
        .filters
        .iter()
        .map(|f| {
            f.split_once('=')
                .with_context(|| format!("--where {f:?} is not KEY=VALUE"))
        })
        .collect::<anyhow::Result<_>>()?;
    let raw = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let mut read = 0;
    let mut kept: Vec<(usize, String, &str)> = Vec::new();
    for (n, line) in raw
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        read += 1;
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not JSON", args.input.display(), n + 1))?;
        let matches = filters
            .iter()
            .all(|(k, v)| value.get(*k).is_some_and(|f| field_text(f) == *v));
        if matches {
            let id = value
                .get("id")
                .or_else(|| value.get("text"))
                .map(field_text)
                .unwrap_or_default();
            kept.push((n, id, line));
        }
    }
    if let Some(limit) = args.limit {
        kept.sort_by_key(|(_, id, _)| hash64("sample", id));
        kept.truncate(limit);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let (mut train, mut test) = (String::new(), String::new());
    let (mut n_train, mut n_test) = (0, 0);
    // Keep the input's order inside each file.
    kept.sort_by_key(|(position, _, _)| *position);
    for (_, id, line) in &kept {
        if hash64(&args.salt, id) % 100 < u64::from(args.test_percent) {
            test.push_str(line);
            test.push('\n');
            n_test += 1;
        } else {
            train.push_str(line);
            train.push('\n');
            n_train += 1;
        }
    }
    for (name, body) in [("train.jsonl", &train), ("test.jsonl", &test)] {
        let path = args.out.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(SplitCounts {
        read,
        kept: kept.len(),
        train: n_train,
        test: n_test,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_with_out_of_scope() {
        let gold = ["a", "a", "b", OUT_OF_SCOPE, OUT_OF_SCOPE];
        let predicted = ["a", "b", "b", OUT_OF_SCOPE, "a"];
        let s = score(&gold, &predicted, 10);
        assert!((s.accuracy - 0.6).abs() < 1e-9);
        assert!((s.in_scope_accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert!((s.oos_recall.unwrap() - 0.5).abs() < 1e-9);
        assert!((s.oos_precision.unwrap() - 1.0).abs() < 1e-9);
        // F1: a = 2*(.5*.5)/(1) = .5, b = 2*(.5*1)/1.5 = 2/3, oos = 2*(1*.5)/1.5 = 2/3
        assert!((s.macro_f1 - (0.5 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0).abs() < 1e-9);
        assert_eq!(s.confusions.len(), 2);
    }

    #[test]
    fn no_out_of_scope_lines_means_no_oos_scores() {
        let s = score(&["a", "b"], &["a", "a"], 5);
        assert_eq!(s.in_scope_accuracy, None);
        assert_eq!(s.oos_recall, None);
        assert!((s.accuracy - 0.5).abs() < 1e-9);
    }

    #[test]
    fn e5_layer_options_become_a_pooling() {
        let args = |layers: Vec<usize>, mix, max| ClassifierArgs {
            train: "train.jsonl".into(),
            test: "test.jsonl".into(),
            cache_dir: None,
            confusions: 15,
            char_ngrams: 0,
            embedding_scale: 0.05,
            l2: Vec::new(),
            e5_layers: layers,
            e5_layer_mix: mix,
            e5_max_pool: max,
            task_prompt: TaskPromptArg::Retrieval,
            no_scope_gate: false,
        };
        let plain = args(Vec::new(), LayerMixArg::Concat, false);
        assert!(plain.pooling(12).unwrap().is_final_mean(12));
        let mixed = args(vec![4, 8, 12], LayerMixArg::Average, true);
        assert_eq!(mixed.pooling(12).unwrap().to_string(), "4,8,12:average+max");
        let err = args(vec![8, 8], LayerMixArg::Concat, false)
            .pooling(12)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--e5-layers: layer 8 is listed twice"),
            "{err}"
        );
    }

    #[test]
    fn sentiment_spellings_map_to_three_labels() {
        assert_eq!(sentiment_label("pos").unwrap(), "positive");
        assert_eq!(sentiment_label("NEG").unwrap(), "negative");
        assert_eq!(sentiment_label("q").unwrap(), "neutral");
        assert!(sentiment_label("joy").is_err());
    }

    #[test]
    fn split_is_deterministic_filtered_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("dev.jsonl");
        let mut body = String::new();
        for i in 0..200 {
            let lang = if i % 2 == 0 { "id" } else { "en" };
            body.push_str(&format!(
                "{{\"id\":\"x:{i}\",\"text\":\"t{i}\",\"label\":\"l\",\"lang\":\"{lang}\"}}\n"
            ));
        }
        std::fs::write(&input, body).unwrap();
        let args = |out: &str| SplitArgs {
            input: input.clone(),
            out: dir.path().join(out),
            test_percent: 20,
            filters: vec!["lang=id".into()],
            limit: Some(60),
            salt: "split".into(),
        };
        let a = split(&args("a")).unwrap();
        let b = split(&args("b")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.read, 200);
        assert_eq!(a.kept, 60);
        assert_eq!(a.train + a.test, 60);
        assert!(a.test > 3 && a.test < 25, "{a:?}");
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("a/test.jsonl"), read("b/test.jsonl"));
        assert!(!read("a/train.jsonl").contains("\"en\""));
    }

    #[test]
    fn a_training_file_splits_again_only_with_another_salt() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("dev.jsonl");
        let body: String = (0..200)
            .map(|i| format!("{{\"id\":\"x:{i}\",\"text\":\"t{i}\",\"label\":\"l\"}}\n"))
            .collect();
        std::fs::write(&input, body).unwrap();
        let args = |input: PathBuf, out: &str, salt: &str| SplitArgs {
            input,
            out: dir.path().join(out),
            test_percent: 25,
            filters: Vec::new(),
            limit: None,
            salt: salt.into(),
        };
        let first = split(&args(input.clone(), "first", "split")).unwrap();
        let train = dir.path().join("first/train.jsonl");
        let same = split(&args(train.clone(), "same", "split")).unwrap();
        assert_eq!(same.test, 0, "the same salt sends every line to train");
        let again = split(&args(train, "validation", "validation")).unwrap();
        assert_eq!(again.train + again.test, first.train);
        assert!(again.test > 20 && again.test < 70, "{again:?}");
    }

    #[test]
    fn labelled_lines_follow_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(
            &path,
            concat!(
                "{\"text\":\"hi\",\"label\":\"greet\",\"anger\":false}\n",
                "{\"text\":\"weather?\",\"label\":\"oos\",\"in_scope\":false,\"anger\":true}\n",
            ),
        )
        .unwrap();
        let intents = labelled(&path, Task::Intents).unwrap();
        assert_eq!(intents[1].1, OUT_OF_SCOPE);
        let anger = labelled(&path, Task::Anger).unwrap();
        assert_eq!(anger[0].1, "not_angry");
        assert_eq!(anger[1].1, "angry");
        assert!(labelled(&path, Task::Sentiment).is_err());
        std::fs::write(&path, "{\"text\":\"x\",\"label\":[\"a\"]}\n").unwrap();
        assert!(labelled(&path, Task::Intents).is_err());
        std::fs::write(&path, "{\"text\":\"\",\"label\":\"a\"}\n").unwrap();
        assert!(labelled(&path, Task::Intents).is_err());
    }
}
