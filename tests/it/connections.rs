//! Idle connections never stop the server from answering: the open-file limit is raised at
//! start, idle connections are closed to admit new ones at `MAX_CONNECTIONS` or when the
//! process runs out of file descriptors, requests in flight and event streams are never the
//! ones closed, and a connection that sends no request is closed after the first-request
//! deadline. Each test starts the real binary as a process of its own, under an open-file limit
//! set for that process alone.

use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::process::{
    FdLimit, ServerProcess, raise_own_fd_limit, refused_start_with_fd_limit,
};
use crate::common::{Api, error_body, eventually, metric_in, notifications};

/// Longest wait for anything the server is expected to do soon: a guard against a hanging
/// test, not a timing assertion.
const GUARD: Duration = Duration::from_secs(20);

/// How soon `/health` must answer while the server is flooded.
const HEALTH_WITHIN: Duration = Duration::from_secs(1);

/// Starts the binary with `envs` and a data directory of its own (returned, to be kept while
/// the server runs), under `fd_limit` when one is given.
async fn start(envs: &[(&str, &str)], fd_limit: Option<FdLimit>) -> (ServerProcess, TempDir) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let data_path = data_dir.path().to_str().expect("UTF-8 path");
    let mut envs = envs.to_vec();
    envs.push(("DATA_DIR", data_path));
    (
        ServerProcess::start_with_fd_limit(&envs, fd_limit).await,
        data_dir,
    )
}

/// A client that opens a new connection for every request, so that no request depends on a
/// pooled connection the server may have closed to make room.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(GUARD)
        .build()
        .expect("client")
}

/// Opens up to `n` connections that send nothing, as fast as it can, and keeps them; stops early
/// when this process or the kernel refuses more.
async fn open_idle(server: &ServerProcess, n: usize) -> Vec<TcpStream> {
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(server.addr)).await {
            Ok(Ok(stream)) => idle.push(stream),
            _ => break,
        }
    }
    idle
}

/// The `/metrics` text, read on a connection of its own.
async fn metrics(server: &ServerProcess) -> String {
    fresh_client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics answered")
        .text()
        .await
        .expect("metrics body")
}

/// Waits until the sample of `metric` with `labels` reaches `at_least`; returns it.
async fn metric_reaches(
    server: &ServerProcess,
    metric: &str,
    labels: &[&str],
    at_least: f64,
) -> f64 {
    eventually(&format!("{metric} {labels:?} >= {at_least}"), || async {
        metric_in(&metrics(server).await, metric, labels).filter(|&value| value >= at_least)
    })
    .await
}

/// Opens `n` idle connections, more than the server may keep; waits until it has closed some
/// to make room and checks that `/health` answers at once. The connections, and how many the
/// server closed.
async fn flood_past_the_limit(server: &ServerProcess, n: usize) -> (Vec<TcpStream>, f64) {
    let idle = open_idle(server, n).await;
    let made_room =
        metric_reaches(server, "http_connections_closed_total", &["make_room"], 1.0).await;
    health_answers_at_once(server).await;
    (idle, made_room)
}

/// `GET /health` on a new connection answers 200 within [`HEALTH_WITHIN`].
async fn health_answers_at_once(server: &ServerProcess) {
    let started = Instant::now();
    let response = tokio::time::timeout(
        HEALTH_WITHIN,
        fresh_client().get(server.url("/health")).send(),
    )
    .await
    .unwrap_or_else(|_| panic!("/health did not answer within {HEALTH_WITHIN:?}"))
    .expect("/health answered");
    assert_eq!(response.status(), 200, "after {:?}", started.elapsed());
}

/// `GET /health` on a new connection is refused within [`HEALTH_WITHIN`]: `503 server_busy`
/// with `Retry-After`.
async fn health_is_refused_at_once(server: &ServerProcess) {
    let started = Instant::now();
    let response = fresh_client()
        .get(server.url("/health"))
        .send()
        .await
        .expect("answered");
    assert!(started.elapsed() < HEALTH_WITHIN, "{:?}", started.elapsed());
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response.headers().contains_key("x-request-id"));
    let body = error_body(response, 503, "server_busy").await;
    assert_eq!(body["retryAfterSeconds"], 1);
}

/// The `/metrics` text, once the server serves new connections again.
async fn metrics_once_served_again(server: &ServerProcess) -> String {
    eventually("a new connection served", || async {
        let response = fresh_client()
            .get(server.url("/metrics"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(response.text().await.ok()?)
    })
    .await
}

/// The soft and hard limits on open files of process `pid`, from `/proc`.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("an open-files line");
    let mut numbers = line
        .split_whitespace()
        .filter_map(|word| word.parse::<u64>().ok());
    (
        numbers.next().expect("soft limit"),
        numbers.next().expect("hard limit"),
    )
}

#[tokio::test]
async fn a_low_soft_limit_is_raised_and_3000_idle_connections_stay_open() {
    raise_own_fd_limit();
    // The connections must outlive this test's own slowness on a busy machine.
    let (server, _data_dir) = start(
        &[("FIRST_REQUEST_TIMEOUT_SECONDS", "120")],
        Some((1024, 4096)),
    )
    .await;
    assert_eq!(open_file_limits(server.pid()), (4096, 4096));

    let _idle = open_idle(&server, 3000).await;
    let new = metric_reaches(
        &server,
        "http_connections_open",
        &[r#"state="new""#],
        3000.0,
    )
    .await;
    health_answers_at_once(&server).await;

    let text = metrics(&server).await;
    let made_room = metric_in(&text, "http_connections_closed_total", &["make_room"]);
    assert_eq!(made_room, Some(0.0), "{new} open, none closed: {text}");
}

#[tokio::test]
async fn at_a_hard_limit_of_1024_idle_connections_make_room_for_new_ones() {
    raise_own_fd_limit();
    let (server, _data_dir) = start(&[], Some((1024, 1024))).await;

    let (idle, _) = flood_past_the_limit(&server, 1500).await;
    assert!(idle.len() >= 1024, "the client opened {}", idle.len());

    let response = fresh_client()
        .get(server.url("/heavy-task-child?n=5"))
        .send()
        .await
        .expect("heavy task answered");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["method"], "child_process");
    assert_eq!(body["result"], 5);

    let text = metrics(&server).await;
    let open: f64 = ["new", "active", "idle", "sse", "closing"]
        .iter()
        .filter_map(|state| {
            metric_in(
                &text,
                "http_connections_open",
                &[&format!(r#"state="{state}""#)],
            )
        })
        .sum();
    assert!(open <= 768.0 + 32.0, "open connections {open}: {text}");

    // The stop closes the idle connections at once; the log shows the default stream cap was
    // lowered to fit the limit.
    let (status, log) = server.terminate().await;
    assert!(status.success(), "exit status {status}");
    assert!(
        log.iter()
            .any(|line| line.contains("SSE_MAX_CONNECTIONS lowered from its default")),
        "{log:#?}"
    );
}

#[tokio::test]
async fn out_of_file_descriptors_the_server_still_makes_room() {
    raise_own_fd_limit();
    // A cap the process cannot reach: accepts fail with EMFILE before it is.
    let (server, _data_dir) = start(&[("MAX_CONNECTIONS", "5000")], Some((1024, 1024))).await;
    let _idle = flood_past_the_limit(&server, 1500).await;
    metric_reaches(&server, "http_accept_errors_total", &["emfile"], 1.0).await;
}

#[tokio::test]
async fn out_of_file_descriptors_with_every_connection_busy_a_new_one_still_gets_an_answer() {
    // Caps the process cannot reach: its 64 descriptors run out first, all held by streams.
    let (server, _data_dir) = start(
        &[("MAX_CONNECTIONS", "1000"), ("SSE_MAX_CONNECTIONS", "1000")],
        Some((64, 64)),
    )
    .await;
    let mut streams = Vec::new();
    let refused = loop {
        assert!(
            streams.len() < 64,
            "64 streams open in a process of 64 descriptors"
        );
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(b"GET /notifications HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        let mut status = [0u8; 12];
        tokio::time::timeout(GUARD, stream.read_exact(&mut status))
            .await
            .expect("an answer")
            .expect("a status line");
        match &status {
            b"HTTP/1.1 200" => streams.push(stream),
            b"HTTP/1.1 503" => break stream,
            other => panic!("{}", String::from_utf8_lossy(other)),
        }
    };
    drop(refused);
    health_is_refused_at_once(&server).await;

    drop(streams);
    let text = metrics_once_served_again(&server).await;
    assert!(
        metric_in(&text, "http_accept_errors_total", &["emfile"]) >= Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn requests_in_flight_and_event_streams_survive_a_flood_of_idle_connections() {
    raise_own_fd_limit();
    let (server, _data_dir) = start(
        &[("MAX_CONNECTIONS", "64"), ("NOTIFY_INTERVAL_MS", "50")],
        None,
    )
    .await;
    let mut events = notifications(&server, None).await;
    let mut response = server
        .get("/stream?totalItems=20&chunkSize=1&delay=100")
        .await;
    let mut body = Vec::new();
    body.extend_from_slice(&response.chunk().await.expect("read").expect("first chunk"));

    let (_idle, made_room) = flood_past_the_limit(&server, 500).await;

    for _ in 0..3 {
        events.next().await.expect("the event stream goes on");
    }
    while let Some(chunk) = tokio::time::timeout(GUARD, response.chunk())
        .await
        .expect("the in-flight stream goes on")
        .expect("the in-flight stream is not cut")
    {
        body.extend_from_slice(&chunk);
    }
    let items: Vec<Value> = serde_json::from_slice(&body).expect("one complete JSON array");
    assert_eq!(items.len(), 20);

    let text = metrics(&server).await;
    assert_eq!(
        metric_in(&text, "http_connections_open", &[r#"state="sse""#]),
        Some(1.0),
        "{text}"
    );
    assert!(made_room >= 1.0);
}

#[tokio::test]
async fn when_no_connection_is_idle_a_new_one_gets_503_server_busy() {
    let (server, _data_dir) = start(
        &[("MAX_CONNECTIONS", "2"), ("SSE_MAX_CONNECTIONS", "2")],
        None,
    )
    .await;
    let _first = notifications(&server, None).await;
    let second = notifications(&server, None).await;

    health_is_refused_at_once(&server).await;

    drop(second);
    let text = metrics_once_served_again(&server).await;
    let refused = metric_in(&text, "http_connections_refused_total", &[]);
    assert!(refused >= Some(1.0), "{text}");
}

#[tokio::test]
async fn a_connection_that_sends_no_request_is_closed_after_the_first_request_deadline() {
    let (server, _data_dir) = start(&[("FIRST_REQUEST_TIMEOUT_SECONDS", "1")], None).await;
    let health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut kept_alive = TcpStream::connect(server.addr).await.expect("connect");
    kept_alive.write_all(health).await.expect("request");
    read_one_answer(&mut kept_alive).await;

    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let mut partial = TcpStream::connect(server.addr).await.expect("connect");
    partial
        .write_all(b"GET /health HTTP/1.1\r\n")
        .await
        .expect("half a head");
    for stream in [&mut silent, &mut partial] {
        let mut rest = Vec::new();
        tokio::time::timeout(GUARD, stream.read_to_end(&mut rest))
            .await
            .expect("closed by the server")
            .expect("read");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // The keep-alive connection, idle for longer than the first-request deadline, is governed
    // by HEADER_READ_TIMEOUT_SECONDS (30 s) and still serves.
    kept_alive.write_all(health).await.expect("second request");
    read_one_answer(&mut kept_alive).await;
    let text = metrics(&server).await;
    assert_eq!(
        metric_in(
            &text,
            "http_connections_closed_total",
            &["first_request_timeout"]
        ),
        Some(2.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_stream_cap_above_what_the_open_file_limit_allows_stops_start_up() {
    let (status, stderr) =
        refused_start_with_fd_limit(&[("SSE_MAX_CONNECTIONS", "5000")], Some((1024, 1024))).await;
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("backflow: invalid configuration: SSE_MAX_CONNECTIONS:"),
        "{stderr}"
    );
}

/// Reads one `200` answer to `/health` (its head and its JSON body) from `stream`.
async fn read_one_answer(stream: &mut TcpStream) {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(GUARD, async {
        while !(answer.starts_with(b"HTTP/1.1 200") && answer.ends_with(b"}")) {
            let n = stream.read(&mut buffer).await.expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("an answer");
}
