//! A connected shop's chat history pulled through its platform's list API,
//! as the lines `kedai replay` reads: each buyer message with the reply the
//! seller's people gave to it.
//!
//! None of the three marketplaces documents a chat export file; their
//! conversation and message list APIs are the export (Lazada syncs a newly
//! authorised seller's last month, at most 3,000 conversations, for them to
//! serve). [`pull`] reads them; [`lines`] pairs messages and is pure.
//!
//! Pairing: the seller's messages after a buyer's message and before the
//! buyer writes again are the reply to it, joined by newlines; when the
//! buyer wrote several messages in a row, the reply goes to the last of
//! them and the earlier ones have none. Replies kedai sent itself are left
//! out by the caller (they are not a person's), so a shop that already runs
//! kedai gets its people's replies only. Messages without text (a picture,
//! a sticker) are skipped.

use chrono::{DateTime, Utc};

use super::adapter::{ChannelAdapter, ChannelMessage, RemoteThread};
use super::ChannelError;
use crate::domain::{Sender, ShopKey};
use crate::reports::replay::HistoryLine;

/// One conversation as the platform lists it, oldest message first.
#[derive(Debug, Clone)]
pub struct PulledThread {
    pub thread: RemoteThread,
    pub messages: Vec<ChannelMessage>,
}

/// The shop's conversations with a message at or after `since`, and their
/// messages since then.
pub async fn pull(
    adapter: &dyn ChannelAdapter,
    since: DateTime<Utc>,
) -> Result<Vec<PulledThread>, ChannelError> {
    let threads = adapter.list_threads(since).await?;
    let mut pulled = Vec::with_capacity(threads.len());
    for thread in threads {
        let mut messages = adapter.list_messages(&thread, since).await?;
        messages.sort_by(|a, b| a.sent_at.cmp(&b.sent_at).then_with(|| a.id.cmp(&b.id)));
        pulled.push(PulledThread { thread, messages });
    }
    Ok(pulled)
}

/// [`pull`], less the replies kedai sent itself (recognised by their
/// platform ids in the outbox): what the shop's people and buyers wrote.
/// Returns the threads and how many of kedai's replies were left out.
pub async fn pull_people(
    store: &dyn crate::store::Store,
    shop: crate::domain::ShopId,
    adapter: &dyn ChannelAdapter,
    since: DateTime<Utc>,
) -> Result<(Vec<PulledThread>, usize), ChannelError> {
    let mut pulled = pull(adapter, since).await?;
    let mut own = 0;
    for thread in &mut pulled {
        let mut kept = Vec::with_capacity(thread.messages.len());
        for message in std::mem::take(&mut thread.messages) {
            let seller = matches!(message.sender, Sender::Seller { .. });
            if seller && store.is_own_message(shop, &message.id).await? {
                own += 1;
                continue;
            }
            kept.push(message);
        }
        thread.messages = kept;
    }
    Ok((pulled, own))
}

fn text(message: &ChannelMessage) -> Option<&str> {
    message
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The buyer messages of `threads` with the replies that answered them,
/// oldest first, for shop `shop`.
pub fn lines(shop: &ShopKey, threads: &[PulledThread]) -> Vec<HistoryLine> {
    let mut lines = Vec::new();
    for pulled in threads {
        let buyer = pulled
            .thread
            .buyer
            .clone()
            .or_else(|| pulled.messages.iter().find_map(|m| m.buyer.clone()))
            .unwrap_or_else(|| pulled.thread.id.clone());
        let mut open: Option<HistoryLine> = None;
        for message in &pulled.messages {
            let Some(text) = text(message) else {
                continue;
            };
            match message.sender {
                Sender::Buyer => {
                    lines.extend(open.take());
                    open = Some(HistoryLine {
                        conversation_id: pulled.thread.id.clone(),
                        shop: shop.to_string(),
                        buyer_id: buyer.clone(),
                        sent_at: message.sent_at,
                        text: text.to_owned(),
                        human_reply: None,
                    });
                }
                Sender::Seller { .. } => {
                    if let Some(line) = open.as_mut() {
                        let reply = line.human_reply.get_or_insert_with(String::new);
                        if !reply.is_empty() {
                            reply.push('\n');
                        }
                        reply.push_str(text);
                    }
                }
            }
        }
        lines.extend(open);
    }
    lines.sort_by_key(|l| l.sent_at);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: i64, buyer: bool, text: Option<&str>) -> ChannelMessage {
        ChannelMessage {
            id: format!("m-{n}"),
            thread: "t-1".into(),
            buyer: buyer.then(|| "b-1".to_owned()),
            buyer_name: None,
            sender: if buyer {
                Sender::Buyer
            } else {
                Sender::Seller { name: None }
            },
            text: text.map(str::to_owned),
            attachment: None,
            sent_at: DateTime::<Utc>::from_timestamp(1_764_000_000 + n * 60, 0).unwrap(),
        }
    }

    fn thread(messages: Vec<ChannelMessage>) -> PulledThread {
        PulledThread {
            thread: RemoteThread {
                id: "t-1".into(),
                buyer: None,
                buyer_name: None,
                last_message_at: messages.last().unwrap().sent_at,
            },
            messages,
        }
    }

    #[test]
    fn each_reply_goes_to_the_buyer_message_it_answered() {
        let shop = ShopKey::parse("demo-lazada").unwrap();
        let pulled = thread(vec![
            message(0, false, Some("Welcome to our shop!")),
            message(1, true, Some("halo kak")),
            message(2, true, Some("ready size L?")),
            message(3, false, Some("Ready kak.")),
            message(4, false, Some("Mau warna apa?")),
            message(5, true, None),
            message(6, true, Some("hitam  ")),
        ]);
        let lines = lines(&shop, &[pulled]);
        let got: Vec<(&str, Option<&str>)> = lines
            .iter()
            .map(|l| (l.text.as_str(), l.human_reply.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("halo kak", None),
                ("ready size L?", Some("Ready kak.\nMau warna apa?")),
                ("hitam", None),
            ]
        );
        assert!(lines
            .iter()
            .all(|l| l.buyer_id == "b-1" && l.shop == "demo-lazada"));
        assert!(lines.iter().all(|l| l.conversation_id == "t-1"));
    }
}
