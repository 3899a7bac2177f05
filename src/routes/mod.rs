//! Thin HTTP adapters, one module per area. Each exposes `router()`; [`api_router`] merges them,
//! so the whole API reads in one screen. Handlers parse input into typed values, call the domain
//! module and map the result; the logic lives outside `routes`.

use axum::Router;

use crate::app::AppState;

pub mod auth;
pub mod demo;
pub mod notifications;
pub mod ops;
pub mod queue;
pub mod stream;
pub mod tasks;

/// Every route of the API.
pub fn api_router() -> Router<AppState> {
    Router::new()
        .merge(ops::router())
        .merge(auth::router())
        .merge(queue::router())
        .merge(stream::router())
        .merge(notifications::router())
        .merge(tasks::router())
        .merge(demo::router())
}
