//! `kedai eval retrieval`: the knowledge base's retrieval stack (the same
//! analysers, BM25 index, dense index and fusion) measured on a labelled
//! JSONL file.
//!
//! Each line has `text` (the query) and either `label`, the passage to find,
//! or `candidates`, a list of `{"candidate": passage, "label": 0|1}`. All
//! passages of the file are pooled into one fresh index (identical passages
//! once); a query is found at k when a positive passage is among its top k.
//! Queries without any positive passage cannot be found and are skipped.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::inference::EmbedRole;
use crate::kb::index::{DenseIndex, IndexDoc, SearchIndex, SearchParams, CANDIDATES};
use crate::kb::{Embedder, SearchMode};

#[derive(Debug, Deserialize)]
struct Line {
    #[serde(default)]
    id: Option<String>,
    text: String,
    #[serde(default)]
    label: serde_json::Value,
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Candidate {
    candidate: String,
    label: i64,
}

/// A query and the passages that answer it.
#[derive(Debug, Clone)]
pub struct EvalQuery {
    pub key: String,
    pub text: String,
    pub positives: Vec<usize>,
}

/// A labelled file turned into a passage pool and queries.
#[derive(Debug, Clone, Default)]
pub struct EvalSet {
    pub passages: Vec<String>,
    pub passage_langs: Vec<String>,
    pub queries: Vec<EvalQuery>,
    /// Lines whose passages are pooled but which have no positive passage.
    pub skipped: usize,
}

impl EvalSet {
    pub fn read(path: &Path) -> anyhow::Result<EvalSet> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut set = EvalSet::default();
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut intern = |set: &mut EvalSet, text: &str, lang: &str| -> usize {
            *ids.entry(text.to_owned()).or_insert_with(|| {
                set.passages.push(text.to_owned());
                set.passage_langs.push(lang.to_owned());
                set.passages.len() - 1
            })
        };
        for (index, raw) in std::io::BufReader::new(file).lines().enumerate() {
            let number = index + 1;
            let raw = raw.with_context(|| format!("reading {}", path.display()))?;
            if raw.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(&raw)
                .with_context(|| format!("{}:{number}: not a valid eval line", path.display()))?;
            let lang = line.lang.as_deref().unwrap_or("en").to_owned();
            let mut positives = Vec::new();
            if !line.candidates.is_empty() {
                for c in &line.candidates {
                    if c.candidate.trim().is_empty() {
                        continue;
                    }
                    let id = intern(&mut set, &c.candidate, &lang);
                    if c.label == 1 && !positives.contains(&id) {
                        positives.push(id);
                    }
                }
            } else if let Some(label) = line.label.as_str().filter(|l| !l.trim().is_empty()) {
                positives.push(intern(&mut set, label, &lang));
            } else {
                bail!(
                    "{}:{number}: needs a `label` string or a `candidates` list",
                    path.display()
                );
            }
            if line.text.trim().is_empty() || positives.is_empty() {
                set.skipped += 1;
                continue;
            }
            set.queries.push(EvalQuery {
                key: line.id.unwrap_or_else(|| format!("line-{number}")),
                text: line.text,
                positives,
            });
        }
        if set.queries.is_empty() {
            bail!("{} has no query with a positive passage", path.display());
        }
        Ok(set)
    }

    /// Keeps `n` queries chosen by the hash of their key: the same file
    /// and `n` always give the same sample. The passage pool is unchanged.
    pub fn sample(&mut self, n: usize) {
        if n >= self.queries.len() {
            return;
        }
        self.queries
            .sort_by_cached_key(|q| Sha256::digest(q.key.as_bytes()));
        self.queries.truncate(n);
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RetrievalReport {
    pub mode: SearchMode,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub mrr: f64,
    pub queries: usize,
    pub passages: usize,
    pub skipped: usize,
    pub embed_seconds: f64,
    pub search_ms_p50: f64,
}

/// The 1-based rank of the first positive among `ranked`, if any.
fn first_positive(ranked: &[u32], positives: &[usize]) -> Option<usize> {
    ranked
        .iter()
        .position(|ord| positives.contains(&(*ord as usize)))
        .map(|i| i + 1)
}

/// Progress lines on stderr while embedding.
fn embed_all(
    embedder: &dyn Embedder,
    texts: &[&str],
    role: EmbedRole,
    what: &str,
) -> anyhow::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(texts.len() * embedder.dim());
    let started = Instant::now();
    for (i, batch) in texts.chunks(64).enumerate() {
        for v in embedder.embed(batch, role)? {
            out.extend(v);
        }
        if i % 20 == 19 {
            eprintln!(
                "embedded {} / {} {what} ({:.0} s)",
                (i + 1) * 64,
                texts.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(out)
}

/// Runs the evaluation; `embedder` is needed unless `mode` is BM25.
pub fn evaluate(
    set: &EvalSet,
    mode: SearchMode,
    embedder: Option<&dyn Embedder>,
) -> anyhow::Result<RetrievalReport> {
    let started = Instant::now();
    let (dense, query_vectors) = match (mode, embedder) {
        (SearchMode::Bm25, _) => (None, None),
        (_, None) => bail!("mode {} needs the embedding model", mode.as_str()),
        (_, Some(embedder)) => {
            let passages: Vec<&str> = set.passages.iter().map(String::as_str).collect();
            let vectors = embed_all(embedder, &passages, EmbedRole::Passage, "passages")?;
            let queries: Vec<&str> = set.queries.iter().map(|q| q.text.as_str()).collect();
            let query_vectors = embed_all(embedder, &queries, EmbedRole::Query, "queries")?;
            (
                Some(DenseIndex::new(embedder.dim(), vectors)?),
                Some(DenseIndex::new(embedder.dim(), query_vectors)?),
            )
        }
    };
    let embed_seconds = started.elapsed().as_secs_f64();
    let docs: Vec<IndexDoc<'_>> = set
        .passages
        .iter()
        .zip(&set.passage_langs)
        .map(|(text, lang)| IndexDoc {
            text,
            lang,
            kind: "passage",
        })
        .collect();
    let index = SearchIndex::build_in_memory(&docs, dense)?;
    let (mut found_1, mut found_5, mut reciprocal) = (0usize, 0usize, 0f64);
    let mut latencies = Vec::with_capacity(set.queries.len());
    for (i, query) in set.queries.iter().enumerate() {
        let searched = Instant::now();
        let hits = index.search(&SearchParams {
            text: &query.text,
            vector: query_vectors.as_ref().map(|q| q.vector(i)),
            mode,
            top_k: 2 * CANDIDATES,
            kinds: None,
        })?;
        latencies.push(searched.elapsed().as_secs_f64() * 1000.0);
        let ranked: Vec<u32> = hits.iter().map(|h| h.ord).collect();
        if let Some(rank) = first_positive(&ranked, &query.positives) {
            found_1 += usize::from(rank == 1);
            found_5 += usize::from(rank <= 5);
            reciprocal += 1.0 / rank as f64;
        }
    }
    latencies.sort_by(f64::total_cmp);
    let n = set.queries.len() as f64;
    Ok(RetrievalReport {
        mode,
        recall_at_1: found_1 as f64 / n,
        recall_at_5: found_5 as f64 / n,
        mrr: reciprocal / n,
        queries: set.queries.len(),
        passages: set.passages.len(),
        skipped: set.skipped,
        embed_seconds,
        search_ms_p50: latencies[latencies.len() / 2],
    })
}

/// Arguments of `kedai eval retrieval`.
#[derive(Debug, Clone, clap::Args)]
pub struct RetrievalArgs {
    /// JSONL file: `text` plus `label` (the passage) or `candidates`.
    #[arg(long)]
    pub data: PathBuf,
    /// hybrid, bm25 or dense.
    #[arg(long, default_value = "hybrid", value_parser = parse_mode)]
    pub mode: SearchMode,
    /// Evaluate only this many queries, picked by the hash of their id
    /// (deterministic); every passage of the file stays in the pool.
    #[arg(long)]
    pub sample: Option<usize>,
    /// Search this kb folder (docs/kb-format.md) through the knowledge
    /// base itself instead of pooling the file's passages; each line of
    /// `--data` then has `text` and `expected`, the `kind:id`s that count.
    #[arg(long)]
    pub kb: Option<PathBuf>,
}

fn parse_mode(raw: &str) -> Result<SearchMode, String> {
    raw.parse()
}

#[derive(Debug, Deserialize)]
struct KbLine {
    text: String,
    expected: Vec<String>,
}

/// Imports `dir` into a scratch store and searches it through `KbService`
/// (chunking, per-question vectors, analysers, fusion: the real path) with
/// the queries of `data`.
pub async fn evaluate_kb(
    dir: &Path,
    data: &Path,
    mode: SearchMode,
    embedder: Option<std::sync::Arc<dyn Embedder>>,
) -> anyhow::Result<RetrievalReport> {
    use crate::kb::{KbQuery, KbService};
    use crate::store::TenantStore;

    let entries = crate::kb::import::read_dir(dir)?;
    let scratch = tempfile::TempDir::new()?;
    let mut settings = crate::config::Settings::defaults().store;
    settings.data_dir = scratch.path().to_path_buf();
    settings.durability = crate::config::Durability::Normal;
    let store = crate::store::SqliteStore::open(&settings, crate::store::Schema::Migrate).await?;
    let tenant = store
        .create_tenant(&crate::domain::TenantName::parse("eval")?)
        .await?;
    let service = KbService::new(
        std::sync::Arc::new(store.clone()),
        embedder,
        scratch.path().join("kb"),
    );
    service.import(tenant.id, &entries, "eval").await?;
    let started = Instant::now();
    let index = service.current(tenant.id).await?;
    let embed_seconds = started.elapsed().as_secs_f64();

    let text =
        std::fs::read_to_string(data).with_context(|| format!("reading {}", data.display()))?;
    let (mut found_1, mut found_5, mut reciprocal, mut queries) = (0usize, 0usize, 0f64, 0usize);
    let mut latencies = Vec::new();
    for (index_in_file, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line: KbLine = serde_json::from_str(raw).with_context(|| {
            format!(
                "{}:{}: expected {{\"text\", \"expected\"}}",
                data.display(),
                index_in_file + 1
            )
        })?;
        let query = KbQuery::parse(
            &line.text,
            Some(crate::kb::service::MAX_TOP_K),
            Some(mode),
            None,
        )?;
        let searched = Instant::now();
        let results = service.search(tenant.id, &query).await?;
        latencies.push(searched.elapsed().as_secs_f64() * 1000.0);
        let rank = results
            .hits
            .iter()
            .position(|h| line.expected.contains(&format!("{}:{}", h.kind, h.id)))
            .map(|i| i + 1);
        queries += 1;
        if let Some(rank) = rank {
            found_1 += usize::from(rank == 1);
            found_5 += usize::from(rank <= 5);
            reciprocal += 1.0 / rank as f64;
        } else {
            eprintln!("not found: {:?} (expected {:?})", line.text, line.expected);
        }
    }
    store.close().await;
    if queries == 0 {
        bail!("{} has no queries", data.display());
    }
    latencies.sort_by(f64::total_cmp);
    let n = queries as f64;
    Ok(RetrievalReport {
        mode,
        recall_at_1: found_1 as f64 / n,
        recall_at_5: found_5 as f64 / n,
        mrr: reciprocal / n,
        queries,
        passages: index.chunks().len(),
        skipped: 0,
        embed_seconds,
        search_ms_p50: latencies[latencies.len() / 2],
    })
}

impl RetrievalReport {
    pub fn table(&self, data: &Path) -> String {
        format!(
            "{}\nmode      queries  passages  recall@1  recall@5  MRR\n{:<9} {:>7}  {:>8}  {:>8.3}  {:>8.3}  {:.3}\n\
             ({} lines without a positive skipped; embedding {:.1} s; search p50 {:.2} ms)",
            data.display(),
            self.mode.as_str(),
            self.queries,
            self.passages,
            self.recall_at_1,
            self.recall_at_5,
            self.mrr,
            self.skipped,
            self.embed_seconds,
            self.search_ms_p50
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kb::HashingEmbedder;

    fn write(lines: &[serde_json::Value]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        std::fs::write(file.path(), text.join("\n")).unwrap();
        file
    }

    #[test]
    fn labels_and_candidates_pool_into_one_set() {
        let file = write(&[
            serde_json::json!({"id": "a", "text": "how long is delivery to brazil",
                "label": "Delivery to Brazil takes 12 to 25 days."}),
            serde_json::json!({"id": "b", "text": "can I pay cash on delivery", "label": [],
                "candidates": [
                    {"candidate": "Cash on delivery is available in Thailand.", "label": 1},
                    {"candidate": "Delivery to Brazil takes 12 to 25 days.", "label": 0}]}),
            serde_json::json!({"id": "c", "text": "nothing fits", "label": [],
                "candidates": [{"candidate": "Sizes run small.", "label": 0}]}),
        ]);
        let set = EvalSet::read(file.path()).unwrap();
        assert_eq!(set.passages.len(), 3, "identical passages pooled once");
        assert_eq!((set.queries.len(), set.skipped), (2, 1));
        assert_eq!(set.queries[1].positives, [1]);

        let bm25 = evaluate(&set, SearchMode::Bm25, None).unwrap();
        assert_eq!((bm25.recall_at_1, bm25.mrr), (1.0, 1.0), "{bm25:?}");
        let embedder = HashingEmbedder::new(128);
        let hybrid = evaluate(&set, SearchMode::Hybrid, Some(&embedder)).unwrap();
        assert_eq!(hybrid.recall_at_5, 1.0);
        assert!(evaluate(&set, SearchMode::Dense, None).is_err());
    }

    #[tokio::test]
    async fn a_kb_folder_is_searched_through_the_knowledge_base() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kb/shop");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "{\"text\": \"cash on delivery\", \"expected\": [\"faq:cod-available\"]}\n\
             {\"text\": \"refund to the original payment method\", \"expected\": [\"policy:returns\"]}\n",
        )
        .unwrap();
        let report = evaluate_kb(&dir, file.path(), SearchMode::Bm25, None)
            .await
            .unwrap();
        assert_eq!((report.queries, report.recall_at_1), (2, 1.0), "{report:?}");
        assert!(report.passages > 14, "policy sections are chunks");
    }

    #[test]
    fn a_query_ranked_second_counts_half_in_mrr() {
        assert_eq!(first_positive(&[4, 2, 9], &[2]), Some(2));
        assert_eq!(first_positive(&[4, 2, 9], &[7]), None);
    }

    #[test]
    fn sampling_is_deterministic_and_keeps_the_pool() {
        let lines: Vec<serde_json::Value> = (0..20)
            .map(|i| serde_json::json!({"id": format!("q{i}"), "text": format!("query {i}"), "label": format!("passage {i}")}))
            .collect();
        let file = write(&lines);
        let mut a = EvalSet::read(file.path()).unwrap();
        let mut b = EvalSet::read(file.path()).unwrap();
        a.sample(5);
        b.sample(5);
        let keys = |s: &EvalSet| s.queries.iter().map(|q| q.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&a), keys(&b));
        assert_eq!((a.queries.len(), a.passages.len()), (5, 20));
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "{\"text\": \"q\", \"label\": \"p\"}\n{\"text\": \"q\"}\n",
        )
        .unwrap();
        let err = format!("{:#}", EvalSet::read(file.path()).unwrap_err());
        assert!(err.contains(":2:") && err.contains("label"), "{err}");
    }
}
