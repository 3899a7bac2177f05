//! Load client of reliable delivery: job cycles, and the delay of a long poll's wake-up.
//!
//! `cycle`: `--connections` workers, each in a loop for `--seconds`: enqueue `--batch` tasks (one
//! per request), lease `--batch` (`count`), acknowledge what it got (`POST /tasks/{id}/ack` for
//! one, `POST /tasks/ack` for more). With `--consume-only` the workers only lease and
//! acknowledge, from a queue filled beforehand. Prints one JSON object: jobs acknowledged per
//! second, requests per second, the answers that were not 200, and the leases that found fewer
//! tasks than they asked for (in `--consume-only`, a queue that ran dry: the run measured
//! empty leases, not jobs).
//!
//! `longpoll`: `--samples` times in turn: a lease with `waitMs` waits on `--wait`, then (once it
//! is parked: `--park-ms` later) a task is enqueued on `--enqueue`. Prints the p50, p99 and max of
//! (lease answered - enqueue answered), in milliseconds (negative when the lease's answer came
//! first), and of (lease answered - enqueue sent). The two URLs may name two instances.
//!
//! Run by `benches/jobs.sh`:
//!
//! `cargo run --release --example job_cycle -- cycle --base http://127.0.0.1:3000 \
//!     --connections 64 --seconds 10 --batch 1`
//! `cargo run --release --example job_cycle -- longpoll --wait http://127.0.0.1:3000 \
//!     --enqueue http://127.0.0.1:3001 --samples 500`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Options {
    mode: String,
    base: String,
    wait: String,
    enqueue: String,
    connections: usize,
    seconds: u64,
    batch: usize,
    consume_only: bool,
    samples: usize,
    park: Duration,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mode = args.next().expect("a mode: cycle or longpoll");
    let mut options = Options {
        mode,
        base: String::new(),
        wait: String::new(),
        enqueue: String::new(),
        connections: 64,
        seconds: 10,
        batch: 1,
        consume_only: false,
        samples: 500,
        park: Duration::from_millis(20),
    };
    while let Some(flag) = args.next() {
        if flag == "--consume-only" {
            options.consume_only = true;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--base" => options.base = value,
            "--wait" => options.wait = value,
            "--enqueue" => options.enqueue = value,
            "--connections" => options.connections = value.parse().expect("a count"),
            "--seconds" => options.seconds = value.parse().expect("seconds"),
            "--batch" => options.batch = value.parse().expect("1..=100"),
            "--samples" => options.samples = value.parse().expect("a count"),
            "--park-ms" => options.park = Duration::from_millis(value.parse().expect("ms")),
            other => panic!("unknown option {other}"),
        }
    }
    options
}

#[derive(Default)]
struct Counts {
    jobs: AtomicU64,
    requests: AtomicU64,
    refused: AtomicU64,
    short_leases: AtomicU64,
}

/// Sends one JSON request; counts it, and returns the body of a 200 (None for anything else).
async fn post(
    client: &reqwest::Client,
    counts: &Counts,
    url: String,
    body: Value,
) -> Option<Value> {
    counts.requests.fetch_add(1, Ordering::Relaxed);
    match client.post(url).json(&body).send().await {
        Ok(response) if response.status() == 200 => response.json().await.ok(),
        _ => {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

async fn worker(
    client: reqwest::Client,
    options: Arc<Options>,
    counts: Arc<Counts>,
    until: Instant,
) {
    let base = &options.base;
    while Instant::now() < until {
        if !options.consume_only {
            for _ in 0..options.batch {
                post(
                    &client,
                    &counts,
                    format!("{base}/enqueue"),
                    json!({"task": "job", "priority": 5}),
                )
                .await;
            }
        }
        let Some(leased) = post(
            &client,
            &counts,
            format!("{base}/tasks/lease"),
            json!({"count": options.batch, "leaseMs": 60_000}),
        )
        .await
        else {
            continue;
        };
        let tasks = leased["tasks"].as_array().cloned().unwrap_or_default();
        if tasks.len() < options.batch {
            counts.short_leases.fetch_add(1, Ordering::Relaxed);
        }
        let acks: Vec<Value> = tasks
            .iter()
            .map(|task| json!({"id": task["id"], "leaseId": task["leaseId"]}))
            .collect();
        match acks.as_slice() {
            [] => {}
            [one] => {
                let id = one["id"].as_str().unwrap_or_default();
                let url = format!("{base}/tasks/{id}/ack");
                if post(&client, &counts, url, json!({"leaseId": one["leaseId"]}))
                    .await
                    .is_some()
                {
                    counts.jobs.fetch_add(1, Ordering::Relaxed);
                }
            }
            many => {
                let url = format!("{base}/tasks/ack");
                if let Some(answer) = post(&client, &counts, url, json!({"acks": many})).await {
                    let acked = answer["results"].as_array().map_or(0, |results| {
                        results.iter().filter(|r| r["status"] == 200).count()
                    });
                    counts.jobs.fetch_add(acked as u64, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn cycle(options: Options) {
    assert!(!options.base.is_empty(), "--base URL is required");
    let client = reqwest::Client::new();
    let counts = Arc::new(Counts::default());
    let options = Arc::new(options);
    let started = Instant::now();
    let until = started + Duration::from_secs(options.seconds);
    let workers: Vec<_> = (0..options.connections)
        .map(|_| {
            tokio::spawn(worker(
                client.clone(),
                options.clone(),
                counts.clone(),
                until,
            ))
        })
        .collect();
    for handle in workers {
        handle.await.expect("a worker ends");
    }
    let seconds = started.elapsed().as_secs_f64();
    let jobs = counts.jobs.load(Ordering::Relaxed);
    let requests = counts.requests.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "batch": options.batch,
            "connections": options.connections,
            "consumeOnly": options.consume_only,
            "seconds": seconds,
            "jobs": jobs,
            "jobsPerSecond": jobs as f64 / seconds,
            "requestsPerSecond": requests as f64 / seconds,
            "notOk": counts.refused.load(Ordering::Relaxed),
            "shortLeases": counts.short_leases.load(Ordering::Relaxed),
        })
    );
}

/// `later - earlier` in milliseconds, negative when `later` came first.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(after) => after.as_secs_f64() * 1000.0,
        None => -(earlier - later).as_secs_f64() * 1000.0,
    }
}

/// The p50, p99 and max of `samples` (milliseconds).
fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    json!({
        "p50_ms": percentile(&samples, 50.0),
        "p99_ms": percentile(&samples, 99.0),
        "max_ms": samples[samples.len() - 1],
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn longpoll(options: Options) {
    assert!(
        !options.wait.is_empty() && !options.enqueue.is_empty(),
        "--wait and --enqueue URLs are required"
    );
    let waiter = reqwest::Client::new();
    let producer = reqwest::Client::new();
    let mut delays = Vec::with_capacity(options.samples);
    let mut since_sent = Vec::with_capacity(options.samples);
    let mut empty = 0;
    for sample in 0..options.samples {
        let lease = waiter
            .post(format!("{}/tasks/lease", options.wait))
            .json(&json!({"waitMs": 10_000, "leaseMs": 60_000}))
            .send();
        let lease = tokio::spawn(async move {
            let answer: Value = lease
                .await
                .expect("the lease answers")
                .json()
                .await
                .expect("JSON");
            (Instant::now(), answer)
        });
        tokio::time::sleep(options.park).await;
        let sent = Instant::now();
        let response = producer
            .post(format!("{}/enqueue", options.enqueue))
            .json(&json!({"task": format!("poll-{sample}"), "priority": 5}))
            .send()
            .await
            .expect("the enqueue answers");
        let enqueued = Instant::now();
        assert_eq!(response.status(), 200, "enqueue");
        let (answered, answer) = lease.await.expect("the lease task ends");
        let Some(task) = answer["tasks"].as_array().and_then(|tasks| tasks.first()) else {
            empty += 1;
            continue;
        };
        // Any other task was there before the enqueue: the delay would measure nothing.
        assert_eq!(
            task["task"],
            format!("poll-{sample}"),
            "the lease got a task enqueued earlier: the queue must start empty"
        );
        // The lease often answers before the enqueue's own answer is read: a negative delay.
        delays.push(signed_ms(answered, enqueued));
        since_sent.push(signed_ms(answered, sent));
        let id = task["id"].as_str().expect("an id");
        let acked = waiter
            .post(format!("{}/tasks/{id}/ack", options.wait))
            .json(&json!({"leaseId": task["leaseId"]}))
            .send()
            .await
            .expect("the ack answers");
        assert_eq!(acked.status(), 200, "ack");
    }
    assert!(!delays.is_empty(), "no lease received a task");
    println!(
        "{}",
        json!({
            "samples": delays.len(),
            "emptyAnswers": empty,
            "afterEnqueueAnswered": summary(delays),
            "afterEnqueueSent": summary(since_sent),
        })
    );
}

#[tokio::main]
async fn main() {
    let options = options();
    match options.mode.as_str() {
        "cycle" => cycle(options).await,
        "longpoll" => longpoll(options).await,
        other => panic!("unknown mode {other}: cycle or longpoll"),
    }
}
