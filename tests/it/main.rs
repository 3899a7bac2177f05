//! The integration tests, one binary so the suite links once. Each module tells how one area
//! behaves, over real HTTP, against the real server (in this process, or the real binary as a
//! child), with a real Redis and nginx where the area needs them. The harness they share lives
//! in `tests/common`.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod auth;
mod client_ip;
mod cluster;
mod connections;
mod contract;
mod crash;
mod crash_leases;
mod demo;
mod foundation;
mod hardening;
mod heavy;
mod http2;
mod leases;
mod login_budgets;
mod notifications;
mod openapi;
mod proxy;
mod queue;
mod shutdown;
mod slow_clients;
mod store;
mod stream;
