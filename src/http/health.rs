//! Liveness, readiness and Prometheus metrics.
//!
//! `/healthz` and `/readyz` answer anyone, and `/readyz` tells anyone only
//! whether the server is ready. The why (model errors, which can hold pip's
//! output and cache paths; model references, which can be paths; queue
//! counts over every tenant) goes only to an operator token. A tenant's
//! `admin` token sees each component's state, nothing that names a path
//! or another tenant. `/metrics` needs an operator token on the main
//! address, or is served without one on `server.metrics_listen` alone.
//! Queue counts are read from the store at most every
//! [`JOB_COUNTS_TTL`], however often anyone asks.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Viewer;
use super::AppState;
use crate::engine::{readiness_detail, Engine, ModelState};
use crate::metrics as m;
use crate::models::PreparedModels;
use crate::pipeline::stages::UnderstandState;
use crate::store::{JobCounts, Store, StoreError};

/// How long queue counts are reused before the store is asked again.
pub const JOB_COUNTS_TTL: Duration = Duration::from_secs(5);

/// Whether the models the server was configured with are usable. Startup
/// sets it; handlers only read it.
#[derive(Debug, Clone)]
pub enum ModelReadiness {
    /// Present and verified; startup loads them into the runtime.
    Ready(PreparedModels),
    /// Not (yet) usable, and why.
    Unavailable(String),
    /// The configuration says the server may run without them.
    NotRequired(String),
}

#[derive(Debug)]
pub struct Readiness {
    models: RwLock<ModelReadiness>,
    job_counts: tokio::sync::Mutex<Option<(Instant, JobCounts)>>,
    /// The knowledge indexes built since start: [`KNOWLEDGE_UNTRACKED`],
    /// [`KNOWLEDGE_WARMING`] or [`KNOWLEDGE_WARM`].
    knowledge: std::sync::atomic::AtomicU8,
}

const KNOWLEDGE_UNTRACKED: u8 = 0;
const KNOWLEDGE_WARMING: u8 = 1;
const KNOWLEDGE_WARM: u8 = 2;

impl Readiness {
    pub fn new(models: ModelReadiness) -> Readiness {
        Readiness {
            models: RwLock::new(models),
            job_counts: tokio::sync::Mutex::new(None),
            knowledge: std::sync::atomic::AtomicU8::new(KNOWLEDGE_UNTRACKED),
        }
    }

    /// Every tenant's knowledge index is being built (at start, or once
    /// the models arrive): not ready until [`Readiness::knowledge_warm`].
    pub fn knowledge_warming(&self) {
        self.knowledge
            .store(KNOWLEDGE_WARMING, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn knowledge_warm(&self) {
        self.knowledge
            .store(KNOWLEDGE_WARM, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the knowledge indexes are built: `None` while nobody builds
    /// them (no reply pipeline).
    pub fn knowledge_is_warm(&self) -> Option<bool> {
        match self.knowledge.load(std::sync::atomic::Ordering::SeqCst) {
            KNOWLEDGE_UNTRACKED => None,
            state => Some(state == KNOWLEDGE_WARM),
        }
    }

    pub fn set_models(&self, models: ModelReadiness) {
        *self.models.write().unwrap_or_else(|e| e.into_inner()) = models;
    }

    pub fn models(&self) -> ModelReadiness {
        self.models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The queue's counts, at most [`JOB_COUNTS_TTL`] old. Concurrent
    /// callers wait for one store read rather than each making their own.
    pub async fn job_counts(&self, store: &dyn Store) -> Result<JobCounts, StoreError> {
        let mut cached = self.job_counts.lock().await;
        if let Some((at, counts)) = *cached {
            if at.elapsed() < JOB_COUNTS_TTL {
                return Ok(counts);
            }
        }
        let counts = store.job_counts().await?;
        m::queue_jobs(&counts);
        *cached = Some((Instant::now(), counts));
        Ok(counts)
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
    pub version: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// `/readyz`'s answer. Without credentials only `ready`; the checks come
/// with an operator token (everything) or a tenant `admin` token (each
/// component's state, without reasons, references or queue counts).
#[derive(Serialize, ToSchema)]
pub struct ReadinessReport {
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<CheckReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<CheckReport>,
    /// The reply pipeline's classifiers: `trained`, `training` (not ready
    /// yet: messages wait for it, and are answered within seconds once
    /// ready) or `{"failed": why}` (not ready: every message would go to a
    /// human). Absent without a reply pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub understand: Option<CheckReport>,
    /// Every tenant's knowledge index: `building` (not ready yet) or
    /// `built`. Absent without a reply pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knowledge: Option<CheckReport>,
    /// Jobs over every tenant; operator only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkersCheck>,
}

/// The queue's workers: not ready while one is down (being restarted).
#[derive(Serialize, ToSchema)]
pub struct WorkersCheck {
    /// `queue.workers`.
    pub configured: usize,
    pub running: usize,
    /// Workers restarted after ending unexpectedly, since start.
    pub restarts: u64,
    /// False while no reply pipeline is installed (the models are
    /// missing): buyer messages then wait in the queue, counted under
    /// `queue.queued`.
    pub processing: bool,
}

/// Jobs in the durable queue by state.
#[derive(Serialize, ToSchema)]
pub struct QueueReport {
    pub queued: i64,
    pub leased: i64,
    pub done: i64,
    pub dead: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CheckReport {
    pub ok: bool,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Readiness: the store answers, the configured models are present and
/// loaded, the reply pipeline's classifiers are trained and every tenant's
/// knowledge index is built, so a message is answered at once.
/// Anyone learns whether; an operator token learns why.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = ReadinessReport),
        (status = 503, description = "Not ready", body = ReadinessReport),
    ))]
pub async fn readyz(State(state): State<AppState>, viewer: Viewer) -> impl IntoResponse {
    let counts = state.readiness.job_counts(state.store.as_ref()).await;
    let store_ok = match &counts {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(error = %err, "readiness: store check failed");
            false
        }
    };
    let models = models_check(&state, viewer);
    let understand = state
        .understand
        .get()
        .map(|stage| understand_check(stage.state(), viewer));
    let understand_ok = understand.as_ref().is_none_or(|u| u.ok);
    let knowledge = state.readiness.knowledge_is_warm().map(|warm| CheckReport {
        ok: warm,
        detail: serde_json::json!(if warm { "built" } else { "building" }),
    });
    let knowledge_ok = knowledge.as_ref().is_none_or(|k| k.ok);
    let workers = state.queue.health().report();
    let ready = store_ok && models.ok && understand_ok && knowledge_ok && workers.all_running();
    let workers = WorkersCheck {
        configured: workers.configured,
        running: workers.running,
        restarts: workers.restarts,
        processing: workers.processing,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let report = match viewer {
        Viewer::Anonymous => ReadinessReport {
            ready,
            store: None,
            models: None,
            understand: None,
            knowledge: None,
            queue: None,
            workers: None,
        },
        Viewer::TenantAdmin | Viewer::Operator => ReadinessReport {
            ready,
            store: Some(CheckReport {
                ok: store_ok,
                detail: serde_json::json!(if store_ok { "ok" } else { "unavailable" }),
            }),
            models: Some(models),
            understand,
            knowledge,
            queue: match (viewer, counts) {
                (Viewer::Operator, Ok(counts)) => Some(QueueReport {
                    queued: counts.queued,
                    leased: counts.leased,
                    done: counts.done,
                    dead: counts.dead,
                }),
                _ => None,
            },
            workers: Some(workers),
        },
    };
    (status, Json(report))
}

fn models_check(state: &AppState, viewer: Viewer) -> CheckReport {
    let (ok, operator_detail) = match state.readiness.models() {
        ModelReadiness::Ready(prepared) => {
            let mut detail = prepared.summary();
            detail["runtime"] = readiness_detail(&state.engine);
            (state.engine.all_ready(), detail)
        }
        ModelReadiness::NotRequired(why) => (true, serde_json::json!({ "not_required": why })),
        ModelReadiness::Unavailable(why) => (false, serde_json::json!({ "unavailable": why })),
    };
    let detail = match viewer {
        Viewer::Operator => operator_detail,
        Viewer::TenantAdmin | Viewer::Anonymous => model_states(&state.engine, ok),
    };
    CheckReport { ok, detail }
}

/// Each model's name and state, nothing that could be a path or an error
/// text.
fn model_states(engine: &Engine, ok: bool) -> serde_json::Value {
    let states: serde_json::Map<String, serde_json::Value> = engine
        .models()
        .into_iter()
        .map(|model| {
            let state = match model.state {
                ModelState::NotLoaded => "not_loaded",
                ModelState::Loading => "loading",
                ModelState::Ready { .. } => "ready",
                ModelState::Failed { .. } => "failed",
            };
            (model.id, serde_json::json!(state))
        })
        .collect();
    serde_json::json!({ "ok": ok, "runtime": states })
}

fn understand_check(state: UnderstandState, viewer: Viewer) -> CheckReport {
    let (ok, detail) = match state {
        UnderstandState::Trained => (true, serde_json::json!("trained")),
        // The first training: messages wait for it, so the server is not
        // ready to answer them yet.
        UnderstandState::Training => (false, serde_json::json!("training")),
        UnderstandState::Failed(why) => match viewer {
            Viewer::Operator => (false, serde_json::json!({ "failed": why })),
            Viewer::TenantAdmin | Viewer::Anonymous => (false, serde_json::json!("failed")),
        },
    };
    CheckReport { ok, detail }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    render_metrics(&state).await
}

/// The metrics text; also what `server.metrics_listen` serves.
pub async fn render_metrics(state: &AppState) -> impl IntoResponse {
    if let Err(err) = state.readiness.job_counts(state.store.as_ref()).await {
        tracing::debug!(error = %err, "metrics: queue counts unavailable");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The router of `server.metrics_listen`: `/metrics` and nothing else, no
/// credentials; bind it to an address only the scraper reaches.
pub fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(state): State<AppState>| async move {
                render_metrics(&state).await
            }),
        )
        .with_state(state)
}
