//! What kedai ended up with, read through its own API (every conversation
//! and message of the tenant), set against what the simulated platforms
//! sent and received: the simulation's report.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::domain::Platform;

/// One message as kedai's API returns it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: String,
    pub shop: String,
    pub external_id: Option<String>,
    pub direction: String,
    pub author: String,
    pub text: String,
    /// The pipeline has decided on it (buyer messages).
    pub decided: bool,
}

/// Every message of the tenant, conversation by conversation, in the
/// order kedai shows them.
pub async fn read_all(
    client: &reqwest::Client,
    base: &str,
    token: &str,
) -> anyhow::Result<Vec<Vec<StoredMessage>>> {
    let mut conversations = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/conversations?limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for c in page["conversations"].as_array().into_iter().flatten() {
            conversations.push((
                c["id"].as_str().unwrap_or_default().to_owned(),
                c["shop"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut all = Vec::with_capacity(conversations.len());
    for (id, shop) in conversations {
        let detail: Value = client
            .get(format!("{base}/api/v1/conversations/{id}"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("reading conversation {id}"))?
            .json()
            .await?;
        let decided: std::collections::HashSet<&str> = detail["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["message_id"].as_str())
            .collect();
        let messages = detail["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| StoredMessage {
                id: m["id"].as_str().unwrap_or_default().to_owned(),
                shop: shop.clone(),
                external_id: m["external_id"].as_str().map(str::to_owned),
                direction: m["direction"].as_str().unwrap_or_default().to_owned(),
                author: m["author"].as_str().unwrap_or_default().to_owned(),
                text: m["text"].as_str().unwrap_or_default().to_owned(),
                decided: m["id"].as_str().is_some_and(|id| decided.contains(id)),
            })
            .collect();
        all.push(messages);
    }
    Ok(all)
}

/// What the driver knows about each message it generated.
#[derive(Debug, Clone)]
pub struct Generated {
    pub platform: Platform,
    /// Its time as the platform's push carries it (seconds on Shopee and
    /// TikTok Shop, milliseconds on Lazada): kedai can order messages no
    /// finer than that.
    pub platform_time: i64,
    pub from_buyer: bool,
    pub dropped: bool,
    pub acked: bool,
}

/// Counters the driver keeps per platform while pushing.
#[derive(Debug, Default, Clone)]
pub struct PushStats {
    pub delivered: u64,
    pub acked: u64,
    pub refused: u64,
    pub failed: u64,
    pub echoes: u64,
    pub ack_ms: Vec<f64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PlatformReport {
    /// Buyer and seller-app messages generated on the platform.
    pub messages: usize,
    /// Push requests sent (first tries, retries and duplicates).
    pub delivered: u64,
    /// Push requests answered 2xx.
    pub acked: u64,
    /// Pushes answered 4xx (signature, shop, body): none expected.
    pub refused: u64,
    /// Generated messages stored by kedai (once each).
    pub stored: usize,
    /// Generated messages not stored at the end, whatever their path.
    pub lost: usize,
    /// Of those, messages whose push had been acknowledged.
    pub lost_acked: usize,
    /// Messages whose push the platform dropped, and how many kedai
    /// recovered through reconciliation.
    pub dropped: usize,
    pub recovered: usize,
    /// Messages stored more than once (same platform id).
    pub duplicate_messages: usize,
    /// Adjacent messages kedai shows in another order than the platform's
    /// timestamps say they were sent.
    pub misordered: usize,
    /// Buyer messages the pipeline has not decided on yet.
    pub undecided: usize,
    /// Seller-app messages stored as agent messages.
    pub seller_messages_as_agent: usize,
    /// kedai's outbound messages to buyers, and those the platform got.
    pub replies_expected: usize,
    pub replies_sent: usize,
    pub replies_missing: usize,
    /// Send calls whose idempotency key the platform had seen before.
    pub duplicate_replies: usize,
    /// kedai's own replies pushed back by the platform.
    pub echoes: u64,
    pub ack_ms_p50: f64,
    pub ack_ms_p99: f64,
    /// Buyer messages in the shops' histories pulled after the run
    /// (`kedai shop history`), and what those histories got wrong: a
    /// generated message missing, or one of kedai's own replies left in as
    /// a person's.
    pub history_lines: usize,
    pub history_wrong: usize,
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    (sorted[rank.min(sorted.len() - 1)] * 100.0).round() / 100.0
}

/// Inputs of [`report`].
pub struct CensusInput<'a> {
    pub stored: &'a [Vec<StoredMessage>],
    pub generated: &'a HashMap<String, Generated>,
    pub stats: &'a HashMap<Platform, PushStats>,
    /// Idempotency keys the platforms received, with how often.
    pub keys: &'a HashMap<String, u32>,
    pub shop_platform: &'a HashMap<String, Platform>,
}

pub fn report(input: &CensusInput<'_>) -> BTreeMap<&'static str, PlatformReport> {
    let mut reports: BTreeMap<&'static str, PlatformReport> = BTreeMap::new();
    let platforms = [Platform::Shopee, Platform::Lazada, Platform::Tiktok];
    for p in platforms {
        let r = reports.entry(p.as_str()).or_default();
        let stats = input.stats.get(&p).cloned().unwrap_or_default();
        r.delivered = stats.delivered;
        r.acked = stats.acked;
        r.refused = stats.refused;
        r.echoes = stats.echoes;
        r.ack_ms_p50 = percentile(&stats.ack_ms, 50.0);
        r.ack_ms_p99 = percentile(&stats.ack_ms, 99.0);
    }
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut stored_ids: HashSet<&str> = HashSet::new();
    for conversation in input.stored {
        let mut last_time: Option<i64> = None;
        for m in conversation {
            let Some(platform) = input.shop_platform.get(&m.shop) else {
                continue;
            };
            let r = reports.entry(platform.as_str()).or_default();
            match m
                .external_id
                .as_deref()
                .and_then(|e| input.generated.get(e).map(|g| (e, g)))
            {
                Some((external, g)) => {
                    *seen
                        .entry((m.shop.clone(), external.to_owned()))
                        .or_default() += 1;
                    stored_ids.insert(external);
                    if !g.from_buyer && m.direction == "outbound" && m.author == "agent" {
                        r.seller_messages_as_agent += 1;
                    }
                    if g.from_buyer && !m.decided {
                        r.undecided += 1;
                    }
                    if last_time.is_some_and(|t| g.platform_time < t) {
                        r.misordered += 1;
                    }
                    last_time = Some(g.platform_time);
                }
                None if m.direction == "outbound" => {
                    r.replies_expected += 1;
                    if input.keys.contains_key(&format!("reply:{}#0", m.id)) {
                        r.replies_sent += 1;
                    } else {
                        r.replies_missing += 1;
                    }
                }
                None => {}
            }
        }
    }
    for ((shop, _), n) in &seen {
        if let Some(p) = input.shop_platform.get(shop) {
            reports.entry(p.as_str()).or_default().duplicate_messages += n.saturating_sub(1);
        }
    }
    for (id, g) in input.generated {
        let r = reports.entry(g.platform.as_str()).or_default();
        r.messages += 1;
        let stored = stored_ids.contains(id.as_str());
        if stored {
            r.stored += 1;
        } else {
            r.lost += 1;
            if g.acked {
                r.lost_acked += 1;
            }
        }
        if g.dropped {
            r.dropped += 1;
            if stored {
                r.recovered += 1;
            }
        }
    }
    let shop_of: HashMap<&str, &str> = input
        .stored
        .iter()
        .flatten()
        .map(|m| (m.id.as_str(), m.shop.as_str()))
        .collect();
    for (key, n) in input.keys {
        let platform = key
            .strip_prefix("reply:")
            .and_then(|rest| rest.split('#').next())
            .and_then(|message| shop_of.get(message))
            .and_then(|shop| input.shop_platform.get(*shop));
        if let Some(p) = platform {
            reports.entry(p.as_str()).or_default().duplicate_replies +=
                (*n as usize).saturating_sub(1);
        }
    }
    reports
}

/// Whether a run kept every guarantee.
pub fn all_kept(reports: &BTreeMap<&'static str, PlatformReport>) -> bool {
    reports.values().all(|r| {
        r.lost == 0
            && r.duplicate_messages == 0
            && r.duplicate_replies == 0
            && r.replies_missing == 0
            && r.refused == 0
            && r.misordered == 0
            && r.history_wrong == 0
    })
}
