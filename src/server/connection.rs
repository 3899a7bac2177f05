//! One connection: the router as hyper calls it, and the task that drives it until it closes.
//!
//! [`ConnectionService`] keeps the connection's [`Slot`] up to date: a request arriving makes
//! it active (or streaming, for an event stream), and its response body being finished or
//! dropped makes it idle; on HTTP/2 it counts the connection's open streams instead, and the
//! connection is idle once the last one ends. [`drive`] opens the connection (the TLS
//! handshake, or a look at its first bytes to tell HTTP/2 from HTTP/1.1 on the plain port),
//! runs it and closes it when asked: at once if it never sent a request (nothing is lost),
//! otherwise through hyper's graceful shutdown, which finishes the responses in progress (on
//! HTTP/2 after a GOAWAY that refuses new streams) and sends what is still buffered before it
//! closes. It also closes a connection that has not sent a complete request head within
//! `FIRST_REQUEST_TIMEOUT_SECONDS`, handshake included.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, header};
use bytes::Bytes;
use futures_util::future::OptionFuture;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;
use tower::util::Oneshot;

use super::registry::Registration;
use super::slot::{Phase, Slot};
use super::tls::{HSTS, Tls};
use super::transport::{Protocol, StallGuard, StallPolicy, sniff};

/// The content type of an event stream.
const EVENT_STREAM: &[u8] = b"text/event-stream";

/// What every connection of one server is served with.
pub(super) struct ServeSettings {
    pub(super) router: Router,
    pub(super) http1: http1::Builder,
    pub(super) http2: http2::Builder<TokioExecutor>,
    /// `None` on the plain port.
    pub(super) tls: Option<Tls>,
    pub(super) stall: Arc<StallPolicy>,
    pub(super) first_request_timeout: Duration,
    /// How long an HTTP/2 connection may stay without a stream before it is closed (what
    /// `HEADER_READ_TIMEOUT_SECONDS` is to an idle HTTP/1.1 connection, which hyper closes
    /// itself).
    pub(super) idle_timeout: Duration,
}

/// A connection's socket: plain, or inside TLS. The write-stall deadline watches the socket
/// itself, under TLS.
pub(super) enum Socket {
    Plain(StallGuard<TcpStream>),
    Tls(Box<TlsStream<StallGuard<TcpStream>>>),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(socket) => Pin::new(socket).poll_read(cx, buf),
            Self::Tls(socket) => Pin::new(socket.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(socket) => Pin::new(socket).poll_write(cx, buf),
            Self::Tls(socket) => Pin::new(socket.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
            Self::Tls(socket) => Pin::new(socket.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(socket) => socket.is_write_vectored(),
            Self::Tls(socket) => socket.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(socket) => Pin::new(socket).poll_flush(cx),
            Self::Tls(socket) => Pin::new(socket.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(socket) => Pin::new(socket).poll_shutdown(cx),
            Self::Tls(socket) => Pin::new(socket.as_mut()).poll_shutdown(cx),
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection served by hyper's HTTP/1.1 or HTTP/2 server.
    #[project = ServedProjection]
    pub(super) enum Served {
        Http1 { #[pin] connection: http1::Connection<TokioIo<Socket>, ConnectionService> },
        Http2 { #[pin] connection: http2::Connection<TokioIo<Socket>, ConnectionService, TokioExecutor> },
    }
}

impl Served {
    /// Finishes the responses in progress, then closes (HTTP/2: sends GOAWAY first).
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            ServedProjection::Http1 { connection } => connection.graceful_shutdown(),
            ServedProjection::Http2 { connection } => connection.graceful_shutdown(),
        }
    }
}

impl Future for Served {
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ServedProjection::Http1 { connection } => connection.poll(cx),
            ServedProjection::Http2 { connection } => connection.poll(cx),
        }
    }
}

/// How a connection's requests relate to its slot, and what its answers carry.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// HTTP/2: many requests at once, counted in the slot.
    multiplexed: bool,
    /// Over TLS: answers carry `Strict-Transport-Security`.
    tls: bool,
}

/// The router as hyper calls it for one connection: it gives handlers the client's address
/// (axum's `ConnectInfo`) and tells the connection's slot what the connection is doing.
pub(super) struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    slot: Arc<Slot>,
    mode: Mode,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedResponse;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        if self.mode.multiplexed {
            self.slot.stream_opened();
        } else {
            self.slot.request_started();
        }
        request.extensions_mut().insert(ConnectInfo(self.peer));
        TrackedResponse {
            inner: self.router.clone().oneshot(request),
            slot: Some(self.slot.clone()),
            mode: self.mode,
        }
    }
}

pin_project_lite::pin_project! {
    /// The router's answer, whose body reports its end to the connection's slot.
    pub(super) struct TrackedResponse {
        #[pin]
        inner: Oneshot<Router, Request<Incoming>>,
        slot: Option<Arc<Slot>>,
        mode: Mode,
    }

    impl PinnedDrop for TrackedResponse {
        fn drop(this: Pin<&mut Self>) {
            // An HTTP/2 stream reset before its answer was ready: the stream is over, the
            // connection goes on. (On HTTP/1.1 this happens only as the connection closes.)
            let this = this.project();
            if this.mode.multiplexed && let Some(slot) = this.slot.take() {
                slot.stream_closed(false);
            }
        }
    }
}

impl Future for TrackedResponse {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        let slot = this
            .slot
            .take()
            .expect("a future is not polled after it completes");
        let mode = *this.mode;
        // A body of known length is never a stream: most answers skip the header lookup.
        let events = response.body().size_hint().exact().is_none()
            && response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|value| value.as_bytes().starts_with(EVENT_STREAM));
        if events {
            if mode.multiplexed {
                slot.stream_is_events();
            } else {
                slot.streaming();
            }
        }
        if mode.tls {
            response.headers_mut().insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            );
        }
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            slot,
            mode,
            events,
        })))
    }
}

/// A response body that marks its connection idle when hyper is done with it: sent whole, or
/// dropped because the client went away (or, on HTTP/2, reset the stream).
pub(super) struct TrackedBody {
    inner: Body,
    slot: Arc<Slot>,
    mode: Mode,
    events: bool,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if self.mode.multiplexed {
            self.slot.stream_closed(self.events);
        } else {
            self.slot.response_finished();
        }
    }
}

/// Opens `stream` (TLS handshake, or a look at its first bytes) and serves it until it ends,
/// or until it is asked to close or sends no request head within the first-request deadline.
pub(super) async fn drive(
    stream: TcpStream,
    registration: Registration,
    settings: Arc<ServeSettings>,
    peer: SocketAddr,
) {
    let slot = registration.slot();
    // Dropped once it fires, so that long-lived connections (event streams) do not keep it.
    let mut first_request = Some(Box::pin(tokio::time::sleep(settings.first_request_timeout)));
    // On the heap, and only until the connection is open: a handshake's state is large.
    let idle_timeout = settings.idle_timeout;
    let mut opening = Box::pin(open(stream, peer, slot.clone(), settings));
    let mut connection = loop {
        tokio::select! {
            opened = opening.as_mut() => match opened {
                Ok(connection) => break connection,
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "connection failed before its first request");
                    return;
                }
            },
            Some(()) = OptionFuture::from(first_request.as_mut()), if first_request.is_some() => {
                first_request = None;
                if registration.expire_if_new(peer) {
                    return;
                }
            }
            // Nothing was asked on it yet: it closes at once.
            () = slot.close_requested() => return,
        }
    };
    drop(opening);
    // HTTP/2 only: idle at two checks in a row, with nothing in between, closes it (between
    // one and two idle timeouts after its last stream ended).
    let mut idle_check = matches!(*connection, Served::Http2 { .. }).then(|| {
        let start = tokio::time::Instant::now() + idle_timeout;
        Box::pin(tokio::time::interval_at(start, idle_timeout))
    });
    let mut seen_idle = None;
    let ended = loop {
        tokio::select! {
            ended = connection.as_mut() => break ended,
            Some(_) = OptionFuture::from(idle_check.as_mut().map(|check| check.tick())) => {
                let seen = slot.seen();
                if slot.phase() == Phase::Idle && seen_idle == Some(seen) {
                    tracing::debug!(%peer, "HTTP/2 connection idle too long; closed");
                    connection.as_mut().graceful_shutdown();
                    break connection.as_mut().await;
                }
                seen_idle = Some(seen);
            }
            Some(()) = OptionFuture::from(first_request.as_mut()), if first_request.is_some() => {
                first_request = None;
                if registration.expire_if_new(peer) {
                    return;
                }
            }
            () = slot.close_requested() => {
                if slot.phase() == Phase::ClosingNew {
                    return;
                }
                connection.as_mut().graceful_shutdown();
                break connection.as_mut().await;
            }
        }
    };
    if let Err(err) = ended {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// The TLS handshake (HTTPS) or a look at the first bytes (plain port), then hyper's server
/// for the protocol they chose. The connection is pinned on the heap once, here: held in the
/// task's future by value, it would be copied into its pinned place and take room twice.
async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
    settings: Arc<ServeSettings>,
) -> io::Result<Pin<Box<Served>>> {
    let guarded = StallGuard::new(stream, settings.stall.clone());
    let (socket, protocol) = match &settings.tls {
        None => {
            let protocol = sniff(guarded.get_ref()).await?;
            (Socket::Plain(guarded), protocol)
        }
        Some(tls) => {
            let stream = tls.acceptor().accept(guarded).await?;
            let protocol = match stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Protocol::Http2,
                _ => Protocol::Http1,
            };
            (Socket::Tls(Box::new(stream)), protocol)
        }
    };
    let service = ConnectionService {
        router: settings.router.clone(),
        peer,
        slot,
        mode: Mode {
            multiplexed: protocol == Protocol::Http2,
            tls: settings.tls.is_some(),
        },
    };
    let io = TokioIo::new(socket);
    Ok(Box::pin(match protocol {
        Protocol::Http1 => Served::Http1 {
            connection: settings.http1.serve_connection(io, service),
        },
        Protocol::Http2 => Served::Http2 {
            connection: settings.http2.serve_connection(io, service),
        },
    }))
}
