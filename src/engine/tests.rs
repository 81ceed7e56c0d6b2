//! Unit tests of the model runtime: admission, lanes, limits.

use super::lanes::LaneQueue;
use super::slots::{public_id, RETRY_MAX, RETRY_MIN};
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

fn roles_settings(roles: [&str; 4]) -> ModelsSettings {
    let mut settings = Settings::defaults().models;
    let [understand, retrieval, drafts, translations] = roles.map(|r| Some(r.to_owned()));
    settings.roles = crate::config::RoleSettings {
        understand,
        retrieval,
        drafts,
        translations,
    };
    settings
}

#[tokio::test]
async fn each_role_is_routed_to_its_model_and_a_shared_model_has_one_slot() {
    let engine = Engine::new(&roles_settings([
        "bundle:multilingual-e5-small",
        "bundle:multilingual-e5-small",
        "bundle:qwen2.5-coder-0.5b-instruct",
        "bundle:smollm2-135m-instruct",
    ]));
    let models = engine.models();
    let summary: Vec<(&str, Vec<Role>)> = models
        .iter()
        .map(|m| (m.id.as_str(), m.roles.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "multilingual-e5-small",
                vec![Role::Understand, Role::Retrieval]
            ),
            ("qwen2.5-coder-0.5b-instruct", vec![Role::Drafts]),
            ("smollm2-135m-instruct", vec![Role::Translations]),
        ]
    );
    assert_eq!(
        engine.model_for(Role::Drafts),
        "qwen2.5-coder-0.5b-instruct"
    );
    assert_eq!(
        engine.model_for(Role::Translations),
        "smollm2-135m-instruct"
    );
    assert_eq!(engine.model_for(Role::Understand), "multilingual-e5-small");
    // Both chat models are known (not loaded yet), each by its own name.
    let user = vec![ChatMessage::new(
        crate::inference::chat::ChatRole::User,
        "hi",
    )];
    for model in ["qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"] {
        let err = engine
            .chat(model, user.clone(), GenerationParams::default(), false)
            .err()
            .unwrap();
        assert!(
            matches!(&err, EngineError::Unavailable { model: m, .. } if m == model),
            "{err}"
        );
    }
    let err = engine
        .chat("gpt-4", user, GenerationParams::default(), false)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("multilingual-e5-small, qwen2.5-coder-0.5b-instruct, smollm2-135m-instruct"),
        "{err}"
    );
    // A model without task prompts makes the same vectors for both tasks.
    assert_eq!(
        engine.vector_id("multilingual-e5-small", EmbedTask::Classification),
        "multilingual-e5-small"
    );
}

#[tokio::test]
async fn models_shared_by_roles_are_loaded_once_and_serve_every_role() {
    let mut settings = roles_settings(["stand-in:hashing"; 4]);
    settings.roles.drafts = Some("stand-in:echo".into());
    settings.roles.translations = None;
    settings.chat = "stand-in:echo".into();
    settings.dir = "/nonexistent/kedai-models".into();
    let prepared = crate::models::prepare(
        &settings,
        crate::models::PrepareMode {
            fetch: crate::models::FetchPolicy::Offline,
            progress: crate::models::Progress::Silent,
        },
    )
    .unwrap();
    assert_eq!(prepared.models.len(), 2, "{prepared:?}");
    let engine = Engine::new(&settings);
    engine.load(&prepared);
    assert!(engine.wait_until_settled(Duration::from_secs(30)));
    assert!(engine.all_ready(), "{:?}", engine.models());
    assert_eq!(engine.models().len(), 2);
    let vectors = engine
        .embed_as(
            Lane::Reply,
            &engine.model_for(Role::Understand),
            vec!["is the black tee in L?".into()],
            EmbedAs {
                role: EmbedRole::Query,
                task: EmbedTask::Classification,
            },
        )
        .await
        .unwrap();
    assert_eq!(vectors.vectors.len(), 1);
    let stream = engine
        .chat(
            &engine.model_for(Role::Translations),
            vec![ChatMessage::new(
                crate::inference::chat::ChatRole::User,
                "hi",
            )],
            GenerationParams::default(),
            false,
        )
        .unwrap();
    assert!(stream
        .done
        .await
        .unwrap()
        .unwrap()
        .text
        .contains("stand-in"));
}

#[test]
fn an_unprepared_role_model_fails_its_slot_instead_of_loading_another() {
    let settings = roles_settings([
        "stand-in:hashing",
        "stand-in:hashing",
        "stand-in:echo",
        "bundle:smollm2-135m-instruct",
    ]);
    let engine = Engine::new(&settings);
    // Prepared for another configuration: the translations model is missing.
    let mut other = settings.clone();
    other.roles.translations = None;
    other.chat = "stand-in:echo".into();
    let prepared = crate::models::prepare(
        &other,
        crate::models::PrepareMode {
            fetch: crate::models::FetchPolicy::Offline,
            progress: crate::models::Progress::Silent,
        },
    )
    .unwrap();
    engine.load(&prepared);
    assert!(engine.wait_until_settled(Duration::from_secs(30)));
    let smol = engine
        .models()
        .into_iter()
        .find(|m| m.id == "smollm2-135m-instruct")
        .unwrap();
    assert!(matches!(smol.state, ModelState::Failed { .. }), "{smol:?}");
    assert!(!engine.all_ready());
}
