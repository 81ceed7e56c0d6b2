//! `kedai eval guard`: how well the reply guard recognises promises of
//! binding actions, by its word patterns and by meaning (multilingual-e5
//! similarity to kedai's promise exemplars), and how often it flags
//! ordinary replies. It reads the labelled replies of
//! `kb/guard/calibration.jsonl`, the red-team promises
//! (`tests/data/redteam/promises.jsonl`), the demo shop's FAQ answers and
//! the shop replies of `kb/eval/replies.jsonl`; it calibrates the meaning
//! threshold as the lowest similarity at which no ordinary reply is
//! flagged, and prints the figures `docs/quality.md` quotes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::Output;
use crate::config::Settings;
use crate::inference::EmbedRole;
use crate::kb::Embedder;
use crate::pipeline::guard::meaning::{read_exemplars, PromiseExemplars, PROMISE_MARGIN};
use crate::pipeline::guard::{self, GuardConfig, GuardContext, Violation};

#[derive(Debug, Args)]
pub struct GuardArgs {
    /// Labelled replies: `{"lang", "promise": true|false, "text"}` per line.
    #[arg(long, default_value = "kb/guard/calibration.jsonl")]
    pub calibration: PathBuf,
    /// Promise exemplars for the meaning check.
    #[arg(long, default_value = "kb/guard/promises.jsonl")]
    pub exemplars: PathBuf,
    /// Red-team promises: `{"lang", "kind", "style", "text"}` per line.
    #[arg(long, default_value = "tests/data/redteam/promises.jsonl")]
    pub redteam: PathBuf,
    /// FAQ entries whose answers are ordinary replies of the shop.
    #[arg(long, default_value = "kb/demo/faq.jsonl")]
    pub faq: PathBuf,
    /// Conversations whose `ai` and `agent` turns are ordinary replies.
    #[arg(long, default_value = "kb/eval/replies.jsonl")]
    pub replies: PathBuf,
    /// Word patterns only: no embedding model.
    #[arg(long)]
    pub patterns_only: bool,
}

/// A count out of a total.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Share {
    pub count: usize,
    pub total: usize,
}

impl Share {
    fn add(&mut self, hit: bool) {
        self.total += 1;
        self.count += usize::from(hit);
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, self.total)
    }
}

/// Figures for one way of judging (patterns, meaning, or either).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Red-team promises caught, per language.
    pub redteam: BTreeMap<String, Share>,
    /// Labelled promises caught, per language.
    pub calibration_promises: BTreeMap<String, Share>,
    /// Labelled ordinary replies flagged (false positives), per language.
    pub calibration_ordinary: BTreeMap<String, Share>,
    /// FAQ answers flagged, and which, with the binding kinds found.
    pub faq: Share,
    pub faq_flagged: Vec<String>,
    /// Shop replies of the reply evaluation set flagged.
    pub eval_replies: Share,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub threshold: f32,
    pub promises_caught: Share,
    pub ordinary_flagged: Share,
}

#[derive(Debug, Clone, Serialize)]
pub struct GuardReport {
    pub patterns: Figures,
    /// `None` with `--patterns-only`.
    pub meaning: Option<Figures>,
    pub either: Option<Figures>,
    pub model: Option<String>,
    pub threshold: f32,
    /// The lowest margin at which no labelled ordinary reply is flagged,
    /// rounded up to 0.005.
    pub calibrated_threshold: Option<f32>,
    /// The lowest margin at which no ordinary reply of any set (labelled,
    /// FAQ answers, evaluation replies) is flagged, rounded up to 0.005:
    /// the value kedai uses, since its held-out sets are ordinary replies
    /// too.
    pub no_false_positive_threshold: Option<f32>,
    pub sweep: Vec<SweepRow>,
}

struct Sample {
    set: &'static str,
    lang: String,
    promise: bool,
    label: String,
    text: String,
}

fn lines(path: &Path) -> anyhow::Result<Vec<Value>> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    raw.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))
        })
        .collect()
}

fn field(value: &Value, key: &str, path: &Path) -> anyhow::Result<String> {
    value[key]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{}: a line has no string `{key}`", path.display()))
}

fn samples(args: &GuardArgs) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    for v in lines(&args.redteam)? {
        out.push(Sample {
            set: "redteam",
            lang: field(&v, "lang", &args.redteam)?,
            promise: true,
            label: field(&v, "style", &args.redteam)?,
            text: field(&v, "text", &args.redteam)?,
        });
    }
    for v in lines(&args.calibration)? {
        out.push(Sample {
            set: "calibration",
            lang: field(&v, "lang", &args.calibration)?,
            promise: v["promise"].as_bool().with_context(|| {
                format!(
                    "{}: `promise` must be true or false",
                    args.calibration.display()
                )
            })?,
            label: String::new(),
            text: field(&v, "text", &args.calibration)?,
        });
    }
    for v in lines(&args.faq)? {
        out.push(Sample {
            set: "faq",
            lang: field(&v, "lang", &args.faq)?,
            promise: false,
            label: field(&v, "id", &args.faq)?,
            text: field(&v, "answer", &args.faq)?,
        });
    }
    for v in lines(&args.replies)? {
        for turn in v["history"].as_array().into_iter().flatten() {
            if turn["role"] != "buyer" {
                out.push(Sample {
                    set: "replies",
                    lang: field(&v, "lang", &args.replies)?,
                    promise: false,
                    label: field(&v, "id", &args.replies)?,
                    text: field(turn, "text", &args.replies)?,
                });
            }
        }
    }
    Ok(out)
}

fn tally(samples: &[Sample], flagged: &[Option<String>]) -> Figures {
    let mut figures = Figures::default();
    for (sample, flag) in samples.iter().zip(flagged) {
        let hit = flag.is_some();
        let lang = sample.lang.clone();
        match (sample.set, sample.promise) {
            ("redteam", _) => figures.redteam.entry(lang).or_default().add(hit),
            ("calibration", true) => figures
                .calibration_promises
                .entry(lang)
                .or_default()
                .add(hit),
            ("calibration", false) => figures
                .calibration_ordinary
                .entry(lang)
                .or_default()
                .add(hit),
            ("faq", _) => {
                figures.faq.add(hit);
                if let Some(why) = flag {
                    figures
                        .faq_flagged
                        .push(format!("{} ({why})", sample.label));
                }
            }
            _ => figures.eval_replies.add(hit),
        }
    }
    figures
}

fn by_patterns(text: &str) -> Option<String> {
    let config = GuardConfig {
        max_chars: usize::MAX,
        allowed_link_hosts: Vec::new(),
    };
    let kinds: Vec<&str> = guard::check(text, &config, &GuardContext::default())
        .into_iter()
        .filter_map(|v| match v {
            Violation::BindingAction { kind, .. } => Some(kind.as_str()),
            _ => None,
        })
        .collect();
    (!kinds.is_empty()).then(|| kinds.join(", "))
}

pub fn run(args: &GuardArgs, settings: &Settings, output: Output) -> anyhow::Result<()> {
    let samples = samples(args)?;
    let patterns: Vec<Option<String>> = samples.iter().map(|s| by_patterns(&s.text)).collect();
    let mut report = GuardReport {
        patterns: tally(&samples, &patterns),
        meaning: None,
        either: None,
        model: None,
        threshold: PROMISE_MARGIN,
        calibrated_threshold: None,
        no_false_positive_threshold: None,
        sweep: Vec::new(),
    };
    if !args.patterns_only {
        let embedder = super::load_embedder(settings)?;
        let exemplars = read_exemplars(&args.exemplars)?;
        let texts: Vec<&str> = exemplars.iter().map(|e| e.text.as_str()).collect();
        let vectors = embed_all(embedder.as_ref(), &texts)?;
        let set = PromiseExemplars::new(exemplars, vectors, PROMISE_MARGIN);
        let texts: Vec<&str> = samples.iter().map(|s| s.text.as_str()).collect();
        let scores: Vec<f32> = embed_all(embedder.as_ref(), &texts)?
            .iter()
            .map(|v| set.score(v).map_or(f32::MIN, |(margin, _, _)| margin))
            .collect();
        let meaning: Vec<Option<String>> = scores
            .iter()
            .map(|s| (*s >= PROMISE_MARGIN).then(|| format!("margin {s:.3}")))
            .collect();
        let either: Vec<Option<String>> = patterns
            .iter()
            .zip(&meaning)
            .map(|(p, m)| p.clone().or_else(|| m.clone()))
            .collect();
        report.meaning = Some(tally(&samples, &meaning));
        report.either = Some(tally(&samples, &either));
        report.model = Some(embedder.model_id().to_string());
        // Calibrated on the labelled set alone; the FAQ answers, the
        // evaluation replies and the red-team promises are held out.
        let above = |labelled_only: bool| {
            let highest = samples
                .iter()
                .zip(&scores)
                .filter(|(s, _)| !s.promise && (s.set == "calibration" || !labelled_only))
                .map(|(_, score)| *score)
                .fold(f32::MIN, f32::max);
            ((highest * 200.0).floor() + 1.0) / 200.0
        };
        report.calibrated_threshold = Some(above(true));
        report.no_false_positive_threshold = Some(above(false));
        report.sweep = (0..=16)
            .map(|i| {
                let threshold = -0.03 + 0.005 * i as f32;
                let mut row = SweepRow {
                    threshold,
                    promises_caught: Share::default(),
                    ordinary_flagged: Share::default(),
                };
                for (sample, score) in samples.iter().zip(&scores) {
                    let hit = *score >= threshold;
                    match (sample.set, sample.promise) {
                        ("calibration", true) => row.promises_caught.add(hit),
                        (_, false) => row.ordinary_flagged.add(hit),
                        _ => {}
                    }
                }
                row
            })
            .collect();
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string(&report)?),
        Output::Human => print_report(&report),
    }
    Ok(())
}

fn embed_all(embedder: &dyn Embedder, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(32) {
        out.extend(embedder.embed(chunk, EmbedRole::Query)?);
    }
    Ok(out)
}

fn print_figures(name: &str, figures: &Figures) {
    let total = |m: &BTreeMap<String, Share>| {
        m.values().fold(Share::default(), |a, s| Share {
            count: a.count + s.count,
            total: a.total + s.total,
        })
    };
    println!("{name}");
    println!("  red-team promises caught   {}", total(&figures.redteam));
    for (lang, share) in &figures.redteam {
        println!("    {lang:<8} {share}");
    }
    println!(
        "  labelled promises caught   {}",
        total(&figures.calibration_promises)
    );
    for (lang, share) in &figures.calibration_promises {
        println!("    {lang:<8} {share}");
    }
    println!(
        "  ordinary replies flagged   {}",
        total(&figures.calibration_ordinary)
    );
    println!("  FAQ answers flagged        {}", figures.faq);
    for id in &figures.faq_flagged {
        println!("    {id}");
    }
    println!("  eval replies flagged       {}", figures.eval_replies);
}

fn print_report(report: &GuardReport) {
    print_figures("word patterns", &report.patterns);
    if let (Some(meaning), Some(either)) = (&report.meaning, &report.either) {
        println!(
            "model {}: margin {:.3} in use; lowest with no labelled ordinary reply flagged {:.3}, with none of any set {:.3}",
            report.model.as_deref().unwrap_or("?"),
            report.threshold,
            report.calibrated_threshold.unwrap_or(f32::NAN),
            report.no_false_positive_threshold.unwrap_or(f32::NAN)
        );
        print_figures("by meaning", meaning);
        print_figures("either", either);
        println!("margin  labelled promises caught  ordinary replies flagged (all sets)");
        for row in &report.sweep {
            println!(
                "{:>9.3}  {:>24}  {:>24}",
                row.threshold,
                row.promises_caught.to_string(),
                row.ordinary_flagged.to_string()
            );
        }
    }
}
