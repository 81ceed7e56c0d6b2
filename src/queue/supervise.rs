//! Worker supervision: each queue worker runs under a supervisor that
//! restarts it when it panics or ends unexpectedly, and [`WorkerHealth`]
//! says how many run (for `/readyz` and the metrics). It knows nothing of
//! jobs or the store.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

/// How long a supervisor waits before restarting a worker that ended.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// How many workers run, for `/readyz` and the metrics.
#[derive(Debug)]
pub struct WorkerHealth {
    running: Vec<AtomicBool>,
    restarts: AtomicU64,
    pub(super) processing: AtomicBool,
}

/// A snapshot of [`WorkerHealth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WorkersReport {
    /// `queue.workers`.
    pub configured: usize,
    pub running: usize,
    /// Workers restarted after ending unexpectedly, since start.
    pub restarts: u64,
    /// Whether a handler is installed; until then jobs stay queued.
    pub processing: bool,
}

impl WorkersReport {
    /// Every configured worker runs.
    pub fn all_running(&self) -> bool {
        self.running == self.configured
    }
}

impl WorkerHealth {
    pub(super) fn new(workers: usize) -> WorkerHealth {
        WorkerHealth {
            running: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            restarts: AtomicU64::new(0),
            processing: AtomicBool::new(false),
        }
    }

    fn set_running(&self, index: usize, running: bool) {
        if let Some(flag) = self.running.get(index) {
            flag.store(running, Ordering::SeqCst);
        }
        m::queue_workers_running(self.report().running);
    }

    pub fn report(&self) -> WorkersReport {
        WorkersReport {
            configured: self.running.len(),
            running: self
                .running
                .iter()
                .filter(|r| r.load(Ordering::SeqCst))
                .count(),
            restarts: self.restarts.load(Ordering::SeqCst),
            processing: self.processing.load(Ordering::SeqCst),
        }
    }
}

pub(super) fn panic_reason(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// A worker task that ends with its supervisor: dropping the supervisor
/// (the server's task aborted) stops the worker too, as a killed process
/// would, leases left as they are.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps worker `index` running until `cancel` fires: runs the future
/// `start(generation)` makes, and when it ends otherwise (a panic, or an
/// unexpected return) marks the worker down, waits a moment and starts a
/// new generation.
pub(super) async fn supervise<F, Fut>(
    health: Arc<WorkerHealth>,
    index: usize,
    cancel: CancellationToken,
    start: F,
) where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<(), tokio::task::JoinError>>,
{
    for generation in 0.. {
        health.set_running(index, true);
        let ended = start(generation).await;
        health.set_running(index, false);
        if cancel.is_cancelled() {
            break;
        }
        match ended {
            Err(err) if err.is_panic() => {
                let reason = panic_reason(err.into_panic().as_ref());
                tracing::error!(worker = index, %reason, "queue worker panicked; restarting it");
            }
            _ => tracing::error!(
                worker = index,
                "queue worker ended unexpectedly; restarting it"
            ),
        }
        health.restarts.fetch_add(1, Ordering::SeqCst);
        m::queue_worker_restarted();
        tokio::select! {
            _ = tokio::time::sleep(RESTART_DELAY) => {}
            _ = cancel.cancelled() => break,
        }
    }
}
