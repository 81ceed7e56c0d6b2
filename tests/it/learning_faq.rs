//! A suggested FAQ entry is measured before it goes live, with the real
//! multilingual-e5 model: the tenant's past questions are searched with and
//! without it; an entry that would take over a question people confirmed
//! another entry's answer for is refused with the reason (nothing is
//! written, the suggestion stays pending and shows the measurement on the
//! Learning page and in the API), and one that only answers what nobody
//! could is added, with the questions it now answers listed. Runs on
//! SQLite and on PostgreSQL (`KEDAI_TEST_STORE`).

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::learning::{post, suggestions, unanswered, FLY, FLY_ANSWER};
use crate::web::Desk;

/// A question a buyer asked, answered from the returns entry in a draft a
/// person sent unchanged.
pub(crate) const CONFIRMED: &str = "how many days do I have to return an item?";
const RETURNS_ANSWER: &str = "You can return any item within 15 days of delivery.";

/// The returns FAQ entry and a buyer question answered from it in a
/// draft a person sent unchanged (confirmed history).
pub(crate) async fn seed_confirmed_returns(app: &crate::helpers::TestApp) {
    let put = app
        .client
        .put(app.url("/api/v1/kb/entries/faq/returns-window"))
        .bearer_auth(&app.token)
        .json(&json!({
            "questions": ["How many days do I have to return an item?"],
            "answer": RETURNS_ANSWER, "lang": "en"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    // The confirmed history: drafted from the returns entry, sent as is.
    let asked = crate::web::ingest(
        app,
        &crate::helpers::message("demo-shopee", "ret-1", "shopee:ret", CONFIRMED),
    )
    .await;
    let trace = json!({"lang": "en", "intent": "return_request", "layer": 2,
                       "answer_kind": "faq", "sources": ["faq:returns-window"]});
    crate::web::decide(app, &asked, 2, Some(RETURNS_ANSWER), trace).await;
    let sent = post(
        app,
        &app.token,
        &format!("/api/v1/conversations/{}/replies", asked.conversation),
        json!({ "text": RETURNS_ANSWER }),
    )
    .await;
    assert_eq!(sent.status(), 201);
}

#[tokio::test]
async fn a_new_faq_entry_that_changes_a_confirmed_answer_is_refused_and_one_that_does_not_is_added()
{
    use kedai::store::users::Role;
    let dir = TempDir::new().unwrap();
    let mut spawn = crate::helpers::Spawn::new(&dir.path().join("data"));
    spawn.kb_embedder = Some(crate::understand::e5());
    let app = spawn.start().await;

    seed_confirmed_returns(&app).await;
    // A gap a person answered.
    let mut gap = Vec::new();
    for (i, text) in FLY.iter().enumerate() {
        gap.push(unanswered(&app, &format!("fly{i}"), text).await);
    }
    let sent = post(
        &app,
        &app.token,
        &format!("/api/v1/conversations/{}/replies", gap[0].conversation),
        json!({ "text": FLY_ANSWER }),
    )
    .await;
    assert_eq!(sent.status(), 201);
    let list = suggestions(&app, &app.token).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["trial"], Value::Null, "not measured before");
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/learning/faq-suggestions/{id}/accept");
    let entries_before = app.get_json("/api/v1/kb/entries?kind=faq").await;

    // Edited so that it also claims the confirmed returns question: the
    // confirmed answer would change, so it is refused and nothing written.
    let grabby = json!({"questions": [FLY[0], CONFIRMED], "answer": FLY_ANSWER});
    let refused = post(&app, &app.token, &path, grabby).await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("1 of 1 questions people confirmed"),
        "{body:#}"
    );
    assert_eq!(
        app.get_json("/api/v1/kb/entries?kind=faq").await,
        entries_before
    );
    let list = suggestions(&app, &app.token).await;
    assert_eq!(list[0]["status"], "pending");
    let trial = &list[0]["trial"];
    assert_eq!(trial["promoted"], false, "{trial:#}");
    assert_eq!(trial["confirmed"], 1, "{trial:#}");
    assert_eq!(trial["regressions"][0]["text"], CONFIRMED, "{trial:#}");
    assert_eq!(
        trial["regressions"][0]["before"], "faq:returns-window",
        "{trial:#}"
    );
    assert!(
        trial["regressions"][0]["after"]
            .as_str()
            .is_some_and(|a| a.starts_with("faq:learned-")),
        "{trial:#}"
    );
    // The returns question still finds the returns entry.
    let search = post(
        &app,
        &app.token,
        "/api/v1/kb/search",
        json!({"query": CONFIRMED}),
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    assert_eq!(search["hits"][0]["id"], "returns-window", "{search:#}");

    // The Learning page shows the measurement with the suggestion.
    crate::web::create_user(&app, "agent@demo.example", Role::Agent, None).await;
    let agent = Desk::login(&app, "agent@demo.example").await;
    let page = agent.page("/app/learning").await;
    assert!(page.contains("class=\"trial\""), "{page}");
    assert!(page.contains("Not added: 1 of 1 questions people confirmed"));
    assert!(page.contains("now faq:returns-window, with it faq:learned-"));

    // As suggested, it answers only what nobody could: added, and the
    // buyers' questions that now find it are listed.
    let accepted = post(&app, &app.token, &path, json!({})).await;
    assert_eq!(accepted.status(), 201, "{:?}", accepted.text().await);
    let accepted: Value = accepted.json().await.unwrap();
    let trial = &accepted["suggestion"]["trial"];
    assert_eq!(trial["promoted"], true, "{trial:#}");
    assert_eq!(trial["regressions"], json!([]), "{trial:#}");
    let finds: Vec<&str> = trial["finds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    for text in FLY {
        assert!(finds.contains(&text), "{text:?} not in {finds:?}");
    }
    let entry_id = accepted["suggestion"]["entry_id"].as_str().unwrap();
    assert_eq!(trial["entry"], format!("faq:{entry_id}"));
    let search = post(
        &app,
        &app.token,
        "/api/v1/kb/search",
        json!({"query": CONFIRMED}),
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    assert_eq!(search["hits"][0]["id"], "returns-window", "{search:#}");
}
