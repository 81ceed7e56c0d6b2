//! Reconciliation: pushes missed while kedai was down (or lost by the
//! platform) are recovered by reading recent conversations and messages
//! through each platform's API, and Shopee's lost-push list, and storing
//! what is not stored yet. Everything goes through the same idempotent
//! ingest as pushes, so nothing is stored twice.
//!
//! A shop is reconciled on start and every
//! `channels.<platform>.reconcile_interval_secs`; each run reads from the
//! previous run's start (less an overlap) and records where it started.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::adapter::{PushEvent, RemoteThread};
use super::ingest::{self, Stored};
use super::signature::PushSigner;
use super::{ChannelError, Channels, Connected};
use crate::domain::Platform;
use crate::metrics as m;

/// Re-read this much before the previous run's start: messages stamped by
/// the platform's clock may arrive a little late.
const OVERLAP: chrono::Duration = chrono::Duration::minutes(1);
const CURSOR: &str = "reconciled_from";

/// What a run found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub threads: usize,
    pub messages: usize,
    pub stored: usize,
    pub lost_pushes: usize,
}

/// Reads one shop's conversations since `since` and stores what is new.
pub async fn shop_since(
    channels: &Arc<Channels>,
    shop: &Connected,
    since: DateTime<Utc>,
) -> Result<Report, ChannelError> {
    let mut report = Report::default();
    let threads = shop.adapter.list_threads(since).await?;
    report.threads = threads.len();
    for thread in &threads {
        report.add(thread_messages(channels, shop, thread, since).await?);
    }
    Ok(report)
}

async fn thread_messages(
    channels: &Arc<Channels>,
    shop: &Connected,
    thread: &RemoteThread,
    since: DateTime<Utc>,
) -> Result<Report, ChannelError> {
    let mut report = Report::default();
    let mut messages = shop.adapter.list_messages(thread, since).await?;
    // Oldest first, so a conversation is rebuilt in the order it happened.
    messages.sort_by(|a, b| a.sent_at.cmp(&b.sent_at).then(a.id.cmp(&b.id)));
    report.messages = messages.len();
    for message in &messages {
        match ingest::store(channels, &shop.shop, message).await {
            Ok(Stored::New) => report.stored += 1,
            Ok(_) => {}
            Err(ChannelError::UnknownThread { .. }) => {}
            Err(ChannelError::Invalid(err)) => {
                tracing::warn!(shop = %shop.shop.key, message = %message.id, error = %err, "message not stored");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(report)
}

impl Report {
    fn add(&mut self, other: Report) {
        self.threads += other.threads;
        self.messages += other.messages;
        self.stored += other.stored;
        self.lost_pushes += other.lost_pushes;
    }
}

/// Reconciles a shop from its cursor (or `reconcile_lookback_hours` ago the
/// first time) and moves the cursor to this run's start.
pub async fn shop(channels: &Arc<Channels>, shop: &Connected) -> Result<Report, ChannelError> {
    let started = Utc::now();
    let scope = format!("shop:{}", shop.shop.id);
    let lookback = chrono::Duration::hours(
        i64::try_from(channels.settings.reconcile_lookback_hours).unwrap_or(72),
    );
    let since = match channels.store.cursor(&scope, CURSOR).await? {
        Some(raw) => DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc) - OVERLAP)
            .unwrap_or(started - lookback),
        None => started - lookback,
    };
    let report = shop_since(channels, shop, since).await?;
    channels
        .store
        .set_cursor(&scope, CURSOR, &started.to_rfc3339())
        .await?;
    Ok(report)
}

/// Reads Shopee's lost-push list of one app through one of its shops,
/// stores what the pushes carry, and confirms them.
pub async fn lost_pushes(
    channels: &Arc<Channels>,
    via: &Connected,
    shops: &[Connected],
) -> Result<usize, ChannelError> {
    let mut recovered = 0;
    for _page in 0..50 {
        let lost = via.adapter.lost_pushes().await?;
        for body in &lost.bodies {
            let push = match via.adapter.parse_push(body.as_bytes()) {
                Ok(push) => push,
                Err(err) => {
                    tracing::warn!(error = %err, "lost push does not parse; skipped");
                    continue;
                }
            };
            let Some(shop) = shops
                .iter()
                .find(|s| s.account.is_some() && s.account == push.account)
            else {
                continue;
            };
            for event in push.events {
                if let PushEvent::Message(message) = event {
                    if matches!(
                        ingest::store(channels, &shop.shop, &message).await,
                        Ok(Stored::New)
                    ) {
                        recovered += 1;
                    }
                }
            }
        }
        if let Some(last) = &lost.last_id {
            via.adapter.confirm_lost_pushes(last).await?;
        }
        if !lost.more || lost.bodies.is_empty() {
            break;
        }
    }
    Ok(recovered)
}

/// Reconciles every connected shop of `platform`, and reads lost pushes
/// once per app.
pub async fn platform(channels: &Arc<Channels>, platform: Platform) -> Report {
    let mut total = Report::default();
    let shops = match channels.connected(platform).await {
        Ok(shops) => shops,
        Err(err) => {
            tracing::warn!(%platform, error = %err, "cannot list shops to reconcile");
            return total;
        }
    };
    let mut apps: Vec<PushSigner> = Vec::new();
    for shop in &shops {
        if let Some(signer) = shop.adapter.push_signer() {
            if !apps.iter().any(|a| a.same_app(&signer)) {
                apps.push(signer);
                match lost_pushes(channels, shop, &shops).await {
                    Ok(n) => total.lost_pushes += n,
                    Err(err) => {
                        tracing::warn!(shop = %shop.shop.key, error = %err, "lost pushes not read")
                    }
                }
            }
        }
        match self::shop(channels, shop).await {
            Ok(report) => {
                m::reconciled(platform.as_str(), report.stored);
                total.add(report);
            }
            Err(err) => {
                m::reconcile_failed(platform.as_str());
                tracing::warn!(shop = %shop.shop.key, error = %err, "reconciliation failed; retried next time");
            }
        }
    }
    if total.stored > 0 || total.lost_pushes > 0 {
        tracing::info!(%platform, stored = total.stored, lost_pushes = total.lost_pushes, "reconciliation recovered messages");
    }
    total
}

/// Reads one conversation after a push said it changed (or named it
/// without its buyer), in the background, a few at a time.
pub fn spawn_thread(channels: &Arc<Channels>, shop: Connected, thread: String) {
    let Ok(permit) = channels.background.clone().try_acquire_owned() else {
        // Busy: the periodic reconciliation will read it.
        return;
    };
    let channels = channels.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let since = Utc::now() - chrono::Duration::days(7);
        let buyer = channels
            .store
            .thread_buyer(shop.shop.id, &thread)
            .await
            .ok()
            .flatten();
        let remote = match buyer {
            Some(buyer) => RemoteThread {
                id: thread.clone(),
                buyer: Some(buyer),
                buyer_name: None,
                last_message_at: Utc::now(),
            },
            // A conversation kedai has not seen: the platform's list says
            // who it is with.
            None => match shop.adapter.list_threads(since).await {
                Ok(threads) => match threads.into_iter().find(|t| t.id == thread) {
                    Some(found) => found,
                    None => return,
                },
                Err(err) => {
                    tracing::warn!(shop = %shop.shop.key, %thread, error = %err, "conversation not listed");
                    return;
                }
            },
        };
        if let Err(err) = thread_messages(&channels, &shop, &remote, since).await {
            tracing::warn!(shop = %shop.shop.key, %thread, error = %err, "conversation not read");
        }
    });
}

/// A replica starting within this long of another's reconciliation of a
/// platform with no interval leaves it to that one.
const START_CLAIM: Duration = Duration::from_secs(300);

/// Whether this replica reconciles `platform` now: once per interval (or
/// per [`START_CLAIM`] when it has none) across every replica.
async fn claimed(channels: &Channels, platform: Platform) -> bool {
    let interval = channels
        .settings
        .platform(platform)
        .map_or(0, |s| s.reconcile_interval_secs);
    let period = match interval {
        0 => START_CLAIM,
        secs => Duration::from_secs(secs),
    };
    let name = format!("reconcile:{platform}");
    match channels.store.claim_timer(&name, period).await {
        Ok(claimed) => claimed,
        Err(err) => {
            tracing::warn!(%platform, error = %err, "reconciliation timer not claimed");
            false
        }
    }
}

/// Reconciles on start, then each platform on its own interval; each
/// platform once per period across every replica.
pub async fn run(channels: Arc<Channels>, cancel: CancellationToken) {
    let platforms = [Platform::Shopee, Platform::Lazada, Platform::Tiktok];
    if channels.settings.reconcile_on_start {
        for p in platforms {
            if cancel.is_cancelled() {
                return;
            }
            if claimed(&channels, p).await {
                platform(&channels, p).await;
            }
        }
    }
    let mut last_run: Vec<(Platform, std::time::Instant)> = platforms
        .iter()
        .map(|p| (*p, std::time::Instant::now()))
        .collect();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = cancel.cancelled() => return,
        }
        for (p, at) in &mut last_run {
            let interval = channels
                .settings
                .platform(*p)
                .map_or(0, |s| s.reconcile_interval_secs);
            if interval == 0 || at.elapsed() < Duration::from_secs(interval) {
                continue;
            }
            *at = std::time::Instant::now();
            if claimed(&channels, *p).await {
                platform(&channels, *p).await;
            }
        }
    }
}
