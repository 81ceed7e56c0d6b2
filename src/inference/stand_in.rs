//! Stand-in models: cheap, deterministic replacements for the embedding and
//! chat models, selected by configuration (`models.embedding =
//! "stand-in:hashing"`, `models.chat = "stand-in:echo"`, resolved by
//! `models` and started by `engine` in place of a checkpoint) so that plumbing
//! tests, the marketplace simulator and chaos tests can run the whole
//! server without model files. They understand nothing: the embedder hashes
//! character trigrams, the chat model answers every prompt with one fixed
//! sentence that names itself a stand-in and carries a digest of the
//! prompt. Nothing here may ever be mistaken for a real model, which is
//! why their replies say what they are.
//!
//! Like the real models, their calls block (the chat stand-in sleeps for
//! its configured delay), so they run on the runtime's model threads.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::chat::{ChatMessage, FinishReason, Generation, GenerationParams};
use super::embedder::{EmbedRole, Embeddings, InputReport};
use super::InferenceError;

/// Character-trigram counts of `text` hashed into `dim` buckets, L2
/// normalised: texts sharing spelling get similar vectors, nothing more.
/// `None` for text with nothing to count (empty or whitespace).
pub fn hashed_trigrams(text: &str, dim: usize) -> Option<Vec<f32>> {
    if text.trim().is_empty() {
        return None;
    }
    let dim = dim.max(1);
    let chars: Vec<char> = format!("  {}  ", text.to_lowercase()).chars().collect();
    let mut vector = vec![0f32; dim];
    for window in chars.windows(3) {
        let gram: String = window.iter().collect();
        let hash = Sha256::digest(gram.as_bytes());
        let bucket = u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"));
        vector[(bucket % dim as u64) as usize] += 1.0;
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm == 0.0 {
        return None;
    }
    vector.iter_mut().for_each(|v| *v /= norm);
    Some(vector)
}

/// The embedding stand-in: [`hashed_trigrams`] with e5-small's width, so
/// that everything sized for the default model fits it too.
#[derive(Debug, Clone)]
pub struct StandInEmbedder {
    dim: usize,
}

/// Vector width of the hashing stand-in (multilingual-e5-small's).
pub const STAND_IN_DIM: usize = 384;
/// Tokens the stand-in claims to read at most, as e5 does.
const STAND_IN_MAX_TOKENS: usize = 512;

impl Default for StandInEmbedder {
    fn default() -> Self {
        StandInEmbedder { dim: STAND_IN_DIM }
    }
}

impl StandInEmbedder {
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn max_tokens(&self) -> usize {
        STAND_IN_MAX_TOKENS
    }

    /// One vector per text, in order; an empty text is an error, as with
    /// the real model. "Tokens" are whitespace-separated words plus the two
    /// special tokens a real encoder adds.
    pub fn embed(&self, texts: &[&str], _role: EmbedRole) -> Result<Embeddings, InferenceError> {
        let mut values = Vec::with_capacity(texts.len() * self.dim);
        let mut inputs = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let vector =
                hashed_trigrams(text, self.dim).ok_or(InferenceError::EmptyText { index })?;
            values.extend(vector);
            let words = text.split_whitespace().count() + 2;
            inputs.push(InputReport {
                tokens: words.min(STAND_IN_MAX_TOKENS),
                truncated: words > STAND_IN_MAX_TOKENS,
            });
        }
        Ok(Embeddings::from_parts(self.dim, values, inputs))
    }
}

/// The chat stand-in: after `delay`, answers with one short English
/// sentence, the same for the same prompt, that says it is a stand-in.
#[derive(Debug, Clone, Default)]
pub struct StandInChat {
    delay: Duration,
}

/// How often a delayed stand-in checks whether its caller gave up.
const DELAY_SLICE: Duration = Duration::from_millis(10);

impl StandInChat {
    pub fn new(delay: Duration) -> StandInChat {
        StandInChat { delay }
    }

    /// A rough token count of the prompt: words plus four per message for
    /// the chat template's markers.
    pub fn prompt_tokens(messages: &[ChatMessage]) -> usize {
        messages
            .iter()
            .map(|m| m.content.split_whitespace().count() + 4)
            .sum()
    }

    /// The stand-in's answer to `messages`, before `max_tokens` cuts it.
    pub fn reply(messages: &[ChatMessage]) -> String {
        let mut digest = Sha256::new();
        for message in messages {
            digest.update(message.role.as_str().as_bytes());
            digest.update([0]);
            digest.update(message.content.as_bytes());
            digest.update([0]);
        }
        let digest = digest.finalize();
        format!(
            "[stand-in {}] Thank you for your message.",
            hex::encode(&digest[..4])
        )
    }

    /// As [`super::chat::ChatModel::generate_until`]: waits out the
    /// configured delay (stopping early once `cancelled` says so), then
    /// streams the reply word by word through `on_token`, one word per
    /// token, at most `params.max_tokens` of them.
    pub fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_token: &mut dyn FnMut(&str) -> ControlFlow<()>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Generation, InferenceError> {
        params.validate()?;
        let started = Instant::now();
        let prompt_tokens = Self::prompt_tokens(messages);
        let finish = |text: String, completion_tokens, finish_reason| Generation {
            text,
            prompt_tokens,
            reused_prompt_tokens: 0,
            completion_tokens,
            finish_reason,
            prefill: started.elapsed(),
            decode: Duration::ZERO,
            guessed_tokens: 0,
            accepted_guesses: 0,
        };
        while started.elapsed() < self.delay {
            if cancelled() {
                return Ok(finish(String::new(), 0, FinishReason::Cancelled));
            }
            std::thread::sleep(DELAY_SLICE.min(self.delay - started.elapsed()));
        }
        let reply = Self::reply(messages);
        let words: Vec<&str> = reply.split(' ').collect();
        let mut text = String::new();
        for (count, word) in words.iter().enumerate() {
            if count == params.max_tokens {
                return Ok(finish(text, count, FinishReason::Length));
            }
            let piece = if count == 0 {
                (*word).to_owned()
            } else {
                format!(" {word}")
            };
            if on_token(&piece).is_break() {
                return Ok(finish(text, count, FinishReason::Cancelled));
            }
            text.push_str(&piece);
        }
        Ok(finish(text, words.len(), FinishReason::Stop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::chat::ChatRole;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn hashing_vectors_are_unit_length_and_favour_shared_spelling() {
        let e = StandInEmbedder::default();
        let out = e
            .embed(
                &["return policy", "returns policy", "shipping to Brazil"],
                EmbedRole::Passage,
            )
            .unwrap();
        let v: Vec<&[f32]> = out.iter().collect();
        assert_eq!(v[0].len(), STAND_IN_DIM);
        assert!((dot(v[0], v[0]) - 1.0).abs() < 1e-5);
        assert!(dot(v[0], v[1]) > dot(v[0], v[2]));
        assert_eq!(out.inputs()[0].tokens, 4);
        let err = e.embed(&["ok", "  "], EmbedRole::Query).unwrap_err();
        assert!(
            matches!(err, InferenceError::EmptyText { index: 1 }),
            "{err}"
        );
    }

    #[test]
    fn the_chat_stand_in_says_what_it_is_and_answers_alike_prompts_alike() {
        let chat = StandInChat::new(Duration::ZERO);
        let prompt = |text: &str| vec![ChatMessage::new(ChatRole::User, text)];
        let mut pieces = Vec::new();
        let first = chat
            .generate(
                &prompt("hello"),
                &GenerationParams::default(),
                &mut |p| {
                    pieces.push(p.to_owned());
                    ControlFlow::Continue(())
                },
                &|| false,
            )
            .unwrap();
        assert!(first.text.starts_with("[stand-in "), "{}", first.text);
        assert_eq!(pieces.concat(), first.text);
        assert_eq!(first.finish_reason, FinishReason::Stop);
        let again = StandInChat::reply(&prompt("hello"));
        assert_eq!(again, first.text, "deterministic");
        assert_ne!(StandInChat::reply(&prompt("other")), first.text);

        let short = GenerationParams {
            max_tokens: 2,
            ..GenerationParams::default()
        };
        let cut = chat
            .generate(
                &prompt("hello"),
                &short,
                &mut |_| ControlFlow::Continue(()),
                &|| false,
            )
            .unwrap();
        assert_eq!(cut.completion_tokens, 2);
        assert_eq!(cut.finish_reason, FinishReason::Length);
    }

    #[test]
    fn a_delayed_stand_in_stops_waiting_once_its_caller_has_gone() {
        let chat = StandInChat::new(Duration::from_secs(600));
        let out = chat
            .generate(
                &[ChatMessage::new(ChatRole::User, "hi")],
                &GenerationParams::default(),
                &mut |_| ControlFlow::Continue(()),
                &|| true,
            )
            .unwrap();
        assert_eq!(out.finish_reason, FinishReason::Cancelled);
    }
}
