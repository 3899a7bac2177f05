//! Shared test harness: start the real server on an ephemeral port and talk HTTP to it ([`api`]
//! for the requests every area sends); run the real binary as a child ([`process`]), a real
//! Redis ([`redis`]), nginx in front of several instances ([`nginx`]), and several instances
//! sharing one Redis ([`cluster`]).

pub mod api;
pub mod cluster;
pub mod faults;
pub mod h2;
pub mod nginx;
pub mod process;
pub mod redis;
pub mod system;

pub use api::{ADMIN, Api, token_of};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use backflow::{Application, Config, Shutdown};
use tokio::task::JoinHandle;

/// A server running inside the test process.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where `/metrics` is served when `METRICS_ADDR` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// A client with no connection reuse surprises: plain HTTP, short timeout.
    pub client: reqwest::Client,
    /// The state directory, kept so a restart can reuse it.
    pub data_dir: PathBuf,
    /// The server's shared state, for tests that act on a component directly.
    pub state: backflow::AppState,
    shutdown: Shutdown,
    handle: JoinHandle<std::io::Result<()>>,
    _data_dir_guard: Option<tempfile::TempDir>,
}

/// Every client of a test comes from a loopback address, often hundreds at once: tests lift
/// `MAX_CONNECTIONS_PER_IP` out of their way unless they set it.
pub const TEST_PER_IP_CAP: (&str, &str) = ("MAX_CONNECTIONS_PER_IP", "1000000");

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
        TEST_PER_IP_CAP,
    ];
    pairs.extend_from_slice(overrides);
    let mut config = Config::from_pairs(pairs).expect("test configuration is valid");
    config.compute.worker_exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_backflow")));
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
    let data_dir = config.store.data_dir.clone();
    serve(
        data_dir,
        Application::build(config).await.expect("server starts"),
    )
}

/// Starts a server with this configuration over `stores`, already open with `metrics` (its
/// data dir is not cleaned up).
pub async fn spawn_with_stores(
    config: Config,
    metrics: backflow::metrics::Metrics,
    stores: backflow::store::Stores,
) -> TestApp {
    let data_dir = config.store.data_dir.clone();
    let app = Application::build_with_stores(config, metrics, stores).await;
    serve(data_dir, app.expect("server starts"))
}

/// Runs `app` in this process.
fn serve(data_dir: PathBuf, app: Application) -> TestApp {
    let state = app.state().clone();
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let shutdown = app.shutdown();
    let handle = tokio::spawn(app.run());
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client");
    TestApp {
        addr,
        metrics_addr,
        client,
        data_dir,
        state,
        shutdown,
        handle,
        _data_dir_guard: None,
    }
}

impl Api for TestApp {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl TestApp {
    /// Triggers the graceful stop and waits for it; returns the data dir and keeps it on disk.
    pub async fn stop(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.shutdown.trigger();
        (&mut self.handle)
            .await
            .expect("server task did not panic")
            .expect("server stopped cleanly");
        (self.data_dir.clone(), self._data_dir_guard.take())
    }
}

/// Longest wait of [`eventually`]: a guard against a hang, not a timing.
pub const EVENTUALLY: std::time::Duration = std::time::Duration::from_secs(10);

/// What a check of [`eventually`] answers: `true`, or a value, once the state is reached.
pub trait Reached {
    /// What [`eventually`] returns.
    type Value;
    /// `Some` once reached.
    fn reached(self) -> Option<Self::Value>;
}

impl Reached for bool {
    type Value = ();
    fn reached(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Reached for Option<T> {
    type Value = T;
    fn reached(self) -> Option<T> {
        self
    }
}

/// Polls `check` every 20 ms until it reports `what` reached (`true`, or `Some(value)`) and
/// returns the value; panics after [`EVENTUALLY`]. For states that other tasks or processes
/// reach in their own time: a sweep, a reconnection, a gauge, a process exit.
pub async fn eventually<R, F, Fut>(what: &str, mut check: F) -> R::Value
where
    R: Reached,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = R>,
{
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        if let Some(value) = check().await.reached() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Longest a [`concurrent_gets`] load may take: a guard against a hang, not a timing.
pub const LOAD_GUARD: std::time::Duration = std::time::Duration::from_secs(30);

/// A bounded load: `clients` tasks at once, each sending `each` requests `GET path` to `server`
/// one after another. Returns the status of every answer, or why a request got none; panics
/// if the whole load takes longer than [`LOAD_GUARD`].
pub async fn concurrent_gets(
    server: &impl Api,
    path: &str,
    clients: usize,
    each: usize,
) -> Vec<Result<u16, String>> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url) = (server.client().clone(), server.url(path));
        tasks.spawn(async move {
            let mut answers = Vec::with_capacity(each);
            for _ in 0..each {
                let answer = client.get(&url).send().await;
                answers.push(
                    answer
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string()),
                );
            }
            answers
        });
    }
    let all = tokio::time::timeout(LOAD_GUARD, tasks.join_all())
        .await
        .unwrap_or_else(|_| panic!("{} requests within {LOAD_GUARD:?}", clients * each));
    all.into_iter().flatten().collect()
}

/// A client whose connections come from `local`, one of this machine's loopback addresses
/// (any of 127.0.0.0/8): a second or third client address for tests of per-client limits.
pub fn client_from(local: std::net::Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(local))
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Value of the first sample of `metric` in a `/metrics` text whose line contains every `label`
/// fragment.
pub fn metric_in(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(metric) && line[metric.len()..].starts_with(['{', ' ']))
        .find(|line| labels.iter().all(|l| line.contains(l)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Publishes `event` on the server's bus; returns its id.
pub async fn publish(state: &backflow::AppState, event: backflow::events::NewEvent) -> u64 {
    state
        .events
        .publish(event)
        .await
        .expect("the event is published")
}

/// The server's live events from now on, straight from its bus.
pub async fn live_events(
    app: &TestApp,
) -> futures_util::stream::BoxStream<'static, backflow::events::Delivery> {
    let subscription = app.state.events.subscribe(None).await;
    subscription.expect("subscribed to the bus").live
}

/// Reads a JSON error body and checks the contract's shape with this `code`; returns it.
pub async fn error_body(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    let body = error_body_of(response, status).await;
    assert_eq!(body["code"], code, "code in {body}");
    body
}

/// Reads a JSON error body of `status` and checks the contract's shape (a code and a message);
/// returns it.
pub async fn error_body_of(response: reqwest::Response, status: u16) -> serde_json::Value {
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
    assert!(
        body["code"].as_str().is_some_and(|c| !c.is_empty()),
        "code in {body}"
    );
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "message in {body}"
    );
    body
}

/// The next application event on `live` whose name starts with `prefix` (5 s at most).
pub async fn next_app_event(
    live: &mut futures_util::stream::BoxStream<'static, backflow::events::Delivery>,
    prefix: &str,
) -> serde_json::Value {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let delivery = tokio::time::timeout_at(deadline, live.next())
            .await
            .unwrap_or_else(|_| panic!("a {prefix} event within 5 s"))
            .expect("bus open");
        if let backflow::events::Delivery::Event(event) = delivery {
            let data: serde_json::Value = serde_json::from_str(&event.data).expect("JSON event");
            if data["event"]
                .as_str()
                .is_some_and(|name| name.starts_with(prefix))
            {
                return data;
            }
        }
    }
}

/// An open Server-Sent Events response, read event by event.
pub struct SseStream {
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    events: futures_util::stream::BoxStream<
        'static,
        Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>,
    >,
}

/// The message that opens every `/notifications` stream.
pub const CONNECTED: &str = r#"{"message":"Connected to notification stream"}"#;

/// Opens `path` (e.g. `/notifications`) on `server` as an event stream, with `Last-Event-ID` if
/// given; panics unless the answer is a 200.
pub async fn open_sse(server: &impl Api, path: &str, last_event_id: Option<&str>) -> SseStream {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;

    let mut request = server.client().get(server.url(path));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.expect("request sent");
    assert_eq!(response.status(), 200, "event stream opened");
    SseStream {
        headers: response.headers().clone(),
        events: response.bytes_stream().eventsource().boxed(),
    }
}

/// Opens `/notifications` on `server` (resuming after `last_event_id` if given) and reads the
/// connected message that opens it.
pub async fn notifications(server: &impl Api, last_event_id: Option<&str>) -> SseStream {
    let mut stream = open_sse(server, "/notifications", last_event_id).await;
    stream.expect_connected().await;
    stream
}

impl SseStream {
    /// The next event, or `None` once the server ended the stream. Waits at most 10 s (a guard
    /// against a hanging test, not a timing assertion).
    pub async fn next(&mut self) -> Option<eventsource_stream::Event> {
        use futures_util::StreamExt;

        let next = tokio::time::timeout(std::time::Duration::from_secs(10), self.events.next())
            .await
            .expect("an event or the end of the stream within 10 s");
        next.map(|event| event.expect("a well-formed event"))
    }

    /// The data of the next event, parsed as JSON.
    pub async fn next_json(&mut self) -> serde_json::Value {
        let event = self.next().await.expect("the stream goes on");
        serde_json::from_str(&event.data).expect("event data is JSON")
    }

    /// Reads the connected message that opens a `/notifications` stream.
    pub async fn expect_connected(&mut self) {
        let event = self.next().await.expect("the connected message");
        assert_eq!(event.data, CONNECTED);
    }

    /// The next `count` events that carry an id, as (id, data), checking that each `id:` line
    /// is the `id` of the event's data. Events without an id (notices) are passed over.
    pub async fn numbered(&mut self, count: usize) -> Vec<(u64, String)> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            let event = self.next().await.expect("the stream goes on");
            let Ok(id) = event.id.parse::<u64>() else {
                continue;
            };
            let data: serde_json::Value = serde_json::from_str(&event.data).expect("JSON data");
            assert_eq!(data["id"], id, "the id line is the data's id: {data}");
            events.push((id, event.data));
        }
        events
    }
}
