//! Failed-login budgets over real HTTP, on every store: a burst of parallel wrong passwords
//! gets no more 401s than the budget (the rest 429), per client and per account (whatever the
//! client address), on one instance and across two sharing Redis.

use std::net::SocketAddr;

use futures_util::future::join_all;
use serde_json::json;

use crate::common::cluster::Cluster;
use crate::common::redis::{RedisServer, unique_prefix};
use crate::common::{Api, TestApp, error_body, spawn_app_with};

/// Wrong passwords sent at once in each burst.
const BURST: usize = 200;
/// The budget the tests configure (a unit comes back every 12 s, far longer than a burst).
const BUDGET: &str = "5";

/// A server on `store` with `settings`.
async fn server_on(store: &str, redis: &RedisServer, settings: &[(&str, &str)]) -> TestApp {
    let url = redis.url();
    let prefix = unique_prefix("budgets");
    let mut pairs = vec![("STORE", store)];
    if store == "redis" {
        pairs.extend([
            ("REDIS_URL", url.as_str()),
            ("REDIS_PREFIX", prefix.as_str()),
        ]);
    }
    pairs.extend_from_slice(settings);
    spawn_app_with(&pairs).await
}

/// Sends [`BURST`] logins of `username` with a wrong password at once, spread over `servers`;
/// with `spoofed`, each from its own address in `X-Forwarded-For`. Returns how many were
/// answered 401 and 429 (any other answer fails the test).
async fn burst(servers: &[SocketAddr], username: &str, spoofed: bool) -> (usize, usize) {
    let client = reqwest::Client::new();
    let attempts = (0..BURST).map(|i| {
        let mut request = client
            .post(format!("http://{}/login", servers[i % servers.len()]))
            .json(&json!({"username": username, "password": format!("guess-{i}")}));
        if spoofed {
            request = request.header("x-forwarded-for", format!("198.51.100.{}", i % 250 + 1));
        }
        async move { request.send().await.expect("answered").status().as_u16() }
    });
    let statuses = join_all(attempts).await;
    let count = |status| statuses.iter().filter(|s| **s == status).count();
    let (refused, limited) = (count(401), count(429));
    assert_eq!(refused + limited, BURST, "only 401 and 429: {statuses:?}");
    (refused, limited)
}

/// A login at `server` from `client`, as a trusted proxy would forward it.
async fn login_from(
    server: SocketAddr,
    client: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{server}/login"))
        .header("x-forwarded-for", client)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("answered")
}

fn budget() -> usize {
    BUDGET.parse().expect("a number")
}

#[tokio::test]
async fn parallel_guesses_from_one_client_get_no_more_than_its_budget_on_every_store() {
    let redis = RedisServer::start().await;
    for store in ["memory", "embedded", "redis"] {
        let app = server_on(store, &redis, &[("LOGIN_MAX_PER_MINUTE", BUDGET)]).await;
        let (refused, limited) = burst(&[app.addr], "admin", false).await;
        assert!(
            (1..=budget()).contains(&refused),
            "{store}: {refused} wrong passwords answered 401"
        );
        assert!(limited >= BURST - budget(), "{store}");
        let response = app.login("admin", "admin123").await;
        assert!(response.headers().contains_key("retry-after"), "{store}");
        error_body(response, 429, "rate_limited").await;
    }
}

#[tokio::test]
async fn parallel_guesses_at_one_account_from_many_clients_get_no_more_than_its_budget() {
    let redis = RedisServer::start().await;
    for store in ["memory", "embedded", "redis"] {
        let app = server_on(
            store,
            &redis,
            &[
                ("TRUSTED_PROXIES", "127.0.0.1/32"),
                ("LOGIN_ACCOUNT_MAX_PER_MINUTE", BUDGET),
            ],
        )
        .await;
        let (refused, _) = burst(&[app.addr], "admin", true).await;
        assert!(
            (1..=budget()).contains(&refused),
            "{store}: {refused} wrong passwords answered 401"
        );
        // The account waits, even for its right password from a fresh address; others do not.
        let fresh = login_from(app.addr, "203.0.113.9", "admin", "admin123").await;
        error_body(fresh, 429, "rate_limited").await;
        assert_eq!(app.login("user", "user123").await.status(), 200, "{store}");
    }
}

#[tokio::test]
async fn two_instances_on_redis_share_both_budgets() {
    let cluster = Cluster::start(
        2,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("LOGIN_MAX_PER_MINUTE", BUDGET),
            ("LOGIN_ACCOUNT_MAX_PER_MINUTE", BUDGET),
        ],
    )
    .await;
    let servers = cluster.addrs();
    let (refused, _) = burst(&servers, "admin", false).await;
    assert!((1..=budget()).contains(&refused), "per client: {refused}");
    let (refused, _) = burst(&servers, "user", true).await;
    assert!((1..=budget()).contains(&refused), "per account: {refused}");
    for server in servers {
        let limited = login_from(server, "203.0.113.9", "user", "user123").await;
        error_body(limited, 429, "rate_limited").await;
    }
}

#[tokio::test]
async fn a_successful_login_gives_its_units_back() {
    let app = spawn_app_with(&[
        ("LOGIN_MAX_PER_MINUTE", "1"),
        ("LOGIN_ACCOUNT_MAX_PER_MINUTE", "1"),
    ])
    .await;
    for _ in 0..5 {
        app.login_admin().await;
    }
    error_body(
        app.login("admin", "guess").await,
        401,
        "invalid_credentials",
    )
    .await;
    error_body(app.login("admin", "admin123").await, 429, "rate_limited").await;
}
