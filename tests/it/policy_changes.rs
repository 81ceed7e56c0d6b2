//! A shop's policy change is measured against the shop's history before
//! it goes live: refused with the messages it would have let the AI send
//! alone when people had to rewrite them, applied when it only reaches
//! answers people confirmed or only sends more to people, always recorded,
//! and undone in one action.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};
use crate::web::{decide, ingest, Ingested};

pub(crate) const SHOP: &str = "demo-shopee";

/// A shipping question kedai drafted at `confidence` (below the default
/// `auto_min_confidence`), and the reply a person sent.
pub(crate) async fn drafted(
    app: &TestApp,
    n: usize,
    text: &str,
    confidence: f64,
    draft: &str,
    sent: &str,
) {
    let at: Ingested = ingest(
        app,
        &message(SHOP, &format!("pc-{n}"), &format!("buyer-{n}"), text),
    )
    .await;
    decide(
        app,
        &at,
        2,
        Some(draft),
        json!({
            "lang": "en", "intent": "shipping_time_cost", "confidence": confidence,
            "out_of_scope": false, "anger": 0, "urgent": false, "human_requested": false,
            "repeated": false, "binding_request": null, "injection": null,
            "answer": {"provenance": "seller_text", "text": draft, "sources": ["faq:shipping-ph"]},
            "custody": {"holder": "ai", "human_replied_since": false, "resolved": false},
            "reasons": [{"reason": "below_auto_confidence", "confidence": confidence, "threshold": 0.75}],
        }),
    )
    .await;
    let reply = app
        .client
        .post(app.url(&format!(
            "/api/v1/conversations/{}/replies",
            at.conversation
        )))
        .bearer_auth(&app.token)
        .json(&json!({"text": sent}))
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
}

async fn put_policy(app: &TestApp, policy: Value) -> (StatusCode, Value) {
    let response = app
        .client
        .put(app.url(&format!("/api/v1/shops/{SHOP}/policy")))
        .bearer_auth(&app.token)
        .json(&policy)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn overrides(app: &TestApp) -> Value {
    app.get_json(&format!("/api/v1/shops/{SHOP}/policy")).await["overrides"].clone()
}

#[tokio::test]
async fn policy_changes_are_measured_refused_when_less_safe_and_restored_in_one_action() {
    let (app, _dir) = spawn_app().await;
    let confirmed = "Parcels to Manila take 5-8 days.";
    drafted(&app, 1, "how long to Manila?", 0.72, confirmed, confirmed).await;
    drafted(
        &app,
        2,
        "can it reach Davao before my sister's birthday on friday?",
        0.66,
        "Parcels to Davao take 5-8 days.",
        "It won't make Friday, sorry: Davao is 7-9 days from our warehouse. Shall I suggest a gift card instead?",
    )
    .await;

    // Lowering the bar to 0.65 would send the rewritten answer alone.
    let (status, refused) = put_policy(&app, json!({"auto_min_confidence": 0.65})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused:#}");
    let change = &refused["change"];
    assert_eq!(change["outcome"], "refused");
    let trial = &change["trial"];
    assert_eq!(trial["history"], 2, "{trial:#}");
    assert_eq!(trial["to_ai"], 2);
    assert_eq!(
        trial["unsafe_sends"][0]["text"],
        "can it reach Davao before my sister's birthday on friday?"
    );
    assert_eq!(trial["unsafe_sends"][0]["outcome"], "corrected");
    assert!(
        trial["reasons"][0]
            .as_str()
            .unwrap()
            .contains("would be sent by the AI alone"),
        "{trial:#}"
    );
    assert_eq!(refused["overrides"], json!({}), "nothing changed");
    assert_eq!(overrides(&app).await, json!({}));

    // 0.70 reaches only the answer a person sent unchanged.
    let (status, applied) = put_policy(&app, json!({"auto_min_confidence": 0.7})).await;
    assert_eq!(status, StatusCode::OK, "{applied:#}");
    assert_eq!(applied["change"]["outcome"], "applied");
    assert_eq!(applied["change"]["trial"]["to_ai"], 1);
    assert_eq!(
        applied["change"]["trial"]["to_ai_examples"][0]["text"],
        "how long to Manila?"
    );
    assert_eq!(overrides(&app).await, json!({"auto_min_confidence": 0.7}));

    // The same policy again changes and records nothing.
    let (status, same) = put_policy(&app, json!({"auto_min_confidence": 0.7})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(same["change"].is_null(), "{same:#}");

    // The kill switch only sends more to people: never refused.
    let (status, killed) = put_policy(
        &app,
        json!({"auto_min_confidence": 0.7, "ai_enabled": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{killed:#}");
    assert_eq!(killed["change"]["trial"]["to_ai"], 0);
    assert_eq!(killed["effective"]["ai_enabled"], false);

    let changes = app
        .get_json(&format!("/api/v1/shops/{SHOP}/policy/changes"))
        .await;
    let outcomes: Vec<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["applied", "applied", "refused"], "{changes:#}");
    assert_eq!(changes[0]["before"], json!({"auto_min_confidence": 0.7}));

    // One action puts back what the kill switch replaced.
    let restore = |id: i64| {
        app.client
            .post(app.url(&format!("/api/v1/shops/{SHOP}/policy/changes/{id}/restore")))
            .bearer_auth(&app.token)
            .send()
    };
    let restored = restore(changes[0]["id"].as_i64().unwrap()).await.unwrap();
    assert_eq!(restored.status(), StatusCode::OK);
    let restored: Value = restored.json().await.unwrap();
    assert_eq!(restored["change"]["outcome"], "restored");
    assert_eq!(restored["change"]["restores"], changes[0]["id"]);
    assert_eq!(overrides(&app).await, json!({"auto_min_confidence": 0.7}));

    // A refused change replaced nothing; an unknown one is not found.
    let refused_id = changes[2]["id"].as_i64().unwrap();
    assert_eq!(
        restore(refused_id).await.unwrap().status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        restore(999_999).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // Bad input changes nothing.
    let (status, _) = put_policy(&app, json!({"auto_min_confidence": "low"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = put_policy(&app, json!(["not", "an", "object"])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(overrides(&app).await, json!({"auto_min_confidence": 0.7}));
    assert_eq!(
        app.get_json(&format!("/api/v1/shops/{SHOP}/policy/changes"))
            .await
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// The same in Chromium: an admin lowers the threshold too far on the
/// settings page, sees it refused with the message a person had to
/// rewrite, saves a safe change, and restores the defaults with the
/// change's button.
#[tokio::test]
async fn a_policy_change_is_refused_saved_and_restored_on_the_settings_page_in_chromium() {
    use crate::browser::{chromium, login, screenshot, start_browser, wait_for_text, WAIT};
    use fantoccini::{Client, Locator};
    let Some((browser, driver)) = chromium() else {
        return;
    };
    let (app, _dir) = spawn_app().await;
    crate::web::create_user(
        &app,
        "owner@shop.test",
        kedai::store::users::Role::Admin,
        None,
    )
    .await;
    let confirmed = "Parcels to Manila take 5-8 days.";
    drafted(&app, 1, "how long to Manila?", 0.72, confirmed, confirmed).await;
    drafted(
        &app,
        2,
        "can it reach Davao by friday?",
        0.66,
        "Parcels to Davao take 5-8 days.",
        "Not by Friday, sorry: Davao is 7-9 days from our warehouse.",
    )
    .await;
    let (_driver, client) = start_browser(&browser, &driver).await;
    login(&client, &app, "owner@shop.test").await;

    async fn save_threshold(client: &Client, app: &TestApp, value: &str) {
        client
            .goto(&format!("{}/app/settings", app.base))
            .await
            .unwrap();
        client
            .execute(
                "document.getElementById('shop-demo-shopee').open = true;",
                vec![],
            )
            .await
            .unwrap();
        let field = client
            .find(Locator::Css(
                "#shop-demo-shopee input[name=auto_min_confidence]",
            ))
            .await
            .unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
        client
            .find(Locator::Id("save-policy-demo-shopee"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    save_threshold(&client, &app, "0.65").await;
    wait_for_text(&client, "#notice", "Not saved").await;
    wait_for_text(
        &client,
        "#changes-demo-shopee li.change.refused",
        "can it reach Davao by friday?",
    )
    .await;
    client
        .execute(
            "document.getElementById('changes-demo-shopee').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&client, "settings-policy-refused").await;
    assert_eq!(overrides(&app).await, json!({}), "nothing changed");

    save_threshold(&client, &app, "0.7").await;
    wait_for_text(&client, "#notice", "Saved").await;
    wait_for_text(
        &client,
        "#changes-demo-shopee li.change.applied",
        "1 would be sent by the AI alone",
    )
    .await;
    let stored = overrides(&app).await;
    assert!(
        (stored["auto_min_confidence"].as_f64().unwrap() - 0.7).abs() < 1e-6,
        "{stored}"
    );

    client
        .execute(
            "document.getElementById('shop-demo-shopee').open = true;",
            vec![],
        )
        .await
        .unwrap();
    client
        .find(Locator::Css(
            "#changes-demo-shopee li.change.applied form button",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&client, "#notice", "Restored").await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#changes-demo-shopee li.change.restored"))
        .await
        .expect("the restore is listed");
    client
        .execute(
            "document.getElementById('changes-demo-shopee').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&client, "settings-policy-restored").await;
    assert_eq!(overrides(&app).await, json!({}), "the defaults are back");
    client.close().await.unwrap();
}
