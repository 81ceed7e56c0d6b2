//! Liveness, readiness and Prometheus metrics.

use std::sync::RwLock;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::engine::readiness_detail;
use crate::metrics as m;
use crate::models::PreparedModels;
use crate::pipeline::stages::UnderstandState;

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
}

impl Readiness {
    pub fn new(models: ModelReadiness) -> Readiness {
        Readiness {
            models: RwLock::new(models),
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

#[derive(Serialize, ToSchema)]
pub struct ReadinessReport {
    pub ready: bool,
    pub store: CheckReport,
    pub models: CheckReport,
    /// The reply pipeline's classifiers: `trained`, `training` (messages
    /// wait for it; still ready) or `{"failed": why}` (not ready: every
    /// message would go to a human). Absent without a reply pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub understand: Option<CheckReport>,
    pub queue: Option<QueueReport>,
    pub workers: WorkersCheck,
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
/// loaded (`models.detail.runtime` gives each model's state), and the reply
/// pipeline's classifiers have not failed to train.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = ReadinessReport),
        (status = 503, description = "Not ready; the report says why", body = ReadinessReport),
    ))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (store_ok, store_detail, queue) = match state.store.job_counts().await {
        Ok(counts) => {
            m::queue_jobs(&counts);
            (
                true,
                serde_json::json!("ok"),
                Some(QueueReport {
                    queued: counts.queued,
                    leased: counts.leased,
                    done: counts.done,
                    dead: counts.dead,
                }),
            )
        }
        Err(err) => {
            tracing::warn!(error = %err, "readiness: store check failed");
            (false, serde_json::json!("store unavailable"), None)
        }
    };
    let (models_ok, models_detail) = match state.readiness.models() {
        ModelReadiness::Ready(prepared) => {
            let mut detail = prepared.summary();
            detail["runtime"] = readiness_detail(&state.engine);
            (state.engine.all_ready(), detail)
        }
        ModelReadiness::NotRequired(why) => (true, serde_json::json!({ "not_required": why })),
        ModelReadiness::Unavailable(why) => (false, serde_json::json!({ "unavailable": why })),
    };
    let understand = state.understand.get().map(|stage| {
        let (ok, detail) = match stage.state() {
            UnderstandState::Trained => (true, serde_json::json!("trained")),
            UnderstandState::Training => (true, serde_json::json!("training")),
            UnderstandState::Failed(why) => (false, serde_json::json!({ "failed": why })),
        };
        CheckReport { ok, detail }
    });
    let understand_ok = understand.as_ref().is_none_or(|u| u.ok);
    let workers = state.queue.health().report();
    let ready = store_ok && models_ok && understand_ok && workers.all_running();
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
    (
        status,
        Json(ReadinessReport {
            ready,
            store: CheckReport {
                ok: store_ok,
                detail: store_detail,
            },
            models: CheckReport {
                ok: models_ok,
                detail: models_detail,
            },
            understand,
            queue,
            workers,
        }),
    )
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Ok(counts) = state.store.job_counts().await {
        m::queue_jobs(&counts);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
