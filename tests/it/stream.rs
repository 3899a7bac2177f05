//! `GET /stream`: one valid JSON array (or NDJSON), produced lazily chunk by chunk, validated,
//! paused by a slow reader and stopped by a client that goes away.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::{Api, TestApp, error_body, eventually, spawn_app, spawn_app_with};

/// How long a producer must stay still to count as paused, and the wait for "nothing after".
const POLL_PAUSE: Duration = Duration::from_millis(20);

async fn json_items(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app.get(&format!("/stream?{query}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("one JSON array: {err}\n{body}"))
}

fn assert_items_in_order(items: &[Value]) {
    for (index, item) in items.iter().enumerate() {
        let id = index as u64 + 1;
        assert_eq!(item["id"], id, "{item}");
        assert_eq!(item["name"], format!("Item {id}"));
        let value = item["value"].as_f64().expect("value is a number");
        assert!((0.0..1000.0).contains(&value), "value {value}");
        let timestamp = item["timestamp"].as_str().expect("timestamp is a string");
        assert!(
            OffsetDateTime::parse(timestamp, &Rfc3339).is_ok(),
            "ISO-8601 timestamp: {timestamp}"
        );
    }
}

async fn items_produced(app: &TestApp) -> f64 {
    app.metric_value("stream_items_total", &[])
        .await
        .unwrap_or(0.0)
}

async fn streams_ended(app: &TestApp, outcome: &str) -> f64 {
    let label = format!("outcome=\"{outcome}\"");
    app.metric_value("stream_responses_total", &[&label])
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn json_body_is_one_array_of_items_in_order() {
    let app = spawn_app().await;
    let items = json_items(&app, "totalItems=250&chunkSize=7&delay=0").await;
    assert_eq!(items.len(), 250);
    assert_items_in_order(&items);
}

#[tokio::test]
async fn defaults_stream_a_thousand_items() {
    let app = spawn_app().await;
    let items = json_items(&app, "delay=0").await;
    assert_eq!(items.len(), 1000);
    assert_items_in_order(&items);
}

#[tokio::test]
async fn zero_items_is_an_empty_array_or_an_empty_body() {
    let app = spawn_app().await;
    assert!(json_items(&app, "totalItems=0").await.is_empty());

    let ndjson = app.get("/stream?totalItems=0&format=ndjson").await;
    assert_eq!(ndjson.status(), 200);
    assert_eq!(ndjson.text().await.expect("body"), "");
}

#[tokio::test]
async fn ndjson_is_one_item_per_line() {
    let app = spawn_app().await;
    let response = app
        .get("/stream?format=ndjson&totalItems=25&chunkSize=10&delay=0")
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = response.text().await.expect("body");
    let items: Vec<Value> = body
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    assert_eq!(items.len(), 25);
    assert_items_in_order(&items);
}

#[tokio::test]
async fn each_chunk_is_sent_as_it_is_produced() {
    let app = spawn_app().await;
    let response = app.get("/stream?totalItems=6&chunkSize=2&delay=50").await;
    assert_eq!(response.status(), 200);
    let frames: Vec<Bytes> = response
        .bytes_stream()
        .map(|frame| frame.expect("frame"))
        .collect()
        .await;
    assert!(
        frames.len() >= 3,
        "one frame per chunk, got {}",
        frames.len()
    );
    let first = String::from_utf8(frames[0].to_vec()).expect("UTF-8");
    assert!(first.starts_with("[\n"), "{first}");
    assert!(first.contains(r#""id":2,"#), "{first}");
    assert!(
        !first.contains(r#""id":3,"#),
        "the first frame holds one chunk: {first}"
    );
    let items: Vec<Value> = serde_json::from_slice(&frames.concat()).expect("one JSON array");
    assert_items_in_order(&items);
}

#[tokio::test]
async fn first_chunk_arrives_before_the_rest_is_produced() {
    let app = spawn_app().await;
    let response = app
        .get("/stream?totalItems=2&chunkSize=1&delay=10000")
        .await;
    let mut frames = response.bytes_stream();
    let first = frames.next().await.expect("a first chunk").expect("frame");
    assert!(first.starts_with(b"[\n{\"id\":1,"));
    // The second chunk is due in ten seconds: for now exactly one item exists.
    assert_eq!(items_produced(&app).await, 1.0);
    assert_eq!(
        app.metric_value("stream_responses_active", &[]).await,
        Some(1.0)
    );
}

#[tokio::test]
async fn invalid_parameters_are_rejected_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        ("chunkSize=abc", "chunkSize"),
        ("chunkSize=-1", "chunkSize"),
        ("chunkSize=1.5", "chunkSize"),
        ("chunkSize=0", "chunkSize"),
        ("chunkSize=10001", "chunkSize"),
        ("totalItems=abc", "totalItems"),
        ("totalItems=-1", "totalItems"),
        ("totalItems=1.5", "totalItems"),
        ("totalItems=10000001", "totalItems"),
        ("delay=abc", "delay"),
        ("delay=-1", "delay"),
        ("delay=1.5", "delay"),
        ("delay=10001", "delay"),
        ("format=xml", "format"),
        ("format=", "format"),
    ];
    for (query, field) in cases {
        let response = app.get(&format!("/stream?{query}")).await;
        let body = error_body(response, 400, "invalid_input").await;
        assert_eq!(body["field"], field, "{query}: {body}");
        let message = body["error"].as_str().expect("message");
        assert!(message.contains(field), "{query}: {message}");
    }
}

#[tokio::test]
async fn the_item_cap_comes_from_configuration() {
    let app = spawn_app_with(&[("STREAM_MAX_ITEMS", "10")]).await;
    let response = app.get("/stream?totalItems=11").await;
    let body = error_body(response, 400, "invalid_input").await;
    assert_eq!(body["field"], "totalItems");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("between 0 and 10")),
        "{body}"
    );
    assert_eq!(json_items(&app, "totalItems=10&delay=0").await.len(), 10);
}

#[tokio::test]
async fn a_client_that_disconnects_stops_the_producer() {
    const CHUNK: f64 = 10.0;
    const DELAY: Duration = Duration::from_millis(20);
    let app = spawn_app().await;
    let started = std::time::Instant::now();
    let response = app
        .get("/stream?totalItems=1000000&chunkSize=10&delay=20")
        .await;
    let mut frames = response.bytes_stream();
    for _ in 0..2 {
        frames.next().await.expect("a chunk").expect("frame");
    }
    drop(frames);

    eventually("the server notices the disconnect", || async {
        streams_ended(&app, "aborted").await >= 1.0
    })
    .await;
    let stopped_at = items_produced(&app).await;
    // At most one chunk per delay since the request, plus one: nothing ran ahead of the client.
    let bound = CHUNK * (started.elapsed().as_secs_f64() / DELAY.as_secs_f64() + 1.0).ceil();
    assert!(stopped_at <= bound, "{stopped_at} items, at most {bound}");
    assert_eq!(streams_ended(&app, "completed").await, 0.0);
    assert_eq!(
        app.metric_value("stream_responses_active", &[]).await,
        Some(0.0)
    );
    tokio::time::sleep(POLL_PAUSE * 3).await;
    assert_eq!(
        items_produced(&app).await,
        stopped_at,
        "nothing produced after"
    );
}

#[tokio::test]
async fn a_slow_reader_pauses_the_producer() {
    const TOTAL: f64 = 10_000_000.0;
    let app = spawn_app().await;
    let response = app
        .get("/stream?totalItems=10000000&chunkSize=1000&delay=0")
        .await;
    let mut frames = response.bytes_stream();
    frames.next().await.expect("a chunk").expect("frame");

    // The client reads nothing more: once the socket buffers are full the producer waits.
    let previous = std::cell::Cell::new(items_produced(&app).await);
    let last = eventually("the producer pauses", || async {
        tokio::time::sleep(POLL_PAUSE * 2).await;
        let now = items_produced(&app).await;
        (now == previous.replace(now)).then_some(now)
    })
    .await;
    assert!(last < TOTAL / 10.0, "paused after {last} items");
    assert_eq!(
        app.metric_value("stream_responses_active", &[]).await,
        Some(1.0)
    );
    drop(frames);
}
