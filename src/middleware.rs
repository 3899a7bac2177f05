//! The layers every route shares: request ids, tracing and metrics, CORS, security headers,
//! panics.
//!
//! Order matters and is fixed in [`apply`]: the request id is set first so every log line and
//! response carries it; CORS sits outside everything that can refuse a request, so a browser can
//! read a 429 or a 503; wrong-method answers from the router are rewritten into the JSON error of
//! the contract. Nothing here buffers or times out a response body, so streams stay streams.
//!
//! Every request passes through all of these, so they avoid per-request work that the answer
//! does not need: the security headers are added by one plain function; the request's id, span,
//! log line and metrics come from one hand-written service ([`ObserveLayer`]) whose future wraps
//! the inner one without boxing or cloning the rest of the stack (which
//! `axum::middleware::from_fn` does for each request); and requests that are not from a browser
//! skip the CORS layer (see [`BrowserCorsLayer`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, FutureExt, Map};
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{self, AllowOrigin, CorsLayer};
use uuid::Uuid;

use crate::config::CorsOrigins;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Header carrying the request id, generated when the client sent none.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route label for requests that matched no route (keeps metric cardinality bounded).
const UNMATCHED_ROUTE: &str = "unmatched";

/// Method label for methods outside [`KNOWN_METHODS`] (keeps metric cardinality bounded).
const OTHER_METHOD: &str = "other";

/// Methods that get their own metric label.
static KNOWN_METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::CONNECT,
    Method::PATCH,
    Method::TRACE,
];

/// Headers added to every response that does not set them itself.
pub(crate) const SECURITY_HEADERS: [(HeaderName, HeaderValue); 5] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-site"),
    ),
];

/// Wraps `router` in the shared layers, with the observability of `metrics` and the CORS rules
/// of `cors`.
///
/// They are added in one `Router::layer` call: axum wraps every route in a new boxed service
/// for each call, and clones each of those boxes for every request. (The body limit is no layer:
/// it is applied where bodies are read, in [`crate::extract::ApiJson`].)
pub fn apply<S>(router: Router<S>, cors: &CorsOrigins, metrics: Metrics) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let layers = ServiceBuilder::new()
        .layer(ObserveLayer { metrics })
        .layer(BrowserCorsLayer::new(cors))
        .map_response(add_security_headers)
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .map_response(json_method_not_allowed);
    router.layer(layers)
}

/// tower-http's CORS layer, for browsers only: a request with an `Origin` header, and every
/// `OPTIONS` (a preflight), goes through it; any other request (curl, load testers, other
/// services) skips it, since CORS headers mean nothing to such a client and building them costs
/// every request a header map and a second future. Skipping stays safe for caches: when the
/// allowed origins are a list, the skipped answer still carries the `Vary: origin` the layer
/// would add, so a shared cache never serves it to a browser. With `*` the layer adds no `Vary`.
#[derive(Clone)]
struct BrowserCorsLayer {
    cors: CorsLayer,
    vary_origin: bool,
}

impl BrowserCorsLayer {
    /// One decision sets the allowed origins and whether answers vary by origin, and the `Vary`
    /// is given to the CORS layer explicitly rather than left to its own inference, so the
    /// layer's answers and the skipped ones always agree.
    fn new(origins: &CorsOrigins) -> Self {
        let (allow_origin, vary_origin) = match origins {
            CorsOrigins::Any => (AllowOrigin::any(), false),
            CorsOrigins::List(list) => (
                AllowOrigin::list(
                    list.iter()
                        .filter_map(|origin| HeaderValue::from_str(origin).ok()),
                ),
                true,
            ),
        };
        let vary = cors::Vary::list(vary_origin.then_some(header::ORIGIN));
        Self {
            cors: cors_layer(allow_origin).vary(vary),
            vary_origin,
        }
    }
}

impl<S: Clone> Layer<S> for BrowserCorsLayer {
    type Service = BrowserCors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BrowserCors {
            cors: Arc::new(self.cors.layer(inner.clone())),
            inner,
            vary_origin: self.vary_origin,
        }
    }
}

/// See [`BrowserCorsLayer`]. Requests that skip CORS go straight to `inner`. The CORS service,
/// whose rules are a dozen header values, sits behind an `Arc` as a template, so that axum's
/// clone of the stack for every request does not copy those rules for every request: only a
/// browser's request clones the template.
#[derive(Clone)]
struct BrowserCors<S> {
    inner: S,
    cors: Arc<cors::Cors<S>>,
    vary_origin: bool,
}

/// A response, or the error of the service that should have produced it.
type Answer<B, E> = Result<Response<B>, E>;
/// What is done to the answer of a request that skipped the CORS layer.
type Finish<B, E> = fn(Answer<B, E>) -> Answer<B, E>;

impl<S, B> Service<Request> for BrowserCors<S>
where
    S: Service<Request, Response = Response<B>> + Clone,
    B: Default,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Either<cors::ResponseFuture<S::Future>, Map<S::Future, Finish<B, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() == Method::OPTIONS || request.headers().contains_key(header::ORIGIN) {
            // The CORS service gets the inner service readied by `poll_ready`; the template's
            // unreadied copy takes its place until the next `poll_ready`.
            let mut cors = cors::Cors::clone(&self.cors);
            std::mem::swap(cors.get_mut(), &mut self.inner);
            return Either::Left(cors.call(request));
        }
        let finish: Finish<B, S::Error> = if self.vary_origin {
            |answer| {
                answer.map(|mut response| {
                    response.headers_mut().append(
                        header::VARY,
                        HeaderValue::from_static(header::ORIGIN.as_str()),
                    );
                    response
                })
            }
        } else {
            |answer| answer
        };
        Either::Right(self.inner.call(request).map(finish))
    }
}

/// The CORS rules of the API for `allow_origin`.
fn cors_layer(allow_origin: AllowOrigin) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
            REQUEST_ID,
        ])
        .expose_headers([REQUEST_ID, header::RETRY_AFTER, header::WWW_AUTHENTICATE])
        .max_age(std::time::Duration::from_secs(600))
}

/// A new request id: a random UUID v4, formatted on the stack (tower-http's `MakeRequestUuid`
/// goes through a `String` and the formatting machinery for each request).
fn new_request_id() -> HeaderValue {
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(Uuid::new_v4().hyphenated().encode_lower(&mut text))
        .expect("a hyphenated UUID is a valid header value")
}

fn add_security_headers<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.entry(name).or_insert(value);
    }
    response
}

/// The router answers a known path with a wrong method by an empty 405; give it the JSON body.
fn json_method_not_allowed(response: Response) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED || is_json(&response) {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    ApiError::MethodNotAllowed { allow }.into_response()
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// The outermost layer: what every request carries from its arrival to its answer.
///
/// It gives the request its id (the client's `x-request-id`, or a new UUID), runs the rest of
/// the stack inside the request's span (method, route, path, id), and when the answer is ready
/// records it in the metrics (by method, route template and status), logs it (`info`, or
/// `error` for a 5xx) and echoes the id on it.
///
/// One service instead of tower-http's `SetRequestId`, `TraceLayer` and `PropagateRequestId`
/// plus a metrics layer, because every request pays for each: those wrap the request, its
/// future and its body in turn, store the id in the request's extensions (a map allocated for
/// it) and read the clock up to eight times per request even when nothing is logged. This reads
/// it twice, and builds the span's fields only when the span is enabled.
#[derive(Clone)]
struct ObserveLayer {
    metrics: Metrics,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`ObserveLayer`].
#[derive(Clone)]
struct Observe<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .cloned()
            .unwrap_or_else(new_request_id);
        let method = KNOWN_METHODS
            .iter()
            .find(|known| *known == request.method())
            .map_or(OTHER_METHOD, Method::as_str);
        let route = request.extensions().get::<MatchedPath>().cloned();
        // The field values are computed only when the span is enabled.
        let span = tracing::info_span!(
            "request",
            method = %request.method(),
            route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str),
            path = %request.uri().path(),
            request_id = request_id.to_str().unwrap_or("-"),
        );
        let inner = span.in_scope(|| self.inner.call(request));
        ObserveFuture {
            inner,
            span,
            request_id: Some(request_id),
            metrics: self.metrics.clone(),
            method,
            route,
            started,
        }
    }
}

pin_project! {
    /// The inner response future, polled in the request's span; see [`ObserveLayer`].
    struct ObserveFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        request_id: Option<HeaderValue>,
        metrics: Metrics,
        method: &'static str,
        route: Option<MatchedPath>,
        started: Instant,
    }
}

impl<F, B, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result {
            let latency = this.started.elapsed();
            let status = response.status();
            let route = this
                .route
                .as_ref()
                .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
            this.metrics
                .record_request(this.method, route, status.as_u16(), latency);
            if let Some(id) = this.request_id.take() {
                response.headers_mut().entry(REQUEST_ID).or_insert(id);
            }
            let latency_ms = latency.as_secs_f64() * 1000.0;
            if status.is_server_error() {
                tracing::error!(status = status.as_u16(), latency_ms, "response failed");
            } else {
                tracing::info!(
                    status = status.as_u16(),
                    latency_ms,
                    "finished processing request"
                );
            }
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn get_request(path: &str) -> Request {
        Request::get(path)
            .body(Body::empty())
            .expect("valid request")
    }

    #[tokio::test(flavor = "current_thread")]
    #[expect(
        clippy::disallowed_methods,
        reason = "stand-in routes to observe the layers, not routes of the API"
    )]
    async fn each_answer_is_logged_once_in_its_request_span_with_its_id() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let router: Router = apply(
            Router::new()
                .route("/items/{id}", get(|| async { "ok" }))
                .route("/boom", get(|| async { StatusCode::INTERNAL_SERVER_ERROR })),
            &CorsOrigins::Any,
            Metrics::new(),
        );

        let mut request = get_request("/items/7");
        request
            .headers_mut()
            .insert(REQUEST_ID, HeaderValue::from_static("trace-1"));
        let echoed = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(echoed.headers()[REQUEST_ID], "trace-1");
        let failed = router
            .oneshot(get_request("/boom"))
            .await
            .expect("infallible");
        let generated = failed.headers()[REQUEST_ID].to_str().expect("ascii");
        assert_eq!(generated.len(), 36, "a UUID: {generated}");

        let logs = String::from_utf8(captured.0.lock().expect("not poisoned").clone())
            .expect("UTF-8 logs");
        let lines: Vec<&str> = logs.lines().collect();
        assert_eq!(lines.len(), 2, "one line per request:\n{logs}");
        for expected in [
            " INFO ",
            "method=GET",
            r#"route="/items/{id}""#,
            "path=/items/7",
            r#"request_id="trace-1""#,
            "finished processing request",
            "status=200",
            "latency_ms=",
        ] {
            assert!(lines[0].contains(expected), "{expected} in {}", lines[0]);
        }
        for expected in [
            " ERROR ",
            r#"route="/boom""#,
            &format!(r#"request_id="{generated}""#),
            "response failed",
            "status=500",
        ] {
            assert!(lines[1].contains(expected), "{expected} in {}", lines[1]);
        }
    }
}
