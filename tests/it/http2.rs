//! HTTPS and HTTP/2, over real TLS handshakes with a certificate made in the test: ALPN offers
//! h2 and HTTP/1.1 on one port, the plain port speaks h2c with prior knowledge beside HTTP/1.1,
//! and every route behaves over HTTP/2 as it does over HTTP/1.1: many event streams on one
//! connection (each taking its own `SSE_MAX_CONNECTIONS` slot), `/stream` as valid JSON and
//! cancelled by a stream reset, the heavy routes cancelled the same way, the same errors and
//! headers. The connection caps hold (`HTTP2_MAX_CONCURRENT_STREAMS`, the connection registry),
//! a stop sends GOAWAY and drains, and SIGHUP reloads the certificate without dropping
//! connections.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::h2::{H2Connection, H2Events, TestCertificate, tls_connect, try_tls_connect};
use crate::common::nginx::Nginx;
use crate::common::process::{ServerProcess, refused_start};
use crate::common::{Api, CONNECTED, TestApp, eventually, spawn_app_with};

/// A server on HTTPS with `cert`, plus `settings`; its `/metrics` on a plain listener of its
/// own, for [`metric`].
async fn https_app(cert: &TestCertificate, settings: &[(&str, &str)]) -> TestApp {
    let mut all = cert.settings().to_vec();
    all.push(("METRICS_ADDR", "127.0.0.1:0"));
    all.extend_from_slice(settings);
    spawn_app_with(&all).await
}

/// The first sample of `name` with `labels` in `app`'s metrics (read where they are served).
async fn metric(app: &TestApp, name: &str, labels: &[&str]) -> Option<f64> {
    let Some(metrics_addr) = app.metrics_addr else {
        return app.metric_value(name, labels).await;
    };
    let text = app
        .client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .expect("metrics answered")
        .text()
        .await
        .expect("metrics text");
    crate::common::metric_in(&text, name, labels)
}

/// Sends one HTTP/1.1 `GET path` on `stream` and reads the whole answer (the server closes).
async fn http1_get<S>(stream: &mut S, path: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    String::from_utf8(answer).expect("UTF-8 answer")
}

/// The open connections of `app` in `state` (`idle`, `active`, `sse`...).
async fn connections_in(app: &TestApp, state: &str) -> f64 {
    let label = format!(r#"state="{state}""#);
    metric(app, "http_connections_open", &[&label])
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn https_offers_http2_and_http1_by_alpn_and_sends_hsts() {
    let cert = TestCertificate::new();
    let app = https_app(&cert, &[]).await;

    let mut h2 = H2Connection::tls(app.addr, &cert.der).await;
    let mut health = h2.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(
        health.headers["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(health.json().await["status"], "ok");

    let mut http1 = tls_connect(app.addr, &cert.der, &[b"http/1.1"]).await;
    assert_eq!(http1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let answer = http1_get(&mut http1, "/health").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        answer.contains("strict-transport-security: max-age=31536000"),
        "{answer}"
    );
    // A client that offers no ALPN gets HTTP/1.1.
    let mut plain = tls_connect(app.addr, &cert.der, &[]).await;
    assert!(
        http1_get(&mut plain, "/health")
            .await
            .starts_with("HTTP/1.1 200 ")
    );
}

#[tokio::test]
async fn the_plain_port_speaks_h2c_and_http1_side_by_side_without_hsts() {
    let app = spawn_app_with(&[]).await;
    let mut h2 = H2Connection::h2c(app.addr).await;
    let mut health = h2.get("/health").await;
    assert_eq!(health.status, 200);
    assert!(!health.headers.contains_key("strict-transport-security"));
    assert_eq!(health.json().await["status"], "ok");
    let http1 = app.get("/health").await;
    assert_eq!(http1.status(), 200);
    assert_eq!(http1.version(), reqwest::Version::HTTP_11);
}

#[tokio::test]
async fn many_event_streams_share_one_http2_connection_each_with_its_own_slot() {
    let cert = TestCertificate::new();
    let app = https_app(&cert, &[("SSE_MAX_CONNECTIONS", "10"), ("STORE", "memory")]).await;
    let mut h2 = H2Connection::tls(app.addr, &cert.der).await;
    let mut streams = Vec::new();
    for _ in 0..10 {
        let mut events = H2Events::new(h2.get("/notifications").await);
        assert_eq!(events.next_data().await, CONNECTED);
        streams.push(events);
    }
    assert_eq!(metric(&app, "sse_connections_open", &[]).await, Some(10.0));
    // One connection, streaming: the registry counts connections, the stream cap counts streams.
    assert_eq!(connections_in(&app, "sse").await, 1.0);
    let mut refused = h2.get("/notifications").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json().await["code"], "too_many_streams");

    let published = crate::common::publish(
        &app.state,
        backflow::events::NewEvent::app("test.fanout", backflow::events::Level::Info, "to all"),
    )
    .await;
    for events in &mut streams {
        loop {
            let data: Value = serde_json::from_str(&events.next_data().await).expect("JSON");
            if data["id"] == published {
                assert_eq!(data["event"], "test.fanout");
                break;
            }
        }
    }
    // Each stream ends on its own: a reset frees its slot, the connection goes on.
    drop(streams.pop());
    eventually("the reset stream's slot is free", || async {
        metric(&app, "sse_connections_open", &[]).await == Some(9.0)
    })
    .await;
    let mut again = H2Events::new(h2.get("/notifications").await);
    assert_eq!(again.next_data().await, CONNECTED);
}

#[tokio::test]
async fn every_event_stream_of_one_http2_connection_gets_its_own_keep_alives() {
    // No notification for an hour: what arrives on the quiet streams is keep-alives.
    let app = spawn_app_with(&[
        ("SSE_KEEPALIVE_SECONDS", "1"),
        ("NOTIFY_INTERVAL_MS", "3600000"),
        ("STORE", "memory"),
    ])
    .await;
    let mut h2 = H2Connection::h2c(app.addr).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut events = H2Events::new(h2.get("/notifications").await);
        assert_eq!(events.next_data().await, CONNECTED);
        streams.push(events);
    }
    for (index, events) in streams.iter_mut().enumerate() {
        let comment = tokio::time::timeout(Duration::from_secs(10), events.next_comment())
            .await
            .unwrap_or_else(|_| panic!("stream {index}: no keep-alive within 10 s"));
        assert!(
            comment.contains("keep-alive"),
            "stream {index} got {comment:?}"
        );
    }
}

#[tokio::test]
async fn stream_over_http2_is_valid_json_and_a_reset_cancels_it() {
    let app = spawn_app_with(&[]).await;
    let mut h2 = H2Connection::h2c(app.addr).await;
    let mut whole = h2.get("/stream?totalItems=3000&chunkSize=100").await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.headers["content-type"], "application/json");
    let items = whole.json().await;
    assert_eq!(items.as_array().map(Vec::len), Some(3000));
    assert_eq!(items[2999]["id"], 3000);

    // A slow stream, reset after its first chunk: the producer stops, the connection is idle.
    let mut slow = h2
        .get("/stream?totalItems=100000&chunkSize=10&delay=50")
        .await;
    assert!(slow.chunk().await.is_some());
    drop(slow);
    eventually("the reset stream is counted aborted", || async {
        app.metric_value("stream_responses_total", &[r#"outcome="aborted""#])
            .await
            .is_some_and(|aborted| aborted >= 1.0)
    })
    .await;
    eventually("the connection is idle", || async {
        connections_in(&app, "idle").await >= 1.0
    })
    .await;
    assert_eq!(
        app.metric_value("stream_responses_open", &[]).await,
        Some(0.0)
    );
}

#[tokio::test]
async fn a_reset_stream_cancels_its_heavy_job() {
    let app = spawn_app_with(&[]).await;
    // The response head comes only when the job is done: open the stream, then reset it.
    let request = axum::http::Request::get(format!(
        "http://{}/heavy-task-worker?n=50&pool=blocking",
        app.addr
    ))
    .body(())
    .expect("request");
    let (sender, connection) = {
        let tcp = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("connected");
        h2::client::handshake(tcp).await.expect("handshake")
    };
    tokio::spawn(connection);
    let mut sender = sender.ready().await.expect("ready");
    let (response, _) = sender.send_request(request, true).expect("sent");
    eventually("the job runs", || async {
        app.metric_value("heavy_tasks_running", &[r#"method="spawn_blocking""#])
            .await
            == Some(1.0)
    })
    .await;
    drop(response);
    drop(sender);
    eventually("the reset cancels the job", || async {
        app.metric_value(
            "heavy_tasks_cancelled_total",
            &[r#"method="spawn_blocking""#],
        )
        .await
            == Some(1.0)
    })
    .await;
}

#[tokio::test]
async fn errors_and_headers_are_the_same_over_http2_and_http1() {
    let app = spawn_app_with(&[]).await;
    let mut h2 = H2Connection::h2c(app.addr).await;
    for (path, status, code) in [
        ("/nowhere", 404, "not_found"),
        ("/stream?totalItems=-1", 400, "invalid_input"),
    ] {
        let mut over_h2 = h2.get(path).await;
        let over_h1 = app.get(path).await;
        assert_eq!(over_h2.status.as_u16(), status, "{path}");
        assert_eq!(over_h1.status().as_u16(), status, "{path}");
        for header in [
            "content-type",
            "x-content-type-options",
            "x-frame-options",
            "referrer-policy",
            "content-security-policy",
        ] {
            assert_eq!(
                over_h2.headers.get(header),
                over_h1.headers().get(header),
                "{header} of {path}"
            );
        }
        assert!(over_h2.headers.contains_key("x-request-id"));
        let body_h2 = over_h2.json().await;
        let body_h1: Value = over_h1.json().await.expect("JSON");
        assert_eq!(body_h2, body_h1, "{path}");
        assert_eq!(body_h2["code"], code);
    }
    let mut method = h2.post_json("/health", &json!({})).await;
    assert_eq!(method.status, 405);
    assert!(method.headers.contains_key("allow"));
    assert_eq!(method.json().await["code"], "method_not_allowed");
    let mut enqueued = h2
        .post_json("/enqueue", &json!({"task": "over h2", "priority": 2}))
        .await;
    assert_eq!(enqueued.status, 200);
    assert_eq!(enqueued.json().await["task"], "over h2");
}

#[tokio::test]
async fn the_stream_cap_per_connection_is_announced_and_the_registry_counts_http2_connections() {
    let app = spawn_app_with(&[
        ("HTTP2_MAX_CONCURRENT_STREAMS", "3"),
        ("MAX_CONNECTIONS", "2"),
    ])
    .await;
    let mut h2 = H2Connection::h2c(app.addr).await;
    let mut health = h2.get("/health").await;
    health.bytes().await;
    assert_eq!(h2.max_concurrent_streams(), 3);
    // At MAX_CONNECTIONS an idle HTTP/2 connection makes room like an idle HTTP/1.1 one.
    let _other = H2Connection::h2c(app.addr).await;
    eventually("both are open", || async {
        connections_in(&app, "idle").await + connections_in(&app, "new").await >= 1.0
    })
    .await;
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let answer = fresh
        .get(app.url("/health"))
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200);
    eventually("an idle connection was closed to make room", || async {
        app.metric_value("http_connections_closed_total", &[r#"reason="make_room""#])
            .await
            .is_some_and(|closed| closed >= 1.0)
    })
    .await;
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_like_an_idle_http1_one() {
    let app = spawn_app_with(&[("HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let mut h2 = H2Connection::h2c(app.addr).await;
    let mut health = h2.get("/health").await;
    health.bytes().await;
    // No stream for a second or two: the server sends GOAWAY and closes.
    h2.closed().await;
    eventually("the connection is gone", || async {
        connections_in(&app, "idle").await == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_stop_sends_goaway_and_lets_open_streams_finish() {
    let app = spawn_app_with(&[]).await;
    let mut h2 = H2Connection::h2c(app.addr).await;
    let mut running = h2.get("/stream?totalItems=20&chunkSize=1&delay=50").await;
    assert!(running.chunk().await.is_some());
    let stopped = tokio::spawn(app.stop());
    // The stream in progress is finished whole.
    let mut rest = running.bytes().await;
    let mut body = b"[".to_vec();
    body.append(&mut rest);
    let text = String::from_utf8(body).expect("UTF-8");
    assert!(
        text.trim_end().ends_with(']'),
        "the array is complete: {text}"
    );
    h2.closed().await;
    stopped.await.expect("stopped");
}

#[tokio::test]
async fn a_missing_or_bad_certificate_stops_start_up_with_one_line_naming_it() {
    let (status, output) = refused_start(&[
        ("TLS_CERT_FILE", "/nonexistent/cert.pem"),
        ("TLS_KEY_FILE", "/nonexistent/key.pem"),
    ])
    .await;
    assert!(!status.success());
    let line = output
        .lines()
        .find(|line| line.contains("TLS_CERT_FILE"))
        .unwrap_or_else(|| panic!("a line names the file:\n{output}"));
    assert!(line.contains("/nonexistent/cert.pem"), "{line}");

    let cert = TestCertificate::new();
    let other = TestCertificate::new();
    let key = other.key_file.to_str().expect("UTF-8");
    let cert_file = cert.cert_file.to_str().expect("UTF-8");
    let (status, output) =
        refused_start(&[("TLS_CERT_FILE", cert_file), ("TLS_KEY_FILE", key)]).await;
    assert!(!status.success());
    assert!(
        output
            .lines()
            .any(|line| line.contains("TLS_KEY_FILE") && line.contains(key)),
        "a key that is not the certificate's is named:\n{output}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let cert = TestCertificate::new();
    let server = ServerProcess::start(&cert.settings()).await;
    let mut before = H2Connection::tls(server.addr, &cert.der).await;
    assert_eq!(before.get("/health").await.status, 200);

    let renewed = TestCertificate::new();
    cert.overwrite_with(&renewed);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(server.pid() as i32).expect("a pid"),
        rustix::process::Signal::HUP,
    )
    .expect("SIGHUP sent");
    // New handshakes get the new certificate (trusting it alone, one eventually succeeds)...
    eventually("the renewed certificate is served", || async {
        try_tls_connect(server.addr, &renewed.der, &[b"h2"])
            .await
            .is_ok()
    })
    .await;
    // ...and the connection opened before the reload still answers.
    assert_eq!(before.get("/health").await.status, 200);
    server.terminate().await;
}

#[tokio::test]
async fn nginx_terminates_tls_with_http2_in_front_of_plain_instances() {
    let cert = TestCertificate::new();
    let app = spawn_app_with(&[("STORE", "memory")]).await;
    let nginx = Nginx::start_tls(&[app.addr], &cert.cert_file, &cert.key_file).await;

    let mut h2 = H2Connection::tls(nginx.addr, &cert.der).await;
    let mut health = h2.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(
        health.headers["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(health.json().await["status"], "ok");
    // Event streams through nginx share the client's one connection and are not buffered.
    let mut streams = Vec::new();
    for _ in 0..8 {
        let mut events = H2Events::new(h2.get("/notifications").await);
        assert_eq!(events.next_data().await, CONNECTED);
        streams.push(events);
    }
    for events in &mut streams {
        let notification: Value =
            serde_json::from_str(&events.next_data().await).expect("JSON event");
        assert!(notification["type"].is_string(), "{notification}");
    }
    // HTTP/1.1 clients reach the same port.
    let mut http1 = tls_connect(nginx.addr, &cert.der, &[b"http/1.1"]).await;
    let answer = http1_get(&mut http1, "/health").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        nginx
            .error_log()
            .lines()
            .all(|line| !line.contains("[emerg]"))
    );
}
