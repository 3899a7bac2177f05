//! Priority-queue settings.

use super::{ConfigError, Env};

/// `/enqueue`, `/dequeue`, `/queue/status`.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// `QUEUE_CAPACITY`: most tasks queued at once.
    pub capacity: usize,
}

impl QueueConfig {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            capacity: env.int("QUEUE_CAPACITY", 1..=100_000_000, 100_000)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn an_out_of_range_capacity_is_refused() {
        let err = Config::from_pairs([("QUEUE_CAPACITY", "0")]).unwrap_err();
        assert_eq!(err.var, "QUEUE_CAPACITY");
    }
}
