//! Shopee Open Platform v2: webchat pushes (code 10), order and tracking
//! pushes (codes 3 and 4), `sellerchat` send and list calls, order detail
//! and tracking, and the lost-push list.
//!
//! Shopee documents no field table for the webchat push; what kedai assumes
//! about it is collected in [`assumptions`], one place to change.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::adapter::{
    attachment_of, cents_of, id_of, int_of, pull_error, push_json, time_of, Api, ChannelAdapter,
    ChannelMessage, FetchedOrder, LostPushes, Push, PushEvent, Recipient, RemoteThread, SendError,
};
use super::credentials::ShopeeCredentials;
use super::signature::{self, PushSigner};
use super::ChannelError;
use crate::domain::{MessageKind, Platform, PlatformBuyerId, Sender};
use crate::store::{BuyerProfile, OrderItem, OrderRecord, TrackingEvent};

/// What kedai assumes where Shopee's documentation is silent or
/// contradicted (see the README's channels section).
pub mod assumptions {
    /// The webchat push carries `data.type` = `message` with the message in
    /// `data.content`, or `notification` (no body: re-read the
    /// conversation). Shape taken from public integrations.
    pub const WEBCHAT_CODE: i64 = 10;
    /// A message is the seller's own when its `from_shop_id` (or the
    /// content's `shop_id`) is the receiving shop; otherwise it is the
    /// buyer's, with `from_id` as the buyer id.
    pub const SELLER_FIELDS: [&str; 2] = ["from_shop_id", "shop_id"];
    /// `get_conversation_list` answers at most 25 per page.
    pub const CONVERSATION_PAGE: u32 = 25;
    /// Messages per `get_message` page (the maximum is not documented).
    pub const MESSAGE_PAGE: u32 = 25;
}

const SEND_PATH: &str = "/api/v2/sellerchat/send_message";
const CONVERSATIONS_PATH: &str = "/api/v2/sellerchat/get_conversation_list";
const MESSAGES_PATH: &str = "/api/v2/sellerchat/get_message";
const ORDER_PATH: &str = "/api/v2/order/get_order_detail";
const TRACKING_NUMBER_PATH: &str = "/api/v2/logistics/get_tracking_number";
const TRACKING_INFO_PATH: &str = "/api/v2/logistics/get_tracking_info";
const LOST_PATH: &str = "/api/v2/push/get_lost_push_message";
const CONFIRM_LOST_PATH: &str = "/api/v2/push/confirm_consumed_lost_push_message";

pub struct Shopee {
    pub credentials: ShopeeCredentials,
    pub api: Api,
}

/// A webchat message (from a push's `data.content` or a `get_message`
/// page) as a channel message of the shop `shop_id`.
pub fn message_of(content: &Value, shop_id: &str) -> Option<ChannelMessage> {
    let id = id_of(&content["message_id"])?;
    let thread = id_of(&content["conversation_id"])?;
    let from_seller = assumptions::SELLER_FIELDS
        .iter()
        .any(|field| id_of(&content[*field]).as_deref() == Some(shop_id));
    let (buyer, buyer_name) = if from_seller {
        (id_of(&content["to_id"]), content["to_user_name"].as_str())
    } else {
        (
            id_of(&content["from_id"]),
            content["from_user_name"].as_str(),
        )
    };
    let sent_at = time_of(&content["created_timestamp"]).unwrap_or_else(Utc::now);
    let body = &content["content"];
    let kind = match content["message_type"].as_str().unwrap_or("text") {
        "text" => MessageKind::Text,
        "image" => MessageKind::Image,
        "sticker" => MessageKind::Sticker,
        "video" => MessageKind::Video,
        "item" | "product" => MessageKind::Product,
        "order" => MessageKind::Order,
        "voucher" => MessageKind::Voucher,
        _ => MessageKind::Other,
    };
    let (text, attachment) = if kind == MessageKind::Text {
        (body["text"].as_str().map(str::to_owned), None)
    } else {
        let mut fields = json!({});
        if let (Some(object), Some(target)) = (body.as_object(), fields.as_object_mut()) {
            for (key, value) in object {
                let key = match key.as_str() {
                    "order_sn" => "order_id",
                    "image_url" => "url",
                    other => other,
                };
                target.insert(key.to_owned(), value.clone());
            }
        }
        let kind_name = content["message_type"].as_str().unwrap_or("");
        (None, attachment_of(kind, &fields, &[("type", kind_name)]))
    };
    Some(ChannelMessage {
        id,
        thread,
        buyer,
        buyer_name: buyer_name.map(str::to_owned),
        sender: if from_seller {
            Sender::Seller {
                name: content["from_user_name"].as_str().map(str::to_owned),
            }
        } else {
            Sender::Buyer
        },
        text,
        attachment,
        sent_at,
    })
}

/// Parses a push envelope `{shop_id, code, timestamp, data}`.
pub fn parse(body: &[u8]) -> Result<Push, ChannelError> {
    let root = push_json(body)?;
    let code = int_of(&root["code"])
        .ok_or_else(|| ChannelError::MalformedPush("no numeric `code`".into()))?;
    let account = id_of(&root["shop_id"]);
    let sent_at = time_of(&root["timestamp"]);
    let data = &root["data"];
    let event = match code {
        // The console's "Verify" probe.
        0 => PushEvent::Ignored("verification probe".into()),
        assumptions::WEBCHAT_CODE => {
            let shop = account.clone().ok_or_else(|| {
                ChannelError::MalformedPush("webchat push without `shop_id`".into())
            })?;
            match data["type"].as_str() {
                Some("message") => {
                    PushEvent::Message(message_of(&data["content"], &shop).ok_or_else(|| {
                        ChannelError::MalformedPush(
                            "message without message_id or conversation_id".into(),
                        )
                    })?)
                }
                Some("notification") => match id_of(&data["content"]["conversation_id"]) {
                    Some(thread) => PushEvent::ThreadChanged(thread),
                    None => PushEvent::Ignored("notification without a conversation".into()),
                },
                other => PushEvent::Ignored(format!("webchat push of type {other:?}")),
            }
        }
        3 | 4 => match id_of(&data["ordersn"]).or_else(|| id_of(&data["order_sn"])) {
            Some(order) => PushEvent::OrderChanged(order),
            None => PushEvent::Ignored("order push without ordersn".into()),
        },
        other => PushEvent::Ignored(format!("push code {other}")),
    };
    Ok(Push {
        account,
        sent_at,
        events: vec![event],
    })
}

/// Shopee's order statuses in kedai's words.
fn status(raw: &str) -> &'static str {
    match raw {
        "UNPAID" => "unpaid",
        "READY_TO_SHIP" => "paid",
        "PROCESSED" | "RETRY_SHIP" => "packed",
        "SHIPPED" => "in_transit",
        "TO_CONFIRM_RECEIVE" | "COMPLETED" => "delivered",
        "IN_CANCEL" | "CANCELLED" => "cancelled",
        "TO_RETURN" => "return_requested",
        _ => "paid",
    }
}

impl Shopee {
    fn shop_params(&self, path: &str) -> Vec<(String, String)> {
        let c = &self.credentials;
        let timestamp = Utc::now().timestamp();
        let sign = signature::shopee_api(
            c.partner_key.expose_secret(),
            c.partner_id,
            path,
            timestamp,
            Some((c.access_token.expose_secret(), c.shop_id)),
        );
        vec![
            ("partner_id".into(), c.partner_id.to_string()),
            ("timestamp".into(), timestamp.to_string()),
            (
                "access_token".into(),
                c.access_token.expose_secret().to_owned(),
            ),
            ("shop_id".into(), c.shop_id.to_string()),
            ("sign".into(), sign),
        ]
    }

    fn partner_params(&self, path: &str) -> Vec<(String, String)> {
        let c = &self.credentials;
        let timestamp = Utc::now().timestamp();
        let sign = signature::shopee_api(
            c.partner_key.expose_secret(),
            c.partner_id,
            path,
            timestamp,
            None,
        );
        vec![
            ("partner_id".into(), c.partner_id.to_string()),
            ("timestamp".into(), timestamp.to_string()),
            ("sign".into(), sign),
        ]
    }

    /// A GET on a shop API; the `response` object, or why not.
    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, SendError> {
        let request = self
            .api
            .client
            .get(self.api.url(path))
            .query(&self.shop_params(path))
            .query(query);
        let (_, body) = self.api.json(request).await?;
        check(&body)?;
        Ok(body["response"].clone())
    }
}

/// Shopee answers `{error, message, response}`; a non-empty `error` failed.
fn check(body: &Value) -> Result<(), SendError> {
    let error = body["error"].as_str().unwrap_or("");
    if error.is_empty() {
        return Ok(());
    }
    let message = format!("{error}: {}", body["message"].as_str().unwrap_or(""));
    Err(match error {
        "error_rate_limit" => SendError::RateLimited {
            message,
            retry_after: None,
        },
        // The daily call limit resets at 00:00 UTC+8.
        "error_limit" => SendError::RateLimited {
            message,
            retry_after: Some(until_shopee_midnight(Utc::now())),
        },
        "error_param" | "error_permission" | "user_is_forbidden" | "error_not_found" => {
            SendError::Rejected(message)
        }
        _ => SendError::Transient(message),
    })
}

fn until_shopee_midnight(now: DateTime<Utc>) -> std::time::Duration {
    let secs_in_day = (now.timestamp() + 8 * 3600).rem_euclid(86_400);
    std::time::Duration::from_secs((86_400 - secs_in_day) as u64)
}

#[async_trait]
impl ChannelAdapter for Shopee {
    fn platform(&self) -> Platform {
        Platform::Shopee
    }

    fn push_signer(&self) -> Option<PushSigner> {
        let c = &self.credentials;
        Some(PushSigner::shopee(
            c.push_key.clone().unwrap_or_else(|| c.partner_key.clone()),
            &c.callback_url,
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
        let to_id: u64 = to.buyer.parse().map_err(|_| {
            SendError::Rejected(format!("buyer id {:?} is not a Shopee user id", to.buyer))
        })?;
        let body = json!({"to_id": to_id, "message_type": "text", "content": {"text": text}});
        let request = self
            .api
            .client
            .post(self.api.url(SEND_PATH))
            .query(&self.shop_params(SEND_PATH))
            .header("X-Kedai-Idempotency-Key", idempotency_key)
            .json(&body);
        let (_, answer) = self.api.json(request).await?;
        check(&answer)?;
        id_of(&answer["response"]["message_id"])
            .ok_or_else(|| SendError::Uncertain("answer without message_id".into()))
    }

    async fn list_threads(&self, since: DateTime<Utc>) -> Result<Vec<RemoteThread>, ChannelError> {
        let mut threads = Vec::new();
        let mut cursor: Option<String> = None;
        for _page in 0..200 {
            let mut query = vec![
                ("direction", "older".to_owned()),
                ("type", "all".to_owned()),
                ("page_size", assumptions::CONVERSATION_PAGE.to_string()),
            ];
            if let Some(cursor) = &cursor {
                query.push(("next_timestamp_nano", cursor.clone()));
            }
            let page = self
                .get(CONVERSATIONS_PATH, &query)
                .await
                .map_err(pull_error)?;
            let mut reached_older = false;
            for c in page["conversations"].as_array().into_iter().flatten() {
                let Some(id) = id_of(&c["conversation_id"]) else {
                    continue;
                };
                let last = time_of(&c["last_message_timestamp"]).unwrap_or_else(Utc::now);
                if last < since {
                    reached_older = true;
                    break;
                }
                threads.push(RemoteThread {
                    id,
                    buyer: id_of(&c["to_id"]),
                    buyer_name: c["to_name"].as_str().map(str::to_owned),
                    last_message_at: last,
                });
            }
            let next = id_of(&page["page_result"]["next_cursor"]["next_message_time_nano"]);
            if reached_older || !page["page_result"]["more"].as_bool().unwrap_or(false) {
                break;
            }
            match next {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
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
        let shop = self.credentials.shop_id.to_string();
        let mut messages = Vec::new();
        let mut offset: Option<String> = None;
        for _page in 0..200 {
            let mut query = vec![
                ("conversation_id", thread.id.clone()),
                ("page_size", assumptions::MESSAGE_PAGE.to_string()),
            ];
            if let Some(offset) = &offset {
                query.push(("offset", offset.clone()));
            }
            let page = self.get(MESSAGES_PATH, &query).await.map_err(pull_error)?;
            let mut reached_older = false;
            for m in page["messages"].as_array().into_iter().flatten() {
                let Some(mut message) = message_of(m, &shop) else {
                    continue;
                };
                if message.sent_at < since {
                    reached_older = true;
                    continue;
                }
                if message.buyer.is_none() {
                    message.buyer = thread.buyer.clone();
                }
                messages.push(message);
            }
            let next = id_of(&page["page_result"]["next_offset"]);
            match next {
                Some(next) if !reached_older && Some(&next) != offset.as_ref() => {
                    offset = Some(next)
                }
                _ => break,
            }
        }
        Ok(messages)
    }

    async fn fetch_order(&self, order_id: &str) -> Result<Option<FetchedOrder>, ChannelError> {
        let detail = self
            .get(
                ORDER_PATH,
                &[
                    ("order_sn_list", order_id.to_owned()),
                    (
                        "response_optional_fields",
                        "buyer_user_id,buyer_username,item_list,total_amount,shipping_carrier"
                            .to_owned(),
                    ),
                ],
            )
            .await
            .map_err(pull_error)?;
        let Some(order) = detail["order_list"].as_array().and_then(|l| l.first()) else {
            return Ok(None);
        };
        let number = self
            .get(TRACKING_NUMBER_PATH, &[("order_sn", order_id.to_owned())])
            .await
            .ok();
        let info = self
            .get(TRACKING_INFO_PATH, &[("order_sn", order_id.to_owned())])
            .await
            .ok();
        Ok(order_of(order, number.as_ref(), info.as_ref()))
    }

    async fn lost_pushes(&self) -> Result<LostPushes, ChannelError> {
        let request = self
            .api
            .client
            .get(self.api.url(LOST_PATH))
            .query(&self.partner_params(LOST_PATH));
        let (_, body) = self.api.json(request).await.map_err(pull_error)?;
        check(&body).map_err(pull_error)?;
        let response = &body["response"];
        Ok(LostPushes {
            bodies: response["push_message_list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["data"].as_str().map(str::to_owned))
                .collect(),
            last_id: id_of(&response["last_message_id"]),
            more: response["has_next_page"].as_bool().unwrap_or(false),
        })
    }

    async fn confirm_lost_pushes(&self, last_id: &str) -> Result<(), ChannelError> {
        let last: Value = last_id
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(last_id));
        let request = self
            .api
            .client
            .post(self.api.url(CONFIRM_LOST_PATH))
            .query(&self.partner_params(CONFIRM_LOST_PATH))
            .json(&json!({ "last_message_id": last }));
        let (_, body) = self.api.json(request).await.map_err(pull_error)?;
        check(&body).map_err(pull_error)
    }
}

/// An order of `get_order_detail`, with its tracking number and events.
fn order_of(order: &Value, number: Option<&Value>, info: Option<&Value>) -> Option<FetchedOrder> {
    let order_number = id_of(&order["order_sn"])?;
    let buyer = id_of(&order["buyer_user_id"]).and_then(|b| PlatformBuyerId::parse(&b).ok());
    let items = order["item_list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let sku = item["model_sku"]
                .as_str()
                .filter(|s| !s.is_empty())
                .or_else(|| item["item_sku"].as_str())
                .map(str::to_owned)
                .or_else(|| id_of(&item["item_id"]))?;
            Some(OrderItem {
                sku,
                name: item["item_name"].as_str().unwrap_or("").to_owned(),
                quantity: u32::try_from(int_of(&item["model_quantity_purchased"]).unwrap_or(1))
                    .unwrap_or(1)
                    .max(1),
                unit_price_cents: cents_of(&item["model_discounted_price"]).unwrap_or(0),
            })
        })
        .collect();
    let mut events: Vec<TrackingEvent> = info
        .and_then(|i| i["tracking_info"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(TrackingEvent {
                at: time_of(&e["update_time"])?,
                status: e["logistics_status"]
                    .as_str()
                    .unwrap_or("update")
                    .to_lowercase(),
                location: None,
                description: e["description"].as_str().map(str::to_owned),
            })
        })
        .collect();
    events.sort_by_key(|e| e.at);
    let record = OrderRecord {
        order_number,
        buyer: buyer.clone(),
        status: status(order["order_status"].as_str().unwrap_or("")).to_owned(),
        currency: order["currency"]
            .as_str()
            .unwrap_or("USD")
            .to_ascii_uppercase(),
        total_cents: cents_of(&order["total_amount"]).unwrap_or(0),
        items,
        carrier: order["shipping_carrier"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        tracking_number: number
            .and_then(|n| n["tracking_number"].as_str())
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        tracking_events: events,
        placed_at: time_of(&order["create_time"]).unwrap_or_else(Utc::now),
        destination: order["region"].as_str().map(str::to_owned),
        expected_delivery: None,
    };
    let profile = buyer.map(|id| BuyerProfile {
        platform_buyer_id: id,
        display_name: order["buyer_username"].as_str().map(str::to_owned),
        language: None,
        member_level: None,
        is_vip: None,
        lifetime_value_cents: None,
        currency: None,
    });
    Some(FetchedOrder {
        record,
        buyer: profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replayed production sample of a webchat push (reference §1.1).
    const SAMPLE: &str = r#"{"msg_id":"","data":{"type":"message","region":"ID","content":{
        "message_id":"2302748948493123953","shop_id":165103149,"request_id":"35f9478b",
        "from_id":165105353,"from_user_name":"vn_cstoreponorogo",
        "to_id":947151379,"to_user_name":"keelatofficial",
        "message_type":"text","content":{"text":"Baik kak .. 🤗"},
        "conversation_id":"709122092476686867","created_timestamp":1726044721,"region":"ID",
        "is_in_chatbot_session":false,"source_content":{},"quoted_msg":{"message_id":""},
        "sub_account_id":0,"sub_account_name":0}},
        "shop_id":947042923,"code":10,"timestamp":1726044722}"#;

    #[test]
    fn a_webchat_push_becomes_a_buyer_message() {
        let push = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(push.account.as_deref(), Some("947042923"));
        assert_eq!(push.sent_at.unwrap().timestamp(), 1726044722);
        let PushEvent::Message(m) = &push.events[0] else {
            panic!("{push:?}");
        };
        assert_eq!(m.id, "2302748948493123953");
        assert_eq!(m.thread, "709122092476686867");
        assert_eq!(m.buyer.as_deref(), Some("165105353"));
        assert_eq!(m.buyer_name.as_deref(), Some("vn_cstoreponorogo"));
        assert_eq!(m.sender, Sender::Buyer);
        assert_eq!(m.text.as_deref(), Some("Baik kak .. 🤗"));
        assert_eq!(m.sent_at.timestamp(), 1726044721);
    }

    #[test]
    fn the_sellers_own_message_is_recognised_and_non_text_kept() {
        let body = r#"{"shop_id": 5, "code": 10, "timestamp": 1726044722, "data": {"type": "message",
            "content": {"message_id": 9, "conversation_id": 7, "from_id": 500, "from_shop_id": 5,
            "from_user_name": "myshop", "to_id": 42, "to_user_name": "siti", "message_type": "order",
            "content": {"order_sn": "220810QSK8S7BX"}, "created_timestamp": 1726044721}}}"#;
        let PushEvent::Message(m) = &parse(body.as_bytes()).unwrap().events[0] else {
            panic!()
        };
        assert_eq!(
            m.sender,
            Sender::Seller {
                name: Some("myshop".into())
            }
        );
        assert_eq!(m.buyer.as_deref(), Some("42"));
        let attachment = m.attachment.as_ref().unwrap();
        assert_eq!(attachment.kind, MessageKind::Order);
        assert_eq!(attachment.fields["order_id"], "220810QSK8S7BX");
    }

    #[test]
    fn other_pushes_name_what_they_are() {
        let order = r#"{"data":{"items":[],"ordersn":"220810QSK8S7BX","status":"PROCESSED","completed_scenario":"","update_time":1660123127},"shop_id":727720655,"code":3,"timestamp":1660123127}"#;
        assert_eq!(
            parse(order.as_bytes()).unwrap().events,
            vec![PushEvent::OrderChanged("220810QSK8S7BX".into())]
        );
        let probe = r#"{"code": 0, "data": {"verify_info": "x"}, "timestamp": 1660123127}"#;
        let push = parse(probe.as_bytes()).unwrap();
        assert!(push.account.is_none());
        assert!(matches!(push.events[0], PushEvent::Ignored(_)));
        for bad in [
            "",
            "{",
            "[]",
            r#"{"code": "x"}"#,
            r#"{"code": 10, "data": {"type": "message"}}"#,
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn the_daily_limit_resets_at_midnight_in_singapore() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-21T15:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(until_shopee_midnight(at).as_secs(), 3600);
    }
}
