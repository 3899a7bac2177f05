//! The shared application state and the assembled router.
//!
//! [`AppState`] is the one value every handler receives through `State`: cheap to clone, with
//! `Arc`s inside. The state that outlives requests (queue, revocations, events) sits behind the
//! store traits of [`crate::store`], opened here for the configured `STORE`, so handlers and
//! domain services never know which store holds it. [`build_router`] merges the route modules and adds the shared layers; the
//! OpenAPI document is generated from the same routes when the state is built.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use tokio_util::task::TaskTracker;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{self, AuthService};
use crate::compute::ComputePool;
use crate::config::Config;
use crate::error::ApiError;
use crate::events::{self, EventBus, SubscriberLimit};
use crate::metrics::Metrics;
use crate::openapi::ApiDocument;
use crate::queue::{self, TaskQueue};
use crate::shutdown::Shutdown;
use crate::store::{self, StoreHealth, Stores};
use crate::{middleware, routes, telemetry};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A configuration value was refused.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::OpenError),
    /// A component could not be started.
    #[error("cannot start {component}: {message}")]
    Component {
        /// Which part failed.
        component: &'static str,
        /// Why.
        message: String,
    },
}

/// Everything handlers share, behind one `Arc`: axum clones the state for every request (for
/// the handler and again for each `State` extractor), so a clone is one reference-count
/// increment rather than one per component. Fields are reached through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<Components>);

impl std::ops::Deref for AppState {
    type Target = Components;

    fn deref(&self) -> &Components {
        &self.0
    }
}

/// The components of [`AppState`].
pub struct Components {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// This server's metric registry.
    pub metrics: Metrics,
    /// Fan-out of notifications and application events to `/notifications`.
    pub events: Arc<dyn EventBus>,
    /// Slots for open `/notifications` streams (`SSE_MAX_CONNECTIONS`).
    pub subscribers: SubscriberLimit,
    /// Slots for open `/stream` responses (`STREAM_MAX_CONCURRENT`).
    pub item_streams: SubscriberLimit,
    /// The stop signal; long-lived responses end when it fires.
    pub shutdown: Shutdown,
    /// Background tasks, awaited before the process exits.
    pub tasks: TaskTracker,
    /// When the server started, for `/health`.
    pub started_at: Instant,
    /// Login, token verification and the revocation list.
    pub auth: Arc<AuthService>,
    /// The priority queue.
    pub queue: TaskQueue,
    /// Readiness and closing of the configured store.
    pub store: Arc<dyn StoreHealth>,
    /// Runs CPU-heavy jobs off the async runtime, with admission control.
    pub compute: ComputePool,
    /// The OpenAPI document of the routes [`build_router`] serves, for `/openapi.json`.
    pub api_document: ApiDocument,
}

impl AppState {
    /// Opens the configured stores, builds every component and starts background tasks.
    pub async fn new(config: Config, shutdown: Shutdown) -> Result<Self, StartupError> {
        let metrics = Metrics::new();
        let stores = store::open(&config, &metrics).await?;
        Self::with_stores(config, shutdown, metrics, stores)
    }

    /// Like [`AppState::new`] over stores already open (tests pass wrapped ones).
    pub fn with_stores(
        config: Config,
        shutdown: Shutdown,
        metrics: Metrics,
        stores: Stores,
    ) -> Result<Self, StartupError> {
        let Stores {
            queue,
            revocations,
            events,
            notifier,
            login_failures,
            health,
        } = stores;
        let tasks = TaskTracker::new();
        tasks.spawn(telemetry::run_lag_probe(metrics.clone(), shutdown.clone()));
        tasks.spawn(events::run_notifier(
            events.clone(),
            notifier,
            config.events.notify_interval,
            shutdown.clone(),
        ));
        let subscribers = SubscriberLimit::new(config.events.sse_max_connections);
        let auth = AuthService::new(&config, revocations, login_failures, events.clone()).map_err(
            |err| StartupError::Component {
                component: "password verification",
                message: err.to_string(),
            },
        )?;
        let auth = Arc::new(auth);
        tasks.spawn(auth::run_sweeper(auth.clone(), shutdown.clone()));
        let queue = TaskQueue::new(
            queue,
            events.clone(),
            config.queue.defaults(),
            shutdown.clone(),
        );
        tasks.spawn(queue::run_reaper(
            queue.clone(),
            config.queue.reap_interval,
            shutdown.clone(),
        ));
        let compute = ComputePool::from_config(&config).map_err(|err| StartupError::Component {
            component: "compute pool",
            message: err.to_string(),
        })?;
        let api_document = ApiDocument::new(served_routes(&config).into_openapi(), &config);
        let item_streams = SubscriberLimit::new(config.stream.max_concurrent);
        Ok(Self(Arc::new(Components {
            config: Arc::new(config),
            metrics,
            events,
            subscribers,
            item_streams,
            shutdown,
            tasks,
            started_at: Instant::now(),
            auth,
            queue,
            store: health,
            compute,
            api_document,
        })))
    }

    /// Sets the gauges that mirror store sizes; called when `/metrics` is scraped.
    pub fn refresh_gauges(&self) {
        self.metrics
            .gauge("auth_revoked_tokens", &[])
            .set(self.auth.revoked_count() as f64);
        self.metrics
            .gauge("auth_revoked_tokens_capacity", &[])
            .set(self.auth.revocation_capacity() as f64);
        self.metrics
            .counter("auth_password_verifications_total", &[])
            .absolute(self.auth.password_verifications());
        self.metrics
            .gauge("queue_size", &[])
            .set(self.queue.size() as f64);
        self.metrics
            .gauge("sse_connections_open", &[])
            .set(self.subscribers.open() as f64);
        self.metrics
            .gauge("stream_responses_open", &[])
            .set(self.item_streams.open() as f64);
        self.compute.export_metrics(&self.metrics);
    }

    /// Finishes the store's pending writes and closes it; called once, after the drain.
    pub async fn close_store(&self) {
        self.store.close().await;
    }
}

/// The complete HTTP application for `state`.
pub fn build_router(state: AppState) -> Router {
    let router =
        Router::from(served_routes(&state.config)).fallback(|| async { ApiError::RouteNotFound });
    middleware::apply(
        router,
        &state.config.server.cors_origins,
        state.metrics.clone(),
    )
    .with_state(state)
}

/// The application of the `METRICS_ADDR` listener: `/metrics` alone, with the shared layers.
pub fn build_metrics_router(state: AppState) -> Router {
    let router =
        Router::from(routes::ops::metrics_router()).fallback(|| async { ApiError::RouteNotFound });
    middleware::apply(
        router,
        &state.config.server.cors_origins,
        state.metrics.clone(),
    )
    .with_state(state)
}

/// Every route this configuration serves on its public port, each with its OpenAPI
/// description: the one list that both the router and the document are made from.
/// `/metrics` is among them unless `METRICS_ADDR` gives it a listener of its own.
fn served_routes(config: &Config) -> OpenApiRouter<AppState> {
    let routes = routes::api_router().merge(routes::tasks::blocking_demo_router(
        config.compute.enable_blocking_demo,
    ));
    if config.server.metrics_addr.is_none() {
        routes.merge(routes::ops::metrics_router())
    } else {
        routes
    }
}
