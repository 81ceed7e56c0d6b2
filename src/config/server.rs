//! `[server]` and `[access]`: where kedai listens, its request limits, and
//! the throttling of failed authentication and each tenant's share of the
//! models; their validation. Nothing here opens a socket.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, Settings};

/// Authentication throttling and each tenant's share of the models
/// (`[access]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    /// Failed authentications one client address may make per window.
    pub failed_auth_limit: u32,
    pub failed_auth_window_secs: u64,
    /// Client addresses the failure counter remembers at most.
    pub failed_auth_clients: usize,
    /// Request header holding the client's address when a reverse proxy
    /// sits in front (`x-forwarded-for`, `x-real-ip`); empty: the peer.
    pub client_ip_header: String,
    /// Requests per minute one tenant may send to the `/v1` model
    /// endpoints, and how many may run at once.
    pub models_requests_per_minute: u32,
    pub models_concurrency_per_tenant: usize,
    /// Least seconds between two retrainings asked for over the API.
    pub reload_min_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub body_limit_bytes: usize,
    pub max_text_chars: usize,
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    /// A second address serving only `/metrics`, without credentials, for
    /// a scraper on a private network; empty for none.
    pub metrics_listen: String,
    /// This replica's name, the `instance` label on every metric; empty
    /// for the host name.
    pub instance: String,
    /// Seconds a client may take to send a request's headers.
    pub header_read_timeout_secs: u64,
    /// Requests handled at once; beyond, 503 with Retry-After.
    pub max_concurrent_requests: usize,
    /// Create the demo tenant, its shops, knowledge base, orders and a
    /// token on start (`serve --demo`).
    pub demo: bool,
}

impl ServerSettings {
    /// The metrics listener's address, if one is configured.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        let raw = self.metrics_listen.trim();
        (!raw.is_empty()).then(|| raw.parse().ok()).flatten()
    }
}

impl ServerSettings {
    /// `server.instance`, or the host name when that is empty.
    pub fn instance_name(&self) -> String {
        let configured = self.instance.trim();
        if !configured.is_empty() {
            return configured.to_owned();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "kedai".into())
    }
}

impl Settings {
    pub(super) fn validate_access(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let server = &self.server;
        if !server.metrics_listen.trim().is_empty() && server.metrics_address().is_none() {
            return invalid(format!(
                "server.metrics_listen must be an address such as 127.0.0.1:9464, got {:?}",
                server.metrics_listen
            ));
        }
        let access = &self.access;
        let positive = [
            (
                "server.header_read_timeout_secs",
                server.header_read_timeout_secs as u128,
            ),
            (
                "server.max_concurrent_requests",
                server.max_concurrent_requests as u128,
            ),
            ("access.failed_auth_limit", access.failed_auth_limit as u128),
            (
                "access.failed_auth_window_secs",
                access.failed_auth_window_secs as u128,
            ),
            (
                "access.failed_auth_clients",
                access.failed_auth_clients as u128,
            ),
            (
                "access.models_requests_per_minute",
                access.models_requests_per_minute as u128,
            ),
            (
                "access.models_concurrency_per_tenant",
                access.models_concurrency_per_tenant as u128,
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return invalid(format!("{key} must be > 0, got 0"));
        }
        let header = access.client_ip_header.trim();
        if !header.is_empty() && axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return invalid(format!(
                "access.client_ip_header must be a header name such as x-forwarded-for, got {header:?}"
            ));
        }
        Ok(())
    }
}
