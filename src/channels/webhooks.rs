//! The webhook receivers: `POST /webhooks/shopee`, `/webhooks/lazada` and
//! `/webhooks/tiktok`.
//!
//! Order of work, on the raw body: the `Authorization` signature is checked
//! in constant time against every platform app kedai knows (before anything
//! is parsed or stored; 401 otherwise), then the push is parsed, its own
//! timestamp checked against the replay window (401), its shop found from
//! the payload as the platform names it, and its messages committed. Only
//! then does the platform get its empty-bodied 200; follow-up work (pulling
//! a conversation, fetching an order) runs after the acknowledgement.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::Utc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::adapter::PushEvent;
use super::ingest::{self, Stored};
use super::signature::PushSigner;
use super::{orders, reconcile, ChannelError, Channels, Connected};
use crate::domain::Platform;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::AppState;
use crate::metrics as m;

/// What one push did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub stored: usize,
    pub duplicates: usize,
    pub ignored: usize,
}

/// The connected shops grouped by the app that signs their pushes.
fn apps(shops: Vec<Connected>) -> Vec<(PushSigner, Vec<Connected>)> {
    let mut apps: Vec<(PushSigner, Vec<Connected>)> = Vec::new();
    for shop in shops {
        let Some(signer) = shop.adapter.push_signer() else {
            continue;
        };
        match apps.iter_mut().find(|(s, _)| s.same_app(&signer)) {
            Some((_, shops)) => shops.push(shop),
            None => apps.push((signer, vec![shop])),
        }
    }
    apps
}

/// The shops of the app whose key signed `body`, if any did.
async fn signed_by(
    channels: &Channels,
    platform: Platform,
    body: &[u8],
    signature: &str,
) -> Result<Vec<Connected>, ChannelError> {
    let find = |shops: Vec<Connected>| {
        apps(shops)
            .into_iter()
            .find(|(signer, _)| signer.verify(body, signature))
            .map(|(_, shops)| shops)
    };
    if let Some(shops) = find(channels.connected(platform).await?) {
        return Ok(shops);
    }
    // A shop connected from another process since the last read.
    channels.reload_soon().await?;
    find(channels.connected(platform).await?).ok_or(ChannelError::BadSignature)
}

/// Verifies, parses and stores one push. Returns once everything it
/// carries is committed.
pub async fn receive(
    channels: &Arc<Channels>,
    platform: Platform,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Receipt, ChannelError> {
    let signature = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(ChannelError::MissingSignature)?;
    let shops = signed_by(channels, platform, body, signature).await?;
    let push = shops[0].adapter.parse_push(body)?;
    if let Some(sent) = push.sent_at {
        let age = (Utc::now() - sent).num_seconds();
        let window = i64::try_from(channels.settings.replay_window_secs).unwrap_or(i64::MAX);
        // A few minutes of clock skew are allowed into the future.
        if age > window || age < -300 {
            return Err(ChannelError::Replay { age_secs: age });
        }
    }
    let mut receipt = Receipt::default();
    let Some(account) = push.account.clone() else {
        receipt.ignored = push.events.len();
        return Ok(receipt);
    };
    let find = |shops: &[Connected]| {
        shops
            .iter()
            .find(|c| c.account.as_deref() == Some(account.as_str()))
            .cloned()
    };
    let shop = match find(&shops) {
        Some(shop) => shop,
        None => {
            // A shop of the same app connected since the last read.
            channels.reload_soon().await?;
            find(&signed_by(channels, platform, body, signature).await?)
                .ok_or(ChannelError::UnknownShop { platform, account })?
        }
    };
    for event in push.events {
        match event {
            PushEvent::Message(message) => {
                match ingest::store(channels, &shop.shop, &message).await {
                    Ok(Stored::New) => receipt.stored += 1,
                    Ok(Stored::Duplicate | Stored::Own) => receipt.duplicates += 1,
                    Ok(Stored::Empty) => receipt.ignored += 1,
                    Err(ChannelError::UnknownThread { thread }) => {
                        // The seller wrote in a conversation kedai has not seen:
                        // the conversation is read through the API instead.
                        receipt.ignored += 1;
                        reconcile::spawn_thread(channels, shop.clone(), thread);
                    }
                    Err(err) => return Err(err),
                }
            }
            PushEvent::ThreadChanged(thread) => {
                receipt.ignored += 1;
                reconcile::spawn_thread(channels, shop.clone(), thread);
            }
            PushEvent::OrderChanged(order) => {
                receipt.ignored += 1;
                orders::spawn_refresh(channels, shop.clone(), order);
            }
            PushEvent::Ignored(_) => receipt.ignored += 1,
        }
    }
    Ok(receipt)
}

async fn handle(
    state: AppState,
    platform: Platform,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let started = Instant::now();
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("push body is larger than the configured limit".into())
        } else {
            ApiError::MalformedRequest(rejection.body_text())
        }
    })?;
    let result = receive(&state.channels, platform, &headers, &body).await;
    let outcome = match &result {
        Ok(r) if r.stored > 0 => "stored",
        Ok(r) if r.duplicates > 0 => "duplicate",
        Ok(_) => "ignored",
        Err(ChannelError::MissingSignature | ChannelError::BadSignature) => "bad_signature",
        Err(ChannelError::Replay { .. }) => "replay",
        Err(ChannelError::MalformedPush(_) | ChannelError::Invalid(_)) => "malformed",
        Err(ChannelError::UnknownShop { .. }) => "unknown_shop",
        Err(_) => "error",
    };
    m::webhook(platform.as_str(), outcome, started.elapsed());
    if let Err(err) = &result {
        tracing::warn!(platform = %platform, error = %err, "push refused");
    }
    // The platforms want an empty-bodied 2xx (Shopee, TikTok Shop) within
    // their window; a 200 with no body is what they all accept.
    result.map(|_| StatusCode::OK).map_err(ApiError::from)
}

/// Receive a Shopee push.
///
/// Signed as Shopee signs pushes: `Authorization` is the lowercase hex
/// HMAC-SHA256 of `callback_url + "|" + body` keyed by the app's push key.
/// Webchat (code 10) messages are stored; order and tracking pushes (codes
/// 3 and 4) refresh the order; other codes are acknowledged and dropped.
#[utoipa::path(
    post,
    path = "/webhooks/shopee",
    tag = "channels",
    request_body(content = String, content_type = "application/json",
        description = "Shopee's push envelope `{shop_id, code, timestamp, data}`, signed over its exact bytes"),
    params(("Authorization" = String, Header, description = "Lowercase hex HMAC-SHA256 signature")),
    responses(
        (status = 200, description = "Committed (or a duplicate, or a push kedai does not use); empty body"),
        (status = 400, description = "Not a push", body = ErrorBody),
        (status = 401, description = "Missing or wrong signature, or a replay outside the window; nothing stored", body = ErrorBody),
        (status = 404, description = "Validly signed for a shop that is not connected", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 503, description = "Store busy; the platform retries", body = ErrorBody),
    )
)]
pub async fn shopee(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    handle(state, Platform::Shopee, headers, body).await
}

/// Receive a Lazada push.
///
/// `Authorization` is the lowercase hex HMAC-SHA256 of `app_key + body`
/// keyed by the app secret. IM messages (`message_type` 2) are stored;
/// session updates (19) re-read the conversation; order pushes (0) refresh
/// the order. Lazada wants the 200 within 500 ms.
#[utoipa::path(
    post,
    path = "/webhooks/lazada",
    tag = "channels",
    request_body(content = String, content_type = "application/json",
        description = "Lazada's push `{seller_id, message_type, data, timestamp}`"),
    params(("Authorization" = String, Header, description = "Lowercase hex HMAC-SHA256 signature")),
    responses(
        (status = 200, description = "Committed (or a duplicate, or a push kedai does not use); empty body"),
        (status = 400, description = "Not a push", body = ErrorBody),
        (status = 401, description = "Missing or wrong signature, or a replay outside the window; nothing stored", body = ErrorBody),
        (status = 404, description = "Validly signed for a shop that is not connected", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 503, description = "Store busy; the platform retries", body = ErrorBody),
    )
)]
pub async fn lazada(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    handle(state, Platform::Lazada, headers, body).await
}

/// Receive a TikTok Shop webhook.
///
/// `Authorization` is the lowercase hex HMAC-SHA256 of `app_key + body`
/// keyed by the app secret. NEW_MESSAGE (14) is stored; NEW_CONVERSATION
/// (13) re-reads the conversation; order status changes (1) refresh the
/// order.
#[utoipa::path(
    post,
    path = "/webhooks/tiktok",
    tag = "channels",
    request_body(content = String, content_type = "application/json",
        description = "TikTok Shop's webhook `{type, tts_notification_id, shop_id, timestamp, data}`"),
    params(("Authorization" = String, Header, description = "Lowercase hex HMAC-SHA256 signature")),
    responses(
        (status = 200, description = "Committed (or a duplicate, or a webhook kedai does not use); empty body"),
        (status = 400, description = "Not a webhook", body = ErrorBody),
        (status = 401, description = "Missing or wrong signature, or a replay outside the window; nothing stored", body = ErrorBody),
        (status = 404, description = "Validly signed for a shop that is not connected", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 503, description = "Store busy; the platform retries", body = ErrorBody),
    )
)]
pub async fn tiktok(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    handle(state, Platform::Tiktok, headers, body).await
}

/// The channels' routes: webhooks, the widget and the deadlines list.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(shopee))
        .routes(routes!(lazada))
        .routes(routes!(tiktok))
        .merge(super::widget::routes())
}
