//! Learned routes: a tenant's people said that a buyer message should have
//! gone to a person (`person`), or that the AI could have answered it
//! (`auto`). Each such correction is kept with its e5 query vector; a new
//! message of that tenant whose vector is within [`ROUTE_MIN_SIMILARITY`]
//! of one is routed as the person said: any message near a `person`
//! exemplar, and a message near an `auto` exemplar only when it is read as
//! the same intent. A `person` route wins over an `auto` one.
//!
//! This module only finds the match; what a match may change is the
//! policy's (`pipeline::policy`), which never lets a learned `auto` route
//! past any other gate. Pure over vectors once built; building embeds.

use serde::{Deserialize, Serialize};

use super::repeat::cosine;
use super::{QueryEmbedder, UnderstandError};

/// Cosine similarity of multilingual-e5-small query vectors at or above
/// which a message takes a learned route. Calibrated on the shipped
/// evaluation set (162 messages, nine languages): of its 12,106 pairs of
/// messages with different intents, 22 reach 0.90 ("what sizes does this
/// shirt come in?" and "how much is shipping for this shirt?" score
/// 0.92), none reaches 0.93 (the closest is 0.929); rewordings of one
/// message score 0.99 and more. 0.94 leaves a margin above every
/// different question; the price is that a translation of the corrected
/// message (about 0.90) is not reached: a route is learned per language.
/// Tested by
/// `learning_routes::no_two_evaluation_messages_of_different_intents_are_within_the_route_threshold`.
pub const ROUTE_MIN_SIMILARITY: f32 = 0.94;

/// Where a person said a message should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// A person was needed.
    Person,
    /// The AI could have answered.
    Auto,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Person => "person",
            Route::Auto => "auto",
        }
    }

    pub fn parse(raw: &str) -> Option<Route> {
        match raw {
            "person" => Some(Route::Person),
            "auto" => Some(Route::Auto),
            _ => None,
        }
    }
}

/// A route correction to learn: the buyer's text, the route, and (for
/// `auto`) the intent it is bound to.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteExample {
    pub text: String,
    pub route: Route,
    pub intent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RouteExemplar {
    text: String,
    route: Route,
    intent: Option<String>,
    vector: Vec<f32>,
}

/// The learned route a message takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteMatch {
    pub route: Route,
    pub similarity: f32,
    /// The corrected message it is near.
    pub exemplar: String,
}

/// A tenant's learned routes with their vectors; empty for the shared
/// heads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LearnedRoutes {
    exemplars: Vec<RouteExemplar>,
}

impl LearnedRoutes {
    /// Embeds `examples` (one batch) into routes.
    pub fn embed(
        embedder: &dyn QueryEmbedder,
        examples: &[RouteExample],
    ) -> Result<LearnedRoutes, UnderstandError> {
        if examples.is_empty() {
            return Ok(LearnedRoutes::default());
        }
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let vectors = embedder.embed_queries(&texts)?;
        if vectors.len() != examples.len() {
            return Err(UnderstandError::Invalid(format!(
                "the embedder returned {} vectors for {} route exemplars",
                vectors.len(),
                examples.len()
            )));
        }
        Ok(LearnedRoutes {
            exemplars: examples
                .iter()
                .zip(vectors)
                .map(|(e, vector)| RouteExemplar {
                    text: e.text.clone(),
                    route: e.route,
                    intent: e.intent.clone(),
                    vector,
                })
                .collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.exemplars.is_empty()
    }

    pub fn len(&self) -> usize {
        self.exemplars.len()
    }

    /// The route a message with `vector`, read as `intent`, takes: the
    /// nearest `person` exemplar within [`ROUTE_MIN_SIMILARITY`], else the
    /// nearest `auto` exemplar of the same intent within it, else none.
    pub fn find(&self, vector: &[f32], intent: &str) -> Option<RouteMatch> {
        let nearest = |route: Route| {
            self.exemplars
                .iter()
                .filter(|e| e.route == route)
                .filter(|e| route == Route::Person || e.intent.as_deref() == Some(intent))
                .map(|e| (e, cosine(vector, &e.vector)))
                .filter(|(_, s)| *s >= ROUTE_MIN_SIMILARITY)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(e, similarity)| RouteMatch {
                    route,
                    similarity,
                    exemplar: e.text.clone(),
                })
        };
        nearest(Route::Person).or_else(|| nearest(Route::Auto))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors spelled out per text, so similarities are known.
    struct Fixed;

    fn vector_of(text: &str) -> Vec<f32> {
        match text {
            "where is my parcel, three weeks now" => vec![1.0, 0.0, 0.0],
            // cos = 0.95 with the one above
            "my parcel is three weeks late" => vec![0.95, 0.312, 0.0],
            // cos = 0.8: a neighbour's topic, not a rewording
            "where is my parcel" => vec![0.8, 0.6, 0.0],
            "do you have it in red" => vec![0.0, 0.0, 1.0],
            "is there a red one" => vec![0.0, 0.2, 0.98],
            _ => vec![0.0, 1.0, 0.0],
        }
    }

    impl QueryEmbedder for Fixed {
        fn model_id(&self) -> &str {
            "fixed"
        }
        fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, UnderstandError> {
            Ok(texts.iter().map(|t| vector_of(t)).collect())
        }
    }

    fn example(text: &str, route: Route, intent: Option<&str>) -> RouteExample {
        RouteExample {
            text: text.into(),
            route,
            intent: intent.map(str::to_owned),
        }
    }

    #[test]
    fn routes_reach_rewordings_not_neighbours_and_auto_only_the_same_intent() {
        let routes = LearnedRoutes::embed(
            &Fixed,
            &[
                example("where is my parcel, three weeks now", Route::Person, None),
                example("do you have it in red", Route::Auto, Some("colour_options")),
            ],
        )
        .unwrap();
        assert_eq!(routes.len(), 2);
        // (message, intent read, route expected)
        let table: &[(&str, &str, Option<Route>)] = &[
            (
                "my parcel is three weeks late",
                "order_status",
                Some(Route::Person),
            ),
            (
                "my parcel is three weeks late",
                "greeting",
                Some(Route::Person),
            ),
            ("where is my parcel", "order_status", None),
            ("is there a red one", "colour_options", Some(Route::Auto)),
            ("is there a red one", "stock_availability", None),
            ("something else entirely", "greeting", None),
        ];
        for (text, intent, expected) in table {
            let found = routes.find(&vector_of(text), intent);
            assert_eq!(
                found.as_ref().map(|m| m.route),
                *expected,
                "{text} as {intent}"
            );
            if let Some(m) = found {
                assert!(m.similarity >= ROUTE_MIN_SIMILARITY);
            }
        }
    }

    #[test]
    fn a_person_route_wins_over_an_auto_one() {
        let routes = LearnedRoutes::embed(
            &Fixed,
            &[
                example("do you have it in red", Route::Auto, Some("colour_options")),
                example("is there a red one", Route::Person, None),
            ],
        )
        .unwrap();
        let found = routes
            .find(&vector_of("do you have it in red"), "colour_options")
            .unwrap();
        assert_eq!(found.route, Route::Person);
        assert_eq!(found.exemplar, "is there a red one");
    }

    #[test]
    fn no_routes_match_nothing() {
        let routes = LearnedRoutes::embed(&Fixed, &[]).unwrap();
        assert!(routes.is_empty());
        assert_eq!(routes.find(&[1.0, 0.0, 0.0], "order_status"), None);
    }
}
