//! Route corrections with the real multilingual-e5 model, on one server:
//! "this should have gone to a person" is measured, promoted and sends the
//! tenant's next such message to a person (and no other tenant's); one
//! that would take a routine confirmed message from the AI is refused with
//! the reason; a route to the AI is refused for a refund request, whose
//! near-duplicate still goes to a person, and learned for a routine
//! question; one action rolls it back. Runs on SQLite and on PostgreSQL
//! (`KEDAI_TEST_STORE`).

use std::path::Path;

use kedai::domain::{
    Action, Author, BuyerRef, ConversationStatus, Direction, ExternalMessageId, InboundMessage,
    Layer, MessageText, NewReply, Platform, PlatformBuyerId, Sender, ShopKey, TenantName,
    TextLimits,
};
use kedai::store::NewShop;
use secrecy::SecretString;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::TestApp;
use crate::learning::{agent_desk, learning_spawn, post, read_in, versions};

/// The AI drafted it; the buyer needed a person.
const NEEDED_PERSON: &str = "the courier says my parcel was delivered but nothing is at my door";
const NEEDED_PERSON_AGAIN: &str =
    "courier says the parcel was delivered but there is nothing at my door";
/// Drafted, and the draft sent unchanged: routine.
const CONFIRMED: &str = "do you have this shirt in blue?";
/// Drafted, edited: a person correction of it would take [`CONFIRMED`].
const LIKE_CONFIRMED: &str = "do you have this shirt in blue??";
/// Drafted below the usual confidence; a person's routine reply answered.
const ROUTINE: &str = "what sizes does this shirt come in?";
const ROUTINE_AGAIN: &str = "which sizes does this shirt come in?";
/// Handed to a person; a person answered.
const REFUND: &str = "I want a refund for this order please";
const REFUND_AGAIN: &str = "I want a refund for this order, please";

/// One seeded message: text, intent read, layer, action, draft, reasons,
/// the reply a person sent (`None`: none).
type Seed = (
    &'static str,
    &'static str,
    u8,
    Action,
    &'static str,
    &'static [&'static str],
    Option<&'static str>,
);

const SEEDS: [Seed; 5] = [
    (
        NEEDED_PERSON,
        "order_status",
        2,
        Action::Draft,
        "Your parcel was delivered yesterday.",
        &["no_grounded_answer"],
        None,
    ),
    (
        CONFIRMED,
        "colour_options",
        2,
        Action::Draft,
        "Yes, it comes in blue.",
        &["below_auto_confidence"],
        Some("Yes, it comes in blue."),
    ),
    (
        LIKE_CONFIRMED,
        "colour_options",
        2,
        Action::Draft,
        "Yes, it comes in blue.",
        &["below_auto_confidence"],
        Some("Yes! Blue is in stock."),
    ),
    (
        ROUTINE,
        "size_fit",
        2,
        Action::Draft,
        "It comes in S to XL.",
        &["below_auto_confidence"],
        Some("S, M, L and XL; the size chart is on the page."),
    ),
    (
        REFUND,
        "refund_request",
        3,
        Action::Handoff,
        "",
        &["human_intent"],
        Some("Sorry to hear that; I have started your refund."),
    ),
];

/// Seeds tenant `routes` (shop `routes-web`) with [`SEEDS`], decided,
/// before the server starts; returns the message ids in order.
async fn seed(data_dir: &Path) -> Vec<String> {
    let settings = crate::helpers::Spawn::new(data_dir).settings;
    let opened = kedai::store::OpenedStore::open(&settings.store, kedai::store::Schema::Migrate)
        .await
        .unwrap();
    let store = opened.store();
    let tenant = store
        .create_tenant(&TenantName::parse("routes").unwrap())
        .await
        .unwrap();
    let shop = store
        .add_shop(NewShop {
            tenant_id: tenant.id,
            platform: Platform::Web,
            key: ShopKey::parse("routes-web").unwrap(),
            name: "Routes".into(),
            market: Default::default(),
            credentials: SecretString::from("{}"),
        })
        .await
        .unwrap();
    let limits = TextLimits { max_chars: 2000 };
    let mut ids = Vec::new();
    for (i, (text, intent, layer, action, draft, reasons, reply)) in SEEDS.iter().enumerate() {
        let ack = store
            .ingest(
                &shop,
                &InboundMessage {
                    shop: shop.key.clone(),
                    external_id: ExternalMessageId::parse(&format!("r-{i}")).unwrap(),
                    buyer: BuyerRef {
                        id: PlatformBuyerId::parse(&format!("web:r{i}")).unwrap(),
                        name: None,
                    },
                    text: MessageText::parse(text, limits).unwrap(),
                    sent_at: chrono::Utc::now(),
                    sender: Sender::Buyer,
                    attachment: None,
                },
                3,
            )
            .await
            .unwrap();
        let reasons: Vec<Value> = reasons.iter().map(|r| json!({"reason": r})).collect();
        store
            .record_decision(
                tenant.id,
                &kedai::store::NewDecision {
                    conversation: ack.conversation_id,
                    message: ack.message_id,
                    layer: Layer::try_from(*layer).unwrap(),
                    action: *action,
                    language: Some("en".into()),
                    translation: None,
                    reply: None,
                    draft: (!draft.is_empty()).then(|| draft.to_string()),
                    status: ConversationStatus::Pending,
                    trace: json!({"intent": intent, "layer": layer, "reasons": reasons}),
                    follow_up: false,
                },
            )
            .await
            .unwrap();
        if let Some(reply) = reply {
            store
                .add_reply(
                    tenant.id,
                    ack.conversation_id,
                    &NewReply {
                        text: MessageText::parse(reply, limits).unwrap(),
                        direction: Direction::Outbound,
                        author: Author::Agent,
                        author_name: Some("Agent".into()),
                        external_id: None,
                    },
                    "agent",
                )
                .await
                .unwrap();
        }
        ids.push(ack.message_id.to_string());
    }
    opened.close().await;
    ids
}

/// Sends `text` and returns the trace of its decision.
async fn decided(app: &TestApp, token: &str, shop: &str, text: &str) -> Value {
    let (_, message, conversation) = read_in(app, token, shop, text).await;
    let detail: Value = app
        .client
        .get(app.url(&format!("/api/v1/conversations/{conversation}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    detail["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["message_id"] == message.as_str())
        .unwrap()["trace"]
        .clone()
}

fn reasons(trace: &Value) -> Vec<String> {
    trace["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["reason"].as_str().map(str::to_owned))
        .collect()
}

async fn correct(app: &TestApp, token: &str, message: &str, route: &str) -> reqwest::Response {
    post(
        app,
        token,
        "/api/v1/learning/route-corrections",
        json!({"message_id": message, "route": route}),
    )
    .await
}

#[tokio::test]
async fn route_corrections_are_measured_learned_per_tenant_and_never_automate_a_refund() {
    let dir = TempDir::new().unwrap();
    let ids = seed(&dir.path().join("data")).await;
    let app = learning_spawn(dir.path()).start().await;
    let tenant = app.store.tenant_by_name("routes").await.unwrap().unwrap();
    let (_, token) = kedai::auth::issue_token(app.store.as_ref(), tenant.id, "routes")
        .await
        .unwrap();
    let before = decided(&app, &token, "routes-web", NEEDED_PERSON_AGAIN).await;
    assert!(!reasons(&before).contains(&"learned_route_person".into()));

    // Bad input changes nothing.
    assert_eq!(correct(&app, &token, &ids[0], "robot").await.status(), 422);
    assert_eq!(
        correct(&app, &app.token, &ids[0], "person").await.status(),
        404
    );
    let handed = correct(&app, &token, &ids[4], "person").await;
    assert_eq!(handed.status(), 422, "already went to a person");

    // "This should have gone to a person": promoted, and the tenant's next
    // such message goes to a person, named by the learned route.
    let person = correct(&app, &token, &ids[0], "person").await;
    assert_eq!(person.status(), 202);
    let exemplar: Value = person.json().await.unwrap();
    assert_eq!(
        (&exemplar["kind"], &exemplar["route"], &exemplar["intent"]),
        (&json!("route"), &json!("person"), &json!("order_status"))
    );
    assert_eq!(exemplar["previous_action"], "draft");
    let heads = versions(&app, &token, 1).await;
    let version = &heads["versions"][0];
    assert_eq!(version["promoted"], true, "{heads:#}");
    let comparison = &version["comparison"];
    assert_eq!(
        comparison["before"]["routes"],
        comparison["after"]["routes"]
    );
    assert!(comparison["after"]["routes"]["total"].as_u64().unwrap() >= 1);
    let after = decided(&app, &token, "routes-web", NEEDED_PERSON_AGAIN).await;
    assert!(
        reasons(&after).contains(&"learned_route_person".into()),
        "{after:#}"
    );
    assert_eq!(after["action"], "handoff");
    assert_eq!(after["learned_route"]["route"], "person");
    assert_eq!(after["learned_route"]["exemplar"], NEEDED_PERSON);
    // Another tenant's same message is not routed by it.
    let theirs = decided(&app, &app.token, "demo-web", NEEDED_PERSON_AGAIN).await;
    assert!(!reasons(&theirs).contains(&"learned_route_person".into()));
    assert!(theirs.get("learned_route").is_none(), "{theirs:#}");

    // A person route that would take a confirmed routine message from the
    // AI is refused with the reason; made in the workbench.
    let desk = agent_desk(&app, tenant.id).await;
    let conversation = app
        .store
        .message_conversation(tenant.id, ids[2].parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let page = desk.page(&format!("/app/c/{conversation}")).await;
    let form = format!("action=\"/app/c/{conversation}/route\"");
    assert!(page.contains(&form), "{page}");
    assert!(
        page.contains("value=\"person\">This needed a person"),
        "{page}"
    );
    let like = desk
        .post(
            &format!("/app/c/{conversation}/route"),
            &format!("/app/c/{conversation}"),
            &[("message", ids[2].as_str()), ("route", "person")],
        )
        .await;
    assert_eq!(like.status(), reqwest::StatusCode::SEE_OTHER);
    let heads = versions(&app, &token, 2).await;
    let refused = &heads["versions"][0];
    assert_eq!(refused["promoted"], false, "{heads:#}");
    let reason = refused["reason"].as_str().unwrap();
    assert!(
        reason.contains("learned routes would send routine messages to a person"),
        "{reason}"
    );
    let regression = &refused["comparison"]["regressions"][0];
    assert_eq!(regression["text"], CONFIRMED, "{refused:#}");
    assert_eq!(regression["route_after"], "person");
    let shown = desk.page("/app/learning").await;
    assert!(shown.contains("route: a person"), "{shown}");
    assert!(shown.contains("Routes (routine messages kept from a person)"));
    assert!(shown.contains("learned route none → person"), "{shown}");

    // A refund is never learned as the AI's, and its near-duplicate still
    // goes to a person.
    let refund = correct(&app, &token, &ids[4], "auto").await;
    assert_eq!(refund.status(), 422);
    let shown: Value = refund.json().await.unwrap();
    assert!(
        shown
            .to_string()
            .contains("never learns to answer `refund_request` alone"),
        "{shown}"
    );
    let again = decided(&app, &token, "routes-web", REFUND_AGAIN).await;
    assert_eq!(again["action"], "handoff", "{again:#}");
    assert!(again.get("learned_route").is_none(), "{again:#}");

    // "The AI could have answered this": learned, bound to the intent.
    let auto = correct(&app, &token, &ids[3], "auto").await;
    assert_eq!(auto.status(), 202);
    let heads = versions(&app, &token, 3).await;
    assert_eq!(heads["versions"][0]["promoted"], true, "{heads:#}");
    let routine = decided(&app, &token, "routes-web", ROUTINE_AGAIN).await;
    assert_eq!(routine["intent"], "size_fit", "{routine:#}");
    assert_eq!(routine["learned_route"]["route"], "auto", "{routine:#}");
    assert!(!reasons(&routine).contains(&"below_auto_confidence".into()));

    // One action goes back to the version before: the auto route is gone,
    // the person route stays.
    let rolled = post(&app, &token, "/api/v1/learning/heads/rollback", json!({})).await;
    assert_eq!(rolled.status(), 200);
    let rolled: Value = rolled.json().await.unwrap();
    assert_eq!(rolled["active"]["number"], 1);
    let routine = decided(&app, &token, "routes-web", ROUTINE_AGAIN).await;
    assert!(routine.get("learned_route").is_none(), "{routine:#}");

    let audit = app.store.audit_log(tenant.id, 50).await.unwrap();
    let corrected = audit
        .iter()
        .filter(|e| e.event.action == "learning.route_corrected")
        .count();
    assert_eq!(corrected, 3);
    let metrics = app.get_as_operator("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("event=\"route_correction\"} 3"),
        "{metrics}"
    );
}

/// The threshold a learned route needs, checked against the real e5 model
/// with pairs of buyer messages: a learned route reaches a rewording of
/// the corrected message, and not a different question on the same topic.
#[test]
fn the_route_threshold_reaches_rewordings_not_other_questions() {
    use kedai::understand::repeat::cosine;
    use kedai::understand::routes::ROUTE_MIN_SIMILARITY;
    use kedai::understand::QueryEmbedder;
    // (corrected message, new message, same question)
    let pairs: &[(&str, &str, bool)] = &[
        (NEEDED_PERSON, NEEDED_PERSON_AGAIN, true),
        (ROUTINE, ROUTINE_AGAIN, true),
        (REFUND, REFUND_AGAIN, true),
        // A translation is not reached (0.90): a route is learned per
        // language.
        (
            "the courier says my parcel was delivered but nothing is at my door",
            "kurir bilang paket sudah diterima tapi tidak ada di depan pintu saya",
            false,
        ),
        (NEEDED_PERSON, "where is my parcel?", false),
        (
            NEEDED_PERSON,
            "how long does delivery take to Surabaya?",
            false,
        ),
        (ROUTINE, "do you have this shirt in blue?", false),
        (ROUTINE, "how much is shipping for this shirt?", false),
        (REFUND, "what is your return policy?", false),
    ];
    let e5 = crate::understand::e5();
    for (corrected, new, same) in pairs {
        let v = e5.embed_queries(&[corrected, new]).unwrap();
        let similarity = cosine(&v[0], &v[1]);
        assert_eq!(
            similarity >= ROUTE_MIN_SIMILARITY,
            *same,
            "{corrected:?} and {new:?}: {similarity:.3}"
        );
    }
}

/// The calibration of the route threshold: no two messages of the
/// shipped evaluation set (162, nine languages) that have different
/// intents are that close, so a learned route does not spread to another
/// question (at 0.90, 22 of their 12,106 pairs were; the closest is 0.929).
#[test]
fn no_two_evaluation_messages_of_different_intents_are_within_the_route_threshold() {
    use kedai::understand::repeat::cosine;
    use kedai::understand::routes::ROUTE_MIN_SIMILARITY;
    use kedai::understand::QueryEmbedder;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kb/eval/replies.jsonl");
    let cases: Vec<(String, String)> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let field = |k: &str| v[k].as_str().unwrap().to_owned();
            (field("message"), field("expected_intent"))
        })
        .collect();
    assert!(cases.len() >= 100);
    let texts: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    let vectors = crate::understand::e5().embed_queries(&texts).unwrap();
    for i in 0..cases.len() {
        for j in i + 1..cases.len() {
            let similarity = cosine(&vectors[i], &vectors[j]);
            assert!(
                cases[i].1 == cases[j].1 || similarity < ROUTE_MIN_SIMILARITY,
                "{:?} ({}) and {:?} ({}): {similarity:.3}",
                cases[i].0,
                cases[i].1,
                cases[j].0,
                cases[j].1
            );
        }
    }
}
