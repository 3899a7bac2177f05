//! Prometheus metrics owned by one server instance.
//!
//! The recorder is not installed globally: each [`Metrics`] holds its own, so several servers in
//! one process (as in the test suite) never mix their figures. Request counters and latency
//! histograms are recorded by middleware; gauges that mirror a store's size are set from the store
//! itself when `/metrics` is scraped, so they can never drift from the truth.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Latency buckets in seconds: 100 µs to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// A cheap-to-clone handle to this server's metric registry.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry; histograms whose name ends in `_seconds` get latency buckets.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("the bucket list is a non-empty constant")
            .build_recorder();
        let handle = recorder.handle();
        Self {
            recorder: Arc::new(recorder),
            handle,
        }
    }

    /// The counter `name` with these labels, created on first use.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    /// The gauge `name` with these labels, created on first use.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    /// The histogram `name` with these labels, created on first use.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// Records one answered HTTP request.
    pub fn record_request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let status = status.to_string();
        let labels = [
            ("method", method),
            ("route", route),
            ("status", status.as_str()),
        ];
        self.counter("http_requests_total", &labels).increment(1);
        self.histogram("http_request_duration_seconds", &labels)
            .record(latency.as_secs_f64());
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram buffers; run periodically so memory stays flat between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect();
    Key::from_parts(name, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_registries_do_not_share_figures() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.counter("things_total", &[("kind", "x")]).increment(3);
        assert!(a.render().contains(r#"things_total{kind="x"} 3"#));
        assert!(!b.render().contains("things_total"));
    }

    #[test]
    fn requests_are_counted_with_route_and_status() {
        let m = Metrics::new();
        m.record_request("GET", "/health", 200, Duration::from_millis(2));
        let text = m.render();
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="/health",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("http_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
