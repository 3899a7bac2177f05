//! SSE scale probe: opens N event streams to a running BackFlow, measures the server's resident
//! memory per connection, then publishes one application event (an enqueue) and measures how
//! long it takes to reach every stream.
//!
//! Connections are raw HTTP/1.1 over tokio sockets, so the probe itself stays light enough to
//! hold ten thousand streams on a small machine.
//!
//! Run: `cargo run --release --example sse_scale -- <host:port> <server-pid> <connections>`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, mpsc};

const MARKER_PREFIX: &str = "sse-scale-";

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn open_stream(
    addr: String,
    connected: Arc<AtomicUsize>,
    ready: Arc<Barrier>,
    marker: String,
    done: mpsc::Sender<Instant>,
) {
    let Ok(mut socket) = TcpStream::connect(&addr).await else {
        ready.wait().await;
        return;
    };
    let request =
        format!("GET /notifications HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    if socket.write_all(request.as_bytes()).await.is_err() {
        ready.wait().await;
        return;
    }
    let mut lines = BufReader::new(socket).lines();
    // Wait for the "connected" event before counting this stream as open.
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("Connected to notification stream") {
            connected.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    ready.wait().await;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains(&marker) {
            let _ = done.send(Instant::now()).await;
            break;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, pid, n] = args.as_slice() else {
        eprintln!("usage: sse_scale <host:port> <server-pid> <connections>");
        std::process::exit(2);
    };
    let pid: u32 = pid.parse()?;
    let n: usize = n.parse()?;
    let marker = format!("{MARKER_PREFIX}{}", std::process::id());

    let rss_before = rss_kib(pid);
    let connected = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(Barrier::new(n + 1));
    let (done_tx, mut done_rx) = mpsc::channel(n.max(1));
    let opened = Instant::now();
    for _ in 0..n {
        tokio::spawn(open_stream(
            addr.clone(),
            connected.clone(),
            ready.clone(),
            marker.clone(),
            done_tx.clone(),
        ));
    }
    drop(done_tx);
    ready.wait().await;
    let open_time = opened.elapsed();
    let open = connected.load(Ordering::Relaxed);
    // Let allocator and socket buffers settle before reading the server's memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid);

    let mut publisher = TcpStream::connect(addr).await?;
    let body = format!(r#"{{"task":"{marker}","priority":0}}"#);
    let request = format!(
        "POST /enqueue HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let sent = Instant::now();
    publisher.write_all(request.as_bytes()).await?;

    let mut latencies: Vec<Duration> = Vec::with_capacity(open);
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    while latencies.len() < open {
        tokio::select! {
            got = done_rx.recv() => match got {
                Some(at) => latencies.push(at.saturating_duration_since(sent)),
                None => break,
            },
            () = &mut deadline => break,
        }
    }
    latencies.sort();
    let pct = |p: f64| -> f64 {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let per_conn = (rss_after.saturating_sub(rss_before) as f64 * 1024.0) / open.max(1) as f64;
    println!(
        "{{\"requested\":{n},\"open\":{open},\"openSeconds\":{:.2},\"rssBeforeKiB\":{rss_before},\"rssAfterKiB\":{rss_after},\
\"bytesPerConnection\":{per_conn:.0},\"received\":{},\"fanoutP50Ms\":{:.1},\"fanoutP99Ms\":{:.1},\"fanoutMaxMs\":{:.1}}}",
        open_time.as_secs_f64(),
        latencies.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    Ok(())
}
