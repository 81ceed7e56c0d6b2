//! The suggested FAQ entries on the workbench's learning page: knowledge
//! gaps a person answered, shown with the buyers' questions and the
//! person's answer, each with an editable form to accept it into the
//! knowledge base (`POST /app/learning/faq/{id}/accept`) or dismiss it
//! (`…/dismiss`). Only people who see every shop are shown them (the
//! questions come from every shop) and only agents and admins decide.
//! The suggestions themselves are `crate::learning::suggestions`'.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use chrono::Utc;
use serde::Deserialize;

use super::session::Viewer;
use super::view::ago;
use super::{see_other, WebError, WebState};
use crate::learning::suggestions::{self, FaqEdit};
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
        .map(|s| SuggestionView {
            id: s.id.to_string(),
            asked: s.asked,
            lang: s.lang,
            questions: s.questions.join("\n"),
            answer: s.answer,
            when: ago(s.updated_at, now),
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
    let (_, entry) = suggestions::accept(
        state.app.store.as_ref(),
        &state.app.kb,
        viewer.user.tenant_id,
        id,
        &edit,
        &viewer.user.actor(),
    )
    .await?;
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
