//! When translations ahead run: a few at a time per tenant, once the job
//! queue has been empty for a while and for as long as it stays empty, so
//! the chat model works ahead only while no buyer waits. Tenants with
//! nothing left to translate are left alone until their knowledge base
//! changes or a while has passed.
//!
//! Knows the store's job counts and tenants and asks its caller whether
//! the pipeline is ready; knows nothing of HTTP or of how the server is
//! assembled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::TenantAhead;
use crate::domain::TenantId;
use crate::kb::KbService;
use crate::pipeline::Pipeline;
use crate::store::Store;

/// How often the queue is looked at for translations prepared ahead.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Translations written per tenant before the queue is looked at again.
const BATCH: usize = 4;
/// The longest a tenant with nothing left to translate is left alone when
/// its knowledge base does not change (five idle periods, at least 30 s).
const RECHECK: Duration = Duration::from_secs(600);

/// What the schedule needs from the running server.
pub struct Ahead {
    pub store: Arc<dyn Store>,
    pub kb: Arc<KbService>,
    /// The pipeline, once it and what it reads (classifiers, knowledge
    /// indexes) are ready; `None` before.
    pub ready: Box<dyn Fn() -> Option<Arc<Pipeline>> + Send + Sync>,
}

/// Whether a tenant found with nothing left to translate (`done`: at which
/// knowledge-base revision, and when) may be left alone now: its knowledge
/// base has not changed and it was looked at within `recheck`.
fn settled(done: Option<&(i64, Instant)>, revision: i64, recheck: Duration) -> bool {
    done.is_some_and(|(at, when)| *at == revision && when.elapsed() < recheck)
}

/// Translates the seller's FAQ answers ahead into the languages its buyers
/// write (see [`super`]), a few at a time, once the queue has been empty
/// for `idle` and for as long as it stays empty: work for the chat model
/// while no buyer waits, so the first buyer to ask in a language is
/// answered from a stored, checked translation. Runs until `stop`.
pub async fn run(ahead: Ahead, idle: Duration, stop: CancellationToken) {
    let mut quiet_since: Option<Instant> = None;
    // Tenants with nothing left to translate, at their knowledge base's
    // revision: looked at again once it changes, or after a while (buyers
    // may have started writing in another language).
    let recheck = (idle * 5).clamp(Duration::from_secs(30), RECHECK);
    let mut done: HashMap<TenantId, (i64, Instant)> = HashMap::new();
    let mut tenants_ahead: HashMap<TenantId, TenantAhead> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let pipeline = (ahead.ready)();
        let empty = ahead
            .store
            .job_counts()
            .await
            .is_ok_and(|c| c.queued == 0 && c.leased == 0);
        let Some(pipeline) = pipeline.filter(|_| empty) else {
            quiet_since = None;
            continue;
        };
        let since = *quiet_since.get_or_insert_with(Instant::now);
        if since.elapsed() < idle {
            continue;
        }
        let Ok(tenants) = ahead.store.list_tenants().await else {
            continue;
        };
        for tenant in &tenants {
            let Ok(revision) = ahead.kb.entries().kb_revision(tenant.id).await else {
                continue;
            };
            if settled(done.get(&tenant.id), revision, recheck) {
                continue;
            }
            let owner = tenant.id.0.as_u128();
            let pass = crate::engine::scope::within(
                crate::engine::scope::pipeline(owner),
                pipeline.prepare_translations(
                    ahead.kb.entries(),
                    tenant.id,
                    BATCH,
                    tenants_ahead.entry(tenant.id).or_default(),
                ),
            )
            .await;
            match pass {
                Ok(pass) => {
                    if pass.written() > 0 {
                        tracing::info!(tenant = %tenant.id, verified = pass.verified,
                            unverified = pass.unverified, failed = pass.failed,
                            "FAQ answers translated ahead");
                    }
                    if pass.complete {
                        done.insert(tenant.id, (revision, Instant::now()));
                    }
                }
                Err(err) => {
                    tracing::warn!(tenant = %tenant.id, error = %err.message, "translations ahead failed")
                }
            }
            if stop.is_cancelled() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_with_nothing_to_translate_is_looked_at_again_after_a_change_or_a_while() {
        let recheck = Duration::from_secs(30);
        let now = Instant::now();
        assert!(!settled(None, 3, recheck), "never looked at");
        assert!(settled(Some(&(3, now)), 3, recheck));
        assert!(
            !settled(Some(&(3, now)), 4, recheck),
            "its knowledge base changed"
        );
        let long_ago = now - Duration::from_secs(31);
        assert!(
            !settled(Some(&(3, long_ago)), 3, recheck),
            "buyers may write in another language by now"
        );
    }
}
