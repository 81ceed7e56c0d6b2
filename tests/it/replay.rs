//! `kedai replay` against `kedai eval replies`: a history built from our
//! evaluation conversations, replayed through the real pipeline and the
//! real models, gets the decisions `eval replies` gets for the same
//! messages (layer, action, intent, kind of answer), and its summary
//! counts them the same way.

use std::path::Path;

use chrono::{Duration, Utc};
use kedai::pipeline::evaluate;
use kedai::reports::replay::{self, HistoryLine, Meaning};
use kedai::startup::PipelineHarness;
use tempfile::TempDir;

/// How many single-message cases run: each costs a model pass or a draft
/// on a 2-core box.
const CASES: usize = 12;

struct Cosine(kedai::pipeline::stages::EngineEmbedder);

#[async_trait::async_trait]
impl Meaning for Cosine {
    async fn similarity(&self, a: &str, b: &str) -> anyhow::Result<f32> {
        use kedai::kb::Embedder;
        let v = tokio::task::block_in_place(|| {
            self.0.embed(&[a, b], kedai::inference::EmbedRole::Query)
        })?;
        Ok(v[0].iter().zip(&v[1]).map(|(x, y)| x * y).sum())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replaying_the_evaluation_conversations_reproduces_eval_replies() {
    let (shared, _, _) = tokio::task::spawn_blocking(crate::openai::shared)
        .await
        .unwrap();
    let dir = TempDir::new().unwrap();
    let mut settings = shared.clone();
    settings.store.data_dir = dir.path().to_path_buf();
    settings.server.demo = true;
    settings.models.fetch_on_start = false;
    settings.kb.demo_dir = "kb/demo".into();
    settings.kb.demo_orders = "kb/orders/demo.jsonl".into();
    let harness = PipelineHarness::start(settings).await.unwrap();
    let store = harness.app.store();
    let tenant = store.tenant_by_name("demo").await.unwrap().unwrap().id;

    let cases: Vec<_> =
        evaluate::read_cases(&Path::new(env!("CARGO_MANIFEST_DIR")).join("kb/eval/replies.jsonl"))
            .unwrap()
            .into_iter()
            .filter(|c| c.history.is_empty() && !c.message.trim().is_empty())
            .take(CASES)
            .collect();
    let eval = evaluate::run(store.as_ref(), tenant, &harness.pipeline, &cases)
        .await
        .unwrap();

    // The same messages as a seller's history, each its own conversation,
    // with the case's note standing in for what the person replied.
    let start = Utc::now();
    let history: Vec<HistoryLine> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| HistoryLine {
            conversation_id: c.id.clone(),
            shop: c.shop.clone(),
            buyer_id: c.buyer.clone(),
            sent_at: start + Duration::seconds(i as i64),
            text: c.message.clone(),
            human_reply: Some(c.notes.clone()).filter(|n| !n.is_empty()),
        })
        .collect();
    let meaning = Cosine(
        kedai::pipeline::stages::EngineEmbedder::new(
            harness.app.engine(),
            kedai::engine::Role::Retrieval,
        )
        .unwrap(),
    );
    let judged = replay::run(
        store.as_ref(),
        tenant,
        &harness.pipeline,
        &meaning,
        &history,
    )
    .await
    .unwrap();
    assert_eq!(judged.len(), cases.len());
    for (e, r) in eval.cases.iter().zip(&judged) {
        assert_eq!(
            (
                e.layer,
                e.action.as_str(),
                e.intent.as_str(),
                e.answer_kind.as_str()
            ),
            (
                r.layer,
                r.action.as_str(),
                r.intent.as_str(),
                r.answer_kind.as_str()
            ),
            "case {}",
            e.id
        );
        assert_eq!(
            r.similarity.is_some(),
            r.kedai_text.is_some() && r.human_reply.is_some()
        );
    }
    let report = replay::summarise(judged);
    // eval's layer confusion, summed by decided layer, is replay's layers.
    for layer in 0..3 {
        let decided: usize = eval.layer_confusion.iter().map(|row| row[layer]).sum();
        assert_eq!(report.all.layers[layer], decided, "layer {}", layer + 1);
    }
    let sent = eval
        .cases
        .iter()
        .filter(|c| c.action == "send" && c.layer == 1)
        .count();
    assert!((report.all.projected_automation - sent as f64 / cases.len() as f64).abs() < 1e-9);
    assert_eq!(report.conversations, cases.len());
}
