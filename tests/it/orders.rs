//! The orders API: upsert by (shop, order number), buyer profiles, filters,
//! tenant isolation and bad input.

use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};

fn order(number: &str, status: &str) -> Value {
    json!({
        "shop": "demo-shopee",
        "order_number": number,
        "buyer": {
            "id": "shopee:nadia.r",
            "name": "Nadia R.",
            "language": "id",
            "member_level": "gold",
            "vip": true,
            "lifetime_value": 182.4,
            "currency": "USD"
        },
        "status": status,
        "currency": "usd",
        "total": 25.8,
        "items": [{"sku": "TEE-OVS-01-RED-XL", "name": "Oversized Cotton Tee (Red, XL)", "quantity": 2, "unit_price": 12.9}],
        "carrier": "J&T Express",
        "tracking_number": "JT0123456789ID",
        "destination": "id",
        "placed_at": "2026-11-15T08:00:00Z",
        "expected_delivery": "2026-11-22T08:00:00Z",
        "tracking_events": [
            {"at": "2026-11-16T10:00:00Z", "status": "in_transit", "location": "Jakarta, ID", "description": "Arrived at sorting centre"},
            {"at": "2026-11-15T20:00:00Z", "status": "picked_up", "location": "Jakarta, ID"}
        ]
    })
}

async fn post(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&app.token)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn orders_are_upserted_with_their_buyer_and_listed() {
    let (app, _dir) = spawn_app().await;
    let response = post(&app, &order("SPE-1", "shipped")).await;
    assert_eq!(response.status(), 200);
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["currency"], "USD");
    assert_eq!(first["destination"], "ID");
    assert_eq!(first["total"], 25.8);
    assert_eq!(first["items"][0]["unit_price"], 12.9);
    assert_eq!(
        first["tracking_events"][0]["status"], "picked_up",
        "events are kept in time order"
    );

    let second: Value = post(&app, &order("SPE-1", "in_transit"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["id"], second["id"], "same number, same order");
    let read = app
        .get_json(&format!("/api/v1/orders/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(read["status"], "in_transit");
    assert_eq!(read["expected_delivery"], "2026-11-22T08:00:00.000000Z");

    post(&app, &order("SPE-2", "paid")).await;
    let list = app.get_json("/api/v1/orders?buyer=shopee:nadia.r").await;
    assert_eq!(list["orders"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.get_json("/api/v1/orders?shop=demo-lazada").await["orders"],
        json!([])
    );

    // The buyer's profile is what the conversation shows once they write.
    let ack: Value = app
        .ingest(&message(
            "demo-shopee",
            "m-1",
            "shopee:nadia.r",
            "Paket saya di mana?",
        ))
        .await
        .json()
        .await
        .unwrap();
    let detail = app
        .get_json(&format!(
            "/api/v1/conversations/{}",
            ack["conversation_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(detail["buyer_profile"]["vip"], true);
    assert_eq!(detail["buyer_profile"]["member_level"], "gold");
    assert_eq!(detail["buyer_profile"]["language"], "id");
}

#[tokio::test]
async fn bad_orders_are_rejected_and_change_nothing() {
    let (app, _dir) = spawn_app().await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"shop": "demo-shopee"}), 422, ""),
        (
            {
                let mut o = order("X", "teleported");
                o["status"] = json!("teleported");
                o
            },
            422,
            "status",
        ),
        (
            {
                let mut o = order("X", "paid");
                o["total"] = json!(-1);
                o
            },
            422,
            "total",
        ),
        (
            {
                let mut o = order("X", "paid");
                o["items"] = json!([]);
                o
            },
            422,
            "items",
        ),
        (
            {
                let mut o = order("X", "paid");
                o["currency"] = json!("dollars");
                o
            },
            422,
            "currency",
        ),
        (
            {
                let mut o = order("X", "paid");
                o["placed_at"] = json!("yesterday");
                o
            },
            422,
            "placed_at",
        ),
        (
            {
                let mut o = order("X", "paid");
                o["buyer"]["language"] = json!("indonesian!");
                o
            },
            422,
            "buyer.language",
        ),
        (
            {
                let mut o = order("X", "paid");
                o["items"][0]["quantity"] = json!(0);
                o
            },
            422,
            "items.quantity",
        ),
        (
            {
                let mut o = order("X", "paid");
                o["order_number"] = json!("  ");
                o
            },
            422,
            "order_number",
        ),
        (
            {
                let mut o = order("X", "paid");
                o["shop"] = json!("nope");
                o
            },
            404,
            "nope",
        ),
        (
            {
                let mut o = order("X", "paid");
                o["surprise"] = json!(1);
                o
            },
            422,
            "surprise",
        ),
    ];
    for (body, status, needle) in cases {
        let response = post(&app, &body).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        let text = error["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(needle), "{text:?} should mention {needle:?}");
    }
    let malformed = app
        .client
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"shop\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let anonymous = app
        .client
        .post(app.url("/api/v1/orders"))
        .json(&order("X", "paid"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(app.get_json("/api/v1/orders").await["orders"], json!([]));
    assert_eq!(app.get("/api/v1/orders/not-an-id").await.status(), 404);
    assert_eq!(app.get("/api/v1/orders?limit=0").await.status(), 422);
}
