//! Hardening over real HTTP and the real binary: answers no cache keeps, tokens bound to their
//! issuer, audience and configured user, the production refusals of published secrets and of
//! the blocking demo, a private `DATA_DIR`, and Redis over TLS with a password that no log
//! line shows.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use backflow::clock::unix_seconds;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::common::process::{ServerProcess, refused_start};
use crate::common::{Api, error_body, eventually, spawn_app_with, system, token_of};

const SECRET: &str = "hardening-tests-secret-long-enough-for-hs256";

#[tokio::test]
async fn login_and_protected_answers_are_never_stored_by_a_cache() {
    let app = spawn_app_with(&[]).await;
    let cache_control = |response: &reqwest::Response| {
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().expect("ASCII").to_owned())
    };
    let login = app.login("admin", "admin123").await;
    assert_eq!(cache_control(&login).as_deref(), Some("no-store"));
    let token = token_of(&login.json().await.expect("a JSON body"));
    let protected = app.protected(&token).await;
    assert_eq!(protected.status(), 200);
    assert_eq!(cache_control(&protected).as_deref(), Some("no-store"));
    let refused = app.login("admin", "guess").await;
    assert_eq!(cache_control(&refused).as_deref(), Some("no-store"));
}

#[tokio::test]
async fn a_token_for_another_issuer_or_audience_is_refused() {
    let app = spawn_app_with(&[
        ("JWT_SECRET", SECRET),
        ("JWT_ISSUER", "https://auth.example"),
        ("JWT_AUDIENCE", "backflow-eu"),
    ])
    .await;
    let token = app.token().await;
    let claims: serde_json::Value = app.protected(&token).await.json().await.expect("JSON");
    assert_eq!(claims["user"]["iss"], "https://auth.example");
    assert_eq!(claims["user"]["aud"], "backflow-eu");
    let now = unix_seconds();
    for (iss, aud) in [
        ("https://other.example", "backflow-eu"),
        ("https://auth.example", "backflow-us"),
    ] {
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"userId": 1, "username": "admin", "jti": uuid::Uuid::new_v4(),
                    "iat": now, "exp": now + 60, "iss": iss, "aud": aud,
                    "scope": "enqueue consume compute"}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("signed");
        error_body(app.protected(&forged).await, 401, "invalid_token").await;
    }
}

#[tokio::test]
async fn a_token_of_a_user_no_longer_configured_is_refused() {
    let before = spawn_app_with(&[
        ("JWT_SECRET", SECRET),
        ("AUTH_USERS", "alice:alice-pw,bob:bob-pw"),
    ])
    .await;
    let token = |app, name: &'static str| async move {
        let app: &crate::common::TestApp = app;
        let login = app.login(name, &format!("{name}-pw")).await;
        token_of(&login.json().await.expect("a JSON body"))
    };
    let (alice, bob) = (token(&before, "alice").await, token(&before, "bob").await);
    // The same key, one user fewer; and another user in bob's place.
    let after = spawn_app_with(&[("JWT_SECRET", SECRET), ("AUTH_USERS", "alice:alice-pw")]).await;
    assert_eq!(after.protected(&alice).await.status(), 200);
    error_body(after.protected(&bob).await, 401, "invalid_token").await;
    let renamed = spawn_app_with(&[
        ("JWT_SECRET", SECRET),
        ("AUTH_USERS", "alice:alice-pw,carol:carol-pw"),
    ])
    .await;
    error_body(renamed.protected(&bob).await, 401, "invalid_token").await;
}

#[tokio::test]
async fn production_refuses_a_published_secret_and_the_blocking_demo() {
    let users = crate::access::hashed_users();
    let base = [("APP_ENV", "production"), ("AUTH_USERS", users.as_str())];
    let published = "change-me-to-at-least-32-random-bytes!!";
    for (setting, extra) in [
        (
            "JWT_SECRET",
            [("JWT_SECRET", published), ("STORE", "memory")],
        ),
        (
            "ENABLE_BLOCKING_DEMO",
            [
                ("JWT_SECRET", crate::access::PRODUCTION_SECRET),
                ("ENABLE_BLOCKING_DEMO", "true"),
            ],
        ),
    ] {
        let envs: Vec<(&str, &str)> = base.iter().chain(&extra).copied().collect();
        let (status, stderr) = refused_start(&envs).await;
        assert!(!status.success(), "{setting}");
        let line = stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains(setting), "{setting}: {line}");
    }
}

#[tokio::test]
async fn the_data_dir_and_its_files_are_readable_by_the_server_alone() {
    let parent = tempfile::tempdir().expect("a temp dir");
    let dir = parent.path().join("state").join("backflow");
    let app = spawn_app_with(&[("DATA_DIR", dir.to_str().expect("UTF-8"))]).await;
    app.enqueued("private", 1).await;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .expect("it exists")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&parent.path().join("state")), 0o700);
    for file in ["backflow.db", "backflow.db-wal"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
}

/// A certificate authority and a server certificate for 127.0.0.1 it signed, made with the
/// `openssl` command in `dir`: (`ca.pem`, `server.pem`, `server.key`).
fn certificates(dir: &Path) {
    let openssl = system::installed("openssl", "apt-get install openssl");
    let run = |args: &[&str]| {
        let status = std::process::Command::new(&openssl)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let words = |line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let ca = words(format!(
        "req -x509 {key} -keyout ca.key -out ca.pem -days 1"
    ));
    run(&[
        ca.iter().map(String::as_str).collect::<Vec<_>>(),
        vec!["-subj", "/CN=test-ca"],
    ]
    .concat());
    let csr = words(format!("req {key} -keyout server.key -out server.csr"));
    run(&[
        csr.iter().map(String::as_str).collect::<Vec<_>>(),
        vec!["-subj", "/CN=127.0.0.1"],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("written");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test]
async fn redis_over_tls_with_a_password_works_and_no_log_line_shows_the_password() {
    const PASSWORD: &str = "tls-redis-password-7f3a";
    let dir = tempfile::tempdir().expect("a temp dir");
    certificates(dir.path());
    let port = system::free_port();
    let redis = std::process::Command::new(system::installed(
        "redis-server",
        "apt-get install redis-server",
    ))
    .args([
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ])
    .args([
        "--tls-cert-file",
        "server.pem",
        "--tls-key-file",
        "server.key",
    ])
    .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
    .args([
        "--requirepass",
        PASSWORD,
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .current_dir(dir.path())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("redis-server runs");
    let _redis = KillOnDrop(redis);

    let ca = dir.path().join("ca.pem");
    let url = format!("rediss://:{PASSWORD}@127.0.0.1:{port}");
    let server = ServerProcess::start(&[
        ("STORE", "redis"),
        ("REDIS_URL", &url),
        ("SSL_CERT_FILE", ca.to_str().expect("UTF-8")),
        ("RUST_LOG", "debug"),
    ])
    .await;
    eventually("the store is ready over TLS", || async {
        server.get("/ready").await.status() == 200
    })
    .await;
    server.enqueued("over tls", 1).await;
    assert_eq!(server.drain_tasks().await, ["over tls"]);
    let (status, log) = server.terminate().await;
    assert!(status.success());
    assert!(
        log.iter().any(|line| line.contains("redis store")),
        "{log:?}"
    );
    for line in &log {
        assert!(!line.contains(PASSWORD), "the password is logged: {line}");
    }
}

/// Kills the child it holds when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
