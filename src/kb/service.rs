//! `KbService`: changes to a tenant's knowledge base go to the store, and
//! searches go to that tenant's index, which is rebuilt from the store
//! whenever the store's revision has moved past it.
//!
//! Each tenant's index lives in `<data_dir>/kb/<tenant id>/` as one
//! generation directory per (revision, embedding model), holding the
//! Tantivy index, the vectors, the chunks and a manifest. A generation is
//! written into a temporary directory and renamed into place only when
//! complete, so a crash mid-build leaves nothing that looks finished;
//! unreadable generations are deleted and rebuilt. Vectors of unchanged
//! chunks are carried over from the previous generation, so an edit embeds
//! only what changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chunk::{chunks, Chunk};
use super::embed::{Embedder, SharedVectors};
use super::entry::KbEntry;
use super::index::{
    ComponentHit, DenseIndex, FusedHit, IndexDoc, LexicalIndex, SearchIndex, SearchMode,
    SearchParams,
};
use super::KbError;
use crate::domain::TenantId;
use crate::inference::EmbedRole;
use crate::store::{KbApplied, KbChange, KbKind, KbRecord, KbStore, KbVersion};

/// Longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;
pub const MAX_TOP_K: usize = 50;
pub const DEFAULT_TOP_K: usize = 5;
const EMBED_BATCH: usize = 64;
const FORMAT: u32 = 1;

/// A validated search request.
#[derive(Debug, Clone, PartialEq)]
pub struct KbQuery {
    text: String,
    top_k: usize,
    mode: SearchMode,
    kinds: Option<Vec<KbKind>>,
}

impl KbQuery {
    pub fn parse(
        text: &str,
        top_k: Option<usize>,
        mode: Option<SearchMode>,
        kinds: Option<Vec<KbKind>>,
    ) -> Result<KbQuery, KbError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(KbError::InvalidQuery("query must not be empty".into()));
        }
        let chars = trimmed.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(KbError::InvalidQuery(format!(
                "query must be at most {MAX_QUERY_CHARS} characters, got {chars}"
            )));
        }
        let top_k = top_k.unwrap_or(DEFAULT_TOP_K);
        if !(1..=MAX_TOP_K).contains(&top_k) {
            return Err(KbError::InvalidQuery(format!(
                "top_k must be between 1 and {MAX_TOP_K}, got {top_k}"
            )));
        }
        if kinds.as_ref().is_some_and(Vec::is_empty) {
            return Err(KbError::InvalidQuery(
                "kinds must name at least one kind when given".into(),
            ));
        }
        Ok(KbQuery {
            text: trimmed.to_owned(),
            top_k,
            mode: mode.unwrap_or(SearchMode::Hybrid),
            kinds,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub kind: KbKind,
    pub id: String,
    pub section: Option<String>,
    pub title: String,
    pub lang: String,
    pub text: String,
    /// Reciprocal-rank-fusion score.
    pub score: f64,
    pub bm25: Option<ComponentHit>,
    pub dense: Option<ComponentHit>,
    /// The structured entry: the FAQ answer, a product's variants with
    /// stock and price, a shipping rule's days and cost, a policy section.
    pub fields: serde_json::Value,
    /// For products: the SKUs of the variants whose option values the
    /// query names most ("red ... XL"), best first; empty otherwise.
    pub matched_variants: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    /// The ranking that ran.
    pub mode: SearchMode,
    /// Why it differs from the one asked for, when it does.
    pub degraded: Option<String>,
    /// The knowledge-base revision searched.
    pub revision: i64,
    pub hits: Vec<SearchHit>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    tenant: String,
    revision: i64,
    embedder: Option<String>,
    chunks: usize,
}

/// One tenant's index at one revision.
pub struct TenantIndex {
    pub revision: i64,
    embedder: Option<String>,
    chunks: Vec<Chunk>,
    index: SearchIndex,
}

impl TenantIndex {
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }
}

fn generation_tag(embedder: Option<&dyn Embedder>) -> String {
    match embedder {
        None => "bm25".into(),
        Some(e) => {
            let digest = Sha256::digest(format!("{}/{}", e.model_id(), e.dim()).as_bytes());
            hex::encode(&digest[..6])
        }
    }
}

fn generation_name(revision: i64, tag: &str) -> String {
    format!("r{revision:012}-{tag}")
}

fn text_hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KbError + '_ {
    move |source| KbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), KbError> {
    let bytes = serde_json::to_vec(value).map_err(|e| KbError::Index(e.to_string()))?;
    let file = std::fs::File::create(path).map_err(io_error(path))?;
    use std::io::Write;
    let mut writer = std::io::BufWriter::new(file);
    writer.write_all(&bytes).map_err(io_error(path))?;
    writer
        .into_inner()
        .map_err(|e| io_error(path)(e.into_error()))?
        .sync_all()
        .map_err(io_error(path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, KbError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| KbError::Index(format!("{} is unreadable: {e}", path.display())))
}

/// Opens a complete generation directory.
fn open_generation(dir: &Path, tenant: TenantId) -> Result<TenantIndex, KbError> {
    let manifest: Manifest = read_json(&dir.join("manifest.json"))?;
    if manifest.format != FORMAT || manifest.tenant != tenant.to_string() {
        return Err(KbError::Index(format!(
            "{} belongs to another tenant or format",
            dir.display()
        )));
    }
    let chunks: Vec<Chunk> = read_json(&dir.join("chunks.json"))?;
    let lexical = LexicalIndex::open(&dir.join("tantivy"))?;
    let dense = match manifest.embedder {
        Some(_) => Some(DenseIndex::read(&dir.join("dense.bin"))?),
        None => None,
    };
    let kinds = chunks.iter().map(|c| Box::from(c.kind.as_str())).collect();
    let index = SearchIndex::new(lexical, dense, kinds)?;
    if chunks.len() != manifest.chunks || index.len() != chunks.len() {
        return Err(KbError::Index(format!(
            "{} holds {} chunks, its manifest says {}",
            dir.display(),
            chunks.len(),
            manifest.chunks
        )));
    }
    Ok(TenantIndex {
        revision: manifest.revision,
        embedder: manifest.embedder,
        chunks,
        index,
    })
}

/// What a build needs, gathered on the async side.
struct BuildInput {
    root: PathBuf,
    tenant: TenantId,
    revision: i64,
    records: Vec<KbRecord>,
    embedder: Option<Arc<dyn Embedder>>,
    previous: Option<Arc<TenantIndex>>,
    vector_cache: Option<PathBuf>,
}

/// What gets embedded for each chunk, in index order: the chunk's text as
/// a passage, then each question variant as a query (e5's prefix for text
/// compared with text of the same kind).
fn vector_texts(chunks: &[Chunk]) -> Vec<(u32, EmbedRole, &str)> {
    let mut out = Vec::new();
    for (ord, chunk) in chunks.iter().enumerate() {
        out.push((ord as u32, EmbedRole::Passage, chunk.text.as_str()));
        for question in &chunk.questions {
            out.push((ord as u32, EmbedRole::Query, question.as_str()));
        }
    }
    out
}

fn vector_key(role: EmbedRole, text: &str) -> [u8; 32] {
    let role = match role {
        EmbedRole::Query => "q",
        EmbedRole::Passage => "p",
    };
    text_hash(&format!("{role}:{text}"))
}

/// Vectors for `chunks`, reusing `previous` ones for unchanged texts.
fn embed_chunks(
    embedder: &dyn Embedder,
    chunks: &[Chunk],
    previous: Option<&TenantIndex>,
) -> Result<DenseIndex, KbError> {
    let dim = embedder.dim();
    let mut known: HashMap<[u8; 32], &[f32]> = HashMap::new();
    if let Some(prev) = previous.filter(|p| p.embedder.as_deref() == Some(embedder.model_id())) {
        if let Some(dense) = prev.index.dense().filter(|d| d.dim() == dim) {
            let texts = vector_texts(&prev.chunks);
            if texts.len() == dense.vector_count() {
                for (i, (_, role, text)) in texts.into_iter().enumerate() {
                    known.insert(vector_key(role, text), dense.vector(i));
                }
            }
        }
    }
    let texts = vector_texts(chunks);
    let mut vectors = vec![0f32; texts.len() * dim];
    let mut missing: Vec<usize> = Vec::new();
    for (i, (_, role, text)) in texts.iter().enumerate() {
        match known.get(&vector_key(*role, text)) {
            Some(v) => vectors[i * dim..(i + 1) * dim].copy_from_slice(v),
            None => missing.push(i),
        }
    }
    for role in [EmbedRole::Passage, EmbedRole::Query] {
        let of_role: Vec<usize> = missing
            .iter()
            .copied()
            .filter(|&i| texts[i].1 == role)
            .collect();
        for batch in of_role.chunks(EMBED_BATCH) {
            let inputs: Vec<&str> = batch.iter().map(|&i| texts[i].2).collect();
            let embedded = embedder.embed(&inputs, role)?;
            for (&i, vector) in batch.iter().zip(embedded) {
                if vector.len() != dim {
                    return Err(KbError::Embedding(format!(
                        "model returned {} values, expected {dim}",
                        vector.len()
                    )));
                }
                vectors[i * dim..(i + 1) * dim].copy_from_slice(&vector);
            }
        }
    }
    tracing::debug!(
        chunks = chunks.len(),
        vectors = texts.len(),
        embedded = missing.len(),
        "kb vectors ready"
    );
    let owners = texts.iter().map(|(owner, _, _)| *owner).collect();
    DenseIndex::with_owners(dim, vectors, owners, chunks.len())
}

/// Builds (or finds on disk) the generation for `input.revision`.
fn build(input: BuildInput) -> Result<TenantIndex, KbError> {
    let tag = generation_tag(input.embedder.as_deref());
    let final_dir = input.root.join(generation_name(input.revision, &tag));
    if final_dir.is_dir() {
        match open_generation(&final_dir, input.tenant) {
            Ok(index) => return Ok(index),
            Err(err) => {
                tracing::warn!(dir = %final_dir.display(), error = %err, "discarding unreadable kb index");
                let _ = std::fs::remove_dir_all(&final_dir);
            }
        }
    }
    let entries = input
        .records
        .iter()
        .map(|r| KbEntry::from_document(&r.document))
        .collect::<Result<Vec<_>, _>>()?;
    let chunks: Vec<Chunk> = entries.iter().flat_map(chunks).collect();
    let dense = input
        .embedder
        .as_ref()
        .map(|e| {
            let shared = input.vector_cache.as_deref().and_then(|dir| {
                SharedVectors::open(e.clone(), dir)
                    .inspect_err(|err| {
                        tracing::warn!(error = %err, "kb vectors are embedded without the shared cache")
                    })
                    .ok()
            });
            let embedder: &dyn Embedder = match &shared {
                Some(shared) => shared,
                None => e.as_ref(),
            };
            embed_chunks(embedder, &chunks, input.previous.as_deref())
        })
        .transpose()?;

    std::fs::create_dir_all(&input.root).map_err(io_error(&input.root))?;
    let tmp = input
        .root
        .join(format!(".tmp-{}", uuid::Uuid::now_v7().simple()));
    let result = (|| {
        let tantivy_dir = tmp.join("tantivy");
        std::fs::create_dir_all(&tantivy_dir).map_err(io_error(&tantivy_dir))?;
        let docs: Vec<IndexDoc<'_>> = chunks
            .iter()
            .map(|c| IndexDoc {
                text: &c.text,
                lang: &c.lang,
                kind: c.kind.as_str(),
            })
            .collect();
        drop(LexicalIndex::build(Some(&tantivy_dir), &docs)?);
        if let Some(dense) = &dense {
            dense.write(&tmp.join("dense.bin"))?;
        }
        write_json(&tmp.join("chunks.json"), &chunks)?;
        write_json(
            &tmp.join("manifest.json"),
            &Manifest {
                format: FORMAT,
                tenant: input.tenant.to_string(),
                revision: input.revision,
                embedder: input.embedder.as_ref().map(|e| e.model_id().to_owned()),
                chunks: chunks.len(),
            },
        )?;
        match std::fs::rename(&tmp, &final_dir) {
            Ok(()) => Ok(()),
            // Another process finished the same generation first.
            Err(_) if final_dir.is_dir() => Ok(()),
            Err(err) => Err(io_error(&final_dir)(err)),
        }
    })();
    if tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result?;
    let index = open_generation(&final_dir, input.tenant)?;
    remove_other_generations(&input.root, &final_dir, input.revision);
    tracing::info!(
        tenant = %input.tenant,
        revision = input.revision,
        chunks = index.chunks.len(),
        "kb index built"
    );
    Ok(index)
}

/// Deletes generations older than `keep` (whatever their model) and build
/// leftovers more than an hour old (younger ones may be another process's
/// build in progress). Generations of the same revision for another model
/// stay: another process may be using them.
fn remove_other_generations(root: &Path, keep: &Path, revision: i64) {
    let Ok(dir) = std::fs::read_dir(root) else {
        return;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        if path == keep {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let older = name
            .strip_prefix('r')
            .and_then(|rest| rest.split('-').next())
            .and_then(|r| r.parse::<i64>().ok())
            .is_some_and(|r| r < revision);
        let abandoned = name.starts_with(".tmp-")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
        if older || abandoned {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The variants of a product hit whose option values the query names most.
fn matched_variants(query: &str, chunk: &Chunk) -> Vec<String> {
    if chunk.kind != KbKind::Product {
        return Vec::new();
    }
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let query_lower = query.to_lowercase();
    let names = |value: &str| {
        let value = value.to_lowercase();
        if value.contains(|c: char| !c.is_alphanumeric()) {
            query_lower.contains(&value)
        } else {
            words.contains(&value)
        }
    };
    let Some(variants) = chunk.fields["variants"].as_array() else {
        return Vec::new();
    };
    let scored: Vec<(usize, String)> = variants
        .iter()
        .filter_map(|v| {
            let options = v["options"].as_object()?;
            let hits = options
                .values()
                .filter_map(|o| o.as_str())
                .filter(|o| names(o))
                .count();
            Some((hits, v["sku"].as_str()?.to_owned()))
        })
        .collect();
    let best = scored.iter().map(|(n, _)| *n).max().unwrap_or(0);
    if best == 0 {
        return Vec::new();
    }
    scored
        .into_iter()
        .filter(|(n, _)| *n == best)
        .map(|(_, sku)| sku)
        .collect()
}

type Locks = HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>;

pub struct KbService {
    store: Arc<dyn KbStore>,
    /// Set later when the embedding model arrives after start-up.
    embedder: std::sync::RwLock<Option<Arc<dyn Embedder>>>,
    root: PathBuf,
    indexes: Mutex<HashMap<TenantId, Arc<TenantIndex>>>,
    locks: Mutex<Locks>,
    /// Where the vectors of entries' texts are shared ([`SharedVectors`]).
    vector_cache: Option<PathBuf>,
}

impl KbService {
    /// The store the entries are kept in.
    pub fn entries(&self) -> &dyn KbStore {
        self.store.as_ref()
    }

    /// `root` holds one directory per tenant; without an embedder the
    /// service runs on BM25 alone.
    pub fn new(
        store: Arc<dyn KbStore>,
        embedder: Option<Arc<dyn Embedder>>,
        root: PathBuf,
    ) -> KbService {
        KbService {
            store,
            embedder: std::sync::RwLock::new(embedder),
            root,
            indexes: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            vector_cache: None,
        }
    }

    /// Keeps the vectors of entries' texts in `dir` (the model cache's
    /// embedding files), so indexes of the same texts elsewhere on this
    /// machine reuse them.
    pub fn with_vector_cache(mut self, dir: PathBuf) -> KbService {
        self.vector_cache = Some(dir);
        self
    }

    pub fn has_embedder(&self) -> bool {
        self.embedder().is_some()
    }

    /// The embedder in use, if any (knowledge gaps are grouped with it).
    pub fn embedder(&self) -> Option<Arc<dyn Embedder>> {
        self.embedder
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Gives the service an embedder once the embedding model is ready
    /// (it started without one): indexes built for BM25 alone are rebuilt
    /// with vectors before their next search.
    pub fn set_embedder(&self, embedder: Arc<dyn Embedder>) {
        *self.embedder.write().unwrap_or_else(|e| e.into_inner()) = Some(embedder);
    }

    /// Whether `index` was built with the embedder in use now.
    fn fits(&self, index: &TenantIndex) -> bool {
        index.embedder.as_deref() == self.embedder().as_ref().map(|e| e.model_id())
    }

    fn tenant_root(&self, tenant: TenantId) -> PathBuf {
        self.root.join(tenant.to_string())
    }

    fn cached(&self, tenant: TenantId) -> Option<Arc<TenantIndex>> {
        self.indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant)
            .cloned()
    }

    fn tenant_lock(&self, tenant: TenantId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tenant)
            .or_default()
            .clone()
    }

    /// The tenant's index at the store's current revision, building it
    /// first when it is missing, stale or unreadable.
    pub async fn current(&self, tenant: TenantId) -> Result<Arc<TenantIndex>, KbError> {
        let revision = self.store.kb_revision(tenant).await?;
        if let Some(index) = self
            .cached(tenant)
            .filter(|i| i.revision == revision && self.fits(i))
        {
            return Ok(index);
        }
        let lock = self.tenant_lock(tenant);
        let _guard = lock.lock().await;
        let snapshot = self.store.kb_snapshot(tenant).await?;
        if let Some(index) = self
            .cached(tenant)
            .filter(|i| i.revision == snapshot.revision && self.fits(i))
        {
            return Ok(index);
        }
        let input = BuildInput {
            root: self.tenant_root(tenant),
            tenant,
            revision: snapshot.revision,
            records: snapshot.records,
            embedder: self.embedder(),
            previous: self.cached(tenant),
            vector_cache: self.vector_cache.clone(),
        };
        let index = Arc::new(blocking(move || build(input)).await?);
        self.indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant, index.clone());
        Ok(index)
    }

    /// Searches one tenant's knowledge base.
    pub async fn search(
        &self,
        tenant: TenantId,
        query: &KbQuery,
    ) -> Result<SearchResults, KbError> {
        let index = self.current(tenant).await?;
        // The index's own embedder: one set a moment ago is used once the
        // index has been rebuilt with it.
        let embedder = self
            .embedder()
            .filter(|e| index.embedder.as_deref() == Some(e.model_id()));
        let (mode, degraded) = match (query.mode, &embedder) {
            (SearchMode::Dense, None) => return Err(KbError::DenseUnavailable),
            (SearchMode::Hybrid, None) => (
                SearchMode::Bm25,
                Some("the embedding model is not loaded: BM25 only".to_owned()),
            ),
            (mode, _) => (mode, None),
        };
        let embedder = embedder.filter(|_| mode != SearchMode::Bm25);
        let query = query.clone();
        blocking_for(tenant, move || {
            let vector = match &embedder {
                Some(e) => e
                    .embed(&[query.text.as_str()], EmbedRole::Query)?
                    .pop()
                    .ok_or_else(|| KbError::Embedding("no vector for the query".into()))?,
                None => Vec::new(),
            };
            let kinds: Option<Vec<&str>> = query
                .kinds
                .as_ref()
                .map(|k| k.iter().map(|k| k.as_str()).collect());
            let hits = index.index.search(&SearchParams {
                text: &query.text,
                vector: embedder.as_ref().map(|_| vector.as_slice()),
                mode,
                top_k: query.top_k,
                kinds: kinds.as_deref(),
            })?;
            let hits = hits
                .into_iter()
                .map(|hit| search_hit(&index.chunks, hit, &query.text))
                .collect();
            Ok(SearchResults {
                mode,
                degraded,
                revision: index.revision,
                hits,
            })
        })
        .await
    }

    /// Stores `entries` all together or not at all (a kb folder import).
    pub async fn import(
        &self,
        tenant: TenantId,
        entries: &[KbEntry],
        actor: &str,
    ) -> Result<KbApplied, KbError> {
        let mut seen = std::collections::HashSet::new();
        for entry in entries {
            if !seen.insert((entry.kind(), entry.id())) {
                return Err(KbError::InvalidEntry(format!(
                    "duplicate {} id {:?}",
                    entry.kind(),
                    entry.id()
                )));
            }
        }
        let changes: Vec<KbChange> = entries
            .iter()
            .map(|e| KbChange::Put(e.to_document()))
            .collect();
        Ok(self.store.kb_apply(tenant, &changes, actor).await?)
    }

    /// Creates or replaces one entry.
    pub async fn put(
        &self,
        tenant: TenantId,
        entry: &KbEntry,
        actor: &str,
    ) -> Result<(KbApplied, KbRecord), KbError> {
        let applied = self
            .store
            .kb_apply(tenant, &[KbChange::Put(entry.to_document())], actor)
            .await?;
        let record = self.get(tenant, entry.kind(), &entry.id()).await?;
        Ok((applied, record))
    }

    pub async fn delete(
        &self,
        tenant: TenantId,
        kind: KbKind,
        id: &str,
        actor: &str,
    ) -> Result<KbApplied, KbError> {
        let change = KbChange::Delete {
            kind,
            id: id.to_owned(),
        };
        Ok(self.store.kb_apply(tenant, &[change], actor).await?)
    }

    pub async fn get(&self, tenant: TenantId, kind: KbKind, id: &str) -> Result<KbRecord, KbError> {
        self.store
            .kb_get(tenant, kind, id)
            .await?
            .ok_or_else(|| KbError::NotFound {
                what: format!("{kind} entry {id:?}"),
            })
    }

    pub async fn list(
        &self,
        tenant: TenantId,
        kind: Option<KbKind>,
    ) -> Result<Vec<KbRecord>, KbError> {
        Ok(self.store.kb_list(tenant, kind).await?)
    }

    pub async fn history(
        &self,
        tenant: TenantId,
        kind: KbKind,
        id: &str,
    ) -> Result<Vec<KbVersion>, KbError> {
        let versions = self.store.kb_history(tenant, kind, id).await?;
        if versions.is_empty() {
            return Err(KbError::NotFound {
                what: format!("{kind} entry {id:?}"),
            });
        }
        Ok(versions)
    }

    pub async fn revision(&self, tenant: TenantId) -> Result<i64, KbError> {
        Ok(self.store.kb_revision(tenant).await?)
    }
}

/// One query's best hit in the knowledge base as it is and as it would
/// be with a trial entry (see [`KbService::trial`]).
#[derive(Debug, Clone)]
pub struct TrialHit {
    pub before: Option<SearchHit>,
    pub after: Option<SearchHit>,
}

impl KbService {
    /// The best hit of each of `queries` (hybrid ranking, as replies
    /// search) in the tenant's knowledge base as it is and as it would be
    /// with `entry` added (replacing the entry of the same kind and id),
    /// without writing anything: the trial index is built in memory and
    /// reuses the vectors of the index in use, so only `entry`'s texts and
    /// the queries are embedded. Needs the embedding model.
    pub async fn trial(
        &self,
        tenant: TenantId,
        entry: &KbEntry,
        queries: Vec<String>,
    ) -> Result<Vec<TrialHit>, KbError> {
        let index = self.current(tenant).await?;
        let embedder = self
            .embedder()
            .filter(|e| index.embedder.as_deref() == Some(e.model_id()))
            .ok_or(KbError::DenseUnavailable)?;
        let added = chunks(entry);
        let (kind, id) = (entry.kind(), entry.id());
        blocking_for(tenant, move || {
            let mut all: Vec<Chunk> = index
                .chunks
                .iter()
                .filter(|c| !(c.kind == kind && c.entry_id == id))
                .cloned()
                .collect();
            all.extend(added);
            let dense = embed_chunks(embedder.as_ref(), &all, Some(&index))?;
            let docs: Vec<IndexDoc<'_>> = all
                .iter()
                .map(|c| IndexDoc {
                    text: &c.text,
                    lang: &c.lang,
                    kind: c.kind.as_str(),
                })
                .collect();
            let with = SearchIndex::build_in_memory(&docs, Some(dense))?;
            let mut out = Vec::with_capacity(queries.len());
            for batch in queries.chunks(EMBED_BATCH) {
                let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
                let vectors = embedder.embed(&texts, EmbedRole::Query)?;
                for (text, vector) in texts.iter().zip(&vectors) {
                    let params = SearchParams {
                        text,
                        vector: Some(vector),
                        mode: SearchMode::Hybrid,
                        top_k: 1,
                        kinds: None,
                    };
                    let before = index.index.search(&params)?.into_iter().next();
                    let after = with.search(&params)?.into_iter().next();
                    out.push(TrialHit {
                        before: before.map(|h| search_hit(&index.chunks, h, text)),
                        after: after.map(|h| search_hit(&all, h, text)),
                    });
                }
            }
            Ok(out)
        })
        .await
    }
}

/// A ranked document as a search hit.
fn search_hit(chunks: &[Chunk], hit: FusedHit, query: &str) -> SearchHit {
    let chunk = &chunks[hit.ord as usize];
    SearchHit {
        kind: chunk.kind,
        id: chunk.entry_id.clone(),
        section: chunk.section.clone(),
        title: chunk.title.clone(),
        lang: chunk.lang.clone(),
        text: chunk.text.clone(),
        score: hit.score,
        bm25: hit.bm25,
        dense: hit.dense,
        fields: chunk.fields.clone(),
        matched_variants: matched_variants(query, chunk),
    }
}

/// [`blocking`] in `tenant`'s cache scope: the query-vector cache it may
/// consult is that tenant's alone (see `engine::scope`).
async fn blocking_for<T: Send + 'static>(
    tenant: TenantId,
    work: impl FnOnce() -> Result<T, KbError> + Send + 'static,
) -> Result<T, KbError> {
    let scope = crate::engine::scope::pipeline(tenant.0.as_u128());
    blocking(move || crate::engine::scope::run_in(scope, work)).await
}

/// Runs CPU-heavy work (model forward passes, Tantivy) off the async
/// worker threads, keeping the caller's tracing span.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, KbError> + Send + 'static,
) -> Result<T, KbError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(|e| KbError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_are_bounded() {
        let err = |text: &str, top_k| {
            KbQuery::parse(text, top_k, None, None)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err("  ", None), "query must not be empty");
        assert_eq!(
            err(&"a".repeat(10_000), None),
            "query must be at most 1000 characters, got 10000"
        );
        assert_eq!(
            err("hi", Some(80)),
            "top_k must be between 1 and 50, got 80"
        );
        let q = KbQuery::parse(" hi ", None, None, None).unwrap();
        assert_eq!((q.text(), q.top_k, q.mode), ("hi", 5, SearchMode::Hybrid));
    }

    /// Counts the texts it embeds.
    struct Counting(crate::kb::HashingEmbedder, std::sync::atomic::AtomicUsize);

    impl Embedder for Counting {
        fn model_id(&self) -> &str {
            self.0.model_id()
        }
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn embed(&self, texts: &[&str], role: EmbedRole) -> Result<Vec<Vec<f32>>, KbError> {
            self.1
                .fetch_add(texts.len(), std::sync::atomic::Ordering::SeqCst);
            self.0.embed(texts, role)
        }
    }

    #[tokio::test]
    async fn an_edit_embeds_only_what_changed() {
        use crate::store::{SqliteStore, TenantStore};
        let dir = tempfile::TempDir::new().unwrap();
        let mut settings = crate::config::Settings::defaults().store;
        settings.data_dir = dir.path().to_path_buf();
        let store = SqliteStore::open(&settings, crate::store::Schema::Migrate)
            .await
            .unwrap();
        let tenant = store
            .create_tenant(&crate::domain::TenantName::parse("t").unwrap())
            .await
            .unwrap()
            .id;
        let embedder = Arc::new(Counting(
            crate::kb::HashingEmbedder::new(64),
            Default::default(),
        ));
        let service = KbService::new(
            Arc::new(store),
            Some(embedder.clone()),
            dir.path().join("kb"),
        );
        let faq = |id: &str, answer: &str| {
            KbEntry::from_json(
                KbKind::Faq,
                json!({"id": id, "questions": ["q one?", "q two?"], "answer": answer, "lang": "en"}),
            )
            .unwrap()
        };
        service
            .import(tenant, &[faq("a", "first"), faq("b", "second")], "t")
            .await
            .unwrap();
        service.current(tenant).await.unwrap();
        let count = || embedder.1.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(count(), 6, "two passages, four questions");
        service
            .put(tenant, &faq("b", "changed"), "t")
            .await
            .unwrap();
        let index = service.current(tenant).await.unwrap();
        assert_eq!(count(), 7, "only b's passage changed");
        assert_eq!(index.revision, 2);
        let q = KbQuery::parse("changed", None, Some(SearchMode::Dense), None).unwrap();
        let hits = service.search(tenant, &q).await.unwrap().hits;
        assert_eq!(hits[0].id, "b");
    }

    #[test]
    fn variants_named_by_the_query_are_picked_out() {
        let entry = KbEntry::from_json(
            KbKind::Product,
            json!({"sku": "TEE-1", "name": "Tee", "price": 5.0, "currency": "USD", "lang": "en",
                   "variants": [
                       {"sku": "TEE-1-RED-XL", "options": {"colour": "red", "size": "XL"}, "stock": 0},
                       {"sku": "TEE-1-RED-M", "options": {"colour": "red", "size": "M"}, "stock": 4},
                       {"sku": "TEE-1-BLUE-XL", "options": {"colour": "blue", "size": "XL"}, "stock": 2}]}),
        )
        .unwrap();
        let chunk = &chunks(&entry)[0];
        assert_eq!(
            matched_variants("is the red one in XL in stock?", chunk),
            ["TEE-1-RED-XL"]
        );
        assert_eq!(
            matched_variants("any red?", chunk),
            ["TEE-1-RED-XL", "TEE-1-RED-M"]
        );
        assert!(matched_variants("how much?", chunk).is_empty());
    }
}
