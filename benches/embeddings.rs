//! Embedding speed with the real models: load time, one short message, and
//! a batch of 32 short messages, for multilingual-e5-small (E5S1) and
//! all-MiniLM-L6-v2. Before the timings it prints the process's resident
//! memory after loading e5 and its peak so far (Linux only).
//!
//! Then the cost of listing suggested FAQ entries: the 64 gap messages a
//! listing groups embedded from nothing (`gap_listing/first`, what every
//! listing cost before vectors were remembered), all remembered
//! (`gap_listing/next`), and 8 of them new (`gap_listing/next_8_new`).
//!
//! `cargo bench --bench embeddings`; `RAYON_NUM_THREADS` sets the threads.

use std::hint::black_box;
use std::time::Duration;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kedai::config::Settings;
use kedai::inference::{EmbedRole, TextEmbedder};
use kedai::models::{self, FetchPolicy, PrepareMode, Progress, ResolvedModel};

const MESSAGES: [&str; 8] = [
    "Where is my order? It has been five days.",
    "Pesanan saya belum sampai, tolong dicek ya kak.",
    "Apakah barang ini ready stok ukuran XL?",
    "สินค้าจะถึงเมื่อไหร่ครับ",
    "Khi nào đơn hàng của tôi được giao?",
    "Meu pedido chegou quebrado, quero reembolso.",
    "这个商品什么时候发货？",
    "Thank you so much!!! 😍🙏🎉",
];

fn resolve(artifact: &str) -> ResolvedModel {
    let mode = PrepareMode {
        fetch: FetchPolicy::FetchMissing,
        progress: Progress::Lines,
    };
    models::resolve(
        &Settings::defaults().models,
        &format!("bundle:{artifact}"),
        mode,
    )
    .expect("model prepared")
}

/// `VmRSS` and `VmHWM` from /proc/self/status, in MiB.
fn memory_mib() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn bench_model(c: &mut Criterion, artifact: &str) {
    let model = resolve(artifact);
    let before = memory_mib();
    let embedder = TextEmbedder::load(&model, &Device::Cpu).expect("model loads");
    if let (Some((rss_before, _)), Some((rss, peak))) = (before, memory_mib()) {
        eprintln!(
            "{artifact}: RSS {rss_before:.0} MiB before load, {rss:.0} MiB after, peak {peak:.0} MiB"
        );
    }
    let batch: Vec<&str> = MESSAGES.iter().cycle().take(32).copied().collect();
    embedder.embed(&batch, EmbedRole::Query).expect("warm-up");

    let mut group = c.benchmark_group(artifact);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("load", |b| {
        b.iter(|| TextEmbedder::load(black_box(&model), &Device::Cpu).expect("loads"))
    });
    group.bench_function("one_short_message", |b| {
        b.iter(|| embedder.embed(black_box(&["Where is my order?"]), EmbedRole::Query))
    });
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("batch_32_short_messages", |b| {
        b.iter(|| embedder.embed(black_box(&batch), EmbedRole::Query))
    });
    group.finish();
    if let Some((rss, peak)) = memory_mib() {
        eprintln!("{artifact}: RSS {rss:.0} MiB after the benchmarks, peak {peak:.0} MiB");
    }
}

fn gap_listing(c: &mut Criterion) {
    use kedai::learning::vectors::{RememberedVectors, REMEMBERED_VECTORS};
    use std::sync::Arc;
    let model = resolve("multilingual-e5-small");
    let embedder: Arc<dyn kedai::kb::Embedder> =
        Arc::new(TextEmbedder::load(&model, &Device::Cpu).expect("model loads"));
    let gaps: Vec<String> = (0..64)
        .map(|i| format!("{} ({i})", MESSAGES[i % MESSAGES.len()]))
        .collect();
    let texts: Vec<&str> = gaps.iter().map(String::as_str).collect();
    let fresh: Vec<String> = (0..8)
        .map(|i| format!("{} [new {i}]", MESSAGES[i]))
        .collect();
    let mut group = c.benchmark_group("gap_listing");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("first", |b| {
        b.iter(|| {
            let memory = Arc::new(RememberedVectors::new(REMEMBERED_VECTORS));
            memory
                .embedder(embedder.clone())
                .embed(black_box(&texts), EmbedRole::Query)
        })
    });
    let memory = Arc::new(RememberedVectors::new(REMEMBERED_VECTORS));
    let remembering = memory.embedder(embedder.clone());
    remembering.embed(&texts, EmbedRole::Query).expect("embeds");
    group.bench_function("next", |b| {
        b.iter(|| remembering.embed(black_box(&texts), EmbedRole::Query))
    });
    let mut with_new: Vec<&str> = texts[8..].to_vec();
    with_new.extend(fresh.iter().map(String::as_str));
    group.bench_function("next_8_new", |b| {
        b.iter_batched(
            || {
                let memory = Arc::new(RememberedVectors::new(REMEMBERED_VECTORS));
                let remembering = memory.embedder(embedder.clone());
                remembering
                    .embed(&texts[8..], EmbedRole::Query)
                    .expect("embeds");
                remembering
            },
            |remembering| remembering.embed(black_box(&with_new), EmbedRole::Query),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn embeddings(c: &mut Criterion) {
    bench_model(c, "multilingual-e5-small");
    bench_model(c, "all-minilm-l6-v2");
}

criterion_group!(benches, embeddings, gap_listing);
criterion_main!(benches);
