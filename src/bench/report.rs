//! Turning delivery samples into the figures a benchmark reports: per-run
//! counts and latency percentiles, the median over runs, and the human table.
//!
//! Pure bookkeeping: no clock, no I/O. Latency is recorded only for
//! acknowledged deliveries; failures are counted by cause instead, so a fast
//! stream of errors can never make the percentiles look better.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::messages::Redelivery;

/// Longest latency the histogram resolves; anything slower is clamped to it.
const HISTOGRAM_MAX_MICROS: u64 = 3_600 * 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Warmup,
    Measured,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Acked { duplicate: bool },
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Failure {
    Status(u16),
    Timeout,
    Connect,
    Transport,
    UnreadableAck,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(code) => write!(f, "http {code}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Connect => f.write_str("connect"),
            Failure::Transport => f.write_str("transport"),
            Failure::UnreadableAck => f.write_str("unreadable 202 body"),
        }
    }
}

/// What one delivery came to.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub phase: Phase,
    pub redelivery: Redelivery,
    pub outcome: Outcome,
    /// From the scheduled send time to the response fully read.
    pub latency: Duration,
    /// When the response was read, counted from the start of measurement.
    pub completed_after: Duration,
}

pub(crate) struct RunRecorder {
    histogram: Histogram<u64>,
    sent: u64,
    acked: u64,
    duplicates_offered: u64,
    duplicates_acked: u64,
    failures: BTreeMap<Failure, u64>,
    warmup_errors: u64,
    last_completion: Duration,
}

impl RunRecorder {
    pub fn new() -> RunRecorder {
        RunRecorder {
            histogram: Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3)
                .expect("static histogram bounds are valid"),
            sent: 0,
            acked: 0,
            duplicates_offered: 0,
            duplicates_acked: 0,
            failures: BTreeMap::new(),
            warmup_errors: 0,
            last_completion: Duration::ZERO,
        }
    }

    pub fn record(&mut self, sample: Sample) {
        if sample.phase == Phase::Warmup {
            if matches!(sample.outcome, Outcome::Failed(_)) {
                self.warmup_errors += 1;
            }
            return;
        }
        self.sent += 1;
        self.last_completion = self.last_completion.max(sample.completed_after);
        if sample.redelivery == Redelivery::Repeat {
            self.duplicates_offered += 1;
        }
        match sample.outcome {
            Outcome::Acked { duplicate } => {
                self.acked += 1;
                if duplicate {
                    self.duplicates_acked += 1;
                }
                let micros = u64::try_from(sample.latency.as_micros()).unwrap_or(u64::MAX);
                self.histogram.saturating_record(micros.max(1));
            }
            Outcome::Failed(failure) => *self.failures.entry(failure).or_default() += 1,
        }
    }

    /// `window` is the measured duration as scheduled; when responses
    /// straggle past it, the achieved rate is taken over the longer span.
    pub fn finish(self, run: u32, offered_rate: f64, window: Duration) -> RunReport {
        let span = window.max(self.last_completion).as_secs_f64();
        let ms = |micros: u64| micros as f64 / 1000.0;
        let quantile = |q: f64| {
            if self.histogram.is_empty() {
                0.0
            } else {
                ms(self.histogram.value_at_quantile(q))
            }
        };
        RunReport {
            run,
            offered_rate,
            ack_rate: if span > 0.0 {
                self.acked as f64 / span
            } else {
                0.0
            },
            duration_secs: span,
            sent: self.sent,
            acked: self.acked,
            duplicates_offered: self.duplicates_offered,
            duplicates_acked: self.duplicates_acked,
            errors: self.failures.values().sum(),
            errors_by_cause: self
                .failures
                .iter()
                .map(|(failure, count)| (failure.to_string(), *count))
                .collect(),
            warmup_errors: self.warmup_errors,
            latency_ms: LatencySummary {
                p50: quantile(0.50),
                p90: quantile(0.90),
                p99: quantile(0.99),
                p99_9: quantile(0.999),
                max: ms(self.histogram.max()),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunReport {
    pub run: u32,
    pub offered_rate: f64,
    pub ack_rate: f64,
    pub duration_secs: f64,
    pub sent: u64,
    pub acked: u64,
    pub duplicates_offered: u64,
    pub duplicates_acked: u64,
    pub errors: u64,
    pub errors_by_cause: BTreeMap<String, u64>,
    pub warmup_errors: u64,
    pub latency_ms: LatencySummary,
}

impl RunReport {
    pub fn all_errors(&self) -> u64 {
        self.errors + self.warmup_errors
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Medians {
    pub ack_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub(crate) fn medians(runs: &[RunReport]) -> Option<Medians> {
    Some(Medians {
        ack_rate: median(runs.iter().map(|r| r.ack_rate))?,
        p50_ms: median(runs.iter().map(|r| r.latency_ms.p50))?,
        p99_ms: median(runs.iter().map(|r| r.latency_ms.p99))?,
    })
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// The per-run table, with a median row when there is more than one run.
pub(crate) fn render_table(runs: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6} {:>9} {:>7} {:>8} {:>8} {:>6} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "run",
        "acked/s",
        "secs",
        "sent",
        "acked",
        "dup",
        "errors",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    for r in runs {
        let l = &r.latency_ms;
        let _ = writeln!(
            out,
            "{:>6} {:>9.1} {:>7.1} {:>8} {:>8} {:>6} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8.2}",
            r.run,
            r.ack_rate,
            r.duration_secs,
            r.sent,
            r.acked,
            r.duplicates_acked,
            r.errors,
            l.p50,
            l.p90,
            l.p99,
            l.p99_9,
            l.max
        );
    }
    if runs.len() > 1 {
        if let Some(m) = medians(runs) {
            let _ = writeln!(
                out,
                "{:>6} {:>9.1} {:>7} {:>8} {:>8} {:>6} {:>7} {:>8.2} {:>8} {:>8.2}",
                "median", m.ack_rate, "", "", "", "", "", m.p50_ms, "", m.p99_ms
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(phase: Phase, outcome: Outcome, latency_ms: u64) -> Sample {
        Sample {
            phase,
            redelivery: Redelivery::First,
            outcome,
            latency: Duration::from_millis(latency_ms),
            completed_after: Duration::from_millis(latency_ms),
        }
    }

    fn acked(latency_ms: u64) -> Sample {
        sample(
            Phase::Measured,
            Outcome::Acked { duplicate: false },
            latency_ms,
        )
    }

    #[test]
    fn percentiles_come_from_acknowledged_deliveries_only() {
        let mut recorder = RunRecorder::new();
        for ms in 1..=100 {
            recorder.record(acked(ms));
        }
        recorder.record(sample(
            Phase::Measured,
            Outcome::Failed(Failure::Timeout),
            1,
        ));
        let report = recorder.finish(1, 101.0, Duration::from_secs(1));
        let l = &report.latency_ms;
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.01;
        assert!(close(l.p50, 50.0), "{l:?}");
        assert!(close(l.p90, 90.0), "{l:?}");
        assert!(close(l.p99, 99.0), "{l:?}");
        assert!(close(l.max, 100.0), "{l:?}");
        assert_eq!((report.sent, report.acked, report.errors), (101, 100, 1));
        assert_eq!(report.errors_by_cause["timeout"], 1);
    }

    #[test]
    fn warmup_is_not_measured_but_its_errors_still_count() {
        let mut recorder = RunRecorder::new();
        recorder.record(sample(
            Phase::Warmup,
            Outcome::Acked { duplicate: false },
            500,
        ));
        recorder.record(sample(
            Phase::Warmup,
            Outcome::Failed(Failure::Status(500)),
            1,
        ));
        recorder.record(acked(2));
        let report = recorder.finish(1, 1.0, Duration::from_secs(1));
        assert_eq!((report.sent, report.acked, report.errors), (1, 1, 0));
        assert_eq!(report.warmup_errors, 1);
        assert_eq!(report.all_errors(), 1);
        assert!(report.latency_ms.max < 3.0, "{:?}", report.latency_ms);
    }

    #[test]
    fn ack_rate_spans_stragglers_past_the_window() {
        let mut recorder = RunRecorder::new();
        for _ in 0..100 {
            recorder.record(acked(1));
        }
        let on_time = recorder.finish(1, 100.0, Duration::from_secs(1));
        assert!((on_time.ack_rate - 100.0).abs() < 1e-9);

        let mut recorder = RunRecorder::new();
        for _ in 0..100 {
            recorder.record(acked(1));
        }
        recorder.record(acked(4_000));
        let late = recorder.finish(1, 100.0, Duration::from_secs(1));
        assert!(
            (late.ack_rate - 101.0 / 4.0).abs() < 1e-9,
            "{}",
            late.ack_rate
        );
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn table_has_a_median_row_only_for_several_runs() {
        let run = |n: u32, p50_ms: u64| {
            let mut recorder = RunRecorder::new();
            recorder.record(acked(p50_ms));
            recorder.finish(n, 1.0, Duration::from_secs(1))
        };
        let one = render_table(&[run(1, 2)]);
        assert!(!one.contains("median"), "{one}");
        let runs = [run(1, 2), run(2, 8), run(3, 4)];
        assert!(render_table(&runs).contains("median"));
        let median_p50 = medians(&runs).unwrap().p50_ms;
        assert!((median_p50 - 4.0).abs() < 0.01, "{median_p50}");
    }
}
