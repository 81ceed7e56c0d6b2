//! Labelled exemplars and the classifiers trained on them: reading the
//! exemplar files (`kb/intents/exemplars/<lang>.jsonl` with `text` and
//! `label`, `kb/sentiment/exemplars/<lang>.jsonl` with `text`, `sentiment`,
//! `anger` and `urgent`), and [`TextClassifier`], a [`LinearHead`] bound to
//! the embedding model it was trained on.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::classifier::{LinearHead, Prediction, TrainConfig};
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

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, UnderstandError> {
    let raw = std::fs::read_to_string(path).map_err(|e| UnderstandError::Exemplars {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    raw.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| UnderstandError::Exemplars {
                path: path.to_path_buf(),
                reason: format!("line {}: {e}", n + 1),
            })
        })
        .collect()
}

/// Intent exemplars from every `.jsonl` file in `dir`.
pub fn read_intent_dir(dir: &Path) -> Result<Vec<Example>, UnderstandError> {
    let mut out = Vec::new();
    for file in jsonl_files(dir)? {
        out.extend(
            read_lines::<IntentLine>(&file)?
                .into_iter()
                .map(|l| Example::new(l.text, l.label)),
        );
    }
    Ok(out)
}

/// Sentiment exemplars from every `.jsonl` file in `dir`.
pub fn read_sentiment_dir(dir: &Path) -> Result<Vec<SentimentExample>, UnderstandError> {
    let mut out = Vec::new();
    for file in jsonl_files(dir)? {
        let lines: Vec<SentimentExample> = read_lines(&file)?;
        for (n, line) in lines.iter().enumerate() {
            if !matches!(line.sentiment.as_str(), "positive" | "neutral" | "negative") {
                return Err(UnderstandError::Exemplars {
                    path: file.clone(),
                    reason: format!(
                        "line {}: sentiment must be positive, neutral or negative, got {:?}",
                        n + 1,
                        line.sentiment
                    ),
                });
            }
            if line.anger > 2 {
                return Err(UnderstandError::Exemplars {
                    path: file.clone(),
                    reason: format!(
                        "line {}: anger must be 0, 1 or 2, got {}",
                        n + 1,
                        line.anger
                    ),
                });
            }
        }
        out.extend(lines);
    }
    Ok(out)
}

/// A linear head over one embedding model's query vectors.
#[derive(Debug, Clone)]
pub struct TextClassifier {
    head: LinearHead,
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
        Ok(TextClassifier {
            head: LinearHead::fit(vectors, labels, config)?,
            model_id: model_id.to_owned(),
        })
    }

    pub fn head(&self) -> &LinearHead {
        &self.head
    }

    /// The embedding model whose vectors this classifier expects.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Classifies a vector from [`TextClassifier::model_id`]'s model.
    pub fn classify(&self, vector: &[f32]) -> Result<Prediction, UnderstandError> {
        self.head.predict(vector)
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
