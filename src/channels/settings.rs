//! `[channels]`: how kedai talks to the marketplaces and the widget. Plain
//! settings types, read by `config` and validated there; every value a
//! platform does not document is marked as kedai's assumption here and in
//! `config/default.toml`.

use std::collections::HashMap;

use serde::Deserialize;

use crate::domain::Platform;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    /// A validly signed push whose own timestamp is older than this is a
    /// replay: 401, nothing stored. Longer than every platform's retry
    /// ladder (TikTok Shop retries for 15 h).
    pub replay_window_secs: u64,
    /// Timeout of one call to a platform API.
    pub send_timeout_secs: u64,
    /// Seconds an outbox worker holds a delivery before another may take it
    /// over (then in doubt: the platform is asked before sending again).
    pub outbox_lease_secs: u64,
    /// Deliveries in flight at once.
    pub outbox_concurrency: usize,
    /// How often the outbox looks for due deliveries when idle.
    pub outbox_poll_ms: u64,
    /// Attempts before a reply is dead-lettered and its conversation handed
    /// to a human.
    pub max_attempts: u32,
    /// Backoff between attempts: base * 2^(attempt-1), capped, with jitter.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// A reply to a shop without credentials waits for them this long, then
    /// goes to a human.
    pub unconnected_max_age_hours: u64,
    /// Reconcile every connected shop when the server starts.
    pub reconcile_on_start: bool,
    /// How far back the first reconciliation of a shop looks.
    pub reconcile_lookback_hours: u64,
    /// How often the deadline timer looks at unanswered messages.
    pub deadline_scan_secs: u64,
    /// A conversation is flagged at risk this long before its deadline.
    pub at_risk_before_mins: u64,
    /// Send a short acknowledgement in the buyer's language this long
    /// before the deadline when no one has answered (0: never).
    pub auto_ack_before_mins: u64,
    /// Fetched orders are fetched again after this long.
    pub order_cache_secs: u64,
    /// How long the pipeline waits for a platform's order API.
    pub order_fetch_timeout_ms: u64,
    /// How often audit events are turned into event-webhook deliveries.
    pub events_poll_ms: u64,
    /// Attempts for one event delivery.
    pub event_max_attempts: u32,
    /// Widget sessions one client address may open per minute.
    pub widget_sessions_per_minute: u32,
    /// Widget messages one session may send per minute.
    pub widget_messages_per_minute: u32,
    pub shopee: PlatformSettings,
    pub lazada: PlatformSettings,
    pub tiktok: PlatformSettings,
    pub web: PlatformSettings,
    /// Per-shop overrides, by shop handle.
    #[serde(default)]
    pub shops: HashMap<String, ShopOverrides>,
}

/// What differs per platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSettings {
    /// Default API host; a shop's credentials may name another
    /// (`api_base`), e.g. a regional host.
    pub api_base: String,
    /// Longest text the platform's chat accepts; longer replies are sent in
    /// parts split at sentence or word boundaries.
    pub max_text_chars: usize,
    /// Sends per second for the whole platform app, and per shop.
    pub rate_per_sec: u32,
    pub shop_rate_per_sec: u32,
    /// Hours a seller has to answer a buyer's message.
    pub response_deadline_hours: f64,
    /// How often conversations are pulled through the API to recover lost
    /// pushes (0: only on start).
    pub reconcile_interval_secs: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopOverrides {
    pub response_deadline_hours: Option<f64>,
    pub auto_ack_before_mins: Option<u64>,
}

impl ChannelSettings {
    pub fn platform(&self, platform: Platform) -> Option<&PlatformSettings> {
        match platform {
            Platform::Shopee => Some(&self.shopee),
            Platform::Lazada => Some(&self.lazada),
            Platform::Tiktok => Some(&self.tiktok),
            Platform::Web => Some(&self.web),
            Platform::Generic => None,
        }
    }

    /// The response deadline of a shop, in hours.
    pub fn deadline_hours(&self, platform: Platform, shop: &str) -> Option<f64> {
        self.shops
            .get(shop)
            .and_then(|o| o.response_deadline_hours)
            .or_else(|| self.platform(platform).map(|p| p.response_deadline_hours))
    }

    pub fn auto_ack_before_mins(&self, shop: &str) -> u64 {
        self.shops
            .get(shop)
            .and_then(|o| o.auto_ack_before_mins)
            .unwrap_or(self.auto_ack_before_mins)
    }

    /// Checks the values; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("channels.send_timeout_secs", self.send_timeout_secs),
            ("channels.outbox_lease_secs", self.outbox_lease_secs),
            ("channels.outbox_poll_ms", self.outbox_poll_ms),
            ("channels.deadline_scan_secs", self.deadline_scan_secs),
            ("channels.events_poll_ms", self.events_poll_ms),
            (
                "channels.order_fetch_timeout_ms",
                self.order_fetch_timeout_ms,
            ),
            ("channels.replay_window_secs", self.replay_window_secs),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{key} must be > 0, got 0"));
        }
        if self.outbox_lease_secs <= self.send_timeout_secs {
            return Err(format!(
                "channels.outbox_lease_secs ({}) must be greater than channels.send_timeout_secs \
                 ({}), or a delivery could be taken over while it is still being sent",
                self.outbox_lease_secs, self.send_timeout_secs
            ));
        }
        // Delivered replies are remembered for a week, so a reconciliation
        // reading further back could take kedai's own replies for the
        // seller's.
        if !(1..=168).contains(&self.reconcile_lookback_hours) {
            return Err(format!(
                "channels.reconcile_lookback_hours must be 1 to 168, got {}",
                self.reconcile_lookback_hours
            ));
        }
        if self.outbox_concurrency == 0 || self.outbox_concurrency > 256 {
            return Err(format!(
                "channels.outbox_concurrency must be 1 to 256, got {}",
                self.outbox_concurrency
            ));
        }
        if self.max_attempts == 0 || self.event_max_attempts == 0 {
            return Err("channels.max_attempts and channels.event_max_attempts must be > 0".into());
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return Err(format!(
                "channels.backoff_base_ms ({}) must be <= channels.backoff_max_ms ({})",
                self.backoff_base_ms, self.backoff_max_ms
            ));
        }
        if self.widget_sessions_per_minute == 0 || self.widget_messages_per_minute == 0 {
            return Err("channels.widget_*_per_minute must be > 0".into());
        }
        for (name, p) in [
            ("shopee", &self.shopee),
            ("lazada", &self.lazada),
            ("tiktok", &self.tiktok),
            ("web", &self.web),
        ] {
            if !(p.api_base.starts_with("http://") || p.api_base.starts_with("https://")) {
                return Err(format!(
                    "channels.{name}.api_base must be an http(s) URL, got {:?}",
                    p.api_base
                ));
            }
            if p.max_text_chars < 20 || p.max_text_chars > 100_000 {
                return Err(format!(
                    "channels.{name}.max_text_chars must be 20 to 100000, got {}",
                    p.max_text_chars
                ));
            }
            if p.rate_per_sec == 0 || p.shop_rate_per_sec == 0 {
                return Err(format!(
                    "channels.{name}.rate_per_sec and shop_rate_per_sec must be > 0"
                ));
            }
            if !(p.response_deadline_hours.is_finite() && p.response_deadline_hours > 0.0) {
                return Err(format!(
                    "channels.{name}.response_deadline_hours must be > 0, got {}",
                    p.response_deadline_hours
                ));
            }
        }
        for (shop, o) in &self.shops {
            if let Some(h) = o.response_deadline_hours {
                if !(h.is_finite() && h > 0.0) {
                    return Err(format!(
                        "channels.shops.{shop}.response_deadline_hours must be > 0, got {h}"
                    ));
                }
            }
        }
        Ok(())
    }
}
