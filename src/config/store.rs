//! Where the state lives: the store, the embedded store's durability and directory, and the
//! Redis server and prefix.

use std::fmt;
use std::path::PathBuf;

use super::{ConfigError, Env};
use crate::store::StoreKind;

/// `REDIS_PREFIX` when unset.
pub const DEFAULT_REDIS_PREFIX: &str = "backflow";

/// The store and its settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `STORE`: where the queue, the revocations and the events live.
    pub kind: StoreKind,
    /// `FSYNC_COMMITS`: the embedded store syncs each group of commits to disk before answering.
    pub fsync_commits: bool,
    /// `DATA_DIR`: where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// `REDIS_URL`: the Redis server of `STORE=redis` (required then, unused otherwise).
    pub redis_url: Option<RedisUrl>,
    /// `REDIS_PREFIX`: the key prefix that lets several deployments share one Redis.
    pub redis_prefix: String,
}

impl StoreConfig {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let config = Self {
            kind: env
                .get("STORE")
                .map(|v| v.parse().map_err(|e| ConfigError::new("STORE", e)))
                .transpose()?
                .unwrap_or(StoreKind::Embedded),
            fsync_commits: env.bool("FSYNC_COMMITS", false)?,
            data_dir: env
                .get("DATA_DIR")
                .map_or_else(|| PathBuf::from("./data"), PathBuf::from),
            redis_url: env.get("REDIS_URL").map(RedisUrl),
            redis_prefix: env.get("REDIS_PREFIX").map_or_else(
                || Ok(DEFAULT_REDIS_PREFIX.to_owned()),
                |prefix| parse_redis_prefix(&prefix),
            )?,
        };
        if config.kind == StoreKind::Redis {
            match config.redis_url.as_ref().map(RedisUrl::as_str) {
                None => {
                    return Err(ConfigError::new(
                        "REDIS_URL",
                        "is required with STORE=redis, e.g. redis://127.0.0.1:6379",
                    ));
                }
                Some(url) if !url.starts_with("redis://") && !url.starts_with("redis+unix://") => {
                    return Err(ConfigError::new(
                        "REDIS_URL",
                        format!("{url:?} is not a URL such as redis://127.0.0.1:6379"),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(config)
    }
}

/// A Redis URL; its `Debug` hides a password it may carry (`redis://:password@host`).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.split_once('@') {
            Some((_, host)) => write!(f, "RedisUrl(redis://<credentials>@{host})"),
            None => write!(f, "RedisUrl({})", self.0),
        }
    }
}

/// A key prefix: letters, digits and `-_.:`, 1 to 64 of them (it becomes part of every key and
/// of a Redis Cluster hash tag, so no braces or spaces).
fn parse_redis_prefix(raw: &str) -> Result<String, ConfigError> {
    let valid = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(ConfigError::new(
            "REDIS_PREFIX",
            format!("{raw:?} must be 1 to 64 letters, digits or `-_.:`"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_redis_store_needs_a_url_and_a_plain_prefix() {
        let err = Config::from_pairs([("STORE", "redis")]).unwrap_err();
        assert_eq!(err.var, "REDIS_URL");
        let err =
            Config::from_pairs([("STORE", "redis"), ("REDIS_URL", "localhost:6379")]).unwrap_err();
        assert_eq!(err.var, "REDIS_URL");
        let err = Config::from_pairs([("REDIS_PREFIX", "a b")]).unwrap_err();
        assert_eq!(err.var, "REDIS_PREFIX");
        let ok = Config::from_pairs([
            ("STORE", "redis"),
            ("REDIS_URL", "redis://127.0.0.1:6379/0"),
            ("REDIS_PREFIX", "shop-eu.1"),
        ])
        .expect("valid");
        assert_eq!(ok.store.kind, StoreKind::Redis);
        assert_eq!(ok.store.redis_prefix, "shop-eu.1");
        assert_eq!(
            Config::from_pairs([]).expect("defaults").store.redis_prefix,
            DEFAULT_REDIS_PREFIX
        );
    }

    #[test]
    fn an_unknown_store_names_the_variable() {
        let err = Config::from_pairs([("STORE", "postgres")]).unwrap_err();
        assert_eq!(err.var, "STORE");
        assert!(
            err.to_string().contains("`embedded`, `memory` or `redis`"),
            "{err}"
        );
    }
}
