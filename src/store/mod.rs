//! Where the server's state lives: the boundary between the domain services and their stores.
//!
//! Three pieces of state outlive a request: the priority queue, the revocation list and the
//! event stream behind `/notifications`; with several instances, also who produces the
//! notifications and the failed-login budgets. Each is reached through a small async, fallible
//! trait ([`QueueStore`](crate::queue::QueueStore),
//! [`RevocationStore`](crate::auth::RevocationStore), [`EventBus`](crate::events::EventBus),
//! [`NotifierLease`](crate::events::NotifierLease),
//! [`LoginFailures`](crate::auth::rate_limit::LoginFailures)), so the domain services and the
//! handlers above them never know which store is configured. `STORE` picks one set:
//!
//! | `STORE`    | queue and revocations                      | events               | survives          |
//! |------------|--------------------------------------------|----------------------|-------------------|
//! | `memory`   | in-process indexes only                    | in-process bus       | nothing           |
//! | `embedded` | the same indexes, recorded in SQLite first | in-process bus       | `kill -9`, and a machine crash with `FSYNC_COMMITS` |
//! | `redis`    | Redis, shared by every instance            | Redis, fanned out per instance | what Redis keeps (run it with its append-only file) |
//!
//! Every store operation that can fail returns [`StoreError`]; the HTTP layer answers it with
//! `503 store_unavailable` and `Retry-After`, and an operation that failed changed nothing.

pub mod embedded;
pub mod redis;

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::auth::rate_limit::{LoginBudgets, LoginFailures};
use crate::auth::{MemoryRevocations, RevocationStore};
use crate::config::Config;
use crate::events::{Alone, EventBus, MemoryEventBus, NotifierLease};
use crate::metrics::Metrics;
use crate::queue::{MemoryQueue, QueueStore};

pub use crate::fault::StoreError;

/// Which implementation holds the state (`STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Nothing is kept: a restart starts empty. For demos and benchmarks.
    Memory,
    /// SQLite in `DATA_DIR`: what was acknowledged survives a crash of the process.
    Embedded,
    /// Redis at `REDIS_URL`, shared by every instance with the same `REDIS_PREFIX`.
    Redis,
}

impl StoreKind {
    /// The value `STORE` takes for this kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Embedded => "embedded",
            Self::Redis => "redis",
        }
    }
}

impl std::str::FromStr for StoreKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Memory, Self::Embedded, Self::Redis]
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("unknown store {s:?}; expected `embedded`, `memory` or `redis`"))
    }
}

/// What every store answers about itself, whatever it holds.
pub trait StoreHealth: Send + Sync {
    /// Succeeds when the store answers now (for `GET /ready`).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Finishes pending writes and releases the store; called once, after the drain.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// The stores of one server, opened for its configuration.
#[derive(Clone)]
pub struct Stores {
    /// The priority queue's record.
    pub queue: Arc<dyn QueueStore>,
    /// Revoked tokens.
    pub revocations: Arc<dyn RevocationStore>,
    /// The event stream behind `/notifications`.
    pub events: Arc<dyn EventBus>,
    /// Which instance produces the periodic notifications.
    pub notifier: Arc<dyn NotifierLease>,
    /// The failed-login budgets.
    pub login_failures: Arc<dyn LoginFailures>,
    /// Readiness and closing.
    pub health: Arc<dyn StoreHealth>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

/// Why the stores could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The embedded store's file or directory.
    #[error(transparent)]
    Embedded(#[from] embedded::database::OpenError),
    /// The Redis store's settings.
    #[error("cannot use REDIS_URL: {0}")]
    Redis(StoreError),
}

/// Opens the stores `config.store.kind` names. The memory store says in the log that it keeps
/// nothing.
pub async fn open(config: &Config, metrics: &Metrics) -> Result<Stores, OpenError> {
    match config.store.kind {
        StoreKind::Memory => {
            tracing::warn!(
                "STORE=memory: the queue, revocations and events live in this process only; \
                 a restart or a crash loses them"
            );
            Ok(memory(config))
        }
        StoreKind::Embedded => Ok(embedded::open(config, metrics).await?),
        StoreKind::Redis => redis::open(config, metrics).map_err(OpenError::Redis),
    }
}

/// The stores of `STORE=memory`.
pub fn memory(config: &Config) -> Stores {
    Stores {
        queue: Arc::new(MemoryQueue::new(config.queue.settings())),
        revocations: Arc::new(MemoryRevocations::new(config.auth.revocation_list_max)),
        events: local_events(config),
        notifier: Arc::new(Alone),
        login_failures: local_login_failures(config),
        health: Arc::new(InProcess),
    }
}

/// The event bus of a server that shares its events with no other instance.
pub fn local_events(config: &Config) -> Arc<dyn EventBus> {
    Arc::new(MemoryEventBus::new(config.events.sse_replay_buffer))
}

/// The failed-login budgets of a server that shares them with no other instance.
pub fn local_login_failures(config: &Config) -> Arc<dyn LoginFailures> {
    Arc::new(LoginBudgets::new(
        config.auth.client_budget(),
        config.auth.account_budget(),
    ))
}

/// The health of stores that live in this process: always answering, nothing to close.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess;

impl StoreHealth for InProcess {
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
