//! Binding, serving and the graceful stop.
//!
//! [`Application::build`] binds the listener first (port 0 picks a free port, which is how the
//! tests start real servers side by side) and reports the address it got. [`Application::run`]
//! serves until the [`Shutdown`] fires, then: stops accepting, lets in-flight requests finish up
//! to `SHUTDOWN_TIMEOUT_SECONDS` (event streams end by themselves on the same signal), drops
//! whatever is still running (which kills child processes), waits for background tasks and
//! writes the snapshots.

use std::future::IntoFuture;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use crate::app::{AppState, StartupError, build_router};
use crate::config::Config;
use crate::shutdown::Shutdown;

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    local_addr: SocketAddr,
}

impl Application {
    /// Builds the state, binds `HOST:PORT` and assembles the router.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        let state = AppState::new(config, Shutdown::new()).await?;
        let router = build_router(state.clone());
        Ok(Self {
            listener,
            router,
            state,
            local_addr,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The stop signal of this server: trigger it to begin the graceful stop.
    pub fn shutdown(&self) -> Shutdown {
        self.state.shutdown.clone()
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the stop signal, then drains, persists and returns.
    pub async fn run(self) -> std::io::Result<()> {
        let Self {
            listener,
            router,
            state,
            local_addr,
        } = self;
        let shutdown = state.shutdown.clone();
        let deadline = state.config.shutdown_timeout;
        tracing::info!(%local_addr, "listening");

        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.wait_owned())
        .into_future();
        let drain_deadline = async {
            shutdown.wait().await;
            tokio::time::sleep(deadline).await;
        };
        tokio::select! {
            result = serve => result?,
            () = drain_deadline => {
                tracing::warn!(?deadline, "drain deadline passed, closing remaining connections");
            }
        }

        state.tasks.close();
        if tokio::time::timeout(deadline, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop before the deadline");
        }
        state.persist().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Builds and runs a server until SIGINT or SIGTERM.
pub async fn run_until_signal(config: Config) -> Result<(), StartupError> {
    let app = Application::build(config).await?;
    let shutdown = app.shutdown();
    tokio::spawn(async move {
        crate::shutdown::os_signal().await;
        shutdown.trigger();
    });
    app.run().await.map_err(|err| StartupError::Component {
        component: "server",
        message: err.to_string(),
    })
}
