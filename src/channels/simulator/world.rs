//! The simulated marketplaces' state: shops, conversations with their
//! messages, orders, the replies kedai sent (with their idempotency keys),
//! and Shopee's lost-push list. Shared by the fake API servers and the
//! delivery driver behind one mutex.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::channels::signature::PushSigner;
use crate::domain::Platform;

/// A simulated shop and the credentials kedai gets for it.
#[derive(Debug, Clone)]
pub struct SimShop {
    pub platform: Platform,
    /// kedai's handle for it.
    pub key: String,
    /// The platform's id of the shop.
    pub account: String,
    pub app_key: String,
    pub secret: String,
    pub access_token: String,
    /// The Shopee callback URL both sides sign with.
    pub callback_url: String,
}

impl SimShop {
    pub fn signer(&self) -> PushSigner {
        match self.platform {
            Platform::Shopee => {
                PushSigner::shopee(SecretString::from(self.secret.clone()), &self.callback_url)
            }
            _ => PushSigner::app(SecretString::from(self.secret.clone()), &self.app_key),
        }
    }

    /// The credentials JSON for `kedai shop set`.
    pub fn credentials(&self, api_base: &str) -> Value {
        match self.platform {
            Platform::Shopee => json!({
                "partner_id": self.app_key.parse::<u64>().unwrap_or(1),
                "partner_key": self.secret,
                "callback_url": self.callback_url,
                "shop_id": self.account.parse::<u64>().unwrap_or(1),
                "access_token": self.access_token,
                "api_base": api_base,
            }),
            Platform::Lazada => json!({
                "app_key": self.app_key, "app_secret": self.secret, "seller_id": self.account,
                "access_token": self.access_token, "api_base": api_base,
            }),
            _ => json!({
                "app_key": self.app_key, "app_secret": self.secret, "shop_id": self.account,
                "shop_cipher": format!("cipher-{}", self.account),
                "access_token": self.access_token, "api_base": api_base,
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimMessage {
    pub id: String,
    pub from_buyer: bool,
    pub text: String,
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct SimThread {
    pub id: String,
    pub shop: usize,
    pub buyer: String,
    pub buyer_name: String,
    pub messages: Vec<SimMessage>,
}

impl SimThread {
    pub fn last_at(&self) -> DateTime<Utc> {
        self.messages
            .last()
            .map_or(DateTime::<Utc>::MIN_UTC, |m| m.sent_at)
    }
}

/// A message kedai sent through a send API, by the idempotency key it
/// carried.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: Option<String>,
}

#[derive(Debug, Default)]
pub struct World {
    pub shops: Vec<SimShop>,
    pub threads: Vec<SimThread>,
    pub thread_index: HashMap<String, usize>,
    pub received: Vec<Received>,
    /// Shopee's lost pushes: (id, original body).
    pub lost: Vec<(u64, String)>,
    pub next_lost_id: u64,
    pub next_id: u64,
    /// API calls refused for a bad signature, by platform.
    pub bad_api_signatures: HashMap<Platform, u64>,
    /// Pushes of messages kedai sent, to echo back as the platform would.
    pub echoes: Vec<(usize, String)>,
}

impl World {
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn shop_of(&self, platform: Platform, account: &str) -> Option<usize> {
        self.shops
            .iter()
            .position(|s| s.platform == platform && s.account == account)
    }

    pub fn thread(&self, id: &str) -> Option<&SimThread> {
        self.thread_index.get(id).map(|&i| &self.threads[i])
    }

    /// The buyer's thread in a shop, made on first contact.
    pub fn thread_for(&mut self, shop: usize, buyer: &str, name: &str) -> usize {
        if let Some(i) = self
            .threads
            .iter()
            .position(|t| t.shop == shop && t.buyer == buyer)
        {
            return i;
        }
        let id = match self.shops[shop].platform {
            Platform::Lazada => format!("{}_2_{buyer}_1_103", self.shops[shop].account),
            _ => format!("7{:017}", self.new_id()),
        };
        self.threads.push(SimThread {
            id: id.clone(),
            shop,
            buyer: buyer.to_owned(),
            buyer_name: name.to_owned(),
            messages: Vec::new(),
        });
        let index = self.threads.len() - 1;
        self.thread_index.insert(id, index);
        index
    }

    /// A message id in the platform's style.
    pub fn message_id(&mut self, platform: Platform) -> String {
        let n = self.new_id();
        match platform {
            Platform::Lazada => format!("1zYOS{n:013}"),
            _ => format!("2302{n:015}"),
        }
    }

    /// Appends a seller message kedai sent and remembers it; returns its id.
    pub fn record_send(&mut self, thread: usize, text: &str, key: Option<String>) -> String {
        let platform = self.shops[self.threads[thread].shop].platform;
        let id = self.message_id(platform);
        let at = Utc::now();
        self.threads[thread].messages.push(SimMessage {
            id: id.clone(),
            from_buyer: false,
            text: text.to_owned(),
            sent_at: at,
        });
        self.received.push(Received { key });
        self.echoes.push((thread, id.clone()));
        id
    }

    /// The push body (exact bytes) announcing `message` of `thread`.
    pub fn push_body(&self, thread: usize, message: &SimMessage, sent: DateTime<Utc>) -> String {
        let t = &self.threads[thread];
        let shop = &self.shops[t.shop];
        match shop.platform {
            Platform::Shopee => {
                let (from, from_name, to, to_name, from_shop) = if message.from_buyer {
                    (
                        t.buyer.as_str(),
                        t.buyer_name.as_str(),
                        "900",
                        shop.key.as_str(),
                        0,
                    )
                } else {
                    (
                        "900",
                        shop.key.as_str(),
                        t.buyer.as_str(),
                        t.buyer_name.as_str(),
                        1,
                    )
                };
                let account: u64 = shop.account.parse().unwrap_or(0);
                json!({
                    "msg_id": "",
                    "data": {"type": "message", "region": "ID", "content": {
                        "message_id": message.id, "shop_id": if from_shop == 1 { account } else { 165103149 },
                        "from_id": from.parse::<u64>().unwrap_or(0), "from_user_name": from_name,
                        "to_id": to.parse::<u64>().unwrap_or(0), "to_user_name": to_name,
                        "message_type": "text", "content": {"text": message.text},
                        "conversation_id": t.id, "created_timestamp": message.sent_at.timestamp(),
                        "region": "ID"}},
                    "shop_id": account, "code": 10, "timestamp": sent.timestamp(),
                })
                .to_string()
            }
            Platform::Lazada => {
                let (from, from_type, to) = if message.from_buyer {
                    (t.buyer.as_str(), 1, shop.account.as_str())
                } else {
                    (shop.account.as_str(), 2, t.buyer.as_str())
                };
                json!({
                    "seller_id": shop.account, "message_type": 2, "timestamp": sent.timestamp_millis(),
                    "data": {"session_id": t.id, "message_id": message.id,
                        "content": json!({"txt": message.text}).to_string(),
                        "from_account_id": from, "from_account_type": from_type,
                        "to_account_id": to, "to_account_type": 3 - from_type,
                        "send_time": message.sent_at.timestamp_millis(), "template_id": 1,
                        "type": 1, "site_id": "TH", "status": 0},
                })
                .to_string()
            }
            _ => {
                let role = if message.from_buyer {
                    "BUYER"
                } else {
                    "CUSTOMER_SERVICE"
                };
                let im = if message.from_buyer {
                    t.buyer.as_str()
                } else {
                    shop.account.as_str()
                };
                json!({
                    "type": 14, "tts_notification_id": format!("tts-{}", message.id),
                    "shop_id": shop.account, "timestamp": sent.timestamp(),
                    "data": {"content": json!({"content": message.text}).to_string(),
                        "conversation_id": t.id, "create_time": message.sent_at.timestamp(),
                        "is_visible": true, "message_id": message.id, "index": message.id,
                        "type": "TEXT", "sender": {"im_user_id": im, "role": role}},
                })
                .to_string()
            }
        }
    }
}
