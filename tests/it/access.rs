//! Access control over real HTTP: the route groups `PROTECTED_ROUTES` puts behind a token, the
//! scopes of `AUTH_USERS` and their 403, `DEQUEUE_ON_GET`, argon2id secrets and
//! `backflow hash-password`, and what production refuses at start-up.

use std::process::Stdio;

use backflow::auth::password::{HashParams, hash_password};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::common::process::{ServerProcess, refused_start};
use crate::common::{Api, TestApp, error_body, spawn_app_with, token_of};

/// The cheapest costs argon2 accepts, so that the tests stay fast.
pub const CHEAP: HashParams = HashParams::CHEAPEST;

/// A production secret that appears in none of the project's files.
pub const PRODUCTION_SECRET: &str = "access-tests-production-secret-0123456789";

/// `AUTH_USERS` of three hashed users: `producer` (enqueue), `worker` (consume) and `ops`
/// (every scope), each with the password `<name>-pw`.
pub fn hashed_users() -> String {
    let entry = |name: &str, scopes: &str| {
        let hash = hash_password(&format!("{name}-pw"), CHEAP).expect("hashed");
        format!("{name}:{hash}{scopes}")
    };
    [
        entry("producer", ":enqueue"),
        entry("worker", ":consume"),
        entry("ops", ""),
    ]
    .join(",")
}

/// A server in production mode with [`hashed_users`], plus `overrides`.
async fn production(overrides: &[(&str, &str)]) -> TestApp {
    let users = hashed_users();
    let mut pairs = vec![
        ("APP_ENV", "production"),
        ("JWT_SECRET", PRODUCTION_SECRET),
        ("AUTH_USERS", users.as_str()),
    ];
    pairs.extend_from_slice(overrides);
    spawn_app_with(&pairs).await
}

/// A token of `name` (password `<name>-pw`).
async fn token(app: &impl Api, name: &str) -> String {
    let response = app.login(name, &format!("{name}-pw")).await;
    assert_eq!(response.status(), 200, "{name} logs in");
    token_of(&response.json().await.expect("a JSON body"))
}

/// `method path` with an optional bearer token and JSON body.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request sent")
}

/// Checks a `403 insufficient_scope` naming `scope`, in the body and the RFC 6750 challenge.
async fn assert_lacks_scope(response: reqwest::Response, scope: &str) {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .expect("a challenge")
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert_eq!(
        challenge,
        format!(r#"Bearer realm="backflow", error="insufficient_scope", scope="{scope}""#)
    );
    let body = error_body(response, 403, "insufficient_scope").await;
    assert!(body["error"].as_str().expect("a message").contains(scope));
}

async fn assert_token_required(response: reqwest::Response) {
    let challenge = response.headers().get("www-authenticate").cloned();
    assert_eq!(
        challenge.as_ref().and_then(|v| v.to_str().ok()),
        Some(r#"Bearer realm="backflow""#)
    );
    let body = error_body(response, 401, "token_required").await;
    assert_eq!(body["error"], "Access token required");
}

#[tokio::test]
async fn production_puts_the_queue_behind_the_enqueue_and_consume_scopes() {
    let app = production(&[]).await;
    let (producer, worker) = (token(&app, "producer").await, token(&app, "worker").await);
    let task = json!({"task": "resize", "priority": 1});

    assert_token_required(call(&app, Method::POST, "/enqueue", None, Some(task.clone())).await)
        .await;
    let refused = call(
        &app,
        Method::POST,
        "/enqueue",
        Some(&worker),
        Some(task.clone()),
    )
    .await;
    assert_lacks_scope(refused, "enqueue").await;
    let enqueued = call(&app, Method::POST, "/enqueue", Some(&producer), Some(task)).await;
    assert_eq!(enqueued.status(), 200);

    let refused = call(&app, Method::POST, "/dequeue", Some(&producer), None).await;
    assert_lacks_scope(refused, "consume").await;
    let lease = Some(json!({"count": 1}));
    let refused = call(
        &app,
        Method::POST,
        "/tasks/lease",
        Some(&producer),
        lease.clone(),
    )
    .await;
    assert_lacks_scope(refused, "consume").await;
    assert_token_required(call(&app, Method::GET, "/queue/dead", None, None).await).await;
    let refused = call(&app, Method::GET, "/queue/dead", Some(&producer), None).await;
    assert_lacks_scope(refused, "consume").await;

    let leased = call(&app, Method::POST, "/tasks/lease", Some(&worker), lease).await;
    assert_eq!(leased.status(), 200);
    let leased: Value = leased.json().await.expect("a JSON body");
    let delivery = &leased["tasks"][0];
    let id = delivery["id"].as_str().expect("an id");
    let ack = Some(json!({"leaseId": delivery["leaseId"]}));
    let path = format!("/tasks/{id}/ack");
    let refused = call(&app, Method::POST, &path, Some(&producer), ack.clone()).await;
    assert_lacks_scope(refused, "consume").await;
    let acked = call(&app, Method::POST, &path, Some(&worker), ack).await;
    assert_eq!(acked.status(), 200);

    // The status needs a token, any scope; the light routes need none.
    assert_token_required(call(&app, Method::GET, "/queue/status", None, None).await).await;
    let status = call(&app, Method::GET, "/queue/status", Some(&producer), None).await;
    assert_eq!(status.status(), 200);
    for open in ["/health", "/stream?totalItems=1&delay=0", "/openapi.json"] {
        assert_eq!(app.get(open).await.status(), 200, "{open}");
    }
}

#[tokio::test]
async fn production_puts_the_heavy_routes_behind_the_compute_scope() {
    let app = production(&[]).await;
    let path = "/heavy-task-worker?n=1";
    assert_token_required(call(&app, Method::GET, path, None, None).await).await;
    let worker = token(&app, "worker").await;
    let refused = call(&app, Method::GET, path, Some(&worker), None).await;
    assert_lacks_scope(refused, "compute").await;
    let ops = token(&app, "ops").await;
    let computed = call(&app, Method::GET, path, Some(&ops), None).await;
    assert_eq!(computed.status(), 200);
    let body: Value = computed.json().await.expect("a JSON body");
    assert_eq!(body["result"], 1);
    let claims: Value = app.protected(&ops).await.json().await.expect("a JSON body");
    assert_eq!(claims["user"]["scope"], "enqueue consume compute");
    assert_eq!(claims["user"]["iss"], "backflow");
    assert_eq!(claims["user"]["aud"], "backflow");
}

#[tokio::test]
async fn get_dequeue_is_refused_in_production_with_allow_post() {
    let app = production(&[]).await;
    let worker = token(&app, "worker").await;
    for token in [None, Some(worker.as_str())] {
        let response = call(&app, Method::GET, "/dequeue", token, None).await;
        assert_eq!(
            response.headers().get("allow").map(|v| v.as_bytes()),
            Some(&b"POST"[..])
        );
        error_body(response, 405, "method_not_allowed").await;
    }
    let response = call(&app, Method::POST, "/dequeue", Some(&worker), None).await;
    error_body(response, 404, "queue_empty").await;

    let document: Value = app.get("/openapi.json").await.json().await.expect("JSON");
    let dequeue = &document["paths"]["/dequeue"];
    assert!(dequeue.get("get").is_none(), "{dequeue}");
    assert_eq!(
        dequeue["post"]["security"],
        json!([{"bearerAuth": ["consume"]}])
    );
    assert!(dequeue["post"]["responses"]["403"].is_object());
    let enqueue = &document["paths"]["/enqueue"]["post"];
    assert_eq!(enqueue["security"], json!([{"bearerAuth": ["enqueue"]}]));
    assert!(enqueue["responses"]["401"].is_object());
    assert!(
        document["paths"]["/stream"]["get"]
            .get("security")
            .is_none()
    );
}

#[tokio::test]
async fn development_keeps_every_original_route_open() {
    let app = spawn_app_with(&[]).await;
    app.enqueued("original", 1).await;
    assert_eq!(app.dequeue().await.status(), 200, "GET /dequeue as before");
    let heavy = app.get("/heavy-task-worker?n=1").await;
    assert_eq!(heavy.status(), 200);
    let document: Value = app.get("/openapi.json").await.json().await.expect("JSON");
    assert!(document["paths"]["/dequeue"]["get"].is_object());
    let enqueue = &document["paths"]["/enqueue"]["post"];
    assert!(enqueue.get("security").is_none(), "{enqueue}");
    assert!(enqueue["responses"].get("403").is_none());
}

#[tokio::test]
async fn protected_routes_can_also_name_the_streams() {
    let app = spawn_app_with(&[
        ("PROTECTED_ROUTES", "stream,notifications"),
        ("DEQUEUE_ON_GET", "false"),
    ])
    .await;
    assert_token_required(app.get("/stream?totalItems=1").await).await;
    assert_token_required(app.get("/notifications").await).await;
    let token = app.token().await;
    let streamed = call(
        &app,
        Method::GET,
        "/stream?totalItems=1&delay=0",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(streamed.status(), 200);
    assert_eq!(
        app.enqueue("open", 1).await.status(),
        200,
        "queue not listed"
    );
    assert_eq!(app.dequeue().await.status(), 405);
}

#[tokio::test]
async fn a_hash_from_hash_password_logs_in_on_the_production_binary() {
    let cheap = [
        ("ARGON2_MEMORY_KIB", "64"),
        ("ARGON2_ITERATIONS", "1"),
        ("ARGON2_PARALLELISM", "1"),
    ];
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_backflow"))
        .arg("hash-password")
        .env_clear()
        .envs(cheap)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"a long passphrase\n")
        .await
        .expect("written");
    drop(stdin);
    let output = child.wait_with_output().await.expect("it exits");
    assert!(output.status.success());
    let phc = String::from_utf8(output.stdout).expect("UTF-8");
    let phc = phc.trim_end();
    assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");

    let users = format!("alice:{phc}:enqueue");
    let server = ServerProcess::start(&[
        ("APP_ENV", "production"),
        ("JWT_SECRET", PRODUCTION_SECRET),
        ("AUTH_USERS", &users),
        ("STORE", "memory"),
    ])
    .await;
    error_body(
        server.login("alice", "a long passphrase!").await,
        401,
        "invalid_credentials",
    )
    .await;
    error_body(
        server.login("bob", "a long passphrase").await,
        401,
        "invalid_credentials",
    )
    .await;
    let login = server.login("alice", "a long passphrase").await;
    assert_eq!(login.status(), 200);
    let token = token_of(&login.json().await.expect("a JSON body"));
    let claims: Value = server.protected(&token).await.json().await.expect("JSON");
    assert_eq!(claims["user"]["scope"], "enqueue");
}

#[tokio::test]
async fn an_unknown_user_costs_a_hash_verification_like_a_wrong_password() {
    let app = production(&[]).await;
    let verifications = || app.state.auth.password_verifications();
    let before = verifications();
    error_body(
        app.login("worker", "wrong").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(verifications(), before + 1, "a wrong password is verified");
    error_body(
        app.login("nobody", "wrong").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        verifications(),
        before + 2,
        "an unknown user is verified too"
    );
    let metric = app
        .metric_value("auth_password_verifications_total", &[])
        .await;
    assert_eq!(metric, Some((before + 2) as f64));
}

#[tokio::test]
async fn a_plain_password_in_production_stops_start_up_naming_the_user_and_the_fix() {
    let users = format!("{},carol:plain-password", hashed_users());
    let (status, stderr) = refused_start(&[
        ("APP_ENV", "production"),
        ("JWT_SECRET", PRODUCTION_SECRET),
        ("AUTH_USERS", &users),
    ])
    .await;
    assert!(!status.success());
    let line = stderr.trim_end();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.contains("AUTH_USERS"), "{line}");
    assert!(line.contains(r#""carol""#), "{line}");
    assert!(line.contains("backflow hash-password"), "{line}");
    assert!(!line.contains("plain-password"), "{line}");
}
