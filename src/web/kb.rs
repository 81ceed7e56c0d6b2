//! The knowledge base pages: the entries (by kind, or a search through
//! the same hybrid retrieval the AI uses), one entry with its history, and
//! editing or adding one in the kb folder format (docs/kb-format.md).
//! Every change goes through `KbService`, so it is versioned and audited.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Form;
use chrono::Utc;
use serde::Deserialize;

use super::inbox::urlencode;
use super::session::Viewer;
use super::view::{ago, render, stamp, Nav};
use super::{see_other, WebError, WebState};
use crate::kb::{KbEntry, KbQuery};
use crate::store::{KbKind, KbRecord, TranslationKey, TranslationReview, TranslationStatus};

fn parse_kind(raw: &str) -> Result<KbKind, WebError> {
    KbKind::ALL
        .into_iter()
        .find(|k| k.as_str() == raw)
        .ok_or_else(|| WebError::NotFound(format!("knowledge-base kind {raw:?}")))
}

/// An entry's title: its first question, its name, its title, or its id.
fn title(record: &KbRecord) -> String {
    let body = &record.document.body;
    body.pointer("/questions/0")
        .or_else(|| body.get("name"))
        .or_else(|| body.get("title"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| record.document.id.clone())
}

pub struct KindOption {
    pub name: &'static str,
    pub selected: bool,
}

pub struct EntryRow {
    pub kind: &'static str,
    pub id: String,
    pub lang: String,
    pub title: String,
    pub version: i64,
    pub updated: String,
    pub href: String,
    pub snippet: String,
}

#[derive(Template)]
#[template(path = "web/kb.html")]
struct KbPage {
    nav: Nav,
    query: String,
    kinds: Vec<&'static str>,
    kind_options: Vec<KindOption>,
    rows: Vec<EntryRow>,
    notice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct KbListQuery {
    q: Option<String>,
    kind: Option<String>,
}

fn href(kind: KbKind, id: &str) -> String {
    format!("/app/kb/{}/{}", kind.as_str(), urlencode(id))
}

pub async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<KbListQuery>,
) -> Result<Response, WebError> {
    let tenant = viewer.user.tenant_id;
    let kind = query
        .kind
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(parse_kind)
        .transpose()?;
    let text = query.q.as_deref().map(str::trim).unwrap_or("");
    let now = Utc::now();
    let (rows, notice) = if text.is_empty() {
        let records = state.app.kb.list(tenant, kind).await?;
        let rows = records
            .iter()
            .map(|r| EntryRow {
                kind: r.document.kind.as_str(),
                id: r.document.id.clone(),
                lang: r.document.lang.clone(),
                title: title(r),
                version: r.version,
                updated: ago(r.updated_at, now),
                href: href(r.document.kind, &r.document.id),
                snippet: String::new(),
            })
            .collect();
        (rows, None)
    } else {
        let search = KbQuery::parse(text, Some(20), None, kind.map(|k| vec![k]))?;
        let results = state.app.kb.search(tenant, &search).await?;
        let rows = results
            .hits
            .into_iter()
            .map(|h| EntryRow {
                kind: h.kind.as_str(),
                href: href(h.kind, &h.id),
                id: h.id,
                lang: h.lang,
                title: h.title,
                version: 0,
                updated: format!("score {:.3}", h.score),
                snippet: h.text.chars().take(200).collect(),
            })
            .collect();
        (rows, results.degraded)
    };
    render(&KbPage {
        nav: Nav::new(&viewer, "kb"),
        query: text.to_owned(),
        kinds: KbKind::ALL.iter().map(|k| k.as_str()).collect(),
        kind_options: KbKind::ALL
            .into_iter()
            .map(|k| KindOption {
                name: k.as_str(),
                selected: kind == Some(k),
            })
            .collect(),
        rows,
        notice,
    })
}

pub struct VersionRow {
    pub version: i64,
    pub actor: String,
    pub at: String,
    pub deleted: bool,
    pub body: String,
}

#[derive(Template)]
#[template(path = "web/kb_entry.html")]
struct EntryPage {
    nav: Nav,
    kind: &'static str,
    id: String,
    is_new: bool,
    title: String,
    body: String,
    versions: Vec<VersionRow>,
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

pub async fn entry(
    State(state): State<WebState>,
    viewer: Viewer,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let kind = parse_kind(&kind)?;
    let tenant = viewer.user.tenant_id;
    let record = state.app.kb.get(tenant, kind, &id).await?;
    let versions = state.app.kb.history(tenant, kind, &id).await?;
    render(&EntryPage {
        nav: Nav::new(&viewer, "kb"),
        kind: kind.as_str(),
        title: title(&record),
        body: pretty(&record.document.body),
        id,
        is_new: false,
        versions: versions
            .into_iter()
            .rev()
            .map(|v| VersionRow {
                version: v.version,
                actor: v.actor,
                at: stamp(v.at),
                deleted: v.body.is_none(),
                body: v.body.as_ref().map(pretty).unwrap_or_default(),
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize)]
pub struct NewQuery {
    kind: Option<String>,
}

/// A starting body per kind, in the kb folder format.
fn example(kind: KbKind) -> serde_json::Value {
    match kind {
        KbKind::Faq => serde_json::json!({
            "questions": ["How long does delivery take?"],
            "answer": "Orders ship within 24 hours and arrive in 3 to 5 days.",
            "tags": [],
            "lang": "en"
        }),
        KbKind::Policy => serde_json::json!({
            "title": "Returns", "lang": "en", "tags": [],
            "body": "## Window\nYou can return an item within 15 days of delivery."
        }),
        KbKind::Product => serde_json::json!({
            "sku": "NEW-SKU-01", "name": "Product name", "category": "category",
            "description": "", "attributes": {}, "price": 10.0, "currency": "USD",
            "lang": "en", "variants": [{"sku": "NEW-SKU-01-A", "options": {}, "stock": 0}]
        }),
        KbKind::Shipping => serde_json::json!({
            "destination": "TH", "carrier": "Carrier", "service": "standard",
            "min_days": 3, "max_days": 5, "cost": 2.5, "currency": "USD"
        }),
    }
}

pub async fn new_entry(
    viewer: Viewer,
    Query(query): Query<NewQuery>,
) -> Result<Response, WebError> {
    viewer.require_agent()?;
    let kind = parse_kind(query.kind.as_deref().unwrap_or("faq"))?;
    render(&EntryPage {
        nav: Nav::new(&viewer, "kb"),
        kind: kind.as_str(),
        id: String::new(),
        is_new: true,
        title: format!("New {} entry", kind.as_str()),
        body: pretty(&example(kind)),
        versions: Vec::new(),
    })
}

#[derive(Debug, Deserialize)]
pub struct SaveForm {
    csrf: String,
    body: String,
    /// For a new entry: its id, when the path's is `new`.
    id: Option<String>,
}

pub async fn save(
    State(state): State<WebState>,
    viewer: Viewer,
    Path((kind, id)): Path<(String, String)>,
    Form(form): Form<SaveForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_agent()?;
    let kind = parse_kind(&kind)?;
    let id = match form.id.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
        Some(new_id) if id == "new" => new_id.to_owned(),
        _ => id,
    };
    let mut body: serde_json::Value = serde_json::from_str(&form.body)
        .map_err(|e| WebError::Invalid(format!("the entry is not valid JSON: {e}")))?;
    if matches!(kind, KbKind::Faq | KbKind::Policy) {
        if let Some(object) = body.as_object_mut() {
            object.insert("id".into(), serde_json::Value::String(id.clone()));
        }
    }
    let entry = KbEntry::from_json(kind, body).map_err(WebError::Invalid)?;
    if entry.id() != id {
        return Err(WebError::Invalid(format!(
            "the page names {kind} entry {id:?} but the entry describes {:?}",
            entry.id()
        )));
    }
    state
        .app
        .kb
        .put(viewer.user.tenant_id, &entry, &viewer.user.actor())
        .await?;
    Ok(see_other(&href(kind, &entry.id())))
}

pub struct TranslationRow {
    pub kind: &'static str,
    pub entry_id: String,
    pub source_hash: String,
    pub lang: String,
    pub language: String,
    pub source: String,
    pub text: String,
    pub model: String,
    pub checks: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "web/kb_translations.html")]
struct TranslationsPage {
    nav: Nav,
    rows: Vec<TranslationRow>,
}

const TRANSLATION_QUEUE: u32 = 200;

/// Machine translations of the seller's answers that failed a check and
/// wait for a person: approve (as written or corrected) or reject.
pub async fn translations(
    State(state): State<WebState>,
    viewer: Viewer,
) -> Result<Response, WebError> {
    let waiting = state
        .app
        .store
        .list_translations(
            viewer.user.tenant_id,
            Some(TranslationStatus::Unverified),
            TRANSLATION_QUEUE,
        )
        .await?;
    let now = Utc::now();
    render(&TranslationsPage {
        nav: Nav::new(&viewer, "kb"),
        rows: waiting
            .into_iter()
            .map(|t| TranslationRow {
                kind: t.key.kind.as_str(),
                language: super::view::language_name(&t.key.lang),
                entry_id: t.key.entry_id,
                source_hash: t.key.source_hash,
                lang: t.key.lang,
                source: t.source_text,
                text: t.text,
                model: t.model.unwrap_or_default(),
                checks: t.verification.to_string(),
                when: ago(t.created_at, now),
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize)]
pub struct ReviewForm {
    csrf: String,
    kind: String,
    entry_id: String,
    source_hash: String,
    lang: String,
    /// `approve` or `reject`.
    decision: String,
    text: Option<String>,
}

pub async fn review_translation(
    State(state): State<WebState>,
    viewer: Viewer,
    Form(form): Form<ReviewForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_agent()?;
    let key = TranslationKey {
        kind: parse_kind(&form.kind)?,
        entry_id: form.entry_id,
        source_hash: form.source_hash,
        lang: form.lang,
    };
    let review = match form.decision.as_str() {
        "approve" => TranslationReview::Approve {
            text: form
                .text
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        },
        "reject" => TranslationReview::Reject,
        other => return Err(WebError::Invalid(format!("no decision {other:?}"))),
    };
    state
        .app
        .store
        .review_translation(viewer.user.tenant_id, &key, &review, &viewer.user.actor())
        .await?;
    Ok(see_other("/app/kb/translations"))
}
