//! Fitting a head's weights: the weighted cross-entropy with an L2 penalty
//! on standardised vectors, and the full-batch L-BFGS that minimises it.
//! Knows only tensors, label indices and the fitting settings; choosing the
//! penalty, the temperature and the out-of-scope threshold is the caller's.

use candle_core::{DType, Device, Tensor, D};

use super::ClassWeighting;
use crate::understand::UnderstandError;

/// Raw logits `x W + b` for the parameter vector `theta` (`W` then `b`).
pub(super) fn logits(
    x: &Tensor,
    theta: &[f32],
    dim: usize,
    k: usize,
) -> Result<Vec<f32>, UnderstandError> {
    let w = Tensor::from_slice(&theta[..dim * k], (dim, k), &Device::Cpu)?;
    let b = Tensor::from_slice(&theta[dim * k..], k, &Device::Cpu)?;
    Ok(x.matmul(&w)?
        .broadcast_add(&b)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// Weighted mean cross-entropy plus `l2 / 2 * |W|^2`, and its gradient.
pub(super) struct Objective<'a> {
    x: &'a Tensor,
    xt: Tensor,
    /// One-hot targets, each row scaled by its example's weight.
    onehot: Tensor,
    /// Example weights as a column.
    weights: Tensor,
    /// Sum of the example weights.
    n: usize,
    dim: usize,
    k: usize,
    l2: f32,
}

impl Objective<'_> {
    fn eval(&self, theta: &[f32]) -> Result<(f64, Vec<f32>), UnderstandError> {
        let (dim, k) = (self.dim, self.k);
        let w = Tensor::from_slice(&theta[..dim * k], (dim, k), &Device::Cpu)?;
        let b = Tensor::from_slice(&theta[dim * k..], k, &Device::Cpu)?;
        let z = self.x.matmul(&w)?.broadcast_add(&b)?;
        let log_p = candle_nn::ops::log_softmax(&z, D::Minus1)?;
        let nll =
            (log_p.mul(&self.onehot)?.sum_all()?.to_scalar::<f32>()? as f64) / -(self.n as f64);
        let penalty: f64 = theta[..dim * k]
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            * f64::from(self.l2)
            / 2.0;
        let residual =
            ((log_p.exp()?.broadcast_mul(&self.weights)? - &self.onehot)? / self.n as f64)?;
        let grad_w = (self.xt.matmul(&residual)? + (w * f64::from(self.l2))?)?;
        let grad_b = residual.sum(0)?;
        let mut grad = grad_w.flatten_all()?.to_vec1::<f32>()?;
        grad.extend(grad_b.to_vec1::<f32>()?);
        Ok((nll + penalty, grad))
    }
}

/// What one optimisation run fits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fit {
    pub k: usize,
    pub l2: f32,
    pub max_iterations: usize,
    pub weighting: ClassWeighting,
}

pub(super) fn optimise(
    x: &Tensor,
    y: &[usize],
    fit: Fit,
    start: Option<&[f32]>,
) -> Result<Vec<f32>, UnderstandError> {
    let Fit {
        k,
        l2,
        max_iterations,
        weighting,
    } = fit;
    let (n, dim) = x.dims2()?;
    let mut counts = vec![0usize; k];
    for &label in y {
        counts[label] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count().max(1);
    let weight_of = |label: usize| match weighting {
        ClassWeighting::Uniform => 1.0,
        ClassWeighting::Balanced => n as f32 / (present * counts[label]) as f32,
    };
    let weights: Vec<f32> = y.iter().map(|&label| weight_of(label)).collect();
    let mut onehot = vec![0f32; n * k];
    for (i, &label) in y.iter().enumerate() {
        onehot[i * k + label] = weights[i];
    }
    let objective = Objective {
        x,
        xt: x.t()?.contiguous()?,
        onehot: Tensor::from_vec(onehot, (n, k), &Device::Cpu)?.to_dtype(DType::F32)?,
        weights: Tensor::from_vec(weights, (n, 1), &Device::Cpu)?,
        n,
        dim,
        k,
        l2,
    };
    let theta = start.map_or_else(|| vec![0f32; dim * k + k], <[f32]>::to_vec);
    lbfgs(|t| objective.eval(t), theta, max_iterations)
}

pub(super) fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// Limited-memory BFGS with a backtracking (Armijo) line search; stops when
/// the gradient's largest component or the relative decrease gets tiny.
pub(super) fn lbfgs(
    mut f: impl FnMut(&[f32]) -> Result<(f64, Vec<f32>), UnderstandError>,
    mut x: Vec<f32>,
    max_iterations: usize,
) -> Result<Vec<f32>, UnderstandError> {
    const MEMORY: usize = 10;
    let (mut fx, mut g) = f(&x)?;
    let mut history: std::collections::VecDeque<(Vec<f32>, Vec<f32>, f64)> =
        std::collections::VecDeque::new();
    for _ in 0..max_iterations {
        if g.iter().fold(0f32, |m, v| m.max(v.abs())) < 1e-5 {
            break;
        }
        // Two-loop recursion: d = -H g.
        let mut q: Vec<f64> = g.iter().map(|v| f64::from(*v)).collect();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho
                * s.iter()
                    .zip(&q)
                    .map(|(s, q)| f64::from(*s) * q)
                    .sum::<f64>();
            for (qi, yi) in q.iter_mut().zip(y) {
                *qi -= a * f64::from(*yi);
            }
            alphas.push(a);
        }
        let gamma = match history.back() {
            Some((s, y, _)) => dot(s, y) / dot(y, y),
            None => 1.0 / dot(&g, &g).sqrt().max(1e-12),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho
                * y.iter()
                    .zip(&q)
                    .map(|(y, q)| f64::from(*y) * q)
                    .sum::<f64>();
            for (qi, si) in q.iter_mut().zip(s) {
                *qi += (a - b) * f64::from(*si);
            }
        }
        let mut d: Vec<f32> = q.iter().map(|v| -(*v as f32)).collect();
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            history.clear();
            let norm = dot(&g, &g).sqrt().max(1e-12);
            d = g.iter().map(|v| -(f64::from(*v) / norm) as f32).collect();
            slope = dot(&g, &d);
        }
        let mut step = 1.0f32;
        let mut accepted = None;
        for _ in 0..40 {
            let candidate: Vec<f32> = x.iter().zip(&d).map(|(x, d)| x + step * d).collect();
            let (fc, gc) = f(&candidate)?;
            if fc <= fx + 1e-4 * f64::from(step) * slope {
                accepted = Some((candidate, fc, gc));
                break;
            }
            step *= 0.5;
        }
        let Some((x_new, f_new, g_new)) = accepted else {
            break;
        };
        let s: Vec<f32> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f32> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            if history.len() == MEMORY {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / sy));
        }
        let decrease = fx - f_new;
        x = x_new;
        fx = f_new;
        g = g_new;
        if decrease.abs() <= 1e-10 * fx.abs().max(1.0) {
            break;
        }
    }
    Ok(x)
}
