//! One connection: the router as hyper calls it, and the task that drives it until it closes.
//!
//! [`ConnectionService`] keeps the connection's [`Slot`] up to date: a request arriving makes
//! it active (or streaming, for an event stream), and its response body being finished or
//! dropped makes it idle. [`drive`] runs the connection and closes it when asked: at once if it
//! never sent a request (nothing is lost), otherwise through hyper's graceful shutdown, which
//! finishes the response in progress and sends what is still buffered before it closes. It also
//! closes a connection that has not sent a complete request head within
//! `FIRST_REQUEST_TIMEOUT_SECONDS`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, header};
use bytes::Bytes;
use futures_util::future::OptionFuture;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::ServiceExt;
use tower::util::Oneshot;

use super::registry::Registration;
use super::slot::{Phase, Slot};

/// The content type of an event stream.
const EVENT_STREAM: &[u8] = b"text/event-stream";

/// A connection served by hyper's HTTP/1.1 server.
pub(super) type Connection = http1::Connection<TokioIo<TcpStream>, ConnectionService>;

/// The router as hyper calls it for one connection: it gives handlers the client's address
/// (axum's `ConnectInfo`) and tells the connection's slot what the connection is doing.
pub(super) struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    slot: Arc<Slot>,
}

impl ConnectionService {
    pub(super) fn new(router: Router, peer: SocketAddr, slot: Arc<Slot>) -> Self {
        Self { router, peer, slot }
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedResponse;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        self.slot.request_started();
        request.extensions_mut().insert(ConnectInfo(self.peer));
        TrackedResponse {
            inner: self.router.clone().oneshot(request),
            slot: Some(self.slot.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// The router's answer, whose body reports its end to the connection's slot.
    pub(super) struct TrackedResponse {
        #[pin]
        inner: Oneshot<Router, Request<Incoming>>,
        slot: Option<Arc<Slot>>,
    }
}

impl Future for TrackedResponse {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let slot = this
            .slot
            .take()
            .expect("a future is not polled after it completes");
        // A body of known length is never a stream: most answers skip the header lookup.
        let is_event_stream = response.body().size_hint().exact().is_none()
            && response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|value| value.as_bytes().starts_with(EVENT_STREAM));
        if is_event_stream {
            slot.streaming();
        }
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, slot })))
    }
}

/// A response body that marks its connection idle when hyper is done with it: sent whole, or
/// dropped because the client went away.
pub(super) struct TrackedBody {
    inner: Body,
    slot: Arc<Slot>,
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
        self.slot.response_finished();
    }
}

/// Serves `connection` until it ends, or until it is asked to close or sends no request head
/// within `first_request_timeout`.
pub(super) fn drive(
    connection: Connection,
    registration: Registration,
    first_request_timeout: Duration,
    peer: SocketAddr,
) -> impl Future<Output = ()> {
    // Pinned on the heap before the task's future is made: an async fn would hold the
    // connection twice in its state, as its argument and again pinned, which costs every open
    // connection some 700 bytes.
    let mut connection = Box::pin(connection);
    async move {
        let slot = registration.slot();
        // Dropped once it fires, so that long-lived connections (event streams) do not keep it.
        let mut first_request = Some(Box::pin(tokio::time::sleep(first_request_timeout)));
        let ended = loop {
            tokio::select! {
                ended = connection.as_mut() => break ended,
                Some(()) = OptionFuture::from(first_request.as_mut()), if first_request.is_some() => {
                    first_request = None;
                    if slot.expire_new() {
                        tracing::debug!(%peer, "no request head in time; connection closed");
                        registration.first_request_timed_out();
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
}
