//! What the knowledge base needs from an embedding model, as a small trait:
//! the real multilingual-e5 `TextEmbedder` implements it, and so does
//! [`HashingEmbedder`], a deterministic lexical stand-in that lets tests and
//! benchmarks exercise the dense plumbing without model files.
//!
//! Calls block for a forward pass; `kb` makes them on blocking threads only.

use std::path::Path;
use std::sync::Arc;

use super::KbError;
use crate::inference::stand_in::hashed_trigrams;
use crate::inference::{EmbedRole, TextEmbedder};
use crate::understand::{CachedEmbedder, QueryEmbedder, UnderstandError};

pub trait Embedder: Send + Sync + 'static {
    /// Identifies the model; vectors from different ids are never mixed.
    fn model_id(&self) -> &str;
    fn dim(&self) -> usize;
    /// One unit vector per text, in order. Blocks.
    fn embed(&self, texts: &[&str], role: EmbedRole) -> Result<Vec<Vec<f32>>, KbError>;
}

impl Embedder for TextEmbedder {
    fn model_id(&self) -> &str {
        TextEmbedder::model_id(self)
    }

    fn dim(&self) -> usize {
        TextEmbedder::dim(self)
    }

    fn embed(&self, texts: &[&str], role: EmbedRole) -> Result<Vec<Vec<f32>>, KbError> {
        TextEmbedder::embed(self, texts, role)
            .map(|e| e.into_vectors())
            .map_err(|e| KbError::Embedding(e.to_string()))
    }
}

impl<E: Embedder + ?Sized> Embedder for Arc<E> {
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn embed(&self, texts: &[&str], role: EmbedRole) -> Result<Vec<Vec<f32>>, KbError> {
        (**self).embed(texts, role)
    }
}

/// Character-trigram counts hashed into `dim` buckets and normalised
/// ([`hashed_trigrams`], the server's `stand-in:hashing` model): texts
/// sharing spelling get similar vectors, nothing more. For tests and
/// benchmarks of the plumbing; it understands no language.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dim: usize,
}

impl HashingEmbedder {
    pub fn new(dim: usize) -> HashingEmbedder {
        HashingEmbedder { dim: dim.max(1) }
    }
}

impl Embedder for HashingEmbedder {
    fn model_id(&self) -> &str {
        "hashing-trigrams"
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str], _role: EmbedRole) -> Result<Vec<Vec<f32>>, KbError> {
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                hashed_trigrams(text, self.dim).ok_or_else(|| {
                    KbError::Embedding(format!("text {index} of the batch is empty"))
                })
            })
            .collect()
    }
}

/// An [`Embedder`] whose vectors are kept in the model cache's embedding
/// folder (beside the exemplars' vectors), keyed by model, role and text: a second
/// data directory, a replica, or a command on the same machine indexing the
/// same entries reads their vectors instead of running the model again.
/// Only knowledge-base texts (the seller's own writing) go through it;
/// buyers' messages are never cached.
pub struct SharedVectors {
    inner: Arc<dyn Embedder>,
    queries: CachedEmbedder<OfRole>,
    passages: CachedEmbedder<OfRole>,
}

/// One role of an [`Embedder`], as the cache sees it.
struct OfRole(Arc<dyn Embedder>, EmbedRole);

impl QueryEmbedder for OfRole {
    fn model_id(&self) -> &str {
        self.0.model_id()
    }

    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
        self.0
            .embed(texts, self.1)
            .map_err(|e| UnderstandError::Invalid(e.to_string()))
    }
}

impl SharedVectors {
    /// The cache files of `inner`'s model under `dir`. The files are
    /// named by the model id, the dimension and the role, so embedders that
    /// share an id but not a dimension never share vectors.
    pub fn open(inner: Arc<dyn Embedder>, dir: &Path) -> Result<SharedVectors, KbError> {
        let dim = inner.dim();
        let open = |role, kind| {
            CachedEmbedder::open_kind(OfRole(inner.clone(), role), dir, &format!("{kind}-{dim}"))
                .map_err(|e| KbError::Embedding(e.to_string()))
        };
        Ok(SharedVectors {
            queries: open(EmbedRole::Query, "kb-queries")?,
            passages: open(EmbedRole::Passage, "kb-passages")?,
            inner,
        })
    }
}

impl Embedder for SharedVectors {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn embed(&self, texts: &[&str], role: EmbedRole) -> Result<Vec<Vec<f32>>, KbError> {
        let cache = match role {
            EmbedRole::Query => &self.queries,
            EmbedRole::Passage => &self.passages,
        };
        cache
            .embed_queries(texts)
            .map_err(|e| KbError::Embedding(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kb::index::dot;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the texts it embeds, per role.
    struct Counting {
        inner: HashingEmbedder,
        embedded: [AtomicUsize; 2],
    }

    impl Embedder for Counting {
        fn model_id(&self) -> &str {
            "counting"
        }
        fn dim(&self) -> usize {
            self.inner.dim()
        }
        fn embed(&self, texts: &[&str], role: EmbedRole) -> Result<Vec<Vec<f32>>, KbError> {
            let slot = usize::from(role == EmbedRole::Query);
            self.embedded[slot].fetch_add(texts.len(), Ordering::SeqCst);
            let vectors = self.inner.embed(texts, EmbedRole::Passage)?;
            // Queries and passages differ, as e5's prefixes make them.
            Ok(match role {
                EmbedRole::Passage => vectors,
                EmbedRole::Query => vectors
                    .into_iter()
                    .map(|v| v.into_iter().rev().collect())
                    .collect(),
            })
        }
    }

    #[test]
    fn shared_vectors_are_reused_per_model_and_role() {
        let dir = tempfile::tempdir().unwrap();
        let counting = || {
            Arc::new(Counting {
                inner: HashingEmbedder::new(32),
                embedded: Default::default(),
            })
        };
        let first = counting();
        let shared = SharedVectors::open(first.clone(), dir.path()).unwrap();
        let passages = shared
            .embed(&["return policy", "sizes"], EmbedRole::Passage)
            .unwrap();
        let queries = shared.embed(&["return policy"], EmbedRole::Query).unwrap();
        assert_ne!(passages[0], queries[0], "roles are kept apart");

        // Another process (a fresh data directory) on the same machine.
        let second = counting();
        let again = SharedVectors::open(second.clone(), dir.path()).unwrap();
        assert_eq!(
            again
                .embed(&["sizes", "return policy"], EmbedRole::Passage)
                .unwrap(),
            vec![passages[1].clone(), passages[0].clone()]
        );
        assert_eq!(
            again.embed(&["return policy"], EmbedRole::Query).unwrap(),
            queries
        );
        assert_eq!(
            second.embedded[0].load(Ordering::SeqCst),
            0,
            "no passage embedded again"
        );
        assert_eq!(
            second.embedded[1].load(Ordering::SeqCst),
            0,
            "no query embedded again"
        );
        again.embed(&["new entry"], EmbedRole::Passage).unwrap();
        assert_eq!(
            second.embedded[0].load(Ordering::SeqCst),
            1,
            "only the new text"
        );
    }

    #[test]
    fn hashing_vectors_are_unit_length_and_favour_shared_spelling() {
        let e = HashingEmbedder::new(256);
        let v = e
            .embed(
                &["return policy", "returns policy", "shipping to Brazil"],
                EmbedRole::Passage,
            )
            .unwrap();
        assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-5);
        assert!(dot(&v[0], &v[1]) > dot(&v[0], &v[2]));
        assert!(e.embed(&["  "], EmbedRole::Query).is_err());
    }
}
