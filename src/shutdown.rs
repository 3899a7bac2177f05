//! The stop signal every long-lived part of the server listens to.
//!
//! One [`Shutdown`] is created per server and cloned into every task that must end when the
//! server stops: the HTTP listener, each event stream, background producers. Triggering it (on
//! SIGINT/SIGTERM, or from a test) is idempotent; waiting on it is cheap and cancel-safe, so it
//! fits in a `tokio::select!` next to the task's real work.

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A cheap-to-clone handle to the server's stop signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A new, untriggered signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every listener to stop. Calling it again does nothing.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the stop was asked for.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once the stop is asked for (at once if it already was).
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// Like [`Shutdown::wait`], as a `'static` future (for `with_graceful_shutdown`, streams).
    pub fn wait_owned(&self) -> WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn os_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let shutdown = Shutdown::new();
        let listener = shutdown.clone();
        assert!(!listener.is_triggered());
        shutdown.trigger();
        shutdown.trigger();
        listener.wait().await;
        assert!(listener.is_triggered());
        shutdown.wait_owned().await;
    }
}
