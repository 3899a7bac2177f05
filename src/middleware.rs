//! The layers every route shares: request ids, tracing and metrics, CORS, security headers,
//! panics.
//!
//! Order matters and is fixed in [`apply`]: the request id is set first so every log line and
//! response carries it; CORS sits outside everything that can refuse a request, so a browser can
//! read a 429 or a 503; wrong-method answers from the router are rewritten into the JSON error of
//! the contract. Nothing here buffers or times out a response body, so streams stay streams.
//!
//! Every request passes through all of these. The request's id, span, log line and metrics come
//! from one service ([`ObserveLayer`]) instead of tower-http's request-id and trace layers plus a
//! metrics layer: it wins 6 to 11 % of requests/s against them (`docs/PERFORMANCE.md`). CORS is
//! tower-http's layer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use uuid::Uuid;

use crate::config::CorsOrigins;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Header carrying the request id, generated when the client sent none.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client `x-request-id` echoed; a longer one is replaced by a new id.
pub const REQUEST_ID_MAX_LEN: usize = 128;

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
        .layer(cors_for(cors))
        .map_response(add_security_headers)
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .map_response(json_method_not_allowed);
    router.layer(layers)
}

/// tower-http's CORS layer with the allowed origins of `origins`. With a list, answers vary by
/// `Origin` (the layer adds `Vary`), so a shared cache never gives one origin's answer to
/// another.
fn cors_for(origins: &CorsOrigins) -> CorsLayer {
    match origins {
        CorsOrigins::Any => cors_layer(AllowOrigin::any()),
        CorsOrigins::List(list) => cors_layer(AllowOrigin::list(
            list.iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )),
    }
}

/// The CORS rules of the API for `allow_origin`.
fn cors_layer(allow_origin: AllowOrigin) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
            REQUEST_ID,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            REQUEST_ID,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// A new request id: a random UUID v4, formatted on the stack (tower-http's `MakeRequestUuid`
/// goes through a `String` and the formatting machinery for each request).
fn new_request_id() -> HeaderValue {
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(Uuid::new_v4().hyphenated().encode_lower(&mut text))
        .expect("a hyphenated UUID is a valid header value")
}

/// A client's request id is kept when it is 1 to [`REQUEST_ID_MAX_LEN`] visible ASCII
/// characters (no space, no control, nothing beyond ASCII): it goes into every log line and
/// back to the client, so it must not be able to forge a log line or carry a payload.
fn is_acceptable_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= REQUEST_ID_MAX_LEN && bytes.iter().all(u8::is_ascii_graphic)
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
/// One service rather than tower-http's three layers plus a metrics layer: it wraps the future
/// once, keeps the id out of the request's extensions, reads the clock twice and builds the
/// span's fields only when the span is enabled.
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
            .filter(|id| is_acceptable_request_id(id))
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
    use std::sync::{Arc, Mutex};

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

    #[test]
    fn only_short_visible_ascii_request_ids_are_kept() {
        let longest = "a".repeat(REQUEST_ID_MAX_LEN);
        for kept in ["trace-1", "A~!#/:=", longest.as_str()] {
            let id = HeaderValue::from_str(kept).expect("valid header");
            assert!(is_acceptable_request_id(&id), "{kept}");
        }
        let too_long = "a".repeat(REQUEST_ID_MAX_LEN + 1);
        for refused in [
            &b""[..],
            b"two words",
            b"tab\there",
            b"caf\xc3\xa9",
            too_long.as_bytes(),
        ] {
            let id = HeaderValue::from_bytes(refused).expect("valid header");
            assert!(!is_acceptable_request_id(&id), "{refused:?}");
        }
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
