//! The skeleton every route shares: errors, request ids, headers, health, metrics, configuration.

use std::time::Duration;

use crate::common::{Api, error_body, spawn_app, spawn_app_with};

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let app = spawn_app().await;
    let body = error_body(app.get("/no/such/route").await, 404, "not_found").await;
    assert_eq!(body["error"], "Route not found");
}

#[tokio::test]
async fn wrong_method_is_a_json_405_with_allow() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/health"))
        .send()
        .await
        .expect("sent");
    let allow = response
        .headers()
        .get("allow")
        .expect("Allow header")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(allow.contains("GET"), "{allow}");
    error_body(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn request_id_is_generated_or_echoed() {
    let app = spawn_app().await;
    let generated = app.get("/health").await;
    let id = generated
        .headers()
        .get("x-request-id")
        .expect("generated id");
    assert_eq!(id.len(), 36, "a UUID");

    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("sent");
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");

    let on_error = app
        .client
        .get(app.url("/missing"))
        .header("x-request-id", "err-7")
        .send()
        .await
        .expect("sent");
    assert_eq!(on_error.headers()["x-request-id"], "err-7");
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let app = spawn_app().await;
    for path in ["/health", "/missing"] {
        let response = app.get(path).await;
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
        assert_eq!(response.headers()["x-frame-options"], "DENY", "{path}");
        assert!(response.headers().contains_key("referrer-policy"), "{path}");
    }
}

#[tokio::test]
async fn health_reports_status_version_and_uptime() {
    let app = spawn_app().await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptimeSeconds"].is_u64());
}

#[tokio::test]
async fn index_lists_the_endpoints() {
    let app = spawn_app().await;
    let body: serde_json::Value = app.get("/").await.json().await.expect("JSON");
    assert_eq!(body["message"], "BackFlow API");
    assert!(
        body["endpoints"].as_object().is_some_and(|e| e.len() >= 10),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.get("/health").await;
    app.get("/health").await;
    app.get("/nope").await;
    let text = app.metrics().await;
    assert!(
        text.contains("# TYPE http_requests_total counter"),
        "{text}"
    );
    let health = app
        .metric_value(
            "http_requests_total",
            &[r#"route="/health""#, r#"status="200""#],
        )
        .await;
    assert_eq!(health, Some(2.0));
    let unmatched = app
        .metric_value(
            "http_requests_total",
            &[r#"route="unmatched""#, r#"status="404""#],
        )
        .await;
    assert_eq!(unmatched, Some(1.0));
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("runtime_lag_seconds"), "{text}");
}

#[tokio::test]
async fn cors_preflight_is_answered() {
    let app = spawn_app_with(&[("CORS_ORIGINS", "http://localhost:5173")]).await;
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/login"))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("sent");
    assert!(response.status().is_success());
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );

    let foreign = app
        .client
        .get(app.url("/health"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("sent");
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn cors_headers_answer_browsers_and_vary_keeps_caches_right() {
    let listed = spawn_app_with(&[("CORS_ORIGINS", "http://localhost:5173")]).await;
    let from_browser = listed
        .client
        .get(listed.url("/health"))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        from_browser.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert_eq!(
        from_browser.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_lowercase(),
        "x-request-id,retry-after,www-authenticate,idempotent-replayed"
    );
    assert_eq!(from_browser.headers()["vary"], "origin");
    // Not from a browser: no CORS headers, but the same Vary, so a cache keeps the two apart.
    let plain = listed.get("/health").await;
    assert!(!plain.headers().contains_key("access-control-allow-origin"));
    assert_eq!(plain.headers()["vary"], "origin");

    let any = spawn_app_with(&[("CORS_ORIGINS", "*")]).await;
    let from_browser = any
        .client
        .get(any.url("/queue/status"))
        .header("origin", "https://anywhere.example")
        .send()
        .await
        .expect("sent");
    assert_eq!(from_browser.headers()["access-control-allow-origin"], "*");
    // The answer is the same for every origin, so nothing varies.
    assert!(!from_browser.headers().contains_key("vary"));
    assert!(
        !any.get("/queue/status")
            .await
            .headers()
            .contains_key("vary")
    );
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_variable() {
    for (var, value) in [
        ("PORT", "abc"),
        ("BODY_LIMIT_BYTES", "-1"),
        ("HEAVY_POOL", "gpu"),
        ("APP_ENV", "staging"),
        ("RUST_LOG", "backflow=[bad"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_backflow"))
            .env(var, value)
            .env("HOST", "127.0.0.1")
            .env_remove("JWT_SECRET")
            .output()
            .expect("binary runs");
        assert!(!output.status.success(), "{var}={value} must stop start-up");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = stderr.trim();
        assert_eq!(line.lines().count(), 1, "one line for {var}: {stderr}");
        assert!(line.contains(var), "{var} named in: {line}");
    }
}

#[test]
fn production_refuses_a_weak_secret() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_backflow"))
        .env("APP_ENV", "production")
        .env("JWT_SECRET", "too-short")
        .env("AUTH_USERS", "ops:a-long-password")
        .env("HOST", "127.0.0.1")
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("JWT_SECRET"), "{stderr}");
}

#[tokio::test]
async fn one_connection_serves_request_after_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    socket
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_string(&mut answer))
        .await
        .expect("the server closes after the second answer")
        .unwrap();
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(&[("HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    socket
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection is still open after 10 s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the one-second deadline: {:?}",
        started.elapsed()
    );
    assert!(
        rest.is_empty(),
        "an unfinished request got an answer: {}",
        String::from_utf8_lossy(&rest)
    );
    // The server itself is unaffected.
    assert_eq!(app.get("/health").await.status(), 200);
}
