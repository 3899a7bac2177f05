//! CPU-heavy work: the default pool, the pool size, admission, the deadline and the largest
//! accepted inputs; also the blocking demonstration route.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{ConfigError, Env};

/// Which thread pool `/heavy-task-worker` uses when the request does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeavyPool {
    /// A dedicated rayon pool of `HEAVY_WORKER_THREADS` named threads.
    Rayon,
    /// tokio's blocking pool, bounded by the admission limit.
    Blocking,
}

impl HeavyPool {
    /// The name `HEAVY_POOL` and the `pool` query parameter use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rayon => "rayon",
            Self::Blocking => "blocking",
        }
    }
}

impl FromStr for HeavyPool {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Rayon, Self::Blocking]
            .into_iter()
            .find(|pool| pool.as_str() == s)
            .ok_or_else(|| format!("unknown pool {s:?}; expected `rayon` or `blocking`"))
    }
}

/// `/heavy-task-child`, `/heavy-task-worker` and `/heavy-task-blocking`.
#[derive(Debug, Clone)]
pub struct ComputeConfig {
    /// `HEAVY_POOL`: default pool of `/heavy-task-worker`.
    pub pool: HeavyPool,
    /// `HEAVY_WORKER_THREADS`: rayon pool size, and how many jobs compute at once.
    pub worker_threads: usize,
    /// `HEAVY_MAX_INFLIGHT`: heavy jobs running plus waiting.
    pub max_inflight: usize,
    /// `HEAVY_TIMEOUT_SECONDS`: per-job deadline (a `Duration`, so tests can set less than a
    /// second).
    pub timeout: Duration,
    /// `CHILD_MAX_N`: largest `n` of `/heavy-task-child`.
    pub child_max_n: u32,
    /// `WORKER_MAX_N`: largest `n` of `/heavy-task-worker`.
    pub worker_max_n: u32,
    /// `ENABLE_BLOCKING_DEMO`: mount the route that computes on the async runtime itself.
    pub enable_blocking_demo: bool,
    /// The executable started in worker mode by `/heavy-task-child`. Not read from the
    /// environment: the running binary by default; tests point it at the built `backflow` binary.
    pub worker_exe: Option<PathBuf>,
}

impl ComputeConfig {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            pool: env
                .get("HEAVY_POOL")
                .map(|v| v.parse().map_err(|e| ConfigError::new("HEAVY_POOL", e)))
                .transpose()?
                .unwrap_or(HeavyPool::Rayon),
            worker_threads: env.int("HEAVY_WORKER_THREADS", 1..=1024, cpus)?,
            max_inflight: env.int("HEAVY_MAX_INFLIGHT", 1..=100_000, 2 * cpus)?,
            timeout: Duration::from_secs(env.int("HEAVY_TIMEOUT_SECONDS", 1..=3600, 30)?),
            child_max_n: env.int("CHILD_MAX_N", 0..=93, 45)?,
            worker_max_n: env.int("WORKER_MAX_N", 0..=93, 50)?,
            enable_blocking_demo: env.bool("ENABLE_BLOCKING_DEMO", false)?,
            worker_exe: None,
        })
    }
}
