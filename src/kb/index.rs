//! The search index over a set of documents: a Tantivy BM25 index (fields
//! and analysers from `analysis`), an exact dense index of unit vectors, and
//! reciprocal rank fusion of the two with each component's rank and score
//! kept. It knows documents only as text, a language and a kind tag; it
//! knows nothing of tenants, entries or the store, and never embeds text
//! itself (vectors come in already computed), so it can be timed alone.
//!
//! Exact dense search scans every vector: about 384 multiply-adds per chunk,
//! a few milliseconds at 10k chunks (see `benches/kb_search.rs`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};
use tantivy::{doc, Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use super::analysis::{self, CJK, STEMMED, TEXT};
use super::KbError;

/// Fusion constant of reciprocal rank fusion (Cormack et al. 2009).
pub const RRF_K: f64 = 60.0;
/// BM25's weight in the fusion, dense's being 1. Plain fusion (1.0) let any
/// chunk both components found outrank dense's best hit, which BM25 cannot
/// see across languages; at 0.1 BM25 reorders near-ties of the dense ranking
/// (it lifts a hit a few dense ranks) and still helps on English product
/// questions. Chosen on the dev sets in docs/benchmarks.md (1.0, 0.5, 0.25,
/// 0.1 compared).
pub const BM25_WEIGHT: f64 = 0.1;
/// Candidates taken from each component before fusion.
pub const CANDIDATES: usize = 50;

impl From<tantivy::TantivyError> for KbError {
    fn from(err: tantivy::TantivyError) -> Self {
        KbError::Index(err.to_string())
    }
}

/// How a search ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    Hybrid,
    Bm25,
    Dense,
}

impl SearchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Hybrid => "hybrid",
            SearchMode::Bm25 => "bm25",
            SearchMode::Dense => "dense",
        }
    }
}

impl std::str::FromStr for SearchMode {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "hybrid" => Ok(SearchMode::Hybrid),
            "bm25" => Ok(SearchMode::Bm25),
            "dense" => Ok(SearchMode::Dense),
            other => Err(format!("mode must be hybrid, bm25 or dense, got {other:?}")),
        }
    }
}

/// One document to index.
#[derive(Debug, Clone, Copy)]
pub struct IndexDoc<'a> {
    pub text: &'a str,
    /// ISO 639-1; picks the stemmed field, if Tantivy has a stemmer for it.
    pub lang: &'a str,
    pub kind: &'a str,
}

/// A component's opinion of one hit: its 1-based rank and raw score (BM25
/// score, or cosine similarity).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ComponentHit {
    pub rank: usize,
    pub score: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FusedHit {
    /// The document's position in the list the index was built from.
    pub ord: u32,
    /// Sum of weight / (RRF_K + rank) over the components that found it
    /// (weight [`BM25_WEIGHT`] for BM25, 1 for dense).
    pub score: f64,
    pub bm25: Option<ComponentHit>,
    pub dense: Option<ComponentHit>,
}

#[derive(Debug, Clone, Copy)]
pub struct SearchParams<'a> {
    pub text: &'a str,
    /// Needed for `Hybrid` and `Dense`.
    pub vector: Option<&'a [f32]>,
    pub mode: SearchMode,
    pub top_k: usize,
    /// Only documents of these kinds, when given.
    pub kinds: Option<&'a [&'a str]>,
}

#[derive(Clone, Copy)]
struct Fields {
    ord: Field,
    kind: Field,
    text: Field,
    cjk: Field,
    stemmed: [Field; STEMMED.len()],
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let indexed = |tokenizer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(IndexRecordOption::WithFreqs),
        )
    };
    let ord = builder.add_u64_field("ord", STORED | FAST);
    let kind = builder.add_text_field("kind", STRING);
    let text = builder.add_text_field("text", indexed(TEXT));
    let cjk = builder.add_text_field("cjk", indexed(CJK));
    let stemmed = STEMMED.map(|(name, _, _)| builder.add_text_field(name, indexed(name)));
    (
        builder.build(),
        Fields {
            ord,
            kind,
            text,
            cjk,
            stemmed,
        },
    )
}

fn fields_of(schema: &Schema) -> Result<Fields, KbError> {
    let get = |name: &str| {
        schema
            .get_field(name)
            .map_err(|_| KbError::Index(format!("index has no field {name:?}")))
    };
    let mut stemmed = Vec::new();
    for (name, _, _) in STEMMED {
        stemmed.push(get(name)?);
    }
    Ok(Fields {
        ord: get("ord")?,
        kind: get("kind")?,
        text: get("text")?,
        cjk: get("cjk")?,
        stemmed: stemmed.try_into().expect("one field per stemmer"),
    })
}

/// The BM25 half.
pub struct LexicalIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl LexicalIndex {
    /// Indexes `docs` into `dir` (which must exist and be empty), or in
    /// memory when `dir` is `None`.
    pub fn build(dir: Option<&Path>, docs: &[IndexDoc<'_>]) -> Result<LexicalIndex, KbError> {
        let (schema, fields) = schema();
        let index = match dir {
            Some(dir) => Index::create_in_dir(dir, schema)?,
            None => Index::create_in_ram(schema),
        };
        analysis::register(index.tokenizers());
        let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, 64_000_000)?;
        for (ord, d) in docs.iter().enumerate() {
            let mut document = doc!(
                fields.ord => ord as u64,
                fields.kind => d.kind,
                fields.text => d.text,
                fields.cjk => d.text,
            );
            for (i, (_, _, lang)) in STEMMED.iter().enumerate() {
                if *lang == d.lang {
                    document.add_text(fields.stemmed[i], d.text);
                }
            }
            writer.add_document(document)?;
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        Self::with_index(index, fields)
    }

    pub fn open(dir: &Path) -> Result<LexicalIndex, KbError> {
        let index = Index::open_in_dir(dir)?;
        analysis::register(index.tokenizers());
        let fields = fields_of(&index.schema())?;
        Self::with_index(index, fields)
    }

    fn with_index(index: Index, fields: Fields) -> Result<LexicalIndex, KbError> {
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(LexicalIndex {
            index,
            reader,
            fields,
        })
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The query as BM25 sees it: every term of every field, OR-ed. `None`
    /// when the text has no indexable term at all.
    fn query(&self, text: &str, kinds: Option<&[&str]>) -> Result<Option<BooleanQuery>, KbError> {
        let mut fields = vec![self.fields.text, self.fields.cjk];
        fields.extend(self.fields.stemmed);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for field in fields {
            let mut analyzer = self.index.tokenizer_for_field(field)?;
            for term in analysis::terms(&mut analyzer, text) {
                clauses.push((
                    Occur::Should,
                    Box::new(TermQuery::new(
                        Term::from_field_text(field, &term),
                        IndexRecordOption::WithFreqs,
                    )),
                ));
            }
        }
        if clauses.is_empty() {
            return Ok(None);
        }
        let terms = BooleanQuery::new(clauses);
        let Some(kinds) = kinds else {
            return Ok(Some(terms));
        };
        let allowed: Vec<(Occur, Box<dyn Query>)> = kinds
            .iter()
            .map(|k| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.kind, k),
                    IndexRecordOption::Basic,
                ));
                (Occur::Should, q)
            })
            .collect();
        Ok(Some(BooleanQuery::new(vec![
            (Occur::Must, Box::new(terms)),
            // A filter: it must not add to the BM25 score.
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(
                    Box::new(BooleanQuery::new(allowed)),
                    0.0,
                )),
            ),
        ])))
    }

    /// The best `depth` documents by BM25: (ord, score), best first.
    pub fn search(
        &self,
        text: &str,
        kinds: Option<&[&str]>,
        depth: usize,
    ) -> Result<Vec<(u32, f32)>, KbError> {
        let Some(query) = self.query(text, kinds)? else {
            return Ok(Vec::new());
        };
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(depth.max(1)))?;
        let mut columns = HashMap::new();
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let column = match columns.entry(address.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    searcher
                        .segment_reader(address.segment_ord)
                        .fast_fields()
                        .u64("ord")?,
                ),
            };
            let ord = column
                .first(address.doc_id)
                .ok_or_else(|| KbError::Index("document without an ord".into()))?;
            hits.push((ord as u32, score));
        }
        Ok(hits)
    }
}

/// Unit vectors scanned exhaustively. A document may own several vectors
/// (an FAQ entry: its answer and each question variant); its similarity is
/// that of its best vector.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseIndex {
    dim: usize,
    vectors: Vec<f32>,
    /// The document each vector belongs to.
    owners: Vec<u32>,
    docs: usize,
}

const DENSE_MAGIC: &[u8; 4] = b"KDV2";

impl DenseIndex {
    /// One vector per document, in document order.
    pub fn new(dim: usize, vectors: Vec<f32>) -> Result<DenseIndex, KbError> {
        let count = vectors.len().checked_div(dim).unwrap_or(0);
        DenseIndex::with_owners(dim, vectors, (0..count as u32).collect(), count)
    }

    /// Vectors owned by `docs` documents: vector `i` belongs to `owners[i]`.
    pub fn with_owners(
        dim: usize,
        vectors: Vec<f32>,
        owners: Vec<u32>,
        docs: usize,
    ) -> Result<DenseIndex, KbError> {
        if dim == 0 || !vectors.len().is_multiple_of(dim) || vectors.len() / dim != owners.len() {
            return Err(KbError::Index(format!(
                "{} values and {} owners do not make vectors of {dim}",
                vectors.len(),
                owners.len()
            )));
        }
        if let Some(bad) = owners.iter().find(|&&o| o as usize >= docs) {
            return Err(KbError::Index(format!(
                "vector owner {bad} is past the {docs} documents"
            )));
        }
        Ok(DenseIndex {
            dim,
            vectors,
            owners,
            docs,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Documents covered (not vectors).
    pub fn docs(&self) -> usize {
        self.docs
    }

    pub fn vector_count(&self) -> usize {
        self.owners.len()
    }

    /// Vector `i` and the document owning it.
    pub fn vector(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    pub fn owner(&self, i: usize) -> u32 {
        self.owners[i]
    }

    /// The `depth` most similar documents that `allow` accepts: (ord,
    /// cosine of the document's best vector), best first.
    pub fn search(
        &self,
        query: &[f32],
        allow: &dyn Fn(usize) -> bool,
        depth: usize,
    ) -> Vec<(u32, f32)> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        #[derive(PartialEq)]
        struct Scored(f32, u32);
        impl Eq for Scored {}
        impl PartialOrd for Scored {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Scored {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0
                    .total_cmp(&other.0)
                    .then_with(|| other.1.cmp(&self.1))
            }
        }
        if query.len() != self.dim || depth == 0 {
            return Vec::new();
        }
        let mut best = vec![f32::NEG_INFINITY; self.docs];
        for (vector, &owner) in self.vectors.chunks_exact(self.dim).zip(&self.owners) {
            let score = dot(query, vector);
            let slot = &mut best[owner as usize];
            if score > *slot {
                *slot = score;
            }
        }
        let mut heap: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(depth + 1);
        for (ord, &score) in best.iter().enumerate() {
            if score == f32::NEG_INFINITY || !allow(ord) {
                continue;
            }
            let candidate = Scored(score, ord as u32);
            if heap.len() < depth {
                heap.push(Reverse(candidate));
            } else if heap.peek().is_some_and(|Reverse(worst)| candidate > *worst) {
                heap.pop();
                heap.push(Reverse(candidate));
            }
        }
        let mut hits: Vec<Scored> = heap.into_iter().map(|Reverse(s)| s).collect();
        hits.sort_by(|a, b| b.cmp(a));
        hits.into_iter().map(|Scored(s, o)| (o, s)).collect()
    }

    pub fn write(&self, path: &Path) -> Result<(), KbError> {
        let io = |source| KbError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        out.write_all(DENSE_MAGIC).map_err(io)?;
        out.write_all(&(self.dim as u32).to_le_bytes())
            .map_err(io)?;
        out.write_all(&(self.owners.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&(self.docs as u64).to_le_bytes())
            .map_err(io)?;
        for owner in &self.owners {
            out.write_all(&owner.to_le_bytes()).map_err(io)?;
        }
        for value in &self.vectors {
            out.write_all(&value.to_le_bytes()).map_err(io)?;
        }
        out.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)
    }

    pub fn read(path: &Path) -> Result<DenseIndex, KbError> {
        let io = |source| KbError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(io)?
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let corrupt = || KbError::Index(format!("{} is not a dense index file", path.display()));
        if bytes.len() < 24 || &bytes[..4] != DENSE_MAGIC {
            return Err(corrupt());
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let dim = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
        let count = u64_at(8) as usize;
        let docs = u64_at(16) as usize;
        let body = &bytes[24..];
        if dim == 0 || body.len() != count * 4 + count * dim * 4 {
            return Err(corrupt());
        }
        let (owners, vectors) = body.split_at(count * 4);
        let owners = owners
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let vectors = vectors
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        DenseIndex::with_owners(dim, vectors, owners, docs)
    }
}

/// Dot product in eight independent lanes, which the compiler turns into
/// SIMD; a plain iterator sum would be kept strictly sequential.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Weighted reciprocal rank fusion of two ranked lists of (ord, score).
pub fn fuse(bm25: &[(u32, f32)], dense: &[(u32, f32)]) -> Vec<FusedHit> {
    let mut hits: HashMap<u32, FusedHit> = HashMap::new();
    let mut add = |list: &[(u32, f32)], is_bm25: bool| {
        for (i, &(ord, score)) in list.iter().enumerate() {
            let component = ComponentHit { rank: i + 1, score };
            let hit = hits.entry(ord).or_insert(FusedHit {
                ord,
                score: 0.0,
                bm25: None,
                dense: None,
            });
            let weight = if is_bm25 { BM25_WEIGHT } else { 1.0 };
            hit.score += weight / (RRF_K + (i + 1) as f64);
            if is_bm25 {
                hit.bm25 = Some(component);
            } else {
                hit.dense = Some(component);
            }
        }
    };
    add(bm25, true);
    add(dense, false);
    let mut fused: Vec<FusedHit> = hits.into_values().collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.ord.cmp(&b.ord)));
    fused
}

/// Lexical and dense indexes over the same documents, in the same order.
pub struct SearchIndex {
    lexical: LexicalIndex,
    dense: Option<DenseIndex>,
    kinds: Vec<Box<str>>,
}

impl SearchIndex {
    pub fn new(
        lexical: LexicalIndex,
        dense: Option<DenseIndex>,
        kinds: Vec<Box<str>>,
    ) -> Result<SearchIndex, KbError> {
        let docs = lexical.num_docs() as usize;
        if docs != kinds.len() || dense.as_ref().is_some_and(|d| d.docs() != docs) {
            return Err(KbError::Index(format!(
                "index parts disagree: {docs} BM25 documents, {} kinds, {} dense documents",
                kinds.len(),
                dense.as_ref().map_or(0, DenseIndex::docs)
            )));
        }
        Ok(SearchIndex {
            lexical,
            dense,
            kinds,
        })
    }

    /// Builds both halves in memory.
    pub fn build_in_memory(
        docs: &[IndexDoc<'_>],
        dense: Option<DenseIndex>,
    ) -> Result<SearchIndex, KbError> {
        let lexical = LexicalIndex::build(None, docs)?;
        let kinds = docs.iter().map(|d| Box::from(d.kind)).collect();
        SearchIndex::new(lexical, dense, kinds)
    }

    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    pub fn dense(&self) -> Option<&DenseIndex> {
        self.dense.as_ref()
    }

    /// The `top_k` best documents under `params.mode`.
    pub fn search(&self, params: &SearchParams<'_>) -> Result<Vec<FusedHit>, KbError> {
        let lexical = match params.mode {
            SearchMode::Hybrid | SearchMode::Bm25 => {
                self.lexical.search(params.text, params.kinds, CANDIDATES)?
            }
            SearchMode::Dense => Vec::new(),
        };
        let dense = match params.mode {
            SearchMode::Hybrid | SearchMode::Dense => {
                let (Some(index), Some(vector)) = (&self.dense, params.vector) else {
                    return Err(KbError::DenseUnavailable);
                };
                let allow = |ord: usize| {
                    params
                        .kinds
                        .is_none_or(|kinds| kinds.iter().any(|k| **k == *self.kinds[ord]))
                };
                index.search(vector, &allow, CANDIDATES)
            }
            SearchMode::Bm25 => Vec::new(),
        };
        let mut hits = fuse(&lexical, &dense);
        hits.truncate(params.top_k);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<IndexDoc<'static>> {
        vec![
            IndexDoc {
                text: "How many days do I have to return an item?",
                lang: "en",
                kind: "faq",
            },
            IndexDoc {
                text: "Shipping to Thailand takes 3 to 6 days",
                lang: "en",
                kind: "shipping",
            },
            IndexDoc {
                text: "สินค้าส่งฟรีเมื่อซื้อครบ 500 บาท",
                lang: "th",
                kind: "faq",
            },
            IndexDoc {
                text: "Política de devoluções: 15 dias",
                lang: "pt",
                kind: "policy",
            },
        ]
    }

    #[test]
    fn bm25_finds_stemmed_folded_and_unspaced_text() {
        let index = LexicalIndex::build(None, &docs()).unwrap();
        let top = |q: &str| index.search(q, None, 10).unwrap().first().map(|h| h.0);
        assert_eq!(top("returning items"), Some(0), "English stemming");
        assert_eq!(top("thailand"), Some(1));
        assert_eq!(top("ส่งฟรี"), Some(2), "Thai bigrams");
        assert_eq!(top("devolucoes"), Some(3), "accents folded");
        assert_eq!(top("?!"), None, "no terms, no hits");
        assert_eq!(
            index.search("days", Some(&["shipping"]), 10).unwrap(),
            index
                .search("days", None, 10)
                .unwrap()
                .into_iter()
                .filter(|h| h.0 == 1)
                .collect::<Vec<_>>(),
            "kind filter"
        );
    }

    #[test]
    fn dense_search_is_exact_and_ordered() {
        let dense = DenseIndex::new(2, vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8]).unwrap();
        let hits = dense.search(&[0.6, 0.8], &|_| true, 2);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [2, 1]);
        assert!((hits[0].1 - 1.0).abs() < 1e-6);
        let filtered = dense.search(&[0.6, 0.8], &|ord| ord == 0, 5);
        assert_eq!(filtered.len(), 1);
        assert!(dense.search(&[1.0], &|_| true, 5).is_empty(), "wrong dim");
    }

    #[test]
    fn a_document_scores_as_its_best_vector() {
        let dense =
            DenseIndex::with_owners(2, vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8], vec![0, 0, 1], 2)
                .unwrap();
        let hits = dense.search(&[0.0, 1.0], &|_| true, 5);
        assert_eq!(hits, [(0, 1.0), (1, 0.8)]);
        assert!(DenseIndex::with_owners(2, vec![1.0, 0.0], vec![3], 2).is_err());
    }

    #[test]
    fn dense_files_round_trip_and_reject_garbage() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("dense.bin");
        let dense =
            DenseIndex::with_owners(3, (0..12).map(|i| i as f32).collect(), vec![0, 0, 1, 2], 3)
                .unwrap();
        dense.write(&path).unwrap();
        assert_eq!(DenseIndex::read(&path).unwrap(), dense);
        let mut torn = std::fs::read(&path).unwrap();
        torn.truncate(torn.len() - 4);
        std::fs::write(&path, torn).unwrap();
        assert!(DenseIndex::read(&path).is_err());
    }

    #[test]
    fn fusion_rewards_agreement_and_keeps_component_ranks() {
        let fused = fuse(&[(1, 9.0), (2, 5.0)], &[(3, 0.9), (2, 0.8)]);
        assert_eq!(fused[0].ord, 2, "found by both");
        assert_eq!(fused[0].bm25.unwrap().rank, 2);
        assert_eq!(fused[0].dense.unwrap().rank, 2);
        assert!((fused[0].score - (BM25_WEIGHT + 1.0) / 62.0).abs() < 1e-12);
        assert_eq!(fused[1].ord, 3, "dense's first beats BM25's first");
        assert!(fused[1].bm25.is_none() && fused[1].dense.is_some());
        assert_eq!(fused[2].ord, 1);
        assert!(fused[2].bm25.is_some() && fused[2].dense.is_none());
    }

    #[test]
    fn dot_matches_the_plain_sum_for_any_length() {
        for len in [1, 7, 8, 9, 384] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "{len}");
        }
    }
}
