//! Understanding buyer messages: plumbing with a fake embedder (fast,
//! hermetic), then the real multilingual-e5 model trained on the small
//! multilingual fixtures in tests/data/understand, and `kedai eval` run as
//! a user runs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use candle_core::Device;
use kedai::config::Settings;
use kedai::inference::TextEmbedder;
use kedai::models::{self, FetchPolicy, PrepareMode, Progress};
use kedai::understand::entities::EntityKind;
use kedai::understand::exemplars::{read_intent_dir, read_sentiment_dir};
use kedai::understand::{
    CachedEmbedder, Example, Heads, QueryEmbedder, TextClassifier, TrainConfig, UnderstandError,
    Understander, OUT_OF_SCOPE,
};
use serde_json::Value;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/understand")
        .join(path)
}

/// Hashed character trigrams: texts sharing words land near each other,
/// which is all the plumbing needs.
struct TrigramEmbedder;

impl QueryEmbedder for TrigramEmbedder {
    fn model_id(&self) -> &str {
        "fake/trigrams"
    }

    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
        Ok(texts
            .iter()
            .map(|text| {
                let chars: Vec<char> = format!("  {}  ", text.to_lowercase()).chars().collect();
                let mut v = vec![0f32; 256];
                for w in chars.windows(3) {
                    let h = w
                        .iter()
                        .fold(2166136261u32, |h, c| (h ^ *c as u32).wrapping_mul(16777619));
                    v[(h % 256) as usize] += 1.0;
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.iter().map(|x| x / norm).collect()
            })
            .collect())
    }
}

fn fixture_heads(embedder: &dyn QueryEmbedder) -> Heads {
    Heads::from_dirs(
        embedder,
        &data("intents"),
        Some(&data("sentiment")),
        &TrainConfig::default(),
    )
    .expect("heads train on the fixtures")
}

fn fake_understander() -> Understander {
    let embedder = TrigramEmbedder;
    let heads = fixture_heads(&embedder);
    Understander::new(Arc::new(embedder), heads).unwrap()
}

#[test]
fn fixtures_parse_and_cover_every_head() {
    let intents = read_intent_dir(&data("intents")).unwrap();
    assert!(intents.len() >= 60);
    let sentiment = read_sentiment_dir(&data("sentiment")).unwrap();
    assert!(sentiment.iter().any(|s| s.anger == 2));
    assert!(sentiment.iter().any(|s| s.urgent));
}

#[test]
fn plumbing_fills_every_field() {
    let understander = fake_understander();
    let u = understander
        .understand(
            "where is my order 240815ABCD1234? call me +62 812 3456 7890",
            &[],
        )
        .unwrap();
    assert_eq!(u.intent, "order_status");
    assert!(u.confidence > 0.0 && u.confidence <= 1.0);
    assert_eq!(u.lang.unwrap().code, "en");
    assert!(u.sentiment.is_some() && u.anger.is_some() && u.urgent.is_some());
    let kinds: Vec<EntityKind> = u.entities.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EntityKind::OrderNumber, EntityKind::Phone]);
    assert!(!u.human_requested);
    assert_eq!(u.repeated, None);
}

#[test]
fn explicit_human_request_is_flagged_whatever_the_intent() {
    let understander = fake_understander();
    let u = understander
        .understand("paket belum sampai, saya mau bicara dengan admin", &[])
        .unwrap();
    assert!(u.human_requested);
}

#[test]
fn the_same_question_twice_is_a_repeat_but_a_second_greeting_is_not() {
    let understander = fake_understander();
    let history = ["hello there", "where is my order", "ok"];
    let u = understander
        .understand("where is my order", &history)
        .unwrap();
    let repeat = u.repeated.expect("a repeat");
    assert_eq!(repeat.index, 1);
    assert!(repeat.similarity > 0.99);
    let g = understander.understand("hello there", &history).unwrap();
    assert_eq!(g.intent, "greeting");
    assert_eq!(g.repeated, None);
}

#[test]
fn the_same_words_about_another_order_are_not_a_repeat() {
    let understander = fake_understander();
    let history = ["where is my order 240815ABCD1234", "ok"];
    let same = understander
        .understand("where is my order 240815ABCD1234", &history)
        .unwrap();
    assert_eq!(same.repeated.map(|r| r.index), Some(0), "{same:?}");
    let other = understander
        .understand("where is my order 240901ZZZZ9999", &history)
        .unwrap();
    assert_eq!(other.repeated, None, "{other:?}");
}

#[test]
fn empty_emoji_only_and_huge_messages_do_not_panic() {
    let understander = fake_understander();
    let empty = understander.understand("   ", &["", "hi"]).unwrap();
    assert_eq!(empty.intent, OUT_OF_SCOPE);
    assert!(empty.out_of_scope);
    assert_eq!(empty.confidence, 0.0);
    assert_eq!(empty.lang, None);
    let emoji = understander.understand("👍👍🙏", &["   "]).unwrap();
    assert_eq!(emoji.lang, None);
    let huge = "barang rusak ".repeat(800);
    assert!(huge.chars().count() > 10_000);
    understander.understand(&huge, &[&huge]).unwrap();
}

#[test]
fn heads_retrain_without_a_restart() {
    let understander = fake_understander();
    let text = "kapan promo gajian mulai";
    let before = understander.understand(text, &[]).unwrap();
    assert_ne!(before.intent, "price_coupon");
    let mut examples = read_intent_dir(&data("intents")).unwrap();
    for t in [
        "kapan promo gajian mulai",
        "ada promo gajian?",
        "any coupon code for payday sale",
        "voucher promo gajian berapa persen",
    ] {
        examples.push(Example::new(t, "price_coupon"));
    }
    let heads = Heads::train(&TrigramEmbedder, &examples, &[], &TrainConfig::default()).unwrap();
    understander.replace_heads(heads).unwrap();
    let after = understander.understand(text, &[]).unwrap();
    assert_eq!(after.intent, "price_coupon");
    assert_eq!(
        after.sentiment, None,
        "the new heads have no sentiment head"
    );
}

#[test]
fn heads_from_another_model_are_refused() {
    struct Other;
    impl QueryEmbedder for Other {
        fn model_id(&self) -> &str {
            "fake/other"
        }
        fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
            TrigramEmbedder.embed_queries(texts)
        }
    }
    let heads = fixture_heads(&Other);
    let err = Understander::new(Arc::new(TrigramEmbedder), heads)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("fake/other"), "{err}");
    let classifier = TextClassifier::train(
        &Other,
        &[Example::new("a", "x"), Example::new("b", "y")],
        &TrainConfig::default(),
    )
    .unwrap();
    assert!(classifier.classify_text(&TrigramEmbedder, "a").is_err());
}

pub fn e5() -> Arc<TextEmbedder> {
    static E5: OnceLock<Arc<TextEmbedder>> = OnceLock::new();
    E5.get_or_init(|| {
        let mode = PrepareMode {
            fetch: FetchPolicy::FetchMissing,
            progress: Progress::Lines,
        };
        let model = models::resolve(
            &Settings::defaults().models,
            "bundle:multilingual-e5-small",
            mode,
        )
        .expect("e5 prepared");
        Arc::new(TextEmbedder::load(&model, &Device::Cpu).expect("e5 loads"))
    })
    .clone()
}

struct Shared(Arc<TextEmbedder>);

impl QueryEmbedder for Shared {
    fn model_id(&self) -> &str {
        self.0.model_id()
    }
    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
        self.0.as_ref().embed_queries(texts)
    }
}

fn real_understander() -> &'static Understander {
    static U: OnceLock<Understander> = OnceLock::new();
    U.get_or_init(|| {
        let embedder = Shared(e5());
        let started = Instant::now();
        let heads = fixture_heads(&embedder);
        eprintln!("trained the fixture heads in {:?}", started.elapsed());
        Understander::new(Arc::new(embedder), heads).unwrap()
    })
}

#[test]
fn real_model_classifies_unseen_phrasings_across_languages() {
    let understander = real_understander();
    let cases = [
        ("has my order shipped yet?", "order_status"),
        ("paket saya belum datang juga", "order_status"),
        ("订单什么时候到", "order_status"),
        ("I need a refund please", "refund_request"),
        ("minta refund ya", "refund_request"),
        ("hoàn tiền cho tôi", "refund_request"),
        ("which size fits a 75kg man", "size_fit"),
        ("hai kak", "greeting"),
        ("let me talk to a human", "ask_for_human"),
    ];
    let mut wrong = Vec::new();
    for (text, want) in cases {
        let u = understander.understand(text, &[]).unwrap();
        if u.intent != want {
            wrong.push(format!("{text}: {} ({:.2})", u.intent, u.confidence));
        }
    }
    assert!(wrong.len() <= 1, "misclassified: {wrong:?}");
}

#[test]
fn real_model_flags_off_topic_questions_as_out_of_scope() {
    let understander = real_understander();
    let mut in_scope = Vec::new();
    for text in [
        "tell me a joke",
        "how far is the moon from earth",
        "resep nasi goreng dong",
    ] {
        let u = understander.understand(text, &[]).unwrap();
        if !u.out_of_scope {
            in_scope.push(format!("{text}: {} ({:.2})", u.intent, u.confidence));
        }
    }
    assert!(in_scope.len() <= 1, "taken as in scope: {in_scope:?}");
}

#[test]
fn real_model_sees_anger_and_repeats_across_wording() {
    let understander = real_understander();
    let angry = understander
        .understand(
            "PENIPU!!! barang tidak pernah datang, saya laporkan ke shopee",
            &[],
        )
        .unwrap();
    let calm = understander
        .understand("terima kasih, barangnya bagus sekali", &[])
        .unwrap();
    let angry_p = angry.anger.unwrap().probability;
    let calm_p = calm.anger.unwrap().probability;
    assert!(angry_p > calm_p + 0.3, "angry {angry_p} vs calm {calm_p}");
    assert_eq!(angry.sentiment.unwrap().label, "negative");
    assert_eq!(calm.sentiment.unwrap().label, "positive");

    let history = ["hi", "where is my order? it has been a week"];
    let again = understander
        .understand("where's my order?? it's been a week already", &history)
        .unwrap();
    assert_eq!(again.repeated.map(|r| r.index), Some(1), "{again:?}");
    let other = understander
        .understand("do you have this in size XL?", &history)
        .unwrap();
    assert_eq!(other.repeated, None, "{other:?}");
}

#[test]
fn eval_intents_reports_the_issue_keys() {
    let cache = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kedai"))
        .args(["--json", "eval", "intents", "--train"])
        .arg(data("intents/train.jsonl"))
        .arg("--test")
        .arg(data("intents_test.jsonl"))
        .arg("--cache-dir")
        .arg(cache.path())
        .env("KEDAI__LOG__FILTER", "warn")
        .output()
        .expect("kedai runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    for key in [
        "accuracy",
        "macro_f1",
        "in_scope_accuracy",
        "oos_recall",
        "oos_precision",
        "examples",
    ] {
        assert!(report.get(key).is_some(), "missing {key}: {report}");
    }
    assert_eq!(report["examples"], 14);
    assert!(report["accuracy"].as_f64().unwrap() >= 0.7, "{report}");
    assert!(report["timings"]["embedded_texts"].as_u64().unwrap() > 0);

    // The second run finds every vector in the cache.
    let again = Command::new(env!("CARGO_BIN_EXE_kedai"))
        .args(["--json", "eval", "intents", "--train"])
        .arg(data("intents/train.jsonl"))
        .arg("--test")
        .arg(data("intents_test.jsonl"))
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["timings"]["embedded_texts"], 0);
    assert_eq!(again["accuracy"], report["accuracy"]);
}

#[test]
fn eval_rejects_bad_lines_with_the_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"text\":\"hi\",\"label\":\"greeting\"}\n{\"text\":\"\"}\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kedai"))
        .args(["eval", "intents", "--train"])
        .arg(&bad)
        .arg("--test")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
}

/// The shipped exemplars tell a question about how returns, cancelling and
/// refunds work (answered from the seller's FAQ) from the request itself
/// (a person's), with the real encoder, on phrasings none of them holds.
#[test]
fn real_model_tells_policy_questions_from_requests() {
    let settings = Settings::defaults();
    let cached = CachedEmbedder::open(
        Shared(e5()),
        &settings.models.cache_dir().join("embeddings"),
    )
    .expect("vector cache opens");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("kb");
    let heads = Heads::from_dirs(
        &cached,
        &root.join("intents/exemplars"),
        Some(&root.join("sentiment/exemplars")),
        &TrainConfig::default(),
    )
    .expect("heads train on the shipped exemplars");
    let understander = Understander::new(Arc::new(cached), heads).unwrap();
    let questions = [
        "am I able to send it back if I don't like it?",
        "berapa lama proses refund nya biasanya kak?",
        "hủy đơn có mất phí gì không ạ",
        "退货的期限是几天？",
        "¿hasta cuándo puedo cancelar un pedido?",
    ];
    let requests = [
        "I want to return this, it's broken",
        "please cancel my order, I don't need it anymore",
        "where is my refund? it has been two weeks",
        "barangnya rusak kak, saya mau kembalikan",
    ];
    let mut wrong = Vec::new();
    for text in questions {
        let u = understander.understand(text, &[]).unwrap();
        if u.intent != "policy_question" {
            wrong.push(format!("{text}: {} ({:.2})", u.intent, u.confidence));
        }
    }
    assert!(
        wrong.len() <= 1,
        "questions read as something else: {wrong:?}"
    );
    for text in requests {
        let u = understander.understand(text, &[]).unwrap();
        assert_ne!(
            u.intent, "policy_question",
            "{text}: a request read as a question about the rules ({:.2})",
            u.confidence
        );
    }
}
