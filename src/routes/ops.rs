//! Operations routes: the endpoint index, health and Prometheus metrics.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::routes::demo;

/// `GET /`, `GET /health`, `GET /metrics`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
}

/// `GET /`: the demo page for a browser (`Accept` prefers `text/html`), the JSON index otherwise.
/// Both carry `Vary: Accept` so a cache keeps them apart.
async fn index(headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let response = if demo::prefers_html(accept) {
        demo::page(&headers)
    } else {
        endpoint_index().into_response()
    };
    ([(header::VARY, "accept")], response).into_response()
}

/// The endpoint index, same shape as the original: `{"message":"BackFlow API","endpoints":{...}}`.
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
            "enqueue": "POST /enqueue {\"task\",\"priority\"}",
            "dequeue": "GET|POST /dequeue",
            "queueStatus": "GET /queue/status",
            "health": "GET /health",
            "metrics": "GET /metrics (Prometheus text format)",
            "openapi": "GET /openapi.json",
            "demo": "GET / from a browser (Accept: text/html): the interactive demo page"
        }
    }))
}

/// Liveness: cheap, touches no lock held by request work.
async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": state.started_at.elapsed().as_secs(),
        "environment": if state.config.is_development() { "development" } else { "production" },
    }))
}

/// Prometheus text exposition of this server's registry.
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
