//! The worker threads: each loads its model, then serves its queue, in lane
//! order (the pipeline's requests first). Embedding requests are gathered
//! into batches by a token budget; chat requests run one at a time,
//! streaming tokens and
//! stopping at the next token once their caller has gone. Every request runs
//! inside `catch_unwind`, so a panic fails that request, is counted, and
//! leaves the worker serving. A model configured as a stand-in
//! (`stand-in:hashing`, `stand-in:echo`) is served by the same threads and
//! queues, so everything around it behaves as with a real model.

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::lanes::LaneQueue;
use super::{
    Admitted, ChatJob, EmbedJob, EmbedOutput, EngineError, Inner, Limits, ModelState, Slot,
};
use crate::inference::chat::{
    CacheScope, ChatMessage, ChatModel, FinishReason, Generation, GenerationParams,
};
use crate::inference::stand_in::{StandInChat, StandInEmbedder};
use crate::inference::{
    select_device, EmbedRole, EmbedTask, Embeddings, InferenceError, TextEmbedder,
};
use crate::metrics as m;
use crate::models::ResolvedModel;

/// A rough token count for the batching budget, before tokenization: about
/// one token per three bytes of UTF-8 (one per CJK character, a little more
/// than one per English word-piece), plus the special tokens, never more
/// than the model reads.
fn estimated_tokens(text: &str, max_tokens: usize) -> usize {
    (2 + text.len().div_ceil(3)).min(max_tokens)
}

fn panic_reason(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Runs one request's work, turning a panic into `WorkerPanicked` (logged
/// and counted) so the worker thread lives on.
fn guarded<T>(
    model: &str,
    work: impl FnOnce() -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|payload| {
        let reason = panic_reason(payload.as_ref());
        tracing::error!(model, %reason, "model worker panicked; the request failed");
        m::model_panicked(model);
        Err(EngineError::WorkerPanicked {
            model: model.to_owned(),
        })
    })
}

/// Loads a model on the current thread, turning errors and panics into the
/// slot's `Failed` state.
fn load<J, T>(slot: &Slot<J>, load: impl FnOnce() -> Result<T, InferenceError>) -> Option<T> {
    let started = Instant::now();
    match catch_unwind(AssertUnwindSafe(load)) {
        Ok(Ok(model)) => {
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(model = %slot.id, load_seconds = seconds, "model loaded");
            m::model_loaded(&slot.id, started.elapsed());
            slot.set_state(ModelState::Ready {
                load_seconds: seconds,
            });
            Some(model)
        }
        Ok(Err(err)) => {
            tracing::error!(model = %slot.id, error = %err, "model failed to load");
            slot.set_state(ModelState::Failed {
                reason: err.to_string(),
            });
            None
        }
        Err(payload) => {
            let reason = panic_reason(payload.as_ref());
            tracing::error!(model = %slot.id, %reason, "model panicked while loading");
            slot.set_state(ModelState::Failed {
                reason: format!("panicked while loading: {reason}"),
            });
            None
        }
    }
}

/// What the embedding thread serves: the configured model, or the hashing
/// stand-in when the configuration names one.
enum EmbedBackend {
    Model(Box<TextEmbedder>),
    StandIn(StandInEmbedder),
}

impl EmbedBackend {
    fn load(model: &ResolvedModel, device_spec: &str) -> Result<EmbedBackend, InferenceError> {
        if model.is_stand_in() {
            tracing::warn!(model = %model.reference, "embedding with a stand-in, not a model");
            return Ok(EmbedBackend::StandIn(StandInEmbedder::default()));
        }
        let device = select_device(device_spec)?;
        TextEmbedder::load(model, &device).map(|m| EmbedBackend::Model(Box::new(m)))
    }

    fn embed(
        &self,
        texts: &[&str],
        role: EmbedRole,
        task: EmbedTask,
    ) -> Result<Embeddings, InferenceError> {
        match self {
            EmbedBackend::Model(model) => model.embed_for(texts, role, task),
            EmbedBackend::StandIn(stand_in) => stand_in.embed(texts, role),
        }
    }

    fn max_tokens(&self) -> usize {
        match self {
            EmbedBackend::Model(model) => model.max_tokens(),
            EmbedBackend::StandIn(stand_in) => stand_in.max_tokens(),
        }
    }

    fn dim(&self) -> usize {
        match self {
            EmbedBackend::Model(model) => model.dim(),
            EmbedBackend::StandIn(stand_in) => stand_in.dim(),
        }
    }
}

/// What the chat thread serves: the configured model, or the echo
/// stand-in when the configuration names one.
enum ChatBackend {
    Model(Box<ChatModel>),
    StandIn(StandInChat),
}

impl ChatBackend {
    fn load(inner: &Inner, model: &ResolvedModel) -> Result<ChatBackend, InferenceError> {
        if model.is_stand_in() {
            tracing::warn!(
                model = %model.reference,
                delay_ms = inner.stand_in_delay.as_millis() as u64,
                "chatting with a stand-in, not a model"
            );
            return Ok(ChatBackend::StandIn(StandInChat::new(inner.stand_in_delay)));
        }
        let device = select_device(&inner.device)?;
        let mut chat = super::load_chat_model(model, &device, &inner.chat_weights)?;
        chat.set_guessing(inner.chat_guessing);
        Ok(ChatBackend::Model(Box::new(chat)))
    }

    fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<usize, InferenceError> {
        match self {
            ChatBackend::Model(model) => Ok(model.render_prompt(messages)?.len()),
            ChatBackend::StandIn(_) => Ok(StandInChat::prompt_tokens(messages)),
        }
    }

    fn generate(
        &mut self,
        job: &ChatJob,
        on_token: &mut dyn FnMut(&str) -> ControlFlow<()>,
        gone: &dyn Fn() -> bool,
    ) -> Result<Generation, InferenceError> {
        let (messages, params): (&[ChatMessage], &GenerationParams) = (&job.messages, &job.params);
        match self {
            // Only background work pays for a chunked prompt (about a tenth
            // slower on a CPU) to be stoppable midway.
            ChatBackend::Model(model) if job.background => {
                model.generate_until(messages, params, on_token, gone)
            }
            ChatBackend::Model(model) => model.generate(messages, params, on_token),
            ChatBackend::StandIn(stand_in) => stand_in.generate(messages, params, on_token, gone),
        }
    }

    fn set_cache_scope(&mut self, scope: CacheScope) {
        if let ChatBackend::Model(model) = self {
            model.set_cache_scope(scope);
        }
    }

    fn clear_cache(&mut self) {
        if let ChatBackend::Model(model) = self {
            model.clear_cache();
        }
    }
}

/// Starts the thread of the embedding model in slot `index`.
pub(super) fn spawn_embedder(inner: Arc<Inner>, index: usize, model: ResolvedModel) {
    let queue = Arc::new(LaneQueue::new());
    *inner.slots.embeddings[index]
        .queue
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(queue.clone());
    let spawned = std::thread::Builder::new()
        .name("kedai-embed".into())
        .spawn({
            let inner = inner.clone();
            move || {
                super::priority::lower_this_thread();
                let slot = &inner.slots.embeddings[index];
                let loaded = load(slot, || {
                    let embedder = EmbedBackend::load(&model, &inner.device)?;
                    // Known before the slot reads ready.
                    slot.max_input_tokens
                        .store(embedder.max_tokens(), Ordering::Relaxed);
                    slot.dimension.store(embedder.dim(), Ordering::Relaxed);
                    Ok(embedder)
                });
                if let Some(embedder) = loaded {
                    serve_embeddings(slot, &embedder, inner.limits, &queue, own_pool());
                }
            }
        });
    if let Err(err) = spawned {
        inner.slots.embeddings[index].set_state(ModelState::Failed {
            reason: format!("cannot start its thread: {err}"),
        });
    }
}

/// Starts the thread of the chat model in slot `index`.
pub(super) fn spawn_chat(inner: Arc<Inner>, index: usize, model: ResolvedModel) {
    let queue = Arc::new(LaneQueue::new());
    *inner.slots.chats[index]
        .queue
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(queue.clone());
    let spawned = std::thread::Builder::new()
        .name("kedai-chat".into())
        .spawn({
            let inner = inner.clone();
            move || {
                super::priority::lower_this_thread();
                let slot = &inner.slots.chats[index];
                let loaded = load(slot, || ChatBackend::load(&inner, &model));
                if let Some(mut chat) = loaded {
                    serve_chat(slot, &mut chat, inner.limits, &queue);
                }
            }
        });
    if let Err(err) = spawned {
        inner.slots.chats[index].set_state(ModelState::Failed {
            reason: format!("cannot start its thread: {err}"),
        });
    }
}

/// A thread pool for the embedding model alone, as large as the global
/// one. Sharing rayon's global pool with the chat model made every parallel
/// step of an embedding wait for the chat model's step in progress (up to a
/// prefill matmul), so a message embedded during a draft took seconds; with
/// pools of their own the two are time-shared by the OS instead.
fn own_pool() -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(|i| format!("kedai-embed-cpu-{i}"))
        .start_handler(|_| super::priority::lower_this_thread())
        .build()
        .map_err(|err| tracing::warn!(error = %err, "embeddings share the global thread pool"))
        .ok()
}

fn serve_embeddings(
    slot: &Slot<EmbedJob>,
    embedder: &EmbedBackend,
    limits: Limits,
    queue: &LaneQueue<Admitted<EmbedJob>>,
    pool: Option<rayon::ThreadPool>,
) {
    let mut carried: Option<Admitted<EmbedJob>> = None;
    loop {
        let first = carried.take().unwrap_or_else(|| queue.pop());
        let (batch, next) = gather(&slot.id, first, queue, limits, embedder.max_tokens());
        carried = next;
        if !batch.is_empty() {
            match &pool {
                Some(pool) => pool.install(|| run_embedding_batch(slot, embedder, batch)),
                None => run_embedding_batch(slot, embedder, batch),
            }
        }
    }
}

/// Starting with `first`, takes what is already queued into one batch while
/// it stays within the token budget and the input cap; returns the batch
/// and the request that did not fit, if any. Requests whose caller has gone
/// are dropped here, unrun.
fn gather(
    model: &str,
    first: Admitted<EmbedJob>,
    queue: &LaneQueue<Admitted<EmbedJob>>,
    limits: Limits,
    max_tokens: usize,
) -> (Vec<Admitted<EmbedJob>>, Option<Admitted<EmbedJob>>) {
    let mut batch: Vec<Admitted<EmbedJob>> = Vec::new();
    let (mut tokens, mut inputs) = (0, 0);
    let mut candidate = Some(first);
    while let Some(next) = candidate.take().or_else(|| queue.try_pop()) {
        if next.abandoned() {
            m::model_rejected(model, "cancelled");
            continue;
        }
        let next_tokens = budget(&next, max_tokens);
        let fits = inputs + next.job.texts.len() <= limits.embedding_max_batch
            && tokens + next_tokens <= limits.embedding_batch_tokens;
        if !fits && !batch.is_empty() {
            return (batch, Some(next));
        }
        tokens += next_tokens;
        inputs += next.job.texts.len();
        batch.push(next);
    }
    (batch, None)
}

fn budget(job: &Admitted<EmbedJob>, max_tokens: usize) -> usize {
    job.job
        .texts
        .iter()
        .map(|t| estimated_tokens(t, max_tokens))
        .sum()
}

/// Embeds a batch, one forward call per role; when a call fails, its
/// requests are retried one by one so that one bad input fails only its own
/// request.
fn run_embedding_batch(
    slot: &Slot<EmbedJob>,
    embedder: &EmbedBackend,
    batch: Vec<Admitted<EmbedJob>>,
) {
    let started = Instant::now();
    let jobs = batch.len();
    for admitted in &batch {
        m::model_queue_wait(&slot.id, started.duration_since(admitted.enqueued));
    }
    // One forward call per role and task: their prompts differ.
    let mut groups: Vec<Vec<Admitted<EmbedJob>>> = Vec::new();
    for admitted in batch {
        let same = |g: &&mut Vec<Admitted<EmbedJob>>| {
            (g[0].job.role, g[0].job.task) == (admitted.job.role, admitted.job.task)
        };
        match groups.iter_mut().find(same) {
            Some(group) => group.push(admitted),
            None => groups.push(vec![admitted]),
        }
    }
    for group in groups {
        if group.is_empty() {
            continue;
        }
        let outcome = embed_group(slot, embedder, &group);
        match outcome {
            Ok(outputs) => {
                for (admitted, output) in group.into_iter().zip(outputs) {
                    reply_embedding(slot, admitted, Ok(output));
                }
            }
            Err(_) if group.len() > 1 => {
                for admitted in group {
                    let result = embed_group(slot, embedder, std::slice::from_ref(&admitted))
                        .map(|mut outputs| outputs.remove(0));
                    reply_embedding(slot, admitted, result);
                }
            }
            Err(err) => {
                for admitted in group {
                    reply_embedding(slot, admitted, Err(clone_error(&err)));
                }
            }
        }
    }
    slot.record_service(started.elapsed() / jobs.max(1) as u32);
}

fn clone_error(err: &EngineError) -> EngineError {
    match err {
        EngineError::WorkerPanicked { model } => EngineError::WorkerPanicked {
            model: model.clone(),
        },
        EngineError::Invalid(message) => EngineError::Invalid(message.clone()),
        other => EngineError::Invalid(other.to_string()),
    }
}

/// One forward call over every text of `group`, split back per request.
fn embed_group(
    slot: &Slot<EmbedJob>,
    embedder: &EmbedBackend,
    group: &[Admitted<EmbedJob>],
) -> Result<Vec<EmbedOutput>, EngineError> {
    let texts: Vec<&str> = group
        .iter()
        .flat_map(|j| j.job.texts.iter().map(String::as_str))
        .collect();
    let (role, task) = (group[0].job.role, group[0].job.task);
    let started = Instant::now();
    let embeddings = guarded(&slot.id, || {
        embedder.embed(&texts, role, task).map_err(inference_error)
    })?;
    let elapsed = started.elapsed();
    let tokens: usize = embeddings.inputs().iter().map(|i| i.tokens).sum();
    m::model_batch(&slot.id, texts.len(), tokens, "embed", elapsed);
    let mut outputs = Vec::with_capacity(group.len());
    let mut next = 0;
    for admitted in group {
        let n = admitted.job.texts.len();
        outputs.push(EmbedOutput {
            vectors: (next..next + n)
                .filter_map(|i| embeddings.get(i).map(<[f32]>::to_vec))
                .collect(),
            inputs: embeddings.inputs()[next..next + n].to_vec(),
        });
        next += n;
    }
    Ok(outputs)
}

/// Errors the caller caused stay visible to it; the rest are the server's.
fn inference_error(err: InferenceError) -> EngineError {
    match err {
        InferenceError::EmptyText { index } => {
            EngineError::Invalid(format!("`input[{index}]` has no tokens"))
        }
        InferenceError::InvalidParams(message) => EngineError::Invalid(message),
        InferenceError::PromptTooLong {
            prompt_tokens,
            context_length,
        } => EngineError::Invalid(format!(
            "the prompt has {prompt_tokens} tokens but the model's context holds \
             {context_length}, leaving no room to answer"
        )),
        other => EngineError::Inference(other),
    }
}

fn reply_embedding(
    slot: &Slot<EmbedJob>,
    admitted: Admitted<EmbedJob>,
    result: Result<EmbedOutput, EngineError>,
) {
    let outcome = if result.is_ok() { "ok" } else { "error" };
    m::model_request(&slot.id, outcome, admitted.enqueued.elapsed());
    let _ = admitted.job.reply.send(result);
}

fn serve_chat(
    slot: &Slot<ChatJob>,
    model: &mut ChatBackend,
    limits: Limits,
    queue: &LaneQueue<Admitted<ChatJob>>,
) {
    loop {
        let admitted = queue.pop();
        if admitted.abandoned() {
            m::model_rejected(&slot.id, "cancelled");
            continue;
        }
        let _entered = admitted.span.clone().entered();
        m::model_queue_wait(&slot.id, admitted.enqueued.elapsed());
        let started = Instant::now();
        let result = guarded(&slot.id, || {
            run_chat(model, &admitted.job, limits.chat_max_prompt_tokens)
        });
        if let Err(EngineError::WorkerPanicked { .. }) = result {
            // The KV cache may hold half a step; start the next request clean.
            model.clear_cache();
        }
        slot.record_service(started.elapsed());
        match &result {
            Ok(generation) => {
                record_generation(slot, generation);
                let outcome = match generation.finish_reason {
                    FinishReason::Cancelled => "cancelled",
                    FinishReason::Stop | FinishReason::Length => "ok",
                };
                m::model_request(&slot.id, outcome, admitted.enqueued.elapsed());
            }
            Err(_) => m::model_request(&slot.id, "error", admitted.enqueued.elapsed()),
        }
        let _ = admitted.job.reply.send(result);
    }
}

fn record_generation(slot: &Slot<ChatJob>, generation: &Generation) {
    let fresh = generation.prompt_tokens - generation.reused_prompt_tokens;
    m::model_batch(&slot.id, 1, fresh, "prefill", generation.prefill);
    m::model_tokens(&slot.id, "completion", generation.completion_tokens);
    m::model_tokens(&slot.id, "guessed", generation.guessed_tokens);
    m::model_tokens(&slot.id, "guess_accepted", generation.accepted_guesses);
    m::model_busy(&slot.id, "decode", generation.decode);
    if generation.finish_reason == FinishReason::Cancelled {
        m::model_rejected(&slot.id, "cancelled");
    }
}

fn run_chat(
    model: &mut ChatBackend,
    job: &ChatJob,
    max_prompt_tokens: usize,
) -> Result<Generation, EngineError> {
    model.set_cache_scope(job.scope);
    let prompt_tokens = model
        .prompt_tokens(&job.messages)
        .map_err(inference_error)?;
    if prompt_tokens > max_prompt_tokens {
        return Err(EngineError::Invalid(format!(
            "the prompt has {prompt_tokens} tokens; at most {max_prompt_tokens} are accepted"
        )));
    }
    let gone = || job.reply.is_closed() || job.tokens.as_ref().is_some_and(|t| t.is_closed());
    let mut on_token = |piece: &str| {
        if gone() {
            return ControlFlow::Break(());
        }
        if let (Some(tokens), false) = (&job.tokens, piece.is_empty()) {
            if tokens.send(piece.to_owned()).is_err() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    };
    model
        .generate(job, &mut on_token, &gone)
        .map_err(inference_error)
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    #[test]
    fn a_panicking_request_becomes_an_error_and_the_thread_lives_on() {
        let err = guarded::<()>("m", || panic!("index out of bounds")).unwrap_err();
        assert!(
            matches!(&err, EngineError::WorkerPanicked { model } if model == "m"),
            "{err}"
        );
        assert_eq!(guarded("m", || Ok(7)).unwrap(), 7);
        let err = guarded::<()>("m", || Err(EngineError::Invalid("bad".into()))).unwrap_err();
        assert!(matches!(err, EngineError::Invalid(_)), "{err}");
    }

    fn job(
        texts: &[&str],
        semaphore: &Arc<tokio::sync::Semaphore>,
    ) -> (
        Admitted<EmbedJob>,
        oneshot::Receiver<Result<EmbedOutput, EngineError>>,
    ) {
        let (reply, done) = oneshot::channel();
        let admitted = Admitted {
            job: EmbedJob {
                texts: texts.iter().map(|t| (*t).to_owned()).collect(),
                role: EmbedRole::Query,
                task: EmbedTask::Retrieval,
                reply,
            },
            _ticket: super::super::slots::Ticket {
                _permit: semaphore.clone().try_acquire_owned().unwrap(),
                model: "m".into(),
            },
            enqueued: Instant::now(),
            span: tracing::Span::none(),
        };
        (admitted, done)
    }

    #[test]
    fn batches_gather_queued_requests_within_the_token_budget() {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(16));
        let limits = Limits {
            embedding_batch_tokens: 40,
            embedding_max_batch: 4,
            chat_max_tokens: 1,
            chat_max_prompt_tokens: 1,
        };
        let queue = LaneQueue::new();
        let mut replies = Vec::new();
        // 3 estimated tokens per "hi" (2 special tokens), 35 for 99 bytes.
        let long = "x".repeat(99);
        for texts in [&["hi", "hi"][..], &["hi"], &[long.as_str()], &["hi"]] {
            let (admitted, done) = job(texts, &semaphore);
            queue.push(super::super::Lane::Api, admitted);
            replies.push(done);
        }
        // The caller of the second request has gone.
        drop(replies.remove(1));
        let first = queue.pop();
        let (batch, carried) = gather("m", first, &queue, limits, 512);
        let sizes: Vec<usize> = batch.iter().map(|j| j.job.texts.len()).collect();
        assert_eq!(sizes, [2], "the abandoned request is dropped, 6 + 35 > 40");
        let carried = carried.expect("the long request waits for the next batch");
        assert_eq!(carried.job.texts[0].len(), 99);
        let (batch, carried) = gather("m", carried, &queue, limits, 512);
        let sizes: Vec<usize> = batch.iter().map(|j| j.job.texts[0].len()).collect();
        assert_eq!(sizes, [99, 2], "35 + 3 fits");
        assert!(carried.is_none());

        // A single request over the budget still runs, alone.
        let (big, _done) = job(&[long.as_str(), long.as_str()], &semaphore);
        let (batch, carried) = gather("m", big, &queue, limits, 512);
        assert_eq!(batch.len(), 1);
        assert!(carried.is_none());
    }

    #[test]
    fn token_estimates_are_capped_by_the_model_limit() {
        assert_eq!(estimated_tokens("hi", 512), 3);
        assert_eq!(estimated_tokens("这个", 512), 4);
        assert_eq!(estimated_tokens(&"x".repeat(100_000), 512), 512);
    }
}
