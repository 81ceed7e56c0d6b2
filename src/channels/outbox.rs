//! The outbox worker: leases due deliveries from the store and sends them,
//! replies through the shop's platform and events to integration
//! endpoints.
//!
//! A reply is checked against the platform's chat rules, split into parts
//! the platform accepts, and sent part by part, each recorded as it lands
//! (so a crash resends nothing already recorded), each with an idempotency
//! key `reply:<message id>#<part>`. When an attempt may have landed
//! without kedai learning it (a crash mid-send, a timeout), the platform's
//! own message list is read before sending again. Rate limits put a
//! delivery back without using an attempt; failures back off
//! exponentially with jitter; a reply that cannot be delivered is
//! dead-lettered and its conversation handed to a human with the reason.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::adapter::{Recipient, RemoteThread, SendError};
use super::{rules, signature, ChannelError, Channels, Connected};
use crate::domain::Sender;
use crate::metrics as m;
use crate::store::{OutboxItem, OutboxOutcome, OutboxTarget};

/// Delay before attempt `attempt + 1`: base * 2^(attempt-1), capped, minus
/// up to a quarter at random so a burst's retries spread out.
pub fn backoff(base_ms: u64, max_ms: u64, attempt: u32, jitter: f64) -> Duration {
    let raw = base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
        .min(max_ms);
    Duration::from_millis(raw - (raw as f64 * 0.25 * jitter.clamp(0.0, 1.0)) as u64)
}

fn later(delay: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(60))
}

/// Runs until `cancel`: leases what is due, delivers up to
/// `outbox_concurrency` at once.
pub async fn run(channels: Arc<Channels>, cancel: CancellationToken) {
    let owner = format!(
        "outbox-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    );
    let lease =
        chrono::Duration::seconds(i64::try_from(channels.settings.outbox_lease_secs).unwrap_or(30));
    let poll = Duration::from_millis(channels.settings.outbox_poll_ms);
    let capacity = channels.settings.outbox_concurrency;
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
    let mut last_gauge = last_prune;
    loop {
        while inflight.try_join_next().is_some() {}
        let free = capacity.saturating_sub(inflight.len());
        let leased = if free == 0 {
            Vec::new()
        } else {
            match channels
                .store
                .lease_outbox(&owner, u32::try_from(free).unwrap_or(1), lease)
                .await
            {
                Ok(items) => items,
                Err(err) => {
                    tracing::warn!(error = %err, "could not lease outbox deliveries");
                    Vec::new()
                }
            }
        };
        let idle = leased.is_empty();
        for item in leased {
            let channels = channels.clone();
            let owner = owner.clone();
            inflight.spawn(async move { deliver(&channels, &owner, item).await });
        }
        if last_prune.elapsed() > Duration::from_secs(600) {
            channels.limits.prune();
            prune_sent(&channels).await;
            last_prune = std::time::Instant::now();
        }
        if last_gauge.elapsed() > Duration::from_secs(10) {
            if let Ok(counts) = channels.store.outbox_counts().await {
                m::outbox_counts(&counts);
            }
            last_gauge = std::time::Instant::now();
        }
        if idle || free == 0 {
            tokio::select! {
                _ = channels.outbox_wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
                _ = cancel.cancelled() => break,
            }
        }
        if cancel.is_cancelled() {
            break;
        }
    }
    // Deliveries in flight finish or are abandoned with the process; their
    // leases run out and the next start treats them as in doubt.
    inflight.abort_all();
}

/// How long delivered rows (and the platform ids that recognise kedai's
/// own messages coming back) are kept: longer than any reconciliation
/// reads back (`channels.reconcile_lookback_hours`, 72 by default).
const KEEP_SENT: chrono::Duration = chrono::Duration::days(7);

async fn prune_sent(channels: &Channels) {
    match channels.store.prune_outbox(Utc::now() - KEEP_SENT).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(pruned = n, "pruned delivered outbox rows"),
        Err(err) => tracing::warn!(error = %err, "could not prune the outbox"),
    }
}

/// The `outbox.deliver` span of one attempt, continuing the trace of the
/// job run that wrote the row.
fn delivery_span(item: &OutboxItem) -> tracing::Span {
    let (kind, conversation, message) = match &item.target {
        OutboxTarget::Reply {
            conversation_id,
            message_id,
            ..
        } => ("reply", conversation_id.to_string(), message_id.to_string()),
        OutboxTarget::Event { .. } => ("event", String::new(), String::new()),
    };
    crate::telemetry::outbox_span(crate::telemetry::Leased {
        id: &item.id,
        kind,
        attempt: item.attempts,
        tenant: &item.tenant_id.to_string(),
        conversation_id: &conversation,
        message_id: &message,
        traceparent: item.traceparent.as_deref(),
    })
}

async fn deliver(channels: &Channels, owner: &str, item: OutboxItem) {
    let span = delivery_span(&item);
    deliver_attempt(channels, owner, item)
        .instrument(span)
        .await
}

async fn deliver_attempt(channels: &Channels, owner: &str, item: OutboxItem) {
    let started = std::time::Instant::now();
    let (kind, outcome) = match &item.target {
        OutboxTarget::Reply { .. } => ("reply", deliver_reply(channels, owner, &item).await),
        OutboxTarget::Event { .. } => ("event", deliver_event(channels, &item).await),
    };
    let label = match &outcome {
        OutboxOutcome::Delivered => "delivered",
        OutboxOutcome::Retry { counted: false, .. } => "deferred",
        OutboxOutcome::Retry { .. } => "retry",
        OutboxOutcome::Dead { .. } => "dead",
        OutboxOutcome::PartSent { .. } => "part",
    };
    tracing::Span::current().record("outcome", label);
    if let OutboxOutcome::Dead { error } = &outcome {
        tracing::warn!(outbox = %item.id, kind, %error, "delivery dead-lettered");
    }
    match channels
        .store
        .finish_outbox(&item.id, owner, &outcome)
        .await
    {
        Ok(true) => m::outbox_delivery(kind, label, started.elapsed()),
        Ok(false) => {
            tracing::warn!(outbox = %item.id, "lease lost before the outcome was recorded")
        }
        Err(err) => {
            tracing::error!(outbox = %item.id, error = %err, "could not record a delivery outcome; it will be retried as in doubt")
        }
    }
}

fn failed(
    channels: &Channels,
    item: &OutboxItem,
    err: SendError,
    max_attempts: u32,
) -> OutboxOutcome {
    let s = &channels.settings;
    let retry =
        |in_doubt: bool, counted: bool, delay: Duration, error: String| OutboxOutcome::Retry {
            at: later(delay),
            error,
            in_doubt,
            counted,
        };
    let delay = backoff(
        s.backoff_base_ms,
        s.backoff_max_ms,
        item.attempts,
        rand::rng().random(),
    );
    match err {
        SendError::RateLimited {
            message,
            retry_after,
        } => retry(false, false, retry_after.unwrap_or(delay), message),
        SendError::Rejected(message) => OutboxOutcome::Dead { error: message },
        SendError::Transient(message) if item.attempts >= max_attempts => {
            OutboxOutcome::Dead { error: message }
        }
        SendError::Uncertain(message) if item.attempts >= max_attempts => OutboxOutcome::Dead {
            error: format!("{message}; the buyer may or may not have received it"),
        },
        SendError::Transient(message) => retry(false, true, delay, message),
        SendError::Uncertain(message) => retry(true, true, delay, message),
    }
}

/// Whether the platform already has `part` from an earlier attempt: a
/// seller message with exactly this text since that attempt began that is
/// not already recorded as another reply of kedai's.
async fn already_sent(
    channels: &Channels,
    shop: &Connected,
    thread: Option<&str>,
    buyer: &str,
    part: &str,
    since: DateTime<Utc>,
) -> Result<Option<String>, ChannelError> {
    let Some(thread) = thread else {
        return Ok(None);
    };
    let remote = RemoteThread {
        id: thread.to_owned(),
        buyer: Some(buyer.to_owned()),
        buyer_name: None,
        last_message_at: Utc::now(),
    };
    let listed = shop
        .adapter
        .list_messages(&remote, since - chrono::Duration::minutes(2))
        .await?;
    for m in listed {
        let same = matches!(m.sender, Sender::Seller { .. })
            && m.text.as_deref().map(str::trim) == Some(part.trim());
        if same && !channels.store.is_own_message(shop.shop.id, &m.id).await? {
            return Ok(Some(m.id));
        }
    }
    Ok(None)
}

fn not_connected(channels: &Channels, item: &OutboxItem) -> OutboxOutcome {
    let max_age = chrono::Duration::hours(
        i64::try_from(channels.settings.unconnected_max_age_hours).unwrap_or(24),
    );
    if Utc::now() - item.created_at > max_age {
        return OutboxOutcome::Dead {
            error: "the shop has no platform credentials".into(),
        };
    }
    OutboxOutcome::Retry {
        at: later(Duration::from_secs(60)),
        error: "the shop is not connected yet (no credentials)".into(),
        in_doubt: false,
        counted: false,
    }
}

async fn deliver_reply(channels: &Channels, owner: &str, item: &OutboxItem) -> OutboxOutcome {
    let OutboxTarget::Reply {
        shop,
        buyer,
        text,
        parts_sent,
        message_id,
        ..
    } = &item.target
    else {
        unreachable!("deliver_reply is called for replies");
    };
    let connected = match channels.connected_shop(shop.id).await {
        Ok(c) => c,
        Err(ChannelError::NotConnected) => return not_connected(channels, item),
        Err(err) => {
            return OutboxOutcome::Retry {
                at: later(Duration::from_secs(5)),
                error: err.to_string(),
                in_doubt: false,
                counted: false,
            }
        }
    };
    let platform = channels.settings.platform(shop.platform);
    let findings = rules::check(shop.platform, text, &channels.allowed_hosts(shop));
    if !findings.is_empty() {
        return OutboxOutcome::Dead {
            error: rules::explain(&findings),
        };
    }
    let max_chars = platform.map_or(usize::MAX, |p| p.max_text_chars);
    let parts = rules::split(text, max_chars);
    let thread = match channels.store.buyer_thread(shop.id, buyer).await {
        Ok(thread) => thread,
        Err(err) => {
            return failed(
                channels,
                item,
                SendError::Transient(err.to_string()),
                channels.settings.max_attempts,
            )
        }
    };
    let mut in_doubt = item.in_doubt;
    for (index, part) in parts.iter().enumerate().skip(*parts_sent as usize) {
        let index = index as u32;
        if in_doubt {
            let since = item.previous_attempt_at.unwrap_or(item.created_at);
            match already_sent(
                channels,
                &connected,
                thread.as_deref(),
                buyer.as_str(),
                part,
                since,
            )
            .await
            {
                Ok(Some(platform_id)) => {
                    m::outbox_in_doubt("found");
                    if let Err(outcome) =
                        record_part(channels, owner, item, index, &platform_id).await
                    {
                        return outcome;
                    }
                    continue;
                }
                Ok(None) => m::outbox_in_doubt("not_found"),
                Err(err) => {
                    return OutboxOutcome::Retry {
                        at: later(backoff(1000, 60_000, item.attempts, 0.5)),
                        error: format!("cannot check whether an earlier attempt landed: {err}"),
                        in_doubt: true,
                        counted: true,
                    }
                }
            }
            in_doubt = false;
        }
        if let Err(wait) = channels.limits.try_send(shop.platform, shop.id) {
            return OutboxOutcome::Retry {
                at: later(wait),
                error: "rate limited by kedai's send limits".into(),
                in_doubt: false,
                counted: false,
            };
        }
        let key = format!("reply:{message_id}#{index}");
        let sent = connected
            .adapter
            .send_text(
                Recipient {
                    buyer: buyer.as_str(),
                    thread: thread.as_deref(),
                },
                part,
                &key,
            )
            .await;
        match sent {
            Ok(platform_id) => {
                if let Err(outcome) = record_part(channels, owner, item, index, &platform_id).await
                {
                    return outcome;
                }
            }
            Err(err) => return failed(channels, item, err, channels.settings.max_attempts),
        }
    }
    OutboxOutcome::Delivered
}

/// Records one delivered part; the outcome to return when that fails.
async fn record_part(
    channels: &Channels,
    owner: &str,
    item: &OutboxItem,
    part: u32,
    platform_id: &str,
) -> Result<(), OutboxOutcome> {
    let outcome = OutboxOutcome::PartSent {
        part,
        platform_id: platform_id.to_owned(),
    };
    match channels
        .store
        .finish_outbox(&item.id, owner, &outcome)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(OutboxOutcome::Retry {
            at: Utc::now(),
            error: "lease lost mid-delivery".into(),
            in_doubt: false,
            counted: false,
        }),
        Err(err) => Err(OutboxOutcome::Retry {
            at: later(Duration::from_secs(1)),
            error: format!("could not record a delivered part: {err}"),
            // The part landed but is not recorded: check before resending.
            in_doubt: true,
            counted: true,
        }),
    }
}

async fn deliver_event(channels: &Channels, item: &OutboxItem) -> OutboxOutcome {
    use secrecy::ExposeSecret;
    let OutboxTarget::Event {
        url,
        secret,
        event_type,
        body,
        ..
    } = &item.target
    else {
        unreachable!("deliver_event is called for events");
    };
    let timestamp = Utc::now().timestamp();
    let response = channels
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("kedai/", env!("CARGO_PKG_VERSION")))
        .header("X-Kedai-Event", event_type)
        .header("X-Kedai-Delivery", &item.id)
        .header("X-Kedai-Timestamp", timestamp.to_string())
        .header(
            "X-Kedai-Signature",
            signature::event(secret.expose_secret(), timestamp, body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await;
    let error = match response {
        Ok(r) if r.status().is_success() => return OutboxOutcome::Delivered,
        Ok(r) => format!("endpoint answered HTTP {}", r.status().as_u16()),
        Err(err) => format!("endpoint unreachable: {err}"),
    };
    let s = &channels.settings;
    if item.attempts >= s.event_max_attempts {
        return OutboxOutcome::Dead { error };
    }
    OutboxOutcome::Retry {
        at: later(backoff(
            s.backoff_base_ms,
            s.backoff_max_ms,
            item.attempts,
            rand::rng().random(),
        )),
        error,
        in_doubt: false,
        counted: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_down() {
        let delays: Vec<u64> = (1..=6)
            .map(|a| backoff(100, 1000, a, 0.0).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(100, 1000, 1, 1.0).as_millis(), 75);
        assert_eq!(backoff(100, 1000, u32::MAX, 0.0).as_millis(), 1000);
    }
}
