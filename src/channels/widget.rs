//! The web-chat widget for a seller's own site: a small script served by
//! kedai (`/widget.js`, `/widget.css`), a demo page (`/chat/demo`), and the
//! visitor API: open a session (`POST /widget/v1/sessions`, which returns a
//! per-session secret shown once), send a message (`POST
//! /widget/v1/messages`) and receive the conversation live as server-sent
//! events (`GET /widget/v1/events`). Visitors authenticate with
//! `Authorization: Bearer wgt_<session>.<secret>`; only the secret's sha256
//! is stored. The widget renders every text with `textContent`, never as
//! HTML, and the demo page runs under a strict CSP with no inline script or
//! style.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock};

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use futures_util::Stream;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::cors::{Any, CorsLayer};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::credentials::Credentials;
use crate::domain::{
    BuyerRef, ExternalMessageId, InboundMessage, MessageId, MessageText, Platform, PlatformBuyerId,
    Sender, ShopId,
};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::ApiJson;
use crate::http::AppState;
use crate::store::{VisitorMessage, WidgetSession};

const SCRIPT: &str = include_str!("assets/widget.js");
const STYLE: &str = include_str!("assets/widget.css");
const DEMO_PAGE: &str = include_str!("assets/demo.html");
const HISTORY: u32 = 100;
const TOKEN_PREFIX: &str = "wgt_";

/// Cross-origin pages embed the widget; it sends no cookies, only its
/// bearer secret.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
}

pub fn routes() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(open_session))
        .routes(routes!(post_message))
        .routes(routes!(events))
        .layer(cors());
    OpenApiRouter::new()
        .route("/widget.js", axum::routing::get(script))
        .route("/widget.css", axum::routing::get(style))
        .route("/chat/demo", axum::routing::get(demo_page))
        .routes(routes!(super::api::deadlines))
        .merge(api)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn script() -> Response {
    asset("application/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The demo page: the demo tenant's web shop with the widget on it.
async fn demo_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound {
        what: "the demo web shop (start kedai with its demo tenant)".into(),
    };
    let tenant = state
        .store
        .tenant_by_name(crate::startup::DEMO_TENANT)
        .await?
        .ok_or_else(not_found)?;
    let key = crate::domain::ShopKey::parse("demo-web").expect("valid key");
    let shop = state
        .store
        .shop_by_key(tenant.id, &key)
        .await?
        .ok_or_else(not_found)?;
    // The only value put into the page is a UUID.
    let page = DEMO_PAGE.replace("{{SHOP_ID}}", &shop.id.to_string());
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                 img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        page,
    )
        .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The web shop's id (the `data-kedai-shop` attribute of the script tag).
    pub shop: String,
    /// The visitor's name, if they gave one.
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    pub session: String,
    /// `Authorization: Bearer <token>` for the other widget calls; shown
    /// only now.
    pub token: String,
    pub shop_name: String,
}

/// How many sessions a client address may open per minute.
static SESSION_LIMIT: LazyLock<std::sync::Mutex<Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>>> =
    LazyLock::new(|| std::sync::Mutex::new(None));
static MESSAGE_LIMIT: LazyLock<std::sync::Mutex<Option<Arc<DefaultKeyedRateLimiter<String>>>>> =
    LazyLock::new(|| std::sync::Mutex::new(None));

fn per_minute<K: std::hash::Hash + Eq + Clone>(n: u32) -> DefaultKeyedRateLimiter<K> {
    RateLimiter::keyed(Quota::per_minute(
        NonZeroU32::new(n.max(1)).expect("at least one"),
    ))
}

fn session_limiter(state: &AppState) -> Arc<DefaultKeyedRateLimiter<IpAddr>> {
    let mut slot = SESSION_LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert_with(|| {
        Arc::new(per_minute(
            state.channels.settings.widget_sessions_per_minute,
        ))
    })
    .clone()
}

fn message_limiter(state: &AppState) -> Arc<DefaultKeyedRateLimiter<String>> {
    let mut slot = MESSAGE_LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert_with(|| {
        Arc::new(per_minute(
            state.channels.settings.widget_messages_per_minute,
        ))
    })
    .clone()
}

fn too_many() -> ApiError {
    ApiError::Overloaded {
        message: "too many widget requests from this visitor; wait a minute".into(),
        retry_after_secs: 60,
    }
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Open a web-chat session for a visitor of a web shop.
///
/// Returns the session and its secret token (shown once). Pages of origins
/// outside the shop's `allowed_origins` (when set) are refused.
#[utoipa::path(
    post,
    path = "/widget/v1/sessions",
    tag = "channels",
    request_body = SessionRequest,
    responses(
        (status = 201, description = "Session opened", body = SessionResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "No such web shop, or not for this origin", body = ErrorBody),
        (status = 422, description = "Invalid name", body = ErrorBody),
        (status = 429, description = "Too many sessions from this address", body = ErrorBody),
    )
)]
pub async fn open_session(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SessionRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    // Without the peer's address (a router served without it) every
    // caller shares one bucket.
    let ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |Extension(ConnectInfo(a))| {
        a.ip()
    });
    if session_limiter(&state).check_key(&ip).is_err() {
        return Err(too_many());
    }
    let unknown = || ApiError::NotFound {
        what: format!("web shop {:?}", request.shop),
    };
    let shop_id: ShopId = request.shop.trim().parse().map_err(|_| unknown())?;
    let shop = state
        .store
        .channel_shop(shop_id)
        .await?
        .filter(|s| s.shop.platform == Platform::Web)
        .ok_or_else(unknown)?;
    if let Ok(Credentials::Web(web)) = Credentials::parse(Platform::Web, &shop.credentials) {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        let allowed = web.allowed_origins.is_empty()
            || origin.is_some_and(|o| {
                web.allowed_origins
                    .iter()
                    .any(|a| a.trim_end_matches('/') == o)
            });
        if !allowed {
            return Err(ApiError::NotFound {
                what: "a web shop for this page's origin".into(),
            });
        }
    }
    let name = match request.name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => Some(crate::domain::checked_key("name", name, 128)?),
        _ => None,
    };
    let secret = hex::encode(rand::random::<[u8; 24]>());
    let session = state
        .store
        .create_widget_session(&shop.shop, &hash(&secret), name.as_deref())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionResponse {
            token: format!("{TOKEN_PREFIX}{}.{secret}", session.id),
            session: session.id,
            shop_name: shop.shop.name,
        }),
    ))
}

/// The session a widget bearer token opens, checked in constant time.
async fn session_of(state: &AppState, headers: &HeaderMap) -> Result<WidgetSession, ApiError> {
    let bad = || ApiError::BadSignature("missing or invalid widget session token".into());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(|t| t.trim().strip_prefix(TOKEN_PREFIX))
        .ok_or_else(bad)?;
    let (id, secret) = token.split_once('.').ok_or_else(bad)?;
    if id.len() > 64 || secret.len() > 128 {
        return Err(bad());
    }
    let session = state.store.widget_session(id).await?.ok_or_else(bad)?;
    let matches: bool = hash(secret)
        .as_bytes()
        .ct_eq(session.secret_hash.as_bytes())
        .into();
    if !matches {
        return Err(bad());
    }
    Ok(session)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WidgetMessageRequest {
    pub text: String,
    /// The widget's own id for this message; a retry with the same id is
    /// stored once.
    pub client_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WidgetMessageResponse {
    pub message_id: String,
    pub duplicate: bool,
}

/// Send a visitor's message.
///
/// Stored durably (and processed like any buyer message) before the 202.
#[utoipa::path(
    post,
    path = "/widget/v1/messages",
    tag = "channels",
    request_body = WidgetMessageRequest,
    params(("Authorization" = String, Header, description = "`Bearer wgt_<session>.<secret>`")),
    responses(
        (status = 202, description = "Stored", body = WidgetMessageResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
        (status = 422, description = "Empty or too long text", body = ErrorBody),
        (status = 429, description = "Too many messages from this session", body = ErrorBody),
    )
)]
pub async fn post_message(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<WidgetMessageRequest>,
) -> Result<(StatusCode, Json<WidgetMessageResponse>), ApiError> {
    let session = session_of(&state, &headers).await?;
    if message_limiter(&state).check_key(&session.id).is_err() {
        return Err(too_many());
    }
    let client_id = match request.client_id.as_deref() {
        Some(id) => crate::domain::checked_key("client_id", id, 64)?,
        None => uuid::Uuid::now_v7().simple().to_string(),
    };
    let visitor = PlatformBuyerId::parse(&session.id)?;
    let message = InboundMessage {
        shop: session.shop.key.clone(),
        external_id: ExternalMessageId::parse(&format!("widget:{}:{client_id}", session.id))?,
        buyer: BuyerRef {
            id: visitor,
            name: session.name.clone(),
        },
        text: MessageText::parse(&request.text, state.limits.text)?,
        sent_at: chrono::Utc::now(),
        sender: Sender::Buyer,
        attachment: None,
    };
    let outcome = state
        .store
        .ingest(&session.shop, &message, state.limits.max_attempts)
        .await?;
    if !outcome.duplicate {
        state.queue.wake();
        state.channels.hub.notify(session.shop.id, &session.id);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(WidgetMessageResponse {
            message_id: outcome.message_id.to_string(),
            duplicate: outcome.duplicate,
        }),
    ))
}

struct Feed {
    state: AppState,
    session: WidgetSession,
    notices: tokio::sync::broadcast::Receiver<super::web::WidgetNotice>,
    seen: HashSet<MessageId>,
    pending: VecDeque<VisitorMessage>,
}

impl Feed {
    async fn refresh(&mut self) {
        let Ok(visitor) = PlatformBuyerId::parse(&self.session.id) else {
            return;
        };
        match self
            .state
            .store
            .visitor_messages(self.session.shop.id, &visitor, HISTORY)
            .await
        {
            Ok(messages) => {
                for m in messages {
                    if self.seen.insert(m.id) {
                        self.pending.push_back(m);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "widget history not read"),
        }
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Feed)> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if let Some(m) = self.pending.pop_front() {
                let event = Event::default()
                    .event("message")
                    .id(m.id.to_string())
                    .json_data(&m)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable message"));
                return Some((Ok(event), self));
            }
            match self.notices.recv().await {
                Ok(n) if n.shop == self.session.shop.id && n.visitor == self.session.id => {
                    self.refresh().await
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => self.refresh().await,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// The visitor's conversation as server-sent events.
///
/// First the last messages (the visitor's and the shop's, never internal
/// notes), then each new one as it is sent: `event: message`, `data:
/// {"id", "from": "visitor"|"shop", "author", "text", "sent_at"}`.
#[utoipa::path(
    get,
    path = "/widget/v1/events",
    tag = "channels",
    params(("Authorization" = String, Header, description = "`Bearer wgt_<session>.<secret>`")),
    responses(
        (status = 200, description = "An event stream (text/event-stream)", content_type = "text/event-stream", body = String),
        (status = 401, description = "Missing or invalid session token", body = ErrorBody),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let session = session_of(&state, &headers).await?;
    let mut feed = Feed {
        notices: state.channels.hub.subscribe(),
        state,
        session,
        seen: HashSet::new(),
        pending: VecDeque::new(),
    };
    feed.refresh().await;
    let stream = futures_util::stream::unfold(feed, Feed::next);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
