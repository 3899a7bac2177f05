//! The failure every layer shares, and how long a client is asked to wait after each refusal.
//!
//! This module is a leaf: it imports nothing of the crate. The domain modules (`auth`, `queue`,
//! `events`) declare the store traits they need and return [`StoreError`] from them; the stores
//! (`store::{embedded, redis}`) implement those traits; the HTTP layer answers the error. All
//! three depend on this module and none of them on another through it, so the store boundary
//! has one direction only: `store` imports the domain, never the reverse.
//!
//! The `*_RETRY_AFTER` constants are the `Retry-After` hints of every `503` the server sends,
//! side by side so their choices can be compared.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A store could not do what was asked; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreError(Arc<str>);

impl StoreError {
    /// An error with this cause (logged, never sent to the client).
    pub fn new(cause: impl fmt::Display) -> Self {
        Self(cause.to_string().into())
    }
}

/// After a store failure (`store_unavailable`): a networked store reconnects within about a
/// second, and a failed commit is worth retrying at once.
pub const STORE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// After `queue_full`: consumers drain at their own pace, so a short hint.
pub const QUEUE_FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// After `busy` (every heavy-job slot taken): jobs take hundreds of milliseconds each.
pub const HEAVY_BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// After `too_many_streams` of `/stream` (`STREAM_MAX_CONCURRENT` responses open): a
/// streamed response usually lasts seconds.
pub const ITEM_STREAMS_FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// After `too_many_streams` (every event-stream slot taken): streams last minutes, so a browser
/// is asked to wait longer than its usual 3 s reconnect.
pub const STREAMS_FULL_RETRY_AFTER: Duration = Duration::from_secs(5);

/// After `server_busy` (no connection could be made room for): idle connections come and go
/// within seconds.
pub const SERVER_BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);
