//! Lazada Open Platform ("lazop"): IM message pushes (`message_type` 2),
//! session updates (19) and order-status pushes (0), the IM send and list
//! calls, order and item detail, and the order trace.
//!
//! Lazada asks integrators not to poll its IM list calls, so kedai pulls
//! them only on start unless `channels.lazada.reconcile_interval_secs` is
//! set. Its IM push sample omits the envelope's `timestamp`; the message's
//! `send_time` stands in for replay checks.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::adapter::{
    attachment_of, cents_of, id_of, int_of, nested_json, pull_error, push_json, time_of, Api,
    ChannelAdapter, ChannelMessage, FetchedOrder, Push, PushEvent, Recipient, RemoteThread,
    SendError,
};
use super::credentials::LazadaCredentials;
use super::signature::{self, PushSigner};
use super::ChannelError;
use crate::domain::{MessageKind, Platform, PlatformBuyerId, Sender};
use crate::store::{BuyerProfile, OrderItem, OrderRecord, TrackingEvent};

const SEND_PATH: &str = "/im/message/send";
const SESSIONS_PATH: &str = "/im/session/list";
const MESSAGES_PATH: &str = "/im/message/list";
/// The documented page limit of both list calls.
const PAGE: u32 = 20;

pub struct Lazada {
    pub credentials: LazadaCredentials,
    pub api: Api,
}

/// An IM message (push `data` or a listed message).
pub fn message_of(m: &Value) -> Result<Option<ChannelMessage>, ChannelError> {
    let malformed = |what: &str| ChannelError::MalformedPush(format!("IM message without {what}"));
    let id = id_of(&m["message_id"]).ok_or_else(|| malformed("message_id"))?;
    let thread = id_of(&m["session_id"]).ok_or_else(|| malformed("session_id"))?;
    // `type` 2 is a system message; `status` 1 a recall (the recalled
    // message was stored when it arrived).
    if int_of(&m["type"]) == Some(2) || int_of(&m["status"]) == Some(1) {
        return Ok(None);
    }
    let from_seller = int_of(&m["from_account_type"]) == Some(2);
    let buyer = if from_seller {
        id_of(&m["to_account_id"])
    } else {
        id_of(&m["from_account_id"])
    };
    let content = nested_json(&m["content"]);
    let template = int_of(&m["template_id"]).unwrap_or(1);
    let kind = match template {
        1 => MessageKind::Text,
        3 => MessageKind::Image,
        4 => MessageKind::Sticker,
        6 => MessageKind::Video,
        10006 => MessageKind::Product,
        10007 => MessageKind::Order,
        10008 => MessageKind::Voucher,
        _ => MessageKind::Other,
    };
    let (text, attachment) = if kind == MessageKind::Text {
        (content["txt"].as_str().map(str::to_owned), None)
    } else {
        let template = template.to_string();
        (
            None,
            attachment_of(kind, &content, &[("template_id", template.as_str())]),
        )
    };
    Ok(Some(ChannelMessage {
        id,
        thread,
        buyer,
        buyer_name: None,
        sender: if from_seller {
            Sender::Seller { name: None }
        } else {
            Sender::Buyer
        },
        text,
        attachment,
        sent_at: time_of(&m["send_time"]).unwrap_or_else(Utc::now),
    }))
}

/// Parses a push `{seller_id, message_type, data, timestamp?}`.
pub fn parse(body: &[u8]) -> Result<Push, ChannelError> {
    let root = push_json(body)?;
    let kind = int_of(&root["message_type"])
        .ok_or_else(|| ChannelError::MalformedPush("no numeric `message_type`".into()))?;
    let data = &root["data"];
    let mut sent_at = time_of(&root["timestamp"]);
    let event = match kind {
        2 => {
            sent_at = sent_at.or_else(|| time_of(&data["send_time"]));
            match message_of(data)? {
                Some(message) => PushEvent::Message(message),
                None => PushEvent::Ignored("system message or recall".into()),
            }
        }
        19 => match id_of(&data["session_id"]) {
            Some(thread) => PushEvent::ThreadChanged(thread),
            None => PushEvent::Ignored("session update without a session".into()),
        },
        0 => match id_of(&data["trade_order_id"]) {
            Some(order) => PushEvent::OrderChanged(order),
            None => PushEvent::Ignored("order push without trade_order_id".into()),
        },
        other => PushEvent::Ignored(format!("message_type {other}")),
    };
    Ok(Push {
        account: id_of(&root["seller_id"]),
        sent_at,
        events: vec![event],
    })
}

fn status(raw: &str) -> &'static str {
    match raw {
        "unpaid" => "unpaid",
        "pending" | "topack" => "paid",
        "packed" | "ready_to_ship" | "toship" => "packed",
        "shipped" | "shipping" => "in_transit",
        "delivered" => "delivered",
        "canceled" | "cancelled" | "failed" | "lost" => "cancelled",
        "returned" => "returned",
        _ => "paid",
    }
}

/// Lazada answers `{code, message, data}`; `code` "0" is success.
fn check(body: &Value) -> Result<(), SendError> {
    let code = id_of(&body["code"]).unwrap_or_default();
    if code == "0" {
        return Ok(());
    }
    let message = format!("{code}: {}", body["message"].as_str().unwrap_or(""));
    Err(match code.as_str() {
        "ApiCallLimit" | "AppCallLimit" | "SellerCallLimit" => SendError::RateLimited {
            message,
            retry_after: None,
        },
        "MissingParameter" | "InvalidParameter" | "IllegalSession" | "SessionNotExist" => {
            SendError::Rejected(message)
        }
        _ => SendError::Transient(message),
    })
}

impl Lazada {
    fn signed(&self, path: &str, params: &[(&str, String)]) -> Vec<(String, String)> {
        let c = &self.credentials;
        let mut all: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        all.push(("app_key".into(), c.app_key.clone()));
        all.push((
            "timestamp".into(),
            Utc::now().timestamp_millis().to_string(),
        ));
        all.push((
            "access_token".into(),
            c.access_token.expose_secret().to_owned(),
        ));
        all.push(("sign_method".into(), "sha256".into()));
        let sign = signature::lazada_api(c.app_secret.expose_secret(), path, &all);
        all.push(("sign".into(), sign));
        all
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Value, SendError> {
        let request = self
            .api
            .client
            .get(self.api.url(path))
            .query(&self.signed(path, params));
        let (_, body) = self.api.json(request).await?;
        check(&body)?;
        Ok(body)
    }
}

#[async_trait]
impl ChannelAdapter for Lazada {
    fn platform(&self) -> Platform {
        Platform::Lazada
    }

    fn push_signer(&self) -> Option<PushSigner> {
        Some(PushSigner::app(
            self.credentials.app_secret.clone(),
            &self.credentials.app_key,
        ))
    }

    fn parse_push(&self, body: &[u8]) -> Result<Push, ChannelError> {
        parse(body)
    }

    async fn send_text(
        &self,
        to: Recipient<'_>,
        text: &str,
        idempotency_key: &str,
    ) -> Result<String, SendError> {
        let session = to.thread.ok_or_else(|| {
            SendError::Rejected("no Lazada session with this buyer is known".into())
        })?;
        let params = self.signed(
            SEND_PATH,
            &[
                ("session_id", session.to_owned()),
                ("template_id", "1".to_owned()),
                ("txt", text.to_owned()),
            ],
        );
        let request = self
            .api
            .client
            .post(self.api.url(SEND_PATH))
            .header("X-Kedai-Idempotency-Key", idempotency_key)
            .form(&params);
        let (_, answer) = self.api.json(request).await?;
        check(&answer)?;
        id_of(&answer["data"]["message_id"])
            .ok_or_else(|| SendError::Uncertain("answer without message_id".into()))
    }

    async fn list_threads(&self, since: DateTime<Utc>) -> Result<Vec<RemoteThread>, ChannelError> {
        let mut threads = Vec::new();
        let mut start = Utc::now().timestamp_millis().to_string();
        let mut last: Option<String> = None;
        for _page in 0..200 {
            let mut params = vec![
                ("start_time", start.clone()),
                ("page_size", PAGE.to_string()),
            ];
            if let Some(last) = &last {
                params.push(("last_session_id", last.clone()));
            }
            let body = self.get(SESSIONS_PATH, &params).await.map_err(pull_error)?;
            let data = &body["data"];
            let mut reached_older = false;
            for s in data["session_list"].as_array().into_iter().flatten() {
                let Some(id) = id_of(&s["session_id"]) else {
                    continue;
                };
                let at = time_of(&s["last_message_time"]).unwrap_or_else(Utc::now);
                if at < since {
                    reached_older = true;
                    break;
                }
                threads.push(RemoteThread {
                    id,
                    buyer: id_of(&s["buyer_id"]),
                    buyer_name: s["title"].as_str().map(str::to_owned),
                    last_message_at: at,
                });
            }
            if reached_older || !data["has_more"].as_bool().unwrap_or(false) {
                break;
            }
            match (
                id_of(&data["next_start_time"]),
                id_of(&data["last_session_id"]),
            ) {
                (Some(next), next_last) if next != start || next_last != last => {
                    start = next;
                    last = next_last;
                }
                _ => break,
            }
        }
        Ok(threads)
    }

    async fn list_messages(
        &self,
        thread: &RemoteThread,
        since: DateTime<Utc>,
    ) -> Result<Vec<ChannelMessage>, ChannelError> {
        let mut messages = Vec::new();
        let mut start = Utc::now().timestamp_millis().to_string();
        let mut last: Option<String> = None;
        for _page in 0..500 {
            let mut params = vec![
                ("session_id", thread.id.clone()),
                ("start_time", start.clone()),
                ("page_size", PAGE.to_string()),
            ];
            if let Some(last) = &last {
                params.push(("last_message_id", last.clone()));
            }
            let body = self.get(MESSAGES_PATH, &params).await.map_err(pull_error)?;
            let data = &body["data"];
            let mut reached_older = false;
            for m in data["message_list"].as_array().into_iter().flatten() {
                let Ok(Some(mut message)) = message_of(m) else {
                    continue;
                };
                if message.sent_at < since {
                    reached_older = true;
                    break;
                }
                if message.buyer.is_none() {
                    message.buyer = thread.buyer.clone();
                }
                messages.push(message);
            }
            if reached_older || !data["has_more"].as_bool().unwrap_or(false) {
                break;
            }
            match (
                id_of(&data["next_start_time"]),
                id_of(&data["last_message_id"]),
            ) {
                (Some(next), next_last) if next != start || next_last != last => {
                    start = next;
                    last = next_last;
                }
                _ => break,
            }
        }
        Ok(messages)
    }

    async fn fetch_order(&self, order_id: &str) -> Result<Option<FetchedOrder>, ChannelError> {
        let order = self
            .get("/order/get", &[("order_id", order_id.to_owned())])
            .await
            .map_err(pull_error)?;
        let order = &order["data"];
        if order.is_null() || order.as_object().is_some_and(|o| o.is_empty()) {
            return Ok(None);
        }
        let items = self
            .get("/order/items/get", &[("order_id", order_id.to_owned())])
            .await
            .map_err(pull_error)?;
        let trace = self
            .get(
                "/logistic/order/trace",
                &[("order_id", order_id.to_owned())],
            )
            .await
            .ok();
        Ok(order_of(order_id, order, &items["data"], trace.as_ref()))
    }
}

fn order_of(
    order_id: &str,
    order: &Value,
    items: &Value,
    trace: Option<&Value>,
) -> Option<FetchedOrder> {
    let lines: Vec<&Value> = items.as_array().into_iter().flatten().collect();
    let buyer = lines
        .iter()
        .find_map(|i| id_of(&i["buyer_id"]))
        .and_then(|b| PlatformBuyerId::parse(&b).ok());
    let first = lines.first();
    let mut events: Vec<TrackingEvent> = trace
        .map(|t| &t["result"]["module"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|m| {
            m["package_detail_info_list"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .flat_map(|p| {
            p["logistic_detail_info_list"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(|e| {
            Some(TrackingEvent {
                at: time_of(&e["event_time"])?,
                status: e["status_code"].as_str().unwrap_or("update").to_lowercase(),
                location: None,
                description: e["description"]
                    .as_str()
                    .or_else(|| e["title"].as_str())
                    .map(str::to_owned),
            })
        })
        .collect();
    events.sort_by_key(|e| e.at);
    let status_raw = order["statuses"]
        .as_array()
        .and_then(|s| s.first())
        .and_then(Value::as_str)
        .or_else(|| first.and_then(|i| i["status"].as_str()))
        .unwrap_or("");
    let record = OrderRecord {
        order_number: id_of(&order["order_number"])
            .or_else(|| id_of(&order["order_id"]))
            .unwrap_or_else(|| order_id.to_owned()),
        buyer: buyer.clone(),
        status: status(status_raw).to_owned(),
        currency: first
            .and_then(|i| i["currency"].as_str())
            .unwrap_or("USD")
            .to_ascii_uppercase(),
        total_cents: cents_of(&order["price"]).unwrap_or(0),
        items: lines
            .iter()
            .filter_map(|i| {
                Some(OrderItem {
                    sku: i["sku"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| id_of(&i["sku_id"]))?,
                    name: i["name"].as_str().unwrap_or("").to_owned(),
                    quantity: 1,
                    unit_price_cents: cents_of(&i["item_price"]).unwrap_or(0),
                })
            })
            .collect(),
        carrier: first.and_then(|i| i["shipment_provider"].as_str().map(str::to_owned)),
        tracking_number: first
            .and_then(|i| i["tracking_code"].as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        tracking_events: events,
        placed_at: order["created_at"]
            .as_str()
            .and_then(|t| {
                DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S %z")
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            })
            .unwrap_or_else(Utc::now),
        destination: None,
        expected_delivery: None,
    };
    Some(FetchedOrder {
        record,
        buyer: buyer.map(|id| BuyerProfile {
            platform_buyer_id: id,
            display_name: None,
            language: None,
            member_level: None,
            is_vip: None,
            lifetime_value_cents: None,
            currency: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented IM push sample, with its extra braces removed.
    const SAMPLE: &str = r#"{"data": {"session_id":"100094063_2_1011822749_1_103","message_id":"1zYOS7N0cuIqw96026",
        "content":"{\"txt\":\"hello world!\"}","from_account_id":"1891549323","from_account_type":1,
        "send_time":1596550789323,"template_id":1,"to_account_id":"231135951","to_account_type":1,
        "type":1,"site_id":"SG","process_msg":"xxxx","auto_reply":false,"status":0},
        "seller_id":20240305, "message_type":2}"#;

    #[test]
    fn the_documented_im_push_is_a_buyer_message() {
        let push = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(push.account.as_deref(), Some("20240305"));
        assert_eq!(push.sent_at.unwrap().timestamp_millis(), 1596550789323);
        let PushEvent::Message(m) = &push.events[0] else {
            panic!("{push:?}")
        };
        assert_eq!(m.thread, "100094063_2_1011822749_1_103");
        assert_eq!(m.buyer.as_deref(), Some("1891549323"));
        assert_eq!(m.text.as_deref(), Some("hello world!"));
        assert_eq!(m.sender, Sender::Buyer);
    }

    #[test]
    fn seller_system_and_recalled_messages() {
        let with = |from_type: i64, kind: i64, status: i64| {
            let body = serde_json::json!({"seller_id": "1", "message_type": 2, "data": {
                "session_id": "s", "message_id": "m", "content": "{\"txt\":\"ok\"}",
                "from_account_id": "seller", "from_account_type": from_type,
                "to_account_id": "buyer-7", "send_time": 1596550789323_i64, "template_id": 1,
                "type": kind, "status": status}});
            parse(body.to_string().as_bytes()).unwrap().events.remove(0)
        };
        let PushEvent::Message(seller) = with(2, 1, 0) else {
            panic!()
        };
        assert_eq!(seller.buyer.as_deref(), Some("buyer-7"));
        assert!(matches!(seller.sender, Sender::Seller { .. }));
        assert!(
            matches!(with(1, 2, 0), PushEvent::Ignored(_)),
            "system message"
        );
        assert!(matches!(with(1, 1, 1), PushEvent::Ignored(_)), "recall");
    }

    #[test]
    fn order_pushes_and_session_updates() {
        let order = r#"{"seller_id":"1234567","message_type":0,"data":{"order_status":"unpaid","trade_order_id":"260422900225876","trade_order_line_id":"260422900325876","status_update_time":1603698638},"timestamp":1603766859530,"site":"lazada_vn"}"#;
        let push = parse(order.as_bytes()).unwrap();
        assert_eq!(
            push.events,
            vec![PushEvent::OrderChanged("260422900225876".into())]
        );
        assert_eq!(push.sent_at.unwrap().timestamp(), 1603766859);
        let session = r#"{"seller_id":"1","message_type":19,"data":{"sync_type":"SESSION_UPDATE","session_id":"s1"}}"#;
        assert_eq!(
            parse(session.as_bytes()).unwrap().events,
            vec![PushEvent::ThreadChanged("s1".into())]
        );
    }
}
