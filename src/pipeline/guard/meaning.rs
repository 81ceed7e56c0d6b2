//! Promises recognised by meaning: a reply whose multilingual-e5 embedding
//! is close to one of kedai's own promise exemplars (`kb/guard/
//! promises.jsonl`: refunds, discounts, vouchers, compensation, things sent
//! free, price changes, cancellations, in every served language) reads as
//! a promise even when none of its words is in the vocabulary ("your next
//! order is on us", "every cent back").
//!
//! The file also holds ordinary replies (kind `ordinary`: shipping news,
//! stock, apologies, thanks) as anchors: a reply is judged by how much
//! closer it is to its nearest promise than to its nearest ordinary reply,
//! which separates the two far better than a similarity alone (e5 puts
//! same-meaning sentences at about 0.87-0.91 and unrelated ones at
//! 0.75-0.80, so any fixed similarity flags short ordinary replies too).
//!
//! The judgement is pure ([`PromiseExemplars::judge`] over a vector the
//! caller computed); [`MeaningCheck`] is the one async call the pipeline
//! makes, embedding the reply through the `kb::Embedder` seam on a blocking
//! thread. The threshold, [`PROMISE_MARGIN`], was calibrated with `kedai
//! eval guard` on the labelled replies of `kb/guard/calibration.jsonl`
//! (docs/quality.md).
//!
//! Knows nothing of the store or of how a reply is chosen.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::OnceCell;

use super::Violation;
use crate::inference::EmbedRole;
use crate::kb::Embedder;
use crate::pipeline::ports::StageError;

/// How much closer (in cosine similarity) a reply must be to its nearest
/// promise exemplar than to its nearest ordinary anchor to count as a
/// promise. `kedai eval guard` calibrates it: 0.015 is the lowest margin
/// at which no labelled ordinary reply of `kb/guard/calibration.jsonl` is
/// flagged, but it flagged 10 of the 174 held-out ordinary replies (FAQ
/// answers, evaluation replies); 0.025 flags none of any set and still
/// catches 62 of the 76 labelled promises (docs/quality.md).
pub const PROMISE_MARGIN: f32 = 0.025;

/// The exemplar file shipped with kedai, and its text built in.
pub const DEFAULT_EXEMPLARS: &str = "kb/guard/promises.jsonl";
const BUILTIN_EXEMPLARS: &str = include_str!("../../../kb/guard/promises.jsonl");

/// One exemplar: a promise kedai's replies must not make, or, with the
/// kind `ordinary`, a reply that promises nothing binding (an anchor the
/// nearest promise must beat).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromiseExemplar {
    pub lang: String,
    pub kind: String,
    pub text: String,
}

impl PromiseExemplar {
    pub fn is_promise(&self) -> bool {
        self.kind != ORDINARY
    }
}

/// The kind of the anchors that promise nothing.
pub const ORDINARY: &str = "ordinary";

#[derive(Debug, thiserror::Error)]
pub enum ExemplarError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{0}: no exemplars")]
    Empty(String),
}

/// Reads an exemplar file: one JSON object per line, blank lines skipped.
pub fn read_exemplars(path: &Path) -> Result<Vec<PromiseExemplar>, ExemplarError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ExemplarError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_exemplars(&text, &shown)
}

fn parse_exemplars(text: &str, path: &str) -> Result<Vec<PromiseExemplar>, ExemplarError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let exemplar: PromiseExemplar =
            serde_json::from_str(line).map_err(|e| ExemplarError::Line {
                path: path.to_string(),
                line: i + 1,
                message: e.to_string(),
            })?;
        if exemplar.text.trim().is_empty() {
            return Err(ExemplarError::Line {
                path: path.to_string(),
                line: i + 1,
                message: "text must not be empty".into(),
            });
        }
        out.push(exemplar);
    }
    if out.is_empty() {
        return Err(ExemplarError::Empty(path.to_string()));
    }
    Ok(out)
}

/// The exemplars with their vectors, from one embedding model.
#[derive(Debug, Clone)]
pub struct PromiseExemplars {
    exemplars: Vec<PromiseExemplar>,
    vectors: Vec<Vec<f32>>,
    threshold: f32,
}

impl PromiseExemplars {
    /// `vectors[i]` is the unit vector of `exemplars[i]`.
    pub fn new(
        exemplars: Vec<PromiseExemplar>,
        vectors: Vec<Vec<f32>>,
        threshold: f32,
    ) -> PromiseExemplars {
        assert_eq!(exemplars.len(), vectors.len(), "one vector per exemplar");
        PromiseExemplars {
            exemplars,
            vectors,
            threshold,
        }
    }

    /// The nearest exemplar to `vector` among the promises (`true`) or the
    /// ordinary anchors (`false`), with its cosine similarity.
    pub fn nearest(&self, vector: &[f32], promise: bool) -> Option<(f32, &PromiseExemplar)> {
        self.vectors
            .iter()
            .zip(&self.exemplars)
            .filter(|(_, e)| e.is_promise() == promise)
            .map(|(v, e)| (cosine(v, vector), e))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// How much closer `vector` is to the nearest promise than to the
    /// nearest ordinary anchor (the promise's similarity alone when there
    /// are no anchors), and that promise.
    pub fn score(&self, vector: &[f32]) -> Option<(f32, f32, &PromiseExemplar)> {
        let (similarity, exemplar) = self.nearest(vector, true)?;
        let margin = match self.nearest(vector, false) {
            Some((ordinary, _)) => similarity - ordinary,
            None => similarity,
        };
        Some((margin, similarity, exemplar))
    }

    /// A violation when the reply's vector is a promise by meaning.
    pub fn judge(&self, vector: &[f32]) -> Option<Violation> {
        let (margin, similarity, exemplar) = self.score(vector)?;
        (margin >= self.threshold).then(|| Violation::PromiseByMeaning {
            similarity: (similarity * 1000.0).round() / 1000.0,
            exemplar: exemplar.text.clone(),
        })
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    // Both are unit vectors from the embedder; the dot product is the
    // cosine. Vectors of different lengths never match.
    if a.len() != b.len() {
        return f32::MIN;
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The meaning check as the pipeline runs it: the exemplars are embedded
/// on first use (once), each reply on a blocking thread.
pub struct MeaningCheck {
    embedder: Arc<dyn Embedder>,
    exemplars: Vec<PromiseExemplar>,
    threshold: f32,
    prepared: OnceCell<Arc<PromiseExemplars>>,
}

impl MeaningCheck {
    pub fn new(
        embedder: Arc<dyn Embedder>,
        exemplars: Vec<PromiseExemplar>,
        threshold: f32,
    ) -> MeaningCheck {
        MeaningCheck {
            embedder,
            exemplars,
            threshold,
            prepared: OnceCell::new(),
        }
    }

    /// The check over kedai's own exemplars (built into the binary from
    /// `kb/guard/promises.jsonl`), at the calibrated threshold.
    pub fn builtin(embedder: Arc<dyn Embedder>) -> MeaningCheck {
        let exemplars = parse_exemplars(BUILTIN_EXEMPLARS, DEFAULT_EXEMPLARS)
            .expect("the built-in exemplars parse (tested)");
        MeaningCheck::new(embedder, exemplars, PROMISE_MARGIN)
    }

    /// A `PromiseByMeaning` violation when `reply` reads as a promise.
    /// Fails (retryably) only when the embedding model does.
    pub async fn check(&self, reply: &str) -> Result<Option<Violation>, StageError> {
        let exemplars = self
            .prepared
            .get_or_try_init(|| async {
                let texts: Vec<String> = self.exemplars.iter().map(|e| e.text.clone()).collect();
                let vectors = embed(self.embedder.clone(), texts).await?;
                Ok::<_, StageError>(Arc::new(PromiseExemplars::new(
                    self.exemplars.clone(),
                    vectors,
                    self.threshold,
                )))
            })
            .await?;
        let vectors = embed(self.embedder.clone(), vec![reply.to_string()]).await?;
        Ok(vectors.first().and_then(|v| exemplars.judge(v)))
    }
}

async fn embed(
    embedder: Arc<dyn Embedder>,
    texts: Vec<String>,
) -> Result<Vec<Vec<f32>>, StageError> {
    let failed = |message: String| StageError {
        stage: "guard",
        message,
        retryable: true,
    };
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        embedder.embed(&refs, EmbedRole::Query)
    })
    .await
    .map_err(|e| failed(e.to_string()))?
    .map_err(|e| failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_exemplars_cover_every_language_and_kind() {
        let exemplars = read_exemplars(Path::new(DEFAULT_EXEMPLARS)).unwrap();
        assert_eq!(
            exemplars.len(),
            parse_exemplars(BUILTIN_EXEMPLARS, "built in")
                .unwrap()
                .len()
        );
        assert!(exemplars.iter().filter(|e| !e.is_promise()).count() >= 30);
        for lang in [
            "en", "id", "ms", "th", "vi", "tl", "pt", "es", "zh", "zh-Hant",
        ] {
            assert!(exemplars.iter().any(|e| e.lang == lang), "{lang}");
        }
        for kind in [
            "refund",
            "discount",
            "voucher",
            "compensation",
            "free_of_charge",
            "price_change",
            "cancellation",
            ORDINARY,
        ] {
            assert!(exemplars.iter().any(|e| e.kind == kind), "{kind}");
        }
    }

    #[test]
    fn bad_exemplar_files_are_reported_by_line() {
        let err = parse_exemplars(
            "{\"lang\": \"en\", \"kind\": \"refund\", \"text\": \"x\"}\n{oops",
            "p",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("p:2:"), "{err}");
        assert!(parse_exemplars("\n\n", "p").is_err());
        let err = parse_exemplars(
            "{\"lang\": \"en\", \"kind\": \"refund\", \"text\": \" \"}",
            "p",
        )
        .unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn the_judgement_is_the_nearest_exemplar_against_the_threshold() {
        let exemplar = |text: &str| PromiseExemplar {
            lang: "en".into(),
            kind: "refund".into(),
            text: text.into(),
        };
        let set = PromiseExemplars::new(
            vec![exemplar("a"), exemplar("b")],
            vec![vec![1.0, 0.0], vec![0.0, 1.0]],
            0.9,
        );
        let close = [0.95f32, 0.312];
        match set.judge(&close) {
            Some(Violation::PromiseByMeaning {
                similarity,
                exemplar,
            }) => {
                assert!((similarity - 0.95).abs() < 1e-3);
                assert_eq!(exemplar, "a");
            }
            other => panic!("{other:?}"),
        }
        let diagonal = std::f32::consts::FRAC_1_SQRT_2;
        assert_eq!(set.judge(&[diagonal, diagonal]), None);
        assert_eq!(set.judge(&[1.0, 0.0, 0.0]), None, "another model's vector");
    }

    #[tokio::test]
    async fn the_check_embeds_exemplars_once_and_judges_each_reply() {
        let embedder: Arc<dyn Embedder> = Arc::new(crate::kb::HashingEmbedder::new(256));
        let check = MeaningCheck::new(
            embedder,
            vec![PromiseExemplar {
                lang: "en".into(),
                kind: "refund".into(),
                text: "we will give you all your money back".into(),
            }],
            0.9,
        );
        let hit = check
            .check("we will give you all your money back")
            .await
            .unwrap();
        assert!(
            matches!(hit, Some(Violation::PromiseByMeaning { .. })),
            "{hit:?}"
        );
        assert_eq!(
            check.check("your parcel arrives tomorrow").await.unwrap(),
            None
        );
    }
}
