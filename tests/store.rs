//! The embedded store seen from outside: start-up refusals that name the file and what to do,
//! the one-time import of earlier versions' snapshots, readiness, and the cap on revocations.

mod common;

use std::path::Path;

use common::process::refused_start;
use common::{error_body, spawn_app_with, spawn_config, test_config};
use serde_json::{Value, json};

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
async fn snapshots_of_earlier_versions_are_imported_once_then_renamed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snapshot: Vec<Value> = [("urgent", 1), ("first", 2), ("second", 2)]
        .iter()
        .enumerate()
        .map(|(n, (task, priority))| {
            json!({
                "id": format!("00000000-0000-4000-8000-00000000000{n}"),
                "task": task,
                "priority": priority,
                "enqueuedAtMs": 1_700_000_000_000_u64 + n as u64,
            })
        })
        .collect();
    std::fs::write(
        dir.path().join("queue.json"),
        json!({"version": 1, "tasks": snapshot}).to_string(),
    )
    .expect("write");
    let revoked_jti = "11111111-1111-4111-8111-111111111111";
    let far_future = 4_000_000_000_u64;
    std::fs::write(
        dir.path().join("revocations.json"),
        json!({"revoked": [{"jti": revoked_jti, "exp": far_future}, {"jti": "22222222-2222-4222-8222-222222222222", "exp": 1}]})
            .to_string(),
    )
    .expect("write");

    let app = spawn_config(test_config(dir.path(), &[("JWT_SECRET", SECRET)])).await;
    assert!(dir.path().join("queue.json.imported").is_file());
    assert!(dir.path().join("revocations.json.imported").is_file());
    assert!(!dir.path().join("queue.json").exists());
    assert_eq!(
        app.metric_value("auth_revoked_tokens", &[]).await,
        Some(1.0),
        "the live revocation is imported, the expired one is not"
    );
    let (_, guard) = app.stop().await;

    // A second start finds the snapshots imported and does not add them again.
    std::fs::copy(
        dir.path().join("queue.json.imported"),
        dir.path().join("queue.json"),
    )
    .expect("copy");
    let app = spawn_config(test_config(dir.path(), &[("JWT_SECRET", SECRET)])).await;
    let mut drained = Vec::new();
    loop {
        let response = app.get("/dequeue").await;
        if response.status() == 404 {
            break;
        }
        let body: Value = response.json().await.expect("JSON");
        drained.push(body["task"].as_str().expect("a task").to_owned());
    }
    assert_eq!(
        drained,
        ["urgent", "first", "second"],
        "once each, in the snapshot's order"
    );
    drop(guard);
}

#[tokio::test]
async fn an_unreadable_snapshot_of_an_earlier_version_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("queue.json");
    std::fs::write(&file, b"{\"version\":1,\"tasks\":[").expect("write");
    assert_refused(dir.path(), &file, "move the file away").await;
    assert!(file.is_file(), "the file is left where it was");
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
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let body: Value = app
            .post_json(
                "/login",
                &json!({"username": "admin", "password": "admin123"}),
            )
            .await
            .json()
            .await
            .expect("JSON");
        tokens.push(body["token"].as_str().expect("a token").to_owned());
    }
    let logout = |token: &str| {
        app.client
            .post(app.url("/logout"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(logout(&tokens[0]).await.expect("sent").status(), 200);
    let refused = logout(&tokens[1]).await.expect("sent");
    assert!(refused.headers().contains_key("retry-after"));
    error_body(refused, 503, "revocation_list_full").await;
    let protected = app
        .client
        .get(app.url("/protected"))
        .bearer_auth(&tokens[1])
        .send()
        .await
        .expect("sent");
    assert_eq!(protected.status(), 200, "a refused logout revokes nothing");
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
