//! Unit tests of the model runtime: admission, lanes, limits.

use super::*;
use crate::config::Settings;

#[test]
fn public_ids_drop_the_scheme() {
    assert_eq!(
        public_id("bundle:multilingual-e5-small"),
        "multilingual-e5-small"
    );
    assert_eq!(public_id("hf:intfloat/e5-small"), "intfloat/e5-small");
    assert_eq!(public_id("/models/my-e5/"), "my-e5");
}

fn engine() -> Engine {
    Engine::new(&Settings::defaults().models)
}

#[tokio::test]
async fn unknown_and_unloaded_models_are_refused_at_once() {
    let engine = engine();
    let err = engine
        .embed("gpt-4", vec!["hi".into()], EmbedRole::Query)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::UnknownModel { .. }), "{err}");
    assert!(err.to_string().contains("multilingual-e5-small"), "{err}");
    let err = engine
        .embed("multilingual-e5-small", vec!["hi".into()], EmbedRole::Query)
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Unavailable { retry_after, .. } if retry_after >= RETRY_MIN),
        "{err}"
    );
    let err = engine
        .chat(
            "multilingual-e5-small",
            vec![ChatMessage::new(
                crate::inference::chat::ChatRole::User,
                "hi",
            )],
            GenerationParams::default(),
            false,
        )
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::WrongKind { .. }), "{err}");
}

#[tokio::test]
async fn bad_embedding_batches_are_refused_before_admission() {
    let engine = engine();
    let model = "bundle:multilingual-e5-small";
    let cases: [(Vec<String>, &str); 3] = [
        (vec![], "at least one"),
        (vec!["x".into(); 65], "at most 64"),
        (vec!["ok".into(), " \n".into()], "`input[1]`"),
    ];
    for (texts, expected) in cases {
        let err = engine
            .embed(model, texts, EmbedRole::Query)
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Invalid(_)), "{err}");
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[test]
fn chat_limits_are_checked_before_admission() {
    let engine = engine();
    let user = vec![ChatMessage::new(
        crate::inference::chat::ChatRole::User,
        "hi",
    )];
    for (max_tokens, expected) in [(0, "got 0"), (1025, "got 1025")] {
        let params = GenerationParams {
            max_tokens,
            ..GenerationParams::default()
        };
        let err = engine
            .chat("qwen2.5-coder-0.5b-instruct", user.clone(), params, false)
            .err()
            .unwrap();
        assert!(err.to_string().contains(expected), "{err}");
    }
    let err = engine
        .chat(
            "qwen2.5-coder-0.5b-instruct",
            vec![],
            GenerationParams::default(),
            false,
        )
        .err()
        .unwrap();
    assert!(err.to_string().contains("at least one message"), "{err}");
}

fn ready_slot(api: usize, pipeline: usize) -> (Slot<u32>, Arc<LaneQueue<Admitted<u32>>>) {
    let slot: Slot<u32> = Slot::new("bundle:m", ModelKind::Chat, api, pipeline);
    slot.set_state(ModelState::Ready { load_seconds: 0.0 });
    let queue = Arc::new(LaneQueue::new());
    *slot.queue.lock().unwrap() = Some(queue.clone());
    (slot, queue)
}

#[test]
fn a_full_queue_is_refused_with_a_retry_estimate() {
    let (slot, queue) = ready_slot(1, 1);
    slot.admit(Lane::Api, 1).unwrap();
    let err = slot.admit(Lane::Api, 2).unwrap_err();
    assert!(
        matches!(err, EngineError::Overloaded { capacity: 1, retry_after, .. } if retry_after >= RETRY_MIN && retry_after <= RETRY_MAX),
        "{err}"
    );
    // Answering the first request frees its slot.
    drop(queue.pop());
    slot.admit(Lane::Api, 3).unwrap();
    assert_eq!(queue.pop().job, 3);
}

#[test]
fn m6_a_flood_of_api_requests_leaves_the_pipelines_slots_and_turn() {
    let (slot, queue) = ready_slot(2, 2);
    slot.admit(Lane::Api, 1).unwrap();
    slot.admit(Lane::Api, 2).unwrap();
    for flood in 3..10 {
        assert!(matches!(
            slot.admit(Lane::Api, flood),
            Err(EngineError::Overloaded { .. })
        ));
    }
    // The buyer's draft is admitted on the pipeline's own slots, and
    // the worker takes it before the API requests queued earlier.
    slot.admit(Lane::FollowUp, 20).unwrap();
    slot.admit(Lane::Reply, 10).unwrap();
    assert_eq!(slot.info().capacity, 4);
    assert_eq!(
        slot.pipeline_in_flight(),
        2,
        "the API's two are not counted"
    );
    assert_eq!(queue.pop().job, 10);
    assert_eq!(queue.pop().job, 20);
    assert_eq!(queue.pop().job, 1);
    assert_eq!(
        slot.pipeline_in_flight(),
        0,
        "answered requests free their slots"
    );
}

#[tokio::test]
async fn m6_oversized_inputs_are_refused_or_cut_before_anything_tokenises_them() {
    let mut settings = Settings::defaults().models;
    settings.chat_max_prompt_tokens = 100;
    let engine = Engine::new(&settings);
    let user = |text: String| ChatMessage::new(crate::inference::chat::ChatRole::User, text);
    let err = engine
        .chat(
            "qwen2.5-coder-0.5b-instruct",
            vec![user("x".repeat(401))],
            GenerationParams::default(),
            false,
        )
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("401 bytes"), "{err}");
    let many = vec![user("hi".into()); MAX_CHAT_MESSAGES + 1];
    let err = engine
        .chat(
            "qwen2.5-coder-0.5b-instruct",
            many,
            GenerationParams::default(),
            false,
        )
        .err()
        .unwrap();
    assert!(err.to_string().contains("at most 256 messages"), "{err}");

    let mut long = "é".repeat(9000);
    assert!(cut_to_chars(&mut long, 512 * EMBED_CHARS_PER_TOKEN));
    assert_eq!(long.chars().count(), 8192);
    let mut short = "hi".to_owned();
    assert!(!cut_to_chars(&mut short, 2048));
}
