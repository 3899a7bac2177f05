//! The delay from an enqueue to its `queue.enqueued` event on open event streams.
//!
//! Opens `/notifications` on every `--watch` server, then enqueues `--events` tasks on the
//! `--publish` server, one every `--every-ms`, each with a unique text, and notes when each
//! stream delivers its event. Prints one JSON object: for each watched server, the p50, p99 and
//! max of (event received - enqueue sent), in milliseconds. Run by `benches/event_latency.sh`.
//!
//! `cargo run --release --example event_latency -- --publish http://127.0.0.1:3000 \
//!     --watch http://127.0.0.1:3000,http://127.0.0.1:3001 --events 500 --every-ms 5`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

struct Options {
    publish: String,
    watch: Vec<String>,
    events: usize,
    every: Duration,
}

fn options() -> Options {
    let mut options = Options {
        publish: String::new(),
        watch: Vec::new(),
        events: 500,
        every: Duration::from_millis(5),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--publish" => options.publish = value,
            "--watch" => options.watch = value.split(',').map(str::to_owned).collect(),
            "--events" => options.events = value.parse().expect("--events: a count"),
            "--every-ms" => {
                options.every = Duration::from_millis(value.parse().expect("--every-ms: ms"));
            }
            other => panic!("unknown option {other}"),
        }
    }
    assert!(!options.publish.is_empty(), "--publish URL is required");
    assert!(
        !options.watch.is_empty(),
        "--watch URL[,URL...] is required"
    );
    options
}

/// When each `lat-<n>` event reached the stream of `base`.
async fn watch(base: String, events: usize) -> HashMap<usize, Instant> {
    let response = reqwest::get(format!("{base}/notifications"))
        .await
        .expect("the event stream opens");
    let mut stream = response.bytes_stream().eventsource();
    let mut seen = HashMap::new();
    while seen.len() < events {
        let Some(Ok(event)) = stream.next().await else {
            break;
        };
        let at = Instant::now();
        let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
        if let Some(n) = data["task"]
            .as_str()
            .and_then(|task| task.strip_prefix("lat-"))
            .and_then(|n| n.parse().ok())
        {
            seen.insert(n, at);
        }
    }
    seen
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let options = options();
    let watchers: Vec<_> = options
        .watch
        .iter()
        .map(|base| tokio::spawn(watch(base.clone(), options.events)))
        .collect();
    // Let every stream open before the first event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = reqwest::Client::new();
    let mut sent = Vec::with_capacity(options.events);
    let mut ticker = tokio::time::interval(options.every);
    for n in 0..options.events {
        ticker.tick().await;
        sent.push(Instant::now());
        let answer = client
            .post(format!("{}/enqueue", options.publish))
            .json(&json!({"task": format!("lat-{n}"), "priority": 1}))
            .send()
            .await
            .expect("the enqueue is answered");
        assert!(answer.status().is_success(), "enqueue: {}", answer.status());
    }
    let mut report = serde_json::Map::new();
    for (base, watcher) in options.watch.iter().zip(watchers) {
        let seen = tokio::time::timeout(Duration::from_secs(30), watcher)
            .await
            .expect("every event arrives")
            .expect("the watcher ends");
        let mut delays: Vec<f64> = sent
            .iter()
            .enumerate()
            .filter_map(|(n, at)| Some(seen.get(&n)?.duration_since(*at).as_secs_f64() * 1e3))
            .collect();
        delays.sort_by(f64::total_cmp);
        report.insert(
            base.clone(),
            json!({
                "received": delays.len(),
                "p50_ms": percentile(&delays, 0.50),
                "p99_ms": percentile(&delays, 0.99),
                "max_ms": delays.last(),
            }),
        );
    }
    println!("{}", Value::Object(report));
}
