//! The one seam between understanding and the embedding model: the
//! [`QueryEmbedder`] trait, its implementation for the real
//! [`TextEmbedder`], [`PooledQueries`] (the same model pooling other layers,
//! under a model id that says which), and [`CachedEmbedder`], which keeps
//! vectors on disk keyed by model id and text so that re-running an
//! evaluation or retraining on the same exemplars does not run the model
//! again.
//!
//! Nothing here knows what the vectors are used for.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::UnderstandError;
use crate::inference::{EmbedRole, Pooling, TextEmbedder};

/// Turns buyer messages (and exemplars, which are buyer messages too) into
/// unit-length vectors. Implemented by the real model and, in tests, by
/// cheap deterministic fakes.
pub trait QueryEmbedder: Send + Sync {
    /// Identifies the model, so cached vectors of one model never stand in
    /// for another's.
    fn model_id(&self) -> &str;

    /// One vector per text, in order. Texts must not be empty.
    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError>;
}

impl QueryEmbedder for TextEmbedder {
    fn model_id(&self) -> &str {
        TextEmbedder::model_id(self)
    }

    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
        Ok(self.embed(texts, EmbedRole::Query)?.into_vectors())
    }
}

/// A [`TextEmbedder`] whose query vectors are pooled as a [`Pooling`] says
/// (means of several layers, the final layer's maximum) instead of the
/// sentence embedding. Its model id names the pooling, so the vectors of
/// different poolings never share a cache file and a head trained on one
/// refuses another.
pub struct PooledQueries {
    embedder: TextEmbedder,
    pooling: Pooling,
    id: String,
}

impl PooledQueries {
    /// Fails when the model has no such layers or cannot pool them.
    pub fn new(embedder: TextEmbedder, pooling: Pooling) -> Result<PooledQueries, UnderstandError> {
        embedder.embed_pooled(&["pooling probe"], EmbedRole::Query, &pooling)?;
        let id = pooled_model_id(embedder.model_id(), &pooling, embedder.layers());
        Ok(PooledQueries {
            embedder,
            pooling,
            id,
        })
    }
}

/// The model id of `model`'s vectors pooled as `pooling`: the plain id for
/// the final layer's mean (the sentence embedding), else the id with the
/// pooling after `#layers=`.
pub fn pooled_model_id(model: &str, pooling: &Pooling, layers: usize) -> String {
    if pooling.is_final_mean(layers) {
        model.to_owned()
    } else {
        format!("{model}#layers={pooling}")
    }
}

impl QueryEmbedder for PooledQueries {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
        Ok(self
            .embedder
            .embed_pooled(texts, EmbedRole::Query, &self.pooling)?
            .into_vectors())
    }
}

const MAGIC: &[u8; 4] = b"KEQ1";
type Key = [u8; 32];
/// The dimension (unknown for a new file) and the vectors of a cache file.
type CacheContents = (Option<usize>, HashMap<Key, Vec<f32>>);

/// Texts are embedded in chunks of this many, each appended to the cache
/// file as soon as it is done, so an interrupted run keeps its work.
const CHUNK: usize = 256;

/// A [`QueryEmbedder`] in front of another, remembering every vector in an
/// append-only file: a header (`KEQ1`, u32 dimension) then records of a
/// 32-byte sha256 of the text followed by the vector as little-endian f32.
/// A torn last record (a crash mid-write) is ignored on open.
pub struct CachedEmbedder<E> {
    inner: E,
    path: PathBuf,
    state: Mutex<CacheState>,
}

struct CacheState {
    dim: Option<usize>,
    vectors: HashMap<Key, Vec<f32>>,
}

impl<E: QueryEmbedder> CachedEmbedder<E> {
    /// Opens (or prepares to create) the cache for `inner`'s model under
    /// `dir`, one file per model id.
    pub fn open(inner: E, dir: &Path) -> Result<CachedEmbedder<E>, UnderstandError> {
        CachedEmbedder::open_kind(inner, dir, "queries")
    }

    /// As [`CachedEmbedder::open`], for vectors of another kind of text
    /// (`passages`): one file per model id and kind.
    pub fn open_kind(
        inner: E,
        dir: &Path,
        kind: &str,
    ) -> Result<CachedEmbedder<E>, UnderstandError> {
        let name: String = inner
            .model_id()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{name}.{kind}.bin"));
        let (dim, vectors) = read_cache(&path)?;
        Ok(CachedEmbedder {
            inner,
            path,
            state: Mutex::new(CacheState { dim, vectors }),
        })
    }

    /// The file the vectors live in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many vectors the cache holds.
    pub fn len(&self) -> usize {
        self.lock().vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Embeds `texts`, running the model only on those not cached, and
    /// calls `progress(done, to_embed)` after each chunk.
    pub fn embed_with_progress(
        &self,
        texts: &[&str],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>, UnderstandError> {
        let keys: Vec<Key> = texts.iter().map(|t| key(t)).collect();
        let mut missing: Vec<usize> = {
            let state = self.lock();
            (0..texts.len())
                .filter(|&i| !state.vectors.contains_key(&keys[i]))
                .collect()
        };
        let mut seen = std::collections::HashSet::new();
        missing.retain(|&i| seen.insert(keys[i]));
        let total = missing.len();
        let mut done = 0;
        for chunk in missing.chunks(CHUNK) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let vectors = self.inner.embed_queries(&batch)?;
            if vectors.len() != batch.len() {
                return Err(UnderstandError::Invalid(format!(
                    "the embedder returned {} vectors for {} texts",
                    vectors.len(),
                    batch.len()
                )));
            }
            let chunk_keys: Vec<Key> = chunk.iter().map(|&i| keys[i]).collect();
            self.append(&chunk_keys, &vectors)?;
            done += chunk.len();
            progress(done, total);
        }
        let state = self.lock();
        Ok(keys
            .iter()
            .map(|k| state.vectors.get(k).cloned().unwrap_or_default())
            .collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one chunk of records. Servers, replicas and commands share
    /// the cache directory, so the file is locked for the append and the
    /// chunk goes out in one write: records of two processes never
    /// interleave, and a header is written only to an empty file.
    fn append(&self, keys: &[Key], vectors: &[Vec<f32>]) -> Result<(), UnderstandError> {
        let io = |source| UnderstandError::Cache {
            path: self.path.clone(),
            source,
        };
        let mut state = self.lock();
        let dim = vectors.first().map_or(0, Vec::len);
        if let Some(known) = state.dim {
            if known != dim {
                return Err(self.dim_changed(known, dim));
            }
        }
        if let Some(parent) = self.path.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        let mut out = Vec::with_capacity(8 + keys.len() * (32 + 4 * dim));
        match header_of(&mut file).map_err(io)? {
            None => {
                out.extend_from_slice(MAGIC);
                out.extend_from_slice(&(dim as u32).to_le_bytes());
            }
            Some(Err(())) => return Err(not_a_cache(&self.path)),
            Some(Ok(on_disk)) if on_disk != dim => return Err(self.dim_changed(on_disk, dim)),
            Some(Ok(_)) => {
                // Another process may have died mid-record: cut its torn
                // tail so this chunk starts on a record boundary.
                let len = file.metadata().map_err(io)?.len();
                let record = (32 + 4 * dim) as u64;
                let whole = 8 + (len - 8) / record * record;
                if whole != len {
                    file.set_len(whole).map_err(io)?;
                }
            }
        }
        state.dim = Some(dim);
        for (k, v) in keys.iter().zip(vectors) {
            out.extend_from_slice(k);
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
            state.vectors.insert(*k, v.clone());
        }
        file.write_all(&out).map_err(io)?;
        file.flush().map_err(io)
        // The lock goes with the file.
    }

    fn dim_changed(&self, known: usize, dim: usize) -> UnderstandError {
        UnderstandError::Invalid(format!(
            "embedding dimension changed from {known} to {dim} for {}",
            self.path.display()
        ))
    }
}

/// The dimension in `file`'s header: `None` for an empty file, `Err` for
/// one that is not a cache.
fn header_of(file: &mut File) -> std::io::Result<Option<Result<usize, ()>>> {
    use std::io::{Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(None);
    }
    let mut header = [0u8; 8];
    file.seek(SeekFrom::Start(0))?;
    let read = file.read(&mut header)?;
    if read < 8 || &header[..4] != MAGIC {
        return Ok(Some(Err(())));
    }
    Ok(Some(Ok(
        u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize,
    )))
}

fn not_a_cache(path: &Path) -> UnderstandError {
    UnderstandError::Invalid(format!(
        "{} is not an embedding cache (delete it to start afresh)",
        path.display()
    ))
}

impl<E: QueryEmbedder> QueryEmbedder for CachedEmbedder<E> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
        self.embed_with_progress(texts, &mut |_, _| {})
    }
}

fn key(text: &str) -> Key {
    Sha256::digest(text.as_bytes()).into()
}

fn read_cache(path: &Path) -> Result<CacheContents, UnderstandError> {
    let io = |source| UnderstandError::Cache {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, HashMap::new())),
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::new();
    BufReader::new(file).read_to_end(&mut bytes).map_err(io)?;
    if bytes.is_empty() {
        // Created by another process that has not written its first chunk.
        return Ok((None, HashMap::new()));
    }
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(not_a_cache(path));
    }
    let dim = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let record = 32 + 4 * dim;
    // A torn tail (a writer that died mid-record, or one still writing) is
    // left alone here; the next append cuts it under the file's lock.
    let whole = (bytes.len() - 8) / record * record;
    let mut vectors = HashMap::new();
    for rec in bytes[8..8 + whole].chunks_exact(record) {
        let mut k = [0u8; 32];
        k.copy_from_slice(&rec[..32]);
        let v = rec[32..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        vectors.insert(k, v);
    }
    Ok((Some(dim), vectors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);

    impl QueryEmbedder for Counting {
        fn model_id(&self) -> &str {
            "fake/counting"
        }
        fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
            self.0.fetch_add(texts.len(), Ordering::SeqCst);
            Ok(texts.iter().map(|t| vec![t.len() as f32, 1.0]).collect())
        }
    }

    #[test]
    fn cached_vectors_survive_reopening_and_are_not_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CachedEmbedder::open(Counting(AtomicUsize::new(0)), dir.path()).unwrap();
        let first = cache.embed_queries(&["ab", "abc", "ab"]).unwrap();
        assert_eq!(first, vec![vec![2.0, 1.0], vec![3.0, 1.0], vec![2.0, 1.0]]);
        assert_eq!(
            cache.inner.0.load(Ordering::SeqCst),
            2,
            "duplicates embed once"
        );

        let reopened = CachedEmbedder::open(Counting(AtomicUsize::new(0)), dir.path()).unwrap();
        assert_eq!(reopened.len(), 2);
        let again = reopened.embed_queries(&["abc", "abcd"]).unwrap();
        assert_eq!(again, vec![vec![3.0, 1.0], vec![4.0, 1.0]]);
        assert_eq!(reopened.inner.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_torn_last_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CachedEmbedder::open(Counting(AtomicUsize::new(0)), dir.path()).unwrap();
        cache.embed_queries(&["one", "three"]).unwrap();
        let path = cache.path().to_path_buf();
        let len = fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        let reopened = CachedEmbedder::open(Counting(AtomicUsize::new(0)), dir.path()).unwrap();
        assert_eq!(reopened.len(), 1);
        reopened.embed_queries(&["three", "fours"]).unwrap();
        let third = CachedEmbedder::open(Counting(AtomicUsize::new(0)), dir.path()).unwrap();
        assert_eq!(third.len(), 3, "appends after a torn record stay readable");
    }

    #[test]
    fn a_foreign_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("fake_counting.queries.bin"), b"not a cache").unwrap();
        let err = CachedEmbedder::open(Counting(AtomicUsize::new(0)), dir.path())
            .err()
            .expect("rejected");
        assert!(err.to_string().contains("not an embedding cache"), "{err}");
    }

    /// A wide vector (dimension 384, like e5-small), so one chunk is many
    /// buffered writes' worth of bytes.
    struct Wide;

    impl QueryEmbedder for Wide {
        fn model_id(&self) -> &str {
            "fake/wide"
        }
        fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
            Ok(texts.iter().map(|t| wide(t)).collect())
        }
    }

    fn wide(text: &str) -> Vec<f32> {
        let seed = text
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
        (0..384)
            .map(|i| (seed.wrapping_add(i) % 1000) as f32)
            .collect()
    }

    #[test]
    fn processes_sharing_the_cache_never_interleave_their_records() {
        let dir = tempfile::tempdir().unwrap();
        // Each writer opened the cache before any file existed, as two
        // servers starting at once on a fresh machine do.
        let writers: Vec<CachedEmbedder<Wide>> = (0..4)
            .map(|_| CachedEmbedder::open(Wide, dir.path()).unwrap())
            .collect();
        std::thread::scope(|scope| {
            for (w, cache) in writers.iter().enumerate() {
                scope.spawn(move || {
                    let texts: Vec<String> = (0..600).map(|i| format!("w{w} text {i}")).collect();
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    cache.embed_queries(&refs).unwrap();
                });
            }
        });
        let reopened = CachedEmbedder::open(Wide, dir.path()).unwrap();
        assert_eq!(reopened.len(), 4 * 600, "every record of every writer");
        let state = reopened.lock();
        for w in 0..4 {
            for i in 0..600 {
                let text = format!("w{w} text {i}");
                assert_eq!(state.vectors.get(&key(&text)), Some(&wide(&text)), "{text}");
            }
        }
    }
}
