//! One tenant's heads trained and measured, blocking: the shipped
//! exemplars plus the tenant's learned ones fitted into new heads (its
//! route corrections embedded as learned routes), and the labelled cases
//! read by the heads in use and by the new ones (intent and learned
//! route), compared.
//! Reads the shipped evaluation set. Knows nothing of the store or of
//! which tenant it trains for.

use std::path::Path;

use serde::Deserialize;

use super::measure::{compare, Case, CaseSource, Comparison, Reading};
use crate::understand::routes::{LearnedRoutes, RouteExample};
use crate::understand::{Example, ExemplarSet, Heads, QueryEmbedder, TrainConfig, UnderstandError};

/// What a tenant taught: intent exemplars and route corrections.
#[derive(Debug, Clone, Default)]
pub struct Taught {
    pub intents: Vec<Example>,
    pub routes: Vec<RouteExample>,
}

/// The shipped exemplars plus the learned intents, fitted as the shared
/// heads are (same order, same configuration), so no learned exemplars
/// gives the shared heads exactly; with the learned routes embedded.
pub fn tenant_heads(
    embedder: &dyn QueryEmbedder,
    shipped: &ExemplarSet,
    taught: &Taught,
) -> Result<Heads, UnderstandError> {
    let mut intents = shipped.intents.clone();
    intents.extend(taught.intents.iter().cloned());
    let mut heads = Heads::train(
        embedder,
        &intents,
        &shipped.sentiment,
        &TrainConfig::default(),
    )?;
    heads.routes = LearnedRoutes::embed(embedder, &taught.routes)?;
    Ok(heads)
}

/// The intent each of `cases` is read as by `heads`, and the learned
/// route it takes.
pub fn read_cases(
    embedder: &dyn QueryEmbedder,
    heads: &Heads,
    cases: &[Case],
) -> Result<Vec<Reading>, UnderstandError> {
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    embedder
        .embed_queries(&texts)?
        .iter()
        .map(|v| {
            let intent = heads.intents.classify(v)?.label;
            let route = heads.routes.find(v, &intent).map(|m| m.route);
            Ok(Reading { intent, route })
        })
        .collect()
}

/// Trains the candidate heads and compares them with `current` on `cases`.
pub fn train_and_measure(
    embedder: &dyn QueryEmbedder,
    shipped: &ExemplarSet,
    taught: &Taught,
    current: &Heads,
    cases: &[Case],
) -> Result<(Heads, Comparison), UnderstandError> {
    let candidate = tenant_heads(embedder, shipped, taught)?;
    let before = read_cases(embedder, current, cases)?;
    let after = read_cases(embedder, &candidate, cases)?;
    Ok((candidate, compare(cases, &before, &after)))
}

#[derive(Deserialize)]
struct EvalLine {
    message: String,
    expected_intent: String,
    expected_layer: u8,
}

/// The cases of an evaluation file laid out like `kb/eval/replies.jsonl`
/// (other fields are ignored); a bad line is an error naming `FILE:LINE`.
pub fn eval_cases(path: &Path) -> Result<Vec<Case>, UnderstandError> {
    let raw = std::fs::read_to_string(path).map_err(|e| UnderstandError::Exemplars {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    raw.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            let parsed: EvalLine =
                serde_json::from_str(line).map_err(|e| UnderstandError::BadExemplar {
                    path: path.to_path_buf(),
                    line: n + 1,
                    reason: e.to_string(),
                })?;
            Ok(Case {
                text: parsed.message,
                intent: parsed.expected_intent,
                source: CaseSource::EvalSet,
                needs_person: parsed.expected_layer >= 3,
                routine: parsed.expected_layer == 1,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_evaluation_set_parses_with_cases_that_need_a_person() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kb/eval/replies.jsonl");
        let cases = eval_cases(&path).unwrap();
        assert!(cases.len() >= 100, "{}", cases.len());
        assert!(cases.iter().any(|c| c.needs_person));
        assert!(cases.iter().any(|c| !c.needs_person));
    }

    #[test]
    fn a_bad_evaluation_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval.jsonl");
        std::fs::write(
            &path,
            "{\"message\": \"hi\", \"expected_intent\": \"greeting\", \"expected_layer\": 1}\n\n{\"message\": \"x\"}\n",
        )
        .unwrap();
        let shown = eval_cases(&path).unwrap_err().to_string();
        assert!(shown.contains("eval.jsonl:3: "), "{shown}");
    }
}
