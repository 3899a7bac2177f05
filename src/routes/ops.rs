//! Operations routes: the endpoint index, liveness, readiness, Prometheus metrics and the
//! OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use std::time::Duration;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::fault::{STORE_RETRY_AFTER, StoreError};
use crate::openapi::{ApiDocument, tags};
use crate::routes::demo;

/// How long `/ready` waits for the store before calling it unavailable: a load balancer's probe
/// must get an answer well within its own timeout.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /`, `GET /health`, `GET /ready`, `GET /openapi.json` (`GET /metrics` is
/// [`metrics_router`]).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(openapi_json))
}

/// `GET /metrics`: on the public port, or alone on `METRICS_ADDR` when that is set.
pub fn metrics_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// The endpoint index, or the demo page for a browser.
///
/// The JSON index has the original's shape, `{"message":"BackFlow API","endpoints":{...}}`. A
/// client whose `Accept` prefers `text/html` to `application/json` (a browser) gets the demo
/// page instead. Both carry `Vary: Accept` so a cache keeps them apart.
#[utoipa::path(
    get,
    path = "/",
    tag = tags::OPERATIONS,
    responses(
        (status = 200, description = "The JSON index of the endpoints, or the demo page",
            headers(("Vary" = String, description = "`accept`")),
            content(
                (Object = "application/json", example = json!({
                    "message": "BackFlow API",
                    "version": "0.1.0",
                    "endpoints": {"health": "GET /health", "openapi": "GET /openapi.json"}
                })),
                (String = "text/html"),
            )),
        (status = 304,
            description = "The demo page is unchanged: `If-None-Match` matched its `ETag`"),
    ),
)]
async fn index(headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let response = if demo::prefers_html(accept) {
        demo::page(&headers)
    } else {
        endpoint_index().into_response()
    };
    (
        [(header::VARY, HeaderValue::from_static("accept"))],
        response,
    )
        .into_response()
}

/// The JSON index of the endpoints.
fn endpoint_index() -> Json<Value> {
    Json(json!({
        "message": "BackFlow API",
        "version": env!("CARGO_PKG_VERSION"),
        "endpoints": {
            "stream": "GET /stream?chunkSize=100&totalItems=1000&delay=100&format=json|ndjson",
            "notifications": "GET /notifications (Server-Sent Events; Last-Event-ID to resume)",
            "login": "POST /login {\"username\",\"password\"}",
            "logout": "POST /logout (Authorization: Bearer <token>)",
            "protected": "GET /protected (Authorization: Bearer <token>)",
            "heavyTaskChild": "GET /heavy-task-child?n=40",
            "heavyTaskWorker": "GET /heavy-task-worker?n=40&pool=rayon|blocking",
            "enqueue": "POST /enqueue {\"task\",\"priority\",\"delayMs\"?,\"maxAttempts\"?} (Idempotency-Key)",
            "dequeue": "GET|POST /dequeue",
            "queueStatus": "GET /queue/status",
            "lease": "POST /tasks/lease {\"count\"?,\"leaseMs\"?,\"waitMs\"?}",
            "ack": "POST /tasks/{id}/ack {\"leaseId\"} (or POST /tasks/ack {\"acks\":[...]})",
            "nack": "POST /tasks/{id}/nack {\"leaseId\",\"delayMs\"?,\"error\"?}",
            "extend": "POST /tasks/{id}/extend {\"leaseId\",\"leaseMs\"?}",
            "task": "GET /tasks/{id}",
            "deadLetters": "GET /queue/dead, POST /queue/dead/{id}/retry, DELETE /queue/dead/{id}",
            "health": "GET /health",
            "ready": "GET /ready (200 when the store answers; 503 otherwise or while stopping)",
            "metrics": "GET /metrics (Prometheus text format)",
            "openapi": "GET /openapi.json",
            "demo": "GET / from a browser (Accept: text/html): the interactive demo page"
        }
    }))
}

/// The server's liveness report.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Health {
    /// Always `ok` when the server answers.
    #[schema(example = "ok")]
    status: &'static str,
    /// The server's version.
    #[schema(example = "0.1.0")]
    version: &'static str,
    /// Whole seconds since start-up.
    uptime_seconds: u64,
    /// `APP_ENV`.
    #[schema(example = "development")]
    environment: &'static str,
}

/// Liveness, with uptime and version.
///
/// Cheap: touches no lock held by request work.
#[utoipa::path(
    get,
    path = "/health",
    tag = tags::OPERATIONS,
    responses((status = 200, description = "The server is up", body = Health)),
)]
async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started_at.elapsed().as_secs(),
        environment: if state.config.is_development() {
            "development"
        } else {
            "production"
        },
    })
}

/// The readiness report.
#[derive(Serialize, ToSchema)]
struct Ready {
    /// `ready`.
    #[schema(example = "ready")]
    status: &'static str,
    /// `STORE`: `memory` or `embedded`.
    #[schema(example = "embedded")]
    store: &'static str,
}

/// Readiness for a load balancer: the store answers and the server is not stopping.
///
/// Unlike `/health` (liveness), this checks the store with a real round trip: for the embedded
/// store, a write committed through the same writer as every request's.
#[utoipa::path(
    get,
    path = "/ready",
    tag = tags::OPERATIONS,
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, body = ErrorBody,
            description = "`store_unavailable` (the store did not answer within a second) or \
                `shutting_down` (the server is draining)",
            headers(("Retry-After" = u64, description = "Seconds to wait before probing again"))),
    ),
)]
async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    if state.shutdown.is_triggered() {
        return Err(ApiError::Unavailable {
            code: "shutting_down",
            message: "The server is shutting down",
            retry_after: STORE_RETRY_AFTER,
        });
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(Ready {
            status: "ready",
            store: state.config.store.kind.as_str(),
        })),
        Ok(Err(err)) => Err(ApiError::Store(err)),
        Err(_) => Err(ApiError::Store(StoreError::new(format!(
            "no answer within {READY_TIMEOUT:?}"
        )))),
    }
}

/// This server's metrics, in the Prometheus text format.
///
/// Request count and latency by route and status, open connections by state and those closed
/// or refused at the cap, open SSE connections, queue size, revoked tokens, heavy tasks running
/// and waiting, the store's commits (embedded) or errors (Redis), async-runtime lag.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = tags::OPERATIONS,
    responses(
        (status = 200, description = "Prometheus text format 0.0.4",
            body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
    ),
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// This OpenAPI document.
///
/// Generated from the code: every route with its parameters, bodies, responses and errors.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = tags::OPERATIONS,
    responses((status = 200, description = "The OpenAPI document", body = Object)),
)]
async fn openapi_json(State(state): State<AppState>) -> ApiDocument {
    state.api_document.clone()
}
