//! Who may reuse what a model computed for someone else: the chat model's
//! cached keys and values, and the query vectors the pipeline remembers.
//! A [`CacheScope`] is an opaque owner (a tenant, as its caller sees it):
//! cached work is reused only within one owner, so how fast a request runs
//! never tells one tenant what another asked.
//!
//! The reply pipeline runs deep below the job that knows its tenant, so
//! the job sets the scope for everything it awaits ([`within`]), and work
//! moved to a blocking thread takes it along ([`carry`]). Code outside any
//! scope (command-line tools) shares [`CacheScope::default`].

use std::cell::Cell;
use std::future::Future;

pub use crate::inference::chat::CacheScope;

/// The scope of the reply pipeline working for `owner`. Its system turns
/// are kedai's own instruction text, which holds nothing of the tenant's
/// beyond what a requester sending the very same text already knows, so
/// their keys and values may be shared with other owners' identical turns.
pub fn pipeline(owner: u128) -> CacheScope {
    CacheScope {
        owner,
        share_system_turn: true,
    }
}

/// The scope of a `/v1` client: distinct from the same tenant's pipeline
/// scope (a client sees nothing of the pipeline's prompts), and its system
/// turns, which are its own, are never shared.
pub fn api(owner: u128) -> CacheScope {
    CacheScope {
        owner: owner ^ API_OWNER_MASK,
        share_system_turn: false,
    }
}

/// Flips the owner of `/v1` scopes away from the pipeline's.
const API_OWNER_MASK: u128 = 1 << 127;

tokio::task_local! {
    static TASK_SCOPE: CacheScope;
}

thread_local! {
    static THREAD_SCOPE: Cell<Option<CacheScope>> = const { Cell::new(None) };
}

/// The scope in effect here: the blocking thread's, then the task's, else
/// the default.
pub fn current() -> CacheScope {
    THREAD_SCOPE
        .with(Cell::get)
        .or_else(|| TASK_SCOPE.try_with(|s| *s).ok())
        .unwrap_or_default()
}

/// Runs `work` (and everything it awaits) in `scope`.
pub async fn within<F: Future>(scope: CacheScope, work: F) -> F::Output {
    TASK_SCOPE.scope(scope, work).await
}

/// `work` for a blocking thread, run in the scope in effect where `carry`
/// is called.
pub fn carry<R>(work: impl FnOnce() -> R) -> impl FnOnce() -> R {
    let scope = current();
    move || run_in(scope, work)
}

/// Runs blocking `work` in `scope`.
pub fn run_in<R>(scope: CacheScope, work: impl FnOnce() -> R) -> R {
    struct Restore(Option<CacheScope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_SCOPE.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(THREAD_SCOPE.with(|s| s.replace(Some(scope))));
    work()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn l9_the_scope_follows_the_task_into_blocking_work() {
        assert_eq!(current(), CacheScope::default());
        let scope = pipeline(42);
        let seen = within(scope, async {
            let inside = current();
            let blocking = tokio::task::spawn_blocking(carry(current)).await.unwrap();
            (inside, blocking)
        })
        .await;
        assert_eq!(seen, (scope, scope));
        assert_eq!(current(), CacheScope::default(), "restored afterwards");
        assert_ne!(api(42).owner, scope.owner);
        assert_eq!(run_in(api(1), current), api(1));
        assert_eq!(current(), CacheScope::default());
    }
}
