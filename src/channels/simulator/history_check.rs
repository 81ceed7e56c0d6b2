//! After a run, each shop's chat history is pulled through the fake
//! platforms' list APIs with kedai's store, as `kedai shop history` does,
//! and checked against what the platforms hold: every buyer message and
//! every message a person wrote in the seller app is there, and none of
//! kedai's own replies (they are not a person's).

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::census::{Generated, PlatformReport};
use crate::channels::{history, Channels};
use crate::config::Settings;
use crate::domain::{Platform, Sender};
use crate::store::{OpenedStore, Schema};

/// Adds `history_lines` and `history_wrong` to each platform's report.
pub(super) async fn check(
    settings: &Settings,
    generated: &HashMap<String, Generated>,
    since: DateTime<Utc>,
    reports: &mut BTreeMap<&'static str, PlatformReport>,
) -> anyhow::Result<()> {
    let store = OpenedStore::open(&settings.store, Schema::Current)
        .await
        .context("opening the simulation's store for the history check")?;
    let channels = Channels::for_command(store.store(), settings);
    let mut seen: HashMap<Platform, HashSet<String>> = HashMap::new();
    for shop in store.channel_shops(None).await? {
        let platform = shop.shop.platform;
        if !matches!(
            platform,
            Platform::Shopee | Platform::Lazada | Platform::Tiktok
        ) {
            continue;
        }
        let Ok(connected) = channels.connect(&shop) else {
            continue;
        };
        let (pulled, _own) = history::pull_people(
            store.store().as_ref(),
            shop.shop.id,
            connected.adapter.as_ref(),
            since,
        )
        .await?;
        let lines = history::lines(&shop.shop.key, &pulled);
        let report = reports.entry(platform.as_str()).or_default();
        report.history_lines += lines.len();
        seen.entry(platform).or_default().extend(
            pulled
                .iter()
                .flat_map(|t| t.messages.iter().map(|m| m.id.clone())),
        );
        // kedai's replies left in: a seller message nobody generated.
        report.history_wrong += pulled
            .iter()
            .flat_map(|t| &t.messages)
            .filter(|m| matches!(m.sender, Sender::Seller { .. }))
            .filter(|m| !generated.contains_key(&m.id))
            .count();
    }
    // Buyers' and people's messages the histories miss.
    for (id, g) in generated {
        if !seen.get(&g.platform).is_some_and(|ids| ids.contains(id)) {
            reports
                .entry(g.platform.as_str())
                .or_default()
                .history_wrong += 1;
        }
    }
    store.close().await;
    Ok(())
}
