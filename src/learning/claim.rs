//! The claim on a tenant's retraining across replicas of one database:
//! a timer (`TimerStore`) named after the tenant, claimed for a lease,
//! **renewed while the retraining runs** and given back when it ends, so
//! however long a retraining takes no second replica starts one on the
//! same tenant, and a replica that dies mid-training leaves a claim that
//! runs out within one lease. The claim is the same code for every store;
//! only the timer primitives differ (on SQLite, one server owns the
//! database and every claim succeeds). Knows nothing of training.

use std::future::Future;
use std::time::Duration;

use crate::domain::TenantId;
use crate::store::{StoreError, TimerStore};

/// The timer whose claim is the lease on `tenant`'s retraining (a row of
/// `timers` on PostgreSQL, migration 0015).
pub fn retraining_timer(tenant: TenantId) -> String {
    format!("learning.retrain:{tenant}")
}

/// How `work` ended under a claim.
#[derive(Debug, PartialEq)]
pub enum Held<T> {
    /// It finished with the claim held throughout.
    Done(T),
    /// A renewal found the claim taken by another replica (this one
    /// stalled past its lease): `work` was stopped, its result unused.
    Lost,
}

/// Runs `work` while holding the timer `name` (already claimed for
/// `lease`), renewing it for `lease` every quarter of `lease`, so the
/// hold follows the work however long it takes. When a renewal finds the
/// claim taken, `work` is dropped and [`Held::Lost`] returned; a renewal
/// that fails on the store is logged and tried again at the next tick
/// (the lease still has three quarters to run).
pub async fn hold_while<S, T>(
    store: &S,
    name: &str,
    lease: Duration,
    work: impl Future<Output = T>,
) -> Held<T>
where
    S: TimerStore + ?Sized,
{
    let every = (lease / 4).max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Held::Done(done),
            _ = ticks.tick() => match store.renew_timer(name, lease).await {
                Ok(true) => crate::metrics::learning_event("claim_renewed"),
                Ok(false) => {
                    tracing::warn!(timer = name, "the claim was taken by another replica; stopping");
                    return Held::Lost;
                }
                Err(error) => tracing::warn!(timer = name, %error, "renewing a claim failed"),
            },
        }
    }
}

/// Claims `tenant`'s retraining for `lease`: false when another
/// retraining of the tenant holds it.
pub async fn claim<S: TimerStore + ?Sized>(
    store: &S,
    tenant: TenantId,
    lease: Duration,
) -> Result<bool, StoreError> {
    store.claim_timer(&retraining_timer(tenant), lease).await
}

/// Gives `tenant`'s retraining claim back, so pending corrections left
/// after it are picked up at once rather than when the lease ends.
pub async fn release<S: TimerStore + ?Sized>(
    store: &S,
    tenant: TenantId,
) -> Result<(), StoreError> {
    store.release_timer(&retraining_timer(tenant)).await
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use tokio::sync::watch;

    use super::*;

    /// Timer primitives that count renewals and lose the claim after
    /// `keep` of them.
    struct Timers {
        renewals: watch::Sender<usize>,
        keep: usize,
    }

    impl Timers {
        fn new(keep: usize) -> Timers {
            Timers {
                renewals: watch::channel(0).0,
                keep,
            }
        }
    }

    #[async_trait]
    impl TimerStore for Timers {
        async fn claim_timer(&self, _name: &str, _period: Duration) -> Result<bool, StoreError> {
            Ok(true)
        }

        async fn renew_timer(&self, _name: &str, _period: Duration) -> Result<bool, StoreError> {
            let mut kept = true;
            self.renewals.send_modify(|n| {
                *n += 1;
                kept = *n <= self.keep;
            });
            Ok(kept)
        }

        async fn release_timer(&self, _name: &str) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_retraining_longer_than_its_lease_keeps_renewing_its_claim() {
        let timers = Timers::new(usize::MAX);
        let mut renewed = timers.renewals.subscribe();
        // Work that outlasts three leases: it ends only after twelve
        // renewals (four a lease), whatever the clock says.
        let work = async move {
            renewed.wait_for(|n| *n >= 12).await.unwrap();
            "decided"
        };
        let held = hold_while(&timers, "t", Duration::from_millis(20), work).await;
        assert_eq!(held, Held::Done("decided"));
        assert!(*timers.renewals.borrow() >= 12);
    }

    #[tokio::test]
    async fn a_retraining_whose_claim_was_taken_is_stopped_and_its_result_unused() {
        let timers = Timers::new(2);
        let held = hold_while(
            &timers,
            "t",
            Duration::from_millis(20),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(held, Held::Lost);
        assert_eq!(*timers.renewals.borrow(), 3);
    }
}
