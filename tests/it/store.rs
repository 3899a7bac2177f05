//! The embedded store seen from outside: start-up refusals that name the file and what to do,
//! readiness, the cap on revocations, and a failing disk answered with 503 and leaving nothing
//! behind.

use std::path::Path;

use serde_json::{Value, json};

use backflow::metrics::Metrics;

use crate::common::process::refused_start;
use crate::common::{
    Api, error_body, faults, spawn_app_with, spawn_config, spawn_with_stores, test_config,
};

const SECRET: &str = "test-secret-that-is-long-enough-for-hs256!";

/// Starts the server on `data_dir`, expecting it to refuse with one line on standard error
/// that names `path` and says what to do (`advice`).
async fn assert_refused(data_dir: &Path, path: &Path, advice: &str) {
    let data_dir = data_dir.to_str().expect("UTF-8 path");
    let (status, stderr) = refused_start(&[("DATA_DIR", data_dir)]).await;
    assert!(!status.success());
    let path = path.to_str().expect("UTF-8 path");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains(path), "names {path}: {stderr}");
    assert!(
        lines[0].contains(advice),
        "says what to do ({advice}): {stderr}"
    );
}

#[tokio::test]
async fn a_data_dir_that_cannot_be_created_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let data_dir = file.join("data");
    assert_refused(&data_dir, &data_dir, "set DATA_DIR to a directory").await;
}

#[tokio::test]
async fn a_corrupt_store_file_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("backflow.db");
    std::fs::write(&file, vec![0x5a; 8192]).expect("write");
    assert_refused(dir.path(), &file, "move the file away").await;
}

#[tokio::test]
async fn a_database_of_another_application_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("backflow.db");
    let other = rusqlite::Connection::open(&file).expect("open");
    other
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);")
        .expect("a foreign schema");
    drop(other);
    assert_refused(dir.path(), &file, "another application").await;
}

#[tokio::test]
async fn ready_answers_when_the_store_answers() {
    for store in ["embedded", "memory"] {
        let app = spawn_app_with(&[("STORE", store)]).await;
        let response = app.get("/ready").await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body, json!({"status": "ready", "store": store}));
    }
}

#[tokio::test]
async fn a_full_revocation_list_refuses_logouts_with_503_and_the_token_stays_valid() {
    let app = spawn_app_with(&[("JWT_SECRET", SECRET), ("REVOCATION_LIST_MAX", "1")]).await;
    let tokens = [app.token().await, app.token().await];
    assert_eq!(app.logout(&tokens[0]).await.status(), 200);
    let refused = app.logout(&tokens[1]).await;
    assert!(refused.headers().contains_key("retry-after"));
    error_body(refused, 503, "revocation_list_full").await;
    assert_eq!(
        app.protected(&tokens[1]).await.status(),
        200,
        "a refused logout revokes nothing"
    );
    assert_eq!(
        app.metric_value("auth_revoked_tokens_capacity", &[]).await,
        Some(1.0)
    );
    assert_eq!(
        app.metric_value("auth_revocations_refused_total", &[])
            .await,
        Some(1.0)
    );
}

/// The embedded store's settings for `dir`, as a test server has them.
fn embedded_config(dir: &Path) -> backflow::Config {
    test_config(dir, &[("JWT_SECRET", SECRET), ("STORE", "embedded")])
}

#[tokio::test]
async fn a_failing_store_answers_503_over_http_and_nothing_changes_in_memory_or_in_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = embedded_config(dir.path());
    let metrics = Metrics::new();
    let (stores, faults) = faults::open_embedded(&config, &metrics).await;
    let app = spawn_with_stores(config, metrics, stores).await;
    app.enqueued("kept", 1).await;
    let token = app.token().await;

    faults.fail();
    let refused = [
        app.enqueue("lost?", 0).await,
        app.dequeue().await,
        app.logout(&token).await,
        app.get("/ready").await,
    ];
    for response in refused {
        assert_eq!(response.headers()["retry-after"], "1");
        error_body(response, 503, "store_unavailable").await;
    }
    assert_eq!(app.get("/health").await.status(), 200, "liveness holds");
    let status = app.queue_status().await;
    assert_eq!(status["size"], 1);
    assert_eq!(status["nextTask"]["task"], "kept");
    assert_eq!(
        app.protected(&token).await.status(),
        200,
        "the refused logout revoked nothing"
    );

    faults.recover();
    assert_eq!(app.get("/ready").await.status(), 200);
    app.enqueued("after", 1).await;
    app.stop().await;

    // Nor in the file: started again on it, the server holds what it acknowledged, only that.
    let restarted = spawn_config(embedded_config(dir.path())).await;
    assert_eq!(restarted.drain_tasks().await, ["kept", "after"]);
    assert_eq!(restarted.protected(&token).await.status(), 200);
}
