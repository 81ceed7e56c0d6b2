//! `TimerStore`: periodic work done once per period across every replica
//! of one database (deadline scans, reconciliation, retention, pruning
//! done jobs). Each replica's timer still fires; before doing the work it
//! claims the timer's period, and only the one claim that finds the timer
//! due does it. Knows nothing of what the timers do.

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;

#[async_trait]
pub trait TimerStore: Send + Sync + 'static {
    /// Claims the timer `name` for the next `period`: true when it was due
    /// (never claimed, or its last claim is at least `period` old) and this
    /// caller now holds it, so it does the timer's work; false when another
    /// replica claimed it within the period. A replica that dies after
    /// claiming skips that period's work; the next period's claim does it.
    async fn claim_timer(&self, name: &str, period: Duration) -> Result<bool, StoreError>;

    /// Extends a claim this process holds on `name` to `period` from now,
    /// so long work keeps it: true while this process still holds it,
    /// false when another replica claimed it meanwhile (this one's claim
    /// ran out) or it was never this process's.
    async fn renew_timer(&self, name: &str, period: Duration) -> Result<bool, StoreError>;

    /// Makes a timer this process holds due at once, so the next claim
    /// (here or on another replica) succeeds without waiting for the
    /// period to end. Nothing happens to another replica's claim.
    async fn release_timer(&self, name: &str) -> Result<(), StoreError>;
}
