//! The out-of-scope gate: whether a message is something the intents
//! cover, decided from more than the head's probability. Four signals, all
//! from vectors already computed:
//!
//! - **confidence**: the head's calibrated probability of its best intent;
//! - **margin**: that probability minus the second best;
//! - **support**: cosine similarity of the nearest in-scope exemplar (is
//!   there anything like this message among what the intents were taught?);
//! - **agreement**: the share of the `k` nearest exemplars labelled with
//!   the head's best intent (do the examples agree with the head?).
//!
//! A message is out of scope when the head says so, or its confidence or
//! support is too low, or the nearest exemplars disagree with the head while
//! its margin is small. The four cut-offs are chosen on the fold the head
//! held out while fitting (its predictions there, neighbours among the other
//! lines only), maximising the same objective as the head's own threshold:
//! the mean of in-scope accuracy and out-of-scope F1.
//!
//! The gate sees vectors, label indices and probabilities only: it knows
//! nothing of texts, languages or the embedding model.

use serde::{Deserialize, Serialize};

use super::classifier::{LinearHead, Prediction};

/// Nearest exemplars consulted for agreement.
pub const NEIGHBOURS: usize = 5;

/// What the gate looks at for one message.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Signals {
    pub confidence: f32,
    pub margin: f32,
    pub support: f32,
    pub agreement: f32,
}

/// The cut-offs: a message is out of scope when any holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScopeRule {
    /// Confidence below this.
    pub min_confidence: f32,
    /// Support below this.
    pub min_support: f32,
    /// Agreement below this while the margin is below
    /// `margin_when_disagreeing` (0 turns the test off).
    pub min_agreement: f32,
    pub margin_when_disagreeing: f32,
}

impl ScopeRule {
    /// A rule that turns nothing away.
    pub const OPEN: ScopeRule = ScopeRule {
        min_confidence: 0.0,
        min_support: -1.0,
        min_agreement: 0.0,
        margin_when_disagreeing: 0.0,
    };

    pub fn rejects(&self, s: &Signals) -> bool {
        s.confidence < self.min_confidence
            || s.support < self.min_support
            || (s.agreement < self.min_agreement && s.margin < self.margin_when_disagreeing)
    }
}

/// Exemplar vectors (unit length) with their label indices.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Neighbours {
    vectors: Vec<Vec<f32>>,
    labels: Vec<usize>,
}

impl Neighbours {
    fn new(vectors: &[&[f32]], labels: &[usize]) -> Neighbours {
        Neighbours {
            vectors: vectors.iter().map(|v| unit(v)).collect(),
            labels: labels.to_vec(),
        }
    }

    /// Support and agreement of `vector` for the head's `best` label.
    fn signals(&self, vector: &[f32], best: usize, out_of_scope: usize, k: usize) -> (f32, f32) {
        let query = unit(vector);
        let mut support = f32::NEG_INFINITY;
        // The k most similar (similarity, label), most similar first.
        let mut nearest: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        for (v, &label) in self.vectors.iter().zip(&self.labels) {
            let sim: f32 = v.iter().zip(&query).map(|(a, b)| a * b).sum();
            if label != out_of_scope && sim > support {
                support = sim;
            }
            if nearest.len() < k || sim > nearest[nearest.len() - 1].0 {
                let at = nearest.partition_point(|(s, _)| *s >= sim);
                nearest.insert(at, (sim, label));
                nearest.truncate(k);
            }
        }
        let agreeing = nearest.iter().filter(|(_, l)| *l == best).count();
        (support, agreeing as f32 / nearest.len().max(1) as f32)
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// The gate for one head: its exemplars and the rule chosen for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScopeGate {
    neighbours: Neighbours,
    out_of_scope: usize,
    rule: ScopeRule,
    k: usize,
}

/// What choosing the rule found on the held-out fold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GateReport {
    pub rule: ScopeRule,
    /// The objective with the head's own threshold and with the gate.
    pub objective_head: f32,
    pub objective_gate: f32,
}

impl ScopeGate {
    /// Builds the gate for `head`, fitted on `vectors`: `None` when the head
    /// has no out-of-scope label or held no out-of-scope lines out, since
    /// then there is nothing to choose the cut-offs on.
    pub fn fit(vectors: &[Vec<f32>], head: &LinearHead) -> Option<(ScopeGate, GateReport)> {
        let oos = head.out_of_scope_index()?;
        let held = head.held_out()?;
        if !held.y.contains(&oos) {
            return None;
        }
        let label_of = label_indices(vectors.len(), held);
        let train_vectors: Vec<&[f32]> = held.train.iter().map(|&i| &vectors[i][..]).collect();
        let train_labels: Vec<usize> = held.train.iter().map(|&i| label_of[i]).collect();
        let fold = Neighbours::new(&train_vectors, &train_labels);
        let rows: Vec<(usize, Signals)> = held
            .rows
            .iter()
            .zip(&held.probabilities)
            .map(|(&i, p)| {
                let (best, confidence, margin) = top_two(p);
                let (support, agreement) = fold.signals(&vectors[i], best, oos, NEIGHBOURS);
                (
                    best,
                    Signals {
                        confidence,
                        margin,
                        support,
                        agreement,
                    },
                )
            })
            .collect();
        let head_rule = ScopeRule {
            min_confidence: head.threshold().unwrap_or(0.0),
            ..ScopeRule::OPEN
        };
        let objective_head = objective(&rows, &held.y, oos, &head_rule);
        let (rule, objective_gate) = choose_rule(&rows, &held.y, oos, (head_rule, objective_head));
        let all: Vec<&[f32]> = vectors.iter().map(Vec::as_slice).collect();
        let gate = ScopeGate {
            neighbours: Neighbours::new(&all, &label_of),
            out_of_scope: oos,
            rule,
            k: NEIGHBOURS,
        };
        Some((
            gate,
            GateReport {
                rule,
                objective_head,
                objective_gate,
            },
        ))
    }

    pub fn rule(&self) -> &ScopeRule {
        &self.rule
    }

    /// The signals of a message whose vector is `vector` and whose head
    /// probabilities are `p`.
    pub fn signals(&self, vector: &[f32], p: &[f32]) -> Signals {
        let (best, confidence, margin) = top_two(p);
        let (support, agreement) = self
            .neighbours
            .signals(vector, best, self.out_of_scope, self.k);
        Signals {
            confidence,
            margin,
            support,
            agreement,
        }
    }

    /// The head's prediction, turned out of scope when the rule says so.
    pub fn apply(&self, head: &LinearHead, vector: &[f32], p: &[f32]) -> Prediction {
        let mut prediction = head.decide(p);
        if !prediction.out_of_scope && self.rule.rejects(&self.signals(vector, p)) {
            prediction.out_of_scope = true;
            prediction.label = head.labels()[self.out_of_scope].clone();
        }
        prediction
    }
}

/// The label index of every fitted vector, from the held-out split's two
/// halves.
fn label_indices(n: usize, held: &super::classifier::HeldOut) -> Vec<usize> {
    let mut labels = vec![0; n];
    for (&i, &y) in held.rows.iter().zip(&held.y) {
        labels[i] = y;
    }
    for (&i, &y) in held.train.iter().zip(&held.train_y) {
        labels[i] = y;
    }
    labels
}

/// Best label, its probability and its margin over the second.
fn top_two(p: &[f32]) -> (usize, f32, f32) {
    let (mut best, mut first, mut second) = (0, f32::NEG_INFINITY, 0.0f32);
    for (i, &x) in p.iter().enumerate() {
        if x > first {
            second = first.max(0.0);
            first = x;
            best = i;
        } else if x > second {
            second = x;
        }
    }
    (best, first.max(0.0), first.max(0.0) - second)
}

/// Mean of in-scope accuracy and out-of-scope F1 of `rule` on labelled rows
/// (each the head's best label and the signals).
fn objective(rows: &[(usize, Signals)], y: &[usize], oos: usize, rule: &ScopeRule) -> f32 {
    let (mut hit, mut in_scope, mut caught, mut false_alarms, mut missed) = (0, 0, 0, 0, 0);
    for (&(best, ref s), &label) in rows.iter().zip(y) {
        let rejected = best == oos || rule.rejects(s);
        match (label == oos, rejected) {
            (true, true) => caught += 1,
            (true, false) => missed += 1,
            (false, true) => {
                in_scope += 1;
                false_alarms += 1;
            }
            (false, false) => {
                in_scope += 1;
                hit += usize::from(best == label);
            }
        }
    }
    let f1 = if caught > 0 {
        2.0 * caught as f32 / (2 * caught + false_alarms + missed) as f32
    } else {
        0.0
    };
    (hit as f32 / in_scope.max(1) as f32 + f1) / 2.0
}

/// `n` cut-offs at the quantiles of `values` (lowest first), after `start`.
fn quantiles(mut values: Vec<f32>, n: usize, start: f32) -> Vec<f32> {
    values.retain(|v| v.is_finite());
    values.sort_by(f32::total_cmp);
    let mut out = vec![start];
    if values.is_empty() {
        return out;
    }
    for q in 1..=n {
        let at = (q * (values.len() - 1)) / (n + 1);
        out.push(values[at]);
    }
    out.dedup();
    out
}

/// The rule with the best objective, starting from the head's own
/// threshold (`start`); simpler rules (tests off) win ties.
fn choose_rule(
    rows: &[(usize, Signals)],
    y: &[usize],
    oos: usize,
    start: (ScopeRule, f32),
) -> (ScopeRule, f32) {
    let mut confidences = quantiles(rows.iter().map(|r| r.1.confidence).collect(), 40, 0.0);
    confidences.push(start.0.min_confidence);
    let supports = quantiles(rows.iter().map(|r| r.1.support).collect(), 20, -1.0);
    let mut agreements = vec![(0.0, 0.0)];
    for a in [0.3, 0.5, 0.7] {
        for m in [0.1, 0.25, 0.5, 1.01] {
            agreements.push((a, m));
        }
    }
    let mut best = start;
    for &(min_agreement, margin_when_disagreeing) in &agreements {
        for &min_support in &supports {
            for &min_confidence in &confidences {
                let rule = ScopeRule {
                    min_confidence,
                    min_support,
                    min_agreement,
                    margin_when_disagreeing,
                };
                let score = objective(rows, y, oos, &rule);
                if score > best.1 + 1e-6 {
                    best = (rule, score);
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::understand::classifier::{LinearHead, TrainConfig};

    /// A small deterministic generator, so the tests need no crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        }
    }

    const DIM: usize = 16;

    fn around(axis: usize, noise: f32, rng: &mut Lcg) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIM).map(|_| noise * rng.next()).collect();
        v[axis] += 1.0;
        v
    }

    /// Intents `a`, `b`, `c` around axes 0-2; out-of-scope lines lean
    /// towards one of the intents but point mostly elsewhere, so a linear
    /// head is often sure of them and only their distance from every
    /// exemplar gives them away.
    fn data() -> (Vec<Vec<f32>>, Vec<&'static str>) {
        let mut rng = Lcg(7);
        let (mut vectors, mut labels) = (Vec::new(), Vec::new());
        for (axis, label) in ["a", "b", "c"].into_iter().enumerate() {
            for _ in 0..40 {
                vectors.push(around(axis, 0.3, &mut rng));
                labels.push(label);
            }
        }
        for i in 0..90 {
            let mut v: Vec<f32> = (0..DIM).map(|_| 2.4 * rng.next()).collect();
            v[i % 3] += 0.8;
            vectors.push(v);
            labels.push("out_of_scope");
        }
        (vectors, labels)
    }

    #[test]
    fn rules_reject_on_any_of_their_tests() {
        let rule = ScopeRule {
            min_confidence: 0.5,
            min_support: 0.6,
            min_agreement: 0.5,
            margin_when_disagreeing: 0.3,
        };
        let s = |confidence, margin, support, agreement| Signals {
            confidence,
            margin,
            support,
            agreement,
        };
        let table = [
            (s(0.9, 0.8, 0.9, 1.0), false, "confident, supported, agreed"),
            (s(0.4, 0.8, 0.9, 1.0), true, "low confidence"),
            (s(0.9, 0.8, 0.5, 1.0), true, "no exemplar near"),
            (
                s(0.9, 0.2, 0.9, 0.2),
                true,
                "neighbours disagree, small margin",
            ),
            (
                s(0.9, 0.5, 0.9, 0.2),
                false,
                "neighbours disagree, large margin",
            ),
            (
                s(0.9, 0.2, 0.9, 0.6),
                false,
                "small margin, neighbours agree",
            ),
        ];
        for (signals, rejected, why) in table {
            assert_eq!(rule.rejects(&signals), rejected, "{why}");
            assert!(!ScopeRule::OPEN.rejects(&signals), "{why}");
        }
    }

    #[test]
    fn a_message_far_from_every_exemplar_is_out_of_scope_even_when_the_head_is_confident() {
        let (vectors, labels) = data();
        let head = LinearHead::fit(&vectors, &labels, &TrainConfig::default()).unwrap();
        let (gate, report) = ScopeGate::fit(&vectors, &head).expect("a gate");
        assert!(
            gate.rule().min_support > -1.0,
            "support is used: {report:?}"
        );
        assert!(report.objective_gate >= report.objective_head, "{report:?}");
        let a = head.labels().iter().position(|l| l == "a").unwrap();
        // The head is sure it is `a` (as a linear head is for anything far
        // along a's side of the space) in every case below.
        let mut confident = vec![0.0; head.labels().len()];
        confident[a] = 0.97;
        let b = head.labels().iter().position(|l| l == "b").unwrap();
        confident[b] = 0.03;
        let mut rng = Lcg(99);
        let mut far = vec![0.0; DIM];
        far[0] = 0.25;
        far[9] = -1.0;
        far[13] = 0.8;
        let table = [
            (
                around(0, 0.1, &mut rng),
                false,
                "a close paraphrase of a's exemplars",
            ),
            (around(0, 0.25, &mut rng), false, "a looser paraphrase"),
            (far, true, "far from every exemplar"),
        ];
        for (vector, out_of_scope, why) in table {
            let prediction = gate.apply(&head, &vector, &confident);
            assert_eq!(
                prediction.out_of_scope,
                out_of_scope,
                "{why}: {:?}",
                gate.signals(&vector, &confident)
            );
            let expected = if out_of_scope { "out_of_scope" } else { "a" };
            assert_eq!(prediction.label, expected, "{why}");
        }
    }

    #[test]
    fn without_out_of_scope_lines_there_is_no_gate() {
        let (vectors, labels) = data();
        let in_scope: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] != "out_of_scope")
            .collect();
        let vectors: Vec<Vec<f32>> = in_scope.iter().map(|&i| vectors[i].clone()).collect();
        let labels: Vec<&str> = in_scope.iter().map(|&i| labels[i]).collect();
        let head = LinearHead::fit(&vectors, &labels, &TrainConfig::default()).unwrap();
        assert!(ScopeGate::fit(&vectors, &head).is_none());
    }

    #[test]
    fn top_two_gives_the_best_label_and_its_margin() {
        let table = [
            (vec![0.1, 0.7, 0.2], (1, 0.7, 0.5)),
            (vec![0.5, 0.5], (0, 0.5, 0.0)),
            (vec![1.0], (0, 1.0, 1.0)),
        ];
        for (p, expected) in table {
            let (best, confidence, margin) = top_two(&p);
            assert_eq!(best, expected.0);
            assert!((confidence - expected.1).abs() < 1e-6);
            assert!((margin - expected.2).abs() < 1e-6, "{p:?}");
        }
    }
}
