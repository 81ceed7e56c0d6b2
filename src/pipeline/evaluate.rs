//! `kedai eval replies`: runs the whole pipeline on labelled buyer
//! conversations and compares the layer, the intent and the facts in the
//! answer with what was expected.
//!
//! The caller provides a store already holding the shops, orders and
//! knowledge the cases refer to (the demo tenant) and a pipeline over it;
//! this module replays each case's history, runs the pipeline on its last
//! message and scores the trace.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::run::Pipeline;
use crate::domain::{
    Author, BuyerRef, ConversationStatus, Direction, ExternalMessageId, InboundMessage,
    MessageText, NewReply, PlatformBuyerId, ShopKey, TenantId, TextLimits,
};
use crate::store::Store;

/// One labelled case (a line of `kb/eval/replies.jsonl`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyCase {
    pub id: String,
    pub shop: String,
    pub buyer: String,
    pub lang: String,
    #[serde(default)]
    pub history: Vec<HistoryTurn>,
    pub message: String,
    pub expected_layer: u8,
    pub expected_intent: String,
    #[serde(default)]
    pub expected_facts: Vec<String>,
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryTurn {
    /// `buyer`, `agent` or `ai`.
    pub role: String,
    pub text: String,
}

/// Reads a cases file; errors name the file and line.
pub fn read_cases(path: &Path) -> anyhow::Result<Vec<ReplyCase>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let case: ReplyCase = serde_json::from_str(line)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
            if !(1..=3).contains(&case.expected_layer) {
                anyhow::bail!(
                    "{}:{}: expected_layer must be 1, 2 or 3, got {}",
                    path.display(),
                    i + 1,
                    case.expected_layer
                );
            }
            Ok(case)
        })
        .collect()
}

/// Which part of the labelled conversations a case belongs to: routing is
/// tuned on the `tuning` part only, and the `held_out` part measures the
/// same independently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Tuning,
    HeldOut,
}

impl Part {
    /// Share of the cases in the held-out part, in percent.
    pub const HELD_OUT_PERCENT: u64 = 30;

    /// The part of the case with this id: held out when the first 8 bytes
    /// of `sha256("replies-held-out:" + id)` modulo 100 are below
    /// [`Part::HELD_OUT_PERCENT`]. A case keeps its part whatever else is
    /// added to the file.
    pub fn of(id: &str) -> Part {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("replies-held-out:{id}").as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        if u64::from_be_bytes(first) % 100 < Part::HELD_OUT_PERCENT {
            Part::HeldOut
        } else {
            Part::Tuning
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Part::Tuning => "tuning",
            Part::HeldOut => "held_out",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub id: String,
    pub lang: String,
    pub part: Part,
    pub expected_layer: u8,
    pub layer: u8,
    pub expected_intent: String,
    pub intent: String,
    pub action: String,
    pub answer_kind: String,
    /// Why the policy chose the layer (`anger`, `low_confidence`, ...).
    pub reasons: Vec<String>,
    pub confidence: f64,
    /// Dense similarity of the best knowledge-base hit.
    pub top_similarity: Option<f64>,
    /// Dense similarity of the best product hit (how "ask which product"
    /// is calibrated).
    pub product_similarity: Option<f64>,
    pub anger: u64,
    pub anger_probability: f64,
    /// Expected facts found in the reply or draft, and how many there were.
    pub facts_found: usize,
    pub facts_expected: usize,
    /// From the acknowledgement of the message (its ingest committed) to
    /// its decision and reply committed.
    pub total_ms: f64,
    /// The pipeline's own per-stage timings.
    pub stages_ms: BTreeMap<String, f64>,
    /// The chat model's cost record when it wrote the answer: prompt,
    /// reused and completion tokens, prefill and decode milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<serde_json::Value>,
    pub text: Option<String>,
    /// No reply was sent and no person was handed the message.
    pub silent: bool,
    /// A reply was sent without a person whose text was machine-written and
    /// not verified.
    pub unverified_send: bool,
}

/// A buyer left without an answer or a person: nothing sent, and the
/// decision is neither a draft nor a handoff.
pub fn is_silent(trace: &serde_json::Value) -> bool {
    trace["reply"].is_null() && !matches!(trace["action"].as_str(), Some("draft" | "handoff"))
}

/// A reply sent without a person whose text was neither the seller's own
/// words nor a template filled from records, and did not pass verification.
pub fn is_unverified_send(trace: &serde_json::Value) -> bool {
    let sent = !trace["reply"].is_null() && trace["answer_kind"] != "holding";
    let machine_written = matches!(
        trace["answer"]["provenance"].as_str(),
        Some("machine_translation" | "generated")
    );
    sent && machine_written && trace["answer"]["verification"]["passed"] != true
}

#[derive(Debug, Clone, Serialize)]
pub struct RepliesReport {
    pub conversations: usize,
    pub layer_accuracy: f64,
    pub intent_accuracy: f64,
    /// Expected facts present in the answer (sent or drafted), over all
    /// cases that expect facts.
    pub facts_recall: f64,
    /// Cases a human should have taken (layer 3 expected) that kedai
    /// answered on its own: the number that must stay at zero.
    pub unsafe_sends: usize,
    /// Buyer messages that got no reply and were not handed to a person:
    /// must be zero, always.
    pub silent_messages: usize,
    /// Replies sent without a person that were machine-written and not
    /// verified: must be zero.
    pub unverified_auto_sends: usize,
    /// confusion[expected][got], layers 1-3.
    pub layer_confusion: [[usize; 3]; 3],
    pub layer_accuracy_by_language: BTreeMap<String, f64>,
    /// Layer accuracy of each part ([`Part`]) as a whole and by language,
    /// with the number of cases.
    pub by_part: BTreeMap<Part, PartReport>,
    /// Median and 95th percentile from acknowledgement to the stored
    /// decision, by answer kind (`order_status`, `faq`, `draft`, ...).
    pub timings_ms: BTreeMap<String, (f64, f64)>,
    /// Median and 95th percentile of each pipeline stage, over the cases
    /// that ran it.
    pub stage_timings_ms: BTreeMap<String, (f64, f64)>,
    pub cases: Vec<CaseResult>,
}

/// Layer accuracy of one part of the cases.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PartReport {
    pub conversations: usize,
    pub layer_accuracy: f64,
    pub unsafe_sends: usize,
    pub silent_messages: usize,
    /// Language -> (layer accuracy, cases).
    pub layer_accuracy_by_language: BTreeMap<String, (f64, usize)>,
}

fn part_report(cases: &[&CaseResult]) -> PartReport {
    let mut by_lang: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for c in cases {
        let entry = by_lang.entry(c.lang.clone()).or_default();
        entry.0 += usize::from(c.layer == c.expected_layer);
        entry.1 += 1;
    }
    let right = cases.iter().filter(|c| c.layer == c.expected_layer).count();
    PartReport {
        conversations: cases.len(),
        layer_accuracy: right as f64 / cases.len().max(1) as f64,
        unsafe_sends: cases.iter().filter(|c| is_unsafe(c)).count(),
        silent_messages: cases.iter().filter(|c| c.silent).count(),
        layer_accuracy_by_language: by_lang
            .into_iter()
            .map(|(lang, (ok, all))| (lang, (ok as f64 / all.max(1) as f64, all)))
            .collect(),
    }
}

/// A case a person should have taken that kedai answered on its own.
fn is_unsafe(c: &CaseResult) -> bool {
    c.expected_layer == 3 && c.action == "send"
}

/// Median and 95th percentile of each list.
fn percentiles(lists: BTreeMap<String, Vec<f64>>) -> BTreeMap<String, (f64, f64)> {
    lists
        .into_iter()
        .map(|(key, mut t)| {
            t.sort_by(|a, b| a.total_cmp(b));
            (key, (percentile(&t, 50.0), percentile(&t, 95.0)))
        })
        .collect()
}

/// Nearest-rank percentile `p` (0-100) of ascending `sorted`; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Replays every case into `tenant`'s shops and scores the pipeline.
pub async fn run(
    store: &dyn Store,
    tenant: TenantId,
    pipeline: &Pipeline,
    cases: &[ReplyCase],
) -> anyhow::Result<RepliesReport> {
    let limits = TextLimits { max_chars: 10_000 };
    let mut results = Vec::with_capacity(cases.len());
    if let Some(first) = cases.first() {
        // Classifiers train and caches fill on the first message; a server
        // has done that long before its buyers write, so it is not timed.
        let shop_key = ShopKey::parse(&first.shop)?;
        if let Some(shop) = store.shop_by_key(tenant, &shop_key).await? {
            let warm_up = InboundMessage {
                shop: shop_key,
                external_id: ExternalMessageId::parse("eval-warm-up").expect("valid id"),
                buyer: BuyerRef {
                    id: PlatformBuyerId::parse("eval-warm-up")?,
                    name: None,
                },
                text: MessageText::from_stored("Hello, is this shop open today?".into()),
                sent_at: Utc::now(),
                sender: crate::domain::Sender::Buyer,
                attachment: None,
            };
            let ack = store.ingest(&shop, &warm_up, 1).await?;
            pipeline.process(tenant, ack.message_id, Utc::now()).await?;
        }
    }
    for (n, case) in cases.iter().enumerate() {
        let shop_key = ShopKey::parse(&case.shop)?;
        let shop = store
            .shop_by_key(tenant, &shop_key)
            .await?
            .ok_or_else(|| anyhow::anyhow!("case {}: unknown shop {}", case.id, case.shop))?;
        let buyer = PlatformBuyerId::parse(&case.buyer)?;
        let ingest = |turn: usize, text: &str| InboundMessage {
            shop: shop_key.clone(),
            external_id: ExternalMessageId::parse(&format!("eval-{n}-{turn}")).expect("valid id"),
            buyer: BuyerRef {
                id: buyer.clone(),
                name: None,
            },
            text: MessageText::from_stored(crate::domain::redact_card_numbers(text)),
            sent_at: Utc::now(),
            sender: crate::domain::Sender::Buyer,
            attachment: None,
        };
        let mut conversation = None;
        for (turn, past) in case.history.iter().enumerate() {
            if past.role == "buyer" {
                let ack = store.ingest(&shop, &ingest(turn, &past.text), 1).await?;
                conversation = Some(ack.conversation_id);
                // Earlier messages were answered long ago: mark them so.
                store.mark_processed(ack.message_id).await?;
            } else if let Some(conversation) = conversation {
                let author = if past.role == "ai" {
                    Author::Ai
                } else {
                    Author::Agent
                };
                store
                    .add_reply(
                        tenant,
                        conversation,
                        &NewReply {
                            text: MessageText::parse(&past.text, limits)?,
                            direction: Direction::Outbound,
                            author,
                            author_name: None,
                            external_id: None,
                        },
                        "eval",
                    )
                    .await?;
            }
        }
        let text = if case.message.trim().is_empty() {
            "(empty)".to_string()
        } else {
            case.message.clone()
        };
        let ack = store
            .ingest(&shop, &ingest(case.history.len(), &text), 1)
            .await?;
        let acknowledged = std::time::Instant::now();
        let trace = pipeline
            .process(tenant, ack.message_id, Utc::now())
            .await
            .map_err(|e| anyhow::anyhow!("case {}: {e}", case.id))?;
        let total_ms = acknowledged.elapsed().as_secs_f64() * 1000.0;
        // Cases that share a buyer are separate conversations, as if an
        // agent had resolved the earlier one.
        store
            .set_conversation_status(
                tenant,
                ack.conversation_id,
                ConversationStatus::Resolved,
                "eval",
            )
            .await?;
        let answer = trace["reply"]
            .as_str()
            .or_else(|| trace["draft"].as_str())
            .map(str::to_string);
        let facts_found = answer
            .as_deref()
            .map(|a| {
                let lower = a.to_lowercase();
                case.expected_facts
                    .iter()
                    .filter(|f| lower.contains(&f.to_lowercase()))
                    .count()
            })
            .unwrap_or(0);
        results.push(CaseResult {
            id: case.id.clone(),
            lang: case.lang.clone(),
            part: Part::of(&case.id),
            expected_layer: case.expected_layer,
            layer: trace["layer"].as_u64().unwrap_or(3) as u8,
            expected_intent: case.expected_intent.clone(),
            intent: trace["intent"].as_str().unwrap_or_default().to_string(),
            action: trace["action"].as_str().unwrap_or_default().to_string(),
            answer_kind: trace["answer_kind"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            reasons: trace["reasons"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|r| r["reason"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            confidence: trace["confidence"].as_f64().unwrap_or_default(),
            top_similarity: trace["sources"]
                .as_array()
                .and_then(|s| s.iter().find_map(|s| s["similarity"].as_f64())),
            product_similarity: trace["sources"].as_array().and_then(|s| {
                s.iter()
                    .filter(|s| s["kind"] == "product")
                    .filter_map(|s| s["similarity"].as_f64())
                    .reduce(f64::max)
            }),
            anger: trace["anger"].as_u64().unwrap_or_default(),
            anger_probability: trace["anger_probability"].as_f64().unwrap_or_default(),
            facts_found,
            facts_expected: case.expected_facts.len(),
            total_ms,
            stages_ms: trace["timings_ms"]
                .as_object()
                .map(|t| {
                    t.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                        .collect()
                })
                .unwrap_or_default(),
            generation: trace.get("generation").filter(|g| !g.is_null()).cloned(),
            text: answer,
            silent: is_silent(&trace),
            unverified_send: is_unverified_send(&trace),
        });
    }
    Ok(report(results))
}

fn report(cases: Vec<CaseResult>) -> RepliesReport {
    let n = cases.len().max(1) as f64;
    let mut confusion = [[0usize; 3]; 3];
    let mut by_lang: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut times: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut stages: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let (mut facts_found, mut facts_expected) = (0, 0);
    for c in &cases {
        let (e, g) = (c.expected_layer.clamp(1, 3), c.layer.clamp(1, 3));
        confusion[(e - 1) as usize][(g - 1) as usize] += 1;
        let entry = by_lang.entry(c.lang.clone()).or_default();
        entry.0 += usize::from(e == g);
        entry.1 += 1;
        times
            .entry(c.answer_kind.clone())
            .or_default()
            .push(c.total_ms);
        for (stage, ms) in &c.stages_ms {
            stages.entry(stage.clone()).or_default().push(*ms);
        }
        facts_found += c.facts_found;
        facts_expected += c.facts_expected;
    }
    RepliesReport {
        conversations: cases.len(),
        layer_accuracy: cases.iter().filter(|c| c.layer == c.expected_layer).count() as f64 / n,
        silent_messages: cases.iter().filter(|c| c.silent).count(),
        unverified_auto_sends: cases.iter().filter(|c| c.unverified_send).count(),
        intent_accuracy: cases
            .iter()
            .filter(|c| c.intent == c.expected_intent)
            .count() as f64
            / n,
        facts_recall: if facts_expected == 0 {
            0.0
        } else {
            facts_found as f64 / facts_expected as f64
        },
        unsafe_sends: cases.iter().filter(|c| is_unsafe(c)).count(),
        layer_confusion: confusion,
        layer_accuracy_by_language: by_lang
            .into_iter()
            .map(|(lang, (ok, all))| (lang, ok as f64 / all.max(1) as f64))
            .collect(),
        by_part: [Part::Tuning, Part::HeldOut]
            .into_iter()
            .filter_map(|part| {
                let of: Vec<&CaseResult> = cases.iter().filter(|c| c.part == part).collect();
                (!of.is_empty()).then(|| (part, part_report(&of)))
            })
            .collect(),
        timings_ms: percentiles(times),
        stage_timings_ms: percentiles(stages),
        cases,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(expected: u8, got: u8, action: &str, kind: &str, ms: f64) -> CaseResult {
        CaseResult {
            id: "x".into(),
            lang: "en".into(),
            part: if expected == 2 {
                Part::HeldOut
            } else {
                Part::Tuning
            },
            expected_layer: expected,
            layer: got,
            expected_intent: "order_status".into(),
            intent: if expected == got {
                "order_status"
            } else {
                "other"
            }
            .into(),
            action: action.into(),
            answer_kind: kind.into(),
            reasons: Vec::new(),
            confidence: 0.9,
            top_similarity: None,
            product_similarity: None,
            anger: 0,
            anger_probability: 0.1,
            facts_found: 1,
            facts_expected: 2,
            total_ms: ms,
            stages_ms: BTreeMap::from([("total".to_string(), ms)]),
            generation: None,
            text: None,
            silent: false,
            unverified_send: false,
        }
    }

    #[test]
    fn the_report_counts_unsafe_sends_and_confusions() {
        let report = report(vec![
            case(1, 1, "send", "order_status", 10.0),
            case(3, 1, "send", "faq", 20.0),
            case(2, 3, "handoff", "none", 5.0),
            case(3, 3, "handoff", "none", 7.0),
        ]);
        assert_eq!(report.conversations, 4);
        assert_eq!(report.layer_accuracy, 0.5);
        assert_eq!(report.unsafe_sends, 1);
        assert_eq!(report.layer_confusion[2][0], 1);
        assert_eq!(report.layer_confusion[1][2], 1);
        assert_eq!(report.facts_recall, 0.5);
        assert_eq!(report.timings_ms["none"], (7.0, 7.0));
        assert_eq!(report.stage_timings_ms["total"], (10.0, 20.0));
        let tuning = &report.by_part[&Part::Tuning];
        assert_eq!((tuning.conversations, tuning.unsafe_sends), (3, 1));
        assert_eq!(tuning.layer_accuracy_by_language["en"], (2.0 / 3.0, 3));
        assert_eq!(report.by_part[&Part::HeldOut].layer_accuracy, 0.0);
    }

    #[test]
    fn the_held_out_part_is_fixed_by_the_id_and_about_a_third() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kb/eval/replies.jsonl");
        let cases = read_cases(&path).unwrap();
        let held = cases
            .iter()
            .filter(|c| Part::of(&c.id) == Part::HeldOut)
            .count();
        let share = held as f64 / cases.len() as f64;
        assert!((0.2..0.4).contains(&share), "{held} of {}", cases.len());
        assert_eq!(Part::of("en-greeting-01"), Part::of("en-greeting-01"));
        // Every language has cases in both parts.
        for lang in ["en", "id", "th", "vi", "ms", "tl", "pt", "es", "zh"] {
            for part in [Part::Tuning, Part::HeldOut] {
                assert!(
                    cases
                        .iter()
                        .any(|c| c.lang == lang && Part::of(&c.id) == part),
                    "{lang} has no {} case",
                    part.as_str()
                );
            }
        }
    }

    #[test]
    fn silence_and_unverified_sends_are_read_from_the_trace() {
        let sent = serde_json::json!({"reply": "Hi", "action": "send", "answer_kind": "faq",
                                      "answer": {"provenance": "seller_text"}});
        assert!(!is_silent(&sent) && !is_unverified_send(&sent));
        let silent = serde_json::json!({"reply": null, "action": "send", "answer_kind": "none"});
        assert!(is_silent(&silent));
        let drafted = serde_json::json!({"reply": null, "action": "draft"});
        assert!(!is_silent(&drafted));
        let unverified = serde_json::json!({"reply": "Sure", "action": "send", "answer_kind": "draft",
            "answer": {"provenance": "generated", "verification": {"passed": false}}});
        assert!(is_unverified_send(&unverified));
        let verified = serde_json::json!({"reply": "Sure", "action": "send", "answer_kind": "faq_translated",
            "answer": {"provenance": "machine_translation", "verification": {"passed": true}}});
        assert!(!is_unverified_send(&verified));
        let holding = serde_json::json!({"reply": "A colleague will answer", "action": "handoff",
            "answer_kind": "holding", "answer": {"provenance": "generated"}});
        assert!(
            !is_unverified_send(&holding),
            "the holding reply is our template"
        );
    }

    #[test]
    fn the_shipped_cases_parse() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kb/eval/replies.jsonl");
        let cases = read_cases(&path).unwrap();
        assert!(cases.len() >= 80, "{} cases", cases.len());
        assert!(cases.iter().any(|c| c.expected_layer == 3));
    }
}
