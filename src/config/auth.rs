//! Authentication settings: the signing key, the users, token lifetime, login budgets and the
//! bounds of the revocation list and the token cache.

use std::fmt;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::time::Duration;

use rand::RngCore;

use super::{AppEnv, ConfigError, Env};

/// Shortest `JWT_SECRET` accepted in production (HS256 wants a key at least as long as its hash).
pub const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

/// What a per-minute login budget may be: at least one attempt, so a budget is never a lockout.
const BUDGETS: RangeInclusive<NonZeroU32> = nonzero(1)..=nonzero(1_000_000);

/// `n` as a budget; a compile-time error for 0.
const fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("budgets are written as positive literals")
}

/// The users of the original demo, available in development only.
pub const DEMO_USERS: [(&str, &str); 2] = [("admin", "admin123"), ("user", "user123")];

/// Login, tokens and revocation.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `JWT_SECRET` (random per start in development when unset).
    pub jwt_secret: JwtSecret,
    /// `JWT_TTL_SECONDS`: token lifetime.
    pub jwt_ttl: Duration,
    /// `AUTH_USERS`: `name:password` pairs (the demo users in development when unset).
    pub users: Vec<UserCredential>,
    /// `LOGIN_MAX_PER_MINUTE`: failed-login budget per client IP.
    pub login_max_per_minute: NonZeroU32,
    /// `LOGIN_SUCCESS_MAX_PER_MINUTE`: successful logins allowed per client IP and, separately,
    /// per account.
    pub login_success_max_per_minute: NonZeroU32,
    /// `REVOCATION_LIST_MAX`: most revoked tokens remembered at once; a logout past it is
    /// refused (503) rather than an older revocation forgotten.
    pub revocation_list_max: usize,
    /// `TOKEN_CACHE_CAPACITY`: verified tokens remembered (0 verifies every request anew).
    pub token_cache_capacity: usize,
}

impl AuthConfig {
    pub(super) fn from_env(env: &Env<'_>, app_env: AppEnv) -> Result<Self, ConfigError> {
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
        let users = match env.get("AUTH_USERS") {
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
            && users
                .iter()
                .any(|u| DEMO_USERS.contains(&(u.username.as_str(), u.password.as_str())))
        {
            return Err(ConfigError::new(
                "AUTH_USERS",
                "the demo users must not be enabled in production",
            ));
        }
        Ok(Self {
            jwt_secret,
            jwt_ttl: Duration::from_secs(env.int("JWT_TTL_SECONDS", 1..=31_536_000, 3600)?),
            users,
            login_max_per_minute: env.int("LOGIN_MAX_PER_MINUTE", BUDGETS, nonzero(10))?,
            login_success_max_per_minute: env.int(
                "LOGIN_SUCCESS_MAX_PER_MINUTE",
                BUDGETS,
                nonzero(60),
            )?,
            revocation_list_max: env.int("REVOCATION_LIST_MAX", 1..=100_000_000, 1_000_000)?,
            token_cache_capacity: env.int("TOKEN_CACHE_CAPACITY", 0..=1_000_000, 10_000)?,
        })
    }
}

/// A user allowed to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct UserCredential {
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

#[cfg(test)]
mod tests {
    use crate::config::{Config, CorsOrigins};

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
        assert_eq!(ok.server.cors_origins, CorsOrigins::List(Vec::new()));
    }

    #[test]
    fn users_are_parsed_and_a_bad_list_names_the_variable() {
        let config = Config::from_pairs([("AUTH_USERS", "a:1, b:2")]).expect("valid");
        assert_eq!(config.auth.users[1].username, "b");
        for bad in ["nopass", "a:1,a:2", ","] {
            assert_eq!(
                Config::from_pairs([("AUTH_USERS", bad)]).unwrap_err().var,
                "AUTH_USERS",
                "{bad}"
            );
        }
    }
}
