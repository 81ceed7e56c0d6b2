//! Knowledge-base search latency without the query embedding, at 1k, 10k
//! and 100k chunks, and BM25 indexing throughput.
//!
//! Chunks are synthetic: 20 to 60 words drawn from a 5,000-word vocabulary
//! with a Zipf-like skew (so common words are common, as in real text), and
//! random unit vectors of 384 dimensions (multilingual-e5-small's size);
//! queries are 3 to 8 words with a random unit vector. Exact dense search
//! costs the same whatever the vectors hold, so random ones time it
//! faithfully. After criterion's runs, the percentiles of 2,000 single
//! searches per size are printed (the target is p99 <= 20 ms at 10k).
//!
//! `cargo bench --bench kb_search`

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use kedai::kb::index::{DenseIndex, IndexDoc, LexicalIndex, SearchIndex, SearchParams};
use kedai::kb::SearchMode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIM: usize = 384;
const VOCAB: usize = 5_000;
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

fn word(rng: &mut StdRng) -> String {
    // Zipf-like: squaring a uniform draw favours low ranks.
    let u: f64 = rng.random();
    format!("w{}", (u * u * VOCAB as f64) as usize)
}

fn text(rng: &mut StdRng, words: std::ops::Range<usize>) -> String {
    let n = rng.random_range(words);
    (0..n).map(|_| word(rng)).collect::<Vec<_>>().join(" ")
}

fn unit_vectors(rng: &mut StdRng, n: usize) -> Vec<f32> {
    let mut values: Vec<f32> = (0..n * DIM).map(|_| rng.random::<f32>() - 0.5).collect();
    for v in values.chunks_exact_mut(DIM) {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
    }
    values
}

struct Corpus {
    texts: Vec<String>,
    vectors: Vec<f32>,
}

fn corpus(n: usize, seed: u64) -> Corpus {
    let mut rng = StdRng::seed_from_u64(seed);
    Corpus {
        texts: (0..n).map(|_| text(&mut rng, 20..60)).collect(),
        vectors: unit_vectors(&mut rng, n),
    }
}

fn docs(corpus: &Corpus) -> Vec<IndexDoc<'_>> {
    corpus
        .texts
        .iter()
        .enumerate()
        .map(|(i, t)| IndexDoc {
            text: t,
            lang: "en",
            kind: if i % 4 == 0 { "product" } else { "faq" },
        })
        .collect()
}

fn index(corpus: &Corpus) -> SearchIndex {
    let dense = DenseIndex::new(DIM, corpus.vectors.clone()).unwrap();
    SearchIndex::build_in_memory(&docs(corpus), Some(dense)).unwrap()
}

struct Queries {
    texts: Vec<String>,
    vectors: Vec<f32>,
}

fn queries(n: usize) -> Queries {
    let mut rng = StdRng::seed_from_u64(7);
    Queries {
        texts: (0..n).map(|_| text(&mut rng, 3..9)).collect(),
        vectors: unit_vectors(&mut rng, n),
    }
}

fn search(index: &SearchIndex, queries: &Queries, i: usize, mode: SearchMode) -> usize {
    let i = i % queries.texts.len();
    index
        .search(&SearchParams {
            text: &queries.texts[i],
            vector: Some(&queries.vectors[i * DIM..(i + 1) * DIM]),
            mode,
            top_k: 5,
            kinds: None,
        })
        .unwrap()
        .len()
}

fn bench_search(c: &mut Criterion, indexes: &[(usize, SearchIndex)], queries: &Queries) {
    let mut group = c.benchmark_group("kb_search");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    for (n, index) in indexes {
        for mode in [SearchMode::Hybrid, SearchMode::Bm25, SearchMode::Dense] {
            let mut i = 0;
            group.bench_with_input(BenchmarkId::new(mode.as_str(), n), index, |b, index| {
                b.iter(|| {
                    i += 1;
                    search(index, queries, i, mode)
                })
            });
        }
    }
    group.finish();
}

fn bench_indexing(c: &mut Criterion) {
    let corpus = corpus(10_000, 3);
    let docs = docs(&corpus);
    let mut group = c.benchmark_group("kb_indexing");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(docs.len() as u64));
    group.bench_function("bm25_10k_chunks", |b| {
        b.iter(|| LexicalIndex::build(None, &docs).unwrap().num_docs())
    });
    group.finish();
}

fn percentiles(indexes: &[(usize, SearchIndex)], queries: &Queries) {
    println!("\nsingle-search latency, hybrid, excluding the query embedding:");
    println!(
        "{:>8} {:>9} {:>9} {:>9} {:>9}",
        "chunks", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (n, index) in indexes {
        for i in 0..100 {
            search(index, queries, i, SearchMode::Hybrid);
        }
        let mut ms: Vec<f64> = (0..2_000)
            .map(|i| {
                let started = Instant::now();
                std::hint::black_box(search(index, queries, i, SearchMode::Hybrid));
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
        println!(
            "{:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            n,
            at(0.5),
            at(0.9),
            at(0.99),
            ms[ms.len() - 1]
        );
    }
}

fn main() {
    let queries = queries(1_000);
    let only: Option<usize> = std::env::var("KB_BENCH_SIZE")
        .ok()
        .and_then(|s| s.parse().ok());
    let indexes: Vec<(usize, SearchIndex)> = SIZES
        .iter()
        .filter(|n| only.is_none_or(|o| o == **n))
        .map(|&n| (n, index(&corpus(n, n as u64))))
        .collect();
    let mut criterion = Criterion::default().configure_from_args();
    bench_search(&mut criterion, &indexes, &queries);
    bench_indexing(&mut criterion);
    criterion.final_summary();
    percentiles(&indexes, &queries);
}
