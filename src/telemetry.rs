//! Logs and runtime health: the tracing subscriber and the async-runtime lag probe.
//!
//! Logs are human-readable by default (coloured only when written to a terminal) and one JSON
//! object per line with `LOG_FORMAT=json`; `RUST_LOG` filters them. The lag probe is the Rust counterpart of Node's event-loop delay: a task that
//! asks to wake at a fixed period and records how late it actually woke. When something blocks a
//! runtime thread, every task on it wakes late, and this figure shows it in `/metrics`.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{ConfigError, LogFormat};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Filter used when `RUST_LOG` is unset.
const DEFAULT_FILTER: &str = "backflow=info";

/// How often the lag probe asks to wake.
pub const LAG_PROBE_PERIOD: Duration = Duration::from_millis(100);

/// Installs the global log subscriber. Call once, from `main`.
pub fn init(format: LogFormat) -> Result<(), ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(&spec).map_err(|err| ConfigError {
                var: "RUST_LOG",
                message: format!("{spec:?} is not a valid filter: {err}"),
            })?
        }
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        // Colours only for a terminal: a log redirected to a file or a collector stays plain.
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
    };
    // Only fails when a subscriber is already installed, which is harmless.
    drop(result);
    Ok(())
}

/// Measures how late the runtime wakes a task, until shutdown; also runs metric upkeep.
pub async fn run_lag_probe(metrics: Metrics, shutdown: Shutdown) {
    let lag_last = metrics.gauge("runtime_lag_seconds", &[]);
    let lag_hist = metrics.histogram("runtime_lag_distribution_seconds", &[]);
    let mut ticker = tokio::time::interval(LAG_PROBE_PERIOD);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        let expected = tokio::select! {
            expected = ticker.tick() => expected,
            () = shutdown.wait() => return,
        };
        let lag = Instant::now().saturating_duration_since(expected);
        lag_last.set(lag.as_secs_f64());
        lag_hist.record(lag.as_secs_f64());
        ticks += 1;
        if ticks.is_multiple_of(50) {
            metrics.run_upkeep();
        }
    }
}
