//! The embedded store on a temporary directory: what a restart reads back, what a purge
//! removes from the file, and how concurrent writes share commits. What every store promises,
//! and what a failing disk changes (nothing), is checked on every backend by the contract suite
//! (`tests/it/contract`).

use futures_util::StreamExt;

use super::*;
use crate::auth::jwt::LEEWAY_SECONDS;
use crate::queue::limits::{Delay, MaxAttempts};
use crate::queue::{NewTask, Priority, QueuedTask, TaskText};

fn config(dir: &std::path::Path) -> Config {
    Config::from_pairs([
        ("DATA_DIR", dir.to_str().expect("UTF-8 path")),
        ("JWT_SECRET", "unit-test-secret-unit-test-secret!!"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
    ])
    .expect("valid config")
}

fn task(text: &str, priority: i64) -> NewTask {
    NewTask {
        task: QueuedTask::new(
            TaskText::parse(text.to_owned()).expect("valid text"),
            Priority::new(priority).expect("valid priority"),
        ),
        delay: Delay::NONE,
        max_attempts: MaxAttempts::new(5).expect("in range"),
        key: None,
    }
}

async fn drain(stores: &Stores) -> Vec<String> {
    let mut texts = Vec::new();
    while let Some(out) = stores.queue.dequeue().await.expect("dequeued").answer {
        texts.push(out.task.task.to_string());
    }
    texts
}

fn token(exp: u64) -> RevokedToken {
    RevokedToken {
        jti: Uuid::new_v4(),
        exp,
    }
}

#[tokio::test]
async fn a_restart_rebuilds_the_queue_in_order_and_the_revocations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = open(&config(dir.path()), &Metrics::new())
        .await
        .expect("opens");
    for (text, priority) in [("b1", 2), ("a", 1), ("b2", 2), ("c", 3), ("b3", 2)] {
        stores
            .queue
            .enqueue(task(text, priority))
            .await
            .expect("enqueued");
    }
    let first = stores
        .queue
        .dequeue()
        .await
        .expect("dequeued")
        .answer
        .expect("a task");
    assert_eq!(first.task.task.as_str(), "a");
    let revoked = token(clock::unix_seconds() + 600);
    stores
        .revocations
        .revoke(revoked, clock::unix_seconds())
        .await
        .expect("revoked");
    stores.health.close().await;

    let reopened = open(&config(dir.path()), &Metrics::new())
        .await
        .expect("reopens");
    assert_eq!(reopened.queue.size(), 4);
    assert!(
        reopened
            .revocations
            .is_revoked(revoked.jti, clock::unix_seconds())
            .await
            .expect("checked")
    );
    reopened
        .queue
        .enqueue(task("b4", 2))
        .await
        .expect("enqueued");
    assert_eq!(drain(&reopened).await, ["b1", "b2", "b3", "b4", "c"]);
}

#[tokio::test]
async fn expired_revocations_are_purged_from_the_file_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = open(&config(dir.path()), &Metrics::new())
        .await
        .expect("opens");
    let now = clock::unix_seconds();
    let (short, long) = (token(now + 100), token(now + 1000));
    for t in [short, long] {
        stores.revocations.revoke(t, now).await.expect("revoked");
    }
    let later = now + 100 + LEEWAY_SECONDS + 1;
    assert_eq!(stores.revocations.purge_expired(later).await, Ok(1));
    assert_eq!(stores.revocations.len(), 1);
    stores.health.close().await;

    // Read back now, when the short token is still live: only the purge can have removed it.
    let reopened = open(&config(dir.path()), &Metrics::new())
        .await
        .expect("reopens");
    assert_eq!(reopened.revocations.len(), 1);
    assert!(
        !reopened
            .revocations
            .is_revoked(short.jti, now)
            .await
            .unwrap()
    );
    assert!(
        reopened
            .revocations
            .is_revoked(long.jti, now)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn concurrent_writes_are_committed_in_groups() {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = Metrics::new();
    let stores = open(&config(dir.path()), &metrics).await.expect("opens");
    let writes = futures_util::stream::iter(0..200)
        .map(|n| {
            let queue = stores.queue.clone();
            async move { queue.enqueue(task(&format!("t{n}"), 1)).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    assert!(writes.iter().all(Result::is_ok));
    let text = metrics.render();
    let commits: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("store_commit_batch_size_count "))
        .and_then(|count| count.parse().ok())
        .expect("the batch histogram is exported");
    assert!(
        commits < 200.0,
        "200 concurrent writes took {commits} commits"
    );
}
