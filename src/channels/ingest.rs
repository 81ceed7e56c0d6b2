//! A platform's chat message into the store: recognised as kedai's own
//! reply coming back, or turned into a domain [`InboundMessage`] (buyer or
//! seller, text or attachment) and stored once through
//! `ConversationStore::ingest`, whether it came by push, reconciliation or
//! the lost-push list.

use std::sync::Arc;

use tracing::Instrument;

use super::adapter::ChannelMessage;
use super::{rules, ChannelError, Channels};
use crate::domain::{
    BuyerRef, ExternalMessageId, InboundMessage, MessageText, PlatformBuyerId, Sender,
};
use crate::metrics as m;
use crate::store::Shop;

/// What became of a channel message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// Stored before (a redelivery, a replay, a reconciled push).
    Duplicate,
    /// kedai's own reply, reported back by the platform.
    Own,
    /// Nothing to store: no text and no attachment.
    Empty,
}

/// Platform text as kedai stores it: control characters other than line
/// breaks and tabs dropped, cut to the configured length with an ellipsis
/// (a marketplace's own limits are what they are; kedai keeps what it
/// can rather than refusing a buyer's message).
fn platform_text(raw: &str, max_chars: usize) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.chars().count() <= max_chars {
        return cleaned.to_owned();
    }
    let mut cut: String = cleaned.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Whether a seller message is a part of one of kedai's replies whose send
/// outcome is not recorded yet; if so, records it as sent.
async fn claim_echo(
    channels: &Channels,
    shop: &Shop,
    message: &ChannelMessage,
    buyer: &PlatformBuyerId,
) -> Result<bool, ChannelError> {
    let Some(text) = message.text.as_deref() else {
        return Ok(false);
    };
    let max = channels
        .settings
        .platform(shop.platform)
        .map_or(usize::MAX, |p| p.max_text_chars);
    for reply in channels.store.in_flight_replies(shop.id, buyer).await? {
        let parts = rules::split(&reply.text, max);
        let next = parts.iter().enumerate().skip(reply.parts_sent as usize);
        if let Some((part, _)) = next.clone().find(|(_, p)| p.trim() == text.trim()) {
            channels
                .store
                .record_part_sent(&reply.outbox_id, part as u32, &message.id)
                .await?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Stores one message of `shop`. Idempotent: the platform's message id
/// identifies it.
pub async fn store(
    channels: &Arc<Channels>,
    shop: &Shop,
    message: &ChannelMessage,
) -> Result<Stored, ChannelError> {
    let from_seller = matches!(message.sender, Sender::Seller { .. });
    if !from_seller && channels.store.has_message(shop.id, &message.id).await? {
        return Ok(Stored::Duplicate);
    }
    let buyer = match &message.buyer {
        Some(buyer) => buyer.clone(),
        None => channels
            .store
            .thread_buyer(shop.id, &message.thread)
            .await?
            .ok_or_else(|| ChannelError::UnknownThread {
                thread: message.thread.clone(),
            })?,
    };
    let buyer = PlatformBuyerId::parse(&buyer)?;
    // Is it kedai's own reply coming back? A reply already recorded as
    // sent is recognised by its platform id. Otherwise it may be a part of
    // the conversation's reply in flight whose outcome is not recorded yet
    // (only that one reply is a candidate, so an earlier reply with the
    // same words is never taken for it). The outbox records a part's id
    // before it marks the reply delivered, so asking again afterwards
    // closes the moment in which the reply was recorded between the two
    // questions.
    if from_seller
        && (channels.store.is_own_message(shop.id, &message.id).await?
            || claim_echo(channels, shop, message, &buyer).await?
            || channels.store.is_own_message(shop.id, &message.id).await?)
    {
        return Ok(Stored::Own);
    }
    if from_seller && channels.store.has_message(shop.id, &message.id).await? {
        return Ok(Stored::Duplicate);
    }
    let max_chars = channels.text.max_chars;
    let text = match (&message.attachment, message.text.as_deref()) {
        (Some(attachment), Some(caption)) if !caption.trim().is_empty() => {
            format!("{} {}", attachment.describe(), caption)
        }
        (Some(attachment), _) => attachment.describe(),
        (None, Some(text)) => text.to_owned(),
        (None, None) => return Ok(Stored::Empty),
    };
    let text = platform_text(&text, max_chars);
    if text.is_empty() {
        return Ok(Stored::Empty);
    }
    channels
        .store
        .upsert_thread(shop.id, &message.thread, &buyer)
        .await?;
    let inbound = InboundMessage {
        shop: shop.key.clone(),
        external_id: ExternalMessageId::parse(&message.id)?,
        buyer: BuyerRef {
            id: buyer,
            name: message
                .buyer_name
                .as_deref()
                .map(|n| platform_text(n, 256))
                .filter(|n| !n.is_empty()),
        },
        text: MessageText::parse(&text, channels.text)?,
        sent_at: message.sent_at,
        sender: message.sender.clone(),
        attachment: message.attachment.clone(),
    };
    let started = std::time::Instant::now();
    let span = crate::telemetry::ingest_span(
        &shop.tenant_id.to_string(),
        shop.key.as_str(),
        shop.platform.as_str(),
    );
    let outcome = channels
        .store
        .ingest(shop, &inbound, channels.max_attempts)
        .instrument(span.clone())
        .await?;
    span.record("message_id", tracing::field::display(outcome.message_id));
    span.record(
        "conversation_id",
        tracing::field::display(outcome.conversation_id),
    );
    span.record("duplicate", outcome.duplicate);
    m::ingest_stored(outcome.duplicate, started.elapsed());
    if outcome.duplicate {
        return Ok(Stored::Duplicate);
    }
    if !from_seller {
        (channels.inbound_wake)();
    }
    Ok(Stored::New)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_text_is_cleaned_and_cut_not_refused() {
        assert_eq!(platform_text(" hi\u{0}\n there \u{7} ", 100), "hi\n there");
        let long = "x".repeat(20);
        let cut = platform_text(&long, 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with('…'));
        assert_eq!(platform_text("\u{1}\u{2}", 10), "");
    }
}
