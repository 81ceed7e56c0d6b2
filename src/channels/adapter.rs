//! The one trait every platform implements ([`ChannelAdapter`]), the
//! platform-neutral shapes it speaks in, and the HTTP plumbing the
//! marketplace adapters share (timeouts, and telling "not sent" from "maybe
//! sent" when a call fails).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};

use super::signature::PushSigner;
use super::ChannelError;
use crate::domain::{Attachment, MessageKind, Platform, Sender};
use crate::store::{BuyerProfile, OrderRecord};

/// A chat message as a platform reports it (pushed or listed), not yet a
/// domain message: the shop is known from the push or the listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMessage {
    /// The platform's message id.
    pub id: String,
    /// The platform's conversation id.
    pub thread: String,
    /// The buyer's platform id; `None` when only the conversation knows it
    /// (a seller's message pushed by TikTok Shop).
    pub buyer: Option<String>,
    pub buyer_name: Option<String>,
    pub sender: Sender,
    pub text: Option<String>,
    pub attachment: Option<Attachment>,
    pub sent_at: DateTime<Utc>,
}

/// One thing a push tells kedai.
#[derive(Debug, Clone, PartialEq)]
pub enum PushEvent {
    Message(ChannelMessage),
    /// Something changed in a conversation without the message itself
    /// (read receipts, agents joining): pull it through the API.
    ThreadChanged(String),
    /// An order's status or tracking changed: fetch it again.
    OrderChanged(String),
    /// A push kedai has no use for (other push types, system messages,
    /// console verification probes); acknowledged and dropped.
    Ignored(String),
}

/// A parsed push.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// The platform's id of the receiving shop; `None` for app-level pushes.
    pub account: Option<String>,
    /// When the platform says it sent the push, for replay detection.
    pub sent_at: Option<DateTime<Utc>>,
    pub events: Vec<PushEvent>,
}

/// A conversation as a platform lists it.
#[derive(Debug, Clone)]
pub struct RemoteThread {
    pub id: String,
    pub buyer: Option<String>,
    pub buyer_name: Option<String>,
    pub last_message_at: DateTime<Utc>,
}

/// An order and its buyer as a platform reports them.
#[derive(Debug, Clone)]
pub struct FetchedOrder {
    pub record: OrderRecord,
    pub buyer: Option<BuyerProfile>,
}

/// Pushes the platform kept because kedai did not acknowledge them
/// (Shopee's lost-push list).
#[derive(Debug, Clone, Default)]
pub struct LostPushes {
    /// Each push's original body.
    pub bodies: Vec<String>,
    /// Acknowledge up to here once they are stored.
    pub last_id: Option<String>,
    pub more: bool,
}

/// Who a reply goes to.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub buyer: &'a str,
    /// The platform conversation, when kedai knows it.
    pub thread: Option<&'a str>,
}

/// Why a send did not succeed, and so what to do next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// The platform throttled us; nothing was sent.
    #[error("rate limited: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Not sent (the request never reached the platform, or it answered
    /// with an error); worth retrying.
    #[error("{0}")]
    Transient(String),
    /// Perhaps sent: the call timed out or its answer was lost. Before
    /// sending again, the platform's messages are checked for it.
    #[error("outcome unknown: {0}")]
    Uncertain(String),
    /// The platform refused this message for good (conversation rules,
    /// content rules, permissions); a human must answer.
    #[error("refused by the platform: {0}")]
    Rejected(String),
}

/// A platform connection for one shop: parse and verify what it pushes,
/// send what kedai replies, and pull what was missed.
#[async_trait]
pub trait ChannelAdapter: Send + Sync {
    fn platform(&self) -> Platform;

    /// What the shop's app signs pushes with; `None` for channels without
    /// pushes (the widget).
    fn push_signer(&self) -> Option<PushSigner>;

    /// Turns a push body whose signature has been verified into events.
    fn parse_push(&self, body: &[u8]) -> Result<Push, ChannelError>;

    /// Sends a text message; returns the platform's message id.
    async fn send_text(
        &self,
        to: Recipient<'_>,
        text: &str,
        idempotency_key: &str,
    ) -> Result<String, SendError>;

    /// Conversations with a message at or after `since`, newest first.
    async fn list_threads(&self, since: DateTime<Utc>) -> Result<Vec<RemoteThread>, ChannelError>;

    /// A conversation's messages at or after `since`.
    async fn list_messages(
        &self,
        thread: &RemoteThread,
        since: DateTime<Utc>,
    ) -> Result<Vec<ChannelMessage>, ChannelError>;

    /// An order and its tracking; `None` when the platform does not know it.
    async fn fetch_order(&self, order_id: &str) -> Result<Option<FetchedOrder>, ChannelError>;

    /// Pushes the platform kept for kedai (Shopee); none elsewhere.
    async fn lost_pushes(&self) -> Result<LostPushes, ChannelError> {
        Ok(LostPushes::default())
    }

    /// Tells the platform the lost pushes up to `last_id` are stored.
    async fn confirm_lost_pushes(&self, _last_id: &str) -> Result<(), ChannelError> {
        Ok(())
    }
}

/// The shared HTTP side of the marketplace adapters.
#[derive(Debug, Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

/// A failed call, classified for retries.
pub fn transport_error(err: &reqwest::Error) -> SendError {
    if err.is_connect() {
        SendError::Transient(format!("cannot reach the platform: {err}"))
    } else {
        // A timeout or a connection lost mid-call: the platform may have
        // acted on it.
        SendError::Uncertain(err.to_string())
    }
}

impl Api {
    /// Sends a request and reads its JSON answer. Rate limits (429) and
    /// overload (503) are retried later; other statuses are returned with
    /// their body for the adapter to judge.
    pub async fn json(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, serde_json::Value), SendError> {
        let response = request.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status == 429 {
            return Err(SendError::RateLimited {
                message: "HTTP 429".into(),
                retry_after,
            });
        }
        if status == 503 {
            return Err(SendError::Transient("HTTP 503: platform overloaded".into()));
        }
        let bytes = response.bytes().await.map_err(|e| transport_error(&e))?;
        if status >= 500 {
            return Err(SendError::Uncertain(format!("HTTP {status}")));
        }
        let value = serde_json::from_slice(&bytes).map_err(|_| {
            if status < 300 {
                SendError::Uncertain(format!("HTTP {status} with a body that is not JSON"))
            } else {
                SendError::Transient(format!("HTTP {status}"))
            }
        })?;
        Ok((status, value))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }
}

/// A platform API failure during a pull (not a send): reported, retried at
/// the next reconciliation.
pub fn pull_error(err: SendError) -> ChannelError {
    ChannelError::Api(err.to_string())
}

/// A JSON value that platforms send as a number or a string (64-bit ids
/// exceed JavaScript's integers, so some send strings), as a string.
pub fn id_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer sent as a number or a decimal string.
pub fn int_of(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A money amount sent as a number or a decimal string, in cents.
pub fn cents_of(value: &serde_json::Value) -> Option<i64> {
    let amount = match value {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (amount.is_finite() && (0.0..1e12).contains(&amount)).then(|| (amount * 100.0).round() as i64)
}

/// A Unix time in seconds or milliseconds (by magnitude) or nanoseconds.
pub fn time_of(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    let raw = int_of(value)?;
    let (secs, nanos) = if raw > 100_000_000_000_000_000 {
        (raw / 1_000_000_000, raw % 1_000_000_000)
    } else if raw > 100_000_000_000 {
        (raw / 1000, (raw % 1000) * 1_000_000)
    } else {
        (raw, 0)
    };
    Utc.timestamp_opt(secs, u32::try_from(nanos).ok()?).single()
}

/// The fields of a non-text message's content worth keeping: its string
/// and number values, flattened one level, at most 16.
pub fn attachment_of(
    kind: MessageKind,
    content: &serde_json::Value,
    extra: &[(&str, &str)],
) -> Option<Attachment> {
    let mut fields: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if let Some(object) = content.as_object() {
        for (key, value) in object.iter().take(16) {
            if let Some(text) = id_of(value) {
                fields.push((key.clone(), text));
            }
        }
    }
    fields.truncate(16);
    Attachment::new(kind, fields).ok()
}

/// A JSON string holding a JSON object (Lazada and TikTok Shop nest message
/// content this way); an object is accepted as it is.
pub fn nested_json(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or(serde_json::Value::Null),
        other => other.clone(),
    }
}

/// A push body as JSON, or why not.
pub fn push_json(body: &[u8]) -> Result<serde_json::Value, ChannelError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ChannelError::MalformedPush("body is not UTF-8".into()))?;
    serde_json::from_str(text).map_err(|e| ChannelError::MalformedPush(format!("not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_in_seconds_milliseconds_and_nanoseconds() {
        let at = Utc.timestamp_opt(1_726_044_721, 0).unwrap();
        for raw in [
            serde_json::json!(1_726_044_721),
            serde_json::json!("1726044721"),
            serde_json::json!(1_726_044_721_000_i64),
            serde_json::json!(1_726_044_721_000_000_000_i64),
        ] {
            assert_eq!(time_of(&raw), Some(at), "{raw}");
        }
        assert_eq!(time_of(&serde_json::json!("soon")), None);
    }

    #[test]
    fn big_ids_keep_every_digit() {
        let v: serde_json::Value = serde_json::from_str(r#"{"id": 2302748948493123953}"#).unwrap();
        assert_eq!(id_of(&v["id"]).as_deref(), Some("2302748948493123953"));
        assert_eq!(id_of(&serde_json::json!(" 42 ")).as_deref(), Some("42"));
        assert_eq!(id_of(&serde_json::json!("")), None);
    }

    #[test]
    fn money_is_read_into_cents() {
        assert_eq!(cents_of(&serde_json::json!("25.80")), Some(2580));
        assert_eq!(cents_of(&serde_json::json!(19.99)), Some(1999));
        assert_eq!(cents_of(&serde_json::json!(-1)), None);
    }
}
