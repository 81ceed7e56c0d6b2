//! What the knowledge base needs from an embedding model, as a small trait:
//! the real multilingual-e5 `TextEmbedder` implements it, and so does
//! [`HashingEmbedder`], a deterministic lexical stand-in that lets tests and
//! benchmarks exercise the dense plumbing without model files.
//!
//! Calls block for a forward pass; `kb` makes them on blocking threads only.

use std::sync::Arc;

use super::KbError;
use crate::inference::stand_in::hashed_trigrams;
use crate::inference::{EmbedRole, TextEmbedder};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kb::index::dot;

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
