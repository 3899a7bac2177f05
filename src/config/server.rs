//! Serving settings: the listen address, logs, CORS, bodies, connections and their deadlines,
//! the stop, which proxies name the client, HTTPS and HTTP/2, and where `/metrics` is served.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::{AppEnv, ConfigError, Env};
use crate::client_ip::TrustedProxies;

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

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when the output is a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Origins allowed by CORS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`*`).
    Any,
    /// Exactly these origins, e.g. `https://app.example.com`.
    List(Vec<String>),
}

/// Largest `HTTP2_MAX_CONCURRENT_STREAMS` accepted.
pub const HTTP2_MAX_CONCURRENT_STREAMS_CEILING: u32 = 10_000;

/// Where the certificate HTTPS is served with comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE`: PEM files, read at start-up and again on `SIGHUP`.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// `TLS_SELF_SIGNED=true`: a certificate for `localhost` made at start-up, for trying HTTPS
    /// locally (development only).
    SelfSigned,
}

/// How the server listens, answers and stops.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `HOST`: listen address.
    pub host: IpAddr,
    /// `PORT`: listen port (0 picks a free one).
    pub port: u16,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `CORS_ORIGINS`.
    pub cors_origins: CorsOrigins,
    /// `BODY_LIMIT_BYTES`: request body limit.
    pub body_limit_bytes: usize,
    /// `SHUTDOWN_TIMEOUT_SECONDS`: how long in-flight requests may run after a stop signal.
    pub shutdown_timeout: Duration,
    /// `MAX_CONNECTIONS`: open TCP connections; at the cap, idle ones are closed to admit new
    /// ones. `None` until [`super::Config::fit_to_fd_limit`] sizes it from the open-file limit.
    pub max_connections: Option<usize>,
    /// `FIRST_REQUEST_TIMEOUT_SECONDS`: how long a new connection may take to send its first
    /// complete request head.
    pub first_request_timeout: Duration,
    /// `HEADER_READ_TIMEOUT_SECONDS`: longest wait for a request's headers, which is also how
    /// long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// `TRUSTED_PROXIES`: the reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// `BODY_READ_TIMEOUT_SECONDS`: longest wait for a whole request body once its head is in.
    pub body_read_timeout: Duration,
    /// `WRITE_STALL_TIMEOUT_SECONDS`: how long a connection may go without taking any byte of
    /// a response it was sent before it is closed.
    pub write_stall_timeout: Duration,
    /// `MAX_CONNECTIONS_PER_IP`: open connections per peer address; peers in
    /// `TRUSTED_PROXIES` are not capped.
    pub max_connections_per_ip: usize,
    /// `METRICS_ADDR`: when set, `/metrics` is served on this address only.
    pub metrics_addr: Option<SocketAddr>,
    /// `TLS_CERT_FILE` / `TLS_KEY_FILE` or `TLS_SELF_SIGNED`: serve HTTPS; `None` serves plain
    /// HTTP/1.1 and h2c.
    pub tls: Option<TlsSource>,
    /// `HTTP2_MAX_CONCURRENT_STREAMS`: streams one HTTP/2 connection may have open at once.
    pub http2_max_concurrent_streams: u32,
}

impl ServerConfig {
    pub(super) fn from_env(env: &Env<'_>, app_env: AppEnv) -> Result<Self, ConfigError> {
        let production = app_env == AppEnv::Production;
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
        Ok(Self {
            host: env
                .parse("HOST", "an IP address such as 0.0.0.0 or 127.0.0.1")?
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: env.parse("PORT", "an integer 0..=65535")?.unwrap_or(3000),
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
            trusted_proxies: env
                .get("TRUSTED_PROXIES")
                .map(|v| {
                    v.parse()
                        .map_err(|e| ConfigError::new("TRUSTED_PROXIES", e))
                })
                .transpose()?
                .unwrap_or_default(),
            body_read_timeout: Duration::from_secs(env.int(
                "BODY_READ_TIMEOUT_SECONDS",
                1..=3600,
                10,
            )?),
            write_stall_timeout: Duration::from_secs(env.int(
                "WRITE_STALL_TIMEOUT_SECONDS",
                1..=3600,
                30,
            )?),
            max_connections_per_ip: env.int(
                "MAX_CONNECTIONS_PER_IP",
                1..=MAX_CONNECTIONS_CEILING,
                256,
            )?,
            metrics_addr: env.parse(
                "METRICS_ADDR",
                "an address with a port such as 127.0.0.1:9100",
            )?,
            tls: tls_source(env, production)?,
            http2_max_concurrent_streams: env.int(
                "HTTP2_MAX_CONCURRENT_STREAMS",
                1..=HTTP2_MAX_CONCURRENT_STREAMS_CEILING,
                128,
            )?,
        })
    }
}

/// `TLS_CERT_FILE` and `TLS_KEY_FILE` (both or neither), or `TLS_SELF_SIGNED` (development
/// only, and not with the files).
fn tls_source(env: &Env<'_>, production: bool) -> Result<Option<TlsSource>, ConfigError> {
    let self_signed = env.bool("TLS_SELF_SIGNED", false)?;
    match (env.get("TLS_CERT_FILE"), env.get("TLS_KEY_FILE")) {
        (Some(cert), Some(key)) => {
            if self_signed {
                return Err(ConfigError::new(
                    "TLS_SELF_SIGNED",
                    "cannot be used with TLS_CERT_FILE and TLS_KEY_FILE; unset one or the other",
                ));
            }
            Ok(Some(TlsSource::Files {
                cert: cert.into(),
                key: key.into(),
            }))
        }
        (Some(_), None) => Err(ConfigError::new(
            "TLS_KEY_FILE",
            "is required with TLS_CERT_FILE (the PEM file of its private key)",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "TLS_CERT_FILE",
            "is required with TLS_KEY_FILE (the PEM file of its certificate chain)",
        )),
        (None, None) if self_signed && production => Err(ConfigError::new(
            "TLS_SELF_SIGNED",
            "is for trying HTTPS locally and refused in production; set TLS_CERT_FILE and \
             TLS_KEY_FILE",
        )),
        (None, None) => Ok(self_signed.then_some(TlsSource::SelfSigned)),
    }
}

/// The default of `MAX_CONNECTIONS` for a process allowed `fd_limit` open files: the limit
/// minus [`FD_RESERVE`] (a quarter of it when that is less), at least one.
pub fn default_max_connections(fd_limit: u64) -> usize {
    let limit = usize::try_from(fd_limit)
        .unwrap_or(usize::MAX)
        .min(MAX_CONNECTIONS_CEILING);
    (limit - FD_RESERVE.min(limit / 4)).max(1)
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
    use crate::config::Config;

    #[test]
    fn bad_port_names_the_variable() {
        let err = Config::from_pairs([("PORT", "abc")]).unwrap_err();
        assert_eq!(err.var, "PORT");
        assert!(err.to_string().starts_with("invalid configuration: PORT:"));
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn origins_are_parsed_and_a_bad_one_names_the_variable() {
        let config =
            Config::from_pairs([("CORS_ORIGINS", "http://localhost:5173,https://x.example")])
                .expect("valid");
        assert_eq!(
            config.server.cors_origins,
            CorsOrigins::List(vec![
                "http://localhost:5173".into(),
                "https://x.example".into()
            ])
        );
        assert_eq!(
            Config::from_pairs([("CORS_ORIGINS", "ftp://x")])
                .unwrap_err()
                .var,
            "CORS_ORIGINS"
        );
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
    fn tls_needs_both_files_and_self_signed_is_for_development() {
        let config = Config::from_pairs([]).expect("defaults are valid");
        assert_eq!(config.server.tls, None);
        let config = Config::from_pairs([("TLS_CERT_FILE", "c.pem"), ("TLS_KEY_FILE", "k.pem")])
            .expect("valid");
        assert_eq!(
            config.server.tls,
            Some(TlsSource::Files {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        let err = Config::from_pairs([("TLS_CERT_FILE", "c.pem")]).unwrap_err();
        assert_eq!(err.var, "TLS_KEY_FILE");
        let err = Config::from_pairs([("TLS_KEY_FILE", "k.pem")]).unwrap_err();
        assert_eq!(err.var, "TLS_CERT_FILE");
        let config = Config::from_pairs([("TLS_SELF_SIGNED", "true")]).expect("valid");
        assert_eq!(config.server.tls, Some(TlsSource::SelfSigned));
        let lookup = |name: &str| (name == "TLS_SELF_SIGNED").then(|| "true".to_owned());
        let err = tls_source(&Env(&lookup), true).unwrap_err();
        assert_eq!(err.var, "TLS_SELF_SIGNED", "{err}");
    }

    #[test]
    fn hardening_settings_have_their_defaults_and_ranges() {
        let server = Config::from_pairs([]).expect("defaults are valid").server;
        assert_eq!(server.body_read_timeout, Duration::from_secs(10));
        assert_eq!(server.write_stall_timeout, Duration::from_secs(30));
        assert_eq!(server.max_connections_per_ip, 256);
        assert_eq!(server.metrics_addr, None);
        assert_eq!(server.http2_max_concurrent_streams, 128);
        for var in [
            "BODY_READ_TIMEOUT_SECONDS",
            "WRITE_STALL_TIMEOUT_SECONDS",
            "MAX_CONNECTIONS_PER_IP",
            "HTTP2_MAX_CONCURRENT_STREAMS",
        ] {
            assert_eq!(Config::from_pairs([(var, "0")]).unwrap_err().var, var);
        }
        let err = Config::from_pairs([("METRICS_ADDR", "localhost")]).unwrap_err();
        assert_eq!(err.var, "METRICS_ADDR");
        let server = Config::from_pairs([("METRICS_ADDR", "127.0.0.1:9100")])
            .expect("valid")
            .server;
        assert_eq!(server.metrics_addr, Some(([127, 0, 0, 1], 9100).into()));
    }

    #[test]
    fn trusted_proxies_are_parsed_and_a_bad_one_names_the_variable() {
        let config = Config::from_pairs([]).expect("defaults are valid");
        assert!(config.server.trusted_proxies.is_empty());
        let config =
            Config::from_pairs([("TRUSTED_PROXIES", "127.0.0.1/32, 10.0.0.0/8")]).expect("valid");
        assert!(config.server.trusted_proxies.contains([10, 1, 2, 3].into()));
        let err = Config::from_pairs([("TRUSTED_PROXIES", "10.0.0.0/8,nginx")]).unwrap_err();
        assert_eq!(err.var, "TRUSTED_PROXIES");
        assert!(err.to_string().contains("\"nginx\""), "{err}");
        assert!(!err.to_string().contains('\n'));
    }
}
