//! Hashed character n-gram features: TF-IDF weights of the character 1- to
//! 4-grams of a lowercased text, hashed into a fixed number of buckets and
//! scaled to unit length. They see spelling the sentence embedding
//! smooths away (Thai, which has no spaces between words, and the slang,
//! elongations and emoticons of chat), and sit beside it in a classifier's
//! input.
//!
//! Knows nothing of labels or models: fitted on texts alone (the inverse
//! document frequencies), deterministic.

use super::UnderstandError;

/// The shortest and longest n-grams counted.
const MIN_N: usize = 1;
const MAX_N: usize = 4;

/// Fitted n-gram features: the bucket count and each bucket's inverse
/// document frequency over the texts it was fitted on.
#[derive(Debug, Clone, PartialEq)]
pub struct CharNgrams {
    idf: Vec<f32>,
}

impl CharNgrams {
    /// Fits the inverse document frequencies (smoothed:
    /// `ln((1 + n) / (1 + df)) + 1`) on `texts`.
    pub fn fit(texts: &[&str], buckets: usize) -> Result<CharNgrams, UnderstandError> {
        if buckets == 0 {
            return Err(UnderstandError::Invalid(
                "character n-gram features need at least one bucket".into(),
            ));
        }
        let mut df = vec![0u32; buckets];
        for text in texts {
            let mut seen: Vec<usize> = counts(text, buckets).into_iter().map(|(b, _)| b).collect();
            seen.dedup();
            for b in seen {
                df[b] += 1;
            }
        }
        let n = texts.len() as f32;
        Ok(CharNgrams {
            idf: df
                .iter()
                .map(|&d| ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0)
                .collect(),
        })
    }

    pub fn buckets(&self) -> usize {
        self.idf.len()
    }

    /// The unit-length feature vector of `text` (all zeros when it has no
    /// characters).
    pub fn features(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.idf.len()];
        for (b, count) in counts(text, self.idf.len()) {
            // Sublinear term frequency, so a repeated "555555" does not
            // drown the rest.
            v[b] = (1.0 + (count as f32).ln()) * self.idf[b];
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

/// `(bucket, count)` of every n-gram of `text`, sorted by bucket.
fn counts(text: &str, buckets: usize) -> Vec<(usize, u32)> {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    let mut hits: Vec<usize> = Vec::new();
    for n in MIN_N..=MAX_N {
        for gram in chars.windows(n) {
            // FNV-1a over the characters and the n-gram's length.
            let h = gram
                .iter()
                .fold((2166136261u32 ^ n as u32).wrapping_mul(16777619), |h, c| {
                    (h ^ *c as u32).wrapping_mul(16777619)
                });
            hits.push(h as usize % buckets);
        }
    }
    hits.sort_unstable();
    let mut out: Vec<(usize, u32)> = Vec::new();
    for b in hits {
        match out.last_mut() {
            Some((last, c)) if *last == b => *c += 1,
            _ => out.push((b, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_unit_length_and_shared_spelling_is_similar() {
        let texts = ["ส่งช้ามาก", "ส่งเร็วมาก", "love it", "ok"];
        let ngrams = CharNgrams::fit(&texts, 512).unwrap();
        let a = ngrams.features("ส่งช้ามากเลย");
        let b = ngrams.features("ส่งช้ามาก");
        let c = ngrams.features("love it so much");
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!(dot(&a, &b) > 0.7, "{}", dot(&a, &b));
        assert!(dot(&a, &c) < 0.2, "{}", dot(&a, &c));
        assert!(ngrams.features("").iter().all(|x| *x == 0.0));
        assert_eq!(ngrams.features("OK"), ngrams.features("ok"), "lowercased");
    }

    #[test]
    fn rarer_ngrams_weigh_more_and_zero_buckets_is_an_error() {
        let ngrams = CharNgrams::fit(&["aaa", "aab", "aac"], 4096).unwrap();
        let (common, _) = counts("a", 4096)[0];
        let (rare, _) = counts("c", 4096)[0];
        assert!(ngrams.idf[rare] > ngrams.idf[common]);
        assert!(CharNgrams::fit(&["a"], 0).is_err());
    }
}
