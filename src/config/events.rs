//! Event-stream settings: the notification period, the stream cap, the replay window and the
//! keep-alive period.

use std::time::Duration;

use super::{ConfigError, Env};

/// `SSE_MAX_CONNECTIONS` when unset.
pub const DEFAULT_SSE_MAX_CONNECTIONS: usize = 10_000;

/// `/notifications`.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// `NOTIFY_INTERVAL_MS`: period of the notification producer.
    pub notify_interval: Duration,
    /// `SSE_MAX_CONNECTIONS`: open event-stream cap (at most `MAX_CONNECTIONS`).
    pub sse_max_connections: usize,
    /// Whether `SSE_MAX_CONNECTIONS` was set, rather than defaulted: only the default is lowered
    /// to fit `MAX_CONNECTIONS`.
    pub(super) sse_max_connections_set: bool,
    /// `SSE_REPLAY_BUFFER`: events retained for `Last-Event-ID`.
    pub sse_replay_buffer: usize,
    /// `SSE_KEEPALIVE_SECONDS`: period of keep-alive comments on event streams.
    pub sse_keepalive: Duration,
}

impl EventsConfig {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            notify_interval: Duration::from_millis(env.int(
                "NOTIFY_INTERVAL_MS",
                1..=86_400_000,
                2000,
            )?),
            sse_max_connections: env.int(
                "SSE_MAX_CONNECTIONS",
                0..=1_000_000,
                DEFAULT_SSE_MAX_CONNECTIONS,
            )?,
            sse_max_connections_set: env.get("SSE_MAX_CONNECTIONS").is_some(),
            sse_replay_buffer: env.int("SSE_REPLAY_BUFFER", 0..=1_000_000, 1000)?,
            sse_keepalive: Duration::from_secs(env.int("SSE_KEEPALIVE_SECONDS", 1..=15, 15)?),
        })
    }
}
