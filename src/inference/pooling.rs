//! [`Pooling`]: which of an encoder's hidden states a feature vector is
//! made of. A sentence embedding is the mean of the final layer's token
//! states; linear heads for tone (sentiment, anger) can also read the means
//! of earlier layers and a max over the final layer, all taken from the same
//! forward pass.
//!
//! This module only describes and checks a choice of blocks; the encoder
//! pass (`e5_cpu`) computes them and `embedder` normalises them.

use std::fmt;

use super::InferenceError;

/// How the mean-pooled layers of a [`Pooling`] are put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerMix {
    /// One block per layer, side by side.
    Concat,
    /// One block: the average of the layers' unit-length means.
    Average,
}

/// A choice of pooled blocks: the token mean of each listed encoder layer
/// (1 is the first layer, the model's layer count the final one), mixed by
/// [`LayerMix`], and optionally the token-wise maximum of the final layer as
/// one more block. Every block is L2-normalised on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pooling {
    layers: Vec<usize>,
    mix: LayerMix,
    final_max: bool,
}

/// What a forward pass must pool, with layers counted from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolPlan<'a> {
    pub layers: &'a [usize],
    pub final_max: bool,
}

impl Pooling {
    /// The mean of the final layer only: the sentence embedding itself.
    /// `layers` is the model's layer count.
    pub fn final_mean(layers: usize) -> Pooling {
        Pooling {
            layers: vec![layers],
            mix: LayerMix::Concat,
            final_max: false,
        }
    }

    /// The means of `layers` (at least one, none repeated, each >= 1),
    /// mixed by `mix`, plus the final layer's maximum when `final_max`.
    /// Whether the layers exist is checked against a model when it runs.
    pub fn new(layers: &[usize], mix: LayerMix, final_max: bool) -> Result<Pooling, String> {
        if layers.is_empty() {
            return Err("at least one layer must be pooled".into());
        }
        if let Some(&zero) = layers.iter().find(|&&l| l == 0) {
            return Err(format!("layers are counted from 1, got {zero}"));
        }
        let mut seen = layers.to_vec();
        seen.sort_unstable();
        if let Some(pair) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("layer {} is listed twice", pair[0]));
        }
        Ok(Pooling {
            layers: layers.to_vec(),
            mix,
            final_max,
        })
    }

    pub fn layers(&self) -> &[usize] {
        &self.layers
    }

    pub fn mix(&self) -> LayerMix {
        self.mix
    }

    pub fn final_max(&self) -> bool {
        self.final_max
    }

    /// How many `hidden`-sized blocks a vector has.
    pub fn blocks(&self) -> usize {
        let means = match self.mix {
            LayerMix::Concat => self.layers.len(),
            LayerMix::Average => 1,
        };
        means + usize::from(self.final_max)
    }

    /// Whether this is the plain sentence embedding of a `layers`-layer model.
    pub fn is_final_mean(&self, layers: usize) -> bool {
        self.layers == [layers] && !self.final_max
    }

    /// Checks the layers against a model of `count` layers.
    pub(crate) fn plan(&self, count: usize) -> Result<PoolPlan<'_>, InferenceError> {
        if let Some(&layer) = self.layers.iter().find(|&&l| l > count) {
            return Err(InferenceError::InvalidParams(format!(
                "layer {layer} does not exist; the model has layers 1 to {count}"
            )));
        }
        Ok(PoolPlan {
            layers: &self.layers,
            final_max: self.final_max,
        })
    }

    /// Mixes the raw pooled blocks of one input (the layer means in the
    /// order of `layers`, then the final maximum) into `out`, normalising
    /// each block; `out` holds [`Pooling::blocks`] blocks of `hidden`.
    pub(crate) fn finish(&self, raw: &[f32], hidden: usize, out: &mut [f32]) {
        let means = self.layers.len() * hidden;
        let (layer_means, max) = raw.split_at(means);
        match self.mix {
            LayerMix::Concat => {
                out[..means].copy_from_slice(layer_means);
                for block in out[..means].chunks_exact_mut(hidden) {
                    normalise(block);
                }
            }
            LayerMix::Average => {
                let average = &mut out[..hidden];
                average.fill(0.0);
                for block in layer_means.chunks_exact(hidden) {
                    let norm = norm(block);
                    for (a, v) in average.iter_mut().zip(block) {
                        *a += v / norm;
                    }
                }
                normalise(average);
            }
        }
        if self.final_max {
            let start = out.len() - hidden;
            out[start..].copy_from_slice(max);
            normalise(&mut out[start..]);
        }
    }
}

/// Written as it is parsed back by the command line: `8,10,12`, then
/// `:average` when the layers are averaged, then `+max`.
impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layers: Vec<String> = self.layers.iter().map(usize::to_string).collect();
        write!(f, "{}", layers.join(","))?;
        if self.mix == LayerMix::Average {
            write!(f, ":average")?;
        }
        if self.final_max {
            write!(f, "+max")?;
        }
        Ok(())
    }
}

fn norm(v: &[f32]) -> f32 {
    v.iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE)
}

fn normalise(v: &mut [f32]) {
    let n = norm(v);
    v.iter_mut().for_each(|x| *x /= n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_layer_lists_are_named() {
        let cases: [(&[usize], &str); 3] = [
            (&[], "at least one layer"),
            (&[0, 12], "counted from 1, got 0"),
            (&[8, 12, 8], "layer 8 is listed twice"),
        ];
        for (layers, expected) in cases {
            let err = Pooling::new(layers, LayerMix::Concat, false).unwrap_err();
            assert!(err.contains(expected), "{layers:?}: {err}");
        }
        let pooling = Pooling::new(&[8, 13], LayerMix::Concat, false).unwrap();
        let err = pooling.plan(12).unwrap_err().to_string();
        assert!(err.contains("layer 13 does not exist; the model has layers 1 to 12"));
        assert!(pooling.plan(13).is_ok());
    }

    #[test]
    fn blocks_and_names_follow_the_choice() {
        let concat = Pooling::new(&[8, 10, 12], LayerMix::Concat, true).unwrap();
        assert_eq!(concat.blocks(), 4);
        assert_eq!(concat.to_string(), "8,10,12+max");
        let average = Pooling::new(&[6, 12], LayerMix::Average, false).unwrap();
        assert_eq!(average.blocks(), 1);
        assert_eq!(average.to_string(), "6,12:average");
        assert!(Pooling::final_mean(12).is_final_mean(12));
        assert!(!concat.is_final_mean(12));
        assert_eq!(Pooling::final_mean(12).to_string(), "12");
    }

    #[test]
    fn every_block_is_unit_length_and_averages_weigh_layers_equally() {
        // Two layer means of different scales, then a maximum.
        let raw = [3.0, 4.0, 0.0, 10.0, 2.0, 0.0];
        let concat = Pooling::new(&[1, 2], LayerMix::Concat, true).unwrap();
        let mut out = vec![0.0; 6];
        concat.finish(&raw, 2, &mut out);
        assert_eq!(out, vec![0.6, 0.8, 0.0, 1.0, 1.0, 0.0]);

        let average = Pooling::new(&[1, 2], LayerMix::Average, false).unwrap();
        let mut out = vec![0.0; 2];
        average.finish(&raw[..4], 2, &mut out);
        // (0.6, 0.8) + (0, 1) = (0.6, 1.8), normalised.
        let n = (0.6f32 * 0.6 + 1.8 * 1.8).sqrt();
        assert!((out[0] - 0.6 / n).abs() < 1e-6 && (out[1] - 1.8 / n).abs() < 1e-6);
    }
}
