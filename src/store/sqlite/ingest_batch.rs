//! Group commit for ingest: buyer messages that arrive while the write
//! connection is busy are stored together in one transaction, so a burst
//! of webhooks waits for one fsync instead of one each.
//!
//! Measured reason for hand-writing this (SQLite has no group commit of
//! its own): a commit with `durability = "full"` costs about 2 ms of fsync
//! on a small server's disk, and at 200 webhooks a second those fsyncs alone
//! kept the one write connection busy 40% of the time, which is what the
//! acknowledgements queued behind. Each message runs inside a savepoint, so
//! one that fails (a constraint, bad data) is rolled back alone and gets
//! its own error while the others commit; a failed commit fails them all,
//! and none of them was acknowledged. Nothing waits to fill a batch: the
//! first request starts a transaction at once with whatever else has
//! queued up meanwhile.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::conversations::ingest_in;
use super::*;

/// The most messages one transaction stores.
const MAX_BATCH: usize = 64;
/// Requests that may wait for the batcher; a full queue makes callers wait.
const QUEUE_DEPTH: usize = 1024;

struct Request {
    shop: Shop,
    message: InboundMessage,
    max_attempts: u32,
    reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

/// The sending side, held by the store; the batcher task ends when the
/// last store clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct IngestQueue {
    requests: mpsc::Sender<Request>,
}

impl IngestQueue {
    pub(super) fn start(writer: SqlitePool, changes: Arc<InProcessFeed>) -> IngestQueue {
        let (requests, receiver) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(batcher(receiver, writer, changes));
        IngestQueue { requests }
    }

    pub(super) async fn ingest(
        &self,
        shop: Shop,
        message: InboundMessage,
        max_attempts: u32,
    ) -> Result<IngestOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            shop,
            message,
            max_attempts,
            reply,
        };
        let stopped = || StoreError::Busy("the store is shutting down".into());
        self.requests.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn batcher(
    mut receiver: mpsc::Receiver<Request>,
    writer: SqlitePool,
    changes: Arc<InProcessFeed>,
) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let outcomes = store_batch(&writer, &batch).await;
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            if let Ok(stored) = &outcome {
                if !stored.duplicate {
                    changes.publish(Change {
                        tenant: request.shop.tenant_id,
                        conversation: stored.conversation_id,
                        shop: Some(request.shop.id),
                        kind: ChangeKind::Message,
                    });
                }
            }
            // A caller that went away (its request timed out) still had
            // its message stored; the platform's redelivery is a duplicate.
            let _ = request.reply.send(outcome);
        }
    }
}

/// Stores the batch in one transaction; one outcome per request, in order.
async fn store_batch(
    writer: &SqlitePool,
    batch: &[Request],
) -> Vec<Result<IngestOutcome, StoreError>> {
    let everyone = |err: &StoreError| -> Vec<Result<IngestOutcome, StoreError>> {
        batch.iter().map(|_| Err(copy_error(err))).collect()
    };
    let mut tx = match writer.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(err) => return everyone(&err.into()),
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        match one(&mut tx, request).await {
            Ok(outcome) => outcomes.push(outcome),
            // The savepoint could not be opened or rolled back: the
            // transaction is in an unknown state, so none of it commits.
            Err(err) => return everyone(&err),
        }
    }
    match tx.commit().await {
        Ok(()) => outcomes,
        Err(err) => everyone(&err.into()),
    }
}

/// One message inside its own savepoint, rolled back alone when it fails:
/// the inner result is the message's; the outer error is the
/// transaction's.
async fn one(
    tx: &mut Transaction<'static, Sqlite>,
    request: &Request,
) -> Result<Result<IngestOutcome, StoreError>, StoreError> {
    sqlx::query("SAVEPOINT ingest").execute(&mut **tx).await?;
    let outcome = ingest_in(tx, &request.shop, &request.message, request.max_attempts).await;
    if outcome.is_err() {
        sqlx::query("ROLLBACK TO ingest").execute(&mut **tx).await?;
    }
    sqlx::query("RELEASE ingest").execute(&mut **tx).await?;
    Ok(outcome)
}

/// The same error for every request of a failed batch (`sqlx::Error` is
/// not `Clone`): busy stays busy, so callers still retry.
fn copy_error(err: &StoreError) -> StoreError {
    match err {
        StoreError::Busy(message) => StoreError::Busy(message.clone()),
        other => StoreError::Busy(format!("the batch could not be stored: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{inbound, open, tenant_with_shop};
    use super::*;

    async fn count(store: &SqliteStore, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&store.reader)
            .await
            .unwrap()
    }

    /// Hundreds of concurrent ingests, each message delivered three times:
    /// batched together, every message is stored once with one job, and
    /// every caller learns its own outcome.
    #[tokio::test]
    async fn concurrent_ingests_commit_together_and_each_message_is_stored_once() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "acme").await;
        let mut calls = Vec::new();
        for n in 0..200 {
            for _ in 0..3 {
                let (store, shop) = (store.clone(), shop.clone());
                calls.push(tokio::spawn(async move {
                    let message = inbound(&format!("m-{n}"), &format!("buyer-{}", n % 20));
                    store.ingest(&shop, &message, 5).await.unwrap()
                }));
            }
        }
        let mut fresh = std::collections::HashMap::new();
        for call in calls {
            let outcome = call.await.unwrap();
            if !outcome.duplicate {
                assert!(
                    fresh
                        .insert(outcome.message_id, outcome.conversation_id)
                        .is_none(),
                    "one caller per message is told it is new"
                );
            }
        }
        assert_eq!(fresh.len(), 200);
        assert_eq!(count(&store, "messages").await, 200);
        assert_eq!(count(&store, "jobs").await, 200);
        assert_eq!(count(&store, "conversations").await, 20);
    }

    /// A message that cannot be stored (its shop does not exist) fails
    /// alone; the messages committed with it are stored.
    #[tokio::test]
    async fn a_failing_message_is_rolled_back_alone() {
        let (store, _dir) = open().await;
        let shop = tenant_with_shop(&store, "acme").await;
        let mut ghost = shop.clone();
        ghost.id = crate::domain::ShopId::new();
        let batch: Vec<Request> = [(&shop, "m-1"), (&ghost, "m-2"), (&shop, "m-3")]
            .into_iter()
            .map(|(shop, id)| Request {
                shop: shop.clone(),
                message: inbound(id, "buyer-1"),
                max_attempts: 5,
                reply: oneshot::channel().0,
            })
            .collect();
        let outcomes = store_batch(&store.writer, &batch).await;
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(outcomes[1].is_err(), "{outcomes:?}");
        assert_eq!(count(&store, "messages").await, 2);
        assert_eq!(count(&store, "jobs").await, 2);
    }
}
