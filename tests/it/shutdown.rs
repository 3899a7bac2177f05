//! The graceful stop: open event streams end at once, in-flight responses finish, the process
//! exits 0 without waiting for the drain deadline.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::time::timeout;

use crate::common::process::ServerProcess;
use crate::common::{Api, notifications, spawn_app_with};

/// Guard against a hanging test: far below the drain deadline the servers are given below, so a
/// stream that held up the stop would fail the test rather than merely slow it.
const HANG_GUARD: Duration = Duration::from_secs(10);

#[tokio::test]
async fn stopping_the_server_ends_open_event_streams() {
    // A drain deadline longer than the guard: only the streams ending can let the stop return.
    let app = spawn_app_with(&[("SHUTDOWN_TIMEOUT_SECONDS", "60")]).await;
    let mut streams = Vec::new();
    for _ in 0..2 {
        streams.push(notifications(&app, None).await);
    }
    let (_dir, _guard) = timeout(HANG_GUARD, app.stop())
        .await
        .expect("the server stops while event streams are open");
    for mut stream in streams {
        timeout(HANG_GUARD, async { while stream.next().await.is_some() {} })
            .await
            .expect("the event stream ended");
    }
}

#[tokio::test]
async fn sigterm_ends_event_streams_lets_streams_finish_and_exits_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("UTF-8 path").to_owned();
    let server = ServerProcess::start(&[
        ("SHUTDOWN_TIMEOUT_SECONDS", "20"),
        ("NOTIFY_INTERVAL_MS", "50"),
        ("DATA_DIR", data_dir.as_str()),
    ])
    .await;
    let mut streams = Vec::new();
    for _ in 0..2 {
        streams.push(notifications(&server, None).await);
    }
    let response = server
        .get("/stream?totalItems=20&chunkSize=5&delay=200")
        .await;
    let mut frames = response.bytes_stream();
    let mut body = frames
        .next()
        .await
        .expect("first chunk")
        .expect("frame")
        .to_vec();

    let stopped = tokio::spawn(server.terminate());

    for mut stream in streams {
        timeout(HANG_GUARD, async { while stream.next().await.is_some() {} })
            .await
            .expect("the event stream ended on SIGTERM");
    }
    timeout(HANG_GUARD, async {
        while let Some(frame) = frames.next().await {
            body.extend_from_slice(&frame.expect("the in-flight stream is not cut"));
        }
    })
    .await
    .expect("the in-flight stream finished");
    let items: Vec<Value> = serde_json::from_slice(&body).expect("one complete JSON array");
    assert_eq!(items.len(), 20);

    let (status, log) = timeout(HANG_GUARD, stopped)
        .await
        .expect("the server exits well before its 20 s drain deadline")
        .expect("the stop is observed");
    assert!(status.success(), "exit status {status}");
    assert!(
        !log.iter().any(|l| l.contains("drain deadline passed")),
        "nothing was cut at the deadline: {log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains(r#""message":"stopped""#)),
        "{log:#?}"
    );
}
