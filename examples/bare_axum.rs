//! The floor for load tests: the smallest axum server built from the same dependencies and
//! runtime settings as BackFlow.
//!
//! - `GET /health` answers a fixed JSON body (the floor of `benches/load.sh`);
//! - `GET /notifications` is a plain axum `Sse` stream fed by a tokio broadcast channel, and
//!   `POST /enqueue` sends its body to every stream (the floor of `benches/sse_scale.sh`, which
//!   opens the streams and publishes through these two routes, as it does on BackFlow).
//!
//! The scripts drive this server and BackFlow in the same run, so BackFlow's figures are quoted
//! next to this one's and stay meaningful on a shared, noisy machine.
//!
//! Run: `PORT=3100 cargo run --release --example bare_axum`
#![expect(
    clippy::disallowed_methods,
    reason = "the floor is a bare axum server, not BackFlow: its routes are not documented"
)]

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// The same allocator as BackFlow's binary, so the floor differs from it only by the code.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Messages a stream may fall behind by, as on BackFlow.
const LIVE_BUFFER: usize = 1024;

async fn notifications(
    State(sender): State<broadcast::Sender<String>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let connected = stream::once(async {
        Event::default().data(r#"{"message":"Connected to notification stream"}"#)
    });
    let live = BroadcastStream::new(sender.subscribe())
        .filter_map(|message| async move { message.ok() })
        .map(|data| Event::default().data(data));
    Sse::new(connected.chain(live).map(Ok)).keep_alive(KeepAlive::default())
}

async fn enqueue(State(sender): State<broadcast::Sender<String>>, body: String) {
    // An error only means no stream is open.
    let _ = sender.send(body);
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3100);
    let (sender, _) = broadcast::channel::<String>(LIVE_BUFFER);
    let app = Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/notifications", get(notifications))
        .route("/enqueue", post(enqueue))
        .with_state(sender);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("bare axum listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
