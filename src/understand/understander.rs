//! [`Understander`]: everything this module knows about one buyer message,
//! computed with one batched embedding call (the message and, when needed,
//! the buyer's recent messages), the trained heads, the language detector
//! and the pattern matchers. Heads can be swapped at run time, so new
//! exemplars take effect without a restart. A tenant may have heads of its
//! own (the shared exemplars plus what its people taught it), used only for
//! that tenant's messages; every other tenant keeps the shared heads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::binding::{self, BindingRequest};
use super::classifier::{ClassWeighting, TrainConfig, OUT_OF_SCOPE};
use super::entities::{self, Entity};
use super::exemplars::{self, Example, SentimentExample, TextClassifier};
use super::human;
use super::lang::{LanguageDetector, LanguageGuess};
use super::repeat::{find_repeat, RepeatConfig, RepeatMatch};
use super::routes::{LearnedRoutes, RouteMatch};
use super::{QueryEmbedder, UnderstandError};
use crate::domain::TenantId;

/// The taxonomy's intent for an explicit request for a person.
pub const ASK_FOR_HUMAN: &str = "ask_for_human";

/// Intents that are small talk rather than questions, so never repeats.
const SOCIAL_INTENTS: [&str; 2] = ["greeting", "thanks"];

/// A label with its calibrated probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sentiment {
    /// `positive`, `neutral` or `negative`.
    pub label: String,
    pub confidence: f32,
}

/// How angry the buyer sounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Anger {
    /// 0 none, 1 annoyed, 2 angry or threatening: the most probable level.
    pub level: u8,
    /// Probability that the buyer is at least annoyed.
    pub probability: f32,
}

/// What kedai understood of one buyer message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Understanding {
    /// `None` when the text has no letters (empty, digits, emoji only).
    pub lang: Option<LanguageGuess>,
    /// An intent id of the taxonomy, or `out_of_scope`.
    pub intent: String,
    /// Calibrated probability of the most probable intent.
    pub confidence: f32,
    pub out_of_scope: bool,
    /// The three most probable intents.
    pub intent_top: Vec<(String, f32)>,
    pub sentiment: Option<Sentiment>,
    pub anger: Option<Anger>,
    /// Probability that the buyer needs action now.
    pub urgent: Option<f32>,
    /// The buyer asked for a person, in words the patterns know or as the
    /// classifier's `ask_for_human` intent.
    pub human_requested: bool,
    pub entities: Vec<Entity>,
    /// The earlier buyer message this one asks again.
    pub repeated: Option<RepeatMatch>,
    /// The buyer says they asked this before, in words.
    pub says_asked_before: bool,
    /// The buyer bargains or asks for compensation.
    pub binding_request: Option<BindingRequest>,
    /// The tenant's people said messages like this one go to a person, or
    /// may be answered by the AI.
    pub learned_route: Option<RouteMatch>,
}

/// Intents whose exemplars are routine questions and pleasantries, used as
/// calm, not urgent examples for the anger and urgency heads.
const CALM_INTENTS: &[&str] = &[
    "greeting",
    "thanks",
    "product_specs",
    "size_fit",
    "colour_options",
    "stock_availability",
    "price_coupon",
    "shipping_time_cost",
    "policy_question",
    "comparison",
    "purchase_hesitation",
];

/// The trained classifier heads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heads {
    pub intents: TextClassifier,
    pub sentiment: Option<TextClassifier>,
    /// Labels `0`, `1`, `2` as in the sentiment exemplars.
    pub anger: Option<TextClassifier>,
    /// Labels `urgent`, `not_urgent`.
    pub urgent: Option<TextClassifier>,
    /// Where the tenant's people said messages like some should go; empty
    /// for the shared heads.
    pub routes: LearnedRoutes,
}

impl Heads {
    /// Trains every head; with no sentiment exemplars only the intent head.
    pub fn train(
        embedder: &dyn QueryEmbedder,
        intents: &[Example],
        sentiment: &[SentimentExample],
        config: &TrainConfig,
    ) -> Result<Heads, UnderstandError> {
        let intent_head = TextClassifier::train(embedder, intents, config)?;
        if sentiment.is_empty() {
            return Ok(Heads {
                intents: intent_head,
                sentiment: None,
                anger: None,
                urgent: None,
                routes: LearnedRoutes::default(),
            });
        }
        let texts: Vec<&str> = sentiment.iter().map(|s| s.text.as_str()).collect();
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(UnderstandError::Invalid(format!(
                "sentiment exemplar {i} has an empty text"
            )));
        }
        let vectors = embedder.embed_queries(&texts)?;
        let model = embedder.model_id();
        // Anger, urgency and non-neutral sentiment are the rarer labels and
        // the ones that matter, so labels are weighed equally.
        let balanced = TrainConfig {
            weighting: ClassWeighting::Balanced,
            ..config.clone()
        };
        let fit = |vectors: &[Vec<f32>], labels: Vec<String>| {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            TextClassifier::from_vectors(model, vectors, &labels, &balanced)
        };
        // Anger and urgency also learn from the intent exemplars of routine
        // questions, which are calm and can wait: the sentiment exemplars
        // alone are too few to teach that a plain question about payment,
        // plugs or coupons is not a complaint.
        let calm: Vec<&str> = intents
            .iter()
            .filter(|e| CALM_INTENTS.contains(&e.label.as_str()))
            .map(|e| e.text.as_str())
            .collect();
        let mut with_calm = vectors.clone();
        with_calm.extend(embedder.embed_queries(&calm)?);
        let anger_labels = sentiment
            .iter()
            .map(|s| s.anger.to_string())
            .chain(calm.iter().map(|_| "0".to_owned()))
            .collect();
        let urgent_labels = sentiment
            .iter()
            .map(|s| if s.urgent { "urgent" } else { "not_urgent" }.to_owned())
            .chain(calm.iter().map(|_| "not_urgent".to_owned()))
            .collect();
        Ok(Heads {
            intents: intent_head,
            sentiment: Some(fit(
                &vectors,
                sentiment.iter().map(|s| s.sentiment.clone()).collect(),
            )?),
            anger: Some(fit(&with_calm, anger_labels)?),
            urgent: Some(fit(&with_calm, urgent_labels)?),
            routes: LearnedRoutes::default(),
        })
    }

    /// Trains from exemplar directories laid out like `kb/intents/exemplars`
    /// and `kb/sentiment/exemplars`.
    pub fn from_dirs(
        embedder: &dyn QueryEmbedder,
        intents_dir: &Path,
        sentiment_dir: Option<&Path>,
        config: &TrainConfig,
    ) -> Result<Heads, UnderstandError> {
        let intents = exemplars::read_intent_dir(intents_dir)?;
        let sentiment = match sentiment_dir {
            Some(dir) => exemplars::read_sentiment_dir(dir)?,
            None => Vec::new(),
        };
        Heads::train(embedder, &intents, &sentiment, config)
    }
}

/// Understands buyer messages. Share it behind an `Arc`; calls block for an
/// embedding forward pass.
pub struct Understander {
    embedder: Arc<dyn QueryEmbedder>,
    heads: RwLock<Arc<Heads>>,
    /// Heads of tenants that have learned exemplars of their own.
    tenant_heads: RwLock<HashMap<TenantId, Arc<Heads>>>,
    language: LanguageDetector,
    repeat: RepeatConfig,
}

impl Understander {
    pub fn new(
        embedder: Arc<dyn QueryEmbedder>,
        heads: Heads,
    ) -> Result<Understander, UnderstandError> {
        check_model(embedder.as_ref(), &heads)?;
        Ok(Understander {
            embedder,
            heads: RwLock::new(Arc::new(heads)),
            tenant_heads: RwLock::new(HashMap::new()),
            language: LanguageDetector::default(),
            repeat: RepeatConfig::default(),
        })
    }

    pub fn with_repeat_config(mut self, repeat: RepeatConfig) -> Understander {
        self.repeat = repeat;
        self
    }

    /// Replaces the heads; messages understood from now on use the new
    /// ones, calls in flight finish with the old.
    pub fn replace_heads(&self, heads: Heads) -> Result<(), UnderstandError> {
        check_model(self.embedder.as_ref(), &heads)?;
        *self.heads.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(heads);
        Ok(())
    }

    pub fn heads(&self) -> Arc<Heads> {
        self.heads.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn embedder(&self) -> &dyn QueryEmbedder {
        self.embedder.as_ref()
    }

    /// Gives `tenant` heads of its own (`Some`), or back the shared ones
    /// (`None`); its messages understood from now on use them.
    pub fn set_tenant_heads(
        &self,
        tenant: TenantId,
        heads: Option<Heads>,
    ) -> Result<(), UnderstandError> {
        let mut all = self.tenant_heads.write().unwrap_or_else(|e| e.into_inner());
        match heads {
            Some(heads) => {
                check_model(self.embedder.as_ref(), &heads)?;
                all.insert(tenant, Arc::new(heads));
            }
            None => {
                all.remove(&tenant);
            }
        }
        Ok(())
    }

    /// The heads `tenant`'s messages are understood with: its own when it
    /// has some, otherwise the shared ones.
    pub fn heads_for(&self, tenant: TenantId) -> Arc<Heads> {
        let own = self
            .tenant_heads
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant)
            .cloned();
        own.unwrap_or_else(|| self.heads())
    }

    /// Whether `tenant` has heads of its own.
    pub fn has_tenant_heads(&self, tenant: TenantId) -> bool {
        self.tenant_heads
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&tenant)
    }

    /// As [`Understander::understand`], with `tenant`'s heads.
    pub fn understand_for(
        &self,
        tenant: TenantId,
        text: &str,
        history: &[&str],
    ) -> Result<Understanding, UnderstandError> {
        self.understand_with(&self.heads_for(tenant), text, history)
    }

    /// Understands `text` with the shared heads, given the buyer's previous
    /// messages in this conversation, oldest first (used only to spot
    /// repeats).
    pub fn understand(
        &self,
        text: &str,
        history: &[&str],
    ) -> Result<Understanding, UnderstandError> {
        self.understand_with(&self.heads(), text, history)
    }

    fn understand_with(
        &self,
        heads: &Heads,
        text: &str,
        history: &[&str],
    ) -> Result<Understanding, UnderstandError> {
        let entities = entities::extract(text);
        let patterns_ask_for_human = human::requests_human(text);
        let says_asked_before = binding::says_asked_before(text);
        let binding_request = binding::requests_binding(text);
        let lang = self.language.detect(text);
        if text.trim().is_empty() {
            return Ok(Understanding {
                lang,
                intent: OUT_OF_SCOPE.to_owned(),
                confidence: 0.0,
                out_of_scope: true,
                intent_top: Vec::new(),
                sentiment: None,
                anger: None,
                urgent: None,
                human_requested: patterns_ask_for_human,
                entities,
                repeated: None,
                says_asked_before,
                binding_request,
                learned_route: None,
            });
        }
        let start = history.len().saturating_sub(self.repeat.window);
        let earlier: Vec<(usize, &str)> = history[start..]
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(i, t)| (start + i, *t))
            .collect();
        // An earlier message about other orders asks something else, however
        // alike the words.
        let references = entities::references_among(&entities);
        let earlier: Vec<(usize, &str)> = earlier
            .into_iter()
            .filter(|(_, t)| same_orders(&references, &entities::order_references(t)))
            .collect();
        let mut batch = vec![text];
        batch.extend(earlier.iter().map(|(_, t)| *t));
        let vectors = self.embedder.embed_queries(&batch)?;
        let (current, previous) = vectors
            .split_first()
            .ok_or_else(|| UnderstandError::Invalid("the embedder returned no vector".into()))?;

        let intent = heads.intents.classify(current)?;
        let sentiment = match &heads.sentiment {
            Some(head) => {
                let p = head.classify(current)?;
                Some(Sentiment {
                    label: p.label,
                    confidence: p.confidence,
                })
            }
            None => None,
        };
        let anger = match &heads.anger {
            Some(head) => Some(anger_of(head, current)?),
            None => None,
        };
        let urgent = match &heads.urgent {
            Some(head) => Some(probability_of(head, current, "urgent")?),
            None => None,
        };
        let social = SOCIAL_INTENTS.contains(&intent.label.as_str());
        let repeated = if social {
            None
        } else {
            find_repeat(current, previous, &self.repeat).map(|m| RepeatMatch {
                index: earlier[m.index].0,
                similarity: m.similarity,
            })
        };
        let learned_route = heads.routes.find(current, &intent.label);
        let human_requested =
            patterns_ask_for_human || (intent.label == ASK_FOR_HUMAN && !intent.out_of_scope);
        Ok(Understanding {
            lang,
            intent: intent.label,
            confidence: intent.confidence,
            out_of_scope: intent.out_of_scope,
            intent_top: intent.top,
            sentiment,
            anger,
            urgent,
            human_requested,
            entities,
            repeated,
            says_asked_before,
            binding_request,
            learned_route,
        })
    }
}

/// Whether two messages can ask the same thing as far as their order and
/// tracking numbers go: they do unless both name some and share none.
fn same_orders(current: &[String], earlier: &[String]) -> bool {
    current.is_empty() || earlier.is_empty() || current.iter().any(|r| earlier.contains(r))
}

fn check_model(embedder: &dyn QueryEmbedder, heads: &Heads) -> Result<(), UnderstandError> {
    let all = [
        Some(&heads.intents),
        heads.sentiment.as_ref(),
        heads.anger.as_ref(),
        heads.urgent.as_ref(),
    ];
    for head in all.into_iter().flatten() {
        if head.model_id() != embedder.model_id() {
            return Err(UnderstandError::Invalid(format!(
                "a head was trained on `{}` vectors but the embedder is `{}`",
                head.model_id(),
                embedder.model_id()
            )));
        }
    }
    Ok(())
}

fn probability_of(
    head: &TextClassifier,
    vector: &[f32],
    label: &str,
) -> Result<f32, UnderstandError> {
    let p = head.head().probabilities(vector)?;
    Ok(head
        .head()
        .labels()
        .iter()
        .position(|l| l == label)
        .map_or(0.0, |i| p[i]))
}

fn anger_of(head: &TextClassifier, vector: &[f32]) -> Result<Anger, UnderstandError> {
    let p = head.head().probabilities(vector)?;
    let labels = head.head().labels();
    let calm = labels.iter().position(|l| l == "0").map_or(0.0, |i| p[i]);
    let best = (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap_or(0);
    Ok(Anger {
        level: labels[best].parse().unwrap_or(0),
        probability: 1.0 - calm,
    })
}
