//! Slow and greedy clients are bounded, over real sockets: a client's request id is echoed only
//! when it is short and visible ASCII; `/stream` responses are capped; a trickled body gets a
//! 408 and its connection closes; a client that stops reading is disconnected, from `/stream`
//! and from an event stream; one address cannot open more than its share of connections
//! (trusted proxies excepted); `/metrics` can move to a listener of its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{
    Api, TestApp, client_from, error_body, eventually, publish, spawn_app, spawn_app_with,
};

/// Longest wait for the server to do what it must do soon: a guard, not a timing.
const GUARD: Duration = Duration::from_secs(20);

/// A connection to `app` from the loopback address `local`, whose receive buffer is as small
/// as the kernel allows, so that a client that does not read stalls the server quickly.
async fn connect_from(app: &TestApp, local: Ipv4Addr, small_window: bool) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    if small_window {
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    }
    socket
        .bind(SocketAddr::new(local.into(), 0))
        .expect("bind a loopback address");
    socket.connect(app.addr).await.expect("connected")
}

/// Reads until the server closes the connection (end of file or reset); panics after
/// [`GUARD`]. Returns what was read.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(GUARD, async {
        let mut buffer = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server closed the connection");
    received
}

/// The request id the server answered `GET /health` with, sending `sent`.
async fn answered_id(app: &TestApp, sent: &str) -> String {
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", sent)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    response.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned()
}

#[tokio::test]
async fn a_request_id_is_echoed_only_when_short_and_visible_ascii() {
    let app = spawn_app().await;
    let longest = "r".repeat(128);
    for kept in ["trace-42", longest.as_str()] {
        assert_eq!(answered_id(&app, kept).await, kept);
    }
    let too_long = "r".repeat(129);
    for replaced in [too_long.as_str(), "two words", "tab\there"] {
        let id = answered_id(&app, replaced).await;
        assert_ne!(id, replaced);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "a new id: {id}");
    }
}

#[tokio::test]
async fn past_stream_max_concurrent_a_stream_is_refused_until_one_ends() {
    let app = spawn_app_with(&[("STREAM_MAX_CONCURRENT", "2")]).await;
    // Two slow streams hold both slots while their bodies are open.
    let slow = "/stream?totalItems=1000&chunkSize=1&delay=1000";
    let first = app.get(slow).await;
    let second = app.get(slow).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let refused = app.get(slow).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    error_body(refused, 503, "too_many_streams").await;
    drop(first);
    eventually("a slot is free again", || async {
        app.get("/stream?totalItems=3").await.status() == 200
    })
    .await;
    drop(second);
}

#[tokio::test]
async fn a_trickled_body_gets_408_and_the_connection_closes() {
    let app = spawn_app_with(&[("BODY_READ_TIMEOUT_SECONDS", "1")]).await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connected");
    stream
        .write_all(
            b"POST /enqueue HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
              content-length: 40\r\n\r\n{\"task\":",
        )
        .await
        .expect("head and a part of the body sent");
    let answer = String::from_utf8(read_until_closed(&mut stream).await).expect("UTF-8");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    assert!(answer.contains("connection: close"), "{answer}");
    let body: Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).expect("a body")).expect("JSON body");
    assert_eq!(body["code"], "body_timeout", "{body}");
    // A body that arrives in time is still read.
    let enqueued = app
        .post_json(
            "/enqueue",
            &serde_json::json!({"task": "in time", "priority": 1}),
        )
        .await;
    assert_eq!(enqueued.status(), 200);
}

/// Waits until the server has closed `at_least` connections for stalled writes.
async fn stalls_reach(app: &TestApp, at_least: f64) {
    eventually("the stalled connection is closed", || async {
        app.metric_value(
            "http_connections_closed_total",
            &[r#"reason="write_stall""#],
        )
        .await
        .is_some_and(|closed| closed >= at_least)
    })
    .await;
}

#[tokio::test]
async fn a_client_that_stops_reading_a_stream_is_disconnected() {
    let app = spawn_app_with(&[("WRITE_STALL_TIMEOUT_SECONDS", "1")]).await;
    let mut stalled = connect_from(&app, Ipv4Addr::LOCALHOST, true).await;
    stalled
        .write_all(b"GET /stream?totalItems=10000000&chunkSize=1000 HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .expect("request sent");
    stalls_reach(&app, 1.0).await;
    let received = read_until_closed(&mut stalled).await;
    assert!(
        received.starts_with(b"HTTP/1.1 200 "),
        "the stream had begun"
    );
    // Readers that keep reading are not touched.
    let items = app.get("/stream?totalItems=5000&chunkSize=100").await;
    let body: Vec<Value> = serde_json::from_str(&items.text().await.expect("body")).expect("JSON");
    assert_eq!(body.len(), 5000);
}

#[tokio::test]
async fn a_client_that_stops_reading_an_event_stream_is_disconnected() {
    let app = spawn_app_with(&[("WRITE_STALL_TIMEOUT_SECONDS", "1"), ("STORE", "memory")]).await;
    let mut stalled = connect_from(&app, Ipv4Addr::LOCALHOST, true).await;
    stalled
        .write_all(b"GET /notifications HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .expect("request sent");
    eventually("the event stream is open", || async {
        app.metric_value("sse_connections_open", &[])
            .await
            .is_some_and(|open| open >= 1.0)
    })
    .await;
    // Events large enough to fill the socket's buffers within a few hundred.
    let filler = "x".repeat(16 * 1024);
    let published = tokio::time::timeout(GUARD, async {
        loop {
            let event = backflow::events::NewEvent::app(
                "test.filler",
                backflow::events::Level::Info,
                "filler",
            )
            .with("filler", &filler);
            publish(&app.state, event).await;
            let closed = app
                .metric_value(
                    "http_connections_closed_total",
                    &[r#"reason="write_stall""#],
                )
                .await;
            if closed.is_some_and(|closed| closed >= 1.0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(published.is_ok(), "the stalled event stream was closed");
    read_until_closed(&mut stalled).await;
    eventually("its slot is free", || async {
        app.metric_value("sse_connections_open", &[]).await == Some(0.0)
    })
    .await;
}

#[tokio::test]
async fn one_address_gets_max_connections_per_ip_and_trusted_proxies_are_exempt() {
    let app = spawn_app_with(&[
        ("MAX_CONNECTIONS_PER_IP", "2"),
        ("TRUSTED_PROXIES", "127.0.0.3/32"),
    ])
    .await;
    let greedy = Ipv4Addr::new(127, 0, 0, 2);
    let _held = [
        connect_from(&app, greedy, false).await,
        connect_from(&app, greedy, false).await,
    ];
    // The next one is accepted by the kernel, then closed by the server at once.
    let mut third = connect_from(&app, greedy, false).await;
    let _ = third
        .write_all(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut third).await;
    assert!(answer.is_empty(), "closed without an answer");
    assert_eq!(
        app.metric_value(
            "http_connections_closed_total",
            &[r#"reason="per_ip_limit""#]
        )
        .await,
        Some(1.0)
    );
    // Other addresses are served, and a trusted proxy is not capped.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 4));
    let health = other
        .get(app.url("/health"))
        .send()
        .await
        .expect("answered");
    assert_eq!(health.status(), 200);
    let proxy = Ipv4Addr::new(127, 0, 0, 3);
    let mut proxied = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from(&app, proxy, false).await;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .expect("sent");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.expect("an answer");
        assert_eq!(&head, b"HTTP/1.1 200");
        proxied.push(stream);
    }
}

#[tokio::test]
async fn with_metrics_addr_metrics_are_served_there_only() {
    let app = spawn_app_with(&[("METRICS_ADDR", "127.0.0.1:0")]).await;
    let metrics_addr = app.metrics_addr.expect("a metrics listener");
    assert_ne!(metrics_addr, app.addr);
    error_body(app.get("/metrics").await, 404, "not_found").await;
    let scraped = app
        .client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .expect("answered");
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.expect("text");
    assert!(text.contains("http_requests_total"), "{text}");
    let other = app
        .client
        .get(format!("http://{metrics_addr}/health"))
        .send()
        .await
        .expect("answered");
    error_body(other, 404, "not_found").await;
}
