//! The layers every route shares: request ids, tracing, CORS, security headers, metrics, panics.
//!
//! Order matters and is fixed in [`apply`]: the request id is set first so every log line and
//! response carries it; CORS sits outside everything that can refuse a request, so a browser can
//! read a 429 or a 503; wrong-method answers from the router are rewritten into the JSON error of
//! the contract. Nothing here buffers or times out a response body, so streams stay streams.
//!
//! Every request passes through all of these, so they avoid per-request work that the answer
//! does not need: the security headers are added by one plain function, the metrics layer
//! is a hand-written service whose future wraps the inner one without boxing or cloning the
//! rest of the stack (which `axum::middleware::from_fn` does for each request), and requests
//! that are not from a browser skip the CORS layer (see [`BrowserCorsLayer`]).

use std::future::Future;
use std::pin::Pin;
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
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
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
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 5] = [
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

/// Wraps `router` in the shared layers.
pub fn apply<S>(router: Router<S>, cors: &CorsOrigins, metrics: Metrics) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, NewRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(BrowserCorsLayer::new(cors))
        .map_response(add_security_headers)
        .layer(RecordMetricsLayer { metrics })
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .map_response(json_method_not_allowed);
    router.layer(layers)
}

/// The span of one request. Field values are computed only when the span is enabled, so with
/// `RUST_LOG` above `info` this costs a level check.
fn make_span(request: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = route_of(request),
        path = %request.uri().path(),
        request_id = request_id_of(request),
    )
}

fn route_of(request: &Request) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
}

fn request_id_of(request: &Request) -> &str {
    request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-")
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

impl<S> Layer<S> for BrowserCorsLayer {
    type Service = BrowserCors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BrowserCors {
            cors: self.cors.layer(inner),
            vary_origin: self.vary_origin,
        }
    }
}

/// See [`BrowserCorsLayer`]. Requests that skip CORS are sent to the service the CORS layer
/// wraps, so the stack is cloned once per request, as without this layer.
#[derive(Clone)]
struct BrowserCors<S> {
    cors: cors::Cors<S>,
    vary_origin: bool,
}

/// A response, or the error of the service that should have produced it.
type Answer<B, E> = Result<Response<B>, E>;
/// What is done to the answer of a request that skipped the CORS layer.
type Finish<B, E> = fn(Answer<B, E>) -> Answer<B, E>;

impl<S, B> Service<Request> for BrowserCors<S>
where
    S: Service<Request, Response = Response<B>>,
    B: Default,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Either<cors::ResponseFuture<S::Future>, Map<S::Future, Finish<B, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readies the wrapped service too, whichever of the two is then called.
        self.cors.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() == Method::OPTIONS || request.headers().contains_key(header::ORIGIN) {
            return Either::Left(self.cors.call(request));
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
        Either::Right(self.cors.get_mut().call(request).map(finish))
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

/// Ids for requests that come without one: a random UUID v4, formatted on the stack (tower-http's
/// `MakeRequestUuid` goes through a `String` and the formatting machinery for each request).
#[derive(Clone, Copy)]
struct NewRequestUuid;

impl MakeRequestId for NewRequestUuid {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        let text = Uuid::new_v4().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
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

/// Counts each answered request and records its latency, by method, route template and status.
#[derive(Clone)]
struct RecordMetricsLayer {
    metrics: Metrics,
}

impl<S> Layer<S> for RecordMetricsLayer {
    type Service = RecordMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
struct RecordMetrics<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B> Service<Request> for RecordMetrics<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RecordMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = KNOWN_METHODS
            .iter()
            .find(|known| *known == request.method())
            .map_or(OTHER_METHOD, Method::as_str);
        let route = request.extensions().get::<MatchedPath>().cloned();
        RecordMetricsFuture {
            inner: self.inner.call(request),
            metrics: self.metrics.clone(),
            method,
            route,
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// The inner response future; records the request when it completes with a response.
    struct RecordMetricsFuture<F> {
        #[pin]
        inner: F,
        metrics: Metrics,
        method: &'static str,
        route: Option<MatchedPath>,
        started: Instant,
    }
}

impl<F, B, E> Future for RecordMetricsFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let route = this
                .route
                .as_ref()
                .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
            this.metrics.record_request(
                this.method,
                route,
                response.status().as_u16(),
                this.started.elapsed(),
            );
        }
        Poll::Ready(result)
    }
}
