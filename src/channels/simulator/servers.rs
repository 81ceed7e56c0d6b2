//! Fake Shopee, Lazada and TikTok Shop API servers on loopback: each checks
//! kedai's request signatures the way its platform does, accepts sent
//! messages (remembering their idempotency keys), and serves conversation
//! and message lists with the platform's paging, orders and tracking, and
//! (Shopee) the lost-push list.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use super::world::{SimThread, World};
use crate::channels::signature;
use crate::domain::Platform;

pub type Shared = Arc<Mutex<World>>;
type Params = HashMap<String, String>;

fn lock(world: &Shared) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

fn key_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("X-Kedai-Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn param<'a>(p: &'a Params, name: &str) -> &'a str {
    p.get(name).map(String::as_str).unwrap_or("")
}

// ---- Shopee ----

/// The shop a Shopee shop-level call is signed for, or `None`.
fn shopee_shop(world: &mut World, path: &str, p: &Params) -> Option<usize> {
    let shop = world.shop_of(Platform::Shopee, param(p, "shop_id"))?;
    let s = &world.shops[shop];
    let expected = signature::shopee_api(
        &s.secret,
        s.app_key.parse().unwrap_or(0),
        path,
        param(p, "timestamp").parse().unwrap_or(0),
        Some((param(p, "access_token"), s.account.parse().unwrap_or(0))),
    );
    if expected == param(p, "sign") && param(p, "access_token") == s.access_token {
        Some(shop)
    } else {
        *world
            .bad_api_signatures
            .entry(Platform::Shopee)
            .or_default() += 1;
        None
    }
}

fn shopee_error(error: &str) -> Json<Value> {
    Json(json!({"request_id": "sim", "error": error, "message": "simulated", "response": {}}))
}

fn shopee_ok(response: Value) -> Json<Value> {
    Json(json!({"request_id": "sim", "error": "", "message": "", "response": response}))
}

async fn shopee_send(
    State(world): State<Shared>,
    Query(p): Query<Params>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let mut w = lock(&world);
    let Some(shop) = shopee_shop(&mut w, "/api/v2/sellerchat/send_message", &p) else {
        return shopee_error("error_sign");
    };
    let to = body["to_id"]
        .as_u64()
        .map(|t| t.to_string())
        .unwrap_or_default();
    let text = body["content"]["text"].as_str().unwrap_or("").to_owned();
    let Some(thread) = w
        .threads
        .iter()
        .position(|t| t.shop == shop && t.buyer == to)
    else {
        return shopee_error("error_param");
    };
    let id = w.record_send(thread, &text, key_of(&headers));
    shopee_ok(
        json!({"message_id": id, "to_id": to, "message_type": "text",
        "conversation_id": w.threads[thread].id, "created_timestamp": Utc::now().timestamp()}),
    )
}

async fn shopee_conversations(State(world): State<Shared>, Query(p): Query<Params>) -> Json<Value> {
    let mut w = lock(&world);
    let Some(shop) = shopee_shop(&mut w, "/api/v2/sellerchat/get_conversation_list", &p) else {
        return shopee_error("error_sign");
    };
    let size: usize = param(&p, "page_size").parse().unwrap_or(25).min(25);
    let before: i64 = param(&p, "next_timestamp_nano").parse().unwrap_or(i64::MAX);
    let mut threads: Vec<&SimThread> = w
        .threads
        .iter()
        .filter(|t| t.shop == shop && !t.messages.is_empty())
        .filter(|t| nanos(t.last_at()) < before)
        .collect();
    threads.sort_by_key(|t| std::cmp::Reverse((t.last_at(), t.id.clone())));
    let page: Vec<&SimThread> = threads.iter().take(size).copied().collect();
    let more = threads.len() > size;
    let next = page.last().map(|t| nanos(t.last_at())).unwrap_or(0);
    let conversations: Vec<Value> = page
        .iter()
        .map(|t| {
            json!({"conversation_id": t.id, "to_id": t.buyer.parse::<u64>().unwrap_or(0),
            "to_name": t.buyer_name, "shop_id": w.shops[shop].account,
            "last_message_timestamp": nanos(t.last_at())})
        })
        .collect();
    shopee_ok(json!({"conversations": conversations,
        "page_result": {"page_size": size, "more": more,
            "next_cursor": {"next_message_time_nano": next.to_string()}}}))
}

fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(0)
}

async fn shopee_messages(State(world): State<Shared>, Query(p): Query<Params>) -> Json<Value> {
    let mut w = lock(&world);
    let Some(shop) = shopee_shop(&mut w, "/api/v2/sellerchat/get_message", &p) else {
        return shopee_error("error_sign");
    };
    let Some(thread) = w
        .thread(param(&p, "conversation_id"))
        .filter(|t| t.shop == shop)
    else {
        return shopee_error("error_not_found");
    };
    let size: usize = param(&p, "page_size").parse().unwrap_or(25).min(50);
    let offset: usize = param(&p, "offset").parse().unwrap_or(0);
    let account: u64 = w.shops[shop].account.parse().unwrap_or(0);
    let buyer: u64 = thread.buyer.parse().unwrap_or(0);
    let newest: Vec<Value> = thread
        .messages
        .iter()
        .rev()
        .skip(offset)
        .take(size)
        .map(|m| {
            let (from, to, from_shop) = if m.from_buyer { (buyer, 900, 0) } else { (900, buyer, account) };
            json!({"message_id": m.id, "message_type": "text", "from_id": from, "from_shop_id": from_shop,
                "to_id": to, "to_shop_id": if m.from_buyer { account } else { 0 },
                "conversation_id": thread.id, "created_timestamp": m.sent_at.timestamp(),
                "region": "ID", "status": "normal", "content": {"text": m.text}})
        })
        .collect();
    let next = offset + newest.len();
    let next = if next < thread.messages.len() {
        next.to_string()
    } else {
        String::new()
    };
    shopee_ok(json!({"messages": newest, "page_result": {"page_size": size, "next_offset": next}}))
}

async fn shopee_order(State(world): State<Shared>, Query(p): Query<Params>) -> Json<Value> {
    let mut w = lock(&world);
    if shopee_shop(&mut w, "/api/v2/order/get_order_detail", &p).is_none() {
        return shopee_error("error_sign");
    }
    let sn = param(&p, "order_sn_list").to_owned();
    shopee_ok(
        json!({"order_list": [{"order_sn": sn, "order_status": "SHIPPED", "currency": "IDR",
        "total_amount": 150000, "create_time": Utc::now().timestamp() - 86_400 * 2,
        "buyer_user_id": 4242, "buyer_username": "sim.buyer", "shipping_carrier": "SPX Express",
        "item_list": [{"item_name": "Oversized tee", "model_sku": "TEE-OVS-01-RED-XL",
            "model_quantity_purchased": 1, "model_discounted_price": 150000}]}]}),
    )
}

async fn shopee_tracking_number(
    State(world): State<Shared>,
    Query(p): Query<Params>,
) -> Json<Value> {
    let mut w = lock(&world);
    if shopee_shop(&mut w, "/api/v2/logistics/get_tracking_number", &p).is_none() {
        return shopee_error("error_sign");
    }
    shopee_ok(json!({"tracking_number": "SPXID0123456789"}))
}

async fn shopee_tracking_info(State(world): State<Shared>, Query(p): Query<Params>) -> Json<Value> {
    let mut w = lock(&world);
    if shopee_shop(&mut w, "/api/v2/logistics/get_tracking_info", &p).is_none() {
        return shopee_error("error_sign");
    }
    let at = Utc::now().timestamp() - 3600;
    shopee_ok(
        json!({"logistics_status": "LOGISTICS_PICKUP_DONE", "tracking_info": [
        {"update_time": at, "description": "Parcel picked up by SPX", "logistics_status": "LOGISTICS_PICKUP_DONE"}]}),
    )
}

/// Partner-level calls are signed without a shop.
fn shopee_partner(world: &mut World, path: &str, p: &Params) -> bool {
    let ok = world.shops.iter().any(|s| {
        s.platform == Platform::Shopee
            && s.app_key == param(p, "partner_id")
            && signature::shopee_api(
                &s.secret,
                s.app_key.parse().unwrap_or(0),
                path,
                param(p, "timestamp").parse().unwrap_or(0),
                None,
            ) == param(p, "sign")
    });
    if !ok {
        *world
            .bad_api_signatures
            .entry(Platform::Shopee)
            .or_default() += 1;
    }
    ok
}

async fn shopee_lost(State(world): State<Shared>, Query(p): Query<Params>) -> Json<Value> {
    let mut w = lock(&world);
    if !shopee_partner(&mut w, "/api/v2/push/get_lost_push_message", &p) {
        return shopee_error("error_sign");
    }
    let page: Vec<&(u64, String)> = w.lost.iter().take(100).collect();
    let list: Vec<Value> = page
        .iter()
        .map(|(_, body)| {
            let v: Value = serde_json::from_str(body).unwrap_or_default();
            json!({"shop_id": v["shop_id"], "code": v["code"], "timestamp": v["timestamp"], "data": body})
        })
        .collect();
    let last = page.last().map(|(id, _)| *id);
    shopee_ok(
        json!({"push_message_list": list, "has_next_page": w.lost.len() > 100,
        "last_message_id": last}),
    )
}

async fn shopee_confirm_lost(
    State(world): State<Shared>,
    Query(p): Query<Params>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let mut w = lock(&world);
    if !shopee_partner(
        &mut w,
        "/api/v2/push/confirm_consumed_lost_push_message",
        &p,
    ) {
        return shopee_error("error_sign");
    }
    let last = body["last_message_id"].as_u64().unwrap_or(0);
    w.lost.retain(|(id, _)| *id > last);
    shopee_ok(json!({}))
}

// ---- Lazada ----

fn lazada_shop(world: &mut World, path: &str, p: &Params) -> Option<usize> {
    let shop = world.shops.iter().position(|s| {
        s.platform == Platform::Lazada
            && s.app_key == param(p, "app_key")
            && s.access_token == param(p, "access_token")
    });
    let all: Vec<(String, String)> = p.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    match shop {
        Some(i)
            if signature::lazada_api(&world.shops[i].secret, path, &all) == param(p, "sign") =>
        {
            Some(i)
        }
        _ => {
            *world
                .bad_api_signatures
                .entry(Platform::Lazada)
                .or_default() += 1;
            None
        }
    }
}

fn lazada_error(code: &str) -> Json<Value> {
    Json(json!({"code": code, "message": "simulated", "request_id": "sim"}))
}

fn lazada_ok(data: Value) -> Json<Value> {
    Json(json!({"code": "0", "data": data, "request_id": "sim"}))
}

async fn lazada_send(
    State(world): State<Shared>,
    headers: HeaderMap,
    Form(p): Form<Params>,
) -> Json<Value> {
    let mut w = lock(&world);
    let Some(shop) = lazada_shop(&mut w, "/im/message/send", &p) else {
        return lazada_error("IncompleteSignature");
    };
    let Some(&thread) = w.thread_index.get(param(&p, "session_id")) else {
        return lazada_error("SessionNotExist");
    };
    if w.threads[thread].shop != shop {
        return lazada_error("SessionNotExist");
    }
    let id = w.record_send(thread, param(&p, "txt"), key_of(&headers));
    lazada_ok(
        json!({"message_id": id, "template_id": 1, "current_time": Utc::now().timestamp_millis()}),
    )
}

/// Lazada pages back in time from `start_time` (ms), ties broken by id.
fn before(at: DateTime<Utc>, id: &str, start: i64, last: Option<&str>) -> bool {
    let at = at.timestamp_millis();
    at < start || (at == start && last.is_none_or(|l| id < l))
}

async fn lazada_sessions(State(world): State<Shared>, Query(p): Query<Params>) -> Json<Value> {
    let mut w = lock(&world);
    let Some(shop) = lazada_shop(&mut w, "/im/session/list", &p) else {
        return lazada_error("IncompleteSignature");
    };
    let start: i64 = param(&p, "start_time").parse().unwrap_or(i64::MAX);
    let last = p.get("last_session_id").map(String::as_str);
    let mut threads: Vec<&SimThread> = w
        .threads
        .iter()
        .filter(|t| t.shop == shop && !t.messages.is_empty())
        .filter(|t| before(t.last_at(), &t.id, start, last))
        .collect();
    threads.sort_by(|a, b| (b.last_at(), &b.id).cmp(&(a.last_at(), &a.id)));
    let page: Vec<&SimThread> = threads.iter().take(20).copied().collect();
    let list: Vec<Value> = page
        .iter()
        .map(|t| json!({"session_id": t.id, "buyer_id": t.buyer, "title": t.buyer_name,
            "last_message_time": t.last_at().timestamp_millis(), "unread_count": 0, "site_id": "TH"}))
        .collect();
    lazada_ok(json!({"session_list": list, "has_more": threads.len() > 20,
        "next_start_time": page.last().map(|t| t.last_at().timestamp_millis()),
        "last_session_id": page.last().map(|t| t.id.clone())}))
}

async fn lazada_messages(State(world): State<Shared>, Query(p): Query<Params>) -> Json<Value> {
    let mut w = lock(&world);
    let Some(shop) = lazada_shop(&mut w, "/im/message/list", &p) else {
        return lazada_error("IncompleteSignature");
    };
    let Some(thread) = w.thread(param(&p, "session_id")).filter(|t| t.shop == shop) else {
        return lazada_error("SessionNotExist");
    };
    let start: i64 = param(&p, "start_time").parse().unwrap_or(i64::MAX);
    let last = p.get("last_message_id").map(String::as_str);
    let account = w.shops[shop].account.clone();
    let mut messages: Vec<_> = thread
        .messages
        .iter()
        .filter(|m| before(m.sent_at, &m.id, start, last))
        .collect();
    messages.sort_by(|a, b| (b.sent_at, &b.id).cmp(&(a.sent_at, &a.id)));
    let page: Vec<_> = messages.iter().take(20).collect();
    let list: Vec<Value> = page
        .iter()
        .map(|m| {
            let (from, ft, to) = if m.from_buyer {
                (thread.buyer.clone(), 1, account.clone())
            } else {
                (account.clone(), 2, thread.buyer.clone())
            };
            json!({"session_id": thread.id, "message_id": m.id,
                "content": json!({"txt": m.text}).to_string(), "from_account_id": from,
                "from_account_type": ft, "to_account_id": to, "send_time": m.sent_at.timestamp_millis(),
                "template_id": 1, "type": 1, "status": 0})
        })
        .collect();
    lazada_ok(
        json!({"message_list": list, "has_more": messages.len() > 20,
        "next_start_time": page.last().map(|m| m.sent_at.timestamp_millis()),
        "last_message_id": page.last().map(|m| m.id.clone())}),
    )
}

async fn lazada_order(State(world): State<Shared>, Query(p): Query<Params>) -> Json<Value> {
    let mut w = lock(&world);
    if lazada_shop(&mut w, "/order/get", &p).is_none() {
        return lazada_error("IncompleteSignature");
    }
    lazada_ok(
        json!({"order_id": param(&p, "order_id"), "order_number": param(&p, "order_id"),
        "statuses": ["shipped"], "price": "450.00", "created_at": "2026-11-20 09:30:00 +0700"}),
    )
}

async fn lazada_items(State(world): State<Shared>, Query(p): Query<Params>) -> Json<Value> {
    let mut w = lock(&world);
    if lazada_shop(&mut w, "/order/items/get", &p).is_none() {
        return lazada_error("IncompleteSignature");
    }
    lazada_ok(
        json!([{"name": "Linen dress", "sku": "DRS-LIN-02-M", "item_price": "450.00",
        "status": "shipped", "tracking_code": "LEXTH012345678", "shipment_provider": "LEX",
        "buyer_id": "lazada-sim-buyer", "currency": "THB"}]),
    )
}

async fn lazada_trace(State(world): State<Shared>, Query(p): Query<Params>) -> Json<Value> {
    let mut w = lock(&world);
    if lazada_shop(&mut w, "/logistic/order/trace", &p).is_none() {
        return lazada_error("IncompleteSignature");
    }
    let at = Utc::now().timestamp_millis() - 3_600_000;
    Json(
        json!({"code": "0", "result": {"module": [{"package_detail_info_list": [
        {"tracking_number": "LEXTH012345678", "logistic_detail_info_list": [
            {"title": "In transit", "description": "Departed sorting centre", "status_code": "in_transit", "event_time": at}]}]}]}}),
    )
}

// ---- TikTok Shop ----

fn tiktok_shop(
    world: &mut World,
    path: &str,
    p: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<usize> {
    let token = headers
        .get("x-tts-access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let shop = world.shops.iter().position(|s| {
        s.platform == Platform::Tiktok
            && s.app_key == param(p, "app_key")
            && s.access_token == token
            && format!("cipher-{}", s.account) == param(p, "shop_cipher")
    });
    let all: Vec<(String, String)> = p.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    match shop {
        Some(i)
            if signature::tiktok_api(&world.shops[i].secret, path, &all, body)
                == param(p, "sign") =>
        {
            Some(i)
        }
        _ => {
            *world
                .bad_api_signatures
                .entry(Platform::Tiktok)
                .or_default() += 1;
            None
        }
    }
}

fn tiktok_error(code: i64) -> Json<Value> {
    Json(json!({"code": code, "message": "simulated", "request_id": "sim"}))
}

fn tiktok_ok(data: Value) -> Json<Value> {
    Json(json!({"code": 0, "message": "Success", "request_id": "sim", "data": data}))
}

async fn tiktok_send(
    State(world): State<Shared>,
    Path(thread): Path<String>,
    Query(p): Query<Params>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Json<Value> {
    let mut w = lock(&world);
    let path = format!("/customer_service/202309/conversations/{thread}/messages");
    let Some(shop) = tiktok_shop(&mut w, &path, &p, &headers, &body) else {
        return tiktok_error(106001);
    };
    let Some(&index) = w.thread_index.get(&thread) else {
        return tiktok_error(45102007);
    };
    if w.threads[index].shop != shop {
        return tiktok_error(45102007);
    }
    let value: Value = serde_json::from_slice(&body).unwrap_or_default();
    let content: Value = value["content"]
        .as_str()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    let text = content["content"].as_str().unwrap_or("").to_owned();
    let id = w.record_send(index, &text, key_of(&headers));
    tiktok_ok(json!({"message_id": id}))
}

async fn tiktok_conversations(
    State(world): State<Shared>,
    Query(p): Query<Params>,
    headers: HeaderMap,
) -> Json<Value> {
    let mut w = lock(&world);
    let Some(shop) = tiktok_shop(
        &mut w,
        "/customer_service/202309/conversations",
        &p,
        &headers,
        b"",
    ) else {
        return tiktok_error(106001);
    };
    let offset: usize = param(&p, "page_token").parse().unwrap_or(0);
    let size: usize = param(&p, "page_size").parse().unwrap_or(20).min(20);
    let mut threads: Vec<&SimThread> = w
        .threads
        .iter()
        .filter(|t| t.shop == shop && !t.messages.is_empty())
        .collect();
    threads.sort_by_key(|t| std::cmp::Reverse((t.last_at(), t.id.clone())));
    let page: Vec<Value> = threads
        .iter()
        .skip(offset)
        .take(size)
        .map(|t| json!({"id": t.id, "participant_count": 2, "unread_count": 0, "can_send_message": true,
            "create_time": t.messages.first().map(|m| m.sent_at.timestamp()),
            "participants": [{"im_user_id": t.buyer, "user_id": format!("u{}", t.buyer), "role": "BUYER",
                "nickname": t.buyer_name}],
            "latest_message": {"create_time": t.last_at().timestamp()}}))
        .collect();
    let next = if offset + size < threads.len() {
        (offset + size).to_string()
    } else {
        String::new()
    };
    tiktok_ok(json!({"conversations": page, "next_page_token": next}))
}

async fn tiktok_messages(
    State(world): State<Shared>,
    Path(thread): Path<String>,
    Query(p): Query<Params>,
    headers: HeaderMap,
) -> Json<Value> {
    let mut w = lock(&world);
    let path = format!("/customer_service/202309/conversations/{thread}/messages");
    let Some(shop) = tiktok_shop(&mut w, &path, &p, &headers, b"") else {
        return tiktok_error(106001);
    };
    let Some(t) = w.thread(&thread).filter(|t| t.shop == shop) else {
        return tiktok_error(45102007);
    };
    let offset: usize = param(&p, "page_token").parse().unwrap_or(0);
    let size: usize = param(&p, "page_size").parse().unwrap_or(10).min(10);
    let account = w.shops[shop].account.clone();
    let page: Vec<Value> = t
        .messages
        .iter()
        .rev()
        .skip(offset)
        .take(size)
        .map(|m| {
            let (im, role) = if m.from_buyer {
                (t.buyer.clone(), "BUYER")
            } else {
                (account.clone(), "CUSTOMER_SERVICE")
            };
            json!({"id": m.id, "type": "TEXT", "content": json!({"content": m.text}).to_string(),
                "create_time": m.sent_at.timestamp(), "is_visible": true,
                "sender": {"im_user_id": im, "role": role}})
        })
        .collect();
    let next = if offset + size < t.messages.len() {
        (offset + size).to_string()
    } else {
        String::new()
    };
    tiktok_ok(json!({"messages": page, "next_page_token": next}))
}

async fn tiktok_orders(
    State(world): State<Shared>,
    Query(p): Query<Params>,
    headers: HeaderMap,
) -> Json<Value> {
    let mut w = lock(&world);
    if tiktok_shop(&mut w, "/order/202309/orders", &p, &headers, b"").is_none() {
        return tiktok_error(106001);
    }
    tiktok_ok(
        json!({"orders": [{"id": param(&p, "ids"), "status": "IN_TRANSIT", "user_id": "u-sim",
        "create_time": Utc::now().timestamp() - 86_400, "tracking_number": "JT0123456789",
        "shipping_provider": "J&T Express", "payment": {"currency": "MYR", "total_amount": "59.90"},
        "line_items": [{"seller_sku": "CAP-BSB-01", "product_name": "Baseball cap", "sale_price": "59.90"}]}]}),
    )
}

async fn tiktok_tracking(
    State(world): State<Shared>,
    Path(order): Path<String>,
    Query(p): Query<Params>,
    headers: HeaderMap,
) -> Json<Value> {
    let mut w = lock(&world);
    let path = format!("/fulfillment/202309/orders/{order}/tracking");
    if tiktok_shop(&mut w, &path, &p, &headers, b"").is_none() {
        return tiktok_error(106001);
    }
    let at = Utc
        .timestamp_opt(Utc::now().timestamp() - 7200, 0)
        .single()
        .map(|t| t.timestamp_millis());
    tiktok_ok(json!({"tracking": [{"description": "Arrived at hub", "update_time_millis": at}]}))
}

/// The three platforms' routers, each to be served on its own address.
pub fn routers(world: Shared) -> [(Platform, Router); 3] {
    let shopee = Router::new()
        .route("/api/v2/sellerchat/send_message", post(shopee_send))
        .route(
            "/api/v2/sellerchat/get_conversation_list",
            get(shopee_conversations),
        )
        .route("/api/v2/sellerchat/get_message", get(shopee_messages))
        .route("/api/v2/order/get_order_detail", get(shopee_order))
        .route(
            "/api/v2/logistics/get_tracking_number",
            get(shopee_tracking_number),
        )
        .route(
            "/api/v2/logistics/get_tracking_info",
            get(shopee_tracking_info),
        )
        .route("/api/v2/push/get_lost_push_message", get(shopee_lost))
        .route(
            "/api/v2/push/confirm_consumed_lost_push_message",
            post(shopee_confirm_lost),
        )
        .with_state(world.clone());
    let lazada = Router::new()
        .route("/im/message/send", post(lazada_send))
        .route("/im/session/list", get(lazada_sessions))
        .route("/im/message/list", get(lazada_messages))
        .route("/order/get", get(lazada_order))
        .route("/order/items/get", get(lazada_items))
        .route("/logistic/order/trace", get(lazada_trace))
        .with_state(world.clone());
    let tiktok = Router::new()
        .route(
            "/customer_service/202309/conversations/{id}/messages",
            post(tiktok_send).get(tiktok_messages),
        )
        .route(
            "/customer_service/202309/conversations",
            get(tiktok_conversations),
        )
        .route("/order/202309/orders", get(tiktok_orders))
        .route(
            "/fulfillment/202309/orders/{id}/tracking",
            get(tiktok_tracking),
        )
        .with_state(world);
    [
        (Platform::Shopee, shopee),
        (Platform::Lazada, lazada),
        (Platform::Tiktok, tiktok),
    ]
}
