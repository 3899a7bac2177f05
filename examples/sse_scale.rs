//! SSE scale probe: opens N event streams to a running BackFlow, measures the server's resident
//! memory per connection, then publishes application events (enqueues) one at a time and
//! measures how long each takes to reach every stream, and how much CPU the server spends
//! delivering them.
//!
//! Connections are raw HTTP/1.1 over tokio sockets, and each stream is scanned as bytes for the
//! event's marker (no line or string allocation), so the probe stays light enough to hold ten
//! thousand streams on the same small machine as the server without slowing the delivery it
//! measures more than necessary.
//!
//! With a sixth argument `h2:<k>`, the streams are opened over HTTP/2 with prior knowledge (h2c),
//! `k` streams on each connection (`connections / k` connections), to compare the memory of an
//! event stream over HTTP/2 with one over HTTP/1.1.
//!
//! Run: `cargo run --release --example sse_scale -- <host:port> <server-pid> <streams> [events] [h2:<k>]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, mpsc};

/// How long to wait after the last stream opened before reading the server's memory.
const SETTLE: Duration = Duration::from_secs(2);
/// Pause between two published events, so each fan-out is measured on its own.
const BETWEEN_EVENTS: Duration = Duration::from_millis(500);
/// Longest wait for one event to reach every stream.
const DEADLINE: Duration = Duration::from_secs(30);

/// The server's resident memory (VmRSS) in KiB.
fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The server's user plus system CPU time, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The fields after the command name, which is in parentheses and may hold spaces.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0)
}

fn marker(prefix: &str, event: usize) -> Vec<u8> {
    format!("{prefix}-e{event}.").into_bytes()
}

/// Whether `window` holds `needle`.
fn contains(window: &[u8], needle: &[u8]) -> bool {
    window.windows(needle.len()).any(|w| w == needle)
}

/// What a stream has seen so far: the connected message, then each event's marker in order.
struct Scanner {
    prefix: String,
    events: usize,
    connected: Arc<AtomicUsize>,
    ready: Arc<Barrier>,
    received: mpsc::UnboundedSender<(usize, Instant)>,
    /// The unread tail of the previous read, so a marker split across two reads is still found.
    window: Vec<u8>,
    waiting_for: Vec<u8>,
    next_event: Option<usize>,
}

impl Scanner {
    fn new(
        prefix: String,
        events: usize,
        connected: Arc<AtomicUsize>,
        ready: Arc<Barrier>,
        received: mpsc::UnboundedSender<(usize, Instant)>,
    ) -> Self {
        let waiting_for = marker(&prefix, 0);
        Self {
            prefix,
            events,
            connected,
            ready,
            received,
            window: Vec::with_capacity(4096 + 64),
            waiting_for,
            next_event: None,
        }
    }

    /// Takes the bytes read at `at`; `false` once the last event has arrived.
    async fn feed(&mut self, bytes: &[u8], at: Instant) -> bool {
        self.window.extend_from_slice(bytes);
        match self.next_event {
            None if contains(&self.window, b"Connected to notification stream") => {
                self.connected.fetch_add(1, Ordering::Relaxed);
                self.ready.wait().await;
                self.next_event = Some(0);
                self.window.clear();
            }
            Some(event) if contains(&self.window, &self.waiting_for) => {
                let _ = self.received.send((event, at));
                if event + 1 == self.events {
                    return false;
                }
                self.next_event = Some(event + 1);
                self.waiting_for = marker(&self.prefix, event + 1);
                self.window.clear();
            }
            _ => {
                let keep = self.window.len().saturating_sub(64);
                self.window.drain(..keep);
            }
        }
        true
    }

    /// The stream ended: a stream that never connected still lets the others start.
    async fn end(self) {
        if self.next_event.is_none() {
            self.ready.wait().await;
        }
    }
}

/// One HTTP/1.1 stream: connects, waits for the "connected" message, then reports when each
/// event's marker arrives, in order.
async fn open_stream(addr: String, mut scanner: Scanner) {
    let Ok(mut socket) = TcpStream::connect(&addr).await else {
        return scanner.end().await;
    };
    let request =
        format!("GET /notifications HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    if socket.write_all(request.as_bytes()).await.is_err() {
        return scanner.end().await;
    }
    let mut buffer = [0u8; 4096];
    loop {
        let n = match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !scanner.feed(&buffer[..n], Instant::now()).await {
            break;
        }
    }
    scanner.end().await;
}

/// One HTTP/2 connection (h2c) carrying one stream per scanner.
async fn open_h2_connection(addr: String, scanners: Vec<Scanner>) {
    let connection = match TcpStream::connect(&addr).await {
        Ok(tcp) => h2::client::handshake(tcp).await.ok(),
        Err(_) => None,
    };
    let Some((sender, connection)) = connection else {
        for scanner in scanners {
            scanner.end().await;
        }
        return;
    };
    tokio::spawn(connection);
    let mut streams = tokio::task::JoinSet::new();
    for mut scanner in scanners {
        let sender = sender.clone();
        let uri = format!("http://{addr}/notifications");
        streams.spawn(async move {
            let request = http::Request::get(uri)
                .header("accept", "text/event-stream")
                .body(())
                .expect("a request");
            let response = match sender.ready().await {
                Ok(mut ready) => ready.send_request(request, true).ok(),
                Err(_) => None,
            };
            let body = match response {
                Some((response, _)) => response.await.ok(),
                None => None,
            };
            if let Some(response) = body {
                let mut body = response.into_body();
                while let Some(Ok(chunk)) = body.data().await {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    if !scanner.feed(&chunk, Instant::now()).await {
                        break;
                    }
                }
            }
            scanner.end().await;
        });
    }
    streams.join_all().await;
}

async fn publish(addr: &str, task: &str) -> std::io::Result<()> {
    let mut publisher = TcpStream::connect(addr).await?;
    let body = format!(r#"{{"task":"{task}","priority":0}}"#);
    let request = format!(
        "POST /enqueue HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    publisher.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    publisher.read_to_end(&mut answer).await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (addr, pid, n, events, per_connection) = match args.as_slice() {
        [_, addr, pid, n] => (
            addr.clone(),
            pid.parse::<u32>()?,
            n.parse::<usize>()?,
            5,
            None,
        ),
        [_, addr, pid, n, events] => (
            addr.clone(),
            pid.parse::<u32>()?,
            n.parse::<usize>()?,
            events.parse::<usize>()?,
            None,
        ),
        [_, addr, pid, n, events, h2] if h2.starts_with("h2:") => (
            addr.clone(),
            pid.parse::<u32>()?,
            n.parse::<usize>()?,
            events.parse::<usize>()?,
            Some(h2["h2:".len()..].parse::<usize>()?.max(1)),
        ),
        _ => {
            eprintln!("usage: sse_scale <host:port> <server-pid> <streams> [events] [h2:<k>]");
            std::process::exit(2);
        }
    };
    let prefix = format!("sse-scale-{}", std::process::id());

    let rss_before = rss_kib(pid);
    let connected = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(Barrier::new(n + 1));
    let (received_tx, mut received_rx) = mpsc::unbounded_channel();
    let opened = Instant::now();
    let scanner = || {
        Scanner::new(
            prefix.clone(),
            events,
            connected.clone(),
            ready.clone(),
            received_tx.clone(),
        )
    };
    match per_connection {
        None => {
            for _ in 0..n {
                tokio::spawn(open_stream(addr.clone(), scanner()));
            }
        }
        Some(k) => {
            let mut left = n;
            while left > 0 {
                let here = k.min(left);
                left -= here;
                tokio::spawn(open_h2_connection(
                    addr.clone(),
                    (0..here).map(|_| scanner()).collect(),
                ));
            }
        }
    }
    drop(received_tx);
    ready.wait().await;
    let open_time = opened.elapsed();
    let open = connected.load(Ordering::Relaxed);
    tokio::time::sleep(SETTLE).await;
    let rss_after = rss_kib(pid);

    let mut latencies: Vec<Duration> = Vec::with_capacity(open * events);
    let mut cpu_ticks_spent = 0;
    let mut complete_events = 0;
    for event in 0..events {
        let cpu_before = cpu_ticks(pid);
        let sent = Instant::now();
        publish(&addr, &format!("{prefix}-e{event}.")).await?;
        let deadline = tokio::time::sleep(DEADLINE);
        tokio::pin!(deadline);
        let mut got = 0;
        while got < open {
            tokio::select! {
                delivery = received_rx.recv() => match delivery {
                    Some((e, at)) if e == event => {
                        latencies.push(at.saturating_duration_since(sent));
                        got += 1;
                    }
                    Some(_) => {}
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        cpu_ticks_spent += cpu_ticks(pid) - cpu_before;
        if got == open {
            complete_events += 1;
        }
        tokio::time::sleep(BETWEEN_EVENTS).await;
    }
    latencies.sort();
    let per_conn = (rss_after.saturating_sub(rss_before) as f64 * 1024.0) / open.max(1) as f64;
    let deliveries = latencies.len().max(1) as f64;
    println!(
        "{{\"requested\":{n},\"open\":{open},\"openSeconds\":{:.2},\"rssBeforeKiB\":{rss_before},\
\"rssAfterKiB\":{rss_after},\"bytesPerConnection\":{per_conn:.0},\"events\":{events},\
\"eventsReachingAll\":{complete_events},\"deliveries\":{},\"fanoutP50Ms\":{:.1},\"fanoutP99Ms\":{:.1},\
\"fanoutMaxMs\":{:.1},\"serverCpuMicrosPerDelivery\":{:.1}}}",
        open_time.as_secs_f64(),
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        cpu_ticks_spent as f64 * 10_000.0 / deliveries,
    );
    Ok(())
}
