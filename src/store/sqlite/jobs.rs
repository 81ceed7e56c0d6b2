//! The durable job queue's table: leasing, completion, retries and the dead-letter state. SQLite implementation of [`JobStore`].

use super::*;

/// Queues a job about `message_id`, due at once.
pub(super) async fn insert_job(
    tx: &mut Transaction<'static, Sqlite>,
    tenant: TenantId,
    kind: &str,
    message_id: MessageId,
    max_attempts: u32,
    at: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO jobs (id, tenant_id, kind, payload, state, max_attempts, run_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
    )
    .bind(JobId::new().to_string())
    .bind(tenant.to_string())
    .bind(kind)
    .bind(serde_json::json!({ "message_id": message_id }).to_string())
    .bind(max_attempts)
    .bind(at)
    .bind(at)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn lease_jobs(&self, request: LeaseRequest<'_>) -> Result<Vec<Job>, StoreError> {
        let at = now();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_until = NULL, \
             last_error = COALESCE(last_error, 'lease expired on the final attempt'), updated_at = ? \
             WHERE state = 'leased' AND lease_until <= ? AND attempts >= max_attempts",
        )
        .bind(ts(at))
        .bind(ts(at))
        .execute(&mut *tx)
        .await?;
        // Kinds go in as a JSON array, so the statement stays one prepared
        // query whatever their number.
        let kinds = request
            .kinds
            .map(|k| serde_json::to_string(k).unwrap_or_else(|_| "[]".into()));
        let rows: Vec<(String, Option<String>, String, String, i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET state = 'leased', lease_owner = ?, lease_until = ?, \
             attempts = attempts + 1, updated_at = ? \
             WHERE id IN (SELECT id FROM jobs \
                          WHERE ((state = 'queued' AND run_at <= ?) \
                                 OR (state = 'leased' AND lease_until <= ?)) \
                            AND (? IS NULL OR kind IN (SELECT value FROM json_each(?))) \
                          ORDER BY kind != ?, run_at LIMIT ?) \
             RETURNING id, tenant_id, kind, payload, attempts, max_attempts",
        )
        .bind(request.owner)
        .bind(ts(at + request.lease))
        .bind(ts(at))
        .bind(ts(at))
        .bind(ts(at))
        .bind(kinds.as_deref())
        .bind(kinds.as_deref())
        .bind(JOB_INBOUND_MESSAGE)
        .bind(i64::from(request.limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|(id, tenant, kind, payload, attempts, max_attempts)| {
                Ok(Job {
                    id: parse_id(&id, "job")?,
                    tenant_id: tenant
                        .as_deref()
                        .map(|t| parse_id(t, "tenant"))
                        .transpose()?,
                    kind,
                    payload: serde_json::from_str(&payload)
                        .map_err(|e| StoreError::Corrupt(format!("job payload: {e}")))?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    async fn complete_job(&self, id: JobId, owner: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL, updated_at = ? \
             WHERE id = ? AND state = 'leased' AND lease_owner = ?",
        )
        .bind(ts(now()))
        .bind(id.to_string())
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(done == 1)
    }

    async fn fail_job(
        &self,
        id: JobId,
        owner: &str,
        error: &str,
        failure: JobFailure,
    ) -> Result<bool, StoreError> {
        let at = ts(now());
        let (state, run_at) = match failure {
            JobFailure::RetryAt(when) => ("queued", ts(when)),
            JobFailure::Dead => ("dead", at.clone()),
        };
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE jobs SET state = ?, run_at = ?, last_error = ?, lease_owner = NULL, \
             lease_until = NULL, updated_at = ? \
             WHERE id = ? AND state = 'leased' AND lease_owner = ?",
        )
        .bind(state)
        .bind(run_at)
        .bind(error)
        .bind(&at)
        .bind(id.to_string())
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated == 1)
    }

    async fn release_jobs(&self, owner: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let released = sqlx::query(
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, \
             attempts = MAX(attempts - 1, 0), updated_at = ? \
             WHERE state = 'leased' AND lease_owner = ?",
        )
        .bind(ts(now()))
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(released)
    }

    async fn prune_done_jobs(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let pruned = sqlx::query("DELETE FROM jobs WHERE state = 'done' AND updated_at < ?")
            .bind(ts(before))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    async fn job_counts(&self) -> Result<JobCounts, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
                .fetch_all(&self.reader)
                .await?;
        let mut counts = JobCounts::default();
        for (state, n) in rows {
            match state.as_str() {
                "queued" => counts.queued = n,
                "leased" => counts.leased = n,
                "done" => counts.done = n,
                "dead" => counts.dead = n,
                other => return Err(StoreError::Corrupt(format!("bad job state {other:?}"))),
            }
        }
        Ok(counts)
    }
}
