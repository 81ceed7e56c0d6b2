//! The HTTP server's surface: the v1 API, health and metrics endpoints, and
//! the OpenAPI document describing them, all on one axum router.
//!
//! Handlers parse wire DTOs into domain types and call the store; they hold
//! no business rules. Errors meet HTTP only in [`error::ApiError`].

pub mod access;
pub mod error;
pub mod extract;
pub mod health;
pub mod kb;
pub mod learning;
pub mod openai;
pub mod orders;
pub mod quota;
pub mod reports;
pub mod serve;
pub mod shops;
pub mod understand;
pub mod v1;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::channels::events::EventWebhooks;
use crate::domain::TextLimits;
use crate::engine::Engine;
use crate::metrics as m;
use crate::queue::Queue;
use crate::store::Store;
use error::ApiError;
pub use health::{ModelReadiness, Readiness};

/// Limits applied to request contents.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    pub text: TextLimits,
    pub body_bytes: usize,
    /// Body limit of the OpenAI-compatible `/v1` endpoints.
    pub model_body_bytes: usize,
    pub timeout: Duration,
    /// Attempts given to each inbound message's processing job.
    pub max_attempts: u32,
    /// Requests handled at once; beyond, 503.
    pub max_concurrent_requests: usize,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub queue: Queue,
    pub limits: ApiLimits,
    pub readiness: Arc<Readiness>,
    pub metrics: PrometheusHandle,
    pub kb: Arc<crate::kb::KbService>,
    /// The model runtime behind `/v1`.
    pub engine: Engine,
    /// The server's policy defaults, which shops' own policies override.
    pub policy: crate::pipeline::policy::PolicySettings,
    /// The reply pipeline's understand stage, retrained by
    /// `POST /api/v1/understand/reload`; unset until the embedding model is
    /// ready.
    pub understand: Arc<std::sync::OnceLock<Arc<crate::pipeline::stages::UnderstandStage>>>,
    /// Failed-authentication throttling and its settings.
    pub access: Arc<access::AccessState>,
    /// Marketplace and widget channels (webhooks, widget, outbox).
    pub channels: Arc<crate::channels::Channels>,
    /// The learning loop: corrections, measured retraining, rollback.
    pub learning: Arc<crate::learning::Learning>,
    /// The reply pipeline, once the models are ready (for work it does
    /// outside a job: translations prepared ahead).
    pub pipeline: Arc<std::sync::OnceLock<Arc<crate::pipeline::Pipeline>>>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kedai",
        description = "Self-hosted AI customer service for marketplace sellers. \
                       Authenticate with `Authorization: Bearer <token>`. Tenant tokens \
                       (`kd_…`, from `kedai tenant create` or `kedai token create --scope …`) \
                       carry scopes: `admin` (everything), `ingest`, `reply`, `orders`, \
                       `read`, `kb`, `models`; each operation lists the scope it needs. \
                       Operator tokens (`kdo_…`, from `kedai operator token create`) belong \
                       to no tenant and run the server: retraining, readiness details, \
                       metrics.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth, &EventWebhooks),
    tags(
        (name = "messages", description = "Inbound buyer messages"),
        (name = "conversations", description = "Conversations, their messages, and replies"),
        (name = "orders", description = "Orders and buyer profiles reported by marketplaces"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "knowledge base", description = "FAQ, policies, products and shipping rules, and hybrid search over them"),
        (name = "openai", description = "OpenAI-compatible endpoints over the local models"),
        (name = "understand", description = "The intent and sentiment classifiers and their exemplars"),
        (name = "channels", description = "Marketplace webhooks (authenticated by the platforms' signatures), the web-chat widget (by per-visitor session secrets) and response deadlines"),
        (name = "shops", description = "Each shop's own policy"),
        (name = "learning", description = "Intent corrections learned per tenant, measured before they go live, and rolled back in one action"),
        (name = "reports", description = "Reports over conversations (JSON and CSV), the resolution figure with its rule and SQL, and conversation tags"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "operator",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Writes each operation's security requirement and its 401/403/429
/// answers from [`access::ROUTES`], so the document says what the server
/// enforces.
fn document_access(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{Ref, RefOr, ResponseBuilder};
    for (path, item) in api.paths.paths.iter_mut() {
        let operations = [
            ("GET", &mut item.get),
            ("POST", &mut item.post),
            ("PUT", &mut item.put),
            ("DELETE", &mut item.delete),
        ];
        for (method, operation) in operations {
            let (Some(operation), Some(access)) = (operation, access::access_for(method, path))
            else {
                continue;
            };
            let operator = || SecurityRequirement::new("operator", Vec::<String>::new());
            let (security, refusals): (Vec<SecurityRequirement>, &[(&str, &str)]) = match access {
                // Documented by the route itself (a signature, a session).
                access::Access::OwnCredentials => continue,
                access::Access::Public => (Vec::new(), &[]),
                access::Access::PublicWithDetails => (
                    vec![
                        SecurityRequirement::default(),
                        operator(),
                        SecurityRequirement::new("bearer", ["admin"]),
                    ],
                    &[("401", "Invalid or expired token")],
                ),
                access::Access::Tenant(scope) => (
                    vec![SecurityRequirement::new("bearer", [scope.as_str()])],
                    &[
                        ("401", "Missing, invalid or expired token"),
                        ("403", "The token lacks this operation's scope or shop"),
                        (
                            "429",
                            "Too many failed authentications from this address; see Retry-After",
                        ),
                    ],
                ),
                access::Access::Operator => (
                    vec![operator()],
                    &[
                        ("401", "Missing, invalid or expired token"),
                        ("403", "Not an operator token"),
                        (
                            "429",
                            "Too many failed authentications from this address; see Retry-After",
                        ),
                    ],
                ),
            };
            operation.security = (!security.is_empty()).then_some(security);
            for (status, description) in refusals {
                operation
                    .responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(*description)
                                .content(
                                    "application/json",
                                    utoipa::openapi::ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                )
                                .build(),
                        )
                    });
            }
        }
    }
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(v1::ingest_message))
        .routes(routes!(v1::list_conversations))
        .routes(routes!(v1::get_conversation))
        .routes(routes!(v1::post_reply))
        .routes(routes!(v1::put_status))
        .routes(routes!(v1::put_custody))
        .routes(routes!(shops::get_policy, shops::put_policy))
        .routes(routes!(shops::policy_changes))
        .routes(routes!(shops::restore_policy))
        .routes(routes!(shops::list_translations))
        .routes(routes!(shops::list_asked))
        .routes(routes!(shops::review_translation))
        .routes(routes!(orders::upsert_order, orders::list_orders))
        .routes(routes!(orders::get_order))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(kb::search))
        .routes(routes!(kb::list_entries))
        .routes(routes!(kb::get_entry, kb::put_entry, kb::delete_entry))
        .routes(routes!(kb::entry_history))
        .routes(routes!(openai::list_models))
        .routes(routes!(openai::embeddings))
        .routes(routes!(openai::chat_completions))
        .routes(routes!(understand::reload))
        .routes(routes!(learning::correct))
        .routes(routes!(learning::correct_route))
        .routes(routes!(learning::heads))
        .routes(routes!(learning::rollback))
        .routes(routes!(learning::faq_suggestions))
        .routes(routes!(learning::accept_faq_suggestion))
        .routes(routes!(learning::dismiss_faq_suggestion))
        .routes(routes!(reports::summary))
        .routes(routes!(reports::conversations))
        .routes(routes!(reports::resolution))
        .routes(routes!(reports::gaps))
        .routes(routes!(reports::put_tag, reports::delete_tag))
        .merge(crate::channels::webhooks::routes())
}

/// The OpenAPI document, generated from the handlers' annotations, so it
/// cannot drift from the routes that exist.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = api_router().split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document_access(&mut api);
    api
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (routes, mut api) = api_router().split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document_access(&mut api);
    // Serialised once: the document never changes while the server runs.
    let document: axum::body::Bytes = serde_json::to_vec(&api)
        .expect("the OpenAPI document serialises")
        .into();
    routes
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        document,
                    )
                }
            }),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            access::authorize,
        ))
        .fallback(not_found)
        .layer(middleware::from_fn(record_request))
        .layer(middleware::from_fn_with_state(
            state.limits.model_body_bytes,
            model_body_limit,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.limits.timeout,
        ))
        .layer(DefaultBodyLimit::max(state.limits.body_bytes))
        .layer(middleware::from_fn_with_state(
            serve::ConcurrencyLimit::new(state.limits.max_concurrent_requests),
            serve::limit_concurrency,
        ))
        .layer(
            // Server errors are logged where they happen (ApiError::Internal);
            // a 503 from /readyz is routine and must not read as an error.
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(record_status)
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .with_state(state)
}

/// The span of one request, named by its route (never its full path or
/// query, which may hold ids and search text), continuing the caller's W3C
/// trace when it sent one. Ingest, webhook and reply spans are its
/// children, and the jobs they queue continue its trace.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::continue_from_headers(&span, request.headers());
    span
}

fn record_status<B>(response: &axum::http::Response<B>, _latency: Duration, span: &tracing::Span) {
    span.record("http.response.status_code", response.status().as_u16());
}

/// The `/v1` endpoints take batches of documents: they get a body limit of
/// their own, set here before the router-wide default applies.
async fn model_body_limit(
    axum::extract::State(limit): axum::extract::State<usize>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.uri().path().starts_with("/v1/") {
        DefaultBodyLimit::max(limit).apply(&mut request);
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        what: "route".into(),
    }
}

async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    m::http_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
