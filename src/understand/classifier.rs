//! Classifier heads over sentence embeddings: multinomial logistic
//! regression with an L2 penalty, fitted by full-batch L-BFGS on
//! standardised vectors, with temperature scaling and an out-of-scope
//! threshold chosen on a held-out fold so that `confidence` is a
//! calibrated probability.
//!
//! A head sees only vectors and label strings: it knows nothing of texts,
//! languages, the embedding model or where exemplars come from. Fitting is
//! deterministic: the same vectors and labels give the same head.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::UnderstandError;

mod calibrate;
mod optimise;

use calibrate::{accuracy, choose_threshold, fit_temperature, softmax};
use optimise::{logits, optimise, Fit};

/// How a head is fitted.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// L2 penalties tried; the one with the best held-out accuracy is kept
    /// (ties go to the stronger penalty).
    pub l2_grid: Vec<f32>,
    /// L-BFGS iterations per fit.
    pub max_iterations: usize,
    /// Share of each label's examples held out to choose the penalty, the
    /// temperature and the out-of-scope threshold. Labels with a single
    /// example keep it for training.
    pub holdout_fraction: f32,
    /// The label of explicit out-of-scope exemplars. When the training set
    /// has some, a probability threshold below which any prediction counts
    /// as out of scope is chosen on the held-out fold too.
    pub out_of_scope_label: String,
    /// How examples of frequent and rare labels are weighed in the loss.
    pub weighting: ClassWeighting,
    /// How input dimensions are scaled before fitting.
    pub scaling: Scaling,
}

/// How a head scales its input dimensions before fitting (the same scaling
/// is applied to every vector it classifies).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scaling {
    /// Every dimension standardised to zero mean and unit variance.
    Standardise,
    /// The first `dims` dimensions (a sentence embedding) standardised and
    /// then multiplied by `scale`; the rest (unit-length sparse features,
    /// such as hashed n-grams) used as they are. A small `scale` penalises
    /// the embedding's weights more, balancing the two blocks.
    Leading { dims: usize, scale: f32 },
}

/// Weighing of labels in the training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassWeighting {
    /// Every example counts the same: frequent labels dominate, and the
    /// probabilities keep the training set's label frequencies.
    Uniform,
    /// Every label counts the same in total, so a rare label (anger,
    /// positive reviews among neutral chatter) is not drowned out; suited
    /// to macro-F1 rather than raw accuracy.
    Balanced,
}

impl TrainConfig {
    /// The defaults with labels weighed equally: for sentiment, anger and
    /// urgency, whose interesting labels are the rare ones.
    pub fn balanced() -> TrainConfig {
        TrainConfig {
            weighting: ClassWeighting::Balanced,
            ..TrainConfig::default()
        }
    }
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            l2_grid: vec![1e-4, 1e-3, 1e-2, 3e-2, 1e-1],
            max_iterations: 300,
            holdout_fraction: 0.2,
            out_of_scope_label: OUT_OF_SCOPE.to_owned(),
            weighting: ClassWeighting::Uniform,
            scaling: Scaling::Standardise,
        }
    }
}

/// The label kedai's own taxonomy and the evaluation commands give to
/// messages no intent covers.
pub const OUT_OF_SCOPE: &str = "out_of_scope";

/// One classification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The winning label, or the out-of-scope label when `out_of_scope`.
    pub label: String,
    /// Calibrated probability of the most probable label.
    pub confidence: f32,
    /// The most probable label is the out-of-scope class, or its
    /// probability is below the threshold chosen when fitting.
    pub out_of_scope: bool,
    /// The three most probable labels with their probabilities.
    pub top: Vec<(String, f32)>,
}

/// What fitting chose and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    pub examples: usize,
    pub labels: usize,
    pub holdout: usize,
    pub l2: f32,
    pub temperature: f32,
    pub out_of_scope_threshold: Option<f32>,
    /// Accuracy of the chosen penalty on the held-out fold (before the
    /// final refit on everything).
    pub holdout_accuracy: Option<f32>,
    pub seconds: f64,
}

/// A fitted linear head.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinearHead {
    labels: Vec<String>,
    dim: usize,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// `dim x labels`, row-major.
    weights: Vec<f32>,
    bias: Vec<f32>,
    temperature: f32,
    out_of_scope: Option<usize>,
    threshold: Option<f32>,
    report: FitReport,
    held_out: Option<HeldOut>,
}

/// The fold held out while fitting, with what the head chosen on the rest
/// predicted for it: lets a caller calibrate decisions made on top of the
/// head (the out-of-scope gate) on lines the head did not learn from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldOut {
    /// Indices (into the fitted vectors) the chosen penalty was trained on.
    pub train: Vec<usize>,
    /// Indices of the held-out lines.
    pub rows: Vec<usize>,
    /// Their calibrated probabilities, in [`LinearHead::labels`] order.
    pub probabilities: Vec<Vec<f32>>,
    /// Their labels, as indices into [`LinearHead::labels`].
    pub y: Vec<usize>,
    /// The labels of the `train` lines, likewise.
    pub train_y: Vec<usize>,
}

impl LinearHead {
    /// Fits a head on `vectors` labelled `labels` (same length, at least two
    /// distinct labels, every vector of the same non-zero length).
    pub fn fit<S: AsRef<str>>(
        vectors: &[Vec<f32>],
        labels: &[S],
        config: &TrainConfig,
    ) -> Result<LinearHead, UnderstandError> {
        let started = std::time::Instant::now();
        let data = Dataset::new(vectors, labels, config.scaling)?;
        if config.l2_grid.is_empty() || config.l2_grid.iter().any(|l| l.is_nan() || *l < 0.0) {
            return Err(UnderstandError::Invalid(
                "l2_grid must hold at least one non-negative penalty".into(),
            ));
        }
        if !(0.0..1.0).contains(&config.holdout_fraction) {
            return Err(UnderstandError::Invalid(format!(
                "holdout_fraction must be in [0, 1), got {}",
                config.holdout_fraction
            )));
        }
        let oos = data
            .labels
            .iter()
            .position(|l| *l == config.out_of_scope_label);
        let (train, holdout) = data.split(config.holdout_fraction);

        let mut l2 = config.l2_grid[config.l2_grid.len() / 2];
        let mut temperature = 1.0;
        let mut threshold = None;
        let mut holdout_accuracy = None;
        let mut warm: Option<Vec<f32>> = None;
        let mut held_out = None;
        if !holdout.is_empty() {
            let train_x = data.matrix(&train)?;
            let hold_x = data.matrix(&holdout)?;
            let hold_y: Vec<usize> = holdout.iter().map(|&i| data.y[i]).collect();
            let train_y: Vec<usize> = train.iter().map(|&i| data.y[i]).collect();
            let mut best: Option<(f32, f32, Vec<f32>)> = None;
            let mut grid = config.l2_grid.clone();
            // Strongest penalty first: it converges fastest and warm-starts
            // the weaker ones.
            grid.sort_by(|a, b| b.total_cmp(a));
            for &candidate in &grid {
                let theta = optimise(
                    &train_x,
                    &train_y,
                    Fit {
                        k: data.k(),
                        l2: candidate,
                        max_iterations: config.max_iterations,
                        weighting: config.weighting,
                    },
                    warm.as_deref(),
                )?;
                let logits = logits(&hold_x, &theta, data.dim, data.k())?;
                let acc = accuracy(&logits, &hold_y, data.k());
                if best.as_ref().is_none_or(|(_, b, _)| acc > *b) {
                    best = Some((candidate, acc, theta.clone()));
                }
                warm = Some(theta);
            }
            let (chosen, acc, theta) = best.expect("grid is not empty");
            l2 = chosen;
            holdout_accuracy = Some(acc);
            let logits = logits(&hold_x, &theta, data.dim, data.k())?;
            temperature = fit_temperature(&logits, &hold_y, data.k());
            held_out = Some(HeldOut {
                train: train.clone(),
                rows: holdout.clone(),
                probabilities: logits
                    .chunks_exact(data.k())
                    .map(|row| softmax(row, temperature))
                    .collect(),
                y: hold_y.clone(),
                train_y: train_y.clone(),
            });
            if let Some(oos) = oos {
                if hold_y.contains(&oos) {
                    threshold = Some(choose_threshold(
                        &logits,
                        &hold_y,
                        data.k(),
                        temperature,
                        oos,
                    ));
                }
            }
            warm = Some(theta);
        }
        let all: Vec<usize> = (0..data.y.len()).collect();
        let theta = optimise(
            &data.matrix(&all)?,
            &data.y,
            Fit {
                k: data.k(),
                l2,
                max_iterations: config.max_iterations,
                weighting: config.weighting,
            },
            warm.as_deref(),
        )?;
        let k = data.k();
        let dim = data.dim;
        let report = FitReport {
            examples: data.y.len(),
            labels: k,
            holdout: holdout.len(),
            l2,
            temperature,
            out_of_scope_threshold: threshold,
            holdout_accuracy,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok(LinearHead {
            labels: data.labels,
            dim,
            mean: data.mean,
            inv_std: data.inv_std,
            weights: theta[..dim * k].to_vec(),
            bias: theta[dim * k..].to_vec(),
            temperature,
            out_of_scope: oos,
            threshold,
            report,
            held_out,
        })
    }

    /// The fold held out while fitting and the head's predictions for it
    /// (`None` when nothing was held out).
    pub fn held_out(&self) -> Option<&HeldOut> {
        self.held_out.as_ref()
    }

    /// The index of the out-of-scope label, when the training data had it.
    pub fn out_of_scope_index(&self) -> Option<usize> {
        self.out_of_scope
    }

    /// The probability below which a prediction counts as out of scope.
    pub fn threshold(&self) -> Option<f32> {
        self.threshold
    }

    /// The labels this head can give, sorted.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn report(&self) -> &FitReport {
        &self.report
    }

    /// Calibrated probabilities of every label, in [`LinearHead::labels`] order.
    pub fn probabilities(&self, vector: &[f32]) -> Result<Vec<f32>, UnderstandError> {
        if vector.len() != self.dim {
            return Err(UnderstandError::Invalid(format!(
                "vector has {} dimensions, the head expects {}",
                vector.len(),
                self.dim
            )));
        }
        let k = self.labels.len();
        let mut z = self.bias.clone();
        for (d, &x) in vector.iter().enumerate() {
            let x = (x - self.mean[d]) * self.inv_std[d];
            let row = &self.weights[d * k..(d + 1) * k];
            for (zj, w) in z.iter_mut().zip(row) {
                *zj += x * w;
            }
        }
        Ok(softmax(&z, self.temperature))
    }

    pub fn predict(&self, vector: &[f32]) -> Result<Prediction, UnderstandError> {
        let p = self.probabilities(vector)?;
        Ok(self.decide(&p))
    }

    /// Predictions for many vectors at once (one matrix product).
    pub fn predict_batch(&self, vectors: &[Vec<f32>]) -> Result<Vec<Prediction>, UnderstandError> {
        if vectors.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(v) = vectors.iter().find(|v| v.len() != self.dim) {
            return Err(UnderstandError::Invalid(format!(
                "vector has {} dimensions, the head expects {}",
                v.len(),
                self.dim
            )));
        }
        let k = self.labels.len();
        let mut x = Vec::with_capacity(vectors.len() * self.dim);
        for v in vectors {
            x.extend(
                v.iter()
                    .enumerate()
                    .map(|(d, &value)| (value - self.mean[d]) * self.inv_std[d]),
            );
        }
        let x = Tensor::from_vec(x, (vectors.len(), self.dim), &Device::Cpu)?;
        let mut theta = self.weights.clone();
        theta.extend_from_slice(&self.bias);
        let z = logits(&x, &theta, self.dim, k)?;
        Ok(z.chunks_exact(k)
            .map(|row| self.decide(&softmax(row, self.temperature)))
            .collect())
    }

    /// The prediction for calibrated probabilities `p` (in
    /// [`LinearHead::labels`] order).
    pub fn decide(&self, p: &[f32]) -> Prediction {
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        let best = order[0];
        let below = self.threshold.is_some_and(|t| p[best] < t);
        let out_of_scope = Some(best) == self.out_of_scope || below;
        let label = match (out_of_scope, self.out_of_scope) {
            (true, Some(oos)) => self.labels[oos].clone(),
            _ => self.labels[best].clone(),
        };
        Prediction {
            label,
            confidence: p[best],
            out_of_scope,
            top: order
                .iter()
                .take(3)
                .map(|&i| (self.labels[i].clone(), p[i]))
                .collect(),
        }
    }
}

/// Validated training data with standardisation statistics.
struct Dataset<'a> {
    vectors: &'a [Vec<f32>],
    labels: Vec<String>,
    y: Vec<usize>,
    dim: usize,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl<'a> Dataset<'a> {
    fn new<S: AsRef<str>>(
        vectors: &'a [Vec<f32>],
        labels: &[S],
        scaling: Scaling,
    ) -> Result<Dataset<'a>, UnderstandError> {
        if vectors.len() != labels.len() {
            return Err(UnderstandError::Invalid(format!(
                "{} vectors but {} labels",
                vectors.len(),
                labels.len()
            )));
        }
        let dim = vectors.first().map_or(0, Vec::len);
        if dim == 0 {
            return Err(UnderstandError::Invalid(
                "cannot fit a head on no examples".into(),
            ));
        }
        for (i, v) in vectors.iter().enumerate() {
            if v.len() != dim {
                return Err(UnderstandError::Invalid(format!(
                    "example {i} has {} dimensions, the first has {dim}",
                    v.len()
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(UnderstandError::Invalid(format!(
                    "example {i} has a non-finite value"
                )));
            }
        }
        let names: BTreeMap<&str, usize> = labels.iter().map(|l| (l.as_ref(), 0)).collect();
        if names.len() < 2 {
            return Err(UnderstandError::Invalid(format!(
                "need at least two distinct labels, got {}",
                names.len()
            )));
        }
        let sorted: Vec<String> = names.keys().map(|s| (*s).to_owned()).collect();
        let index: BTreeMap<&str, usize> = sorted
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let y = labels.iter().map(|l| index[l.as_ref()]).collect();
        let n = vectors.len() as f64;
        let mut mean = vec![0f64; dim];
        for v in vectors {
            for (m, x) in mean.iter_mut().zip(v) {
                *m += f64::from(*x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; dim];
        for v in vectors {
            for ((s, x), m) in var.iter_mut().zip(v).zip(&mean) {
                *s += (f64::from(*x) - m).powi(2);
            }
        }
        let mut inv_std: Vec<f32> = var
            .iter()
            .map(|s| (1.0 / ((s / n).sqrt() + 1e-6)) as f32)
            .collect();
        if let Scaling::Leading { dims, scale } = scaling {
            if dims > dim || !scale.is_finite() || scale <= 0.0 {
                return Err(UnderstandError::Invalid(format!(
                    "scaling of the first {dims} of {dim} dimensions by {scale} is not possible"
                )));
            }
            inv_std[..dims].iter_mut().for_each(|s| *s *= scale);
            inv_std[dims..].iter_mut().for_each(|s| *s = 1.0);
            mean[dims..].iter_mut().for_each(|m| *m = 0.0);
        }
        Ok(Dataset {
            vectors,
            labels: sorted,
            y,
            dim,
            mean: mean.into_iter().map(|m| m as f32).collect(),
            inv_std,
        })
    }

    fn k(&self) -> usize {
        self.labels.len()
    }

    /// Deterministic per-label split: each label's examples are ordered by
    /// a hash of their position and vector, and the first share is held out.
    fn split(&self, fraction: f32) -> (Vec<usize>, Vec<usize>) {
        let mut by_label: Vec<Vec<(u64, usize)>> = vec![Vec::new(); self.k()];
        for (i, v) in self.vectors.iter().enumerate() {
            let mut h = Sha256::new();
            for x in v {
                h.update(x.to_le_bytes());
            }
            let digest = h.finalize();
            let key = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
            by_label[self.y[i]].push((key, i));
        }
        let (mut train, mut holdout) = (Vec::new(), Vec::new());
        for mut members in by_label {
            members.sort_unstable();
            let held = if members.len() < 2 {
                0
            } else {
                ((members.len() as f32 * fraction).round() as usize).min(members.len() - 1)
            };
            holdout.extend(members[..held].iter().map(|&(_, i)| i));
            train.extend(members[held..].iter().map(|&(_, i)| i));
        }
        train.sort_unstable();
        holdout.sort_unstable();
        (train, holdout)
    }

    fn matrix(&self, rows: &[usize]) -> Result<Tensor, UnderstandError> {
        let mut x = Vec::with_capacity(rows.len() * self.dim);
        for &i in rows {
            x.extend(
                self.vectors[i]
                    .iter()
                    .enumerate()
                    .map(|(d, &v)| (v - self.mean[d]) * self.inv_std[d]),
            );
        }
        Ok(Tensor::from_vec(x, (rows.len(), self.dim), &Device::Cpu)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated clusters in 8 dimensions with a little noise.
    fn clusters(per_label: usize) -> (Vec<Vec<f32>>, Vec<String>) {
        let mut vectors = Vec::new();
        let mut labels = Vec::new();
        let mut seed = 7u64;
        let mut noise = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for (c, name) in ["a", "b", "c"].iter().enumerate() {
            for _ in 0..per_label {
                let mut v: Vec<f32> = (0..8).map(|_| 0.3 * noise()).collect();
                v[c] += 1.0;
                vectors.push(v);
                labels.push((*name).to_owned());
            }
        }
        (vectors, labels)
    }

    #[test]
    fn separable_clusters_are_learned_and_confident() {
        let (vectors, labels) = clusters(30);
        let head = LinearHead::fit(&vectors, &labels, &TrainConfig::default()).unwrap();
        assert_eq!(head.labels(), ["a", "b", "c"]);
        let mut probe = vec![0.0; 8];
        probe[1] = 1.0;
        let p = head.predict(&probe).unwrap();
        assert_eq!(p.label, "b");
        assert!(p.confidence > 0.8, "{p:?}");
        assert!(!p.out_of_scope);
        let batch = head.predict_batch(&vectors).unwrap();
        let correct = batch
            .iter()
            .zip(&labels)
            .filter(|(p, l)| &p.label == *l)
            .count();
        assert!(correct >= 85, "{correct}/90 training examples right");
    }

    #[test]
    fn probabilities_sum_to_one_and_batch_matches_single() {
        let (vectors, labels) = clusters(10);
        let head = LinearHead::fit(&vectors, &labels, &TrainConfig::default()).unwrap();
        let p = head.probabilities(&vectors[4]).unwrap();
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let single = head.predict(&vectors[4]).unwrap();
        let batch = head.predict_batch(&vectors[4..5]).unwrap();
        assert_eq!(single.label, batch[0].label);
        assert!((single.confidence - batch[0].confidence).abs() < 1e-4);
    }

    #[test]
    fn fitting_is_deterministic() {
        let (vectors, labels) = clusters(12);
        let a = LinearHead::fit(&vectors, &labels, &TrainConfig::default()).unwrap();
        let b = LinearHead::fit(&vectors, &labels, &TrainConfig::default()).unwrap();
        assert_eq!(a.weights, b.weights);
        assert_eq!(a.temperature, b.temperature);
    }

    #[test]
    fn explicit_out_of_scope_examples_get_a_threshold_and_are_flagged() {
        let (mut vectors, mut labels) = clusters(30);
        for i in 0..30 {
            let mut v = vec![0.0; 8];
            v[3 + i % 5] = 1.0;
            vectors.push(v);
            labels.push(OUT_OF_SCOPE.to_owned());
        }
        let head = LinearHead::fit(&vectors, &labels, &TrainConfig::default()).unwrap();
        assert!(head.report().out_of_scope_threshold.is_some());
        let mut probe = vec![0.0; 8];
        probe[6] = 1.0;
        let p = head.predict(&probe).unwrap();
        assert!(p.out_of_scope, "{p:?}");
        assert_eq!(p.label, OUT_OF_SCOPE);
    }

    #[test]
    fn temperature_search_recovers_a_known_scale() {
        // Logits that are exactly 4x too confident for labels drawn from
        // the softened distribution: the fitted temperature is near 4.
        let mut logits = Vec::new();
        let mut y = Vec::new();
        for i in 0..400 {
            let row = [8.0f32, 0.0];
            logits.extend_from_slice(&row);
            let p_first = softmax(&row, 4.0)[0];
            y.push(if (i as f32 + 0.5) / 400.0 < p_first {
                0
            } else {
                1
            });
        }
        let t = fit_temperature(&logits, &y, 2);
        assert!((t - 4.0).abs() < 0.3, "temperature {t}");
    }

    #[test]
    fn balanced_weighting_lifts_a_rare_label() {
        // Two overlapping clusters, one ten times rarer: uniform weights
        // favour the frequent label near the middle, balanced ones do not.
        let mut vectors = Vec::new();
        let mut labels = Vec::new();
        for i in 0..200 {
            let x = (i as f32 / 200.0) - 0.3;
            vectors.push(vec![x, 1.0]);
            labels.push("common");
        }
        for i in 0..20 {
            let x = (i as f32 / 20.0) + 0.1;
            vectors.push(vec![x, 1.0]);
            labels.push("rare");
        }
        let probe = [0.45f32, 1.0];
        let uniform = LinearHead::fit(&vectors, &labels, &TrainConfig::default()).unwrap();
        let balanced = LinearHead::fit(&vectors, &labels, &TrainConfig::balanced()).unwrap();
        let p_uniform = uniform.probabilities(&probe).unwrap()[1];
        let p_balanced = balanced.probabilities(&probe).unwrap()[1];
        assert!(p_balanced > p_uniform, "{p_balanced} vs {p_uniform}");
    }

    #[test]
    fn leading_scaling_standardises_only_the_embedding_block() {
        let (vectors, labels) = clusters(10);
        let config = TrainConfig {
            scaling: Scaling::Leading {
                dims: 3,
                scale: 0.5,
            },
            ..TrainConfig::default()
        };
        let head = LinearHead::fit(&vectors, &labels, &config).unwrap();
        let plain = LinearHead::fit(&vectors, &labels, &TrainConfig::default()).unwrap();
        for d in 0..3 {
            assert!((head.inv_std[d] - 0.5 * plain.inv_std[d]).abs() < 1e-6);
            assert_eq!(head.mean[d], plain.mean[d]);
        }
        assert!(head.inv_std[3..].iter().all(|s| *s == 1.0));
        assert!(head.mean[3..].iter().all(|m| *m == 0.0));
        let too_many = TrainConfig {
            scaling: Scaling::Leading {
                dims: 9,
                scale: 0.5,
            },
            ..TrainConfig::default()
        };
        assert!(LinearHead::fit(&vectors, &labels, &too_many).is_err());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cfg = TrainConfig::default();
        assert!(LinearHead::fit::<&str>(&[], &[], &cfg).is_err());
        assert!(LinearHead::fit(&[vec![1.0], vec![2.0]], &["a", "a"], &cfg).is_err());
        assert!(LinearHead::fit(&[vec![1.0], vec![2.0, 1.0]], &["a", "b"], &cfg).is_err());
        assert!(LinearHead::fit(&[vec![f32::NAN], vec![2.0]], &["a", "b"], &cfg).is_err());
        assert!(LinearHead::fit(&[vec![1.0]], &["a", "b"], &cfg).is_err());
        let (vectors, labels) = clusters(5);
        let head = LinearHead::fit(&vectors, &labels, &cfg).unwrap();
        assert!(head.predict(&[1.0, 2.0]).is_err());
    }
}
