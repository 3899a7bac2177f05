//! CPU-heavy work: `/heavy-task-child`, `/heavy-task-worker` and the opt-in blocking demo.
//!
//! Jobs that must still be running when the test looks use an `n` that takes minutes in a debug
//! build (44 and up); they end by timeout, by a dropped client or when the test's server stops.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    Api, TestApp, error_body, eventually, spawn_app, spawn_app_with, spawn_config, test_config,
};

/// The sample of `name` for `method`; an absent one reads as -1, which matches no expected count.
async fn metric(app: &TestApp, name: &str, method: &str) -> f64 {
    let label = format!("method=\"{method}\"");
    app.metric_value(name, &[&label]).await.unwrap_or(-1.0)
}

async fn ok_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON body")
}

/// Starts a server whose child workers are `exe` and whose jobs time out after `timeout`.
async fn spawn_with(
    exe: Option<PathBuf>,
    timeout: Option<Duration>,
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path(), &[]);
    if exe.is_some() {
        config.compute.worker_exe = exe;
    }
    if let Some(timeout) = timeout {
        config.compute.timeout = timeout;
    }
    (spawn_config(config).await, dir)
}

fn assert_duration(body: &Value) {
    let duration = body["duration"].as_str().expect("duration string");
    let millis = duration.strip_suffix("ms").expect("ends in ms");
    assert!(millis.parse::<u64>().is_ok(), "{duration}");
}

#[tokio::test]
async fn child_computes_fibonacci_in_another_process() {
    let app = spawn_app().await;
    for (n, expected) in [(0u64, 0u64), (1, 1), (30, 832_040)] {
        let body = ok_json(&app, &format!("/heavy-task-child?n={n}")).await;
        assert_eq!(body["method"], "child_process");
        assert_eq!(body["input"], n);
        assert_eq!(body["result"], expected);
        assert_duration(&body);
        let pid = body["processId"].as_u64().expect("processId");
        assert!(pid > 0);
        assert_ne!(pid, u64::from(std::process::id()), "not the server's pid");
        assert!(body.get("threadId").is_none());
    }
    assert_eq!(
        metric(&app, "heavy_tasks_completed_total", "child_process").await,
        3.0
    );
}

#[tokio::test]
async fn worker_computes_on_the_chosen_pool() {
    let app = spawn_app().await;
    for (n, expected) in [(0u64, 0u64), (1, 1), (30, 832_040)] {
        let rayon = ok_json(&app, &format!("/heavy-task-worker?n={n}&pool=rayon")).await;
        assert_eq!(rayon["method"], "rayon");
        assert_eq!(rayon["input"], n);
        assert_eq!(rayon["result"], expected);
        assert_duration(&rayon);
        let thread = rayon["threadId"].as_str().expect("threadId");
        assert!(thread.starts_with("backflow-fib-"), "{thread}");
        assert!(rayon.get("processId").is_none());

        let blocking = ok_json(&app, &format!("/heavy-task-worker?n={n}&pool=blocking")).await;
        assert_eq!(blocking["method"], "spawn_blocking");
        assert_eq!(blocking["result"], expected);
        let thread = blocking["threadId"].as_str().expect("threadId");
        assert!(thread.starts_with("ThreadId("), "{thread}");
    }
}

#[tokio::test]
async fn default_pool_comes_from_configuration_and_default_n_is_40() {
    let app = spawn_app_with(&[("HEAVY_POOL", "blocking")]).await;
    let body = ok_json(&app, "/heavy-task-worker?n=25").await;
    assert_eq!(body["method"], "spawn_blocking");
    assert_eq!(body["result"], 75_025);

    let app = spawn_app().await;
    let body = ok_json(&app, "/heavy-task-worker").await;
    assert_eq!(body["method"], "rayon");
    assert_eq!(body["input"], 40);
    assert_eq!(body["result"], 102_334_155u64);
}

#[tokio::test]
async fn invalid_n_is_rejected_stating_the_max() {
    let app = spawn_app().await;
    for (route, max) in [("/heavy-task-child", 45), ("/heavy-task-worker", 50)] {
        for bad in ["abc", "-1", "1.5", "", "1e3", &(max + 1).to_string()] {
            let response = app.get(&format!("{route}?n={bad}")).await;
            let body = error_body(response, 400, "invalid_input").await;
            assert_eq!(body["field"], "n", "{route}?n={bad}");
            let message = body["error"].as_str().expect("message");
            assert!(
                message.contains(&format!("between 0 and {max}")),
                "{message}"
            );
        }
    }
}

#[tokio::test]
async fn unknown_pool_is_rejected() {
    let app = spawn_app().await;
    let response = app.get("/heavy-task-worker?n=10&pool=gpu").await;
    let body = error_body(response, 400, "invalid_input").await;
    assert_eq!(body["field"], "pool");
    let message = body["error"].as_str().expect("message");
    assert!(message.contains("rayon, blocking"), "{message}");
}

#[tokio::test]
async fn saturated_pool_refuses_with_503_while_health_still_answers() {
    let app = spawn_app_with(&[("HEAVY_WORKER_THREADS", "1"), ("HEAVY_MAX_INFLIGHT", "2")]).await;
    let running = tokio::spawn(
        app.client
            .get(app.url("/heavy-task-worker?n=50&pool=rayon"))
            .send(),
    );
    eventually("the first job runs", || async {
        metric(&app, "heavy_tasks_running", "rayon").await == 1.0
    })
    .await;
    let waiting = tokio::spawn(app.client.get(app.url("/heavy-task-child?n=43")).send());
    eventually("the second job waits", || async {
        metric(&app, "heavy_tasks_waiting", "child_process").await == 1.0
    })
    .await;

    for path in [
        "/heavy-task-worker?n=1&pool=blocking",
        "/heavy-task-child?n=1",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.headers()["retry-after"], "1", "{path}");
        error_body(response, 503, "busy").await;
    }
    let health = app.get("/health").await;
    assert_eq!(health.status(), 200);

    // The health answer came while both jobs were still in flight.
    assert!(!running.is_finished() && !waiting.is_finished());
    assert_eq!(metric(&app, "heavy_tasks_running", "rayon").await, 1.0);
    assert_eq!(
        metric(&app, "heavy_tasks_waiting", "child_process").await,
        1.0
    );
    assert_eq!(
        app.metric_value("heavy_tasks_rejected_total", &[]).await,
        Some(2.0)
    );
}

#[tokio::test]
async fn admission_is_released_after_each_job() {
    let app = spawn_app_with(&[("HEAVY_MAX_INFLIGHT", "1")]).await;
    for path in [
        "/heavy-task-child?n=20",
        "/heavy-task-worker?n=20&pool=rayon",
        "/heavy-task-worker?n=20&pool=blocking",
        "/heavy-task-child?n=21",
    ] {
        ok_json(&app, path).await;
    }
    let response = app.get("/heavy-task-worker?n=abc").await;
    error_body(response, 400, "invalid_input").await;
    ok_json(&app, "/heavy-task-worker?n=2").await;
}

#[tokio::test]
async fn pool_job_past_its_deadline_is_a_504_and_is_cancelled() {
    let (app, _dir) = spawn_with(None, Some(Duration::from_millis(300))).await;
    for (pool, method) in [("rayon", "rayon"), ("blocking", "spawn_blocking")] {
        let response = app
            .get(&format!("/heavy-task-worker?n=50&pool={pool}"))
            .await;
        let body = error_body(response, 504, "timeout").await;
        assert_eq!(body["error"], "Request timeout");
        eventually("the job stops", || async {
            metric(&app, "heavy_tasks_cancelled_total", method).await == 1.0
        })
        .await;
        assert_eq!(metric(&app, "heavy_tasks_running", method).await, 0.0);
        assert_eq!(
            metric(&app, "heavy_tasks_timed_out_total", method).await,
            1.0
        );
    }
}

#[tokio::test]
async fn dropped_client_cancels_the_pool_job() {
    let app = spawn_app().await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let sent = impatient
        .get(app.url("/heavy-task-worker?n=50&pool=blocking"))
        .send()
        .await;
    assert!(sent.expect_err("gave up").is_timeout());
    eventually("the job stops", || async {
        metric(&app, "heavy_tasks_cancelled_total", "spawn_blocking").await == 1.0
    })
    .await;
    assert_eq!(
        metric(&app, "heavy_tasks_running", "spawn_blocking").await,
        0.0
    );
    assert_eq!(
        metric(&app, "heavy_tasks_timed_out_total", "spawn_blocking").await,
        0.0
    );
}

#[cfg(unix)]
#[tokio::test]
async fn failed_child_is_a_500_worker_failed() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let crash = scripts.path().join("crash.sh");
    std::fs::write(&crash, "#!/bin/sh\nkill -SEGV $$\n").expect("script written");
    make_executable(&crash);
    let babble = scripts.path().join("babble.sh");
    std::fs::write(&babble, "#!/bin/sh\nexec yes '{\"n\":30,\"result\":1}'\n")
        .expect("script written");
    make_executable(&babble);

    for exe in [
        PathBuf::from("/bin/false"),    // non-zero exit, no output
        PathBuf::from("/bin/echo"),     // prints its arguments: garbage
        crash,                          // killed by a signal
        babble,                         // endless output
        scripts.path().join("missing"), // cannot start
    ] {
        let (app, _dir) = spawn_with(Some(exe.clone()), None).await;
        let response = app.get("/heavy-task-child?n=30").await;
        let body = error_body(response, 500, "worker_failed").await;
        // The fixed public sentence: no cause, path or output of the worker reaches the client.
        assert_eq!(
            body["error"], "The worker failed to compute the result",
            "{exe:?}"
        );
        assert_eq!(
            metric(&app, "heavy_tasks_running", "child_process").await,
            0.0
        );
    }
}

#[cfg(unix)]
fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[tokio::test]
async fn blocking_demo_is_off_by_default() {
    let app = spawn_app().await;
    error_body(app.get("/heavy-task-blocking?n=10").await, 404, "not_found").await;
}

#[tokio::test]
async fn blocking_demo_computes_on_the_runtime_when_enabled() {
    let app = spawn_app_with(&[("ENABLE_BLOCKING_DEMO", "true")]).await;
    let body = ok_json(&app, "/heavy-task-blocking?n=20").await;
    assert_eq!(body["method"], "async_runtime_blocking");
    assert_eq!(body["result"], 6765);
    assert!(body["threadId"].is_string());
    let body = error_body(
        app.get("/heavy-task-blocking?n=51").await,
        400,
        "invalid_input",
    )
    .await;
    assert!(body["error"].as_str().expect("message").contains("50"));
}

/// Children of this process (where the test servers run) started as `fib-worker <n>`.
#[cfg(target_os = "linux")]
mod processes {
    use std::fs;

    pub fn worker_children(n: u32) -> Vec<u32> {
        let me = std::process::id();
        let wanted = format!("fib-worker\0{n}\0");
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| parent_of(*pid) == Some(me))
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.ends_with(wanted.as_bytes()))
            })
            .collect()
    }

    /// The parent pid from `/proc/<pid>/stat` (the field after the parenthesised name).
    fn parent_of(pid: u32) -> Option<u32> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 1..];
        after_name.split_whitespace().nth(1)?.parse().ok()
    }

    /// Whether `pid` still exists, zombie included (a zombie keeps its `/proc` entry).
    pub fn exists(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }
}

#[cfg(target_os = "linux")]
async fn running_child(n: u32) -> u32 {
    let mut found = Vec::new();
    eventually("the worker process runs", || {
        found = processes::worker_children(n);
        std::future::ready(found.len() == 1)
    })
    .await;
    found[0]
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn child_past_its_deadline_is_killed_and_reaped() {
    let (app, _dir) = spawn_with(None, Some(Duration::from_secs(1))).await;
    let request = tokio::spawn(app.client.get(app.url("/heavy-task-child?n=45")).send());
    let pid = running_child(45).await;

    let response = request.await.expect("task").expect("answered");
    let body = error_body(response, 504, "timeout").await;
    assert_eq!(body["error"], "Request timeout");
    assert_child_reaped_and_counted_cancelled(&app, pid).await;
    assert_eq!(
        metric(&app, "heavy_tasks_running", "child_process").await,
        0.0
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn dropped_client_kills_the_child() {
    let app = spawn_app().await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let request = tokio::spawn(impatient.get(app.url("/heavy-task-child?n=44")).send());
    let pid = running_child(44).await;

    let sent = request.await.expect("task");
    assert!(sent.expect_err("gave up").is_timeout());
    assert_child_reaped_and_counted_cancelled(&app, pid).await;
    assert_eq!(
        metric(&app, "heavy_tasks_timed_out_total", "child_process").await,
        0.0
    );
}

/// The child `pid` disappears (killed and reaped, not a zombie) and one cancellation is counted.
#[cfg(target_os = "linux")]
async fn assert_child_reaped_and_counted_cancelled(app: &TestApp, pid: u32) {
    eventually("the worker is gone, not even a zombie", || {
        std::future::ready(!processes::exists(pid))
    })
    .await;
    assert_eq!(
        metric(app, "heavy_tasks_cancelled_total", "child_process").await,
        1.0
    );
}
