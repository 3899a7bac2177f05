//! Thin HTTP adapters, one module per area. Each exposes `router()`; [`api_router`] merges them,
//! so the whole API reads in one screen. Handlers parse input into typed values, call the domain
//! module and map the result; the logic lives outside `routes`.
//!
//! Routes are registered with `routes!(handler)` on an [`OpenApiRouter`], never with a bare
//! `.route(..)`, so each one is described in the OpenAPI document by its `#[utoipa::path]`:
//! `clippy.toml` refuses the calls that would add an undocumented route.

use axum::http::HeaderName;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::openapi;

pub mod access;
pub mod auth;
pub mod demo;
pub mod fields;
pub mod leases;
pub mod notifications;
pub mod ops;
pub mod queue;
pub mod stream;
pub mod tasks;

/// Asks proxies such as nginx not to buffer a streamed response, so each chunk or event reaches
/// the client as it is made (`/stream`, `/notifications`).
const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// Every route of the API, with its OpenAPI description.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(ops::router())
        .merge(auth::router())
        .merge(queue::router())
        .merge(leases::router())
        .merge(stream::router())
        .merge(notifications::router())
        .merge(tasks::router())
        .merge(demo::router())
}
