//! Several instances as one server: the real binary, run more than once, behind the real nginx
//! configured from `deploy/nginx.conf.template`, and the real Redis that the instances will
//! share; the harness for those (`tests/common/{nginx,redis}.rs`) is checked here too.
//!
//! The instances run `STORE=memory`, so each keeps its own state; what is checked is what the
//! proxy does: spreading requests, passing events through unbuffered, naming the client, and
//! which requests it retries on another instance.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::common::nginx::{Nginx, TEMPLATE, render_config};
use crate::common::process::ServerProcess;
use crate::common::redis::{Persistence, RedisServer, unique_prefix};
use crate::common::{Api, client_from, error_body, eventually, open_sse};

const INSTANCES: usize = 2;

/// `INSTANCES` instances, trusting the proxy on 127.0.0.1, plus `envs`.
async fn instances(envs: &[(&str, &str)]) -> Vec<ServerProcess> {
    let mut all = Vec::new();
    for _ in 0..INSTANCES {
        let mut pairs = vec![
            ("STORE", "memory"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("NOTIFY_INTERVAL_MS", "100"),
        ];
        pairs.extend_from_slice(envs);
        all.push(ServerProcess::start(&pairs).await);
    }
    all
}

fn addrs(instances: &[ServerProcess]) -> Vec<SocketAddr> {
    instances.iter().map(|instance| instance.addr).collect()
}

#[tokio::test]
async fn requests_reach_every_instance_in_turn_and_keep_their_request_id() {
    let instances = instances(&[]).await;
    let nginx = Nginx::start(&addrs(&instances)).await;

    const REQUESTS: usize = 10;
    for _ in 0..REQUESTS {
        let response = nginx.get("/health").await;
        assert_eq!(response.status(), 200, "{}", nginx.error_log());
    }
    let mut counts = Vec::new();
    for instance in &instances {
        counts.push(instance.answered("/health", 200).await);
    }
    assert_eq!(counts.iter().sum::<f64>(), REQUESTS as f64, "{counts:?}");
    // One client connection is served by one nginx worker, which takes the instances in turn.
    assert!(
        (counts[0] - counts[1]).abs() <= 1.0,
        "round robin: {counts:?}"
    );

    let response = nginx
        .client()
        .get(nginx.url("/health"))
        .header("x-request-id", "trace-through-nginx")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["x-request-id"], "trace-through-nginx");
    let response = nginx.get("/health").await;
    let generated = response.headers()["x-request-id"].to_str().expect("ASCII");
    assert!(
        generated.len() == 32 && generated.bytes().all(|b| b.is_ascii_hexdigit()),
        "nginx's $request_id, echoed by the instance: {generated}"
    );
    // nginx writes its log line once the answer is out.
    let logged = format!("request_id={generated}");
    eventually("nginx logs the same request id", || async {
        nginx.access_log().contains(&logged)
    })
    .await;
}

#[tokio::test]
async fn events_come_through_the_proxy_as_they_happen() {
    let instances = instances(&[]).await;
    let nginx = Nginx::start(&addrs(&instances)).await;

    let mut stream = open_sse(&nginx, "/notifications", None).await;
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    let first = stream.next_json().await;
    assert_eq!(first["message"], "Connected to notification stream");
    // A notification every 100 ms: buffered by the proxy, a few would not fill its first
    // buffer; unbuffered, each arrives at once.
    for n in 0..3 {
        let started = Instant::now();
        let event = tokio::time::timeout(Duration::from_secs(1), stream.next())
            .await
            .unwrap_or_else(|_| panic!("notification {n} within a second through nginx"))
            .expect("the stream goes on");
        assert!(
            event.id.parse::<u64>().is_ok(),
            "a numbered event: {event:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

#[tokio::test]
async fn the_forwarded_client_has_its_own_failed_login_budget() {
    const BUDGET: usize = 3;
    let instances = instances(&[("LOGIN_MAX_PER_MINUTE", "3")]).await;
    let nginx = Nginx::start(&addrs(&instances)).await;
    let failed_login = |client: reqwest::Client, forged: String| {
        let url = nginx.url("/login");
        async move {
            client
                .post(url)
                .header("x-forwarded-for", forged)
                .json(&json!({"username": "admin", "password": "wrong"}))
                .send()
                .await
                .expect("sent")
        }
    };

    // nginx appends the address it sees (127.0.0.2) to whatever the client forged; the
    // instances trust nginx's entry only. Each instance keeps its own budget until the
    // instances share a store, so the client is refused after at most INSTANCES budgets.
    let guesser = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let mut refused = 0;
    let mut statuses = Vec::new();
    for i in 0..INSTANCES * BUDGET + INSTANCES {
        let response = failed_login(guesser.clone(), format!("198.51.100.{i}")).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            refused += 1;
        }
    }
    assert!(
        statuses.iter().filter(|s| **s == 401).count() <= INSTANCES * BUDGET,
        "forged addresses gave no fresh budget: {statuses:?}"
    );
    assert!(
        statuses.ends_with(&[429, 429]) && refused >= INSTANCES,
        "{statuses:?}"
    );

    // Another client of the same proxy is not limited, on any instance.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 3));
    for _ in 0..INSTANCES {
        let response = failed_login(other.clone(), "198.51.100.1".into()).await;
        assert_eq!(response.status(), 401, "127.0.0.3 has its own budget");
    }
}

/// A fake instance that takes each request and closes the connection without answering, as an
/// instance that crashed mid-request would; counts the connections it took.
async fn failing_instance() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bound");
    let addr = listener.local_addr().expect("an address");
    let taken = Arc::new(AtomicUsize::new(0));
    let counter = taken.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer).await;
        }
    });
    (addr, taken)
}

#[tokio::test]
async fn only_idempotent_requests_are_retried_on_another_instance() {
    let live = instances(&[]).await;

    // A fresh nginx sends its first request to the first instance: the failing one. A GET that
    // failed there is answered by the next instance.
    let (failing, taken) = failing_instance().await;
    let nginx = Nginx::start(&[failing, live[0].addr]).await;
    let response = nginx.get("/health").await;
    assert_eq!(response.status(), 200, "{}", nginx.error_log());
    assert_eq!(
        taken.load(Ordering::SeqCst),
        1,
        "the GET went to the failing one first"
    );
    drop(nginx);

    // A POST that reached an instance may have been carried out there: it is not repeated,
    // and nginx's 502 is JSON like the instances' errors.
    let (failing, taken) = failing_instance().await;
    let nginx = Nginx::start(&[failing, live[0].addr]).await;
    let response = nginx.enqueue("once", 1).await;
    assert_eq!(taken.load(Ordering::SeqCst), 1);
    assert_eq!(response.headers()["retry-after"], "1");
    error_body(response, 502, "bad_gateway").await;
    let status = live[0].queue_status().await;
    assert_eq!(
        status["size"], 0,
        "the POST was not sent to the live instance"
    );
}

#[tokio::test]
async fn nginx_refuses_a_body_over_the_limit_in_json() {
    let instances = instances(&[]).await;
    let nginx = Nginx::start(&addrs(&instances)).await;
    let task = "x".repeat(70_000);
    error_body(nginx.enqueue(&task, 1).await, 413, "payload_too_large").await;
}

/// The `location = <path> { ... }` block of the rendered configuration.
fn location_block<'a>(config: &'a str, path: &str) -> &'a str {
    let start = config
        .find(&format!("location = {path} {{"))
        .unwrap_or_else(|| panic!("a location for {path}"));
    let end = config[start..].find('}').expect("the block ends");
    &config[start..start + end]
}

/// The value of `directive` in `block`, e.g. `1h` for `proxy_read_timeout 1h;`.
fn directive<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    block
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|value| value.trim_end_matches(';').trim())
}

/// An nginx time (`90`, `90s`, `15m`, `1h`) in seconds.
fn nginx_seconds(value: &str) -> u64 {
    let (number, unit) = value.split_at(
        value
            .find(|c: char| c.is_alphabetic())
            .unwrap_or(value.len()),
    );
    let number: u64 = number.parse().expect("a number of units");
    number
        * match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => panic!("unexpected time unit {other}"),
        }
}

#[test]
fn the_nginx_configuration_keeps_event_streams_open_and_unbuffered() {
    let dir = Path::new("/run/backflow");
    let config = render_config(8080, &["127.0.0.1:3001".parse().expect("addr")], dir, dir);
    let server = &config[config.find("server {").expect("a server block")..];
    assert_eq!(directive(server, "proxy_http_version"), Some("1.1"));
    assert_eq!(
        directive(server, "proxy_set_header Connection"),
        Some(r#""""#)
    );
    assert_eq!(
        directive(server, "proxy_set_header X-Forwarded-For"),
        Some("$proxy_add_x_forwarded_for")
    );
    assert_eq!(
        directive(server, "proxy_next_upstream"),
        Some("error timeout"),
        "non-idempotent requests are never sent twice"
    );
    let limit = backflow::Config::from_pairs([])
        .expect("defaults")
        .server
        .body_limit_bytes;
    assert_eq!(
        directive(server, "client_max_body_size"),
        Some(format!("{}k", limit / 1024).as_str()),
        "nginx's body limit is BODY_LIMIT_BYTES"
    );
    assert!(
        config.contains("keepalive 64;"),
        "connections to the instances are reused"
    );

    let events = location_block(&config, "/notifications");
    assert_eq!(directive(events, "proxy_buffering"), Some("off"));
    let read_timeout = nginx_seconds(directive(events, "proxy_read_timeout").expect("set"));
    let keepalive = backflow::Config::from_pairs([])
        .expect("defaults")
        .events
        .sse_keepalive;
    assert!(
        read_timeout > 60 && read_timeout > 10 * keepalive.as_secs(),
        "an idle event stream outlives nginx's default 60 s and many keep-alive comments"
    );
    assert_eq!(
        directive(location_block(&config, "/stream"), "proxy_buffering"),
        Some("off")
    );
    assert!(
        TEMPLATE
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .all(|line| !line.contains("non_idempotent")),
        "POSTs are not retried on another instance"
    );
}

#[tokio::test]
async fn redis_helper_serves_dies_and_returns_on_the_same_port() {
    let mut redis = RedisServer::start().await;
    assert!(redis.ping().await);
    let url = redis.url();
    assert!(url.starts_with("redis://127.0.0.1:"), "{url}");

    redis.kill();
    assert!(!redis.ping().await, "a killed server does not answer");
    redis.restart().await;
    assert!(redis.ping().await);
    assert_eq!(redis.url(), url, "the same URL after a restart");

    let other = RedisServer::start_with(Persistence::AppendOnly).await;
    assert_ne!(
        other.port(),
        redis.port(),
        "each test server has its own port"
    );
    assert!(other.ping().await);
    assert!(
        other.log().contains("Ready to accept connections"),
        "{}",
        other.log()
    );

    let (a, b) = (unique_prefix("queue order"), unique_prefix("queue order"));
    assert_ne!(a, b);
    assert!(a.starts_with("test-queue-order-"), "{a}");
    let long = unique_prefix(&"a very long test name ".repeat(10));
    assert!(long.len() <= 50, "{long}");
    let config = backflow::Config::from_pairs([("REDIS_PREFIX", long.as_str())]);
    assert!(config.is_ok(), "REDIS_PREFIX accepts {long}");
}
