//! Calibrating a head on its held-out fold: the softmax at a temperature,
//! the temperature that minimises held-out log-loss, and the probability
//! threshold below which a prediction counts as out of scope. Pure
//! arithmetic over logits and label indices.

pub(super) fn softmax(z: &[f32], temperature: f32) -> Vec<f32> {
    let max = z.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let e: Vec<f32> = z.iter().map(|v| ((v - max) / temperature).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

pub(super) fn accuracy(logits: &[f32], y: &[usize], k: usize) -> f32 {
    let correct = logits
        .chunks_exact(k)
        .zip(y)
        .filter(|(row, &label)| argmax(row) == label)
        .count();
    correct as f32 / y.len().max(1) as f32
}

pub(super) fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

pub(super) fn nll(logits: &[f32], y: &[usize], k: usize, temperature: f32) -> f64 {
    logits
        .chunks_exact(k)
        .zip(y)
        .map(|(row, &label)| -f64::from(softmax(row, temperature)[label].max(1e-12)).ln())
        .sum::<f64>()
        / y.len().max(1) as f64
}

/// The temperature minimising held-out log-loss, by golden-section search
/// over its logarithm in [1/20, 20].
pub(super) fn fit_temperature(logits: &[f32], y: &[usize], k: usize) -> f32 {
    let loss = |log_t: f64| nll(logits, y, k, log_t.exp() as f32);
    let (mut lo, mut hi) = ((0.05f64).ln(), (20f64).ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut a = hi - ratio * (hi - lo);
    let mut b = lo + ratio * (hi - lo);
    let (mut fa, mut fb) = (loss(a), loss(b));
    for _ in 0..40 {
        if fa < fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - ratio * (hi - lo);
            fa = loss(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + ratio * (hi - lo);
            fb = loss(b);
        }
    }
    ((lo + hi) / 2.0).exp() as f32
}

/// The probability threshold that maximises the mean of in-scope accuracy
/// and out-of-scope F1 on the held-out fold. F1 rather than recall, so that
/// when out-of-scope messages are rare a threshold that turns away many
/// answerable messages to catch a few more of them is not chosen.
pub(super) fn choose_threshold(
    logits: &[f32],
    y: &[usize],
    k: usize,
    temperature: f32,
    oos: usize,
) -> f32 {
    let rows: Vec<(usize, f32)> = logits
        .chunks_exact(k)
        .map(|row| {
            let p = softmax(row, temperature);
            let best = argmax(&p);
            (best, p[best])
        })
        .collect();
    let in_scope = y.iter().filter(|&&l| l != oos).count().max(1) as f32;
    let mut candidates: Vec<f32> = rows.iter().map(|&(_, p)| p).collect();
    candidates.push(0.0);
    candidates.sort_by(f32::total_cmp);
    candidates.dedup();
    let score = |t: f32| {
        let (mut hit, mut caught, mut false_alarms, mut missed) = (0f32, 0f32, 0f32, 0f32);
        for (&(best, p), &label) in rows.iter().zip(y) {
            let rejected = best == oos || p < t;
            match (label == oos, rejected) {
                (true, true) => caught += 1.0,
                (true, false) => missed += 1.0,
                (false, true) => false_alarms += 1.0,
                (false, false) => hit += f32::from(u8::from(best == label)),
            }
        }
        let f1 = if caught > 0.0 {
            2.0 * caught / (2.0 * caught + false_alarms + missed)
        } else {
            0.0
        };
        (hit / in_scope + f1) / 2.0
    };
    let mut best = (0.0, f32::NEG_INFINITY);
    for t in candidates {
        let s = score(t);
        if s > best.1 + 1e-6 {
            best = (t, s);
        }
    }
    best.0
}
