//! The floor for load tests: the smallest axum server built from the same dependencies and
//! runtime settings as BackFlow, answering `GET /health` with a fixed JSON body.
//!
//! `benches/load.sh` drives it and BackFlow in the same run, so BackFlow's figures are quoted as
//! a ratio of this one and stay meaningful on a shared, noisy machine.
//!
//! Run: `PORT=3100 cargo run --release --example bare_axum`

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3100);
    let app = Router::new().route(
        "/health",
        get(|| async { Json(serde_json::json!({"status": "ok"})) }),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("bare axum listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
