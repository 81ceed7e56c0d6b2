//! The pipeline on the queue's lanes: answers that need the chat model
//! move to the draft lane, and what only a person answers is decided at
//! once with its draft written after.

use super::*;

async fn decided(f: &Fixture, message: MessageId) -> Vec<crate::store::Decision> {
    let conversation = f
        .store
        .message_conversation(f.shop.tenant_id, message)
        .await
        .unwrap()
        .unwrap();
    f.store
        .decisions(f.shop.tenant_id, conversation)
        .await
        .unwrap()
}

fn queued_job(f: &Fixture, message: MessageId, lane: crate::store::JobLane) -> Job {
    Job {
        id: crate::domain::JobId::new(),
        tenant_id: Some(f.shop.tenant_id),
        kind: JOB_INBOUND_MESSAGE.into(),
        payload: serde_json::json!({ "message_id": message }),
        attempts: 1,
        max_attempts: 5,
        conversation_id: None,
        created_at: Utc::now(),
        give_up: None,
        traceparent: None,
        lane,
    }
}

#[tokio::test]
async fn with_a_draft_lane_only_answers_that_need_the_chat_model_move_there() {
    use crate::queue::Handled;
    use crate::store::JobLane;
    let f = fixture().await;
    let pipeline = f
        .pipeline(Some(
            "Pengiriman ke Thailand butuh 3-6 hari dari Guangzhou.",
        ))
        .with_draft_lane(true);
    // An FAQ answer the chat model must translate: the fast lane hands it
    // on without storing anything, and the draft lane writes it.
    let translated = f.say("m-1", "budi", "berapa lama pengiriman?").await;
    let handled = pipeline
        .handle(&queued_job(&f, translated, JobLane::Fast))
        .await
        .unwrap();
    assert_eq!(handled, Handled::ToLane(JobLane::Draft));
    assert!(
        decided(&f, translated).await.is_empty(),
        "nothing stored yet"
    );
    let handled = pipeline
        .handle(&queued_job(&f, translated, JobLane::Draft))
        .await
        .unwrap();
    assert_eq!(handled, Handled::Done);
    let decisions = decided(&f, translated).await;
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].trace["answer_kind"], "faq_translated");

    // An answer from the order record is decided in the fast lane.
    let order = f.say("m-2", "nadia", "where is my order?").await;
    let handled = pipeline
        .handle(&queued_job(&f, order, JobLane::Fast))
        .await
        .unwrap();
    assert_eq!(handled, Handled::Done);
    assert_eq!(decided(&f, order).await.len(), 1);

    // Without a draft lane the fast lane writes in place.
    let inline = f.pipeline(Some(
        "Pengiriman ke Thailand butuh 3-6 hari dari Guangzhou.",
    ));
    let again = f.say("m-3", "citra", "berapa lama pengiriman?").await;
    let handled = inline
        .handle(&queued_job(&f, again, JobLane::Fast))
        .await
        .unwrap();
    assert_eq!(handled, Handled::Done);
    assert_eq!(decided(&f, again).await.len(), 1);
}

#[tokio::test]
async fn with_a_draft_lane_a_message_only_a_person_answers_is_decided_at_once_and_drafted_after() {
    use crate::queue::Handled;
    use crate::store::JobLane;
    let f = fixture().await;
    let asked = f.say("m-1", "citra", "is it soft?").await;
    f.run(&f.pipeline(None), asked).await;
    // No intent is answered by the AI alone: every written answer is a
    // draft for a person.
    let mut policy = Settings::defaults().policy;
    policy.defaults.auto_intents.clear();
    let pipeline = Pipeline::new(PipelineParts {
        store: f.store.clone(),
        understand: Arc::new(FakeUnderstand),
        knowledge: Some(Arc::new(FakeKnowledge)),
        writer: Some(Arc::new(FakeWriter("Yes, it is 100% combed cotton.")) as Arc<dyn Writer>),
        meaning: Some(Arc::new(crate::kb::embed::HashingEmbedder::new(64))),
        policy,
        config: PipelineConfig::default(),
    })
    .with_draft_lane(true);
    let named = f.say("m-2", "citra", "the oversized tee").await;
    // The route does not depend on the draft's words: decided in the fast
    // lane, for a person, the draft left to the follow-up.
    let handled = pipeline
        .handle(&queued_job(&f, named, JobLane::Fast))
        .await
        .unwrap();
    assert_eq!(handled, Handled::Done);
    let decision = decided(&f, named).await.pop().expect("decided at once");
    assert_eq!(decision.trace["layer"], 2, "{:#}", decision.trace);
    assert_eq!(decision.trace["action"], "draft");
    assert_eq!(decision.draft, None, "no draft yet");
    assert_eq!(decision.trace["follow_up"]["writes_draft"], true);

    // The follow-up writes it, from the same sources, and keeps it.
    let added = pipeline
        .follow_up(f.shop.tenant_id, named)
        .await
        .unwrap()
        .expect("a follow-up");
    assert_eq!(
        added["draft"]["answer"]["provenance"], "generated",
        "{added:#}"
    );
    let decision = decided(&f, named).await.pop().unwrap();
    assert_eq!(
        decision.draft.as_deref(),
        Some("Yes, it is 100% combed cotton.")
    );
    // Running it again changes nothing.
    let again = pipeline
        .follow_up(f.shop.tenant_id, named)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, added);
}
