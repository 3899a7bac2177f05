//! `/stream` settings.

use super::{ConfigError, Env};

/// `/stream`.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// `STREAM_MAX_ITEMS`: cap on `totalItems`.
    pub max_items: u64,
    /// `STREAM_MAX_CONCURRENT`: `/stream` responses open at once; the next is refused.
    pub max_concurrent: usize,
}

impl StreamConfig {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            max_items: env.int("STREAM_MAX_ITEMS", 0..=u64::MAX >> 1, 10_000_000)?,
            max_concurrent: env.int("STREAM_MAX_CONCURRENT", 1..=1_000_000, 256)?,
        })
    }
}
