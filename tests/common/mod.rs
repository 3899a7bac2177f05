//! Shared test harness: start the real server on an ephemeral port and talk HTTP to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use backflow::{Application, Config, Shutdown};
use tokio::task::JoinHandle;

/// A server running inside the test process.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// A client with no connection reuse surprises: plain HTTP, short timeout.
    pub client: reqwest::Client,
    /// The state directory, kept so a restart can reuse it.
    pub data_dir: PathBuf,
    shutdown: Shutdown,
    handle: JoinHandle<std::io::Result<()>>,
    _data_dir_guard: Option<tempfile::TempDir>,
}

/// Configuration used by every test: loopback, port 0, fast intervals, a private data dir.
pub fn test_config(data_dir: &Path, overrides: &[(&str, &str)]) -> Config {
    let data_dir = data_dir.to_str().expect("temp dir path is UTF-8");
    let mut pairs: Vec<(&str, &str)> = vec![
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("JWT_SECRET", "test-secret-that-is-long-enough-for-hs256!"),
        ("DATA_DIR", data_dir),
        ("NOTIFY_INTERVAL_MS", "50"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "5"),
    ];
    pairs.extend_from_slice(overrides);
    let mut config = Config::from_pairs(pairs).expect("test configuration is valid");
    config.worker_exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_backflow")));
    config
}

/// Starts a server with the test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts a server with the test configuration plus `overrides` (variable, value).
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(dir.path(), overrides);
    let mut app = spawn_config(config).await;
    app.data_dir = dir.path().to_path_buf();
    app._data_dir_guard = Some(dir);
    app
}

/// Starts a server with exactly this configuration (its data dir is not cleaned up).
pub async fn spawn_config(config: Config) -> TestApp {
    let data_dir = config.data_dir.clone();
    let app = Application::build(config).await.expect("server starts");
    let addr = app.local_addr();
    let shutdown = app.shutdown();
    let handle = tokio::spawn(app.run());
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client");
    TestApp {
        addr,
        client,
        data_dir,
        shutdown,
        handle,
        _data_dir_guard: None,
    }
}

impl TestApp {
    /// Absolute URL of `path_and_query` on this server.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .text()
            .await
            .expect("metrics body")
    }

    /// Value of the first sample of `metric` whose line contains every `label` fragment.
    pub async fn metric_value(&self, metric: &str, labels: &[&str]) -> Option<f64> {
        let text = self.metrics().await;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|line| line.starts_with(metric) && line[metric.len()..].starts_with(['{', ' ']))
            .find(|line| labels.iter().all(|l| line.contains(l)))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Triggers the graceful stop and waits for it; returns the data dir and keeps it on disk.
    pub async fn stop(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.shutdown.trigger();
        (&mut self.handle)
            .await
            .expect("server task did not panic")
            .expect("server stopped cleanly");
        (self.data_dir.clone(), self._data_dir_guard.take())
    }

    /// The stop signal, to trigger a stop without waiting.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }
}

/// Reads a JSON error body and checks the contract's shape; returns it.
pub async fn error_body(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "JSON error, got {content_type}"
    );
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert_eq!(body["code"], code, "code in {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "message in {body}"
    );
    body
}
