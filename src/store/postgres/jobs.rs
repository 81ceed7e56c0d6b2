//! The durable job queue's table: leasing (one job per conversation at a
//! time, a conversation's buyer messages in order), lease renewal,
//! completion, retries, the give-up hook's bookkeeping and the dead-letter
//! state. PostgreSQL implementation of [`JobStore`].
//!
//! A lease finds one due job at a time (`next_due`: a few index walks in
//! `run_at` order that stop at the first eligible job, so its cost does not
//! grow with the backlog) and takes it with one `UPDATE`, each job in a
//! transaction of its own. Unlike every other write here, leasing, renewal,
//! completion, failure and release do not take the global write lock: the
//! search locks the job it finds `FOR UPDATE SKIP LOCKED`, so workers of
//! every replica walk past each other's candidates instead of queueing
//! behind one lock, and the other statements touch one row each, matched
//! by id and lease owner. What the global lock used to guarantee, the
//! schema now does: two replicas leasing two jobs of one conversation at
//! once meet the partial unique index `jobs_one_leased_per_conversation`
//! (migration 0006), and the later `UPDATE` fails with a unique violation,
//! read as "nothing leased this round"; a buyer message whose earlier
//! sibling is being leased by another replica is still `queued` to this
//! one's search, so it waits its turn.

use super::*;

/// Queues a job about `message_id`, due at once. The job takes the
/// message's conversation and its place in it (the platform's `sent_at`,
/// then arrival order) from the message row.
pub(super) async fn insert_job(
    tx: &mut Transaction<'static, Postgres>,
    tenant: TenantId,
    kind: &str,
    message_id: MessageId,
    max_attempts: u32,
    at: &str,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(&pg(
        "INSERT INTO jobs (id, tenant_id, kind, payload, state, max_attempts, run_at, \
         created_at, updated_at, conversation_id, order_at, order_seq, traceparent, lane) \
         SELECT ?, ?, ?, ?, 'queued', ?, ?, ?, ?, m.conversation_id, m.sent_at, m.seq, ?, ? \
         FROM messages m WHERE m.id = ? AND m.tenant_id = ?",
    ))
    .bind(JobId::new().to_string())
    .bind(tenant.to_string())
    .bind(kind)
    .bind(serde_json::json!({ "message_id": message_id }).to_string())
    .bind(i64::from(max_attempts))
    .bind(at)
    .bind(at)
    .bind(at)
    .bind(crate::telemetry::current_traceparent())
    .bind(JobLane::for_new(kind).as_str())
    .bind(message_id.to_string())
    .bind(tenant.to_string())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted != 1 {
        return Err(StoreError::NotFound {
            what: format!("message {message_id}"),
        });
    }
    // Delivered to every replica's listener when the transaction commits.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(super::notify::JOBS)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `at + span`, or the end of time instead of overflowing.
fn later(at: DateTime<Utc>, span: chrono::Duration) -> DateTime<Utc> {
    at.checked_add_signed(span)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Where a due job is looked for, in order: buyer messages before
/// follow-ups, and for each, jobs whose lease ran out (a worker died
/// holding them) before queued ones.
const SEARCHES: [(&str, &str); 4] = [
    ("j.kind = ?1", "j.state = 'leased' AND j.lease_until <= ?2"),
    ("j.kind = ?1", "j.state = 'queued' AND j.run_at <= ?2"),
    ("j.kind != ?1", "j.state = 'leased' AND j.lease_until <= ?2"),
    ("j.kind != ?1", "j.state = 'queued' AND j.run_at <= ?2"),
];

/// The id of the next job to lease: due, of an allowed kind, of a
/// conversation with no other job leased, and for a buyer message, with no
/// earlier buyer message of its conversation still waiting. Each search
/// walks one index in `run_at` order and stops at the first such job.
async fn next_due(
    tx: &mut Transaction<'static, Postgres>,
    at: DateTime<Utc>,
    kinds: Option<&str>,
    lane: Option<&str>,
) -> Result<Option<String>, StoreError> {
    for (kind, due) in SEARCHES {
        let sql = pg(&format!(
            "{} FOR UPDATE OF j SKIP LOCKED",
            due_search(kind, due)
        ));
        let id: Option<String> = sqlx::query_scalar(&sql)
            .bind(JOB_INBOUND_MESSAGE)
            .bind(ts(at))
            .bind(kinds)
            .bind(lane)
            .fetch_optional(&mut **tx)
            .await?;
        if id.is_some() {
            return Ok(id);
        }
    }
    Ok(None)
}

/// Whether [`next_due`] would find a job, asked of a read connection.
/// Workers poll and wake far more often than jobs arrive; asking first
/// keeps an idle poll off the one write connection, where it would hold
/// up webhooks waiting to commit. A job committed after this read is
/// found by the wake-up its commit sends, or the next poll.
async fn any_due(
    reader: &PgPool,
    at: DateTime<Utc>,
    kinds: Option<&str>,
    lane: Option<&str>,
) -> Result<bool, StoreError> {
    for (kind, due) in SEARCHES {
        let sql = pg(&due_search(kind, due));
        let id: Option<String> = sqlx::query_scalar(&sql)
            .bind(JOB_INBOUND_MESSAGE)
            .bind(ts(at))
            .bind(kinds)
            .bind(lane)
            .fetch_optional(reader)
            .await?;
        if id.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn due_search(kind: &str, due: &str) -> String {
    format!(
        "SELECT j.id FROM jobs j \
             WHERE {kind} AND {due} \
               AND (?3 IS NULL OR j.kind IN (SELECT value FROM jsonb_array_elements_text(?3::jsonb))) \
               AND NOT EXISTS (SELECT 1::BIGINT FROM jobs o \
                               WHERE o.conversation_id = j.conversation_id \
                                 AND o.state = 'leased' AND o.id != j.id) \
               AND (j.kind != ?1 OR NOT EXISTS ( \
                      SELECT 1::BIGINT FROM jobs e \
                      WHERE e.conversation_id = j.conversation_id AND e.kind = ?1 \
                        AND e.state IN ('queued', 'leased') AND e.id != j.id \
                        AND (e.order_at < j.order_at \
                             OR (e.order_at = j.order_at AND e.order_seq < j.order_seq)))) \
               AND (CAST(?4 AS TEXT) IS NULL OR j.lane = ?4) \
             ORDER BY j.run_at LIMIT 1"
    )
}

/// What `last_error` says of a job whose last attempt never finished.
const LEASE_EXPIRED: &str =
    "its last attempt did not finish before its lease ran out (the process stopped or hung)";

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    tenant_id: Option<String>,
    kind: String,
    payload: String,
    attempts: i64,
    max_attempts: i64,
    conversation_id: Option<String>,
    created_at: String,
    give_up: Option<String>,
    last_error: Option<String>,
    traceparent: Option<String>,
    lane: String,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(row: JobRow) -> Result<Job, StoreError> {
        let give_up = row
            .give_up
            .as_deref()
            .map(|cause| {
                Ok::<_, StoreError>(GiveUp {
                    cause: parse_enum(cause, "give-up cause")?,
                    detail: row.last_error.clone().unwrap_or_default(),
                })
            })
            .transpose()?;
        Ok(Job {
            id: parse_id(&row.id, "job")?,
            tenant_id: row
                .tenant_id
                .as_deref()
                .map(|t| parse_id(t, "tenant"))
                .transpose()?,
            kind: row.kind,
            payload: serde_json::from_str(&row.payload)
                .map_err(|e| StoreError::Corrupt(format!("job payload: {e}")))?,
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            max_attempts: u32::try_from(row.max_attempts).unwrap_or(u32::MAX),
            conversation_id: row
                .conversation_id
                .as_deref()
                .map(|c| parse_id(c, "conversation"))
                .transpose()?,
            created_at: parse_ts(&row.created_at)?,
            give_up,
            traceparent: row.traceparent,
            lane: row.lane.parse()?,
        })
    }
}

#[async_trait]
impl JobStore for PostgresStore {
    async fn lease_jobs(&self, request: LeaseRequest<'_>) -> Result<Vec<Job>, StoreError> {
        let at = now();
        // Kinds go in as a JSON array, so the statements stay prepared
        // queries whatever their number.
        let kinds = request
            .kinds
            .map(|k| serde_json::to_string(k).unwrap_or_else(|_| "[]".into()));
        let lane = request.lane.map(JobLane::as_str);
        if !any_due(&self.reader, at, kinds.as_deref(), lane).await? {
            return Ok(Vec::new());
        }
        let mut leased = Vec::new();
        // One job per transaction, each found after the ones before were
        // committed, so two jobs of one conversation are never taken.
        while leased.len() < request.limit as usize {
            let mut tx = self.writer.begin().await?;
            let Some(id) = next_due(&mut tx, at, kinds.as_deref(), lane).await? else {
                break;
            };
            // A lease that ends before `at` (only ever asked for by tests)
            // would find its own job due again.
            if leased.iter().any(|job: &Job| job.id.to_string() == id) {
                break;
            }
            let taken = sqlx::query_as::<_, JobRow>(&pg("UPDATE jobs SET state = 'leased', lease_owner = ?, lease_until = ?, \
                   attempts = attempts + 1, updated_at = ?, \
                   give_up = CASE WHEN give_up IS NULL AND state = 'leased' \
                                  AND attempts >= max_attempts THEN 'lease_expired' ELSE give_up END, \
                   last_error = CASE WHEN give_up IS NULL AND state = 'leased' \
                                     AND attempts >= max_attempts THEN ? ELSE last_error END \
                 WHERE id = ? \
                 RETURNING id, tenant_id, kind, payload, attempts, max_attempts, conversation_id, \
                   created_at, give_up, last_error, lane, traceparent"),
            )
            .bind(request.owner)
            .bind(ts(later(at, request.lease)))
            .bind(ts(at))
            .bind(LEASE_EXPIRED)
            .bind(&id)
            .fetch_one(&mut *tx)
            .await;
            let row = match taken {
                Ok(row) => row,
                // Another replica leased a job of this conversation
                // meanwhile: nothing more this round.
                Err(err) if is_unique_violation(&err) => break,
                Err(err) => return Err(err.into()),
            };
            tx.commit().await?;
            leased.push(Job::try_from(row)?);
        }
        Ok(leased)
    }

    async fn renew_lease(
        &self,
        id: JobId,
        owner: &str,
        lease: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.writer.begin().await?;
        let renewed = sqlx::query(&pg("UPDATE jobs SET lease_until = ?, updated_at = ? \
             WHERE id = ? AND state = 'leased' AND lease_owner = ?"))
        .bind(ts(later(at, lease)))
        .bind(ts(at))
        .bind(id.to_string())
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(renewed == 1)
    }

    async fn complete_job(&self, id: JobId, owner: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(&pg("UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL, updated_at = ? \
             WHERE id = ? AND state = 'leased' AND lease_owner = ?"),
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
        let (state, run_at, give_up) = match failure {
            JobFailure::RetryAt(when) => ("queued", ts(when), None),
            JobFailure::GiveUpAt { cause, at: when } => ("queued", ts(when), Some(cause.as_str())),
            JobFailure::Dead => ("dead", at.clone(), None),
        };
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(&pg(
            "UPDATE jobs SET state = ?, run_at = ?, last_error = ?, lease_owner = NULL, \
             lease_until = NULL, give_up = COALESCE(?, give_up), updated_at = ? \
             WHERE id = ? AND state = 'leased' AND lease_owner = ?",
        ))
        .bind(state)
        .bind(run_at)
        .bind(error)
        .bind(give_up)
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
        let mut tx = self.writer.begin().await?;
        let released = sqlx::query(&pg(
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, \
             attempts = GREATEST(attempts - 1, 0), updated_at = ? \
             WHERE state = 'leased' AND lease_owner = ?",
        ))
        .bind(ts(now()))
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(released)
    }

    async fn move_to_lane(
        &self,
        id: JobId,
        owner: &str,
        lane: JobLane,
    ) -> Result<bool, StoreError> {
        // One row its owner holds, as `fail_job`: no global write lock.
        let mut tx = self.writer.begin().await?;
        let moved = sqlx::query(&pg(
            "UPDATE jobs SET state = 'queued', lane = ?, lease_owner = NULL, lease_until = NULL, \
             attempts = GREATEST(attempts - 1, 0), updated_at = ? \
             WHERE id = ? AND state = 'leased' AND lease_owner = ?",
        ))
        .bind(lane.as_str())
        .bind(ts(now()))
        .bind(id.to_string())
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(moved == 1)
    }

    async fn prune_done_jobs(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let pruned = sqlx::query(&pg(
            "DELETE FROM jobs WHERE state = 'done' AND updated_at < ?",
        ))
        .bind(ts(before))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    async fn job_counts(&self) -> Result<JobCounts, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as(&pg("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
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
