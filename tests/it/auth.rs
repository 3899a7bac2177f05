//! JWT authentication over real HTTP: login, protected route, logout and revocation, every
//! rejection of the contract, expiry, restart, the failed-login limit and concurrency.

use backflow::clock::unix_seconds;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{
    Api, TestApp, error_body, eventually, live_events, next_app_event, spawn_app_with,
    spawn_config, test_config, token_of,
};

const SECRET: &str = "auth-tests-secret-long-enough-for-hs256";

async fn spawn(overrides: &[(&str, &str)]) -> TestApp {
    let mut pairs = vec![("JWT_SECRET", SECRET)];
    pairs.extend_from_slice(overrides);
    spawn_app_with(&pairs).await
}

/// `method path` with this exact `Authorization` header (none when `None`).
async fn send_with_auth(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("request sent")
}

/// A login with a wrong password, answered as one: it spends one of the client's failures.
async fn fail_login(app: &TestApp) {
    let response = app.login("admin", "guess").await;
    error_body(response, 401, "invalid_credentials").await;
}

/// Checks a 401 of the contract: message, code, and the `WWW-Authenticate` challenge.
async fn assert_unauthorized(response: reqwest::Response, message: &str, code: &str) {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .expect("WWW-Authenticate on every 401")
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let invalid_token = challenge.contains(r#"error="invalid_token""#);
    assert_eq!(invalid_token, code != "token_required", "{challenge}");
    let body = error_body(response, 401, code).await;
    assert_eq!(body["error"], message);
}

async fn assert_invalid_token(response: reqwest::Response) {
    assert_unauthorized(response, "Invalid or expired token", "invalid_token").await;
}

async fn assert_revoked(response: reqwest::Response) {
    assert_unauthorized(response, "Token has been invalidated", "token_revoked").await;
}

fn claims(exp: u64) -> Value {
    json!({
        "userId": 1,
        "username": "admin",
        "jti": uuid::Uuid::new_v4(),
        "iat": unix_seconds(),
        "exp": exp,
        "iss": "backflow",
        "aud": "backflow",
        "scope": "enqueue consume compute",
    })
}

fn sign(algorithm: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signed")
}

#[tokio::test]
async fn login_protected_logout_flow_revokes_the_token() {
    let app = spawn(&[]).await;
    let body = app.login_admin().await;
    assert_eq!(body["message"], "Login successful");
    assert_eq!(body["expiresIn"], "1h");
    let token = token_of(&body);
    let token_id = body["tokenId"].as_str().expect("tokenId");
    assert_eq!(
        uuid::Uuid::parse_str(token_id)
            .expect("UUID")
            .get_version_num(),
        4
    );

    let response = app.protected(&token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["message"], "This is a protected route");
    let user = &body["user"];
    assert_eq!(user["userId"], 1);
    assert_eq!(user["username"], "admin");
    assert_eq!(user["jti"], token_id);
    let iat = user["iat"].as_u64().expect("iat");
    assert_eq!(user["exp"].as_u64(), Some(iat + 3600));
    assert!(iat.abs_diff(unix_seconds()) <= 5, "iat is now");

    let response = app.logout(&token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body, json!({"message": "Logged out successfully"}));

    assert_revoked(app.protected(&token).await).await;
    assert_revoked(app.logout(&token).await).await;
    assert_eq!(
        app.metric_value("auth_revoked_tokens", &[]).await,
        Some(1.0)
    );
}

#[tokio::test]
async fn second_demo_user_gets_its_own_id() {
    let app = spawn(&[]).await;
    let response = app.login("user", "user123").await;
    let token = token_of(&response.json().await.expect("JSON"));
    let body: Value = app.protected(&token).await.json().await.expect("JSON");
    assert_eq!(body["user"]["userId"], 2);
    assert_eq!(body["user"]["username"], "user");
}

#[tokio::test]
async fn expires_in_reflects_the_configured_lifetime() {
    for (ttl, shown) in [("1800", "30m"), ("45", "45s"), ("86400", "1d")] {
        let app = spawn(&[("JWT_TTL_SECONDS", ttl)]).await;
        assert_eq!(app.login_admin().await["expiresIn"], shown, "{ttl}");
    }
}

#[tokio::test]
async fn configured_users_replace_the_demo_users() {
    let app = spawn(&[("AUTH_USERS", "alice:wonderland-42")]).await;
    assert_eq!(app.login("alice", "wonderland-42").await.status(), 200);
    error_body(
        app.login("admin", "admin123").await,
        401,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn missing_username_or_password_is_a_400() {
    let app = spawn(&[]).await;
    let bodies = [
        (json!({}), "username"),
        (json!({"username": "admin"}), "password"),
        (json!({"password": "admin123"}), "username"),
        (json!({"username": "", "password": "admin123"}), "username"),
        (json!({"username": "admin", "password": ""}), "password"),
        (json!({"username": 1, "password": "admin123"}), "username"),
        (json!({"username": "admin", "password": null}), "password"),
        (json!(["admin", "admin123"]), "username"),
        (json!("admin"), "username"),
        (json!(null), "username"),
    ];
    for (body, field) in bodies {
        let response = app.post_json("/login", &body).await;
        let error = error_body(response, 400, "missing_credentials").await;
        assert_eq!(error["error"], "Username and password required", "{body}");
        assert_eq!(error["field"], field, "the first missing field: {body}");
    }
}

#[tokio::test]
async fn wrong_credentials_are_a_401() {
    let app = spawn(&[]).await;
    for (username, password) in [
        ("admin", "wrong"),
        ("admin", "user123"),
        ("nobody", "admin123"),
    ] {
        let response = app.login(username, password).await;
        assert!(response.headers().contains_key("www-authenticate"));
        let body = error_body(response, 401, "invalid_credentials").await;
        assert_eq!(body["error"], "Invalid credentials");
        assert!(!body.to_string().contains(password), "password not echoed");
    }
}

#[tokio::test]
async fn requests_without_a_bearer_token_are_told_a_token_is_required() {
    let app = spawn(&[]).await;
    for (method, path) in [(Method::GET, "/protected"), (Method::POST, "/logout")] {
        for authorization in [
            None,
            Some(""),
            Some("Basic YWRtaW46YWRtaW4xMjM="),
            Some("Bearer"),
            Some("Bearer   "),
        ] {
            let response = send_with_auth(&app, method.clone(), path, authorization).await;
            assert_unauthorized(response, "Access token required", "token_required").await;
        }
    }
}

#[tokio::test]
async fn malformed_tokens_are_invalid() {
    let app = spawn(&[]).await;
    for token in [
        "not-a-jwt",
        "a.b.c",
        "x.y",
        "...",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        &"A".repeat(10_000),
    ] {
        assert_invalid_token(app.protected(token).await).await;
    }
}

#[tokio::test]
async fn bearer_scheme_is_matched_case_insensitively() {
    let app = spawn(&[]).await;
    let token = app.token().await;
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let value = format!("{scheme} {token}");
        let response = send_with_auth(&app, Method::GET, "/protected", Some(&value)).await;
        assert_eq!(response.status(), 200, "{scheme}");
    }
}

#[tokio::test]
async fn unsigned_token_with_alg_none_is_refused() {
    let app = spawn(&[]).await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(unix_seconds() + 600).to_string());
    assert_invalid_token(app.protected(&format!("{header}.{payload}.")).await).await;
}

#[tokio::test]
async fn tokens_signed_with_another_algorithm_are_refused() {
    let app = spawn(&[]).await;
    for algorithm in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign(algorithm, SECRET, &claims(unix_seconds() + 600));
        assert_invalid_token(app.protected(&token).await).await;
    }
}

#[tokio::test]
async fn a_correctly_crafted_token_is_accepted() {
    // The control for the rejection tests: the same crafting with HS256 and the right key works.
    let app = spawn(&[]).await;
    let token = sign(Algorithm::HS256, SECRET, &claims(unix_seconds() + 600));
    assert_eq!(app.protected(&token).await.status(), 200);
}

#[tokio::test]
async fn tampered_payload_is_refused() {
    let app = spawn(&[]).await;
    let token = app.token().await;
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url"))
            .expect("JSON payload");
    payload["username"] = json!("root");
    payload["exp"] = json!(unix_seconds() + 365 * 86_400);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    assert_invalid_token(app.protected(&forged).await).await;
}

#[tokio::test]
async fn tokens_are_checked_alike_with_and_without_the_verified_token_cache() {
    for capacity in ["10000", "0"] {
        let app = spawn(&[("TOKEN_CACHE_CAPACITY", capacity)]).await;
        let token = app.token().await;
        // Twice: the second request finds the token in the cache when there is one.
        for _ in 0..2 {
            let body: Value = app.protected(&token).await.json().await.expect("JSON");
            assert_eq!(body["user"]["username"], "admin", "{capacity}");
        }
        let expected_cached = if capacity == "0" { 0 } else { 1 };
        assert_eq!(
            app.state.auth.cached_tokens(),
            expected_cached,
            "{capacity}"
        );
        // A copy differing in one signature character is no cache hit and fails verification
        // (a character inside the signature: the last one also carries padding bits).
        let at = token.len() - 10;
        let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
        let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
        assert_invalid_token(app.protected(&forged).await).await;
        // Revocation is checked on every request, cached or not.
        assert_eq!(app.logout(&token).await.status(), 200);
        assert_revoked(app.protected(&token).await).await;
    }
}

#[tokio::test]
async fn token_signed_with_another_secret_is_refused() {
    let app = spawn(&[]).await;
    let token = sign(
        Algorithm::HS256,
        "some-other-secret-of-sufficient-length!",
        &claims(unix_seconds() + 600),
    );
    assert_invalid_token(app.protected(&token).await).await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let app = spawn(&[]).await;
    let token = sign(Algorithm::HS256, SECRET, &claims(unix_seconds() - 3600));
    assert_invalid_token(app.protected(&token).await).await;
}

#[tokio::test]
async fn token_without_exp_or_with_missing_claims_is_refused() {
    let app = spawn(&[]).await;
    let mut no_exp = claims(0);
    no_exp.as_object_mut().expect("object").remove("exp");
    let mut no_jti = claims(unix_seconds() + 600);
    no_jti.as_object_mut().expect("object").remove("jti");
    for payload in [no_exp, no_jti] {
        let token = sign(Algorithm::HS256, SECRET, &payload);
        assert_invalid_token(app.protected(&token).await).await;
    }
}

#[tokio::test]
async fn revocations_are_forgotten_once_the_token_expires() {
    let app = spawn(&[("JWT_TTL_SECONDS", "1")]).await;
    let body = app.login_admin().await;
    assert_eq!(body["expiresIn"], "1s");
    let token = token_of(&body);
    assert_eq!(app.logout(&token).await.status(), 200);
    assert_eq!(
        app.metric_value("auth_revoked_tokens", &[]).await,
        Some(1.0)
    );

    eventually("the expired revocation is forgotten", || async {
        app.metric_value("auth_revoked_tokens", &[]).await == Some(0.0)
    })
    .await;
    // Forgotten, yet still refused: it is expired now.
    assert_invalid_token(app.protected(&token).await).await;
}

#[tokio::test]
async fn revocations_survive_a_restart() {
    let app = spawn(&[]).await;
    let revoked = app.token().await;
    let kept = app.token().await;
    assert_eq!(app.logout(&revoked).await.status(), 200);
    let (data_dir, _guard) = app.stop().await;

    let restarted = spawn_config(test_config(&data_dir, &[("JWT_SECRET", SECRET)])).await;
    assert_revoked(restarted.protected(&revoked).await).await;
    assert_eq!(restarted.protected(&kept).await.status(), 200);
    assert_eq!(
        restarted.metric_value("auth_revoked_tokens", &[]).await,
        Some(1.0)
    );
}

#[tokio::test]
async fn the_memory_store_forgets_revocations_at_a_restart() {
    let app = spawn(&[("STORE", "memory")]).await;
    let token = app.token().await;
    assert_eq!(app.logout(&token).await.status(), 200);
    let (data_dir, _guard) = app.stop().await;

    let restarted = spawn_config(test_config(
        &data_dir,
        &[("JWT_SECRET", SECRET), ("STORE", "memory")],
    ))
    .await;
    assert_eq!(
        restarted.protected(&token).await.status(),
        200,
        "STORE=memory keeps nothing, as documented"
    );
}

#[tokio::test]
async fn repeated_failed_logins_are_rate_limited() {
    let app = spawn(&[("LOGIN_MAX_PER_MINUTE", "2")]).await;
    for _ in 0..2 {
        fail_login(&app).await;
    }
    for password in ["guess", "admin123"] {
        let response = app.login("admin", password).await;
        let retry_after: u64 = response
            .headers()
            .get("retry-after")
            .expect("Retry-After")
            .to_str()
            .expect("ASCII")
            .parse()
            .expect("seconds");
        assert!((1..=30).contains(&retry_after), "{retry_after}");
        let body = error_body(response, 429, "rate_limited").await;
        assert_eq!(body["retryAfterSeconds"], retry_after);
    }
    let limited = app
        .metric_value("auth_login_attempts_total", &[r#"outcome="rate_limited""#])
        .await;
    assert_eq!(limited, Some(2.0));
}

#[tokio::test]
async fn successful_logins_do_not_spend_the_failure_budget() {
    let app = spawn(&[("LOGIN_MAX_PER_MINUTE", "2")]).await;
    for _ in 0..5 {
        app.login_admin().await;
    }
    for _ in 0..2 {
        fail_login(&app).await;
    }
    // Malformed requests test no password, so they spend nothing either.
    error_body(
        app.post_json("/login", &json!({})).await,
        400,
        "missing_credentials",
    )
    .await;
    error_body(app.login("admin", "guess").await, 429, "rate_limited").await;
}

#[tokio::test]
async fn successful_logins_are_limited_with_a_retry_hint() {
    let app = spawn(&[("LOGIN_SUCCESS_MAX_PER_MINUTE", "2")]).await;
    for _ in 0..2 {
        assert_eq!(app.login("admin", "admin123").await.status(), 200);
    }
    let refused = app.login("admin", "admin123").await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    error_body(refused, 429, "rate_limited").await;
}

#[tokio::test]
async fn concurrent_logouts_of_one_token_succeed_exactly_once() {
    let app = spawn(&[]).await;
    let token = app.token().await;
    let attempts = (0..16).map(|_| {
        let client = app.client.clone();
        let url = app.url("/logout");
        let bearer = format!("Bearer {token}");
        tokio::spawn(async move {
            let response = client
                .post(url)
                .header("authorization", bearer)
                .send()
                .await
                .expect("sent");
            response.status().as_u16()
        })
    });
    let mut statuses = Vec::new();
    for attempt in attempts.collect::<Vec<_>>() {
        statuses.push(attempt.await.expect("task"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
    assert_revoked(app.protected(&token).await).await;
}

#[tokio::test]
async fn concurrent_verifies_and_logouts_stay_consistent() {
    let app = spawn(&[]).await;
    let mut tokens = Vec::new();
    for _ in 0..12 {
        tokens.push(app.token().await);
    }
    let mut tasks = Vec::new();
    for token in &tokens {
        for round in 0..6 {
            let client = app.client.clone();
            let base = app.url("");
            let bearer = format!("Bearer {token}");
            tasks.push(tokio::spawn(async move {
                let request = if round == 3 {
                    client.post(format!("{base}/logout"))
                } else {
                    client.get(format!("{base}/protected"))
                };
                let status = request
                    .header("authorization", bearer)
                    .send()
                    .await
                    .expect("sent")
                    .status()
                    .as_u16();
                (round == 3, status)
            }));
        }
    }
    for task in tasks {
        let (was_logout, status) = task.await.expect("task");
        if was_logout {
            assert_eq!(status, 200, "each token is logged out once");
        } else {
            assert!(status == 200 || status == 401, "{status}");
        }
    }
    for token in &tokens {
        assert_revoked(app.protected(token).await).await;
    }
    assert_eq!(
        app.metric_value("auth_revoked_tokens", &[]).await,
        Some(tokens.len() as f64)
    );
}

#[tokio::test]
async fn malformed_json_login_is_a_400() {
    let app = spawn(&[]).await;
    let response = app
        .post_raw(
            "/login",
            Some("application/json"),
            r#"{"username": "admin", "password": "#,
        )
        .await;
    error_body(response, 400, "invalid_json").await;
}

#[tokio::test]
async fn login_without_json_content_type_is_a_415() {
    let app = spawn(&[]).await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let body = r#"{"username":"admin","password":"admin123"}"#;
        let response = app.post_raw("/login", content_type, body).await;
        error_body(response, 415, "unsupported_media_type").await;
    }
}

#[tokio::test]
async fn oversized_login_body_is_a_413() {
    let app = spawn(&[("BODY_LIMIT_BYTES", "64")]).await;
    let body = json!({"username": "admin", "password": "x".repeat(200)});
    error_body(
        app.post_json("/login", &body).await,
        413,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn login_and_logout_publish_events_that_name_no_one() {
    let app = spawn_app_with(&[("JWT_SECRET", SECRET)]).await;
    let mut live = live_events(&app).await;

    let login: Value = app
        .login("user", "user123")
        .await
        .json()
        .await
        .expect("JSON");
    let token = token_of(&login);
    assert_eq!(app.logout(&token).await.status(), 200);

    let logged_in = next_app_event(&mut live, "auth.").await;
    assert_eq!(logged_in["event"], "auth.login");
    assert_eq!(logged_in["type"], "success");
    let logged_out = next_app_event(&mut live, "auth.").await;
    assert_eq!(logged_out["event"], "auth.logout");
    for event in [&logged_in, &logged_out] {
        let text = event.to_string();
        assert!(event.get("username").is_none(), "no username in {text}");
        assert!(!text.contains("user"), "no username in {text}");
        assert!(!text.contains(&token), "no token in {text}");
        assert!(
            !text.contains(login["tokenId"].as_str().expect("id")),
            "no token id in {text}"
        );
        assert!(!text.contains("user123"), "no password in {text}");
    }

    app.stop().await;
}
