//! Remembered vectors of the buyer questions suggested FAQ entries are
//! grouped from. Every listing of suggestions reads the tenant's last 90
//! days of knowledge gaps again; without this each listing embedded every
//! one of those messages again, though only the ones asked since the last
//! listing are new. [`RememberedVectors`] keeps, in memory only, the
//! vector of each text it embedded, keyed by a SHA-256 of the model id,
//! the role and the text (the text itself is not kept), up to a bound,
//! the oldest forgotten first; [`RememberingEmbedder`] embeds only the
//! texts it does not remember, in one batch. A vector is a function of
//! model and text, so one remembered for one tenant is right for any.
//! Knows nothing of gaps, tenants, HTTP or pages.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::inference::EmbedRole;
use crate::kb::{Embedder, KbError};

/// Vectors kept at most: at 384 dimensions (multilingual-e5-small) about
/// 30 MiB, the gap messages of many busy tenants' 90 days.
pub const REMEMBERED_VECTORS: usize = 20_000;

type Key = [u8; 32];

/// The vectors of texts embedded before, shared by every listing.
pub struct RememberedVectors {
    capacity: usize,
    state: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    vectors: HashMap<Key, Vec<f32>>,
    /// Keys in the order they were remembered, to forget the oldest.
    order: VecDeque<Key>,
}

impl RememberedVectors {
    pub fn new(capacity: usize) -> RememberedVectors {
        RememberedVectors {
            capacity,
            state: Mutex::new(Remembered::default()),
        }
    }

    /// How many vectors are remembered now.
    pub fn len(&self) -> usize {
        self.lock().vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `inner` answering through these remembered vectors.
    pub fn embedder(self: &Arc<Self>, inner: Arc<dyn Embedder>) -> Arc<dyn Embedder> {
        Arc::new(RememberingEmbedder {
            inner,
            memory: self.clone(),
        })
    }

    fn remember(&self, key: Key, vector: Vec<f32>) {
        let mut state = self.lock();
        if state.vectors.insert(key, vector).is_none() {
            state.order.push_back(key);
        }
        while state.vectors.len() > self.capacity {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            state.vectors.remove(&oldest);
        }
    }
}

/// An embedder that embeds only what [`RememberedVectors`] lacks.
pub struct RememberingEmbedder {
    inner: Arc<dyn Embedder>,
    memory: Arc<RememberedVectors>,
}

fn key(model: &str, role: EmbedRole, text: &str) -> Key {
    let mut hash = Sha256::new();
    hash.update(model.as_bytes());
    hash.update([0]);
    hash.update(format!("{role:?}").as_bytes());
    hash.update([0]);
    hash.update(text.as_bytes());
    hash.finalize().into()
}

impl Embedder for RememberingEmbedder {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn embed(&self, texts: &[&str], role: EmbedRole) -> Result<Vec<Vec<f32>>, KbError> {
        let keys: Vec<Key> = texts
            .iter()
            .map(|t| key(self.inner.model_id(), role, t))
            .collect();
        let mut found: Vec<Option<Vec<f32>>> = {
            let state = self.memory.lock();
            keys.iter().map(|k| state.vectors.get(k).cloned()).collect()
        };
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| found[i].is_none()).collect();
        if !missing.is_empty() {
            let batch: Vec<&str> = missing.iter().map(|&i| texts[i]).collect();
            let vectors = self.inner.embed(&batch, role)?;
            if vectors.len() != batch.len() {
                return Err(KbError::Embedding(format!(
                    "the embedder returned {} vectors for {} texts",
                    vectors.len(),
                    batch.len()
                )));
            }
            for (&i, vector) in missing.iter().zip(vectors) {
                self.memory.remember(keys[i], vector.clone());
                found[i] = Some(vector);
            }
        }
        Ok(found.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::kb::HashingEmbedder;

    /// Counts the texts it is asked to embed.
    struct Counting {
        inner: HashingEmbedder,
        embedded: AtomicUsize,
    }

    impl Embedder for Counting {
        fn model_id(&self) -> &str {
            "counting"
        }
        fn dim(&self) -> usize {
            self.inner.dim()
        }
        fn embed(&self, texts: &[&str], role: EmbedRole) -> Result<Vec<Vec<f32>>, KbError> {
            self.embedded.fetch_add(texts.len(), Ordering::SeqCst);
            self.inner.embed(texts, role)
        }
    }

    fn counting() -> Arc<Counting> {
        Arc::new(Counting {
            inner: HashingEmbedder::new(64),
            embedded: AtomicUsize::new(0),
        })
    }

    #[test]
    fn a_second_listing_embeds_only_the_texts_asked_since() {
        let inner = counting();
        let memory = Arc::new(RememberedVectors::new(100));
        let embedder = memory.embedder(inner.clone());
        let first = embedder
            .embed(&["where is my order", "is it waterproof"], EmbedRole::Query)
            .unwrap();
        assert_eq!(inner.embedded.load(Ordering::SeqCst), 2);
        let second = embedder
            .embed(
                &["is it waterproof", "new question", "where is my order"],
                EmbedRole::Query,
            )
            .unwrap();
        assert_eq!(inner.embedded.load(Ordering::SeqCst), 3, "one new text");
        assert_eq!(second[0], first[1]);
        assert_eq!(second[2], first[0]);
        assert_eq!(
            second[1],
            inner.embed(&["new question"], EmbedRole::Query).unwrap()[0]
        );
        // Another role is another vector.
        embedder
            .embed(&["where is my order"], EmbedRole::Passage)
            .unwrap();
        assert_eq!(inner.embedded.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn the_oldest_vectors_are_forgotten_beyond_the_bound() {
        let inner = counting();
        let memory = Arc::new(RememberedVectors::new(2));
        let embedder = memory.embedder(inner.clone());
        embedder.embed(&["a", "b", "c"], EmbedRole::Query).unwrap();
        assert_eq!(memory.len(), 2);
        embedder.embed(&["c"], EmbedRole::Query).unwrap();
        assert_eq!(inner.embedded.load(Ordering::SeqCst), 3, "c is remembered");
        embedder.embed(&["a"], EmbedRole::Query).unwrap();
        assert_eq!(inner.embedded.load(Ordering::SeqCst), 4, "a was forgotten");
    }
}
