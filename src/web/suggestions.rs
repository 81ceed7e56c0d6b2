//! The suggested FAQ entries on the workbench's learning page: knowledge
//! gaps a person answered, shown with the buyers' questions and the
//! person's answer, each with an editable form to accept it into the
//! knowledge base (`POST /app/learning/faq/{id}/accept`) or dismiss it
//! (`…/dismiss`). Only people who see every shop are shown them (the
//! questions come from every shop) and only agents and admins decide.
//! An entry is measured before it is added; one that would change a
//! confirmed answer is refused and its suggestion shows the measurement.
//! The suggestions themselves are `crate::learning::suggestions`'.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use chrono::Utc;
use serde::Deserialize;

use super::session::Viewer;
use super::view::ago;
use super::{see_other, WebError, WebState};
use crate::learning::faq_trial::{FaqTrial, TrialChange};
use crate::learning::suggestions::{self, FaqEdit};
use crate::learning::LearningError;
use crate::store::suggestions::SuggestionStatus;
use crate::store::users::ShopAccess;

pub struct SuggestionView {
    pub id: String,
    pub asked: i64,
    pub lang: String,
    /// One question a line, as the form edits them.
    pub questions: String,
    pub answer: String,
    pub when: String,
    /// Whether its entry was measured (and refused: a pending suggestion
    /// that was measured is one whose entry was refused).
    pub measured: bool,
    /// What the measurement read and decided, in a sentence.
    pub verdict: String,
    /// Confirmed questions that would be answered differently.
    pub regressions: Vec<String>,
    /// Past questions that would now find the entry.
    pub finds: Vec<String>,
}

/// How a stored measurement reads on the page.
fn trial_view(trial: Option<&serde_json::Value>) -> (bool, String, Vec<String>, Vec<String>) {
    let Some(trial) = trial.and_then(|t| serde_json::from_value::<FaqTrial>(t.clone()).ok()) else {
        return (false, String::new(), Vec::new(), Vec::new());
    };
    let questions = |n: usize| match n {
        1 => "1 question".to_string(),
        n => format!("{n} questions"),
    };
    let read = format!(
        "Measured on {} people confirmed and {} your FAQ could not answer",
        questions(trial.confirmed),
        questions(trial.asked)
    );
    let verdict = if trial.promoted {
        format!("{read}: nothing confirmed changes.")
    } else {
        format!("{read}. Not added: {}.", trial.reasons.join("; "))
    };
    let change = |c: &TrialChange| {
        format!(
            "{} — now {}, with it {}",
            c.text,
            c.before.as_deref().unwrap_or("no FAQ answer"),
            c.after.as_deref().unwrap_or("no FAQ answer")
        )
    };
    (
        true,
        verdict,
        trial.regressions.iter().map(change).collect(),
        trial.finds.iter().map(|c| c.text.clone()).collect(),
    )
}

/// Whether `viewer` may see suggestions: they quote every shop's buyers.
pub fn may_see(viewer: &Viewer) -> bool {
    matches!(viewer.user.shops, ShopAccess::All)
}

/// The tenant's pending suggestions, read again from the history first
/// when the embedding model is loaded; none for people limited to some
/// shops.
pub async fn pending(state: &WebState, viewer: &Viewer) -> Result<Vec<SuggestionView>, WebError> {
    if !may_see(viewer) {
        return Ok(Vec::new());
    }
    let tenant = viewer.user.tenant_id;
    let now = Utc::now();
    if let Some(embedder) = state.app.kb.embedder() {
        let embedder = state.app.learning.gap_embedder(embedder);
        suggestions::refresh(state.app.store.as_ref(), tenant, embedder, now).await?;
    }
    let list = state
        .app
        .store
        .faq_suggestions(tenant, Some(SuggestionStatus::Pending))
        .await?;
    Ok(list
        .into_iter()
        .map(|s| {
            let (measured, verdict, regressions, finds) = trial_view(s.trial.as_ref());
            SuggestionView {
                id: s.id.to_string(),
                asked: s.asked,
                lang: s.lang,
                questions: s.questions.join("\n"),
                answer: s.answer,
                when: ago(s.updated_at, now),
                measured,
                verdict,
                regressions,
                finds,
            }
        })
        .collect())
}

fn decider(viewer: &Viewer, id: &str) -> Result<uuid::Uuid, WebError> {
    viewer.require_agent()?;
    if !may_see(viewer) {
        return Err(WebError::Forbidden(
            "FAQ suggestions come from every shop; ask someone who sees them all".into(),
        ));
    }
    id.parse()
        .map_err(|_| WebError::NotFound(format!("faq suggestion {id}")))
}

#[derive(Debug, Deserialize)]
pub struct AcceptForm {
    csrf: String,
    questions: String,
    answer: String,
}

/// Accepts a suggestion as edited in its form: one question a line.
pub async fn accept(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<AcceptForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    let id = decider(&viewer, &id)?;
    let edit = FaqEdit {
        questions: Some(form.questions.lines().map(str::to_owned).collect()),
        answer: Some(form.answer),
    };
    let actor = viewer.user.actor();
    let accepting = suggestions::Accepting {
        store: state.app.store.as_ref(),
        kb: &state.app.kb,
        tenant: viewer.user.tenant_id,
        actor: &actor,
        faq_min_similarity: state.app.learning.faq_min_similarity(),
    };
    let entry = match suggestions::accept(&accepting, id, &edit).await {
        Ok((_, entry, _)) => entry,
        // The measurement is stored with the suggestion and shown there.
        Err(LearningError::Refused(_)) => {
            return Ok(see_other(&format!(
                "/app/learning?done=faq_refused#suggestion-{id}"
            )))
        }
        Err(err) => return Err(err.into()),
    };
    Ok(see_other(&format!(
        "/app/learning?done=accepted&at={}#faq-suggestions",
        entry.id()
    )))
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn dismiss(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    let id = decider(&viewer, &id)?;
    suggestions::dismiss(
        state.app.store.as_ref(),
        viewer.user.tenant_id,
        id,
        &viewer.user.actor(),
    )
    .await?;
    Ok(see_other("/app/learning?done=dismissed#faq-suggestions"))
}

#[cfg(test)]
mod tests {
    use super::trial_view;

    #[test]
    fn a_measurement_reads_as_a_sentence_with_its_counts() {
        let trial = serde_json::json!({
            "entry": "faq:cabin-bag", "measured_at": "2026-12-07T10:00:00Z",
            "confirmed": 1, "asked": 3, "promoted": true,
            "reasons": [], "regressions": [], "finds": []
        });
        let (measured, verdict, _, _) = trial_view(Some(&trial));
        assert!(measured);
        assert_eq!(
            verdict,
            "Measured on 1 question people confirmed and 3 questions your FAQ could not \
             answer: nothing confirmed changes."
        );
        assert!(!trial_view(None).0);
    }
}
