//! Who may call what. [`ROUTES`] is the one table saying what every route
//! requires (nothing, a tenant token with a scope, or an operator token);
//! [`authorize`] enforces it before any handler runs and puts the caller
//! in the request's extensions, where the [`Tenant`] and [`Operator`]
//! extractors find it. A route missing from the table gets no caller, so
//! its extractors refuse: access fails closed.
//!
//! Failed authentication is counted per client address ([`AuthThrottle`]);
//! a client over its budget is answered 429 without a store lookup, and so
//! is a token that cannot be one of ours.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::error::ApiError;
use super::AppState;
use crate::auth::{token_hash, Scope, Scopes, TokenShape};
use crate::config::AccessSettings;
use crate::domain::{ShopKey, TenantId, TokenId};
use crate::metrics as m;

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Anyone; an operator token or a tenant `admin` token also gets the
    /// details (`/readyz`). A bad token is still refused.
    PublicWithDetails,
    /// A tenant token holding this scope.
    Tenant(Scope),
    /// An operator token: the route acts on the whole server.
    Operator,
    /// No kedai token: the route checks credentials of its own, a
    /// platform's signature over the raw body (the webhooks) or a
    /// web-chat visitor's session secret (the widget), and refuses
    /// anything else itself.
    OwnCredentials,
}

/// Every route of the API and what it requires. The OpenAPI document's
/// security requirements are written from this table, and a test walks
/// every documented operation against it.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Public),
    ("GET", "/readyz", Access::PublicWithDetails),
    ("GET", "/metrics", Access::Operator),
    ("GET", "/api/v1/openapi.json", Access::Public),
    ("POST", "/api/v1/messages", Access::Tenant(Scope::Ingest)),
    ("GET", "/api/v1/conversations", Access::Tenant(Scope::Read)),
    (
        "GET",
        "/api/v1/conversations/{id}",
        Access::Tenant(Scope::Read),
    ),
    (
        "POST",
        "/api/v1/conversations/{id}/replies",
        Access::Tenant(Scope::Reply),
    ),
    (
        "PUT",
        "/api/v1/conversations/{id}/status",
        Access::Tenant(Scope::Reply),
    ),
    (
        "PUT",
        "/api/v1/conversations/{id}/custody",
        Access::Tenant(Scope::Reply),
    ),
    (
        "GET",
        "/api/v1/shops/{shop}/policy",
        Access::Tenant(Scope::Read),
    ),
    // Changing how the AI answers for a shop is the tenant's decision.
    (
        "PUT",
        "/api/v1/shops/{shop}/policy",
        Access::Tenant(Scope::Admin),
    ),
    (
        "GET",
        "/api/v1/shops/{shop}/policy/changes",
        Access::Tenant(Scope::Read),
    ),
    (
        "POST",
        "/api/v1/shops/{shop}/policy/changes/{id}/restore",
        Access::Tenant(Scope::Admin),
    ),
    ("POST", "/api/v1/orders", Access::Tenant(Scope::Orders)),
    ("GET", "/api/v1/orders", Access::Tenant(Scope::Read)),
    ("GET", "/api/v1/orders/{id}", Access::Tenant(Scope::Read)),
    ("POST", "/api/v1/kb/search", Access::Tenant(Scope::Read)),
    ("GET", "/api/v1/kb/entries", Access::Tenant(Scope::Read)),
    (
        "GET",
        "/api/v1/kb/entries/{kind}/{id}",
        Access::Tenant(Scope::Read),
    ),
    (
        "PUT",
        "/api/v1/kb/entries/{kind}/{id}",
        Access::Tenant(Scope::Kb),
    ),
    (
        "DELETE",
        "/api/v1/kb/entries/{kind}/{id}",
        Access::Tenant(Scope::Kb),
    ),
    (
        "GET",
        "/api/v1/kb/entries/{kind}/{id}/history",
        Access::Tenant(Scope::Read),
    ),
    (
        "GET",
        "/api/v1/kb/translations",
        Access::Tenant(Scope::Read),
    ),
    ("GET", "/api/v1/kb/asked", Access::Tenant(Scope::Read)),
    (
        "PUT",
        "/api/v1/kb/translations/{kind}/{id}/{lang}",
        Access::Tenant(Scope::Kb),
    ),
    ("GET", "/v1/models", Access::Tenant(Scope::Models)),
    ("POST", "/v1/embeddings", Access::Tenant(Scope::Models)),
    (
        "POST",
        "/v1/chat/completions",
        Access::Tenant(Scope::Models),
    ),
    ("POST", "/api/v1/understand/reload", Access::Operator),
    ("GET", "/api/v1/deadlines", Access::Tenant(Scope::Read)),
    (
        "GET",
        "/api/v1/reports/summary",
        Access::Tenant(Scope::Read),
    ),
    (
        "GET",
        "/api/v1/reports/conversations",
        Access::Tenant(Scope::Read),
    ),
    (
        "GET",
        "/api/v1/reports/resolution",
        Access::Tenant(Scope::Read),
    ),
    ("GET", "/api/v1/reports/gaps", Access::Tenant(Scope::Read)),
    // Correcting what kedai read is part of answering conversations;
    // rolling the tenant's classifiers back is knowledge management.
    (
        "POST",
        "/api/v1/learning/corrections",
        Access::Tenant(Scope::Reply),
    ),
    (
        "POST",
        "/api/v1/learning/route-corrections",
        Access::Tenant(Scope::Reply),
    ),
    ("GET", "/api/v1/learning/heads", Access::Tenant(Scope::Read)),
    (
        "POST",
        "/api/v1/learning/heads/rollback",
        Access::Tenant(Scope::Kb),
    ),
    // Suggested FAQ entries are read like the gaps report; accepting one
    // writes the knowledge base.
    (
        "GET",
        "/api/v1/learning/faq-suggestions",
        Access::Tenant(Scope::Read),
    ),
    (
        "POST",
        "/api/v1/learning/faq-suggestions/{id}/accept",
        Access::Tenant(Scope::Kb),
    ),
    (
        "POST",
        "/api/v1/learning/faq-suggestions/{id}/dismiss",
        Access::Tenant(Scope::Kb),
    ),
    // Tagging is part of answering conversations.
    (
        "PUT",
        "/api/v1/conversations/{id}/tags/{tag}",
        Access::Tenant(Scope::Reply),
    ),
    (
        "DELETE",
        "/api/v1/conversations/{id}/tags/{tag}",
        Access::Tenant(Scope::Reply),
    ),
    ("POST", "/webhooks/shopee", Access::OwnCredentials),
    ("POST", "/webhooks/lazada", Access::OwnCredentials),
    ("POST", "/webhooks/tiktok", Access::OwnCredentials),
    ("POST", "/widget/v1/sessions", Access::OwnCredentials),
    ("POST", "/widget/v1/messages", Access::OwnCredentials),
    ("GET", "/widget/v1/events", Access::OwnCredentials),
];

/// What `method path` requires; `None` for a route the table lacks.
pub fn access_for(method: &str, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
        .map(|(_, _, access)| *access)
}

/// A caller holding a valid tenant token.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub token: TokenId,
    pub scopes: Scopes,
    /// The one shop a shop-bound token acts for.
    pub shop: Option<ShopKey>,
}

impl Tenant {
    /// How this caller appears in the audit log.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token)
    }

    /// Refuses to act for `shop` when the token is bound to another one.
    pub fn check_shop(&self, shop: &ShopKey) -> Result<(), ApiError> {
        match &self.shop {
            Some(own) if own != shop => Err(ApiError::Forbidden(format!(
                "this token acts for shop {:?} only, not {:?}",
                own.as_str(),
                shop.as_str()
            ))),
            _ => Ok(()),
        }
    }

    /// Whether a record of `shop` is visible to this token.
    pub fn sees_shop(&self, shop: &ShopKey) -> bool {
        self.shop.as_ref().is_none_or(|own| own == shop)
    }
}

/// A caller holding a valid operator token; it belongs to no tenant.
#[derive(Debug, Clone, Copy)]
pub struct Operator {
    pub token: TokenId,
}

impl Operator {
    pub fn actor(&self) -> String {
        format!("operator:{}", self.token)
    }
}

/// Who asked, for routes that answer anyone but tell some callers more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Anonymous,
    /// A tenant token with the `admin` scope: its own view, nothing of
    /// other tenants.
    TenantAdmin,
    Operator,
}

/// Counts failed authentications per client address in fixed windows, in
/// bounded memory.
///
/// Written here rather than with `governor`: the check that keeps a
/// throttled client off the store has to ask "is this address over its
/// budget?" without spending from it, which governor's keyed limiter cannot
/// do, and the table needs a hard size bound under an address-rotating
/// flood, where governor's grows until `retain_recent` runs.
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    capacity: usize,
    clients: Mutex<HashMap<IpAddr, Window>>,
    /// When a full table was last swept of ended windows: at most once a
    /// second, so a flood of new addresses cannot make every failure scan
    /// the whole table.
    swept: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl AuthThrottle {
    pub fn new(settings: &AccessSettings) -> AuthThrottle {
        AuthThrottle {
            limit: settings.failed_auth_limit,
            window: Duration::from_secs(settings.failed_auth_window_secs),
            capacity: settings.failed_auth_clients,
            clients: Mutex::new(HashMap::new()),
            swept: Mutex::new(None),
        }
    }

    /// How long `client` must wait, when it is over its budget.
    pub fn blocked(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let window = clients.get(&client)?;
        let ends = window.started + self.window;
        (window.failures >= self.limit && now < ends).then(|| ends - now)
    }

    /// Counts one failure of `client`; returns how long it must now wait
    /// when this failure used up its budget.
    pub fn failed(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if !clients.contains_key(&client) && clients.len() >= self.capacity {
            let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
            if swept.is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY) {
                clients.retain(|_, w| now < w.started + self.window);
                *swept = Some(now);
            }
            if clients.len() >= self.capacity {
                // Full of live windows: an address-rotating flood. A new
                // address is throttled on its first failure rather than
                // evicting someone's count.
                return Some(self.window);
            }
        }
        let window = clients.entry(client).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= window.started + self.window {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures += 1;
        (window.failures >= self.limit).then(|| window.started + self.window - now)
    }
}

/// The address failures are counted against: the peer, or the configured
/// proxy header's client; IPv6 addresses count per /64, what one host
/// usually holds.
pub fn client_address(headers: &HeaderMap, peer: Option<SocketAddr>, proxy_header: &str) -> IpAddr {
    let forwarded = (!proxy_header.is_empty())
        .then(|| headers.get(proxy_header))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    let ip = forwarded
        .or(peer.map(|p| p.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::from(segments)
            }
        },
        v4 => v4,
    }
}

/// Least time between two sweeps of a full failure table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Tokens whose last use was recorded this long ago are recorded again.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::minutes(1);

/// The middleware enforcing [`ROUTES`]. Runs after routing, so the matched
/// route is known; requests no route matched never get here.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>().cloned() else {
        return next.run(request).await;
    };
    let access = access_for(request.method().as_str(), route.as_str());
    let Some(access) = access.filter(|a| *a != Access::OwnCredentials) else {
        // A webhook, the widget or a workbench page: those authenticate
        // themselves, and the API's extractors refuse without a caller.
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = client_address(
        request.headers(),
        peer,
        state.access.settings.client_ip_header.trim(),
    );
    match admit(&state, access, request.headers(), client).await {
        Ok(Admitted::Tenant(tenant)) => {
            request.extensions_mut().insert(tenant);
        }
        Ok(Admitted::Operator(operator)) => {
            request.extensions_mut().insert(operator);
        }
        Ok(Admitted::Anonymous) => {}
        Err(err) => return err.into_response(),
    }
    next.run(request).await
}

enum Admitted {
    Tenant(Tenant),
    Operator(Operator),
    Anonymous,
}

async fn admit(
    state: &AppState,
    access: Access,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<Admitted, ApiError> {
    let presented = bearer(headers);
    let token = match (access, presented) {
        (Access::Public | Access::OwnCredentials, _) | (Access::PublicWithDetails, None) => {
            return Ok(Admitted::Anonymous)
        }
        (_, None) => {
            m::auth_refused("missing");
            return Err(ApiError::MissingToken);
        }
        (_, Some(token)) => token,
    };
    let throttle = &state.access.throttle;
    let now = Instant::now();
    if let Some(wait) = throttle.blocked(client, now) {
        m::auth_refused("throttled");
        return Err(throttled(wait));
    }
    let refused = |cause: &'static str, err: ApiError| {
        m::auth_refused(cause);
        match throttle.failed(client, now) {
            Some(wait) => throttled(wait),
            None => err,
        }
    };
    let Some(shape) = TokenShape::of(token) else {
        return Err(refused("malformed", ApiError::InvalidToken));
    };
    let caller = match shape {
        TokenShape::Tenant => tenant_caller(state, token).await?,
        TokenShape::Operator => operator_caller(state, token).await?,
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(Refusal::Unknown) => return Err(refused("unknown", ApiError::InvalidToken)),
        Err(Refusal::Expired) => return Err(refused("expired", ApiError::ExpiredToken)),
    };
    match (access, caller) {
        (Access::Public | Access::OwnCredentials, _) => Ok(Admitted::Anonymous),
        (Access::PublicWithDetails, caller) => Ok(caller),
        (Access::Operator, Admitted::Operator(operator)) => Ok(Admitted::Operator(operator)),
        (Access::Operator, _) => {
            m::auth_refused("operator");
            Err(ApiError::Forbidden(
                "this route acts on the whole server and needs an operator token \
                 (`kedai operator token create`); tenant tokens cannot use it"
                    .into(),
            ))
        }
        (Access::Tenant(scope), Admitted::Tenant(tenant)) => {
            if tenant.scopes.allows(scope) {
                Ok(Admitted::Tenant(tenant))
            } else {
                m::auth_refused("scope");
                Err(ApiError::Forbidden(format!(
                    "this token lacks the `{scope}` scope (it has: {})",
                    tenant.scopes
                )))
            }
        }
        (Access::Tenant(_), _) => {
            m::auth_refused("operator");
            Err(ApiError::Forbidden(
                "operator tokens reach no tenant's data; use a tenant token".into(),
            ))
        }
    }
}

enum Refusal {
    Unknown,
    Expired,
}

async fn tenant_caller(
    state: &AppState,
    token: &str,
) -> Result<Result<Admitted, Refusal>, ApiError> {
    let Some(grant) = state.store.authenticate(&token_hash(token)).await? else {
        return Ok(Err(Refusal::Unknown));
    };
    let now = Utc::now();
    if grant.expires_at.is_some_and(|at| at <= now) {
        return Ok(Err(Refusal::Expired));
    }
    if grant.last_used_at.is_none_or(|at| now - at >= TOUCH_EVERY) {
        let store = state.store.clone();
        let id = grant.token_id;
        tokio::spawn(async move {
            if let Err(err) = store.touch_token(id, now).await {
                tracing::debug!(error = %err, "token last use not recorded");
            }
        });
    }
    Ok(Ok(Admitted::Tenant(Tenant {
        id: grant.tenant_id,
        token: grant.token_id,
        scopes: grant.scopes,
        shop: grant.shop,
    })))
}

async fn operator_caller(
    state: &AppState,
    token: &str,
) -> Result<Result<Admitted, Refusal>, ApiError> {
    let Some(info) = state
        .store
        .authenticate_operator(&token_hash(token))
        .await?
    else {
        return Ok(Err(Refusal::Unknown));
    };
    let now = Utc::now();
    if info.expires_at.is_some_and(|at| at <= now) {
        return Ok(Err(Refusal::Expired));
    }
    if info.last_used_at.is_none_or(|at| now - at >= TOUCH_EVERY) {
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.touch_operator_token(info.id, now).await {
                tracing::debug!(error = %err, "operator token last use not recorded");
            }
        });
    }
    Ok(Ok(Admitted::Operator(Operator { token: info.id })))
}

fn throttled(wait: Duration) -> ApiError {
    ApiError::Throttled {
        message: "too many failed authentications from this address".into(),
        retry_after_secs: wait.as_secs().max(1),
    }
}

/// The bearer token of `Authorization`, if one is given.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The per-process state access control keeps.
pub struct AccessState {
    pub settings: AccessSettings,
    pub throttle: AuthThrottle,
    /// Each tenant's share of the models behind `/v1`.
    pub models: super::quota::ModelQuota,
}

impl AccessState {
    pub fn new(settings: &AccessSettings) -> AccessState {
        AccessState {
            settings: settings.clone(),
            throttle: AuthThrottle::new(settings),
            models: super::quota::ModelQuota::new(settings),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn throttle(limit: u32, capacity: usize) -> AuthThrottle {
        let mut settings = Settings::defaults().access;
        settings.failed_auth_limit = limit;
        settings.failed_auth_window_secs = 60;
        settings.failed_auth_clients = capacity;
        AuthThrottle::new(&settings)
    }

    #[test]
    fn m8_failures_beyond_the_budget_block_the_address_for_the_window() {
        let throttle = throttle(3, 100);
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "203.0.113.8".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(throttle.failed(a, t0), None);
        assert_eq!(throttle.failed(a, t0), None);
        assert!(throttle.blocked(a, t0).is_none());
        let wait = throttle.failed(a, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(
            throttle.blocked(a, t0 + Duration::from_secs(20)),
            Some(Duration::from_secs(40))
        );
        assert!(
            throttle.blocked(b, t0).is_none(),
            "other clients are not affected"
        );
        assert!(throttle.blocked(a, t0 + Duration::from_secs(61)).is_none());
        assert_eq!(throttle.failed(a, t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn m8_the_failure_table_stays_bounded_under_address_rotation() {
        let throttle = throttle(5, 4);
        let t0 = Instant::now();
        for i in 0..4u8 {
            assert_eq!(throttle.failed(IpAddr::from([10, 0, 0, i]), t0), None);
        }
        // Full of live windows: a fifth address is throttled at once.
        assert!(throttle.failed(IpAddr::from([10, 0, 0, 9]), t0).is_some());
        assert_eq!(throttle.clients.lock().unwrap().len(), 4);
        // Once the windows end, room is made again.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(throttle.failed(IpAddr::from([10, 0, 0, 9]), later), None);
        assert_eq!(throttle.clients.lock().unwrap().len(), 1);
    }

    #[test]
    fn client_addresses_come_from_the_proxy_header_only_when_configured() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "198.51.100.1, 192.0.2.9".parse().unwrap(),
        );
        let peer: SocketAddr = "127.0.0.1:5555".parse().unwrap();
        assert_eq!(
            client_address(&headers, Some(peer), ""),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_address(&headers, Some(peer), "x-forwarded-for"),
            "192.0.2.9".parse::<IpAddr>().unwrap(),
            "the proxy appends the address it saw"
        );
        let v6: SocketAddr = "[2001:db8:1:2:3:4:5:6]:1".parse().unwrap();
        assert_eq!(
            client_address(&HeaderMap::new(), Some(v6), ""),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn every_table_entry_is_unique() {
        for (i, (method, path, _)) in ROUTES.iter().enumerate() {
            assert!(
                !ROUTES[i + 1..]
                    .iter()
                    .any(|(m, p, _)| m == method && p == path),
                "{method} {path} appears twice"
            );
        }
    }
}
