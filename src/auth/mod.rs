//! JWT authentication: login, token verification, logout by revocation.
//!
//! [`AuthService`] ties the parts together and is what the HTTP layer calls:
//! - [`users`]: the configured users and a credential check that timing does not betray;
//! - [`password`]: argon2id hashes, verified on the blocking pool, a bounded number at once;
//! - [`access`]: scopes and the route groups `PROTECTED_ROUTES` names;
//! - [`jwt`]: HS256 tokens with a pinned algorithm and an explicit leeway;
//! - [`revocation`]: the list of logged-out tokens, bounded by their expiry and a hard cap,
//!   behind the [`RevocationStore`] of the configured `STORE`;
//! - [`rate_limit`]: the failed-login budget per client and the successful-login budgets per
//!   client and per account;
//! - [`verified`]: tokens already verified, so a client's repeated token is checked once.
//!
//! The service publishes `auth.login` and `auth.logout` itself, and says nothing of who: the
//! event stream is public, so it never carries a username, a token, a token id or a password.
//! A background sweep (see [`run_sweeper`]) forgets
//! expired revocations and rested clients.

pub mod access;
pub mod jwt;
pub mod password;
pub mod rate_limit;
pub mod revocation;
pub mod users;
pub mod verified;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::MissedTickBehavior;

use crate::clock;
use crate::config::Config;
use crate::events::{self, EventBus, Level, NewEvent};
use crate::fault::StoreError;
use crate::shutdown::Shutdown;
use access::Scopes;
use jwt::{Claims, TokenCodec};
use rate_limit::{BudgetError, BudgetKey, LoginFailures, RetryAfter, SuccessfulLogins};
use users::UserDirectory;
use verified::VerifiedTokens;

pub use revocation::{
    MemoryRevocations, Revocation, RevocationIndex, RevocationStore, RevokeError, RevokedToken,
};

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
    /// This client, or this account, failed too often recently.
    #[error(transparent)]
    RateLimited(#[from] RetryAfter),
    /// The failed-login budget could not be read: the login is refused (fails closed).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This client or this account logged in too often recently.
    #[error("too many successful logins; retry in {:?}", .0.0)]
    TooManyLogins(RetryAfter),
    /// The token could not be signed (a server fault).
    #[error("cannot sign token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

impl From<BudgetError> for LoginError {
    fn from(err: BudgetError) -> Self {
        match err {
            BudgetError::Spent(wait) => Self::RateLimited(wait),
            BudgetError::Store(err) => Self::Store(err),
        }
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Bad signature, malformed, wrong algorithm or expired.
    #[error("invalid or expired token")]
    Invalid,
    /// Valid, but logged out.
    #[error("token has been invalidated")]
    Revoked,
    /// The revocation list could not be read: the token is refused (authentication fails
    /// closed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a logout did not revoke the token; in every case nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutError {
    /// The token was already revoked.
    #[error("token has been invalidated")]
    AlreadyRevoked,
    /// The revocation list could not take it (full, or its store failed).
    #[error(transparent)]
    NotRecorded(#[from] RevokeError),
}

/// What a verified, configured user's token grants.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's claims.
    pub claims: Claims,
    /// The scopes of its `scope` claim that its user still has.
    pub scopes: Scopes,
    /// The claims as JSON, written once when the token is verified: `/protected` shows them
    /// to every request of the token's life without serializing them again.
    pub claims_json: Box<RawValue>,
}

impl Principal {
    /// What `claims` grant with `scopes`.
    pub fn new(claims: Claims, scopes: Scopes) -> Self {
        let claims_json = serde_json::value::to_raw_value(&claims)
            .expect("claims of strings and integers serialize to JSON");
        Self {
            claims,
            scopes,
            claims_json,
        }
    }
}

/// Equal claims make equal JSON: the claims and the scopes decide.
impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.claims == other.claims && self.scopes == other.scopes
    }
}

impl Eq for Principal {}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The signed JWT.
    pub token: String,
    /// What it says.
    pub claims: Claims,
}

/// Login, verification and logout over one set of users, one key and one revocation list.
pub struct AuthService {
    users: UserDirectory,
    tokens: TokenCodec,
    verified: VerifiedTokens,
    revocations: Arc<dyn RevocationStore>,
    events: Arc<dyn EventBus>,
    failures: Arc<dyn LoginFailures>,
    successes: SuccessfulLogins,
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
    /// A service for `config`'s users, key and successful-login budget, revoking into
    /// `revocations`, counting failures in `failures` and announcing logins and logouts on
    /// `events`.
    ///
    /// Fails when the dummy hash for unknown users cannot be made (argon2 refused the
    /// configured users' parameters) or the verification threads cannot start.
    pub fn new(
        config: &Config,
        revocations: Arc<dyn RevocationStore>,
        failures: Arc<dyn LoginFailures>,
        events: Arc<dyn EventBus>,
    ) -> Result<Self, password::PasswordCheckError> {
        let auth = &config.auth;
        Ok(Self {
            users: UserDirectory::new(&auth.users, auth.login_verify_max_concurrent)?,
            tokens: TokenCodec::new(
                &auth.jwt_secret,
                auth.jwt_ttl,
                &auth.jwt_issuer,
                &auth.jwt_audience,
            ),
            verified: VerifiedTokens::new(config.auth.token_cache_capacity),
            revocations,
            events,
            failures,
            successes: SuccessfulLogins::new(config.auth.login_success_max_per_minute),
        })
    }

    /// Checks `username`/`password` for a login from `client`, issues a token and publishes
    /// `auth.login`.
    pub async fn login(
        &self,
        client: IpAddr,
        username: &str,
        password: &str,
    ) -> Result<IssuedToken, LoginError> {
        let client_budget = BudgetKey::client(client);
        let account_budget = BudgetKey::account(username);
        // Both units are taken before the password is checked: parallel guesses cannot get
        // more answers than the budgets hold. A login that succeeds gives them back.
        self.failures.reserve(client_budget).await?;
        if let Err(err) = self.failures.reserve(account_budget).await {
            self.give_back(client_budget).await;
            return Err(err.into());
        }
        let Some(user) = self.users.authenticate(username, password).await else {
            return Err(LoginError::InvalidCredentials);
        };
        self.give_back(client_budget).await;
        self.give_back(account_budget).await;
        self.successes
            .spend(client, user.id)
            .map_err(LoginError::TooManyLogins)?;
        let (token, claims) =
            self.tokens
                .issue(user.id, &user.username, user.scopes, clock::unix_seconds())?;
        let event = NewEvent::app("auth.login", Level::Success, "Login succeeded");
        events::announce(&*self.events, event).await;
        Ok(IssuedToken { token, claims })
    }

    /// Gives back a unit of a failed-login budget; a store that does not answer keeps it spent
    /// (the budget errs on the side of refusing).
    async fn give_back(&self, key: BudgetKey) {
        if let Err(err) = self.failures.refund(key).await {
            tracing::warn!(%err, "a failed-login budget unit could not be given back");
        }
    }

    /// What `token` grants if it is valid, its user is still configured, and it is not
    /// revoked. A token seen before is found in the cache of verified tokens instead of being
    /// verified again; revocation is checked every time, and a token whose revocation cannot
    /// be checked is refused.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, TokenError> {
        let now = clock::unix_seconds();
        let principal = match self.verified.get(token, now) {
            Some(principal) => principal,
            None => {
                let claims = self.tokens.verify(token).map_err(|_| TokenError::Invalid)?;
                let Some(user_scopes) = self.users.current_scopes(claims.user_id, &claims.username)
                else {
                    tracing::debug!("token refused: its user is no longer configured");
                    return Err(TokenError::Invalid);
                };
                let scopes = Scopes::from_claim(&claims.scope).intersection(user_scopes);
                let principal = Arc::new(Principal::new(claims, scopes));
                self.verified.insert(token, &principal);
                principal
            }
        };
        if self
            .revocations
            .is_revoked(principal.claims.jti, now)
            .await?
        {
            return Err(TokenError::Revoked);
        }
        Ok(principal)
    }

    /// Revokes the token with these (verified) claims until it expires, and publishes
    /// `auth.logout`.
    pub async fn logout(&self, claims: &Claims) -> Result<(), LogoutError> {
        let token = RevokedToken {
            jti: claims.jti,
            exp: claims.exp,
        };
        match self
            .revocations
            .revoke(token, clock::unix_seconds())
            .await?
        {
            Revocation::Revoked => {}
            Revocation::AlreadyRevoked => return Err(LogoutError::AlreadyRevoked),
        }
        let event = NewEvent::app("auth.logout", Level::Info, "Logout succeeded");
        events::announce(&*self.events, event).await;
        Ok(())
    }

    /// How long issued tokens live.
    pub fn token_lifetime(&self) -> Duration {
        self.tokens.lifetime()
    }

    /// Password hashes verified so far, for unknown users too (`auth_password_verifications_total`).
    pub fn password_verifications(&self) -> u64 {
        self.users.hash_verifications()
    }

    /// Verified tokens currently cached.
    pub fn cached_tokens(&self) -> usize {
        self.verified.len()
    }

    /// Revoked tokens currently remembered (the blacklist size).
    pub fn revoked_count(&self) -> usize {
        self.revocations.len()
    }

    /// The cap on remembered revocations.
    pub fn revocation_capacity(&self) -> usize {
        self.revocations.capacity()
    }

    /// How often [`run_sweeper`] runs: a quarter of the token lifetime, within bounds.
    pub fn sweep_period(&self) -> Duration {
        (self.tokens.lifetime() / 4).clamp(MIN_SWEEP_PERIOD, MAX_SWEEP_PERIOD)
    }

    /// Forgets expired revocations and rested clients.
    pub async fn sweep(&self) {
        match self.revocations.purge_expired(clock::unix_seconds()).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired revocations forgotten"),
            Err(err) => tracing::warn!(%err, "expired revocations could not be purged"),
        }
        self.failures.purge();
        self.successes.purge();
    }
}

/// Runs [`AuthService::sweep`] every [`AuthService::sweep_period`] until `shutdown`.
pub async fn run_sweeper(auth: Arc<AuthService>, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(auth.sweep_period());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            _ = ticker.tick() => auth.sweep().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::events::MemoryEventBus;
    use rate_limit::LoginBudgets;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn service(overrides: &[(&str, &str)]) -> AuthService {
        let mut pairs = vec![("JWT_SECRET", "unit-test-secret")];
        pairs.extend_from_slice(overrides);
        let config = Config::from_pairs(pairs).expect("valid config");
        AuthService::new(
            &config,
            Arc::new(MemoryRevocations::new(config.auth.revocation_list_max)),
            Arc::new(LoginBudgets::new(
                config.auth.client_budget(),
                config.auth.account_budget(),
            )),
            Arc::new(MemoryEventBus::new(16)),
        )
        .expect("auth service")
    }

    #[tokio::test]
    async fn login_then_logout_revokes_the_token() {
        let auth = service(&[]);
        let issued = auth
            .login(CLIENT, "admin", "admin123")
            .await
            .expect("logged in");
        let principal = auth.authenticate(&issued.token).await.expect("valid");
        assert_eq!(principal.claims, issued.claims);
        assert_eq!(principal.scopes, Scopes::ALL);
        auth.logout(&issued.claims).await.expect("logged out");
        assert_eq!(
            auth.authenticate(&issued.token).await,
            Err(TokenError::Revoked)
        );
        assert_eq!(
            auth.logout(&issued.claims).await,
            Err(LogoutError::AlreadyRevoked)
        );
        assert_eq!(auth.revoked_count(), 1);
    }

    #[tokio::test]
    async fn wrong_password_is_refused_then_rate_limited() {
        let auth = service(&[("LOGIN_MAX_PER_MINUTE", "2")]);
        for _ in 0..2 {
            assert!(matches!(
                auth.login(CLIENT, "admin", "nope").await,
                Err(LoginError::InvalidCredentials)
            ));
        }
        assert!(matches!(
            auth.login(CLIENT, "admin", "admin123").await,
            Err(LoginError::RateLimited(_))
        ));
    }

    #[tokio::test]
    async fn an_account_is_rate_limited_from_any_client() {
        let auth = service(&[
            ("LOGIN_MAX_PER_MINUTE", "100"),
            ("LOGIN_ACCOUNT_MAX_PER_MINUTE", "2"),
        ]);
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        for client in [CLIENT, other] {
            assert!(matches!(
                auth.login(client, "admin", "nope").await,
                Err(LoginError::InvalidCredentials)
            ));
        }
        assert!(matches!(
            auth.login(other, "admin", "admin123").await,
            Err(LoginError::RateLimited(_))
        ));
        auth.login(other, "user", "user123")
            .await
            .expect("another account");
    }

    #[tokio::test]
    async fn successful_logins_spend_only_their_own_budget() {
        let auth = service(&[
            ("LOGIN_MAX_PER_MINUTE", "1"),
            ("LOGIN_SUCCESS_MAX_PER_MINUTE", "3"),
        ]);
        for _ in 0..3 {
            auth.login(CLIENT, "user", "user123")
                .await
                .expect("logged in");
        }
        assert!(matches!(
            auth.login(CLIENT, "user", "user123").await,
            Err(LoginError::TooManyLogins(_))
        ));
        assert!(matches!(
            auth.login(CLIENT, "user", "bad").await,
            Err(LoginError::InvalidCredentials)
        ));
    }

    #[tokio::test]
    async fn a_full_revocation_list_refuses_the_logout_and_the_token_stays_valid() {
        let auth = service(&[("REVOCATION_LIST_MAX", "1")]);
        let first = auth.login(CLIENT, "admin", "admin123").await.unwrap();
        let second = auth.login(CLIENT, "admin", "admin123").await.unwrap();
        auth.logout(&first.claims).await.expect("room for one");
        assert_eq!(
            auth.logout(&second.claims).await,
            Err(LogoutError::NotRecorded(RevokeError::Full { capacity: 1 }))
        );
        assert!(auth.authenticate(&second.token).await.is_ok());
        assert_eq!(
            auth.authenticate(&first.token).await,
            Err(TokenError::Revoked)
        );
    }

    #[test]
    fn sweep_period_follows_the_token_lifetime() {
        assert_eq!(
            service(&[("JWT_TTL_SECONDS", "1")]).sweep_period(),
            Duration::from_millis(250)
        );
        assert_eq!(service(&[]).sweep_period(), MAX_SWEEP_PERIOD);
    }
}
