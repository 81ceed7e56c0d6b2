//! The channels' part of the tenant API: conversations at risk of missing
//! their platform's response deadline.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::Tenant;
use crate::http::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadlineDto {
    pub conversation_id: String,
    /// The oldest buyer message no one has answered.
    pub message_id: String,
    /// When the platform's reply window for it closes.
    pub due_at: DateTime<Utc>,
    pub flagged_at: Option<DateTime<Utc>>,
    /// When kedai sent its automatic acknowledgement, if it did.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// True once the deadline has passed.
    pub overdue: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadlineList {
    pub at_risk: Vec<DeadlineDto>,
}

/// Conversations at risk: a buyer message nobody has answered is near (or
/// past) the platform's response deadline. Soonest due first.
#[utoipa::path(
    get,
    path = "/api/v1/deadlines",
    tag = "channels",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "At-risk conversations", body = DeadlineList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    )
)]
pub async fn deadlines(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<DeadlineList>, ApiError> {
    let now = Utc::now();
    let records = state.store.at_risk(tenant.id).await?;
    Ok(Json(DeadlineList {
        at_risk: records
            .into_iter()
            .map(|r| DeadlineDto {
                conversation_id: r.conversation_id.to_string(),
                message_id: r.message_id.to_string(),
                overdue: r.due_at <= now,
                due_at: r.due_at,
                flagged_at: r.flagged_at,
                acknowledged_at: r.acknowledged_at,
            })
            .collect(),
    }))
}
