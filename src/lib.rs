//! BackFlow: an async HTTP API server showing five back-end patterns done properly.
//!
//! - a lazily produced, chunked streamed response with backpressure (`/stream`);
//! - Server-Sent Events with one producer fanned out to every subscriber (`/notifications`);
//! - JWT login/logout with a bounded, persistent revocation list (`/login`, `/logout`, `/protected`);
//! - CPU-heavy work moved off the async runtime, to a child process or a bounded thread pool;
//! - a priority queue with FIFO among equal priorities (`/enqueue`, `/dequeue`, `/queue/status`).
//!
//! Everything lives in the library so the integration tests start the real server on port 0.

pub mod app;
/// JWT login, verification and logout with a bounded, persistent revocation list.
pub mod auth;
pub mod clock;
pub mod compute;
pub mod config;
pub mod error;
pub mod events;
pub mod extract;
pub mod metrics;
pub mod middleware;
/// The priority queue: FIFO among equal priorities, bounded, snapshotted on shutdown.
pub mod queue;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod snapshot;
pub mod stream;
pub mod telemetry;

pub use app::{AppState, StartupError};
pub use config::Config;
pub use error::ApiError;
pub use server::Application;
pub use shutdown::Shutdown;
