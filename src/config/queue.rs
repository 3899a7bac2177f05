//! Priority-queue settings: its capacity, and reliable delivery's defaults, back-off,
//! idempotency keys and reaper.

use std::time::Duration;

use super::{ConfigError, Env};
use crate::queue::backoff::RetryPolicy;
use crate::queue::limits::{
    LeaseLength, MAX_ATTEMPTS, MAX_DELAY_MS, MAX_LEASE_MS, MIN_LEASE_MS, MaxAttempts,
};
use crate::queue::{QueueDefaults, QueueSettings};

/// `/enqueue`, `/dequeue`, `/queue/*` and `/tasks/*`.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// `QUEUE_CAPACITY`: most tasks held at once, whatever their state.
    pub capacity: usize,
    /// `QUEUE_LEASE_MS`: the lease of a `POST /tasks/lease` that gives no `leaseMs`.
    pub lease: LeaseLength,
    /// `QUEUE_MAX_ATTEMPTS`: the deliveries of a task enqueued without `maxAttempts`.
    pub max_attempts: MaxAttempts,
    /// `QUEUE_RETRY_BASE_MS` / `QUEUE_RETRY_MAX_MS`: the back-off of nacked tasks.
    pub retry: RetryPolicy,
    /// `QUEUE_IDEMPOTENCY_TTL_SECONDS`: how long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// `QUEUE_IDEMPOTENCY_MAX_KEYS`: idempotency keys remembered at most; a new key past it is
    /// refused (503) rather than an older one forgotten early.
    pub idempotency_max_keys: usize,
    /// `QUEUE_REAP_INTERVAL_MS`: how often expired leases are taken back when no request does
    /// it first.
    pub reap_interval: Duration,
}

impl QueueConfig {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let lease = env.int("QUEUE_LEASE_MS", MIN_LEASE_MS..=MAX_LEASE_MS, 30_000)?;
        let max_attempts = env.int("QUEUE_MAX_ATTEMPTS", 1..=u64::from(MAX_ATTEMPTS), 5)?;
        let base_ms = env.int("QUEUE_RETRY_BASE_MS", 0..=MAX_DELAY_MS, 1_000)?;
        let max_ms = env.int("QUEUE_RETRY_MAX_MS", 0..=MAX_DELAY_MS, 300_000)?;
        if max_ms < base_ms {
            return Err(ConfigError::new(
                "QUEUE_RETRY_MAX_MS",
                format!("{max_ms} is below QUEUE_RETRY_BASE_MS ({base_ms})"),
            ));
        }
        Ok(Self {
            capacity: env.int("QUEUE_CAPACITY", 1..=100_000_000, 100_000)?,
            lease: LeaseLength::from_millis(lease).expect("the range was checked"),
            max_attempts: MaxAttempts::new(max_attempts).expect("the range was checked"),
            retry: RetryPolicy { base_ms, max_ms },
            idempotency_ttl: Duration::from_secs(env.int(
                "QUEUE_IDEMPOTENCY_TTL_SECONDS",
                1..=2_592_000,
                86_400,
            )?),
            idempotency_max_keys: env.int("QUEUE_IDEMPOTENCY_MAX_KEYS", 1..=10_000_000, 100_000)?,
            reap_interval: Duration::from_millis(env.int(
                "QUEUE_REAP_INTERVAL_MS",
                10..=60_000,
                250,
            )?),
        })
    }

    /// What every store keeps its queue with.
    pub fn settings(&self) -> QueueSettings {
        QueueSettings {
            capacity: self.capacity,
            retry: self.retry,
            idempotency_ttl_ms: u64::try_from(self.idempotency_ttl.as_millis()).unwrap_or(u64::MAX),
            idempotency_max_keys: self.idempotency_max_keys,
        }
    }

    /// What requests that leave a value out get.
    pub fn defaults(&self) -> QueueDefaults {
        QueueDefaults {
            lease: self.lease,
            max_attempts: self.max_attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn out_of_range_settings_are_refused_naming_the_variable() {
        for (var, value) in [
            ("QUEUE_CAPACITY", "0"),
            ("QUEUE_LEASE_MS", "999"),
            ("QUEUE_LEASE_MS", "43200001"),
            ("QUEUE_MAX_ATTEMPTS", "0"),
            ("QUEUE_MAX_ATTEMPTS", "101"),
            ("QUEUE_IDEMPOTENCY_TTL_SECONDS", "0"),
            ("QUEUE_REAP_INTERVAL_MS", "1"),
        ] {
            let err = Config::from_pairs([(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}");
        }
        let err = Config::from_pairs([
            ("QUEUE_RETRY_BASE_MS", "2000"),
            ("QUEUE_RETRY_MAX_MS", "1000"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "QUEUE_RETRY_MAX_MS");
    }

    #[test]
    fn the_defaults_are_the_contracts() {
        let queue = Config::from_pairs([]).expect("defaults").queue;
        assert_eq!(queue.lease.as_millis(), 30_000);
        assert_eq!(queue.max_attempts.get(), 5);
        assert_eq!((queue.retry.base_ms, queue.retry.max_ms), (1_000, 300_000));
        assert_eq!(queue.idempotency_ttl.as_secs(), 86_400);
    }
}
