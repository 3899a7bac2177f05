//! Typed configuration, read once at start-up from the environment (and an optional `.env`).
//!
//! Every setting has a default that works for a local run. Values are parsed into domain types
//! here, so the rest of the server never sees an unparsed string; a bad value stops start-up with
//! a one-line [`ConfigError`] that names the variable. `APP_ENV=production` adds refusals for
//! settings that are only safe in development (a weak `JWT_SECRET`, the demo users).
//!
//! Each area's settings sit in their own module with their defaults and validation: [`server`],
//! [`auth`], [`store`], [`events`], [`stream`], [`compute`], [`queue`]. Tests build a [`Config`]
//! from a map with [`Config::from_lookup`], so no process-global environment is touched.

mod auth;
mod compute;
mod events;
mod queue;
mod server;
mod store;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

pub use auth::{
    AuthConfig, DEFAULT_TOKEN_PARTY, DEMO_USERS, JwtSecret, MIN_PRODUCTION_SECRET_BYTES,
    UserCredential, hash_params_from_lookup,
};
pub use compute::{ComputeConfig, HeavyPool};
pub use events::{DEFAULT_SSE_MAX_CONNECTIONS, EventsConfig};
pub use queue::QueueConfig;
pub use server::{
    CorsOrigins, FD_RESERVE, HTTP2_MAX_CONCURRENT_STREAMS_CEILING, LogFormat,
    MAX_CONNECTIONS_CEILING, ServerConfig, TlsSource, default_max_connections,
};
pub use store::{DEFAULT_REDIS_PREFIX, RedisUrl, StoreConfig};
pub use stream::StreamConfig;

/// A configuration value that could not be accepted. Displays as one line naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with it and what is accepted.
    pub message: String,
}

impl ConfigError {
    fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            message: message.into(),
        }
    }
}

/// Deployment mode: `production` turns on the start-up refusals of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    /// Local runs: random secret when none is set, demo users, any CORS origin.
    Development,
    /// Strict mode: explicit strong secret and users required.
    Production,
}

/// The whole server configuration, by area. See `.env.example` for every variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// `APP_ENV`.
    pub app_env: AppEnv,
    /// Listening, logs, CORS, bodies, connections, the stop, proxies.
    pub server: ServerConfig,
    /// Users, tokens, login budgets, revocations.
    pub auth: AuthConfig,
    /// Where the state lives.
    pub store: StoreConfig,
    /// `/notifications`.
    pub events: EventsConfig,
    /// `/stream`.
    pub stream: StreamConfig,
    /// CPU-heavy work.
    pub compute: ComputeConfig,
    /// The priority queue.
    pub queue: QueueConfig,
}

impl Config {
    /// Reads `.env` (if present) and the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        if let Err(err) = dotenvy::dotenv()
            && !err.not_found()
        {
            return Err(ConfigError::new(".env", err.to_string()));
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a configuration from `(name, value)` pairs, defaults for the rest. For tests.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        let map: HashMap<&str, &str> = pairs.into_iter().collect();
        Self::from_lookup(|name| map.get(name).map(|v| (*v).to_owned()))
    }

    /// Builds a configuration from any variable lookup; unset and empty values take defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let app_env = match env.get("APP_ENV").as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => {
                return Err(ConfigError::new(
                    "APP_ENV",
                    format!("{other:?} is not `development` or `production`"),
                ));
            }
        };
        let config = Self {
            app_env,
            auth: AuthConfig::from_env(&env, app_env)?,
            server: ServerConfig::from_env(&env, app_env)?,
            store: StoreConfig::from_env(&env)?,
            events: EventsConfig::from_env(&env)?,
            stream: StreamConfig::from_env(&env)?,
            compute: ComputeConfig::from_env(&env)?,
            queue: QueueConfig::from_env(&env)?,
        };
        if app_env == AppEnv::Production && config.compute.enable_blocking_demo {
            return Err(ConfigError::new(
                "ENABLE_BLOCKING_DEMO",
                "must be false in production: the demo blocks the async runtime on purpose",
            ));
        }
        Ok(config)
    }

    /// `true` in `APP_ENV=development`.
    pub fn is_development(&self) -> bool {
        self.app_env == AppEnv::Development
    }

    /// Settles `MAX_CONNECTIONS` for a process allowed `fd_limit` open files (`None`: no limit
    /// is known), and checks `SSE_MAX_CONNECTIONS` against it. Called once at start-up, after
    /// the limit was raised as far as it goes.
    ///
    /// Unset, `MAX_CONNECTIONS` is the limit minus [`FD_RESERVE`]. An `SSE_MAX_CONNECTIONS` set
    /// above it is refused, since those streams could never all be open; its default (10 000) is
    /// lowered to it instead, so the server starts on a machine with the common limit of 1 024.
    /// Returns what deserves a warning in the log.
    pub fn fit_to_fd_limit(&mut self, fd_limit: Option<u64>) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        let (max, origin) = match (self.server.max_connections, fd_limit) {
            (Some(max), Some(limit)) => {
                let fits = default_max_connections(limit);
                if max > fits {
                    warnings.push(format!(
                        "MAX_CONNECTIONS={max} is more than the limit of {limit} open files \
                         leaves for connections ({fits}); when descriptors run out, idle \
                         connections are closed to make room"
                    ));
                }
                (max, String::new())
            }
            (Some(max), None) => (max, String::new()),
            (None, Some(limit)) => (
                default_max_connections(limit),
                format!(", the limit of {limit} open files minus a reserve"),
            ),
            (None, None) => (MAX_CONNECTIONS_CEILING, String::new()),
        };
        if self.events.sse_max_connections > max {
            if self.events.sse_max_connections_set {
                return Err(ConfigError::new(
                    "SSE_MAX_CONNECTIONS",
                    format!(
                        "{} is more than MAX_CONNECTIONS ({max}{origin}); lower it, or raise \
                         MAX_CONNECTIONS or the open-file limit (ulimit -n)",
                        self.events.sse_max_connections
                    ),
                ));
            }
            warnings.push(format!(
                "SSE_MAX_CONNECTIONS lowered from its default {} to MAX_CONNECTIONS ({max}{origin})",
                self.events.sse_max_connections
            ));
            self.events.sse_max_connections = max;
        }
        self.server.max_connections = Some(max);
        Ok(warnings)
    }
}

/// Typed access to one lookup function; empty values count as unset.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(
        &self,
        name: &'static str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.get(name)
            .map(|raw| {
                raw.parse()
                    .map_err(|_| ConfigError::new(name, format!("{raw:?} is not {expected}")))
            })
            .transpose()
    }

    fn int<T>(
        &self,
        name: &'static str,
        range: std::ops::RangeInclusive<T>,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        Ok(self.int_opt(name, range)?.unwrap_or(default))
    }

    /// Like [`Env::int`], for a setting whose default is decided later.
    fn int_opt<T>(
        &self,
        name: &'static str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<Option<T>, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let expected = format!("an integer in {}..={}", range.start(), range.end());
        match self.parse::<T>(name, &expected)? {
            Some(v) if range.contains(&v) => Ok(Some(v)),
            Some(v) => Err(ConfigError::new(
                name,
                format!("{v} is out of range; expected {expected}"),
            )),
            None => Ok(None),
        }
    }

    fn bool(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(ConfigError::new(
                name,
                format!("{other:?} is not `true` or `false`"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn defaults_work_for_a_local_run() {
        let config = Config::from_pairs([]).expect("defaults are valid");
        assert_eq!(config.server.port, 3000);
        assert_eq!(config.app_env, AppEnv::Development);
        assert_eq!(config.auth.users.len(), 2);
        assert_eq!(config.server.cors_origins, CorsOrigins::Any);
        assert_eq!(config.auth.jwt_secret.as_bytes().len(), 64);
        assert_eq!(config.store.kind, crate::store::StoreKind::Embedded);
    }

    #[test]
    fn connection_settings_are_fitted_to_the_fd_limit() {
        let mut config = Config::from_pairs([]).expect("defaults are valid");
        assert_eq!(config.server.max_connections, None);
        let warnings = config.fit_to_fd_limit(Some(65_536)).expect("fits");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.server.max_connections, Some(65_536 - FD_RESERVE));
        assert_eq!(
            config.events.sse_max_connections,
            DEFAULT_SSE_MAX_CONNECTIONS
        );
        assert_eq!(config.server.first_request_timeout, Duration::from_secs(10));

        let mut config = Config::from_pairs([]).expect("defaults are valid");
        config.fit_to_fd_limit(None).expect("fits");
        assert_eq!(config.server.max_connections, Some(MAX_CONNECTIONS_CEILING));

        let mut config = Config::from_pairs([("MAX_CONNECTIONS", "5000")]).expect("valid");
        let warnings = config
            .fit_to_fd_limit(Some(1024))
            .expect("fits, with a warning");
        assert_eq!(config.server.max_connections, Some(5000));
        assert!(
            warnings[0].starts_with("MAX_CONNECTIONS=5000"),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_default_stream_cap_is_lowered_to_a_small_fd_limit() {
        let mut config = Config::from_pairs([]).expect("defaults are valid");
        let warnings = config.fit_to_fd_limit(Some(1024)).expect("starts");
        assert_eq!(config.server.max_connections, Some(768));
        assert_eq!(config.events.sse_max_connections, 768);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("SSE_MAX_CONNECTIONS"), "{warnings:?}");

        let mut config = Config::from_pairs([("MAX_CONNECTIONS", "100")]).expect("valid");
        config.fit_to_fd_limit(Some(65_536)).expect("starts");
        assert_eq!(config.events.sse_max_connections, 100);
    }

    #[test]
    fn a_stream_cap_set_above_max_connections_is_refused() {
        let mut config = Config::from_pairs([("SSE_MAX_CONNECTIONS", "5000")]).expect("valid");
        let err = config.fit_to_fd_limit(Some(1024)).unwrap_err();
        assert_eq!(err.var, "SSE_MAX_CONNECTIONS");
        assert!(err.to_string().contains("768"), "{err}");
        assert!(!err.to_string().contains('\n'));

        let mut config =
            Config::from_pairs([("SSE_MAX_CONNECTIONS", "200"), ("MAX_CONNECTIONS", "100")])
                .expect("valid");
        let err = config.fit_to_fd_limit(None).unwrap_err();
        assert_eq!(err.var, "SSE_MAX_CONNECTIONS");

        let mut config =
            Config::from_pairs([("SSE_MAX_CONNECTIONS", "100"), ("MAX_CONNECTIONS", "100")])
                .expect("valid");
        assert!(config.fit_to_fd_limit(Some(1024)).expect("fits").is_empty());
        let err = Config::from_pairs([("MAX_CONNECTIONS", "0")]).unwrap_err();
        assert_eq!(err.var, "MAX_CONNECTIONS");
        let err = Config::from_pairs([("FIRST_REQUEST_TIMEOUT_SECONDS", "0")]).unwrap_err();
        assert_eq!(err.var, "FIRST_REQUEST_TIMEOUT_SECONDS");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = Config::from_pairs([
            ("JWT_SECRET", "super-secret-value"),
            ("AUTH_USERS", "a:hunter2"),
            ("REDIS_URL", "redis://:redis-password@cache:6379"),
        ])
        .expect("valid");
        let printed = format!("{config:?}");
        assert!(!printed.contains("super-secret-value"));
        assert!(!printed.contains("hunter2"));
        assert!(!printed.contains("redis-password"));
        assert!(printed.contains("cache:6379"));
    }
}
