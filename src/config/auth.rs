//! Authentication and access settings: the signing key and the tokens' issuer and audience,
//! the users and their scopes, the protected route groups, password hashing, login budgets
//! and the bounds of the revocation list and the token cache.

use std::fmt;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::time::Duration;

use rand::RngCore;

use super::{AppEnv, ConfigError, Env};
use crate::auth::access::{ProtectedRoutes, Scopes};
use crate::auth::password::{self, HashParams};
use crate::auth::rate_limit::Budget;

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

/// Files of this project that hold example values: a `JWT_SECRET` found in one of them is
/// public, and production refuses it.
const PUBLISHED_TEXTS: [&str; 4] = [
    include_str!("../../.env.example"),
    include_str!("../../README.md"),
    include_str!("../../compose.yaml"),
    include_str!("../../docs/OPERATIONS.md"),
];

/// `JWT_ISSUER` and `JWT_AUDIENCE` when unset.
pub const DEFAULT_TOKEN_PARTY: &str = "backflow";

/// Login, tokens and revocation.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `JWT_SECRET` (random per start in development when unset).
    pub jwt_secret: JwtSecret,
    /// `JWT_TTL_SECONDS`: token lifetime.
    pub jwt_ttl: Duration,
    /// `JWT_ISSUER`: the `iss` claim issued and required.
    pub jwt_issuer: String,
    /// `JWT_AUDIENCE`: the `aud` claim issued and required.
    pub jwt_audience: String,
    /// `AUTH_USERS`: `name:secret[:scope+scope]` entries (the demo users in development when
    /// unset).
    pub users: Vec<UserCredential>,
    /// `PROTECTED_ROUTES`: the route groups that need a bearer token.
    pub protected_routes: ProtectedRoutes,
    /// `DEQUEUE_ON_GET`: whether `GET /dequeue` (which changes state) is served.
    pub dequeue_on_get: bool,
    /// `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`: the cost of hashes made
    /// by `backflow hash-password`.
    pub hash_params: HashParams,
    /// `LOGIN_VERIFY_MAX_CONCURRENT`: password hashes verified at once (others wait).
    pub login_verify_max_concurrent: usize,
    /// `LOGIN_MAX_PER_MINUTE`: failed-login budget per client IP.
    pub login_max_per_minute: NonZeroU32,
    /// `LOGIN_ACCOUNT_MAX_PER_MINUTE`: failed-login budget per account, from any client.
    pub login_account_max_per_minute: NonZeroU32,
    /// `LOGIN_BACKOFF_MAX_SECONDS`: how far attempts refused for an account push its wait.
    pub login_backoff_max: Duration,
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
            Some(s) if production && PUBLISHED_TEXTS.iter().any(|text| text.contains(&s)) => {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "is an example published with this project; generate one, e.g. \
                     `openssl rand -base64 48`",
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
                    secret: (*p).to_owned(),
                    scopes: Scopes::ALL,
                })
                .collect(),
        };
        if production {
            check_production_users(&users)?;
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            jwt_secret,
            jwt_ttl: Duration::from_secs(env.int("JWT_TTL_SECONDS", 1..=31_536_000, 3600)?),
            jwt_issuer: token_party(env, "JWT_ISSUER")?,
            jwt_audience: token_party(env, "JWT_AUDIENCE")?,
            users,
            protected_routes: match env.get("PROTECTED_ROUTES") {
                Some(raw) => ProtectedRoutes::parse(&raw).map_err(|name| {
                    ConfigError::new(
                        "PROTECTED_ROUTES",
                        format!(
                            "{name:?} is not a route group; expected a comma-separated list of \
                             `queue`, `compute`, `stream`, `notifications`, or `none`"
                        ),
                    )
                })?,
                None if production => ProtectedRoutes::PRODUCTION,
                None => ProtectedRoutes::NONE,
            },
            dequeue_on_get: env.bool("DEQUEUE_ON_GET", !production)?,
            hash_params: hash_params(env)?,
            login_verify_max_concurrent: env.int("LOGIN_VERIFY_MAX_CONCURRENT", 1..=1024, cpus)?,
            login_max_per_minute: env.int("LOGIN_MAX_PER_MINUTE", BUDGETS, nonzero(10))?,
            login_account_max_per_minute: env.int(
                "LOGIN_ACCOUNT_MAX_PER_MINUTE",
                BUDGETS,
                nonzero(20),
            )?,
            login_backoff_max: Duration::from_secs(env.int(
                "LOGIN_BACKOFF_MAX_SECONDS",
                0..=86_400,
                900,
            )?),
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

impl AuthConfig {
    /// The failed-login budget of each client: no back-off, since a client behind a shared
    /// address (a NAT, a proxy) must not be locked out for long by a neighbour.
    pub fn client_budget(&self) -> Budget {
        Budget::per_minute(self.login_max_per_minute, Duration::ZERO)
    }

    /// The failed-login budget of each account, with its back-off.
    pub fn account_budget(&self) -> Budget {
        Budget::per_minute(self.login_account_max_per_minute, self.login_backoff_max)
    }
}

/// A user allowed to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct UserCredential {
    pub username: String,
    /// An argon2id PHC string, or (development only) a plain password.
    pub secret: String,
    /// What the user's tokens may do.
    pub scopes: Scopes,
}

impl fmt::Debug for UserCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCredential")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The argon2 cost settings alone, for `backflow hash-password`, which needs no other setting.
pub fn hash_params_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<HashParams, ConfigError> {
    hash_params(&Env(&lookup))
}

fn hash_params(env: &Env<'_>) -> Result<HashParams, ConfigError> {
    let default = HashParams::default();
    let params = HashParams {
        memory_kib: env.int("ARGON2_MEMORY_KIB", 8..=4_194_304, default.memory_kib)?,
        iterations: env.int("ARGON2_ITERATIONS", 1..=100, default.iterations)?,
        parallelism: env.int("ARGON2_PARALLELISM", 1..=16, default.parallelism)?,
    };
    if params.memory_kib < 8 * params.parallelism {
        return Err(ConfigError::new(
            "ARGON2_MEMORY_KIB",
            "must be at least 8 KiB per lane (ARGON2_PARALLELISM)",
        ));
    }
    Ok(params)
}

/// `JWT_ISSUER` or `JWT_AUDIENCE`: visible ASCII, 1 to 256 bytes.
fn token_party(env: &Env<'_>, name: &'static str) -> Result<String, ConfigError> {
    let value = env
        .get(name)
        .unwrap_or_else(|| DEFAULT_TOKEN_PARTY.to_owned());
    if value.len() <= 256 && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(value)
    } else {
        Err(ConfigError::new(
            name,
            "must be 1 to 256 visible ASCII characters",
        ))
    }
}

/// Production accepts only argon2id hashes, and never the demo users' passwords.
fn check_production_users(users: &[UserCredential]) -> Result<(), ConfigError> {
    for user in users {
        if !password::is_argon2id(&user.secret) {
            return Err(ConfigError::new(
                "AUTH_USERS",
                format!(
                    "user {:?} has a plain password; production needs an argon2id hash: run \
                     `backflow hash-password` (it reads the password on standard input) and \
                     put the `$argon2id$...` line it prints in place of the password",
                    user.username
                ),
            ));
        }
        let demo = DEMO_USERS.iter().find(|(name, _)| *name == user.username);
        if demo.is_some_and(|(_, demo_password)| {
            password::verify_blocking(&user.secret, demo_password)
        }) {
            return Err(ConfigError::new(
                "AUTH_USERS",
                "the demo users must not be enabled in production",
            ));
        }
    }
    Ok(())
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

/// `AUTH_USERS`: comma-separated `name:secret[:scope+scope...]` entries. A PHC string has
/// commas of its own (`m=19456,t=2,p=1`): a piece that starts with a PHC parameter (`t=`) after
/// a hash continues it. A last `:` part made only of scope names is the scope list; otherwise
/// it belongs to the secret.
fn parse_users(raw: &str) -> Result<Vec<UserCredential>, ConfigError> {
    let mut entries: Vec<String> = Vec::new();
    for piece in raw.split(',') {
        let continues_hash = entries
            .last()
            .is_some_and(|entry| entry.contains(":$argon2"))
            && piece.split_once('=').is_some_and(|(name, _)| {
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase())
            });
        match entries.last_mut() {
            Some(entry) if continues_hash => {
                entry.push(',');
                entry.push_str(piece);
            }
            _ => entries.push(piece.to_owned()),
        }
    }
    let mut users: Vec<UserCredential> = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (username, rest) = entry
            .split_once(':')
            .filter(|(u, p)| !u.is_empty() && !p.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "AUTH_USERS",
                    "expected comma-separated `name:secret[:scope+scope]` entries",
                )
            })?;
        let (secret, scopes) = match rest.rsplit_once(':') {
            Some((secret, list)) if !secret.is_empty() => match Scopes::parse_list(list) {
                Ok(scopes) => (secret, scopes),
                Err(_) if password::is_argon2id(secret) => {
                    return Err(ConfigError::new(
                        "AUTH_USERS",
                        format!(
                            "user {username:?}: {list:?} is not a `+`-separated list of \
                             `enqueue`, `consume`, `compute`"
                        ),
                    ));
                }
                Err(_) => (rest, Scopes::ALL),
            },
            _ => (rest, Scopes::ALL),
        };
        if secret.starts_with("$argon2") && !password::is_argon2id(secret) {
            return Err(ConfigError::new(
                "AUTH_USERS",
                format!(
                    "user {username:?}: the secret is not a valid argon2id PHC string \
                     (make one with `backflow hash-password`)"
                ),
            ));
        }
        if users.iter().any(|u| u.username == username) {
            return Err(ConfigError::new(
                "AUTH_USERS",
                format!("user {username:?} is listed twice"),
            ));
        }
        users.push(UserCredential {
            username: username.to_owned(),
            secret: secret.to_owned(),
            scopes,
        });
    }
    if users.is_empty() {
        return Err(ConfigError::new("AUTH_USERS", "lists no user"));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use crate::auth::access::{RouteGroup, Scope};
    use crate::auth::password::{HashParams, hash_password};
    use crate::config::{Config, CorsOrigins};

    const CHEAP: HashParams = HashParams::CHEAPEST;
    const STRONG: (&str, &str) = ("JWT_SECRET", "0123456789abcdef0123456789abcdef");

    fn production(pairs: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        let mut all = vec![("APP_ENV", "production")];
        all.extend_from_slice(pairs);
        Config::from_pairs(all)
    }

    #[test]
    fn production_requires_a_strong_unpublished_secret_and_hashed_users() {
        let hashed = format!("ops:{}", hash_password("correct-horse", CHEAP).unwrap());
        let users = ("AUTH_USERS", hashed.as_str());
        assert_eq!(production(&[users]).unwrap_err().var, "JWT_SECRET");
        let short = ("JWT_SECRET", "short");
        assert_eq!(production(&[users, short]).unwrap_err().var, "JWT_SECRET");
        let published = ("JWT_SECRET", "change-me-to-at-least-32-random-bytes!!");
        let err = production(&[users, published]).unwrap_err();
        assert_eq!(err.var, "JWT_SECRET");
        assert!(err.to_string().contains("openssl rand"), "{err}");
        assert_eq!(production(&[STRONG]).unwrap_err().var, "AUTH_USERS");
        let err = production(&[STRONG, ("AUTH_USERS", "ops:correct-horse")]).unwrap_err();
        assert_eq!(err.var, "AUTH_USERS");
        let line = err.to_string();
        assert!(
            line.contains("\"ops\"") && line.contains("backflow hash-password"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let demo = format!("admin:{}", hash_password("admin123", CHEAP).unwrap());
        let err = production(&[STRONG, ("AUTH_USERS", demo.as_str())]).unwrap_err();
        assert_eq!(err.var, "AUTH_USERS");
        let ok = production(&[STRONG, users]).expect("valid production config");
        assert_eq!(ok.server.cors_origins, CorsOrigins::List(Vec::new()));
        assert!(ok.auth.protected_routes.contains(RouteGroup::Queue));
        assert!(ok.auth.protected_routes.contains(RouteGroup::Compute));
        assert!(!ok.auth.protected_routes.contains(RouteGroup::Stream));
        assert!(!ok.auth.dequeue_on_get);
    }

    #[test]
    fn development_protects_nothing_and_serves_get_dequeue() {
        let config = Config::from_pairs([]).expect("defaults");
        assert!(config.auth.dequeue_on_get);
        assert!(
            RouteGroup::ALL
                .iter()
                .all(|g| !config.auth.protected_routes.contains(*g))
        );
        let config =
            Config::from_pairs([("PROTECTED_ROUTES", "stream,notifications")]).expect("valid");
        assert!(
            config
                .auth
                .protected_routes
                .contains(RouteGroup::Notifications)
        );
        let err = Config::from_pairs([("PROTECTED_ROUTES", "queue,admin")]).unwrap_err();
        assert_eq!(err.var, "PROTECTED_ROUTES");
        assert!(err.to_string().contains("\"admin\""), "{err}");
    }

    #[test]
    fn users_are_parsed_and_a_bad_list_names_the_variable() {
        let config = Config::from_pairs([("AUTH_USERS", "a:1, b:2")]).expect("valid");
        assert_eq!(config.auth.users[1].username, "b");
        for bad in [
            "nopass",
            "a:1,a:2",
            ",",
            "a:$argon2id$v=19$m=8",
            "a:$argon2id$broken:consume",
        ] {
            assert_eq!(
                Config::from_pairs([("AUTH_USERS", bad)]).unwrap_err().var,
                "AUTH_USERS",
                "{bad}"
            );
        }
    }

    #[test]
    fn hashes_with_commas_and_scope_lists_are_read_whole() {
        let hash = hash_password("pw", CHEAP).unwrap();
        let raw = format!("w:{hash}:consume+enqueue,c:{hash},p:plain:compute,q:pa:ss");
        let config = Config::from_pairs([("AUTH_USERS", raw.as_str())]).expect("valid");
        let users = &config.auth.users;
        assert_eq!(users.len(), 4);
        assert_eq!(
            (users[0].secret.as_str(), users[1].secret.as_str()),
            (&*hash, &*hash)
        );
        assert!(
            users[0].scopes.contains(Scope::Consume) && !users[0].scopes.contains(Scope::Compute)
        );
        assert_eq!(users[1].scopes.to_string(), "enqueue consume compute");
        assert_eq!(
            (users[2].secret.as_str(), users[2].scopes.to_string()),
            ("plain", "compute".into())
        );
        assert_eq!(users[3].secret, "pa:ss");
        let err =
            Config::from_pairs([("AUTH_USERS", format!("w:{hash}:admin").as_str())]).unwrap_err();
        assert!(err.to_string().contains("\"admin\""), "{err}");
    }
}
