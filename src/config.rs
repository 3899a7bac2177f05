//! Typed configuration, read once at start-up from the environment (and an optional `.env`).
//!
//! Every setting has a default that works for a local run. Values are parsed into domain types
//! here, so the rest of the server never sees an unparsed string; a bad value stops start-up with
//! a one-line [`ConfigError`] that names the variable. `APP_ENV=production` adds refusals for
//! settings that are only safe in development (a weak `JWT_SECRET`, the demo users).
//!
//! Tests build a [`Config`] from a map with [`Config::from_lookup`], so no process-global
//! environment is touched.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rand::RngCore;

use crate::client_ip::TrustedProxies;
use crate::store::StoreKind;

/// Shortest `JWT_SECRET` accepted in production (HS256 wants a key at least as long as its hash).
pub const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

/// The users of the original demo, available in development only.
pub const DEMO_USERS: [(&str, &str); 2] = [("admin", "admin123"), ("user", "user123")];

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

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when the output is a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

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

/// Origins allowed by CORS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`*`).
    Any,
    /// Exactly these origins, e.g. `https://app.example.com`.
    List(Vec<String>),
}

/// A user allowed to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct UserCredential {
    /// Login name.
    pub username: String,
    /// Password, compared in constant time at login.
    pub password: String,
}

impl fmt::Debug for UserCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The HS256 signing key. Its `Debug` never prints the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret(Vec<u8>);

impl JwtSecret {
    /// Wraps raw key bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn random() -> Self {
        let mut bytes = vec![0u8; 64];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JwtSecret(<{} bytes>)", self.0.len())
    }
}

/// A Redis URL; its `Debug` hides a password it may carry (`redis://:password@host`).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL.
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

/// The whole server configuration. See `.env.example` for every variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`: listen address.
    pub host: IpAddr,
    /// `PORT`: listen port (0 picks a free one).
    pub port: u16,
    /// `APP_ENV`.
    pub app_env: AppEnv,
    /// `JWT_SECRET` (random per start in development when unset).
    pub jwt_secret: JwtSecret,
    /// `JWT_TTL_SECONDS`: token lifetime.
    pub jwt_ttl: Duration,
    /// `AUTH_USERS`: `name:password` pairs (the demo users in development when unset).
    pub auth_users: Vec<UserCredential>,
    /// `LOGIN_MAX_PER_MINUTE`: failed-login budget per client IP.
    pub login_max_per_minute: u32,
    /// `LOGIN_SUCCESS_MAX_PER_MINUTE`: successful logins allowed per client IP and, separately,
    /// per account.
    pub login_success_max_per_minute: u32,
    /// `REVOCATION_LIST_MAX`: most revoked tokens remembered at once; a logout past it is
    /// refused (503) rather than an older revocation forgotten.
    pub revocation_list_max: usize,
    /// `TRUSTED_PROXIES`: the reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `CORS_ORIGINS`.
    pub cors_origins: CorsOrigins,
    /// `BODY_LIMIT_BYTES`: request body limit.
    pub body_limit_bytes: usize,
    /// `SHUTDOWN_TIMEOUT_SECONDS`: how long in-flight requests may run after a stop signal.
    pub shutdown_timeout: Duration,
    /// `MAX_CONNECTIONS`: open TCP connections; at the cap, idle ones are closed to admit new
    /// ones. `None` until [`Config::fit_to_fd_limit`] sizes it from the file-descriptor limit.
    pub max_connections: Option<usize>,
    /// `FIRST_REQUEST_TIMEOUT_SECONDS`: how long a new connection may take to send its first
    /// complete request head.
    pub first_request_timeout: Duration,
    /// `HEADER_READ_TIMEOUT_SECONDS`: longest wait for a request's headers, which is also how
    /// long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// `TOKEN_CACHE_CAPACITY`: verified tokens remembered (0 verifies every request anew).
    pub token_cache_capacity: usize,
    /// `STORE`: where the queue, the revocations and the events live.
    pub store: StoreKind,
    /// `FSYNC_COMMITS`: the embedded store syncs each group of commits to disk before answering.
    pub fsync_commits: bool,
    /// `DATA_DIR`: where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// `REDIS_URL`: the Redis server of `STORE=redis` (required then, unused otherwise).
    pub redis_url: Option<RedisUrl>,
    /// `REDIS_PREFIX`: the key prefix that lets several deployments share one Redis.
    pub redis_prefix: String,
    /// `STREAM_MAX_ITEMS`: cap on `totalItems` of `/stream`.
    pub stream_max_items: u64,
    /// `NOTIFY_INTERVAL_MS`: period of the notification producer.
    pub notify_interval: Duration,
    /// `SSE_MAX_CONNECTIONS`: open event-stream cap (at most `MAX_CONNECTIONS`).
    pub sse_max_connections: usize,
    /// Whether `SSE_MAX_CONNECTIONS` was set, rather than defaulted: only the default is lowered
    /// to fit `MAX_CONNECTIONS`.
    sse_max_connections_set: bool,
    /// `SSE_REPLAY_BUFFER`: events retained for `Last-Event-ID`.
    pub sse_replay_buffer: usize,
    /// `SSE_KEEPALIVE_SECONDS`: period of keep-alive comments on event streams.
    pub sse_keepalive: Duration,
    /// `HEAVY_POOL`: default pool of `/heavy-task-worker`.
    pub heavy_pool: HeavyPool,
    /// `HEAVY_WORKER_THREADS`: rayon pool size.
    pub heavy_worker_threads: usize,
    /// `HEAVY_MAX_INFLIGHT`: heavy jobs running plus waiting.
    pub heavy_max_inflight: usize,
    /// `HEAVY_TIMEOUT_SECONDS`: per-job deadline (a `Duration`, so tests can set less than a second).
    pub heavy_timeout: Duration,
    /// `CHILD_MAX_N`: largest `n` of `/heavy-task-child`.
    pub child_max_n: u32,
    /// `WORKER_MAX_N`: largest `n` of `/heavy-task-worker`.
    pub worker_max_n: u32,
    /// `ENABLE_BLOCKING_DEMO`: mount the route that computes on the async runtime itself.
    pub enable_blocking_demo: bool,
    /// `QUEUE_CAPACITY`: priority-queue size cap.
    pub queue_capacity: usize,
    /// The executable started in worker mode by `/heavy-task-child`. Not read from the
    /// environment: the running binary by default; tests point it at the built `backflow` binary.
    pub worker_exe: Option<PathBuf>,
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
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());

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
        let production = app_env == AppEnv::Production;

        let jwt_secret = match env.get("JWT_SECRET") {
            Some(s) if production && s.len() < MIN_PRODUCTION_SECRET_BYTES => {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    format!("must be at least {MIN_PRODUCTION_SECRET_BYTES} bytes in production"),
                ));
            }
            Some(s) => JwtSecret::new(s.into_bytes()),
            None if production => {
                return Err(ConfigError::new("JWT_SECRET", "is required in production"));
            }
            None => JwtSecret::random(),
        };

        let auth_users = match env.get("AUTH_USERS") {
            Some(raw) => parse_users(&raw)?,
            None if production => {
                return Err(ConfigError::new(
                    "AUTH_USERS",
                    "is required in production (the demo users are development-only)",
                ));
            }
            None => DEMO_USERS
                .iter()
                .map(|(u, p)| UserCredential {
                    username: (*u).to_owned(),
                    password: (*p).to_owned(),
                })
                .collect(),
        };
        if production
            && auth_users
                .iter()
                .any(|u| DEMO_USERS.contains(&(u.username.as_str(), u.password.as_str())))
        {
            return Err(ConfigError::new(
                "AUTH_USERS",
                "the demo users must not be enabled in production",
            ));
        }

        let log_format = match env.get("LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("{other:?} is not `pretty` or `json`"),
                ));
            }
        };

        let cors_origins = match env.get("CORS_ORIGINS") {
            Some(raw) if raw.trim() == "*" => {
                if production {
                    return Err(ConfigError::new(
                        "CORS_ORIGINS",
                        "`*` is not allowed in production; list the origins",
                    ));
                }
                CorsOrigins::Any
            }
            Some(raw) => CorsOrigins::List(parse_origins(&raw)?),
            None if production => CorsOrigins::List(Vec::new()),
            None => CorsOrigins::Any,
        };

        let config = Self {
            host: env
                .parse("HOST", "an IP address such as 0.0.0.0 or 127.0.0.1")?
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: env.parse("PORT", "an integer 0..=65535")?.unwrap_or(3000),
            app_env,
            jwt_secret,
            jwt_ttl: Duration::from_secs(env.int("JWT_TTL_SECONDS", 1..=31_536_000, 3600)?),
            auth_users,
            login_max_per_minute: env.int("LOGIN_MAX_PER_MINUTE", 1..=1_000_000, 10)?,
            login_success_max_per_minute: env.int(
                "LOGIN_SUCCESS_MAX_PER_MINUTE",
                1..=1_000_000,
                60,
            )?,
            revocation_list_max: env.int("REVOCATION_LIST_MAX", 1..=100_000_000, 1_000_000)?,
            trusted_proxies: env
                .get("TRUSTED_PROXIES")
                .map(|v| {
                    v.parse()
                        .map_err(|e| ConfigError::new("TRUSTED_PROXIES", e))
                })
                .transpose()?
                .unwrap_or_default(),
            log_format,
            cors_origins,
            body_limit_bytes: env.int("BODY_LIMIT_BYTES", 1..=1 << 30, 65_536)?,
            shutdown_timeout: Duration::from_secs(env.int(
                "SHUTDOWN_TIMEOUT_SECONDS",
                0..=3600,
                10,
            )?),
            max_connections: env.int_opt("MAX_CONNECTIONS", 1..=MAX_CONNECTIONS_CEILING)?,
            first_request_timeout: Duration::from_secs(env.int(
                "FIRST_REQUEST_TIMEOUT_SECONDS",
                1..=3600,
                10,
            )?),
            header_read_timeout: Duration::from_secs(env.int(
                "HEADER_READ_TIMEOUT_SECONDS",
                1..=3600,
                30,
            )?),
            token_cache_capacity: env.int("TOKEN_CACHE_CAPACITY", 0..=1_000_000, 10_000)?,
            store: env
                .get("STORE")
                .map(|v| v.parse().map_err(|e| ConfigError::new("STORE", e)))
                .transpose()?
                .unwrap_or(StoreKind::Embedded),
            fsync_commits: env.bool("FSYNC_COMMITS", false)?,
            redis_url: env.get("REDIS_URL").map(RedisUrl),
            redis_prefix: env.get("REDIS_PREFIX").map_or_else(
                || Ok(DEFAULT_REDIS_PREFIX.to_owned()),
                |prefix| parse_redis_prefix(&prefix),
            )?,
            data_dir: env
                .get("DATA_DIR")
                .map_or_else(|| PathBuf::from("./data"), PathBuf::from),
            stream_max_items: env.int("STREAM_MAX_ITEMS", 0..=u64::MAX >> 1, 10_000_000)?,
            notify_interval: Duration::from_millis(env.int(
                "NOTIFY_INTERVAL_MS",
                1..=86_400_000,
                2000,
            )?),
            sse_max_connections: env.int(
                "SSE_MAX_CONNECTIONS",
                0..=1_000_000,
                DEFAULT_SSE_MAX_CONNECTIONS,
            )?,
            sse_max_connections_set: env.get("SSE_MAX_CONNECTIONS").is_some(),
            sse_replay_buffer: env.int("SSE_REPLAY_BUFFER", 0..=1_000_000, 1000)?,
            sse_keepalive: Duration::from_secs(env.int("SSE_KEEPALIVE_SECONDS", 1..=15, 15)?),
            heavy_pool: env
                .get("HEAVY_POOL")
                .map(|v| v.parse().map_err(|e| ConfigError::new("HEAVY_POOL", e)))
                .transpose()?
                .unwrap_or(HeavyPool::Rayon),
            heavy_worker_threads: env.int("HEAVY_WORKER_THREADS", 1..=1024, cpus)?,
            heavy_max_inflight: env.int("HEAVY_MAX_INFLIGHT", 1..=100_000, 2 * cpus)?,
            heavy_timeout: Duration::from_secs(env.int("HEAVY_TIMEOUT_SECONDS", 1..=3600, 30)?),
            child_max_n: env.int("CHILD_MAX_N", 0..=93, 45)?,
            worker_max_n: env.int("WORKER_MAX_N", 0..=93, 50)?,
            enable_blocking_demo: env.bool("ENABLE_BLOCKING_DEMO", false)?,
            queue_capacity: env.int("QUEUE_CAPACITY", 1..=100_000_000, 100_000)?,
            worker_exe: None,
        };
        if config.store == StoreKind::Redis {
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
        let (max, origin) = match (self.max_connections, fd_limit) {
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
        if self.sse_max_connections > max {
            if self.sse_max_connections_set {
                return Err(ConfigError::new(
                    "SSE_MAX_CONNECTIONS",
                    format!(
                        "{} is more than MAX_CONNECTIONS ({max}{origin}); lower it, or raise \
                         MAX_CONNECTIONS or the open-file limit (ulimit -n)",
                        self.sse_max_connections
                    ),
                ));
            }
            warnings.push(format!(
                "SSE_MAX_CONNECTIONS lowered from its default {} to MAX_CONNECTIONS ({max}{origin})",
                self.sse_max_connections
            ));
            self.sse_max_connections = max;
        }
        self.max_connections = Some(max);
        Ok(warnings)
    }
}

/// File descriptors that the default of `MAX_CONNECTIONS` leaves for everything else the server
/// opens: the listener, the standard streams and the runtime's own (epoll, wake-ups); files in
/// `DATA_DIR` and the store's connections (a database, its journal and shared memory, Redis
/// connections); the pipes of `/heavy-task-child` workers (up to four each while one starts);
/// and the sockets the server holds past the cap for a moment (up to 32 idle connections being
/// closed to make room, up to 32 refused ones being answered). At most a quarter of a small
/// limit.
pub const FD_RESERVE: usize = 256;

/// Largest `MAX_CONNECTIONS` accepted, and its value when no open-file limit is known.
pub const MAX_CONNECTIONS_CEILING: usize = 10_000_000;

/// `SSE_MAX_CONNECTIONS` when unset.
pub const DEFAULT_SSE_MAX_CONNECTIONS: usize = 10_000;

/// The default of `MAX_CONNECTIONS` for a process allowed `fd_limit` open files: the limit
/// minus [`FD_RESERVE`] (a quarter of it when that is less), at least one.
pub fn default_max_connections(fd_limit: u64) -> usize {
    let limit = usize::try_from(fd_limit)
        .unwrap_or(usize::MAX)
        .min(MAX_CONNECTIONS_CEILING);
    (limit - FD_RESERVE.min(limit / 4)).max(1)
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

/// `REDIS_PREFIX` when unset.
pub const DEFAULT_REDIS_PREFIX: &str = "backflow";

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

fn parse_users(raw: &str) -> Result<Vec<UserCredential>, ConfigError> {
    let mut users: Vec<UserCredential> = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (username, password) = pair
            .split_once(':')
            .filter(|(u, p)| !u.is_empty() && !p.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "AUTH_USERS",
                    "expected comma-separated `name:password` pairs",
                )
            })?;
        if users.iter().any(|u| u.username == username) {
            return Err(ConfigError::new(
                "AUTH_USERS",
                format!("user {username:?} is listed twice"),
            ));
        }
        users.push(UserCredential {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    if users.is_empty() {
        return Err(ConfigError::new("AUTH_USERS", "lists no user"));
    }
    Ok(users)
}

fn parse_origins(raw: &str) -> Result<Vec<String>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                && axum::http::HeaderValue::from_str(origin).is_ok()
                && !origin.ends_with('/');
            if valid {
                Ok(origin.to_owned())
            } else {
                Err(ConfigError::new(
                    "CORS_ORIGINS",
                    format!("{origin:?} is not an origin such as https://app.example.com"),
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_for_a_local_run() {
        let config = Config::from_pairs([]).expect("defaults are valid");
        assert_eq!(config.port, 3000);
        assert_eq!(config.app_env, AppEnv::Development);
        assert_eq!(config.auth_users.len(), 2);
        assert_eq!(config.cors_origins, CorsOrigins::Any);
        assert_eq!(config.jwt_secret.as_bytes().len(), 64);
    }

    #[test]
    fn bad_port_names_the_variable() {
        let err = Config::from_pairs([("PORT", "abc")]).unwrap_err();
        assert_eq!(err.var, "PORT");
        assert!(err.to_string().starts_with("invalid configuration: PORT:"));
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn max_connections_default_keeps_a_reserve_of_the_fd_limit() {
        assert_eq!(default_max_connections(1024), 1024 - FD_RESERVE);
        assert_eq!(default_max_connections(1_048_576), 1_048_576 - FD_RESERVE);
        // A small limit keeps three quarters for connections.
        assert_eq!(default_max_connections(256), 192);
        assert_eq!(default_max_connections(3), 3);
        assert_eq!(default_max_connections(0), 1);
        assert_eq!(
            default_max_connections(u64::MAX),
            MAX_CONNECTIONS_CEILING - FD_RESERVE
        );
    }

    #[test]
    fn connection_settings_are_fitted_to_the_fd_limit() {
        let mut config = Config::from_pairs([]).expect("defaults are valid");
        assert_eq!(config.max_connections, None);
        let warnings = config.fit_to_fd_limit(Some(65_536)).expect("fits");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.max_connections, Some(65_536 - FD_RESERVE));
        assert_eq!(config.sse_max_connections, DEFAULT_SSE_MAX_CONNECTIONS);
        assert_eq!(config.first_request_timeout, Duration::from_secs(10));

        let mut config = Config::from_pairs([]).expect("defaults are valid");
        config.fit_to_fd_limit(None).expect("fits");
        assert_eq!(config.max_connections, Some(MAX_CONNECTIONS_CEILING));

        let mut config = Config::from_pairs([("MAX_CONNECTIONS", "5000")]).expect("valid");
        let warnings = config
            .fit_to_fd_limit(Some(1024))
            .expect("fits, with a warning");
        assert_eq!(config.max_connections, Some(5000));
        assert!(
            warnings[0].starts_with("MAX_CONNECTIONS=5000"),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_default_stream_cap_is_lowered_to_a_small_fd_limit() {
        let mut config = Config::from_pairs([]).expect("defaults are valid");
        let warnings = config.fit_to_fd_limit(Some(1024)).expect("starts");
        assert_eq!(config.max_connections, Some(768));
        assert_eq!(config.sse_max_connections, 768);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("SSE_MAX_CONNECTIONS"), "{warnings:?}");

        let mut config = Config::from_pairs([("MAX_CONNECTIONS", "100")]).expect("valid");
        config.fit_to_fd_limit(Some(65_536)).expect("starts");
        assert_eq!(config.sse_max_connections, 100);
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
    fn out_of_range_limit_is_refused() {
        let err = Config::from_pairs([("QUEUE_CAPACITY", "0")]).unwrap_err();
        assert_eq!(err.var, "QUEUE_CAPACITY");
    }

    #[test]
    fn production_requires_a_strong_secret_and_real_users() {
        let users = ("AUTH_USERS", "ops:correct-horse-battery-staple");
        let strong = ("JWT_SECRET", "0123456789abcdef0123456789abcdef");
        let err = Config::from_pairs([("APP_ENV", "production"), users]).unwrap_err();
        assert_eq!(err.var, "JWT_SECRET");
        let err = Config::from_pairs([("APP_ENV", "production"), users, ("JWT_SECRET", "short")])
            .unwrap_err();
        assert_eq!(err.var, "JWT_SECRET");
        let err = Config::from_pairs([("APP_ENV", "production"), strong]).unwrap_err();
        assert_eq!(err.var, "AUTH_USERS");
        let err = Config::from_pairs([
            ("APP_ENV", "production"),
            strong,
            ("AUTH_USERS", "admin:admin123"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "AUTH_USERS");
        let ok = Config::from_pairs([("APP_ENV", "production"), strong, users])
            .expect("valid production config");
        assert_eq!(ok.cors_origins, CorsOrigins::List(Vec::new()));
    }

    #[test]
    fn users_and_origins_are_parsed() {
        let config = Config::from_pairs([
            ("AUTH_USERS", "a:1, b:2"),
            ("CORS_ORIGINS", "http://localhost:5173,https://x.example"),
        ])
        .expect("valid");
        assert_eq!(config.auth_users[1].username, "b");
        assert_eq!(
            config.cors_origins,
            CorsOrigins::List(vec![
                "http://localhost:5173".into(),
                "https://x.example".into()
            ])
        );
        assert_eq!(
            Config::from_pairs([("AUTH_USERS", "nopass")])
                .unwrap_err()
                .var,
            "AUTH_USERS"
        );
        assert_eq!(
            Config::from_pairs([("CORS_ORIGINS", "ftp://x")])
                .unwrap_err()
                .var,
            "CORS_ORIGINS"
        );
    }

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
        assert_eq!(ok.store, StoreKind::Redis);
        assert_eq!(ok.redis_prefix, "shop-eu.1");
        assert_eq!(
            Config::from_pairs([]).expect("defaults").redis_prefix,
            DEFAULT_REDIS_PREFIX
        );
    }

    #[test]
    fn trusted_proxies_are_parsed_and_a_bad_one_names_the_variable() {
        let config = Config::from_pairs([]).expect("defaults are valid");
        assert!(config.trusted_proxies.is_empty());
        let config =
            Config::from_pairs([("TRUSTED_PROXIES", "127.0.0.1/32, 10.0.0.0/8")]).expect("valid");
        assert!(config.trusted_proxies.contains([10, 1, 2, 3].into()));
        let err = Config::from_pairs([("TRUSTED_PROXIES", "10.0.0.0/8,nginx")]).unwrap_err();
        assert_eq!(err.var, "TRUSTED_PROXIES");
        assert!(err.to_string().contains("\"nginx\""), "{err}");
        assert!(!err.to_string().contains('\n'));
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
