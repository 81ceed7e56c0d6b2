//! Notes between replicas through PostgreSQL's LISTEN/NOTIFY: the change
//! feed of the workbench (so an agent on replica A sees what replica B
//! stored) and "a job was queued" (so an idle worker on any replica leases
//! it at once instead of at its next poll). A note carries ids only; a
//! missed one costs a page a reload or a worker its poll interval, never
//! data, so delivery is best effort and polling stays.

use std::sync::Arc;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{broadcast, Notify};

use crate::domain::{ConversationId, ShopId, TenantId};
use crate::store::{Change, ChangeFeed, ChangeKind};

/// The channel of conversation changes.
pub(super) const CHANGES: &str = "kedai_changes";
/// The channel of queued jobs; `pg_notify` in the inserting transaction
/// sends it at commit.
pub(super) const JOBS: &str = "kedai_jobs";

/// Notes a subscriber may fall behind by before it is told it lagged.
const FEED_CAPACITY: usize = 1024;

/// The change feed of every replica of one database.
#[derive(Debug, Clone)]
pub struct DatabaseFeed {
    pool: PgPool,
    sender: broadcast::Sender<Change>,
    /// Signalled when any replica queued a job.
    jobs: Arc<Notify>,
}

impl DatabaseFeed {
    pub(super) fn new(pool: PgPool) -> DatabaseFeed {
        DatabaseFeed {
            pool,
            sender: broadcast::channel(FEED_CAPACITY).0,
            jobs: Arc::new(Notify::new()),
        }
    }

    /// Signalled whenever a job is queued by any replica.
    pub fn jobs_queued(&self) -> Arc<Notify> {
        self.jobs.clone()
    }

    /// Listens until the process ends, reconnecting when the connection
    /// drops (sqlx's listener re-subscribes; notes sent meanwhile are lost,
    /// which polling covers).
    pub(super) fn spawn_listener(&self) {
        let feed = self.clone();
        tokio::spawn(async move {
            loop {
                match feed.listen().await {
                    Ok(()) => return,
                    Err(err) => {
                        tracing::warn!(error = %err, "database notifications interrupted; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    async fn listen(&self) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all([CHANGES, JOBS]).await?;
        loop {
            let note = listener.recv().await?;
            match note.channel() {
                JOBS => self.jobs.notify_one(),
                _ => match parse_change(note.payload()) {
                    Some(change) => {
                        let _ = self.sender.send(change);
                    }
                    None => tracing::warn!(payload = note.payload(), "unreadable change note"),
                },
            }
        }
    }
}

impl ChangeFeed for DatabaseFeed {
    fn publish(&self, change: Change) {
        let pool = self.pool.clone();
        let payload = format_change(&change);
        // Called after the commit; sending must not hold the writer up.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANGES)
                    .bind(payload)
                    .execute(&pool)
                    .await
                {
                    tracing::debug!(error = %err, "change note not sent");
                }
            });
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }
}

fn format_change(change: &Change) -> String {
    format!(
        "{} {} {} {}",
        change.tenant,
        change.conversation,
        change
            .shop
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into()),
        change.kind.as_str()
    )
}

fn parse_change(payload: &str) -> Option<Change> {
    let mut parts = payload.split(' ');
    let tenant: TenantId = parts.next()?.parse().ok()?;
    let conversation: ConversationId = parts.next()?.parse().ok()?;
    let shop = match parts.next()? {
        "-" => None,
        raw => Some(raw.parse::<ShopId>().ok()?),
    };
    let kind = match parts.next()? {
        "message" => ChangeKind::Message,
        "decision" => ChangeKind::Decision,
        "reply" => ChangeKind::Reply,
        "state" => ChangeKind::State,
        "delivery" => ChangeKind::Delivery,
        _ => return None,
    };
    Some(Change {
        tenant,
        conversation,
        shop,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_note_reads_back_as_the_change_it_was() {
        for shop in [None, Some(ShopId::new())] {
            for kind in [
                ChangeKind::Message,
                ChangeKind::Decision,
                ChangeKind::Reply,
                ChangeKind::State,
                ChangeKind::Delivery,
            ] {
                let change = Change {
                    tenant: TenantId::new(),
                    conversation: ConversationId::new(),
                    shop,
                    kind,
                };
                assert_eq!(parse_change(&format_change(&change)), Some(change));
            }
        }
        assert_eq!(parse_change("not a note"), None);
    }
}
