//! The web-chat widget as a channel: a reply "sent" to a visitor is a
//! notice on an in-process hub that wakes the visitor's event stream, which
//! then reads the new messages from the store (the store is the truth, so a
//! visitor who was away gets them on reconnecting).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use super::adapter::{
    ChannelAdapter, ChannelMessage, FetchedOrder, Push, Recipient, RemoteThread, SendError,
};
use super::signature::PushSigner;
use super::ChannelError;
use crate::domain::{Platform, ShopId};

/// Something new for a visitor of a shop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WidgetNotice {
    pub shop: ShopId,
    pub visitor: String,
}

/// Wakes visitors' event streams. A slow stream that misses notices
/// re-reads the store, so the channel can be small.
#[derive(Debug, Clone)]
pub struct WidgetHub {
    sender: broadcast::Sender<WidgetNotice>,
}

impl Default for WidgetHub {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(1024);
        WidgetHub { sender }
    }
}

impl WidgetHub {
    pub fn notify(&self, shop: ShopId, visitor: &str) {
        // No subscriber means no visitor is connected: nothing to wake.
        let _ = self.sender.send(WidgetNotice {
            shop,
            visitor: visitor.to_owned(),
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<WidgetNotice> {
        self.sender.subscribe()
    }
}

pub struct Web {
    pub shop: ShopId,
    pub hub: WidgetHub,
}

#[async_trait]
impl ChannelAdapter for Web {
    fn platform(&self) -> Platform {
        Platform::Web
    }

    fn push_signer(&self) -> Option<PushSigner> {
        None
    }

    fn parse_push(&self, _body: &[u8]) -> Result<Push, ChannelError> {
        Err(ChannelError::MalformedPush(
            "the web widget posts to its own endpoints, not to a webhook".into(),
        ))
    }

    async fn send_text(
        &self,
        to: Recipient<'_>,
        _text: &str,
        idempotency_key: &str,
    ) -> Result<String, SendError> {
        self.hub.notify(self.shop, to.buyer);
        Ok(format!("web:{idempotency_key}"))
    }

    async fn list_threads(&self, _since: DateTime<Utc>) -> Result<Vec<RemoteThread>, ChannelError> {
        Ok(Vec::new())
    }

    async fn list_messages(
        &self,
        _thread: &RemoteThread,
        _since: DateTime<Utc>,
    ) -> Result<Vec<ChannelMessage>, ChannelError> {
        Ok(Vec::new())
    }

    async fn fetch_order(&self, _order_id: &str) -> Result<Option<FetchedOrder>, ChannelError> {
        Ok(None)
    }
}
