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
//! Connections are served by hyper's HTTP/1.1 and HTTP/2 servers directly rather than through
//! `axum::serve` or hyper-util's automatic server, whose protocol detection reads the first
//! bytes of every connection into a buffer of its own and hands them back to hyper in a second
//! read; hyper then grows its read buffer to 16 KiB and copies it, which costs every open
//! connection (an event stream above all) 8 KiB of resident memory for nothing. Here the
//! protocol is known before hyper reads a byte: over TLS from ALPN (`tls`), on the plain port
//! from a look at the first bytes that leaves them on the socket (`transport`). Serving the
//! connection directly also lets the server set `TCP_NODELAY` (each event is one small write
//! that must leave at once), deadlines for request heads and stalled writes, and its HTTP/2
//! limits (`HTTP2_MAX_CONCURRENT_STREAMS`, keep-alive pings).
//!
//! Idle connections never stop the server from answering: every connection is registered with
//! what it is doing (`registry`), and when `MAX_CONNECTIONS` is reached or the process runs
//! out of file descriptors (`accept`), the idle ones are closed to admit new ones; when none
//! is idle, the newcomer gets a `503 server_busy` at once. A peer address with
//! `MAX_CONNECTIONS_PER_IP` connections open has its next one closed at once.
//!
//! With `METRICS_ADDR` set, `/metrics` is served on a listener of its own (`metrics_listener`)
//! and not on the public port.

mod accept;
mod connection;
mod fd_limit;
mod metrics_listener;
mod registry;
mod slot;
mod tls;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use self::accept::{Accepted, Acceptor};
use self::connection::ServeSettings;
use self::registry::{ConnectionRegistry, Refusal};
use self::tls::Tls;
use self::transport::StallPolicy;
use crate::app::{AppState, StartupError, build_metrics_router, build_router};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::Stores;

/// Keep-alive pings of an idle HTTP/2 connection: a peer that does not answer one within
/// [`HTTP2_PING_TIMEOUT`] is gone, and its connection is closed.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Bytes an HTTP/2 stream may have queued for a client that has not opened its window for
/// them: past this, the stream's body is not polled until the client reads (the backpressure
/// of `/stream`), so a slow reader costs at most this much per stream.
const HTTP2_SEND_BUFFER: usize = 64 * 1024;

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    local_addr: SocketAddr,
    tls: Option<Tls>,
    metrics: Option<(TcpListener, SocketAddr)>,
}

impl Application {
    /// Raises the open-file limit and sizes the connection caps from it, binds `HOST:PORT`,
    /// opens the configured stores, builds the state and the router.
    pub async fn build(mut config: Config) -> Result<Self, StartupError> {
        size_connections(&mut config)?;
        let tls = load_tls(&config).await?;
        let (listener, local_addr) = bind(&config)?;
        let metrics = bind_metrics(&config)?;
        let state = AppState::new(config, Shutdown::new()).await?;
        Ok(Self::assemble(listener, local_addr, state, tls, metrics))
    }

    /// Like [`Application::build`] over stores already open (tests wrap them to inject faults).
    pub async fn build_with_stores(
        mut config: Config,
        metrics: Metrics,
        stores: Stores,
    ) -> Result<Self, StartupError> {
        size_connections(&mut config)?;
        let tls = load_tls(&config).await?;
        let (listener, local_addr) = bind(&config)?;
        let metrics_listener = bind_metrics(&config)?;
        let state = AppState::with_stores(config, Shutdown::new(), metrics, stores)?;
        Ok(Self::assemble(
            listener,
            local_addr,
            state,
            tls,
            metrics_listener,
        ))
    }

    fn assemble(
        listener: TcpListener,
        local_addr: SocketAddr,
        state: AppState,
        tls: Option<Tls>,
        metrics: Option<(TcpListener, SocketAddr)>,
    ) -> Self {
        let router = build_router(state.clone());
        Self {
            listener,
            router,
            state,
            local_addr,
            tls,
            metrics,
        }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address `/metrics` is served on when `METRICS_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
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
            tls,
            metrics,
        } = self;
        let shutdown = state.shutdown.clone();
        let deadline = state.config.server.shutdown_timeout;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%local_addr, scheme, "listening");
        if let Some(tls) = &tls {
            state
                .tasks
                .spawn(tls.clone().reload_on_hangup(shutdown.clone()));
        }
        if let Some((listener, metrics_addr)) = metrics {
            tracing::info!(%metrics_addr, "serving /metrics");
            state.tasks.spawn(metrics_listener::serve(
                listener,
                build_metrics_router(state.clone()),
                shutdown.clone(),
            ));
        }

        let serve = serve(listener, router, tls, &state);
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

/// The certificate of `TLS_CERT_FILE` / `TLS_KEY_FILE` or `TLS_SELF_SIGNED`, if HTTPS is on.
async fn load_tls(config: &Config) -> Result<Option<Tls>, StartupError> {
    match &config.server.tls {
        Some(source) => Ok(Some(Tls::load(source).await?)),
        None => Ok(None),
    }
}

/// The listener of `METRICS_ADDR`, when it is set.
fn bind_metrics(config: &Config) -> Result<Option<(TcpListener, SocketAddr)>, StartupError> {
    let Some(addr) = config.server.metrics_addr else {
        return Ok(None);
    };
    let listener = listen(addr).map_err(|source| StartupError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?;
    Ok(Some((listener, local_addr)))
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
/// once if it has not sent a request, after its current responses otherwise), and returns when
/// all have.
///
/// A new connection gets `FIRST_REQUEST_TIMEOUT_SECONDS` to finish its TLS handshake and send
/// its first request head; after that, hyper gives each HTTP/1.1 request head
/// `HEADER_READ_TIMEOUT_SECONDS`, which also closes a keep-alive connection silent that long,
/// so stalled connections (slowloris) cannot pile up. An idle HTTP/2 connection is pinged, and
/// closed when its peer stops answering.
async fn serve(listener: TcpListener, router: Router, tls: Option<Tls>, state: &AppState) {
    let config = &state.config;
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(config.server.header_read_timeout);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.server.http2_max_concurrent_streams)
        .max_send_buf_size(HTTP2_SEND_BUFFER)
        .keep_alive_interval(HTTP2_PING_INTERVAL)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    let on_tls = tls.is_some();
    let settings = Arc::new(ServeSettings {
        router,
        http1,
        http2,
        tls,
        stall: Arc::new(StallPolicy {
            deadline: config.server.write_stall_timeout,
            closed: state.metrics.counter(
                "http_connections_closed_total",
                &[("reason", "write_stall")],
            ),
        }),
        first_request_timeout: config.server.first_request_timeout,
        idle_timeout: config.server.header_read_timeout,
    });
    let max_connections = config
        .server
        .max_connections
        .expect("every way of building an Application sizes MAX_CONNECTIONS");
    let registry = ConnectionRegistry::new(
        max_connections,
        config.server.max_connections_per_ip,
        &state.metrics,
    );
    let trusted = &config.server.trusted_proxies;
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
        let ip = peer.ip().to_canonical();
        let capped_peer = (!trusted.contains(ip)).then_some(ip);
        let registration = match registry.admit(out_of_files, capped_peer) {
            Ok(registration) => registration,
            Err(Refusal::Full) => {
                acceptor.refuse(stream, on_tls);
                continue;
            }
            // Counted by the registry; closed without a word.
            Err(Refusal::PeerAtCap) => {
                drop(stream);
                continue;
            }
        };
        tokio::spawn(connection::drive(
            stream_ready(stream),
            registration,
            settings.clone(),
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
