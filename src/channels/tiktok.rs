//! TikTok Shop Partner API (202309): NEW_MESSAGE (14), NEW_CONVERSATION
//! (13) and order-status (1) webhooks, the Customer Service send and list
//! calls, order detail and tracking.
//!
//! The webhook signature (`app_key + body`, HMAC with the app secret) comes
//! from SDKs rather than the official pages; it lives in
//! [`super::signature`] like the others.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::adapter::{
    attachment_of, cents_of, id_of, int_of, nested_json, pull_error, push_json, time_of, Api,
    ChannelAdapter, ChannelMessage, FetchedOrder, Push, PushEvent, Recipient, RemoteThread,
    SendError,
};
use super::credentials::TiktokCredentials;
use super::signature::{self, PushSigner};
use super::ChannelError;
use crate::domain::{MessageKind, Platform, PlatformBuyerId, Sender};
use crate::store::{BuyerProfile, OrderItem, OrderRecord, TrackingEvent};

const CONVERSATIONS_PATH: &str = "/customer_service/202309/conversations";
const ORDERS_PATH: &str = "/order/202309/orders";
/// Documented page maxima.
const CONVERSATION_PAGE: u32 = 20;
const MESSAGE_PAGE: u32 = 10;

pub struct Tiktok {
    pub credentials: TiktokCredentials,
    pub api: Api,
}

/// A message object (webhook `data` or a listed message).
pub fn message_of(m: &Value, thread: Option<&str>) -> Result<Option<ChannelMessage>, ChannelError> {
    let malformed = |what: &str| ChannelError::MalformedPush(format!("message without {what}"));
    let id = id_of(&m["message_id"])
        .or_else(|| id_of(&m["id"]))
        .ok_or_else(|| malformed("an id"))?;
    let thread = id_of(&m["conversation_id"])
        .or_else(|| thread.map(str::to_owned))
        .ok_or_else(|| malformed("a conversation_id"))?;
    if m["is_visible"].as_bool() == Some(false) {
        return Ok(None);
    }
    let who = &m["sender"];
    let (sender, buyer) = match who["role"].as_str().unwrap_or("BUYER") {
        "BUYER" => (Sender::Buyer, id_of(&who["im_user_id"])),
        "SHOP" | "CUSTOMER_SERVICE" => (
            Sender::Seller {
                name: who["nickname"].as_str().map(str::to_owned),
            },
            None,
        ),
        // SYSTEM and ROBOT messages are the platform's, not a person's.
        _ => return Ok(None),
    };
    let content = nested_json(&m["content"]);
    let kind = match m["type"].as_str().unwrap_or("TEXT") {
        "TEXT" => MessageKind::Text,
        "IMAGE" => MessageKind::Image,
        "EMOTICONS" => MessageKind::Sticker,
        "VIDEO" => MessageKind::Video,
        "PRODUCT_CARD" => MessageKind::Product,
        "ORDER_CARD" => MessageKind::Order,
        "COUPON_CARD" => MessageKind::Voucher,
        "OTHER" | "RETURN_REFUND_CARD" => MessageKind::Other,
        // Notifications and "buyer entered from ..." markers carry no words.
        _ => return Ok(None),
    };
    let (text, attachment) = if kind == MessageKind::Text {
        (content["content"].as_str().map(str::to_owned), None)
    } else {
        let kind_name = m["type"].as_str().unwrap_or("");
        (None, attachment_of(kind, &content, &[("type", kind_name)]))
    };
    Ok(Some(ChannelMessage {
        id,
        thread,
        buyer,
        buyer_name: match sender {
            Sender::Buyer => who["nickname"].as_str().map(str::to_owned),
            Sender::Seller { .. } => None,
        },
        sender,
        text,
        attachment,
        sent_at: time_of(&m["create_time"]).unwrap_or_else(Utc::now),
    }))
}

/// Parses a webhook `{type, tts_notification_id, shop_id, timestamp, data}`.
pub fn parse(body: &[u8]) -> Result<Push, ChannelError> {
    let root = push_json(body)?;
    let kind = int_of(&root["type"])
        .ok_or_else(|| ChannelError::MalformedPush("no numeric `type`".into()))?;
    let data = &root["data"];
    let event = match kind {
        14 => match message_of(data, None)? {
            Some(message) => PushEvent::Message(message),
            None => PushEvent::Ignored("system or hidden message".into()),
        },
        13 => match id_of(&data["conversation_id"]) {
            Some(thread) => PushEvent::ThreadChanged(thread),
            None => PushEvent::Ignored("conversation event without an id".into()),
        },
        1 => match id_of(&data["order_id"]) {
            Some(order) => PushEvent::OrderChanged(order),
            None => PushEvent::Ignored("order event without an id".into()),
        },
        other => PushEvent::Ignored(format!("webhook type {other}")),
    };
    Ok(Push {
        account: id_of(&root["shop_id"]),
        sent_at: time_of(&root["timestamp"]),
        events: vec![event],
    })
}

fn status(raw: &str) -> &'static str {
    match raw {
        "UNPAID" | "ON_HOLD" => "unpaid",
        "AWAITING_SHIPMENT" => "paid",
        "PARTIALLY_SHIPPING" | "AWAITING_COLLECTION" => "packed",
        "IN_TRANSIT" => "in_transit",
        "DELIVERED" | "COMPLETED" => "delivered",
        "CANCELLED" | "CANCEL" => "cancelled",
        _ => "paid",
    }
}

/// TikTok Shop answers `{code, message, data}`; `code` 0 is success.
fn check(body: &Value) -> Result<(), SendError> {
    let code = int_of(&body["code"]).unwrap_or(-1);
    if code == 0 {
        return Ok(());
    }
    let message = format!("{code}: {}", body["message"].as_str().unwrap_or(""));
    Err(match code {
        // The send-message quota of 10,000 a day.
        45101004 => SendError::RateLimited {
            message,
            retry_after: Some(std::time::Duration::from_secs(3600)),
        },
        45109001 | 45102007 | 45101006 => SendError::Rejected(message),
        _ => SendError::Transient(message),
    })
}

impl Tiktok {
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let c = &self.credentials;
        let mut params: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        params.push(("app_key".into(), c.app_key.clone()));
        params.push(("timestamp".into(), Utc::now().timestamp().to_string()));
        params.push(("shop_cipher".into(), c.shop_cipher.clone()));
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let sign = signature::tiktok_api(
            c.app_secret.expose_secret(),
            path,
            &params,
            bytes.as_bytes(),
        );
        params.push(("sign".into(), sign));
        let mut request = self
            .api
            .client
            .request(method, self.api.url(path))
            .query(&params)
            .header("x-tts-access-token", c.access_token.expose_secret())
            .header("content-type", "application/json");
        if body.is_some() {
            request = request.body(bytes);
        }
        request
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, SendError> {
        let (_, body) = self
            .api
            .json(self.request(reqwest::Method::GET, path, query, None))
            .await?;
        check(&body)?;
        Ok(body["data"].clone())
    }
}

#[async_trait]
impl ChannelAdapter for Tiktok {
    fn platform(&self) -> Platform {
        Platform::Tiktok
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
        let thread = to.thread.ok_or_else(|| {
            SendError::Rejected("no TikTok Shop conversation with this buyer is known".into())
        })?;
        let path = format!("{CONVERSATIONS_PATH}/{thread}/messages");
        let body = json!({"type": "TEXT", "content": json!({"content": text}).to_string()});
        let request = self
            .request(reqwest::Method::POST, &path, &[], Some(&body))
            .header("X-Kedai-Idempotency-Key", idempotency_key);
        let (_, answer) = self.api.json(request).await?;
        check(&answer)?;
        id_of(&answer["data"]["message_id"])
            .ok_or_else(|| SendError::Uncertain("answer without message_id".into()))
    }

    async fn list_threads(&self, since: DateTime<Utc>) -> Result<Vec<RemoteThread>, ChannelError> {
        let mut threads = Vec::new();
        let mut token = String::new();
        for _page in 0..200 {
            let mut query = vec![("page_size", CONVERSATION_PAGE.to_string())];
            if !token.is_empty() {
                query.push(("page_token", token.clone()));
            }
            let page = self
                .get(CONVERSATIONS_PATH, &query)
                .await
                .map_err(pull_error)?;
            let mut reached_older = false;
            for c in page["conversations"].as_array().into_iter().flatten() {
                let Some(id) = id_of(&c["id"]) else { continue };
                let last = time_of(&c["latest_message"]["create_time"])
                    .or_else(|| time_of(&c["create_time"]))
                    .unwrap_or_else(Utc::now);
                if last < since {
                    reached_older = true;
                    break;
                }
                let buyer = c["participants"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["role"].as_str() == Some("BUYER"));
                threads.push(RemoteThread {
                    id,
                    buyer: buyer.and_then(|b| id_of(&b["im_user_id"])),
                    buyer_name: buyer.and_then(|b| b["nickname"].as_str().map(str::to_owned)),
                    last_message_at: last,
                });
            }
            let next = page["next_page_token"].as_str().unwrap_or("").to_owned();
            if reached_older || next.is_empty() || next == token {
                break;
            }
            token = next;
        }
        Ok(threads)
    }

    async fn list_messages(
        &self,
        thread: &RemoteThread,
        since: DateTime<Utc>,
    ) -> Result<Vec<ChannelMessage>, ChannelError> {
        let path = format!("{CONVERSATIONS_PATH}/{}/messages", thread.id);
        let mut messages = Vec::new();
        let mut token = String::new();
        for _page in 0..500 {
            let mut query = vec![
                ("page_size", MESSAGE_PAGE.to_string()),
                ("sort_order", "DESC".to_owned()),
                ("sort_field", "create_time".to_owned()),
            ];
            if !token.is_empty() {
                query.push(("page_token", token.clone()));
            }
            let page = self.get(&path, &query).await.map_err(pull_error)?;
            let mut reached_older = false;
            for m in page["messages"].as_array().into_iter().flatten() {
                let Ok(Some(mut message)) = message_of(m, Some(&thread.id)) else {
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
            let next = page["next_page_token"].as_str().unwrap_or("").to_owned();
            if reached_older || next.is_empty() || next == token {
                break;
            }
            token = next;
        }
        Ok(messages)
    }

    async fn fetch_order(&self, order_id: &str) -> Result<Option<FetchedOrder>, ChannelError> {
        let data = self
            .get(ORDERS_PATH, &[("ids", order_id.to_owned())])
            .await
            .map_err(pull_error)?;
        let Some(order) = data["orders"].as_array().and_then(|o| o.first()) else {
            return Ok(None);
        };
        let tracking = self
            .get(
                &format!("/fulfillment/202309/orders/{order_id}/tracking"),
                &[],
            )
            .await
            .ok();
        Ok(order_of(order, tracking.as_ref()))
    }
}

fn order_of(order: &Value, tracking: Option<&Value>) -> Option<FetchedOrder> {
    let order_number = id_of(&order["id"])?;
    let buyer = id_of(&order["user_id"]).and_then(|b| PlatformBuyerId::parse(&b).ok());
    let items = order["line_items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            Some(OrderItem {
                sku: item["seller_sku"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .or_else(|| id_of(&item["sku_id"]))?,
                name: item["product_name"].as_str().unwrap_or("").to_owned(),
                quantity: 1,
                unit_price_cents: cents_of(&item["sale_price"]).unwrap_or(0),
            })
        })
        .collect();
    let mut events: Vec<TrackingEvent> = tracking
        .and_then(|t| t["tracking"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(TrackingEvent {
                at: time_of(&e["update_time_millis"])?,
                status: "update".into(),
                location: None,
                description: e["description"].as_str().map(str::to_owned),
            })
        })
        .collect();
    events.sort_by_key(|e| e.at);
    let record = OrderRecord {
        order_number,
        buyer: buyer.clone(),
        status: status(order["status"].as_str().unwrap_or("")).to_owned(),
        currency: order["payment"]["currency"]
            .as_str()
            .unwrap_or("USD")
            .to_ascii_uppercase(),
        total_cents: cents_of(&order["payment"]["total_amount"]).unwrap_or(0),
        items,
        carrier: order["shipping_provider"].as_str().map(str::to_owned),
        tracking_number: order["tracking_number"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        tracking_events: events,
        placed_at: time_of(&order["create_time"]).unwrap_or_else(Utc::now),
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

    /// The documented NEW_MESSAGE sample (reference §3.1).
    const SAMPLE: &str = r#"{"type":14,"tts_notification_id":"7327112393057371910","shop_id":"7494049642642441621","timestamp":1644412885,
        "data":{"content":"{\"content\":\"444\"}","conversation_id":"710688832392260838","create_time":1681790246,
        "is_visible":true,"message_id":"722323407926368819","index":"7494560109732334274","type":"TEXT",
        "sender":{"im_user_id":"707885565181165594","role":"BUYER"}}}"#;

    #[test]
    fn the_documented_new_message_is_a_buyer_message() {
        let push = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(push.account.as_deref(), Some("7494049642642441621"));
        let PushEvent::Message(m) = &push.events[0] else {
            panic!("{push:?}")
        };
        assert_eq!(m.id, "722323407926368819");
        assert_eq!(m.thread, "710688832392260838");
        assert_eq!(m.buyer.as_deref(), Some("707885565181165594"));
        assert_eq!(m.text.as_deref(), Some("444"));
        assert_eq!(m.sent_at.timestamp(), 1681790246);
    }

    #[test]
    fn roles_and_types_decide_what_is_kept() {
        let with = |role: &str, kind: &str, content: &str| {
            let body = json!({"type": 14, "shop_id": "1", "timestamp": 1644412885, "data": {
                "content": content, "conversation_id": "c1", "create_time": 1681790246,
                "is_visible": true, "message_id": "m1", "type": kind,
                "sender": {"im_user_id": "u1", "role": role}}});
            parse(body.to_string().as_bytes()).unwrap().events.remove(0)
        };
        let PushEvent::Message(seller) = with("CUSTOMER_SERVICE", "TEXT", r#"{"content":"hi"}"#)
        else {
            panic!()
        };
        assert!(matches!(seller.sender, Sender::Seller { .. }));
        assert_eq!(seller.buyer, None, "the conversation knows the buyer");
        assert!(matches!(
            with("SYSTEM", "TEXT", "{}"),
            PushEvent::Ignored(_)
        ));
        assert!(matches!(
            with("BUYER", "NOTIFICATION", "{}"),
            PushEvent::Ignored(_)
        ));
        let PushEvent::Message(image) = with(
            "BUYER",
            "IMAGE",
            r#"{"url":"https://p16.tiktokcdn.com/x.jpg","width":100,"height":80}"#,
        ) else {
            panic!()
        };
        let attachment = image.attachment.unwrap();
        assert_eq!(attachment.kind, MessageKind::Image);
        assert_eq!(attachment.fields["url"], "https://p16.tiktokcdn.com/x.jpg");
        assert_eq!(attachment.fields["width"], "100");
    }

    #[test]
    fn conversation_and_order_events() {
        let conv = r#"{"type":13,"shop_id":"1","timestamp":1,"data":{"conversation_id":"c9","create_time":1}}"#;
        assert_eq!(
            parse(conv.as_bytes()).unwrap().events,
            vec![PushEvent::ThreadChanged("c9".into())]
        );
        let order = r#"{"type":1,"shop_id":"1","timestamp":1,"data":{"order_id":"576461413038785752","order_status":"IN_TRANSIT"}}"#;
        assert_eq!(
            parse(order.as_bytes()).unwrap().events,
            vec![PushEvent::OrderChanged("576461413038785752".into())]
        );
    }
}
