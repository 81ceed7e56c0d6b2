//! Labelled exemplars and the classifiers trained on them: reading the
//! exemplar files (`kb/intents/exemplars/<lang>.jsonl` with `text` and
//! `label`, `kb/sentiment/exemplars/<lang>.jsonl` with `text`, `sentiment`,
//! `anger` and `urgent`), and [`TextClassifier`], a [`LinearHead`] bound to
//! the embedding model it was trained on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::classifier::{LinearHead, Prediction, TrainConfig};
use super::scope::ScopeGate;
use super::{QueryEmbedder, UnderstandError};

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub text: String,
    pub label: String,
}

impl Example {
    pub fn new(text: impl Into<String>, label: impl Into<String>) -> Example {
        Example {
            text: text.into(),
            label: label.into(),
        }
    }
}

/// A line of a sentiment exemplar file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentimentExample {
    pub text: String,
    /// `positive`, `neutral` or `negative`.
    pub sentiment: String,
    /// 0 none, 1 annoyed, 2 angry or threatening.
    pub anger: u8,
    pub urgent: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntentLine {
    text: String,
    label: String,
}

/// The `.jsonl` files of `dir`, sorted by name so training order (and so
/// the fitted head) does not depend on the file system.
pub fn jsonl_files(dir: &Path) -> Result<Vec<PathBuf>, UnderstandError> {
    let err = |reason: String| UnderstandError::Exemplars {
        path: dir.to_path_buf(),
        reason,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(e.to_string()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(err("holds no .jsonl files".into()));
    }
    Ok(files)
}

/// The longest label an exemplar may carry.
const MAX_LABEL_CHARS: usize = 64;

/// The lines of `path` that are not blank, parsed, with their 1-based
/// line numbers. A line that is not the expected JSON object is an error
/// naming `FILE:LINE`.
fn read_lines<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> Result<Vec<(usize, T)>, UnderstandError> {
    let raw = std::fs::read_to_string(path).map_err(|e| UnderstandError::Exemplars {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    raw.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map(|value| (n + 1, value))
                .map_err(|e| bad_line(path, n + 1, e.to_string()))
        })
        .collect()
}

fn bad_line(path: &Path, line: usize, reason: impl Into<String>) -> UnderstandError {
    UnderstandError::BadExemplar {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn check_text(path: &Path, line: usize, text: &str) -> Result<(), UnderstandError> {
    if text.trim().is_empty() {
        return Err(bad_line(path, line, "`text` is empty"));
    }
    Ok(())
}

fn check_label(path: &Path, line: usize, label: &str) -> Result<(), UnderstandError> {
    let len = label.chars().count();
    if label.trim().is_empty() {
        return Err(bad_line(path, line, "`label` is empty"));
    }
    if len > MAX_LABEL_CHARS || label.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad_line(
            path,
            line,
            format!(
                "`label` must be at most {MAX_LABEL_CHARS} characters with no spaces, got {label:?}"
            ),
        ));
    }
    Ok(())
}

/// The intent exemplars of one file, checked line by line.
fn read_intent_file(file: &Path) -> Result<Vec<Example>, UnderstandError> {
    read_lines::<IntentLine>(file)?
        .into_iter()
        .map(|(n, l)| {
            check_text(file, n, &l.text)?;
            check_label(file, n, &l.label)?;
            Ok(Example::new(l.text, l.label))
        })
        .collect()
}

/// The sentiment exemplars of one file, checked line by line.
fn read_sentiment_file(file: &Path) -> Result<Vec<SentimentExample>, UnderstandError> {
    read_lines::<SentimentExample>(file)?
        .into_iter()
        .map(|(n, line)| {
            check_text(file, n, &line.text)?;
            if !matches!(line.sentiment.as_str(), "positive" | "neutral" | "negative") {
                return Err(bad_line(
                    file,
                    n,
                    format!(
                        "sentiment must be positive, neutral or negative, got {:?}",
                        line.sentiment
                    ),
                ));
            }
            if line.anger > 2 {
                return Err(bad_line(
                    file,
                    n,
                    format!("anger must be 0, 1 or 2, got {}", line.anger),
                ));
            }
            Ok(line)
        })
        .collect()
}

/// Intent exemplars from every `.jsonl` file in `dir`.
pub fn read_intent_dir(dir: &Path) -> Result<Vec<Example>, UnderstandError> {
    let mut out = Vec::new();
    for file in jsonl_files(dir)? {
        out.extend(read_intent_file(&file)?);
    }
    Ok(out)
}

/// Sentiment exemplars from every `.jsonl` file in `dir`.
pub fn read_sentiment_dir(dir: &Path) -> Result<Vec<SentimentExample>, UnderstandError> {
    let mut out = Vec::new();
    for file in jsonl_files(dir)? {
        out.extend(read_sentiment_file(&file)?);
    }
    Ok(out)
}

/// How many exemplars one file gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCount {
    pub path: PathBuf,
    /// The file's stem: by convention the language of its lines (`th` for
    /// `th.jsonl`); a seller's own file counts under its own name.
    pub language: String,
    pub examples: usize,
}

/// Every exemplar of the intent folder and (optionally) the sentiment
/// folder, read and checked in one go, with where each came from. Either
/// every file is good or nothing is returned.
#[derive(Debug, Clone, Default)]
pub struct ExemplarSet {
    pub intents: Vec<Example>,
    pub sentiment: Vec<SentimentExample>,
    pub intent_files: Vec<FileCount>,
    pub sentiment_files: Vec<FileCount>,
    /// The language (file stem) of each intent exemplar, in order.
    intent_languages: Vec<String>,
}

impl ExemplarSet {
    pub fn load(intents_dir: &Path, sentiment_dir: Option<&Path>) -> Result<Self, UnderstandError> {
        let mut set = ExemplarSet::default();
        for file in jsonl_files(intents_dir)? {
            let examples = read_intent_file(&file)?;
            let language = stem(&file);
            set.intent_languages
                .extend(std::iter::repeat_n(language.clone(), examples.len()));
            set.intent_files.push(FileCount {
                path: file,
                language,
                examples: examples.len(),
            });
            set.intents.extend(examples);
        }
        if set.intents.is_empty() {
            return Err(UnderstandError::Exemplars {
                path: intents_dir.to_path_buf(),
                reason: "holds no intent exemplars".into(),
            });
        }
        if let Some(dir) = sentiment_dir {
            for file in jsonl_files(dir)? {
                let examples = read_sentiment_file(&file)?;
                set.sentiment_files.push(FileCount {
                    language: stem(&file),
                    path: file,
                    examples: examples.len(),
                });
                set.sentiment.extend(examples);
            }
        }
        Ok(set)
    }

    /// Intent exemplars per label.
    pub fn intent_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for e in &self.intents {
            *counts.entry(e.label.clone()).or_default() += 1;
        }
        counts
    }

    /// Intent exemplars per label and language (file stem).
    pub fn intent_language_counts(&self) -> BTreeMap<String, BTreeMap<String, usize>> {
        let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for (e, lang) in self.intents.iter().zip(&self.intent_languages) {
            *counts
                .entry(e.label.clone())
                .or_default()
                .entry(lang.clone())
                .or_default() += 1;
        }
        counts
    }

    /// Sentiment exemplars per sentiment label.
    pub fn sentiment_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for e in &self.sentiment {
            *counts.entry(e.sentiment.clone()).or_default() += 1;
        }
        counts
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A linear head over one embedding model's query vectors, with the
/// out-of-scope gate over its exemplars when they include out-of-scope
/// lines (see [`ScopeGate`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextClassifier {
    head: LinearHead,
    gate: Option<ScopeGate>,
    model_id: String,
}

impl TextClassifier {
    /// Embeds `examples` with `embedder` and fits a head on them. Every
    /// text must be non-empty.
    pub fn train(
        embedder: &dyn QueryEmbedder,
        examples: &[Example],
        config: &TrainConfig,
    ) -> Result<TextClassifier, UnderstandError> {
        if let Some(i) = examples.iter().position(|e| e.text.trim().is_empty()) {
            return Err(UnderstandError::Invalid(format!(
                "exemplar {i} has an empty text"
            )));
        }
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let vectors = embedder.embed_queries(&texts)?;
        let labels: Vec<&str> = examples.iter().map(|e| e.label.as_str()).collect();
        TextClassifier::from_vectors(embedder.model_id(), &vectors, &labels, config)
    }

    /// Fits a head on vectors already embedded by the model `model_id`.
    pub fn from_vectors(
        model_id: &str,
        vectors: &[Vec<f32>],
        labels: &[&str],
        config: &TrainConfig,
    ) -> Result<TextClassifier, UnderstandError> {
        let head = LinearHead::fit(vectors, labels, config)?;
        let gate = ScopeGate::fit(vectors, &head).map(|(gate, _)| gate);
        Ok(TextClassifier {
            head,
            gate,
            model_id: model_id.to_owned(),
        })
    }

    pub fn head(&self) -> &LinearHead {
        &self.head
    }

    /// The out-of-scope gate, when the exemplars had out-of-scope lines.
    pub fn gate(&self) -> Option<&ScopeGate> {
        self.gate.as_ref()
    }

    /// The embedding model whose vectors this classifier expects.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Classifies a vector from [`TextClassifier::model_id`]'s model.
    pub fn classify(&self, vector: &[f32]) -> Result<Prediction, UnderstandError> {
        match &self.gate {
            Some(gate) => {
                let p = self.head.probabilities(vector)?;
                Ok(gate.apply(&self.head, vector, &p))
            }
            None => self.head.predict(vector),
        }
    }

    /// Embeds and classifies one text.
    pub fn classify_text(
        &self,
        embedder: &dyn QueryEmbedder,
        text: &str,
    ) -> Result<Prediction, UnderstandError> {
        if embedder.model_id() != self.model_id {
            return Err(UnderstandError::Invalid(format!(
                "classifier was trained on `{}` vectors, not `{}`",
                self.model_id,
                embedder.model_id()
            )));
        }
        let vector = embedder
            .embed_queries(&[text])?
            .pop()
            .ok_or_else(|| UnderstandError::Invalid("the embedder returned no vector".into()))?;
        self.classify(&vector)
    }
}
