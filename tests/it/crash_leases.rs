//! What reliable delivery promises survives `kill -9`: workers lease, acknowledge, nack and
//! abandon tasks while the server is killed with SIGKILL at a random moment, then started
//! again on the same store.
//!
//! Only what a client saw is held against the server. After each restart:
//! - a lease taken before the kill, and still running, acknowledges;
//! - leases whose worker vanished run out and their tasks are delivered again;
//! - every acknowledged enqueue ends acknowledged or dead-lettered: none is lost (unless an
//!   acknowledgement cut off by the kill may have removed it), none is stuck;
//! - no acknowledged task is ever delivered again or listed dead.
//!
//! The same scenario against `STORE=memory`, which keeps nothing, must find broken promises:
//! that is what shows the checks can fail.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::common::Api;
use crate::common::process::ServerProcess;
use crate::common::redis::{RedisServer, unique_prefix};

const ENQUEUERS: usize = 2;
const WORKERS: usize = 3;
/// How long the workers' leases run: short, so abandoned tasks come back within the test.
const WORKER_LEASE_MS: u64 = 1_000;
/// How long the holder's leases run: well past the restart, so they must still acknowledge.
const HELD_LEASE_MS: u64 = 60_000;

/// What the clients saw, over every round.
#[derive(Default)]
struct Seen {
    /// Acknowledged enqueues: id -> text.
    enqueued: HashMap<String, String>,
    /// Ids whose acknowledgement was answered 200.
    acked: HashSet<String>,
    /// Ids whose acknowledgement the kill cut off: they may be gone.
    unanswered_acks: HashSet<String>,
    /// Leases taken by the holder, never acknowledged before the kill: (id, lease id).
    held: Vec<(String, Value)>,
    /// Every broken promise, in words.
    violations: Vec<String>,
}

impl Seen {
    /// A delivery of `id`: a broken promise if its acknowledgement was answered before.
    fn delivered(&mut self, id: &str, when: &str) {
        if self.acked.contains(id) {
            self.violations.push(format!(
                "{id} was delivered again {when}, after its acknowledgement"
            ));
        }
    }
}

#[tokio::test]
async fn deliveries_keep_their_promises_across_sigkill_with_the_embedded_store() {
    let violations = lease_rounds(&[("STORE", "embedded"), ("FSYNC_COMMITS", "false")], 3).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test]
async fn deliveries_keep_their_promises_across_sigkill_with_synced_commits() {
    let violations = lease_rounds(&[("STORE", "embedded"), ("FSYNC_COMMITS", "true")], 3).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test]
async fn deliveries_keep_their_promises_across_sigkill_with_the_redis_store() {
    let redis = RedisServer::start().await;
    let (url, prefix) = (redis.url(), unique_prefix("crash-leases"));
    let store = [
        ("STORE", "redis"),
        ("REDIS_URL", url.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
    ];
    let violations = lease_rounds(&store, 3).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test]
async fn the_checks_find_the_broken_promises_of_the_memory_store() {
    let violations = lease_rounds(&[("STORE", "memory")], 1).await;
    assert!(
        violations
            .iter()
            .any(|v| v.contains("no longer acknowledges")),
        "lost leases are found: {violations:#?}"
    );
    assert!(
        violations.iter().any(|v| v.contains("is lost")),
        "lost tasks are found: {violations:#?}"
    );
}

/// Runs `rounds` rounds of load, SIGKILL, restart and checks; returns what was broken.
async fn lease_rounds(store: &[(&str, &str)], rounds: usize) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("UTF-8 path").to_owned();
    let mut envs = vec![
        ("DATA_DIR", data_dir.as_str()),
        ("RUST_LOG", "backflow=warn,backflow::server=info"),
        ("NOTIFY_INTERVAL_MS", "60000"),
        ("QUEUE_CAPACITY", "1000000"),
        ("QUEUE_MAX_ATTEMPTS", "3"),
        ("QUEUE_RETRY_BASE_MS", "0"),
        ("QUEUE_RETRY_MAX_MS", "0"),
        ("QUEUE_REAP_INTERVAL_MS", "50"),
    ];
    envs.extend_from_slice(store);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut server = ServerProcess::start(&envs).await;
    for round in 0..rounds {
        load_then_kill(server, round, &seen).await;
        server = ServerProcess::start(&envs).await;
        let mut seen = seen.lock().await;
        acknowledge_held(&server, &mut seen).await;
        finish(&server, &mut seen).await;
        account(&server, &mut seen, round).await;
    }
    let seen = seen.lock().await;
    seen.violations.clone()
}

/// Enqueuers, workers (acknowledging, nacking or abandoning each task) and a holder (leasing
/// for long, acknowledging nothing) run until a random moment, when the server is killed.
async fn load_then_kill(server: ServerProcess, round: usize, seen: &Arc<Mutex<Seen>>) {
    let killed = Arc::new(AtomicBool::new(false));
    let base = server.url("");
    let mut clients = Vec::new();
    for enqueuer in 0..ENQUEUERS {
        let (seen, killed, base) = (seen.clone(), killed.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let client = client();
            for n in 0.. {
                let text = format!("r{round}-e{enqueuer}-{n}");
                let body = json!({"task": text, "priority": n % 3});
                let sent = client
                    .post(format!("{base}/enqueue"))
                    .json(&body)
                    .send()
                    .await;
                let Some((200, answer)) = answered(sent).await else {
                    return;
                };
                let id = answer["id"].as_str().expect("an id").to_owned();
                seen.lock().await.enqueued.insert(id, text);
                if killed.load(Ordering::Relaxed) {
                    return;
                }
            }
        }));
    }
    for _ in 0..WORKERS {
        let (seen, killed, base) = (seen.clone(), killed.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let client = client();
            while !killed.load(Ordering::Relaxed) {
                let body = json!({"count": 3, "leaseMs": WORKER_LEASE_MS, "waitMs": 100});
                let sent = client
                    .post(format!("{base}/tasks/lease"))
                    .json(&body)
                    .send()
                    .await;
                let Some((200, batch)) = answered(sent).await else {
                    return;
                };
                for leased in batch["tasks"].as_array().expect("tasks") {
                    let id = leased["id"].as_str().expect("an id").to_owned();
                    seen.lock().await.delivered(&id, "while the workers ran");
                    let verb = match rand::rng().random_range(0..10) {
                        0..6 => "ack",
                        6..8 => "nack",
                        _ => continue,
                    };
                    let body = json!({"leaseId": leased["leaseId"], "delayMs": 0});
                    let sent = client
                        .post(format!("{base}/tasks/{id}/{verb}"))
                        .json(&body)
                        .send()
                        .await;
                    match answered(sent).await {
                        Some((200, _)) if verb == "ack" => {
                            seen.lock().await.acked.insert(id);
                        }
                        Some(_) => {}
                        None => {
                            if verb == "ack" {
                                seen.lock().await.unanswered_acks.insert(id);
                            }
                            return;
                        }
                    }
                }
            }
        }));
    }
    {
        let (seen, killed, base) = (seen.clone(), killed.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let client = client();
            while !killed.load(Ordering::Relaxed) {
                let body = json!({"leaseMs": HELD_LEASE_MS});
                let sent = client
                    .post(format!("{base}/tasks/lease"))
                    .json(&body)
                    .send()
                    .await;
                let Some((200, batch)) = answered(sent).await else {
                    return;
                };
                if let Some(leased) = batch["tasks"].get(0) {
                    let id = leased["id"].as_str().expect("an id").to_owned();
                    let mut seen = seen.lock().await;
                    seen.delivered(&id, "to the holder");
                    seen.held.push((id, leased["leaseId"].clone()));
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }));
    }
    let delay = rand::rng().random_range(300..800);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    killed.store(true, Ordering::Relaxed);
    server.kill().await;
    for client in clients {
        client.await.expect("a client ends without panicking");
    }
}

/// Every lease the holder took before the kill still acknowledges: it has most of a minute to
/// run.
async fn acknowledge_held(server: &ServerProcess, seen: &mut Seen) {
    for (id, lease) in std::mem::take(&mut seen.held) {
        let body = json!({"leaseId": lease});
        let response = server.post_json(&format!("/tasks/{id}/ack"), &body).await;
        match response.status().as_u16() {
            200 => {
                seen.acked.insert(id);
            }
            status => seen.violations.push(format!(
                "{id}, leased before the kill, no longer acknowledges with its live lease \
                 ({status})"
            )),
        }
    }
}

/// Leases and acknowledges until nothing is left: the tasks abandoned by vanished workers
/// come back once their leases run out.
async fn finish(server: &ServerProcess, seen: &mut Seen) {
    loop {
        let batch = server
            .leased(&json!({"count": 50, "leaseMs": 30_000, "waitMs": 1_500}))
            .await;
        let tasks = batch["tasks"].as_array().expect("tasks");
        if tasks.is_empty() {
            let status = server.queue_status().await;
            let waiting = ["size", "delayed", "leased"]
                .iter()
                .map(|state| status[state].as_u64().expect("a count"))
                .sum::<u64>();
            if waiting == 0 {
                return;
            }
            continue;
        }
        for leased in tasks {
            let id = leased["id"].as_str().expect("an id").to_owned();
            seen.delivered(&id, "after the restart");
            let response = server.ack(leased).await;
            assert_eq!(response.status(), 200, "a fresh lease acknowledges");
            seen.acked.insert(id);
        }
    }
}

/// Every acknowledged enqueue ended acknowledged or dead; nothing acknowledged is listed dead.
async fn account(server: &ServerProcess, seen: &mut Seen, round: usize) {
    let mut dead = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(id) => format!("/queue/dead?limit=1000&after={id}"),
            None => "/queue/dead?limit=1000".to_owned(),
        };
        let page: Value = server.get(&path).await.json().await.expect("a page");
        for task in page["tasks"].as_array().expect("tasks") {
            dead.insert(task["id"].as_str().expect("an id").to_owned());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    for id in &dead {
        if seen.acked.contains(id) {
            seen.violations.push(format!(
                "round {round}: {id} is dead-lettered after its acknowledgement"
            ));
        }
    }
    let mut broken = Vec::new();
    for (id, text) in &seen.enqueued {
        if seen.acked.contains(id) || dead.contains(id) {
            continue;
        }
        let response = server.get(&format!("/tasks/{id}")).await;
        match response.status().as_u16() {
            404 if seen.unanswered_acks.contains(id) => {}
            404 => broken.push(format!("round {round}: {text} ({id}) is lost")),
            status => {
                let view: Value = response.json().await.unwrap_or_default();
                broken.push(format!(
                    "round {round}: {text} ({id}) is stuck ({status}, {})",
                    view["state"]
                ));
            }
        }
    }
    seen.violations.extend(broken);
}

/// The status and JSON body of an answer, or `None` when the kill cut the exchange short.
async fn answered(sent: reqwest::Result<reqwest::Response>) -> Option<(u16, Value)> {
    let response = sent.ok()?;
    let status = response.status().as_u16();
    let body = response.json().await.ok()?;
    Some((status, body))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}
