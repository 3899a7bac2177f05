//! Authentication costs: verifying one argon2id password hash with the default costs (what a
//! login pays, on the blocking pool), a whole login of a hashed user through the service (the
//! budgets' reservations, the hash, the token), issuing a token for a plain development user,
//! and verifying a token with the revocation check (every protected request), with 0 and
//! 100 000 live revoked tokens in the list. Token verification is measured both ways: a token
//! found in the cache of verified tokens (a client sending its token again, the usual case)
//! and with the cache off (`TOKEN_CACHE_CAPACITY=0`: the full check).
//!
//! `cargo bench --bench auth -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use backflow::Config;
use backflow::auth::password::{self, HashParams};
use backflow::auth::{AuthService, MemoryRevocations};
use backflow::events::MemoryEventBus;
use criterion::{Criterion, criterion_group, criterion_main};

fn config(token_cache_capacity: &str) -> Config {
    Config::from_pairs([
        ("JWT_SECRET", "bench-secret-bench-secret-bench-secret"),
        ("TOKEN_CACHE_CAPACITY", token_cache_capacity),
        ("LOGIN_SUCCESS_MAX_PER_MINUTE", "1000000"),
    ])
    .expect("valid bench config")
}

/// A service over the in-memory stores, as `STORE=memory` and `STORE=embedded` check tokens.
fn service(config: &Config) -> AuthService {
    AuthService::new(
        config,
        Arc::new(MemoryRevocations::new(1_000_000)),
        backflow::store::local_login_failures(config),
        Arc::new(MemoryEventBus::new(0)),
    )
    .expect("the bench users need no dummy hash")
}

fn jwt(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let cached = config("10000");
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut group = c.benchmark_group("auth");

    // One hash with the default costs (ARGON2_MEMORY_KIB=19456, ARGON2_ITERATIONS=2,
    // ARGON2_PARALLELISM=1): tens of milliseconds, so fewer samples.
    let phc = password::hash_password("a long passphrase", HashParams::default()).expect("hashed");
    group.sample_size(20);
    group.bench_function("login_verify/argon2id_default", |b| {
        b.iter(|| {
            assert!(password::verify_blocking(
                black_box(&phc),
                "a long passphrase"
            ))
        })
    });
    let users = format!("ops:{phc}");
    let hashed = Config::from_pairs([
        ("JWT_SECRET", "bench-secret-bench-secret-bench-secret"),
        ("AUTH_USERS", users.as_str()),
        ("LOGIN_SUCCESS_MAX_PER_MINUTE", "1000000"),
    ])
    .expect("valid bench config");
    let hashed_service = service(&hashed);
    group.bench_function("login_verify/whole_login_of_a_hashed_user", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                hashed_service
                    .login(client, "ops", "a long passphrase")
                    .await
                    .expect("hashed user"),
            )
        })
    });
    group.sample_size(100);

    let service = service(&cached);
    group.bench_function("login_issue", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                service
                    .login(client, "admin", "admin123")
                    .await
                    .expect("demo user"),
            )
        })
    });

    let token = runtime
        .block_on(service.login(client, "admin", "admin123"))
        .expect("demo user")
        .token;
    group.bench_function("verify_with_revocation_check/empty_list", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                service
                    .authenticate(black_box(&token))
                    .await
                    .expect("valid"),
            )
        })
    });
    let uncached = self::service(&config("0"));
    group.bench_function("verify_with_revocation_check/empty_list_no_cache", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                uncached
                    .authenticate(black_box(&token))
                    .await
                    .expect("valid"),
            )
        })
    });

    let crowded = self::service(&cached);
    runtime.block_on(async {
        for _ in 0..100_000 {
            let issued = crowded
                .login(client, "user", "user123")
                .await
                .expect("demo user");
            crowded.logout(&issued.claims).await.expect("first logout");
        }
    });
    let token = runtime
        .block_on(crowded.login(client, "admin", "admin123"))
        .expect("demo user")
        .token;
    group.bench_function("verify_with_revocation_check/100k_revoked", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                crowded
                    .authenticate(black_box(&token))
                    .await
                    .expect("valid"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, jwt);
criterion_main!(benches);
