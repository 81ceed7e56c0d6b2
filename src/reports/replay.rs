//! `kedai replay HISTORY`: a seller's past buyer messages, and the replies
//! their people gave, run through the real pipeline on a copy of the
//! store, nothing sent. For every message: what kedai would have done
//! (layer, action, answer), whether its answer agrees with the person's by
//! meaning (e5 cosine similarity), and whether it would have sent on its
//! own an answer that disagrees (a message it would have gotten wrong).
//! Summed per language and intent with the projected automation rate:
//! how a seller decides to switch an intent from suggest to auto.
//!
//! Reading history files and summing judgements are pure; `run` drives
//! the pipeline the caller built over the copy.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    BuyerRef, ConversationStatus, Custody, Direction, ExternalMessageId, InboundMessage,
    MessageText, NewReply, PlatformBuyerId, ShopKey, TenantId, TextLimits,
};
use crate::pipeline::run::Pipeline;
use crate::store::Store;

/// Cosine similarity of e5 vectors at or above which kedai's answer and
/// the person's reply count as saying the same thing.
pub const AGREEMENT_MIN: f32 = 0.88;

/// One past buyer message, with the reply a person gave to it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryLine {
    pub conversation_id: String,
    pub shop: String,
    pub buyer_id: String,
    pub sent_at: DateTime<Utc>,
    pub text: String,
    #[serde(default)]
    pub human_reply: Option<String>,
}

/// Reads JSON lines, or CSV with the same columns when the file name ends
/// in `.csv`. Errors name the file and line; an empty text is refused.
pub fn read_history(path: &Path) -> anyhow::Result<Vec<HistoryLine>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let lines: Vec<(usize, HistoryLine)> = if is_csv {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        reader
            .deserialize::<HistoryLine>()
            .enumerate()
            .map(|(i, row)| {
                row.map(|mut l| {
                    l.human_reply = l.human_reply.filter(|r| !r.trim().is_empty());
                    (i + 2, l)
                })
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 2))
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map(|h| (i + 1, h))
                    .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))
            })
            .collect::<anyhow::Result<_>>()?
    };
    for (line, h) in &lines {
        if h.text.trim().is_empty() || h.conversation_id.trim().is_empty() {
            anyhow::bail!(
                "{}:{line}: text and conversation_id must not be empty",
                path.display()
            );
        }
        ShopKey::parse(&h.shop).map_err(|e| anyhow::anyhow!("{}:{line}: {e}", path.display()))?;
        PlatformBuyerId::parse(&h.buyer_id)
            .map_err(|e| anyhow::anyhow!("{}:{line}: {e}", path.display()))?;
    }
    Ok(lines.into_iter().map(|(_, h)| h).collect())
}

/// What kedai would have done with one past message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    pub conversation_id: String,
    pub shop: String,
    pub sent_at: DateTime<Utc>,
    pub text: String,
    pub language: String,
    pub intent: String,
    pub layer: u8,
    pub action: String,
    pub answer_kind: String,
    /// The reply kedai would have sent, or the draft it would have offered.
    pub kedai_text: Option<String>,
    pub human_reply: Option<String>,
    /// Cosine similarity of kedai's text and the person's reply.
    pub similarity: Option<f32>,
}

impl Judged {
    pub fn agrees(&self) -> Option<bool> {
        self.similarity.map(|s| s >= AGREEMENT_MIN)
    }

    /// kedai would have sent this on its own.
    pub fn automated(&self) -> bool {
        self.action == "send" && self.layer == 1
    }

    /// Sent on its own, and the person said something else.
    pub fn wrong(&self) -> bool {
        self.automated() && self.agrees() == Some(false)
    }
}

/// The figures of one language and intent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupFigures {
    pub language: String,
    pub intent: String,
    pub messages: usize,
    /// Layer 1, 2 and 3 decisions.
    pub layers: [usize; 3],
    /// Messages kedai would have answered on its own, over messages.
    pub projected_automation: f64,
    /// Messages with both a person's reply and a kedai text.
    pub compared: usize,
    pub agreed: usize,
    pub agreement: Option<f64>,
    pub wrong: usize,
}

impl GroupFigures {
    fn add(&mut self, j: &Judged) {
        self.messages += 1;
        self.layers[usize::from(j.layer.clamp(1, 3) - 1)] += 1;
        if let Some(agrees) = j.agrees() {
            self.compared += 1;
            self.agreed += usize::from(agrees);
        }
        self.wrong += usize::from(j.wrong());
    }

    fn finish(mut self, automated: usize) -> GroupFigures {
        self.projected_automation = automated as f64 / self.messages.max(1) as f64;
        self.agreement = (self.compared > 0).then(|| self.agreed as f64 / self.compared as f64);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    pub conversations: usize,
    pub agreement_min: f32,
    pub all: GroupFigures,
    /// One row per language and intent, most messages first.
    pub groups: Vec<GroupFigures>,
    /// Messages kedai would have answered on its own differently from the
    /// person.
    pub wrong: Vec<Judged>,
    pub messages: Vec<Judged>,
}

pub fn summarise(messages: Vec<Judged>) -> ReplayReport {
    let mut all = GroupFigures {
        language: "all".into(),
        intent: "all".into(),
        ..GroupFigures::default()
    };
    let mut automated_all = 0;
    let mut groups: BTreeMap<(String, String), (GroupFigures, usize)> = BTreeMap::new();
    for j in &messages {
        all.add(j);
        automated_all += usize::from(j.automated());
        let (g, automated) = groups
            .entry((j.language.clone(), j.intent.clone()))
            .or_insert_with(|| {
                (
                    GroupFigures {
                        language: j.language.clone(),
                        intent: j.intent.clone(),
                        ..GroupFigures::default()
                    },
                    0,
                )
            });
        g.add(j);
        *automated += usize::from(j.automated());
    }
    let mut groups: Vec<GroupFigures> = groups
        .into_values()
        .map(|(g, automated)| g.finish(automated))
        .collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.messages));
    let conversations = messages
        .iter()
        .map(|m| &m.conversation_id)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    ReplayReport {
        conversations,
        agreement_min: AGREEMENT_MIN,
        all: all.finish(automated_all),
        groups,
        wrong: messages.iter().filter(|m| m.wrong()).cloned().collect(),
        messages,
    }
}

/// Cosine similarity of two texts by the caller's embedding.
#[async_trait::async_trait]
pub trait Meaning: Send + Sync {
    async fn similarity(&self, a: &str, b: &str) -> anyhow::Result<f32>;
}

/// Runs every history line through `pipeline` in `tenant`'s shops of
/// `store` (a copy: replies are recorded there, never delivered).
/// Conversations go in the order of their first message, their messages
/// in `sent_at` order; a person's reply is added after kedai's decision,
/// and the conversation handed back to kedai, so every message is judged
/// as kedai would have met it.
pub async fn run(
    store: &dyn Store,
    tenant: TenantId,
    pipeline: &Pipeline,
    meaning: &dyn Meaning,
    lines: &[HistoryLine],
) -> anyhow::Result<Vec<Judged>> {
    let mut by_conversation: BTreeMap<&str, Vec<&HistoryLine>> = BTreeMap::new();
    for line in lines {
        by_conversation
            .entry(line.conversation_id.as_str())
            .or_default()
            .push(line);
    }
    let mut conversations: Vec<Vec<&HistoryLine>> = by_conversation.into_values().collect();
    for c in &mut conversations {
        c.sort_by_key(|l| l.sent_at);
    }
    conversations.sort_by_key(|c| c[0].sent_at);
    let limits = TextLimits { max_chars: 10_000 };
    let mut judged = Vec::with_capacity(lines.len());
    for (n, conversation) in conversations.iter().enumerate() {
        let mut last = None;
        for (turn, line) in conversation.iter().enumerate() {
            let shop_key = ShopKey::parse(&line.shop)?;
            let shop = store
                .shop_by_key(tenant, &shop_key)
                .await?
                .with_context(|| {
                    format!(
                        "conversation {}: unknown shop {}",
                        line.conversation_id, line.shop
                    )
                })?;
            let ack = store
                .ingest(
                    &shop,
                    &InboundMessage {
                        shop: shop_key,
                        external_id: ExternalMessageId::parse(&format!("replay-{n}-{turn}"))?,
                        buyer: BuyerRef {
                            id: PlatformBuyerId::parse(&line.buyer_id)?,
                            name: None,
                        },
                        text: MessageText::parse(&line.text, limits)?,
                        sent_at: line.sent_at,
                        sender: crate::domain::Sender::Buyer,
                        attachment: None,
                    },
                    1,
                )
                .await?;
            last = Some(ack.conversation_id);
            let trace = pipeline.process(tenant, ack.message_id, Utc::now()).await?;
            let kedai_text = trace["reply"]
                .as_str()
                .or_else(|| trace["draft"].as_str())
                .map(str::to_owned);
            let similarity = match (&kedai_text, &line.human_reply) {
                (Some(k), Some(h)) => Some(meaning.similarity(k, h).await?),
                _ => None,
            };
            let field = |key: &str| trace[key].as_str().unwrap_or_default().to_owned();
            judged.push(Judged {
                conversation_id: line.conversation_id.clone(),
                shop: line.shop.clone(),
                sent_at: line.sent_at,
                text: line.text.clone(),
                language: trace["lang"].as_str().unwrap_or("unknown").to_owned(),
                intent: field("intent"),
                layer: trace["layer"].as_u64().unwrap_or(3).clamp(1, 3) as u8,
                action: field("action"),
                answer_kind: field("answer_kind"),
                kedai_text,
                human_reply: line.human_reply.clone(),
                similarity,
            });
            if let Some(reply) = &line.human_reply {
                store
                    .add_reply(
                        tenant,
                        ack.conversation_id,
                        &NewReply {
                            text: MessageText::parse(reply, limits)?,
                            direction: Direction::Outbound,
                            author: crate::domain::Author::Agent,
                            author_name: None,
                            external_id: None,
                        },
                        "replay",
                    )
                    .await?;
                store
                    .set_custody(tenant, ack.conversation_id, Custody::Ai, None, "replay")
                    .await?;
            }
        }
        // The next conversation of the same buyer is a new one.
        if let Some(conversation) = last {
            store
                .set_conversation_status(
                    tenant,
                    conversation,
                    ConversationStatus::Resolved,
                    "replay",
                )
                .await?;
        }
    }
    Ok(judged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn history_reads_from_json_lines_and_csv_alike() {
        let (_d, jsonl) = write(
            "h.jsonl",
            "{\"conversation_id\":\"c1\",\"shop\":\"demo-shopee\",\"buyer_id\":\"b1\",\
             \"sent_at\":\"2026-11-01T10:00:00Z\",\"text\":\"ada stok?\",\"human_reply\":\"Ada kak\"}\n\n\
             {\"conversation_id\":\"c1\",\"shop\":\"demo-shopee\",\"buyer_id\":\"b1\",\
             \"sent_at\":\"2026-11-01T10:05:00Z\",\"text\":\"ok\"}\n",
        );
        let (_e, csv) = write(
            "h.csv",
            "conversation_id,shop,buyer_id,sent_at,text,human_reply\n\
             c1,demo-shopee,b1,2026-11-01T10:00:00Z,ada stok?,Ada kak\n\
             c1,demo-shopee,b1,2026-11-01T10:05:00Z,ok,\n",
        );
        let a = read_history(&jsonl).unwrap();
        assert_eq!(a, read_history(&csv).unwrap());
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].human_reply.as_deref(), Some("Ada kak"));
        assert_eq!(a[1].human_reply, None);
    }

    #[test]
    fn bad_history_lines_are_named_by_file_and_line() {
        for (name, text, expected) in [
            ("a.jsonl", "{\"conversation_id\":\"c\"}\n", "a.jsonl:1"),
            (
                "b.jsonl",
                "\n{\"conversation_id\":\"c\",\"shop\":\"demo-shopee\",\"buyer_id\":\"b\",\
                 \"sent_at\":\"2026-11-01T10:00:00Z\",\"text\":\"  \"}\n",
                "b.jsonl:2",
            ),
            (
                "c.csv",
                "conversation_id,shop,buyer_id,sent_at,text,human_reply\nc,demo-shopee,b,yesterday,hi,\n",
                "c.csv:2",
            ),
            (
                "d.jsonl",
                "{\"conversation_id\":\"c\",\"shop\":\"\",\"buyer_id\":\"b\",\
                 \"sent_at\":\"2026-11-01T10:00:00Z\",\"text\":\"hi\"}\n",
                "d.jsonl:1",
            ),
        ] {
            let (_d, path) = write(name, text);
            let err = read_history(&path).unwrap_err().to_string();
            assert!(err.contains(expected), "{name}: {err}");
        }
    }

    fn judged(lang: &str, intent: &str, layer: u8, similarity: Option<f32>) -> Judged {
        Judged {
            conversation_id: format!("{lang}-{intent}"),
            shop: "demo-shopee".into(),
            sent_at: Utc::now(),
            text: "x".into(),
            language: lang.into(),
            intent: intent.into(),
            layer,
            action: if layer == 1 { "send" } else { "draft" }.into(),
            answer_kind: "faq".into(),
            kedai_text: similarity.map(|_| "k".into()),
            human_reply: similarity.map(|_| "h".into()),
            similarity,
        }
    }

    #[test]
    fn summaries_count_automation_agreement_and_wrong_sends_per_group() {
        let r = summarise(vec![
            judged("th", "size_fit", 1, Some(0.95)),
            judged("th", "size_fit", 1, Some(0.50)),
            judged("th", "size_fit", 2, Some(0.90)),
            judged("id", "order_status", 1, None),
        ]);
        assert_eq!(r.all.messages, 4);
        assert_eq!(r.all.layers, [3, 1, 0]);
        assert_eq!(r.all.projected_automation, 0.75);
        // Compared 3, agreeing 2 (0.95, 0.90); the 0.50 one was sent: wrong.
        assert_eq!((r.all.compared, r.all.agreed, r.all.wrong), (3, 2, 1));
        assert_eq!(r.wrong.len(), 1);
        assert_eq!(r.groups[0].intent, "size_fit");
        assert!((r.groups[0].projected_automation - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.groups[1].agreement, None);
        assert_eq!(r.conversations, 2);
    }
}
