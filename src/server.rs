//! Binding, serving and the graceful stop.
//!
//! [`Application::build`] binds the listener first (port 0 picks a free port, which is how the
//! tests start real servers side by side) and reports the address it got. [`Application::run`]
//! serves until the [`Shutdown`] fires, then: stops accepting, lets in-flight requests finish up
//! to `SHUTDOWN_TIMEOUT_SECONDS` (event streams end by themselves on the same signal), drops
//! whatever is still running (which kills child processes), waits for background tasks and
//! closes the store.
//!
//! Connections are served by hyper's HTTP/1.1 server directly rather than through
//! `axum::serve`, whose protocol detection reads the first bytes of every connection into a
//! buffer of its own and hands them back to hyper in a second read; hyper then grows its read
//! buffer to 16 KiB and copies it, which costs every open connection (an event stream above
//! all) 8 KiB of resident memory for nothing. Serving HTTP/1.1 alone also lets the server set
//! `TCP_NODELAY` (each event is one small write that must leave at once) and a deadline for
//! request headers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::app::{AppState, StartupError, build_router};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::Stores;

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    local_addr: SocketAddr,
}

impl Application {
    /// Binds `HOST:PORT`, opens the configured stores, builds the state and the router.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let (listener, local_addr) = bind(&config).await?;
        let state = AppState::new(config, Shutdown::new()).await?;
        Ok(Self::assemble(listener, local_addr, state))
    }

    /// Like [`Application::build`] over stores already open (tests wrap them to inject faults).
    pub async fn build_with_stores(
        config: Config,
        metrics: Metrics,
        stores: Stores,
    ) -> Result<Self, StartupError> {
        let (listener, local_addr) = bind(&config).await?;
        let state = AppState::with_stores(config, Shutdown::new(), metrics, stores)?;
        Ok(Self::assemble(listener, local_addr, state))
    }

    fn assemble(listener: TcpListener, local_addr: SocketAddr, state: AppState) -> Self {
        let router = build_router(state.clone());
        Self {
            listener,
            router,
            state,
            local_addr,
        }
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

        let serve = serve(
            listener,
            router,
            state.config.header_read_timeout,
            shutdown.clone(),
        );
        let drain_deadline = async {
            shutdown.wait().await;
            tokio::time::sleep(deadline).await;
        };
        tokio::select! {
            () = serve => {}
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
        state.close_store().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The listener on `HOST:PORT`, and the address it got (port 0 picks a free one).
async fn bind(config: &Config) -> Result<(TcpListener, SocketAddr), StartupError> {
    let addr = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?;
    Ok((listener, local_addr))
}

/// Pause after an accept error that is not the client's (too many open files, for example),
/// so the loop does not spin while the process is out of resources.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Accepts connections until `shutdown` fires, then asks every open connection to finish its
/// current response and close, and returns when all have.
///
/// A client gets `header_read_timeout` to send a request's headers; a connection that stays
/// silent that long between two requests is closed too, so idle or stalled connections
/// (slowloris) cannot pile up.
async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: Shutdown,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connections = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(&err).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let connection =
            http.serve_connection(TokioIo::new(stream_ready(stream)), service(&router, peer));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// The router as hyper calls it for one connection, with the client's address available to
/// handlers through axum's `ConnectInfo`.
fn service(
    router: &Router,
    peer: SocketAddr,
) -> TowerToHyperService<
    impl tower::Service<
        axum::http::Request<Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static,
> {
    TowerToHyperService::new(router.clone().map_request(
        move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        },
    ))
}

/// Sends small writes at once instead of waiting to coalesce them (Nagle's algorithm): every
/// response is written whole, and an event must not wait for the previous one's ACK.
fn stream_ready(stream: TcpStream) -> TcpStream {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "could not set TCP_NODELAY");
    }
    stream
}

/// Logs an accept error; pauses unless it concerned only the one connection.
async fn accept_failed(err: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::debug!(error = %err, "connection failed before it was accepted");
    } else {
        tracing::error!(error = %err, "accept failed; pausing before the next accept");
        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
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
