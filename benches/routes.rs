//! What one request costs inside the server: the whole router (every middleware layer, the
//! extractors, the handler, the JSON body) called in process, without sockets or HTTP parsing,
//! next to a bare axum router answering the same `/health` JSON as the load-test floor.
//!
//! The load test (`benches/load.sh`) measures the same routes over loopback, where the kernel
//! and the load generator take most of the time and the figures move with whatever else the
//! machine runs; this isolates the part BackFlow's own code controls.
//!
//! `cargo bench --bench routes -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::routing::get;
use backflow::{AppState, Config, Shutdown};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;

/// Sends `request` through `router` and reads the whole body, as hyper would.
async fn call(router: &Router, request: Request<Body>) -> StatusCode {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("an in-memory body reads");
    black_box(body);
    status
}

fn get_request(uri: &str) -> Request<Body> {
    Request::get(uri)
        .body(Body::empty())
        .expect("a valid request")
}

#[expect(
    clippy::disallowed_methods,
    reason = "the floor is a bare axum route, not a route of the API"
)]
fn routes(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let data_dir = tempfile::tempdir().expect("a temporary data directory");
    let config = Config::from_pairs([
        ("JWT_SECRET", "bench-secret-bench-secret-bench-secret"),
        ("DATA_DIR", data_dir.path().to_str().expect("a UTF-8 path")),
        ("QUEUE_CAPACITY", "100000000"),
        // The cost of the HTTP layer: the store's own cost is measured by benches/load.sh.
        ("STORE", "memory"),
    ])
    .expect("valid bench config");
    let state = runtime
        .block_on(AppState::new(config, Shutdown::new()))
        .expect("the state builds");
    let app = backflow::app::build_router(state.clone());
    let floor = Router::new().route(
        "/health",
        get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    );
    // Login reads the client address from the connection, which an in-process call has none
    // of; the token is issued directly instead.
    let token = runtime
        .block_on(
            state
                .auth
                .login(IpAddr::V4(Ipv4Addr::LOCALHOST), "admin", "admin123"),
        )
        .expect("a demo user")
        .token;

    let mut group = c.benchmark_group("routes");
    group.bench_function("floor_health", |b| {
        b.to_async(&runtime)
            .iter(|| async { assert_eq!(call(&floor, get_request("/health")).await, 200) })
    });
    group.bench_function("health", |b| {
        b.to_async(&runtime)
            .iter(|| async { assert_eq!(call(&app, get_request("/health")).await, 200) })
    });
    group.bench_function("queue_status", |b| {
        b.to_async(&runtime)
            .iter(|| async { assert_eq!(call(&app, get_request("/queue/status")).await, 200) })
    });
    // Formatted once, like the header a client keeps sending.
    let bearer = header::HeaderValue::from_str(&format!("Bearer {token}")).expect("ASCII token");
    group.bench_function("protected", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = Request::get("/protected")
                .header(header::AUTHORIZATION, bearer.clone())
                .body(Body::empty())
                .expect("a valid request");
            assert_eq!(call(&app, request).await, 200);
        })
    });
    group.bench_function("enqueue_dequeue_pair", |b| {
        b.to_async(&runtime).iter(|| async {
            let enqueue = Request::builder()
                .method(Method::POST)
                .uri("/enqueue")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"task":"load","priority":5}"#))
                .expect("a valid request");
            assert_eq!(call(&app, enqueue).await, 200);
            assert_eq!(call(&app, get_request("/dequeue")).await, 200);
        })
    });
    group.finish();
    state.shutdown.trigger();
}

criterion_group!(benches, routes);
criterion_main!(benches);
