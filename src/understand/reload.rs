//! Retraining from exemplar folders while kedai runs: what the folders hold
//! right now ([`ExemplarSources::fingerprint`], cheap enough to poll every
//! few seconds) and one full retraining of every head from them
//! ([`retrain`]), reporting what was learned.
//!
//! Nothing here swaps heads or schedules anything: callers decide when to
//! retrain and hand the result to [`super::Understander::replace_heads`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};

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
    /// The heads were read from those saved for the same exemplars, model,
    /// settings and code, not fitted again.
    pub reused: bool,
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
    Ok((heads, report_of(&set, started, false)))
}

/// As [`retrain`], keeping the heads in `dir` under a key of everything
/// they were fitted from: the exemplars' texts and labels, the model, the
/// training settings and the training code itself. Fitting is
/// deterministic, so heads saved under the same key are the heads a
/// training would give; a restart, a second data directory or a command on
/// the same machine reads them in a moment instead of fitting again. A
/// saved file that cannot be read is fitted again and replaced.
pub fn retrain_saved(
    embedder: &dyn QueryEmbedder,
    sources: &ExemplarSources,
    config: &TrainConfig,
    dir: &Path,
) -> Result<(Heads, TrainingReport), UnderstandError> {
    let started = Instant::now();
    let set = ExemplarSet::load(&sources.intents_dir, sources.sentiment_dir.as_deref())?;
    let path = dir.join(format!(
        "heads-{}.cbor",
        hex(&heads_key(embedder.model_id(), &set, config))
    ));
    match read_heads(&path) {
        Ok(Some(heads)) => return Ok((heads, report_of(&set, started, true))),
        Ok(None) => {}
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "saved heads unreadable; fitting again")
        }
    }
    let heads = Heads::train(embedder, &set.intents, &set.sentiment, config)?;
    match write_heads(&path, &heads) {
        Ok(()) => prune_saved_heads(dir, &path),
        Err(err) => tracing::warn!(path = %path.display(), error = %err, "trained heads not saved"),
    }
    Ok((heads, report_of(&set, started, false)))
}

/// Saved heads kept besides the newest: an edit of the exemplars (or a new
/// kedai) saves new heads, and the older ones are rarely wanted again.
const SAVED_HEADS_KEPT: usize = 6;

/// Deletes all but the [`SAVED_HEADS_KEPT`] most recently written saved
/// heads in `dir`, never `keep`.
fn prune_saved_heads(dir: &Path, keep: &Path) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    let mut saved: Vec<(SystemTime, PathBuf)> = listing
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("heads-") && n.ends_with(".cbor"))
        })
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    saved.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in saved.into_iter().skip(SAVED_HEADS_KEPT) {
        if path != keep {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn report_of(set: &ExemplarSet, started: Instant, reused: bool) -> TrainingReport {
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
    TrainingReport {
        exemplars: set.intents.len() + set.sentiment.len(),
        intents: set.intent_counts(),
        languages,
        intent_languages: set.intent_language_counts(),
        sentiment: set.sentiment_counts(),
        files,
        seconds: started.elapsed().as_secs_f64(),
        reused,
    }
}

/// The code that fits heads: a change to any of it (or to a dependency,
/// through the lock file) gives saved heads a new key.
const TRAINING_CODE: &[&str] = &[
    include_str!("classifier.rs"),
    include_str!("classifier/optimise.rs"),
    include_str!("classifier/calibrate.rs"),
    include_str!("exemplars.rs"),
    include_str!("scope.rs"),
    include_str!("routes.rs"),
    include_str!("understander.rs"),
    include_str!("reload.rs"),
    include_str!("../../Cargo.lock"),
];

/// Version of the saved heads' file.
const HEADS_FORMAT: &str = "kedai-heads-1";

fn heads_key(model_id: &str, set: &ExemplarSet, config: &TrainConfig) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(HEADS_FORMAT.as_bytes());
    for code in TRAINING_CODE {
        field(code.as_bytes());
    }
    field(model_id.as_bytes());
    field(format!("{config:?}").as_bytes());
    for example in &set.intents {
        field(example.text.as_bytes());
        field(example.label.as_bytes());
    }
    field(b"sentiment");
    for example in &set.sentiment {
        field(example.text.as_bytes());
        field(example.sentiment.as_bytes());
        field(&[example.anger, u8::from(example.urgent)]);
    }
    hash.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The heads saved at `path`; `None` when there are none.
fn read_heads(path: &Path) -> Result<Option<Heads>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    ciborium::from_reader(std::io::BufReader::new(file))
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Writes `heads` beside `path` and renames them into place, so a reader
/// never sees half a file.
fn write_heads(path: &Path, heads: &Heads) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7().simple()));
    let written = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        let mut out = std::io::BufWriter::new(file);
        ciborium::into_writer(heads, &mut out).map_err(|e| e.to_string())?;
        out.into_inner()
            .map_err(|e| e.to_string())?
            .sync_all()
            .map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
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

    /// [`Lengths`], counting the texts it embeds.
    struct Counted(std::sync::atomic::AtomicUsize);

    impl QueryEmbedder for Counted {
        fn model_id(&self) -> &str {
            "fake/lengths"
        }
        fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
            self.0
                .fetch_add(texts.len(), std::sync::atomic::Ordering::SeqCst);
            Lengths.embed_queries(texts)
        }
    }

    fn write_all(dir: &Path, lines: &[String]) {
        std::fs::write(dir.join("en.jsonl"), lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn saved_heads_are_read_back_for_the_same_exemplars_and_fitted_again_otherwise() {
        let exemplars = tempfile::tempdir().unwrap();
        let saved = tempfile::tempdir().unwrap();
        let mut lines: Vec<String> = (0..12)
            .map(|i| {
                let (text, label) = match i % 3 {
                    0 => ("hi".repeat(i + 1), "greeting"),
                    1 => ("thanks a lot".repeat(i + 1), "thanks"),
                    _ => ("what is the weather".repeat(i + 1), "out_of_scope"),
                };
                format!(r#"{{"text": "{text}", "label": "{label}"}}"#)
            })
            .collect();
        write_all(exemplars.path(), &lines);
        let sources = ExemplarSources {
            intents_dir: exemplars.path().to_path_buf(),
            sentiment_dir: None,
        };
        let config = TrainConfig::default();
        let train = || {
            let embedder = Counted(Default::default());
            let (heads, report) =
                retrain_saved(&embedder, &sources, &config, saved.path()).unwrap();
            let embedded = embedder.0.load(std::sync::atomic::Ordering::SeqCst);
            (heads, report, embedded)
        };

        let (fitted, report, embedded) = train();
        assert!(!report.reused);
        assert_eq!(embedded, 12);
        let (read, report, embedded) = train();
        assert!(
            report.reused,
            "the same exemplars, model, settings and code"
        );
        assert_eq!(embedded, 0, "nothing embedded or fitted");
        assert_eq!(
            report.exemplars, 12,
            "the report still counts the exemplars"
        );
        for text in [
            "hihi",
            "thanks a lot",
            "what is the weather",
            "anything else",
        ] {
            let v = &Lengths.embed_queries(&[text]).unwrap()[0];
            assert_eq!(
                fitted.intents.classify(v).unwrap(),
                read.intents.classify(v).unwrap(),
                "{text}"
            );
        }
        assert_eq!(
            fitted.intents.gate().is_some(),
            read.intents.gate().is_some()
        );

        // An edited exemplar is a new key: fitted again, and saved too.
        lines[0] = r#"{"text": "hello", "label": "greeting"}"#.into();
        write_all(exemplars.path(), &lines);
        let (_, report, embedded) = train();
        assert!(!report.reused);
        assert!(embedded > 0);
        let files = || {
            std::fs::read_dir(saved.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect::<Vec<_>>()
        };
        assert_eq!(files().len(), 2, "{:?}", files());

        // A damaged file is fitted again and replaced.
        for file in files() {
            std::fs::write(&file, b"not heads").unwrap();
        }
        let (_, report, _) = train();
        assert!(!report.reused);
        assert!(train().1.reused, "replaced by readable heads");
    }
}
