//! The client behind a reverse proxy: `X-Forwarded-For` names the client only when the
//! connection comes from a proxy in `TRUSTED_PROXIES`, so the failed-login budget
//! (`LOGIN_MAX_PER_MINUTE`) is kept per real client and a forged header escapes nothing.

use std::net::Ipv4Addr;

use serde_json::json;

use crate::common::{Api, TestApp, client_from, error_body, spawn_app_with};

const BUDGET: usize = 3;
const BUDGET_VAR: (&str, &str) = ("LOGIN_MAX_PER_MINUTE", "3");

/// A login with a wrong password, with `X-Forwarded-For: forwarded_for` if given.
async fn failed_login(
    client: &reqwest::Client,
    app: &TestApp,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = client
        .post(app.url("/login"))
        .json(&json!({"username": "admin", "password": "wrong"}));
    if let Some(value) = forwarded_for {
        request = request.header("x-forwarded-for", value);
    }
    request.send().await.expect("request sent")
}

#[tokio::test]
async fn a_forged_forwarded_for_does_not_escape_the_failed_login_budget() {
    let app = spawn_app_with(&[BUDGET_VAR]).await;
    for i in 0..BUDGET {
        let forged = format!("198.51.100.{i}");
        let response = failed_login(&app.client, &app, Some(&forged)).await;
        assert_eq!(response.status(), 401, "failure {i} is within the budget");
    }
    let response = failed_login(&app.client, &app, Some("198.51.100.99")).await;
    error_body(response, 429, "rate_limited").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = spawn_app_with(&[BUDGET_VAR, ("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let proxy = client_from(Ipv4Addr::LOCALHOST);
    for _ in 0..BUDGET {
        let response = failed_login(&proxy, &app, Some("203.0.113.1")).await;
        assert_eq!(response.status(), 401);
    }
    let response = failed_login(&proxy, &app, Some("203.0.113.1")).await;
    error_body(response, 429, "rate_limited").await;

    // Another client behind the same proxy has a budget of its own.
    let response = failed_login(&proxy, &app, Some("203.0.113.2")).await;
    assert_eq!(response.status(), 401, "203.0.113.2 is not limited");
    // The exhausted client cannot escape by writing an address before its own, which is the
    // rightmost one: the one the proxy appended.
    let response = failed_login(&proxy, &app, Some("203.0.113.3, 203.0.113.1")).await;
    error_body(response, 429, "rate_limited").await;
    // The proxy's own requests (no header) count as the proxy's.
    let response = failed_login(&proxy, &app, None).await;
    assert_eq!(response.status(), 401, "the proxy itself is not limited");
}

#[tokio::test]
async fn a_peer_outside_the_trusted_networks_is_its_own_client() {
    let app = spawn_app_with(&[BUDGET_VAR, ("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let stranger = client_from(Ipv4Addr::new(127, 0, 0, 2));
    for i in 0..BUDGET {
        let forged = format!("198.51.100.{i}");
        let response = failed_login(&stranger, &app, Some(&forged)).await;
        assert_eq!(response.status(), 401, "failure {i} is within the budget");
    }
    let response = failed_login(&stranger, &app, Some("198.51.100.99")).await;
    error_body(response, 429, "rate_limited").await;

    // The trusted proxy's clients are unaffected, even one named like the stranger.
    let proxy = client_from(Ipv4Addr::LOCALHOST);
    let response = failed_login(&proxy, &app, Some("198.51.100.99")).await;
    assert_eq!(response.status(), 401);
}
