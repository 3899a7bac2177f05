//! Prometheus metrics owned by one server instance.
//!
//! The recorder is not installed globally: each [`Metrics`] holds its own, so several servers in
//! one process (as in the test suite) never mix their figures. Request counters and latency
//! histograms are recorded by middleware; gauges that mirror a store's size are set from the store
//! itself when `/metrics` is scraped, so they can never drift from the truth.
//!
//! Recording a request is on the path of every request, so the counter and histogram of each
//! (method, route, status) are registered once and kept: later requests find them by reference,
//! without building a metric key (a vector and four strings) or hashing it in the registry.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
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

/// Buckets for histograms of batch sizes (writes per commit): powers of two up to the largest
/// batch.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// A cheap-to-clone handle to this server's metric registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Registry>,
}

struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Request series already registered, by route.
    requests: RwLock<HashMap<Box<str>, Vec<RequestSeries>>>,
    /// Run before each render: see [`Metrics::refresh_on_render`].
    refreshers: RwLock<Vec<Box<dyn Fn() + Send + Sync>>>,
}

/// The two metrics of one (method, route, status).
struct RequestSeries {
    method: Box<str>,
    status: u16,
    count: Counter,
    duration: Histogram,
}

impl RequestSeries {
    fn is(&self, method: &str, status: u16) -> bool {
        self.status == status && *self.method == *method
    }

    fn record(&self, latency: Duration) {
        self.count.increment(1);
        self.duration.record(latency.as_secs_f64());
    }
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
    /// A fresh registry; histograms whose name ends in `_seconds` get latency buckets, those
    /// ending in `_batch_size` batch buckets.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS)
            })
            .expect("the bucket lists are non-empty constants")
            .build_recorder();
        let handle = recorder.handle();
        Self {
            inner: Arc::new(Registry {
                recorder,
                handle,
                requests: RwLock::default(),
                refreshers: RwLock::default(),
            }),
        }
    }

    /// The counter `name` with these labels, created on first use.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.inner
            .recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    /// The gauge `name` with these labels, created on first use.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.inner
            .recorder
            .register_gauge(&key(name, labels), &METADATA)
    }

    /// The histogram `name` with these labels, created on first use.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.inner
            .recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// Records one answered HTTP request. `method` and `route` must come from bounded sets
    /// (known methods, matched route templates): each new combination is kept for good.
    pub fn record_request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        {
            let requests = self
                .inner
                .requests
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let known = requests
                .get(route)
                .and_then(|series| series.iter().find(|s| s.is(method, status)));
            if let Some(series) = known {
                series.record(latency);
                return;
            }
        }
        let mut requests = self
            .inner
            .requests
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let series = requests.entry(route.into()).or_default();
        // Another request may have registered it between the two locks.
        if let Some(known) = series.iter().find(|s| s.is(method, status)) {
            known.record(latency);
            return;
        }
        let status_text = itoa::Buffer::new().format(status).to_owned();
        let labels = [
            ("method", method),
            ("route", route),
            ("status", status_text.as_str()),
        ];
        let new = RequestSeries {
            method: method.into(),
            status,
            count: self.counter("http_requests_total", &labels),
            duration: self.histogram("http_request_duration_seconds", &labels),
        };
        new.record(latency);
        series.push(new);
    }

    /// Runs `refresh` before every render: for gauges that mirror state kept elsewhere and are
    /// worth computing only when someone reads them (open connections by state).
    pub fn refresh_on_render(&self, refresh: impl Fn() + Send + Sync + 'static) {
        self.inner
            .refreshers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(refresh));
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        for refresh in self
            .inner
            .refreshers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            refresh();
        }
        self.inner.handle.render()
    }

    /// Drains histogram buffers; run periodically so memory stays flat between scrapes.
    pub fn run_upkeep(&self) {
        self.inner.handle.run_upkeep();
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

    #[test]
    fn repeated_requests_add_to_their_own_series() {
        let m = Metrics::new();
        for (method, route, status) in [
            ("GET", "/health", 200),
            ("GET", "/health", 200),
            ("POST", "/health", 405),
            ("GET", "/queue/status", 200),
            ("GET", "/health", 200),
        ] {
            m.record_request(method, route, status, Duration::from_millis(1));
        }
        let text = m.render();
        for expected in [
            r#"http_requests_total{method="GET",route="/health",status="200"} 3"#,
            r#"http_requests_total{method="POST",route="/health",status="405"} 1"#,
            r#"http_requests_total{method="GET",route="/queue/status",status="200"} 1"#,
            r#"http_request_duration_seconds_count{method="GET",route="/health",status="200"} 3"#,
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }
}
