//! BackFlow: an async HTTP API server showing five back-end patterns done properly.
//!
//! - a lazily produced, chunked streamed response with backpressure (`/stream`);
//! - Server-Sent Events with one producer fanned out to every subscriber (`/notifications`);
//! - JWT login/logout with a bounded, persistent revocation list (`/login`, `/logout`, `/protected`);
//! - CPU-heavy work moved off the async runtime, to a child process or a bounded thread pool;
//! - a priority queue with FIFO among equal priorities (`/enqueue`, `/dequeue`, `/queue/status`).
//!
//! Everything lives in the library so the integration tests start the real server on port 0.

/// Shared state (`AppState`) and the assembled router.
pub mod app;
/// JWT login, verification and logout with a bounded, durable revocation list.
pub mod auth;
/// The client's address through trusted reverse proxies (`TRUSTED_PROXIES`, `X-Forwarded-For`).
pub mod client_ip;
/// Wall-clock formatting shared by events, streams and the queue.
pub mod clock;
/// CPU-heavy work off the async runtime: child process, rayon and blocking pools.
pub mod compute;
/// Typed configuration from the environment, validated once.
pub mod config;
/// `ApiError`, the JSON error body of every route.
pub mod error;
/// The event bus behind `/notifications`: numbered events, replay window, fan-out.
pub mod events;
/// Extractors and parameter parsers whose failures are JSON errors.
pub mod extract;
/// The failure every layer shares (`StoreError`) and the `Retry-After` hints: a leaf module.
pub mod fault;
/// Per-server Prometheus registry.
pub mod metrics;
/// Layers shared by every route: request id, tracing, CORS, security headers, metrics.
pub mod middleware;
/// The OpenAPI document at `/openapi.json`, generated from the routes.
pub mod openapi;
/// The priority queue: FIFO among equal priorities, bounded, announced on the event bus.
pub mod queue;
/// Thin HTTP adapters, one module per area.
pub mod routes;
/// Binding, serving and the graceful stop.
pub mod server;
/// The stop signal every long-lived task listens to.
pub mod shutdown;
/// Where the queue, the revocations and the events live (`STORE`), behind async traits.
pub mod store;
/// The lazily produced `/stream` body.
pub mod stream;
/// Logging set-up and the async-runtime lag probe.
pub mod telemetry;

pub use app::{AppState, StartupError};
pub use config::Config;
pub use error::ApiError;
pub use server::Application;
pub use shutdown::Shutdown;
