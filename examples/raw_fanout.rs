//! The machine's floor for SSE fan-out: no framework, no HTTP library, no task per stream.
//!
//! It answers just enough HTTP/1.1 for `benches/sse_scale.sh`: `GET /health`, `GET
//! /notifications` (the event-stream head and the "connected" message, then the socket is
//! kept in a list) and `POST /enqueue`, whose body is written as one SSE event to every kept
//! socket in a single loop of non-blocking `write` calls. A delivery therefore costs one system
//! call and what the kernel does for it (on loopback, the receiving side's TCP work and wake-up
//! too), which is the least any server can spend; BackFlow's and axum's figures are read
//! against it.
//!
//! Run: `PORT=3200 cargo run --release --example raw_fanout`

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head or body read.
const MAX_REQUEST: usize = 16 * 1024;

type Streams = Arc<Mutex<Vec<Arc<TcpStream>>>>;

/// Reads one request; returns the request line and the body (by `Content-Length`).
async fn read_request(socket: &mut TcpStream) -> io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 || buffer.len() + n > MAX_REQUEST {
            return Err(io::ErrorKind::InvalidData.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    if length > MAX_REQUEST {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let mut body = buffer.split_off(head_end);
    while body.len() < length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    Ok((request_line, body))
}

async fn answer(socket: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await
}

/// Writes `frame` to every stream, one `write` call each; a stream whose socket buffer is full
/// or that has gone away misses the event (the probe would report it).
fn publish(streams: &Streams, frame: &[u8]) {
    let streams = streams
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for stream in streams.iter() {
        let _ = stream.try_write(frame);
    }
}

async fn connection(mut socket: TcpStream, streams: Streams) -> io::Result<()> {
    let (request_line, body) = read_request(&mut socket).await?;
    let mut words = request_line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("GET"), Some("/health")) => answer(&mut socket, "200 OK", r#"{"status":"ok"}"#).await,
        (Some("GET"), Some("/notifications")) => {
            socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n\
                      data: {\"message\":\"Connected to notification stream\"}\n\n",
                )
                .await?;
            socket.set_nodelay(true)?;
            streams
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(Arc::new(socket));
            Ok(())
        }
        (Some("POST"), Some("/enqueue")) => {
            let mut frame = b"data: ".to_vec();
            frame.extend(body.iter().filter(|&&b| b != b'\n' && b != b'\r'));
            frame.extend_from_slice(b"\n\n");
            publish(&streams, &frame);
            answer(&mut socket, "200 OK", "{}").await
        }
        _ => answer(&mut socket, "404 Not Found", r#"{"error":"not_found"}"#).await,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3200);
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("raw fan-out listening on {}", listener.local_addr()?);
    let streams: Streams = Arc::default();
    loop {
        let (socket, _) = listener.accept().await?;
        tokio::spawn(connection(socket, streams.clone()));
    }
}
