//! The learning page of the workbench (`/app/learning`): the tenant's
//! classifier versions with their before/after figures and why each was
//! promoted or refused, the corrections its people made, and the rollback
//! button; and the intent and route corrections an agent makes from a
//! conversation (`POST /app/c/{id}/intent`, `POST /app/c/{id}/route`); the
//! suggested FAQ entries section is
//! `suggestions`'. The loop itself is `crate::learning`'s.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Form;
use std::collections::HashMap;

use chrono::Utc;
use serde::Deserialize;

use super::session::Viewer;
use super::view::{ago, render, Nav};
use super::{see_other, WebError, WebState};
use crate::domain::{ConversationId, MessageId};
use crate::learning::{Comparison, Correction, LearningError, RouteCorrection};
use crate::store::learning::{ExemplarKind, HeadVersion, LearnedExemplar};
use crate::understand::routes::Route;

impl From<LearningError> for WebError {
    fn from(err: LearningError) -> Self {
        match err {
            LearningError::NotReady(message) => WebError::Unavailable(message),
            LearningError::Invalid(message) => WebError::Invalid(message),
            LearningError::NotFound(what) => WebError::NotFound(what),
            LearningError::Conflict(message) | LearningError::Refused(message) => {
                WebError::Conflict(message)
            }
            LearningError::Training(message) => WebError::Internal(message),
            LearningError::Store(err) => WebError::Store(err),
        }
    }
}

/// One figure before and after, as `7 of 9 → 8 of 9`.
pub struct FigureView {
    pub name: &'static str,
    /// `7 of 9 → 8 of 9`, or why there is nothing to count.
    pub shown: String,
    pub worse: bool,
}

pub struct VersionView {
    pub number: i64,
    pub when: String,
    pub by: String,
    pub exemplars: usize,
    pub verdict: &'static str,
    pub active: bool,
    pub reason: String,
    pub figures: Vec<FigureView>,
    /// "text: expected, read before → after" for each case that changed.
    pub regressions: Vec<String>,
    pub fixes: Vec<String>,
}

pub struct ExemplarView {
    pub text: String,
    pub previous: String,
    pub intent: String,
    pub status: &'static str,
    pub by: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "web/learning.html")]
struct LearningPage {
    nav: Nav,
    using: &'static str,
    can_roll_back: bool,
    versions: Vec<VersionView>,
    exemplars: Vec<ExemplarView>,
    /// What the last action did, said once after its redirect.
    notice: Option<Notice>,
    show_suggestions: bool,
    can_decide: bool,
    suggestions: Vec<super::suggestions::SuggestionView>,
}

fn figure(
    name: &'static str,
    before: crate::learning::Score,
    after: crate::learning::Score,
) -> FigureView {
    let of = |s: crate::learning::Score| format!("{} of {}", s.correct, s.total);
    FigureView {
        name,
        shown: if before.total == 0 && after.total == 0 {
            "nothing to measure yet".into()
        } else {
            format!("{} → {}", of(before), of(after))
        },
        worse: after.correct < before.correct,
    }
}

/// The people of a tenant by the actor string their actions record
/// (`user:<id>`), to show names instead of ids.
struct People(HashMap<String, String>);

impl People {
    fn name(&self, actor: &str) -> String {
        match self.0.get(actor) {
            Some(name) => name.clone(),
            None if actor.starts_with("token:") => "an API token".into(),
            None => actor.to_owned(),
        }
    }
}

fn version_view(v: HeadVersion, people: &People, now: chrono::DateTime<Utc>) -> VersionView {
    let comparison: Option<Comparison> = serde_json::from_value(v.comparison.clone()).ok();
    let changes = |list: &[crate::learning::measure::Change]| {
        list.iter()
            .map(|c| {
                let route = |r: Option<Route>| r.map_or("none", Route::as_str);
                let routed = if c.route_before != c.route_after {
                    format!(
                        ", learned route {} → {}",
                        route(c.route_before),
                        route(c.route_after)
                    )
                } else {
                    String::new()
                };
                format!(
                    "{}: {}, read {} → {}{routed}",
                    c.text, c.expected, c.before, c.after
                )
            })
            .collect()
    };
    VersionView {
        number: v.number,
        when: ago(v.created_at, now),
        by: people.name(&v.created_by),
        exemplars: v.exemplar_ids.len(),
        verdict: if v.promoted { "promoted" } else { "refused" },
        active: v.active,
        reason: v.reason.unwrap_or_default(),
        figures: comparison
            .as_ref()
            .map(|c| {
                vec![
                    figure(
                        "Routing (your confirmed history)",
                        c.before.routing,
                        c.after.routing,
                    ),
                    figure(
                        "Accuracy (evaluation set)",
                        c.before.accuracy,
                        c.after.accuracy,
                    ),
                    figure(
                        "Safety (messages that need a person)",
                        c.before.safety,
                        c.after.safety,
                    ),
                    figure(
                        "Routes (routine messages kept from a person)",
                        c.before.routes,
                        c.after.routes,
                    ),
                ]
            })
            .unwrap_or_default(),
        regressions: comparison
            .as_ref()
            .map(|c| changes(&c.regressions))
            .unwrap_or_default(),
        fixes: comparison
            .as_ref()
            .map(|c| changes(&c.fixes))
            .unwrap_or_default(),
    }
}

/// The outcome of an action on this page, carried by its redirect
/// (`?done=…`); only these fixed sentences are shown, never text from the
/// query itself.
pub struct Notice {
    pub text: &'static str,
    /// A link to what the action made or came from, with its label.
    pub link: Option<(String, &'static str)>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    done: Option<String>,
    /// The FAQ entry an acceptance added, or the conversation corrected.
    at: Option<String>,
}

/// Whether `id` is safe and plain enough to put in a link's path.
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The notice for `query`; `retraining` says whether a correction is
/// still being retrained and measured.
fn notice(query: &PageQuery, retraining: bool) -> Option<Notice> {
    let at = query.at.as_deref().filter(|id| plain_id(id));
    let (text, link) = match query.done.as_deref()? {
        "corrected" if retraining => (
            "Correction saved. kedai is retraining your classifiers and measuring them; the result appears under Versions when it is decided (reload to see it).",
            at.map(|c| (format!("/app/c/{c}"), "Back to the conversation")),
        ),
        "corrected" => (
            "Correction saved and measured: its result is under Versions.",
            at.map(|c| (format!("/app/c/{c}"), "Back to the conversation")),
        ),
        "rolled_back" => (
            "Rolled back: the previous version is in use again.",
            None,
        ),
        "accepted" => (
            "Added to your FAQ; buyers asking it are answered from the new entry.",
            at.map(|e| (format!("/app/kb/faq/{e}"), "Open the entry")),
        ),
        "dismissed" => ("Suggestion dismissed; nothing was added to your FAQ.", None),
        "faq_refused" => (
            "Not added: the entry would change the answer of questions your people confirmed. What it would change is shown with the suggestion; edit its questions and try again, or dismiss it.",
            None,
        ),
        _ => return None,
    };
    Some(Notice { text, link })
}

pub async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<PageQuery>,
) -> Result<Response, WebError> {
    let tenant = viewer.user.tenant_id;
    let (versions, exemplars) = state.app.learning.overview(tenant).await?;
    let now = Utc::now();
    let active = versions.iter().any(|v| v.active);
    let retraining = exemplars
        .iter()
        .any(|e| e.status == crate::store::learning::ExemplarStatus::Pending);
    let people = People(
        state
            .app
            .store
            .list_users(tenant)
            .await?
            .into_iter()
            .map(|u| (u.actor(), u.display_name))
            .collect(),
    );
    let suggestions = super::suggestions::pending(&state, &viewer).await?;
    render(&LearningPage {
        notice: notice(&query, retraining),
        show_suggestions: super::suggestions::may_see(&viewer),
        can_decide: viewer.user.role.can_act(),
        suggestions,
        nav: Nav::new(&viewer, "learning"),
        using: if active {
            "classifiers retrained with your corrections"
        } else {
            "kedai's shared classifiers"
        },
        can_roll_back: active && viewer.user.role.is_admin(),
        versions: versions
            .into_iter()
            .map(|v| version_view(v, &people, now))
            .collect(),
        exemplars: exemplars
            .into_iter()
            .rev()
            .map(|e| exemplar_view(e, &people, now))
            .collect(),
    })
}

fn exemplar_view(e: LearnedExemplar, people: &People, now: chrono::DateTime<Utc>) -> ExemplarView {
    let (previous, intent) = match e.kind {
        ExemplarKind::Intent => (
            e.previous_label.unwrap_or_else(|| "not decided".into()),
            e.label,
        ),
        ExemplarKind::Route => (
            format!(
                "{}, {}",
                e.route_intent.unwrap_or_default(),
                e.previous_label.unwrap_or_default()
            ),
            match Route::parse(&e.label) {
                Some(Route::Person) => "route: a person".into(),
                Some(Route::Auto) => "route: the AI".into(),
                None => e.label,
            },
        ),
    };
    ExemplarView {
        text: e.text,
        previous,
        intent,
        status: e.status.as_str(),
        by: people.name(&e.created_by),
        when: ago(e.created_at, now),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// The rollback button: an admin's one action.
pub async fn rollback(
    State(state): State<WebState>,
    viewer: Viewer,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_admin()?;
    state
        .app
        .learning
        .rollback(viewer.user.tenant_id, &viewer.user.actor())
        .await?;
    Ok(see_other("/app/learning?done=rolled_back"))
}

#[derive(Debug, Deserialize)]
pub struct IntentForm {
    csrf: String,
    message: String,
    intent: String,
}

/// An agent's intent correction from the conversation page.
pub async fn correct(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<IntentForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_agent()?;
    let tenant = viewer.user.tenant_id;
    let not_found = || WebError::NotFound(format!("conversation {id}"));
    let conversation: ConversationId = id.parse().map_err(|_| not_found())?;
    let message: MessageId = form
        .message
        .parse()
        .map_err(|_| WebError::Invalid(format!("not a message id: {:?}", form.message)))?;
    viewer.conversation_shop(&state, conversation).await?;
    let detail = state
        .app
        .store
        .conversation(tenant, conversation)
        .await?
        .ok_or_else(not_found)?;
    if !detail.messages.iter().any(|m| m.id == message) {
        return Err(WebError::NotFound(format!("message {message}")));
    }
    state
        .app
        .learning
        .correct(
            tenant,
            &Correction {
                message,
                intent: form.intent.trim().to_owned(),
                actor: viewer.user.actor(),
            },
        )
        .await?;
    state
        .app
        .learning
        .retrain_in_background(tenant, viewer.user.actor());
    Ok(see_other(&format!(
        "/app/learning?done=corrected&at={conversation}#corrections"
    )))
}

#[derive(Debug, Deserialize)]
pub struct RouteForm {
    csrf: String,
    message: String,
    route: String,
}

/// An agent's route correction from the conversation page: "this needed a
/// person" or "the AI could have answered this".
pub async fn correct_route(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<RouteForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_agent()?;
    let tenant = viewer.user.tenant_id;
    let not_found = || WebError::NotFound(format!("conversation {id}"));
    let conversation: ConversationId = id.parse().map_err(|_| not_found())?;
    let message: MessageId = form
        .message
        .parse()
        .map_err(|_| WebError::Invalid(format!("not a message id: {:?}", form.message)))?;
    let route = Route::parse(form.route.trim()).ok_or_else(|| {
        WebError::Invalid(format!(
            "route must be person or auto, got {:?}",
            form.route
        ))
    })?;
    viewer.conversation_shop(&state, conversation).await?;
    let detail = state
        .app
        .store
        .conversation(tenant, conversation)
        .await?
        .ok_or_else(not_found)?;
    if !detail.messages.iter().any(|m| m.id == message) {
        return Err(WebError::NotFound(format!("message {message}")));
    }
    state
        .app
        .learning
        .correct_route(
            tenant,
            &RouteCorrection {
                message,
                route,
                actor: viewer.user.actor(),
            },
            &state.app.policy,
        )
        .await?;
    state
        .app
        .learning
        .retrain_in_background(tenant, viewer.user.actor());
    Ok(see_other(&format!(
        "/app/learning?done=corrected&at={conversation}#corrections"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(done: &str, at: Option<&str>) -> PageQuery {
        PageQuery {
            done: Some(done.into()),
            at: at.map(str::to_owned),
        }
    }

    /// `done`, `at`, whether retraining, a word of the notice, its link.
    type Case = (
        &'static str,
        Option<&'static str>,
        bool,
        Option<&'static str>,
        Option<&'static str>,
    );

    #[test]
    fn notices_are_fixed_sentences_and_links_only_to_plain_ids() {
        let cases: [Case; 8] = [
            (
                "corrected",
                Some("0190-ab"),
                true,
                Some("retraining"),
                Some("/app/c/0190-ab"),
            ),
            (
                "corrected",
                Some("0190-ab"),
                false,
                Some("measured"),
                Some("/app/c/0190-ab"),
            ),
            (
                "accepted",
                Some("learned-1"),
                false,
                Some("Added"),
                Some("/app/kb/faq/learned-1"),
            ),
            (
                "accepted",
                Some("\"><script>x</script>"),
                false,
                Some("Added"),
                None,
            ),
            ("accepted", Some("../../admin"), false, Some("Added"), None),
            ("dismissed", None, false, Some("dismissed"), None),
            ("faq_refused", Some("x"), false, Some("Not added"), None),
            ("<b>anything</b>", Some("x"), false, None, None),
        ];
        for (done, at, retraining, text, link) in cases {
            let shown = notice(&query(done, at), retraining);
            assert_eq!(
                shown
                    .as_ref()
                    .map(|n| text.is_some_and(|t| n.text.contains(t))),
                text.map(|_| true),
                "{done} {at:?}"
            );
            assert_eq!(
                shown.and_then(|n| n.link).map(|(href, _)| href).as_deref(),
                link,
                "{done} {at:?}"
            );
        }
        assert!(notice(&PageQuery::default(), true).is_none());
    }
}
