//! `GET /notifications`: Server-Sent Events fanned out from one producer, resumable with
//! `Last-Event-ID`, fair to fast clients when one is slow, capped in number.

use std::time::Duration;

use backflow::events::{LIVE_BUFFER, Level, NewEvent};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{
    Api, CONNECTED, SseStream, error_body, eventually, notifications, open_sse, publish,
    spawn_app_with,
};

/// Keeps the periodic producer out of the way of tests that count ids.
const QUIET: (&str, &str) = ("NOTIFY_INTERVAL_MS", "3600000");

fn app_event(n: u64) -> NewEvent {
    NewEvent::app(
        "queue.enqueued",
        Level::Success,
        format!("Task {n} enqueued"),
    )
    .with("n", n)
}

/// The ids of the next `count` numbered events.
async fn next_ids(stream: &mut SseStream, count: usize) -> Vec<u64> {
    let events = stream.numbered(count).await;
    events.into_iter().map(|(id, _)| id).collect()
}

#[tokio::test]
async fn stream_has_the_contract_headers_and_opens_with_connected() {
    let app = spawn_app_with(&[QUIET]).await;
    let mut stream = open_sse(&app, "/notifications", None).await;
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert_eq!(stream.headers["x-accel-buffering"], "no");

    let first = stream.next().await.expect("first event");
    assert_eq!(first.data, CONNECTED);
    assert_eq!(first.event, "message", "unnamed, so onmessage sees it");
    assert_eq!(first.id, "", "no id, so Last-Event-ID is left alone");
    assert_eq!(first.retry, Some(Duration::from_secs(3)), "retry hint");
}

#[tokio::test]
async fn periodic_notifications_carry_ids_and_the_contract_fields() {
    let app = spawn_app_with(&[("NOTIFY_INTERVAL_MS", "20")]).await;
    let mut stream = notifications(&app, None).await;
    let mut previous = None;
    for _ in 0..4 {
        let event = stream.next().await.expect("a notification");
        assert_eq!(event.event, "message");
        let data: Value = serde_json::from_str(&event.data).expect("JSON");
        let id = data["id"].as_u64().expect("numeric id");
        assert_eq!(event.id, id.to_string());
        assert!(
            ["info", "warning", "success", "error"].contains(&data["type"].as_str().unwrap_or("")),
            "{data}"
        );
        assert!(data["message"].as_str().is_some_and(|m| !m.is_empty()));
        let timestamp = data["timestamp"].as_str().expect("timestamp");
        assert!(
            OffsetDateTime::parse(timestamp, &Rfc3339).is_ok(),
            "{timestamp}"
        );
        if let Some(previous) = previous {
            assert_eq!(id, previous + 1, "consecutive ids");
        }
        previous = Some(id);
    }
}

#[tokio::test]
async fn two_clients_see_the_same_events_with_the_same_ids() {
    let app = spawn_app_with(&[QUIET]).await;
    let state = app.state.clone();
    let mut a = notifications(&app, None).await;
    let mut b = notifications(&app, None).await;
    let mut published = Vec::new();
    for n in 0..3 {
        published.push(publish(&state, app_event(n)).await);
    }
    let seen = [a.numbered(3).await, b.numbered(3).await];
    assert_eq!(seen[0], seen[1], "same bytes for everyone");
    let ids: Vec<u64> = seen[0].iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, published);
}

#[tokio::test]
async fn application_events_appear_with_their_name() {
    let app = spawn_app_with(&[QUIET]).await;
    let state = app.state.clone();
    let mut stream = notifications(&app, None).await;
    let id = publish(
        &state,
        NewEvent::app("queue.enqueued", Level::Success, "Task enqueued").with("priority", 2),
    )
    .await;
    let event = stream.next().await.expect("the application event");
    assert_eq!(event.event, "message", "unnamed, like every notification");
    assert_eq!(event.id, id.to_string());
    let data: Value = serde_json::from_str(&event.data).expect("JSON");
    assert_eq!(data["event"], "queue.enqueued");
    assert_eq!(data["type"], "success");
    assert_eq!(data["message"], "Task enqueued");
    assert_eq!(data["priority"], 2);
}

#[tokio::test]
async fn an_enqueue_through_the_api_reaches_open_streams() {
    let app = spawn_app_with(&[QUIET]).await;
    let mut stream = notifications(&app, None).await;
    let response = app
        .post_json(
            "/enqueue",
            &serde_json::json!({"task": "send report", "priority": 1}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let data = stream.next_json().await;
    assert_eq!(data["event"], "queue.enqueued", "{data}");
    assert_eq!(data["task"], "send report");
    assert!(data["id"].is_u64());
}

#[tokio::test]
async fn last_event_id_header_replays_exactly_from_the_seam() {
    let app = spawn_app_with(&[QUIET]).await;
    let state = app.state.clone();
    for n in 0..5 {
        publish(&state, app_event(n)).await;
    }
    let mut stream = notifications(&app, Some("2")).await;
    let live = publish(&state, app_event(5)).await;
    assert_eq!(live, 6);
    assert_eq!(next_ids(&mut stream, 4).await, [3, 4, 5, 6]);
}

#[tokio::test]
async fn last_event_id_query_replays_and_the_header_wins_over_it() {
    let app = spawn_app_with(&[QUIET]).await;
    let state = app.state.clone();
    for n in 0..5 {
        publish(&state, app_event(n)).await;
    }
    let mut by_query = open_sse(&app, "/notifications?lastEventId=3", None).await;
    let mut both = open_sse(&app, "/notifications?lastEventId=1", Some("4")).await;
    by_query.expect_connected().await;
    both.expect_connected().await;
    publish(&state, app_event(5)).await;
    assert_eq!(next_ids(&mut by_query, 3).await, [4, 5, 6]);
    assert_eq!(next_ids(&mut both, 2).await, [5, 6]);
}

#[tokio::test]
async fn events_gone_from_the_replay_window_are_announced() {
    let app = spawn_app_with(&[QUIET, ("SSE_REPLAY_BUFFER", "2")]).await;
    let state = app.state.clone();
    for n in 0..5 {
        publish(&state, app_event(n)).await;
    }
    let mut stream = notifications(&app, Some("1")).await;
    let notice = stream.next_json().await;
    assert_eq!(notice["event"], "stream.lagged", "{notice}");
    assert_eq!(notice["type"], "warning");
    assert_eq!(notice["skipped"], 2, "ids 2 and 3 are gone");
    assert_eq!(next_ids(&mut stream, 2).await, [4, 5]);
}

#[tokio::test]
async fn a_bad_last_event_id_is_rejected_naming_it() {
    let app = spawn_app_with(&[QUIET]).await;
    let response = app
        .client
        .get(app.url("/notifications"))
        .header("last-event-id", "abc")
        .send()
        .await
        .expect("sent");
    let body = error_body(response, 400, "invalid_input").await;
    assert_eq!(body["field"], "Last-Event-ID");

    for bad in ["-1", "1.5", "x"] {
        let response = app.get(&format!("/notifications?lastEventId={bad}")).await;
        let body = error_body(response, 400, "invalid_input").await;
        assert_eq!(body["field"], "lastEventId", "{bad}");
    }
}

/// Generous bound on what the slow connection absorbs before the server stops writing to it: the
/// kernel's socket buffers at both ends plus the HTTP connection's write buffer (about 4 MiB
/// with Linux defaults).
const SLOW_SIDE_BUFFERS: usize = 8 << 20;
/// Padding per event in the flood: big enough to fill those buffers with few events.
const PADDING: usize = 1024;

/// Reads the ids of an event stream from raw bytes: a light parser for a flood of events.
struct IdReader {
    response: reqwest::Response,
    pending: Vec<u8>,
}

impl IdReader {
    /// The next `id:` of the stream; panics if a lagged notice comes instead.
    async fn next_id(&mut self) -> u64 {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8(line).expect("UTF-8");
                assert!(!line.contains("stream.lagged"), "the fast client lagged");
                if let Some(id) = line.strip_prefix("id: ") {
                    return id.trim().parse().expect("numeric id");
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .expect("read")
                .expect("the stream goes on");
            self.pending.extend_from_slice(&chunk);
        }
    }
}

#[tokio::test]
async fn a_slow_client_does_not_hold_back_a_fast_one_and_is_told_it_lagged() {
    const BATCH: u64 = 256;
    // Enough events to fill the slow client's buffers, then more than it may fall behind by.
    let events = (LIVE_BUFFER + SLOW_SIDE_BUFFERS / PADDING) as u64;
    let padding = "x".repeat(PADDING);
    let app = spawn_app_with(&[QUIET, ("SSE_REPLAY_BUFFER", "1")]).await;
    let state = app.state.clone();

    // The slow client asks for the stream, then reads nothing until the flood is over.
    let mut slow = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connected");
    slow.write_all(b"GET /notifications HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request written");
    let mut head = [0u8; 12];
    slow.read_exact(&mut head).await.expect("status line");
    assert_eq!(&head, b"HTTP/1.1 200");

    let mut fast = IdReader {
        response: app.get("/notifications").await,
        pending: Vec::new(),
    };
    let mut expected = 1;
    while expected <= events {
        let mut last = 0;
        for n in 0..BATCH {
            last = publish(&state, app_event(n).with("padding", &padding)).await;
        }
        while expected <= last {
            assert_eq!(
                fast.next_id().await,
                expected,
                "the fast client misses nothing"
            );
            expected += 1;
        }
    }

    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let notice = loop {
        let read = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut chunk))
            .await
            .expect("the slow stream goes on")
            .expect("read");
        assert!(read > 0, "the slow stream ended without a lagged notice");
        received.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&received);
        let complete_lines = &text[..text.rfind('\n').unwrap_or(0)];
        if let Some(line) = complete_lines.lines().find(|l| l.contains("stream.lagged")) {
            break line.to_owned();
        }
    };
    let notice: Value =
        serde_json::from_str(notice.trim_start_matches("data: ")).expect("notice JSON");
    assert!(
        notice["skipped"].as_u64().is_some_and(|n| n > 0),
        "{notice}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_get_503_with_retry_after() {
    let app = spawn_app_with(&[("SSE_MAX_CONNECTIONS", "1")]).await;
    let first = notifications(&app, None).await;
    assert_eq!(
        app.metric_value("sse_connections_open", &[]).await,
        Some(1.0)
    );

    let refused = app.get("/notifications").await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    let body = error_body(refused, 503, "too_many_streams").await;
    assert_eq!(body["retryAfterSeconds"], retry_after);

    // Once the first client leaves (noticed at the next notification), its slot is free again.
    drop(first);
    eventually("the slot is freed", || async {
        app.metric_value("sse_connections_open", &[]).await == Some(0.0)
    })
    .await;
    // Opened, and the connected message read: the stream is served again.
    notifications(&app, None).await;
}

#[tokio::test]
async fn an_idle_stream_gets_keep_alive_comments_and_outlives_the_header_deadline() {
    // The header deadline applies to reading requests, not to a response being streamed: the
    // second comment, two seconds in, arrives on a stream older than the one-second deadline.
    let app = spawn_app_with(&[
        QUIET,
        ("SSE_KEEPALIVE_SECONDS", "1"),
        ("HEADER_READ_TIMEOUT_SECONDS", "1"),
    ])
    .await;
    let mut response = app.get("/notifications").await;
    let mut received = Vec::new();
    let is_keep_alive = |line: &str| line.starts_with(':') && line.contains("keep-alive");
    while String::from_utf8_lossy(&received)
        .lines()
        .filter(|line| is_keep_alive(line))
        .count()
        < 2
    {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("a keep-alive within 10 s")
            .expect("read")
            .expect("the stream goes on");
        received.extend_from_slice(&chunk);
    }
}
