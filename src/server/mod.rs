//! Binding, serving and the graceful stop.
//!
//! [`Application::build`] raises the process's open-file limit, sizes `MAX_CONNECTIONS` from
//! it, binds the listener (port 0 picks a free port, which is how the tests start real servers
//! side by side) and reports the address it got. [`Application::run`] serves until the
//! [`Shutdown`] fires, then: stops accepting, lets in-flight requests finish up to
//! `SHUTDOWN_TIMEOUT_SECONDS` (event streams end by themselves on the same signal), drops
//! whatever is still running (which kills child processes), waits for background tasks and
//! closes the store.
//!
//! Connections are served by hyper's HTTP/1.1 server directly rather than through
//! `axum::serve`, whose protocol detection reads the first bytes of every connection into a
//! buffer of its own and hands them back to hyper in a second read; hyper then grows its read
//! buffer to 16 KiB and copies it, which costs every open connection (an event stream above
//! all) 8 KiB of resident memory for nothing. Serving HTTP/1.1 alone also lets the server set
//! `TCP_NODELAY` (each event is one small write that must leave at once) and deadlines for
//! request heads.
//!
//! Idle connections never stop the server from answering: every connection is registered with
//! what it is doing (`registry`), and when `MAX_CONNECTIONS` is reached or the process runs
//! out of file descriptors (`accept`), the idle ones are closed to admit new ones; when none
//! is idle, the newcomer gets a `503 server_busy` at once.

mod accept;
mod connection;
mod fd_limit;
mod registry;
mod slot;

use std::net::SocketAddr;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use self::accept::{Accepted, Acceptor};
use self::connection::ConnectionService;
use self::registry::ConnectionRegistry;
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
    /// Raises the open-file limit and sizes the connection caps from it, binds `HOST:PORT`,
    /// opens the configured stores, builds the state and the router.
    pub async fn build(mut config: Config) -> Result<Self, StartupError> {
        size_connections(&mut config)?;
        let (listener, local_addr) = bind(&config)?;
        let state = AppState::new(config, Shutdown::new()).await?;
        Ok(Self::assemble(listener, local_addr, state))
    }

    /// Like [`Application::build`] over stores already open (tests wrap them to inject faults).
    pub async fn build_with_stores(
        mut config: Config,
        metrics: Metrics,
        stores: Stores,
    ) -> Result<Self, StartupError> {
        size_connections(&mut config)?;
        let (listener, local_addr) = bind(&config)?;
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
        let deadline = state.config.server.shutdown_timeout;
        tracing::info!(%local_addr, "listening");

        let serve = serve(listener, router, &state);
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

/// Raises the open-file limit as far as it goes and fits `MAX_CONNECTIONS` and
/// `SSE_MAX_CONNECTIONS` to what it got.
fn size_connections(config: &mut Config) -> Result<(), StartupError> {
    for warning in config.fit_to_fd_limit(fd_limit::raise_open_file_limit())? {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        max_connections = config.server.max_connections,
        sse_max_connections = config.events.sse_max_connections,
        "connection limits"
    );
    Ok(())
}

/// The listener on `HOST:PORT`, and the address it got (port 0 picks a free one).
fn bind(config: &Config) -> Result<(TcpListener, SocketAddr), StartupError> {
    let addr = SocketAddr::new(config.server.host, config.server.port);
    let listener = listen(addr).map_err(|source| StartupError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?;
    Ok((listener, local_addr))
}

/// Connections the kernel queues for the server to take. A burst larger than the queue has its
/// handshakes dropped, and each of those clients waits a second or more before it tries again,
/// `/health` probes included. The kernel caps it at `net.core.somaxconn` (4096 by default since
/// Linux 5.4); tokio's own default is 1024.
const LISTEN_BACKLOG: u32 = 65_535;

/// A listener on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does on Unix: a restart can listen again while the previous
    // run's connections are still in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections until the stop signal, then asks every open connection to close (at
/// once if it has not sent a request, after its current response otherwise), and returns when
/// all have.
///
/// A new connection gets `FIRST_REQUEST_TIMEOUT_SECONDS` to send its first request head; after
/// that, hyper gives each request head `HEADER_READ_TIMEOUT_SECONDS`, which also closes a
/// keep-alive connection silent that long, so stalled connections (slowloris) cannot pile up.
async fn serve(listener: TcpListener, router: Router, state: &AppState) {
    let config = &state.config;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.server.header_read_timeout);
    let max_connections = config
        .server
        .max_connections
        .expect("every way of building an Application sizes MAX_CONNECTIONS");
    let registry = ConnectionRegistry::new(max_connections, &state.metrics);
    let mut acceptor = Acceptor::new(listener, &state.metrics);
    loop {
        let Accepted {
            stream,
            peer,
            out_of_files,
        } = tokio::select! {
            accepted = acceptor.accept(&registry) => accepted,
            () = state.shutdown.wait() => break,
        };
        let Some(registration) = registry.admit(out_of_files) else {
            acceptor.refuse(stream);
            continue;
        };
        let service = ConnectionService::new(router.clone(), peer, registration.slot().clone());
        let connection = http.serve_connection(TokioIo::new(stream_ready(stream)), service);
        tokio::spawn(connection::drive(
            connection,
            registration,
            config.server.first_request_timeout,
            peer,
        ));
    }
    drop(acceptor);
    registry.stop();
    registry.wait_until_empty().await;
}

/// Sends small writes at once instead of waiting to coalesce them (Nagle's algorithm): every
/// response is written whole, and an event must not wait for the previous one's ACK.
fn stream_ready(stream: TcpStream) -> TcpStream {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "could not set TCP_NODELAY");
    }
    stream
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
