//! The embedded store on a temporary directory: what a restart reads back, what a purge
//! removes from the file, and how concurrent writes share commits. What every store promises,
//! and what a failing disk changes (nothing), is checked on every backend by the contract suite
//! (`tests/it/contract`).

use futures_util::StreamExt;

use super::*;
use crate::auth::jwt::LEEWAY_SECONDS;
use crate::queue::limits::{BatchSize, Delay, LeaseId, LeaseLength, MaxAttempts};
use crate::queue::record::{AckOutcome, LeasedTask};
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

fn lease_length() -> LeaseLength {
    LeaseLength::from_millis(60_000).expect("in range")
}

async fn lease_one(stores: &Stores) -> LeasedTask {
    let batch = stores
        .queue
        .lease(BatchSize::new(1).expect("in range"), lease_length())
        .await
        .expect("leased")
        .answer;
    batch.tasks.into_iter().next().expect("a task")
}

async fn ack(stores: &Stores, leased: &LeasedTask) -> AckOutcome {
    stores
        .queue
        .ack(vec![(leased.task.id, leased.lease)])
        .await
        .expect("answered")
        .answer[0]
}

#[tokio::test]
async fn an_acknowledgement_is_remembered_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = open(&config(dir.path()), &Metrics::new())
        .await
        .expect("opens");
    for text in ["first", "second"] {
        stores.queue.enqueue(task(text, 1)).await.expect("enqueued");
    }
    let first = lease_one(&stores).await;
    let second = lease_one(&stores).await;
    assert_eq!(ack(&stores, &first).await, AckOutcome::Acked);
    stores.health.close().await;

    let reopened = open(&config(dir.path()), &Metrics::new())
        .await
        .expect("reopens");
    assert_eq!(ack(&reopened, &first).await, AckOutcome::AlreadyAcked);
    let stranger = LeasedTask {
        lease: LeaseId::random(),
        ..first.clone()
    };
    assert_eq!(ack(&reopened, &stranger).await, AckOutcome::LeaseLost);
    assert_eq!(ack(&reopened, &second).await, AckOutcome::Acked);
    assert_eq!(reopened.queue.size(), 0);
}

#[tokio::test]
async fn a_file_of_schema_version_2_is_upgraded_with_its_tasks_and_acknowledgements() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (acked, lease) = (Uuid::new_v4(), LeaseId::random());
    let until_ms = clock::unix_millis() + 60_000;
    {
        let conn = rusqlite::Connection::open(dir.path().join(database::DATABASE_FILE))
            .expect("creates the file");
        conn.execute_batch(database::MIGRATIONS[0]).expect("v1");
        conn.execute_batch(database::MIGRATIONS[1]).expect("v2");
        conn.pragma_update(None, "application_id", database::APPLICATION_ID)
            .expect("id");
        conn.pragma_update(None, "user_version", 2)
            .expect("version");
        conn.execute(
            "INSERT INTO tasks (seq, id, task, priority, enqueued_at_ms) VALUES (7, ?1, 'kept', 3, 1)",
            [Uuid::new_v4().as_bytes()],
        )
        .expect("a task");
        conn.execute(
            "INSERT INTO acked (id, lease_id, until_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                acked.as_bytes(),
                lease.as_uuid().as_bytes(),
                i64::try_from(until_ms).expect("small")
            ],
        )
        .expect("an acknowledgement");
    }

    let stores = open(&config(dir.path()), &Metrics::new())
        .await
        .expect("upgrades");
    let outcomes = stores
        .queue
        .ack(vec![(acked, lease), (acked, LeaseId::random())])
        .await
        .expect("answered")
        .answer;
    assert_eq!(outcomes, [AckOutcome::AlreadyAcked, AckOutcome::LeaseLost]);
    let kept = lease_one(&stores).await;
    assert_eq!(kept.task.task.as_str(), "kept");
    assert_eq!(ack(&stores, &kept).await, AckOutcome::Acked);
    stores.health.close().await;

    let conn = rusqlite::Connection::open(dir.path().join(database::DATABASE_FILE))
        .expect("opens the file");
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("read");
    let acks: i64 = conn
        .query_row("SELECT count(*) FROM acked", [], |row| row.get(0))
        .expect("counted");
    assert_eq!((version, acks), (3, 2));
}
