//! JWT authentication: login, token verification, logout by revocation.
//!
//! [`AuthService`] ties the parts together and is what the HTTP layer calls:
//! - [`users`]: the configured users and a constant-time credential check;
//! - [`jwt`]: HS256 tokens with a pinned algorithm and an explicit leeway;
//! - [`revocation`]: the list of logged-out tokens, bounded by their expiry;
//! - [`rate_limit`]: the failed-login budget per client;
//! - [`verified`]: tokens already verified, so a client's repeated token is checked once.
//!
//! The revocation list survives a graceful restart through a snapshot in `DATA_DIR`, and a
//! background sweep (see [`run_sweeper`]) forgets expired revocations and rested clients.

pub mod jwt;
pub mod rate_limit;
pub mod revocation;
pub mod users;
pub mod verified;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::MissedTickBehavior;

use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::snapshot;
use jwt::{Claims, LEEWAY_SECONDS, TokenCodec};
use rate_limit::{LoginRateLimiter, RetryAfter};
use revocation::{InMemoryRevocationList, Revocation, RevocationList, RevokedToken};
use users::UserDirectory;
use verified::VerifiedTokens;

/// File name of the revocation snapshot in `DATA_DIR`.
pub const REVOCATIONS_FILE: &str = "revocations.json";

/// Bounds of the sweep period, which is a quarter of the token lifetime: expired revocations then
/// linger at most a quarter of a lifetime, so the list never holds much more than live entries.
const MIN_SWEEP_PERIOD: Duration = Duration::from_millis(100);
const MAX_SWEEP_PERIOD: Duration = Duration::from_secs(60);

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// This client failed too often recently.
    #[error(transparent)]
    RateLimited(#[from] RetryAfter),
    /// The token could not be signed (a server fault).
    #[error("cannot sign token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Bad signature, malformed, wrong algorithm or expired.
    #[error("invalid or expired token")]
    Invalid,
    /// Valid, but logged out.
    #[error("token has been invalidated")]
    Revoked,
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The signed JWT.
    pub token: String,
    /// What it says.
    pub claims: Claims,
}

/// The on-disk form of the revocation list.
#[derive(Debug, Serialize, Deserialize)]
struct RevocationSnapshot {
    revoked: Vec<RevokedToken>,
}

/// Login, verification and logout over one set of users, one key and one revocation list.
pub struct AuthService {
    users: UserDirectory,
    tokens: TokenCodec,
    verified: VerifiedTokens,
    revocations: Arc<dyn RevocationList>,
    limiter: LoginRateLimiter,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("users", &self.users)
            .field("tokens", &self.tokens)
            .field("revoked", &self.revocations.len())
            .finish_non_exhaustive()
    }
}

impl AuthService {
    /// A service for `config`'s users, key and budgets, revoking into `revocations`.
    pub fn new(config: &Config, revocations: Arc<dyn RevocationList>) -> Self {
        let budget = NonZeroU32::new(config.login_max_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            users: UserDirectory::new(&config.auth_users),
            tokens: TokenCodec::new(&config.jwt_secret, config.jwt_ttl),
            verified: VerifiedTokens::new(config.token_cache_capacity),
            revocations,
            limiter: LoginRateLimiter::new(budget),
        }
    }

    /// Like [`AuthService::new`] with the in-memory list restored from `DATA_DIR`. A missing or
    /// unreadable snapshot is logged and the list starts empty; expired entries are dropped.
    pub async fn restore(config: &Config) -> Self {
        let saved = snapshot::load::<RevocationSnapshot>(&config.data_dir, REVOCATIONS_FILE)
            .await
            .map_or_else(Vec::new, |s| s.revoked);
        let saved_count = saved.len();
        let list = InMemoryRevocationList::from_entries(LEEWAY_SECONDS, saved, unix_now());
        if saved_count > 0 {
            tracing::info!(
                restored = list.len(),
                expired = saved_count - list.len(),
                "revocation list restored"
            );
        }
        Self::new(config, Arc::new(list))
    }

    /// Checks `username`/`password` for a login from `client` and issues a token.
    pub fn login(
        &self,
        client: IpAddr,
        username: &str,
        password: &str,
    ) -> Result<IssuedToken, LoginError> {
        self.limiter.check(client)?;
        let Some(user) = self.users.authenticate(username, password) else {
            self.limiter.record_failure(client)?;
            return Err(LoginError::InvalidCredentials);
        };
        let (token, claims) = self.tokens.issue(user.id, &user.username, unix_now())?;
        Ok(IssuedToken { token, claims })
    }

    /// The claims of `token` if it is valid and not revoked. A token seen before is found in
    /// the cache of verified tokens instead of being verified again; revocation is checked
    /// every time.
    pub fn authenticate(&self, token: &str) -> Result<Claims, TokenError> {
        let now = unix_now();
        let claims = match self.verified.get(token, now) {
            Some(claims) => claims,
            None => {
                let claims = self.tokens.verify(token).map_err(|_| TokenError::Invalid)?;
                self.verified.insert(token, &claims);
                claims
            }
        };
        if self.revocations.is_revoked(&claims.jti, now) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// Revokes the token with these (verified) claims until it expires.
    pub fn logout(&self, claims: &Claims) -> Result<(), TokenError> {
        let token = RevokedToken {
            jti: claims.jti,
            exp: claims.exp,
        };
        match self.revocations.revoke(token, unix_now()) {
            Revocation::Revoked => Ok(()),
            Revocation::AlreadyRevoked => Err(TokenError::Revoked),
        }
    }

    /// How long issued tokens live.
    pub fn token_lifetime(&self) -> Duration {
        self.tokens.lifetime()
    }

    /// Verified tokens currently cached.
    pub fn cached_tokens(&self) -> usize {
        self.verified.len()
    }

    /// Revoked tokens currently remembered (the blacklist size).
    pub fn revoked_count(&self) -> usize {
        self.revocations.len()
    }

    /// How often [`run_sweeper`] runs: a quarter of the token lifetime, within bounds.
    pub fn sweep_period(&self) -> Duration {
        (self.tokens.lifetime() / 4).clamp(MIN_SWEEP_PERIOD, MAX_SWEEP_PERIOD)
    }

    /// Forgets expired revocations and rested clients.
    pub fn sweep(&self) {
        let purged = self.revocations.purge_expired(unix_now());
        if purged > 0 {
            tracing::debug!(purged, "expired revocations forgotten");
        }
        self.limiter.purge();
    }

    /// Writes the live revocations to `dir` (atomically); failures are logged.
    pub async fn persist(&self, dir: &Path) {
        let snapshot = RevocationSnapshot {
            revoked: self.revocations.live_entries(unix_now()),
        };
        match snapshot::save(dir, REVOCATIONS_FILE, &snapshot).await {
            Ok(path) => tracing::info!(
                path = %path.display(),
                revoked = snapshot.revoked.len(),
                "revocation list saved"
            ),
            Err(err) => tracing::error!(%err, "cannot save the revocation list"),
        }
    }
}

/// Runs [`AuthService::sweep`] every [`AuthService::sweep_period`] until `shutdown`.
pub async fn run_sweeper(auth: Arc<AuthService>, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(auth.sweep_period());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            _ = ticker.tick() => auth.sweep(),
        }
    }
}

/// Current Unix time in seconds, the unit of JWT times.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn service(overrides: &[(&str, &str)]) -> AuthService {
        let mut pairs = vec![("JWT_SECRET", "unit-test-secret")];
        pairs.extend_from_slice(overrides);
        let config = Config::from_pairs(pairs).expect("valid config");
        AuthService::new(
            &config,
            Arc::new(InMemoryRevocationList::new(LEEWAY_SECONDS)),
        )
    }

    #[test]
    fn login_then_logout_revokes_the_token() {
        let auth = service(&[]);
        let issued = auth.login(CLIENT, "admin", "admin123").expect("logged in");
        assert_eq!(auth.authenticate(&issued.token), Ok(issued.claims.clone()));
        auth.logout(&issued.claims).expect("logged out");
        assert_eq!(auth.authenticate(&issued.token), Err(TokenError::Revoked));
        assert_eq!(auth.logout(&issued.claims), Err(TokenError::Revoked));
        assert_eq!(auth.revoked_count(), 1);
    }

    #[test]
    fn wrong_password_is_refused_then_rate_limited() {
        let auth = service(&[("LOGIN_MAX_PER_MINUTE", "2")]);
        for _ in 0..2 {
            assert!(matches!(
                auth.login(CLIENT, "admin", "nope"),
                Err(LoginError::InvalidCredentials)
            ));
        }
        assert!(matches!(
            auth.login(CLIENT, "admin", "admin123"),
            Err(LoginError::RateLimited(_))
        ));
    }

    #[test]
    fn successful_logins_spend_no_budget() {
        let auth = service(&[("LOGIN_MAX_PER_MINUTE", "1")]);
        for _ in 0..5 {
            auth.login(CLIENT, "user", "user123").expect("logged in");
        }
        assert!(matches!(
            auth.login(CLIENT, "user", "bad"),
            Err(LoginError::InvalidCredentials)
        ));
    }

    #[test]
    fn sweep_period_follows_the_token_lifetime() {
        assert_eq!(
            service(&[("JWT_TTL_SECONDS", "1")]).sweep_period(),
            Duration::from_millis(250)
        );
        assert_eq!(service(&[]).sweep_period(), MAX_SWEEP_PERIOD);
    }

    #[tokio::test]
    async fn revocations_survive_persist_and_restore() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().to_str().expect("utf-8");
        let pairs = [("JWT_SECRET", "unit-test-secret"), ("DATA_DIR", data_dir)];
        let config = Config::from_pairs(pairs).expect("valid");
        let before = AuthService::restore(&config).await;
        let issued = before
            .login(CLIENT, "admin", "admin123")
            .expect("logged in");
        before.logout(&issued.claims).expect("logged out");
        before.persist(dir.path()).await;

        let after = AuthService::restore(&config).await;
        assert_eq!(after.authenticate(&issued.token), Err(TokenError::Revoked));
    }

    #[tokio::test]
    async fn corrupt_snapshot_starts_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(REVOCATIONS_FILE), b"{\"revoked\": [oops").expect("write");
        let data_dir = dir.path().to_str().expect("utf-8");
        let config = Config::from_pairs([("DATA_DIR", data_dir)]).expect("valid");
        assert_eq!(AuthService::restore(&config).await.revoked_count(), 0);
    }
}
