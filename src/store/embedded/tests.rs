//! The embedded store on a temporary directory: what a restart reads back, what a purge
//! removes from the file, and what a failing disk leaves behind (nothing).

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::*;
use crate::auth::jwt::LEEWAY_SECONDS;
use crate::queue::{Priority, TaskText};

/// A record that refuses every commit while `failing` is set, as a full or broken disk would.
struct Faulty {
    inner: Database,
    failing: Arc<AtomicBool>,
}

impl Record for Faulty {
    fn commit(&mut self, writes: &[Write]) -> Result<Vec<usize>, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::new("disk I/O error (injected)"));
        }
        self.inner.commit(writes)
    }

    fn close(&mut self) {
        self.inner.close();
    }
}

fn config(dir: &std::path::Path) -> Config {
    Config::from_pairs([
        ("DATA_DIR", dir.to_str().expect("UTF-8 path")),
        ("JWT_SECRET", "unit-test-secret-unit-test-secret!!"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
    ])
    .expect("valid config")
}

async fn open_faulty(dir: &std::path::Path) -> (Stores, Arc<AtomicBool>) {
    let failing = Arc::new(AtomicBool::new(false));
    let switch = failing.clone();
    let stores = open_with(&config(dir), &Metrics::new(), move |inner| Faulty {
        inner,
        failing: switch,
    })
    .await
    .expect("the store opens");
    (stores, failing)
}

fn task(text: &str, priority: i64) -> QueuedTask {
    QueuedTask::new(
        TaskText::parse(text.to_owned()).expect("valid text"),
        Priority::new(priority).expect("valid priority"),
    )
}

async fn drain(stores: &Stores) -> Vec<String> {
    let mut texts = Vec::new();
    while let Some(out) = stores.queue.dequeue().await.expect("dequeued") {
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
async fn a_failing_store_refuses_every_change_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (stores, failing) = open_faulty(dir.path()).await;
    stores
        .queue
        .enqueue(task("kept", 1))
        .await
        .expect("enqueued");
    let now = clock::unix_seconds();
    let expiring = token(now + 5);
    stores
        .revocations
        .revoke(expiring, now)
        .await
        .expect("revoked");
    failing.store(true, Ordering::SeqCst);

    assert!(matches!(
        stores.queue.enqueue(task("refused", 0)).await,
        Err(QueueError::Store(_))
    ));
    assert!(matches!(
        stores.queue.dequeue().await,
        Err(QueueError::Store(_))
    ));
    let status = stores.queue.status().await.expect("status");
    assert_eq!(status.size, 1);
    assert_eq!(
        status.next.map(|t| t.task.to_string()).as_deref(),
        Some("kept")
    );
    let refused = token(clock::unix_seconds() + 600);
    assert!(matches!(
        stores
            .revocations
            .revoke(refused, clock::unix_seconds())
            .await,
        Err(RevokeError::Store(_))
    ));
    assert!(
        !stores
            .revocations
            .is_revoked(refused.jti, clock::unix_seconds())
            .await
            .unwrap()
    );
    let past_expiry = now + 5 + LEEWAY_SECONDS + 1;
    assert!(
        stores.revocations.purge_expired(past_expiry).await.is_err(),
        "the purge is not committed"
    );
    assert_eq!(
        stores.revocations.len(),
        1,
        "and the index forgets nothing either"
    );
    assert!(stores.health.ping().await.is_err());

    failing.store(false, Ordering::SeqCst);
    assert!(stores.health.ping().await.is_ok());
    stores
        .queue
        .enqueue(task("after", 1))
        .await
        .expect("enqueued");
    stores.health.close().await;
    let reopened = open(&config(dir.path()), &Metrics::new())
        .await
        .expect("reopens");
    assert_eq!(drain(&reopened).await, ["kept", "after"]);
    assert!(
        !reopened
            .revocations
            .is_revoked(refused.jti, clock::unix_seconds())
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_failing_store_answers_503_over_http_and_nothing_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (stores, failing) = open_faulty(dir.path()).await;
    let app = crate::Application::build_with_stores(config(dir.path()), Metrics::new(), stores)
        .await
        .expect("the server builds");
    let base = format!("http://{}", app.local_addr());
    let shutdown = app.shutdown();
    let server = tokio::spawn(app.run());
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).json(&body).send();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    let enqueued = post("/enqueue", json!({"task": "kept", "priority": 1}))
        .await
        .expect("sent");
    assert_eq!(enqueued.status(), 200);
    let login: Value = post(
        "/login",
        json!({"username": "admin", "password": "admin123"}),
    )
    .await
    .expect("sent")
    .json()
    .await
    .expect("JSON");
    let bearer = format!("Bearer {}", login["token"].as_str().expect("a token"));
    failing.store(true, Ordering::SeqCst);

    let mut refused = vec![
        post("/enqueue", json!({"task": "lost?", "priority": 0}))
            .await
            .expect("sent"),
        get("/dequeue").await.expect("sent"),
        client
            .post(format!("{base}/logout"))
            .header("authorization", &bearer)
            .send()
            .await
            .expect("sent"),
        get("/ready").await.expect("sent"),
    ];
    for response in refused.drain(..) {
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["code"], "store_unavailable", "{body}");
    }
    assert_eq!(get("/health").await.expect("sent").status(), 200);
    let status: Value = get("/queue/status")
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(status["size"], 1);
    assert_eq!(status["nextTask"]["task"], "kept");
    let protected = client
        .get(format!("{base}/protected"))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        protected.status(),
        200,
        "the refused logout revoked nothing"
    );

    failing.store(false, Ordering::SeqCst);
    assert_eq!(get("/ready").await.expect("sent").status(), 200);
    let dequeued: Value = get("/dequeue")
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(dequeued["task"], "kept");
    shutdown.trigger();
    server.await.expect("no panic").expect("stopped cleanly");
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
