//! Retraining from exemplar folders while kedai runs: what the folders hold
//! right now ([`ExemplarSources::fingerprint`], cheap enough to poll every
//! few seconds) and one full retraining of every head from them
//! ([`retrain`]), reporting what was learned.
//!
//! Nothing here swaps heads or schedules anything: callers decide when to
//! retrain and hand the result to [`super::Understander::replace_heads`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::classifier::TrainConfig;
use super::exemplars::ExemplarSet;
use super::understander::Heads;
use super::{QueryEmbedder, UnderstandError};

/// The exemplar folders one set of heads is trained from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExemplarSources {
    pub intents_dir: PathBuf,
    /// Sentiment, anger and urgency exemplars; without them only intents
    /// are classified.
    pub sentiment_dir: Option<PathBuf>,
}

/// Name, size and modification time of every `.jsonl` file in the
/// folders (and whether each folder could be listed): two equal
/// fingerprints mean nothing a seller would do has changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, Option<FileState>)>);

/// A file's size and modification time (a folder's file count).
type FileState = (u64, Option<SystemTime>);

impl ExemplarSources {
    pub fn fingerprint(&self) -> Fingerprint {
        let mut entries = Vec::new();
        for dir in std::iter::once(&self.intents_dir).chain(self.sentiment_dir.as_ref()) {
            match std::fs::read_dir(dir) {
                Ok(listing) => {
                    let mut files: Vec<_> = listing
                        .filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                        .map(|p| {
                            let meta = std::fs::metadata(&p)
                                .ok()
                                .map(|m| (m.len(), m.modified().ok()));
                            (p, meta)
                        })
                        .collect();
                    files.sort();
                    entries.push((dir.clone(), Some((files.len() as u64, None))));
                    entries.extend(files);
                }
                Err(_) => entries.push((dir.clone(), None)),
            }
        }
        Fingerprint(entries)
    }
}

/// What one training learned from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingReport {
    /// Intent and sentiment exemplars together.
    pub exemplars: usize,
    /// Intent exemplars per intent.
    pub intents: BTreeMap<String, usize>,
    /// Intent exemplars per language (the file's stem: `th` for `th.jsonl`).
    pub languages: BTreeMap<String, usize>,
    /// Intent exemplars per intent and language.
    pub intent_languages: BTreeMap<String, BTreeMap<String, usize>>,
    /// Sentiment exemplars per sentiment label (empty without a sentiment
    /// folder).
    pub sentiment: BTreeMap<String, usize>,
    /// The files read, in training order.
    pub files: Vec<PathBuf>,
    /// Reading, embedding (only texts not cached yet) and fitting.
    pub seconds: f64,
}

/// Reads every exemplar file and trains every head. A file with a bad line
/// fails the whole training with an error naming `FILE:LINE`, so the
/// caller keeps the heads it has.
pub fn retrain(
    embedder: &dyn QueryEmbedder,
    sources: &ExemplarSources,
    config: &TrainConfig,
) -> Result<(Heads, TrainingReport), UnderstandError> {
    let started = Instant::now();
    let set = ExemplarSet::load(&sources.intents_dir, sources.sentiment_dir.as_deref())?;
    let heads = Heads::train(embedder, &set.intents, &set.sentiment, config)?;
    let mut languages = BTreeMap::new();
    for file in &set.intent_files {
        *languages.entry(file.language.clone()).or_default() += file.examples;
    }
    let files = set
        .intent_files
        .iter()
        .chain(&set.sentiment_files)
        .map(|f| f.path.clone())
        .collect();
    let report = TrainingReport {
        exemplars: set.intents.len() + set.sentiment.len(),
        intents: set.intent_counts(),
        languages,
        intent_languages: set.intent_language_counts(),
        sentiment: set.sentiment_counts(),
        files,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((heads, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    struct Lengths;

    impl QueryEmbedder for Lengths {
        fn model_id(&self) -> &str {
            "fake/lengths"
        }
        fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
            Ok(texts
                .iter()
                .map(|t| {
                    let n = t.chars().count() as f32;
                    vec![n.sin(), n.cos(), 1.0]
                })
                .collect())
        }
    }

    fn write(dir: &Path, name: &str, lines: &[&str]) {
        std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn fingerprint_changes_when_a_file_is_added_or_grows() {
        let dir = tempfile::tempdir().unwrap();
        let sources = ExemplarSources {
            intents_dir: dir.path().to_path_buf(),
            sentiment_dir: None,
        };
        let empty = sources.fingerprint();
        assert_eq!(empty, sources.fingerprint(), "stable when nothing changes");
        write(
            dir.path(),
            "en.jsonl",
            &[r#"{"text": "hi", "label": "greeting"}"#],
        );
        let one = sources.fingerprint();
        assert_ne!(empty, one);
        write(
            dir.path(),
            "en.jsonl",
            &[
                r#"{"text": "hi", "label": "greeting"}"#,
                r#"{"text": "thanks", "label": "thanks"}"#,
            ],
        );
        assert_ne!(one, sources.fingerprint());
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let with_notes = sources.fingerprint();
        std::fs::write(dir.path().join("notes.txt"), "ignored, longer").unwrap();
        assert_eq!(with_notes, sources.fingerprint(), "only .jsonl files count");
    }

    #[test]
    fn retraining_reports_counts_and_a_bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "en.jsonl",
            &[
                r#"{"text": "hi", "label": "greeting"}"#,
                r#"{"text": "hello there", "label": "greeting"}"#,
                "",
                r#"{"text": "thank you so much", "label": "thanks"}"#,
            ],
        );
        write(
            dir.path(),
            "id.jsonl",
            &[r#"{"text": "terima kasih banyak", "label": "thanks"}"#],
        );
        let sources = ExemplarSources {
            intents_dir: dir.path().to_path_buf(),
            sentiment_dir: None,
        };
        let config = TrainConfig {
            holdout_fraction: 0.0,
            ..TrainConfig::default()
        };
        let (heads, report) = retrain(&Lengths, &sources, &config).unwrap();
        assert_eq!(heads.intents.head().labels(), ["greeting", "thanks"]);
        assert_eq!(report.exemplars, 4);
        assert_eq!(report.intents["greeting"], 2);
        assert_eq!(report.intents["thanks"], 2);
        assert_eq!(report.languages["en"], 3);
        assert_eq!(report.languages["id"], 1);
        assert_eq!(report.intent_languages["thanks"]["id"], 1);
        assert!(report.sentiment.is_empty());

        write(
            dir.path(),
            "mine.jsonl",
            &[
                r#"{"text": "where is my parcel", "label": "order_status"}"#,
                "",
                r#"{"text": "", "label": "order_status"}"#,
            ],
        );
        let err = retrain(&Lengths, &sources, &config).expect_err("rejected");
        let shown = err.to_string();
        assert!(shown.ends_with("mine.jsonl:3: `text` is empty"), "{shown}");

        write(dir.path(), "mine.jsonl", &[r#"{"text": "where is it""#]);
        let shown = retrain(&Lengths, &sources, &config)
            .expect_err("rejected")
            .to_string();
        assert!(shown.contains("mine.jsonl:1: "), "{shown}");

        write(
            dir.path(),
            "mine.jsonl",
            &[r#"{"text": "where is it", "label": "order status"}"#],
        );
        let shown = retrain(&Lengths, &sources, &config)
            .expect_err("rejected")
            .to_string();
        assert!(shown.contains("mine.jsonl:1: `label`"), "{shown}");
    }
}
