//! What a 2xx promised survives `kill -9`: the server is killed with SIGKILL at random moments
//! under concurrent enqueues, dequeues and logouts, then started again on the same `DATA_DIR`.
//!
//! Only what a client saw acknowledged is held against the server. After each restart the queue
//! is drained and checked: every acknowledged enqueue is there exactly once unless its dequeue
//! was acknowledged (or a dequeue was cut off by the kill, which may have taken it), no
//! acknowledged dequeue comes back, nothing appears that was never sent, and tasks leave by
//! priority, in arrival order among equal priorities. Every token whose logout was acknowledged,
//! in any round, is still refused. The same scenario against `STORE=memory` must find losses:
//! that is what shows the checks can fail.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::common::process::ServerProcess;
use crate::common::{ADMIN, Api};

/// Long enough for tokens to outlive the test, fixed so they verify after a restart.
const SECRET: &str = "crash-test-secret-crash-test-secret!!";
const ENQUEUERS: usize = 4;
const DEQUEUERS: usize = 2;
const LOGGERS_OUT: usize = 2;
/// Three priorities, so equal priorities are common and their order is checked.
const PRIORITIES: i64 = 3;

/// What the clients saw in one round.
#[derive(Default)]
struct Round {
    /// Acknowledged enqueues: task text -> (id, priority).
    enqueued: HashMap<String, (String, i64)>,
    /// Enqueues cut off by the kill (sent, never answered): they may or may not be there.
    unanswered_enqueues: HashSet<String>,
    /// Ids of acknowledged dequeues.
    dequeued: HashSet<String>,
    /// Dequeues cut off by the kill: each may have taken one task.
    unanswered_dequeues: usize,
    /// Tokens whose logout was acknowledged.
    logged_out: Vec<String>,
}

/// Every way the server broke a promise, in words.
type Violations = Vec<String>;

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_with_the_embedded_store() {
    let violations = crash_rounds(&[("STORE", "embedded"), ("FSYNC_COMMITS", "false")], 4).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_with_synced_commits() {
    let violations = crash_rounds(&[("STORE", "embedded"), ("FSYNC_COMMITS", "true")], 4).await;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test]
async fn the_checks_find_the_losses_of_the_memory_store() {
    let violations = crash_rounds(&[("STORE", "memory")], 1).await;
    assert!(
        violations
            .iter()
            .any(|v| v.contains("acknowledged enqueue")),
        "lost tasks are found: {violations:#?}"
    );
    assert!(
        violations.iter().any(|v| v.contains("logged out")),
        "undone logouts are found: {violations:#?}"
    );
}

/// Runs `rounds` rounds of load + SIGKILL + restart + checks; returns what was broken.
async fn crash_rounds(store: &[(&str, &str)], rounds: usize) -> Violations {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("UTF-8 path").to_owned();
    let mut envs = vec![
        ("DATA_DIR", data_dir.as_str()),
        ("JWT_SECRET", SECRET),
        ("RUST_LOG", "backflow=warn,backflow::server=info"),
        ("NOTIFY_INTERVAL_MS", "60000"),
        ("LOGIN_SUCCESS_MAX_PER_MINUTE", "1000000"),
        ("QUEUE_CAPACITY", "1000000"),
    ];
    envs.extend_from_slice(store);
    let mut violations = Violations::new();
    let mut logged_out = Vec::new();
    let mut server = ServerProcess::start(&envs).await;
    for round in 0..rounds {
        let seen = load_then_kill(server, round).await;
        server = ServerProcess::start(&envs).await;
        logged_out.extend(seen.logged_out.iter().cloned());
        for token in &logged_out {
            let status = server.protected(token).await.status();
            if status != 401 {
                violations.push(format!(
                    "round {round}: a token logged out before the kill is accepted again ({status})"
                ));
            }
        }
        violations.extend(check_queue(&server, &seen, round).await);
    }
    violations
}

/// Drives the server with concurrent clients, kills it with SIGKILL at a random moment, and
/// returns what the clients saw acknowledged.
async fn load_then_kill(server: ServerProcess, round: usize) -> Round {
    let seen = Arc::new(Mutex::new(Round::default()));
    let killed = Arc::new(AtomicBool::new(false));
    let base = server.url("");
    let mut workers = Vec::new();
    for worker in 0..ENQUEUERS {
        let (seen, killed, base) = (seen.clone(), killed.clone(), base.clone());
        workers.push(tokio::spawn(async move {
            let client = client();
            for i in 0.. {
                let text = format!("r{round}-w{worker}-{i}");
                let priority = i % PRIORITIES;
                let sent = client
                    .post(format!("{base}/enqueue"))
                    .json(&json!({"task": text, "priority": priority}))
                    .send()
                    .await;
                match answer(sent).await {
                    Some(body) => {
                        let id = body["id"].as_str().expect("an id").to_owned();
                        seen.lock().await.enqueued.insert(text, (id, priority));
                    }
                    None => {
                        seen.lock().await.unanswered_enqueues.insert(text);
                        return;
                    }
                }
                if killed.load(Ordering::Relaxed) {
                    return;
                }
            }
        }));
    }
    for _ in 0..DEQUEUERS {
        let (seen, killed, base) = (seen.clone(), killed.clone(), base.clone());
        workers.push(tokio::spawn(async move {
            let client = client();
            while !killed.load(Ordering::Relaxed) {
                let sent = client.get(format!("{base}/dequeue")).send().await;
                if sent.as_ref().is_ok_and(|r| r.status() == 404) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                match answer(sent).await {
                    Some(body) => {
                        let id = body["id"].as_str().expect("an id").to_owned();
                        seen.lock().await.dequeued.insert(id);
                    }
                    None => {
                        seen.lock().await.unanswered_dequeues += 1;
                        return;
                    }
                }
            }
        }));
    }
    for _ in 0..LOGGERS_OUT {
        let (seen, killed, base) = (seen.clone(), killed.clone(), base.clone());
        workers.push(tokio::spawn(async move {
            let client = client();
            while !killed.load(Ordering::Relaxed) {
                let login = client
                    .post(format!("{base}/login"))
                    .json(&json!({"username": ADMIN.0, "password": ADMIN.1}))
                    .send()
                    .await;
                let Some(body) = answer(login).await else {
                    return;
                };
                let token = body["token"].as_str().expect("a token").to_owned();
                let logout = client
                    .post(format!("{base}/logout"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                if answer(logout).await.is_none() {
                    return;
                }
                seen.lock().await.logged_out.push(token);
            }
        }));
    }
    let delay = rand::rng().random_range(200..700);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    killed.store(true, Ordering::Relaxed);
    server.kill().await;
    for worker in workers {
        worker.await.expect("a client task ends without panicking");
    }
    Arc::try_unwrap(seen)
        .unwrap_or_else(|_| unreachable!("every worker has ended"))
        .into_inner()
}

/// Drains the restarted server's queue and checks it against what the clients saw.
async fn check_queue(server: &ServerProcess, seen: &Round, round: usize) -> Violations {
    let mut violations = Violations::new();
    let drained: Vec<(String, String, i64)> = server
        .drain()
        .await
        .iter()
        .map(|body| {
            (
                body["id"].as_str().expect("an id").to_owned(),
                body["task"].as_str().expect("a task").to_owned(),
                body["priority"].as_i64().expect("a priority"),
            )
        })
        .collect();
    let mut present = HashSet::new();
    for (id, text, _) in &drained {
        if !present.insert(text.clone()) {
            violations.push(format!("round {round}: {text} was queued twice"));
        }
        if seen.dequeued.contains(id) {
            violations.push(format!(
                "round {round}: {text} came back after its acknowledged dequeue"
            ));
        }
        let acknowledged = seen
            .enqueued
            .get(text)
            .is_some_and(|(known, _)| known == id);
        if !acknowledged && !seen.unanswered_enqueues.contains(text) {
            violations.push(format!("round {round}: {text} ({id}) was never enqueued"));
        }
    }
    let missing: Vec<&String> = seen
        .enqueued
        .iter()
        .filter(|(text, (id, _))| !seen.dequeued.contains(id) && !present.contains(*text))
        .map(|(text, _)| text)
        .collect();
    if missing.len() > seen.unanswered_dequeues {
        violations.push(format!(
            "round {round}: {} acknowledged enqueues are gone, more than the {} dequeues cut \
             off by the kill could have taken (first: {:?})",
            missing.len(),
            seen.unanswered_dequeues,
            missing.first()
        ));
    }
    violations.extend(order_violations(&drained, round));
    violations
}

/// Priorities never decrease along the drain, and one client's tasks of equal priority leave in
/// the order it sent them (one client sends one at a time, so its arrival order is known).
fn order_violations(drained: &[(String, String, i64)], round: usize) -> Violations {
    let mut violations = Violations::new();
    let mut last_of_worker: HashMap<(String, i64), u64> = HashMap::new();
    for pair in drained.windows(2) {
        if pair[1].2 < pair[0].2 {
            violations.push(format!(
                "round {round}: {} (priority {}) left after {} (priority {})",
                pair[1].1, pair[1].2, pair[0].1, pair[0].2
            ));
        }
    }
    for (_, text, priority) in drained {
        let (worker, number) = text.rsplit_once('-').expect("r<round>-w<worker>-<n>");
        let number: u64 = number.parse().expect("a sequence number");
        let key = (worker.to_owned(), *priority);
        if let Some(previous) = last_of_worker.insert(key, number)
            && previous > number
        {
            violations.push(format!(
                "round {round}: {text} left after {worker}-{previous}, which was sent later"
            ));
        }
    }
    violations
}

/// The JSON body of a 200 answer, or `None` when the kill cut the exchange short. Any other
/// status is a failure of the test itself.
async fn answer(sent: reqwest::Result<reqwest::Response>) -> Option<Value> {
    let response = sent.ok()?;
    assert_eq!(response.status(), 200, "an answer before the kill");
    response.json().await.ok()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}
