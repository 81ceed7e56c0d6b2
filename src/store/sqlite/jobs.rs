//! The durable job queue's table: leasing (one job per conversation at a
//! time, a conversation's buyer messages in order), lease renewal,
//! completion, retries, the give-up hook's bookkeeping and the dead-letter
//! state. SQLite implementation of [`JobStore`].
//!
//! A lease finds one due job at a time (`next_due`: a few index walks in
//! `run_at` order that stop at the first eligible job, so its cost does not
//! grow with the backlog) and takes it with one `UPDATE`, all inside a
//! `BEGIN IMMEDIATE` transaction, so SQLite's single writer makes it
//! atomic. The partial unique index `jobs_one_leased_per_conversation`
//! (migration 0006) guarantees the one-per-conversation rule whatever the
//! statements do. On PostgreSQL the same statements work with `FOR UPDATE
//! SKIP LOCKED` on the search; two replicas leasing jobs of one
//! conversation at once then meet the unique index, and the loser's
//! `UPDATE` fails with a unique violation, which must be read as "nothing
//! leased this round".

use super::*;

/// Queues a job about `message_id`, due at once. The job takes the
/// message's conversation and its place in it (the platform's `sent_at`,
/// then arrival order) from the message row.
pub(super) async fn insert_job(
    tx: &mut Transaction<'static, Sqlite>,
    tenant: TenantId,
    kind: &str,
    message_id: MessageId,
    max_attempts: u32,
    at: &str,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, tenant_id, kind, payload, state, max_attempts, run_at, \
         created_at, updated_at, conversation_id, order_at, order_seq, traceparent, lane) \
         SELECT ?, ?, ?, ?, 'queued', ?, ?, ?, ?, m.conversation_id, m.sent_at, m.seq, ?, ? \
         FROM messages m WHERE m.id = ? AND m.tenant_id = ?",
    )
    .bind(JobId::new().to_string())
    .bind(tenant.to_string())
    .bind(kind)
    .bind(serde_json::json!({ "message_id": message_id }).to_string())
    .bind(max_attempts)
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
    tx: &mut Transaction<'static, Sqlite>,
    at: DateTime<Utc>,
    kinds: Option<&str>,
    lane: Option<&str>,
) -> Result<Option<String>, StoreError> {
    for (kind, due) in SEARCHES {
        let id: Option<String> = sqlx::query_scalar(&due_search(kind, due))
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
    reader: &SqlitePool,
    at: DateTime<Utc>,
    kinds: Option<&str>,
    lane: Option<&str>,
) -> Result<bool, StoreError> {
    for (kind, due) in SEARCHES {
        let id: Option<String> = sqlx::query_scalar(&due_search(kind, due))
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
               AND (?3 IS NULL OR j.kind IN (SELECT value FROM json_each(?3))) \
               AND NOT EXISTS (SELECT 1 FROM jobs o \
                               WHERE o.conversation_id = j.conversation_id \
                                 AND o.state = 'leased' AND o.id != j.id) \
               AND (j.kind != ?1 OR NOT EXISTS ( \
                      SELECT 1 FROM jobs e \
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
impl JobStore for SqliteStore {
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
        let mut tx = self.begin_write().await?;
        let mut leased = Vec::new();
        // One job per statement: each sees the leases taken before it in
        // this transaction, so two jobs of one conversation are never taken.
        while leased.len() < request.limit as usize {
            let Some(id) = next_due(&mut tx, at, kinds.as_deref(), lane).await? else {
                break;
            };
            // A lease that ends before `at` (only ever asked for by tests)
            // would find its own job due again.
            if leased.iter().any(|job: &Job| job.id.to_string() == id) {
                break;
            }
            let row: JobRow = sqlx::query_as(
                "UPDATE jobs SET state = 'leased', lease_owner = ?, lease_until = ?, \
                   attempts = attempts + 1, updated_at = ?, \
                   give_up = CASE WHEN give_up IS NULL AND state = 'leased' \
                                  AND attempts >= max_attempts THEN 'lease_expired' ELSE give_up END, \
                   last_error = CASE WHEN give_up IS NULL AND state = 'leased' \
                                     AND attempts >= max_attempts THEN ? ELSE last_error END \
                 WHERE id = ? \
                 RETURNING id, tenant_id, kind, payload, attempts, max_attempts, conversation_id, \
                   created_at, give_up, last_error, lane, traceparent",
            )
            .bind(request.owner)
            .bind(ts(later(at, request.lease)))
            .bind(ts(at))
            .bind(LEASE_EXPIRED)
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            leased.push(Job::try_from(row)?);
        }
        tx.commit().await?;
        Ok(leased)
    }

    async fn renew_lease(
        &self,
        id: JobId,
        owner: &str,
        lease: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self.begin_write().await?;
        let renewed = sqlx::query(
            "UPDATE jobs SET lease_until = ?, updated_at = ? \
             WHERE id = ? AND state = 'leased' AND lease_owner = ?",
        )
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
        let (state, run_at, give_up) = match failure {
            JobFailure::RetryAt(when) => ("queued", ts(when), None),
            JobFailure::GiveUpAt { cause, at: when } => ("queued", ts(when), Some(cause.as_str())),
            JobFailure::Dead => ("dead", at.clone(), None),
        };
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE jobs SET state = ?, run_at = ?, last_error = ?, lease_owner = NULL, \
             lease_until = NULL, give_up = COALESCE(?, give_up), updated_at = ? \
             WHERE id = ? AND state = 'leased' AND lease_owner = ?",
        )
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

    async fn move_to_lane(
        &self,
        id: JobId,
        owner: &str,
        lane: JobLane,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE jobs SET state = 'queued', lane = ?, lease_owner = NULL, lease_until = NULL, \
             attempts = MAX(attempts - 1, 0), updated_at = ? \
             WHERE id = ? AND state = 'leased' AND lease_owner = ?",
        )
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

#[cfg(test)]
mod tests {
    use super::super::testkit::{inbound, open, tenant_with_shop};
    use super::*;

    fn lease(owner: &str, limit: u32) -> LeaseRequest<'_> {
        LeaseRequest {
            owner,
            limit,
            lease: chrono::Duration::seconds(30),
            kinds: None,
            lane: None,
        }
    }

    fn message_of(job: &Job) -> String {
        job.payload["message_id"].as_str().unwrap().to_owned()
    }

    /// A buyer message the platform says was sent `minutes_ago`.
    fn sent(external_id: &str, buyer: &str, minutes_ago: i64) -> InboundMessage {
        let mut message = inbound(external_id, buyer);
        message.sent_at = Utc::now() - chrono::Duration::minutes(minutes_ago);
        message
    }

    #[tokio::test]
    async fn m3_one_job_per_conversation_at_a_time_and_its_messages_in_sent_order() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        // Arrival order differs from the platform's: m-late was sent first.
        let m1 = store
            .ingest(&shop, &sent("m-1", "ana", 5), 3)
            .await
            .unwrap();
        let early = store
            .ingest(&shop, &sent("m-early", "ana", 9), 3)
            .await
            .unwrap();
        let m3 = store
            .ingest(&shop, &sent("m-3", "ana", 1), 3)
            .await
            .unwrap();
        let other = store
            .ingest(&shop, &sent("o-1", "ben", 1), 3)
            .await
            .unwrap();
        assert_eq!(m1.conversation_id, early.conversation_id);

        let first = store.lease_jobs(lease("w1", 10)).await.unwrap();
        let leased: Vec<String> = first.iter().map(message_of).collect();
        assert_eq!(first.len(), 2, "one per conversation: {leased:?}");
        assert!(
            leased.contains(&early.message_id.to_string()),
            "sent first, runs first"
        );
        assert!(leased.contains(&other.message_id.to_string()));
        assert!(
            store.lease_jobs(lease("w2", 10)).await.unwrap().is_empty(),
            "both conversations have a job in hand"
        );

        let ana = first
            .iter()
            .find(|j| j.conversation_id == Some(m1.conversation_id))
            .unwrap();
        assert!(store.complete_job(ana.id, "w1").await.unwrap());
        let next = store.lease_jobs(lease("w2", 10)).await.unwrap();
        assert_eq!(
            next.iter().map(message_of).collect::<Vec<_>>(),
            [m1.message_id.to_string()]
        );

        // The next message waits while the one before it is in backoff.
        let later = Utc::now() + chrono::Duration::minutes(10);
        store
            .fail_job(next[0].id, "w2", "model busy", JobFailure::RetryAt(later))
            .await
            .unwrap();
        assert!(
            store.lease_jobs(lease("w3", 10)).await.unwrap().is_empty(),
            "m-3 waits for m-1: {m3:?}"
        );
    }

    #[tokio::test]
    async fn a_message_moved_to_the_draft_lane_keeps_its_place_and_its_attempt() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        let m1 = store
            .ingest(&shop, &sent("m-1", "ana", 3), 3)
            .await
            .unwrap();
        let m2 = store
            .ingest(&shop, &sent("m-2", "ana", 2), 3)
            .await
            .unwrap();
        let m3 = store
            .ingest(&shop, &sent("m-3", "ben", 1), 3)
            .await
            .unwrap();
        let lane = |owner, lane| LeaseRequest {
            lane: Some(lane),
            ..lease(owner, 1)
        };
        let first = store.lease_jobs(lane("fast", JobLane::Fast)).await.unwrap();
        assert_eq!(message_of(&first[0]), m1.message_id.to_string());
        assert_eq!(first[0].lane, JobLane::Fast);
        assert!(!store
            .move_to_lane(first[0].id, "someone-else", JobLane::Draft)
            .await
            .unwrap());
        assert!(store
            .move_to_lane(first[0].id, "fast", JobLane::Draft)
            .await
            .unwrap());

        // The fast lane goes on with other conversations; ana's next
        // message waits for the one before it, in the draft lane.
        let next = store.lease_jobs(lane("fast", JobLane::Fast)).await.unwrap();
        assert_eq!(
            next.iter().map(message_of).collect::<Vec<_>>(),
            [m3.message_id.to_string()]
        );
        assert!(store
            .lease_jobs(lane("fast2", JobLane::Fast))
            .await
            .unwrap()
            .is_empty());

        let drafted = store
            .lease_jobs(lane("draft", JobLane::Draft))
            .await
            .unwrap();
        assert_eq!(message_of(&drafted[0]), m1.message_id.to_string());
        assert_eq!(drafted[0].lane, JobLane::Draft);
        assert_eq!(drafted[0].attempts, 1, "the move did not count an attempt");
        assert!(store.complete_job(drafted[0].id, "draft").await.unwrap());
        let last = store.lease_jobs(lane("fast", JobLane::Fast)).await.unwrap();
        assert_eq!(message_of(&last[0]), m2.message_id.to_string());
    }

    #[tokio::test]
    async fn m3_the_database_refuses_two_leased_jobs_of_one_conversation() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        for id in ["m-1", "m-2"] {
            store.ingest(&shop, &inbound(id, "ana"), 3).await.unwrap();
        }
        let forced = sqlx::query("UPDATE jobs SET state = 'leased', lease_owner = 'x'")
            .execute(&store.writer)
            .await;
        assert!(forced.is_err(), "the unique index holds");
    }

    #[tokio::test]
    async fn follow_ups_wait_for_the_conversations_job_in_hand_and_buyers_go_first() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        let first = store
            .ingest(&shop, &inbound("m-1", "ana"), 3)
            .await
            .unwrap();
        let job = store.lease_jobs(lease("w", 1)).await.unwrap().remove(0);
        let decision = NewDecision {
            conversation: first.conversation_id,
            message: first.message_id,
            layer: Layer::try_from(3).unwrap(),
            action: crate::domain::Action::Handoff,
            language: None,
            translation: None,
            reply: None,
            draft: None,
            status: ConversationStatus::Pending,
            trace: serde_json::json!({}),
            follow_up: true,
        };
        store
            .record_decision(shop.tenant_id, &decision)
            .await
            .unwrap();
        assert!(
            store.lease_jobs(lease("w2", 10)).await.unwrap().is_empty(),
            "the follow-up waits for the job in hand"
        );
        store.complete_job(job.id, "w").await.unwrap();
        let second = store
            .ingest(&shop, &inbound("m-2", "ana"), 3)
            .await
            .unwrap();
        let next = store.lease_jobs(lease("w2", 10)).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(
            next[0].kind, JOB_INBOUND_MESSAGE,
            "the buyer's new message first"
        );
        assert_eq!(message_of(&next[0]), second.message_id.to_string());
        store.complete_job(next[0].id, "w2").await.unwrap();
        let follow_up = store.lease_jobs(lease("w3", 10)).await.unwrap();
        assert_eq!(follow_up[0].kind, JOB_ENRICH_DECISION);
        assert_eq!(follow_up[0].conversation_id, Some(first.conversation_id));
        assert_eq!(
            follow_up[0].lane,
            JobLane::Draft,
            "a follow-up runs the chat model: it waits in the draft lane"
        );
    }

    #[tokio::test]
    async fn m2_a_renewed_lease_holds_and_a_lost_one_says_so() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        store
            .ingest(&shop, &inbound("m-1", "ana"), 3)
            .await
            .unwrap();
        let short = LeaseRequest {
            lease: chrono::Duration::milliseconds(-1),
            ..lease("slow", 1)
        };
        let job = store.lease_jobs(short).await.unwrap().remove(0);
        assert!(
            store
                .renew_lease(job.id, "slow", chrono::Duration::seconds(30))
                .await
                .unwrap(),
            "its owner may renew it"
        );
        assert!(
            store
                .lease_jobs(lease("other", 1))
                .await
                .unwrap()
                .is_empty(),
            "a renewed lease is not up for grabs"
        );
        // It runs out again and another worker takes the job over.
        store
            .renew_lease(job.id, "slow", chrono::Duration::milliseconds(-1))
            .await
            .unwrap();
        let taken = store.lease_jobs(lease("other", 1)).await.unwrap();
        assert_eq!(taken[0].id, job.id);
        assert!(
            !store
                .renew_lease(job.id, "slow", chrono::Duration::seconds(30))
                .await
                .unwrap(),
            "the first owner learns it lost the job"
        );
        assert!(!store.complete_job(job.id, "slow").await.unwrap());
        // A lease as long as chrono allows does not overflow.
        assert!(store
            .renew_lease(job.id, "other", chrono::Duration::MAX)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn m2_a_job_whose_last_lease_runs_out_comes_back_to_be_given_up() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        store
            .ingest(&shop, &inbound("m-1", "ana"), 1)
            .await
            .unwrap();
        let expired = LeaseRequest {
            lease: chrono::Duration::milliseconds(-1),
            ..lease("killed", 10)
        };
        let job = store.lease_jobs(expired).await.unwrap().remove(0);
        assert!(job.give_up.is_none(), "the first and last attempt");
        let again = store.lease_jobs(lease("next", 10)).await.unwrap().remove(0);
        assert_eq!(again.id, job.id);
        let why = again.give_up.expect("given up, not dead");
        assert_eq!(why.cause, GiveUpCause::LeaseExpired);
        assert!(why.detail.contains("lease ran out"), "{}", why.detail);
        assert!(store
            .fail_job(again.id, "next", &why.detail, JobFailure::Dead)
            .await
            .unwrap());
        let counts = store.job_counts().await.unwrap();
        assert_eq!((counts.dead, counts.leased, counts.queued), (1, 0, 0));
    }

    #[tokio::test]
    async fn a_give_up_hook_that_must_run_again_keeps_its_cause() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "t").await;
        store
            .ingest(&shop, &inbound("m-1", "ana"), 5)
            .await
            .unwrap();
        let job = store.lease_jobs(lease("w", 1)).await.unwrap().remove(0);
        let failure = JobFailure::GiveUpAt {
            cause: GiveUpCause::TooOld,
            at: Utc::now() - chrono::Duration::seconds(1),
        };
        store
            .fail_job(job.id, "w", "waited 2 h", failure)
            .await
            .unwrap();
        let again = store.lease_jobs(lease("w", 1)).await.unwrap().remove(0);
        assert_eq!(
            again.give_up,
            Some(GiveUp {
                cause: GiveUpCause::TooOld,
                detail: "waited 2 h".into()
            })
        );
        assert_eq!(again.attempts, 2);
    }
}
