//! `/metrics` on a listener of its own (`METRICS_ADDR`), so the public port need not expose it.
//!
//! Scrapers are few and trusted: each connection is served by hyper's HTTP/1.1 server with the
//! request-head deadline, and the stop waits for the scrape in progress.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// Longest wait for a request head, and for the scrapes in progress at the stop.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (out of descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves `router` (the metrics route) on `listener` until the stop signal.
pub(super) async fn serve(listener: TcpListener, router: Router, shutdown: Shutdown) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(SCRAPE_DEADLINE);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::debug!(error = %err, "metrics listener: accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "metrics connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SCRAPE_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("a metrics scrape was still running at the stop");
    }
}
