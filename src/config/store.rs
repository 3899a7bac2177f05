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
                Some(url) if !REDIS_SCHEMES.iter().any(|scheme| url.starts_with(scheme)) => {
                    return Err(ConfigError::new(
                        "REDIS_URL",
                        format!(
                            "{:?} is not a URL such as redis://127.0.0.1:6379, \
                             rediss://cache:6380 (TLS) or redis+unix:///run/redis.sock",
                            redact(url)
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(config)
    }
}

/// The URL schemes of `REDIS_URL`: plain TCP, TLS, and a Unix socket.
const REDIS_SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];

/// A Redis URL. Its `Debug` and `Display` hide the credentials it may carry, in any of the
/// forms the client accepts: `redis://user:password@host`, `rediss://:password@host` and
/// `redis+unix:///path?user=u&pass=password`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the connection is to use TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("rediss://")
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", redact(&self.0))
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

/// `url` without its credentials: whatever stands between `://` and the last `@` (a password
/// may hold an unescaped `/` or `@`), and the values of `user`, `pass` and `password` query
/// parameters.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = match rest.rsplit_once('@') {
        Some((_, host)) => format!("<credentials>@{host}"),
        None => rest.to_owned(),
    };
    let (head, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest.as_str(), None),
    };
    let mut redacted = if scheme.is_empty() {
        head.to_owned()
    } else {
        format!("{scheme}://{head}")
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if ["user", "pass", "password"].contains(&name) => {
                    format!("{name}=<redacted>")
                }
                _ => pair.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&pairs.join("&"));
    }
    redacted
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
    fn no_form_of_redis_url_shows_its_password() {
        for url in [
            "redis://:s3cret@cache:6379/0",
            "redis://app:s3cret@cache:6379",
            "rediss://app:s3cret@cache:6380",
            "redis://:s3/cr@t@cache:6379",
            "redis+unix:///run/redis.sock?db=1&pass=s3cret",
            "unix:///run/redis.sock?user=app&pass=s3cret",
            "redis://cache:6379?password=s3cret&protocol=resp3",
        ] {
            let shown = [
                format!("{:?}", RedisUrl(url.into())),
                RedisUrl(url.into()).to_string(),
            ];
            for shown in shown {
                assert!(!shown.contains("s3"), "{url} shown as {shown}");
                assert!(
                    shown.contains("cache") || shown.contains("redis.sock"),
                    "{shown}"
                );
            }
        }
        let err = Config::from_pairs([("STORE", "redis"), ("REDIS_URL", "http://:s3cret@cache")])
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let tls = Config::from_pairs([("STORE", "redis"), ("REDIS_URL", "rediss://cache:6380")])
            .expect("TLS is accepted");
        assert!(tls.store.redis_url.expect("a URL").is_tls());
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
