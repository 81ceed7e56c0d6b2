//! What the channels add to processing an inbound message, around the
//! reply pipeline (the queue's handler):
//! - a non-text message (image, sticker, product or order card, ...) is
//!   handed to a human as a layer-3 decision, never guessed at;
//! - for a marketplace message naming orders, those orders are fetched
//!   from the platform first (when not stored or stale), so the pipeline's
//!   order answers read current data.
//!
//! Everything else goes to the wrapped handler unchanged.

use std::sync::Arc;

use async_trait::async_trait;

use super::{orders, Channels};
use crate::domain::{Action, ConversationStatus, Layer, MessageId, MessageKind};
use crate::queue::{Handled, JobError, JobHandler};
use crate::store::{GiveUp, Job, NewDecision, JOB_INBOUND_MESSAGE};

pub struct ChannelJobs {
    pub inner: Arc<dyn JobHandler>,
    pub channels: Arc<Channels>,
}

fn message_of(job: &Job) -> Option<MessageId> {
    job.payload
        .get("message_id")
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse().ok())
}

#[async_trait]
impl JobHandler for ChannelJobs {
    async fn handle(&self, job: &Job) -> Result<Handled, JobError> {
        if job.kind != JOB_INBOUND_MESSAGE {
            return self.inner.handle(job).await;
        }
        let Some(message) = message_of(job) else {
            return self.inner.handle(job).await;
        };
        let Some(facts) = self.channels.store.message_facts(message).await? else {
            return self.inner.handle(job).await;
        };
        // Orders the message names (an order card too) are fetched first,
        // for the pipeline's answer or the human's context.
        orders::ensure_for_message(&self.channels, &facts).await;
        if facts.kind != MessageKind::Text {
            let trace = serde_json::json!({
                "layer": 3,
                "action": "handoff",
                "reasons": [{"reason": "non_text_message", "kind": facts.kind}],
                "kind": facts.kind,
            });
            self.channels
                .store
                .record_decision(
                    facts.tenant_id,
                    &NewDecision {
                        conversation: facts.conversation_id,
                        message,
                        layer: Layer::try_from(3).expect("3 is a layer"),
                        action: Action::Handoff,
                        language: None,
                        translation: None,
                        reply: None,
                        draft: None,
                        status: ConversationStatus::Pending,
                        trace,
                        follow_up: false,
                    },
                )
                .await?;
            return Ok(Handled::Done);
        }
        self.inner.handle(job).await
    }

    async fn give_up(&self, job: &Job, why: &GiveUp) -> Result<(), JobError> {
        self.inner.give_up(job, why).await
    }
}
