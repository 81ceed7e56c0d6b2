//! The change feed: a note, after each commit, that a conversation
//! changed, so open workbench pages can refresh without polling.
//!
//! Behind [`ChangeFeed`] so that the transport can change: in one process
//! a broadcast channel is enough; several replicas on PostgreSQL will fan
//! the same notes out through the database (LISTEN/NOTIFY). A note carries
//! ids only, never text: readers fetch what they may see through the store.
//! A slow reader may miss notes (it is told it lagged and reloads).

use tokio::sync::broadcast;

use crate::domain::{ConversationId, ShopId, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A buyer message arrived.
    Message,
    /// The pipeline decided on a message, or a follow-up enriched it.
    Decision,
    /// A reply or note was added.
    Reply,
    /// Status, holder or assignment changed.
    State,
    /// A reply reached the platform, or an attempt to send it failed.
    Delivery,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Message => "message",
            ChangeKind::Decision => "decision",
            ChangeKind::Reply => "reply",
            ChangeKind::State => "state",
            ChangeKind::Delivery => "delivery",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub tenant: TenantId,
    pub conversation: ConversationId,
    /// The conversation's shop when the writer knew it without a query.
    pub shop: Option<ShopId>,
    pub kind: ChangeKind,
}

pub trait ChangeFeed: Send + Sync + 'static {
    /// Announces a committed change; never blocks and never fails the
    /// write (nobody listening is fine).
    fn publish(&self, change: Change);

    fn subscribe(&self) -> broadcast::Receiver<Change>;
}

/// The feed of one process.
#[derive(Debug, Clone)]
pub struct InProcessFeed {
    sender: broadcast::Sender<Change>,
}

/// Notes a subscriber may fall behind by before it is told it lagged.
const FEED_CAPACITY: usize = 1024;

impl Default for InProcessFeed {
    fn default() -> Self {
        InProcessFeed {
            sender: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl ChangeFeed for InProcessFeed {
    fn publish(&self, change: Change) {
        // An error only means that no page is open.
        let _ = self.sender.send(change);
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_changes_published_after_they_subscribed() {
        let feed = InProcessFeed::default();
        let change = Change {
            tenant: TenantId::new(),
            conversation: ConversationId::new(),
            shop: None,
            kind: ChangeKind::Reply,
        };
        feed.publish(change);
        let mut rx = feed.subscribe();
        feed.publish(change);
        assert_eq!(rx.recv().await.unwrap(), change);
        assert!(rx.try_recv().is_err());
    }
}
