//! JWT costs: issuing a token (login), and verifying one with the revocation check (every
//! protected request), with 0 and 100 000 live revoked tokens in the list. Verification is
//! measured both ways: a token found in the cache of verified tokens (a client sending its token
//! again, the usual case) and with the cache off (`TOKEN_CACHE_CAPACITY=0`: the full check).
//!
//! `cargo bench --bench auth -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use backflow::Config;
use backflow::auth::AuthService;
use backflow::auth::revocation::InMemoryRevocationList;
use criterion::{Criterion, criterion_group, criterion_main};

fn config(token_cache_capacity: &str) -> Config {
    Config::from_pairs([
        ("JWT_SECRET", "bench-secret-bench-secret-bench-secret"),
        ("TOKEN_CACHE_CAPACITY", token_cache_capacity),
    ])
    .expect("valid bench config")
}

fn jwt(c: &mut Criterion) {
    let cached = config("10000");
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut group = c.benchmark_group("auth");

    let service = AuthService::new(&cached, Arc::new(InMemoryRevocationList::new(1)));
    group.bench_function("login_issue", |b| {
        b.iter(|| {
            black_box(
                service
                    .login(client, "admin", "admin123")
                    .expect("demo user"),
            )
        })
    });

    let token = service
        .login(client, "admin", "admin123")
        .expect("demo user")
        .token;
    group.bench_function("verify_with_revocation_check/empty_list", |b| {
        b.iter(|| black_box(service.authenticate(black_box(&token)).expect("valid")))
    });
    let uncached = AuthService::new(&config("0"), Arc::new(InMemoryRevocationList::new(1)));
    group.bench_function("verify_with_revocation_check/empty_list_no_cache", |b| {
        b.iter(|| black_box(uncached.authenticate(black_box(&token)).expect("valid")))
    });

    let crowded = AuthService::new(&cached, Arc::new(InMemoryRevocationList::new(1)));
    for _ in 0..100_000 {
        let issued = crowded.login(client, "user", "user123").expect("demo user");
        crowded.logout(&issued.claims).expect("first logout");
    }
    let token = crowded
        .login(client, "admin", "admin123")
        .expect("demo user")
        .token;
    group.bench_function("verify_with_revocation_check/100k_revoked", |b| {
        b.iter(|| black_box(crowded.authenticate(black_box(&token)).expect("valid")))
    });
    group.finish();
}

criterion_group!(benches, jwt);
criterion_main!(benches);
