//! [`TimerStore`] on PostgreSQL: one row per timer in `timers` (migration
//! 0015) holding when it is next due. A claim is one `INSERT … ON
//! CONFLICT DO UPDATE … WHERE due_at <= now`: concurrent claims from
//! several replicas queue on the row's lock, and each later one re-reads
//! the row the first moved into the future, finds it not due and updates
//! nothing. No advisory lock: the row lock is the whole coordination.

use super::*;
use crate::store::TimerStore;

/// Who claimed a timer, for an operator reading the table.
pub(super) fn claimant() -> String {
    static CLAIMANT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CLAIMANT
        .get_or_init(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default();
            format!("{host}:{}", std::process::id())
        })
        .clone()
}

#[async_trait]
impl TimerStore for PostgresStore {
    async fn claim_timer(&self, name: &str, period: Duration) -> Result<bool, StoreError> {
        let at = now();
        let span = chrono::Duration::from_std(period).unwrap_or(chrono::Duration::MAX);
        let due = at
            .checked_add_signed(span)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let claimed: Option<String> = sqlx::query_scalar(&pg(
            "INSERT INTO timers (name, due_at, claimed_at, claimed_by) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (name) DO UPDATE SET due_at = EXCLUDED.due_at, \
               claimed_at = EXCLUDED.claimed_at, claimed_by = EXCLUDED.claimed_by \
             WHERE timers.due_at <= ?3 \
             RETURNING name",
        ))
        .bind(name)
        .bind(ts(due))
        .bind(ts(at))
        .bind(claimant())
        .fetch_optional(&self.writer)
        .await?;
        Ok(claimed.is_some())
    }

    async fn renew_timer(&self, name: &str, period: Duration) -> Result<bool, StoreError> {
        let at = now();
        let span = chrono::Duration::from_std(period).unwrap_or(chrono::Duration::MAX);
        let due = at
            .checked_add_signed(span)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let renewed = sqlx::query(&pg(
            "UPDATE timers SET due_at = ?1 WHERE name = ?2 AND claimed_by = ?3",
        ))
        .bind(ts(due))
        .bind(name)
        .bind(claimant())
        .execute(&self.writer)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn release_timer(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query(&pg(
            "UPDATE timers SET due_at = ?1 WHERE name = ?2 AND claimed_by = ?3",
        ))
        .bind(ts(now()))
        .bind(name)
        .bind(claimant())
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
