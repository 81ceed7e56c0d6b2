//! [`EngineEmbedder`]: the runtime's embedding model behind the knowledge
//! base's [`Embedder`] trait, with the last query vectors remembered per
//! tenant. It knows nothing of the pipeline's decisions.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::engine::{scope, EmbedAs, Engine, EngineError, Lane, ModelKind, ModelState, Role};
use crate::inference::{EmbedRole, EmbedTask};
use crate::kb::{Embedder, KbError};

/// The runtime's embedding model behind the knowledge base's (and so the
/// understand stage's) [`Embedder`] trait: one copy of the model in memory,
/// every forward pass batched and admitted by the runtime in the pipeline's
/// lanes (queries as [`Lane::Reply`], passages as [`Lane::FollowUp`]).
/// Calls block the calling thread (a blocking-pool or plain thread, never
/// an async one) until the runtime answers, waiting while the model loads
/// or is busy.
pub struct EngineEmbedder {
    engine: Engine,
    /// The model's name, as the runtime knows it.
    model: String,
    /// The prompt task queries are embedded under.
    task: EmbedTask,
    /// The model and task, naming the vectors (see [`Engine::vector_id`]).
    vector_id: String,
    handle: tokio::runtime::Handle,
    recent: Mutex<RecentQueries>,
}

/// Query vectors embedded lately. A message is embedded by the understand
/// stage and searched by the knowledge base right after, and it comes back
/// as history with the buyer's next message: each time the same text gets
/// the same vector, so it is computed once. Entries are keyed by cache
/// scope as well as text: a tenant's search is never faster because
/// another tenant embedded the same words (`engine::scope`).
struct RecentQueries {
    vectors: HashMap<[u8; 32], Arc<[f32]>>,
    order: VecDeque<[u8; 32]>,
}

/// Query vectors kept (1.5 MB of 384-dimensional vectors).
const RECENT_QUERIES: usize = 1024;

impl RecentQueries {
    fn key(scope: u128, text: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(scope.to_le_bytes());
        hash.update(text.as_bytes());
        hash.finalize().into()
    }

    fn get(&self, scope: u128, text: &str) -> Option<Vec<f32>> {
        self.vectors
            .get(&Self::key(scope, text))
            .map(|v| v.to_vec())
    }

    fn insert(&mut self, scope: u128, text: &str, vector: &[f32]) {
        let key = Self::key(scope, text);
        if self.vectors.insert(key, vector.into()).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > RECENT_QUERIES {
            if let Some(old) = self.order.pop_front() {
                self.vectors.remove(&old);
            }
        }
    }
}

/// Longest an embedding call waits for the model to load or to have room.
const EMBED_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

impl EngineEmbedder {
    /// The embedder of `role` (understand: the heads' encoder, queries
    /// under the classification prompt; retrieval: search and translation
    /// checks); `None` when the runtime has no embedding model for it. Must
    /// be called from within the tokio runtime whose handle the calls will
    /// use, after [`Engine::load`].
    pub fn new(engine: Engine, role: Role) -> Option<EngineEmbedder> {
        let model = engine.model_for(role);
        engine
            .models()
            .iter()
            .find(|m| m.kind == ModelKind::Embedding && m.id == model)?;
        let task = match role {
            Role::Understand => EmbedTask::Classification,
            _ => EmbedTask::Retrieval,
        };
        let vector_id = engine.vector_id(&model, task);
        Some(EngineEmbedder {
            engine,
            model,
            task,
            vector_id,
            handle: tokio::runtime::Handle::current(),
            recent: Mutex::new(RecentQueries {
                vectors: HashMap::new(),
                order: VecDeque::new(),
            }),
        })
    }

    fn embed_chunk(&self, texts: &[&str], role: EmbedRole) -> Result<Vec<Vec<f32>>, KbError> {
        let started = Instant::now();
        let lane = match role {
            EmbedRole::Query => Lane::Reply,
            EmbedRole::Passage => Lane::FollowUp,
        };
        loop {
            let request = self.engine.embed_as(
                lane,
                &self.model,
                texts.iter().map(|t| t.to_string()).collect(),
                EmbedAs {
                    role,
                    task: self.task,
                },
            );
            match self.handle.block_on(request) {
                Ok(output) => return Ok(output.vectors),
                Err(EngineError::Overloaded { retry_after, .. })
                    if started.elapsed() < EMBED_WAIT =>
                {
                    std::thread::sleep(retry_after.min(std::time::Duration::from_secs(1)));
                }
                Err(EngineError::Unavailable { .. }) if started.elapsed() < EMBED_WAIT => {
                    // Still loading.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(err) => return Err(KbError::Embedding(err.to_string())),
            }
        }
    }
}

impl Embedder for EngineEmbedder {
    fn model_id(&self) -> &str {
        &self.vector_id
    }

    /// The loaded model's own dimension, waiting while it loads. Nothing
    /// is remembered here: a model that is not up yet answers 0 now and its
    /// real dimension once it is.
    fn dim(&self) -> usize {
        let started = Instant::now();
        loop {
            if let Some(dimension) = self.engine.embedding_dimension(&self.model) {
                return dimension;
            }
            let loading = self
                .engine
                .models()
                .iter()
                .any(|m| m.id == self.model && m.state == ModelState::Loading);
            if !loading || started.elapsed() >= EMBED_WAIT {
                return 0;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn embed(&self, texts: &[&str], role: EmbedRole) -> Result<Vec<Vec<f32>>, KbError> {
        // Only queries are remembered: passages come in bulk from index
        // builds and would push every query out.
        let remembered = role == EmbedRole::Query;
        let owner = scope::current().owner;
        let mut vectors: Vec<Option<Vec<f32>>> = match self.recent.lock() {
            Ok(recent) if remembered => texts.iter().map(|t| recent.get(owner, t)).collect(),
            _ => vec![None; texts.len()],
        };
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| vectors[i].is_none()).collect();
        let missing_texts: Vec<&str> = missing.iter().map(|&i| texts[i]).collect();
        let mut computed = Vec::with_capacity(missing.len());
        for chunk in missing_texts.chunks(self.engine.max_batch().max(1)) {
            computed.extend(self.embed_chunk(chunk, role)?);
        }
        if computed.len() != missing.len() {
            return Err(KbError::Embedding(format!(
                "{} vectors for {} texts",
                computed.len(),
                missing.len()
            )));
        }
        if let Ok(mut recent) = self.recent.lock() {
            for (&i, vector) in missing.iter().zip(&computed) {
                if remembered {
                    recent.insert(owner, texts[i], vector);
                }
            }
        }
        for (i, vector) in missing.into_iter().zip(computed) {
            vectors[i] = Some(vector);
        }
        Ok(vectors.into_iter().flatten().collect())
    }
}
