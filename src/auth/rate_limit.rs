//! Login budgets: failed logins per client ([`LoginRateLimiter`], `LOGIN_MAX_PER_MINUTE` wrong
//! passwords, then a pause) and successful logins per client and per account
//! ([`SuccessfulLogins`], `LOGIN_SUCCESS_MAX_PER_MINUTE`).
//!
//! Successful logins are limited because each token can be logged out, and each logout is
//! remembered until the token expires: a client with a valid account logging in and out in a
//! loop would otherwise grow the revocation list as fast as it can send requests. The budget is
//! far above what a person does (a login a second, sustained, per account and per address).
//!
//! Only failures spend the budget, so a client that logs in correctly is never slowed down, and
//! one client's failures never affect another. The budget itself is `governor`'s keyed GCRA
//! limiter (burst = the per-minute budget, one attempt back every `60 s / budget`).
//!
//! `governor` can only test a key by spending from it (there is no "peek", governor issue #15),
//! yet a client that has used up its budget must be refused *before* its password is checked:
//! otherwise a 429 would still tell a guesser that the guess was wrong, and a 200 that it was
//! right. So the failure that spends the last unit also records a short lockout, which is what
//! [`LoginRateLimiter::check`] consults; it lasts at most one replenish interval, after which
//! governor has an attempt to give again.
//!
//! Clients are keyed by IP address; IPv6 clients by their /64 prefix, since one host usually
//! owns a whole /64 and could otherwise rotate addresses for a fresh budget on every try.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use dashmap::DashMap;
use futures_util::future::{self, BoxFuture};
use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::fault::StoreError;

/// The client must wait this long before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins; retry in {0:?}")]
pub struct RetryAfter(pub Duration);

/// Why the failed-login budget refused or could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The client spent its budget.
    #[error(transparent)]
    Spent(#[from] RetryAfter),
    /// The budget is kept in a store that did not answer: the login is refused (fails closed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the failed-login budgets live: in this process ([`LoginRateLimiter`]), or in a store
/// shared by every instance, so N instances do not allow N times the budget.
pub trait LoginFailures: Send + Sync {
    /// Whether `client` may attempt a login now. Spends nothing.
    fn check(&self, client: IpAddr) -> BoxFuture<'_, Result<(), BudgetError>>;

    /// Spends one unit of `client`'s budget for a failed login; `Spent` when it was already
    /// spent (concurrent attempts that all passed the check).
    fn record_failure(&self, client: IpAddr) -> BoxFuture<'_, Result<(), BudgetError>>;

    /// Forgets clients whose budget is full again; run periodically.
    fn purge(&self);
}

type KeyedLimiter<C> =
    RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, StateInformationMiddleware>;

impl<C: Clock + Clone + Send + Sync> LoginFailures for LoginRateLimiter<C>
where
    C::Instant: Send + Sync,
{
    fn check(&self, client: IpAddr) -> BoxFuture<'_, Result<(), BudgetError>> {
        Box::pin(future::ready(
            LoginRateLimiter::check(self, client).map_err(BudgetError::from),
        ))
    }

    fn record_failure(&self, client: IpAddr) -> BoxFuture<'_, Result<(), BudgetError>> {
        Box::pin(future::ready(
            LoginRateLimiter::record_failure(self, client).map_err(BudgetError::from),
        ))
    }

    fn purge(&self) {
        LoginRateLimiter::purge(self);
    }
}

/// Failed-login budgets for every client, plus the lockouts of clients that spent theirs.
pub struct LoginRateLimiter<C: Clock = MonotonicClock> {
    budget: KeyedLimiter<C>,
    lockouts: DashMap<IpAddr, C::Instant>,
    clock: C,
    replenish: Duration,
}

impl<C: Clock> std::fmt::Debug for LoginRateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRateLimiter")
            .field("replenish", &self.replenish)
            .field("locked_out", &self.lockouts.len())
            .finish_non_exhaustive()
    }
}

impl LoginRateLimiter {
    /// Allows `max_failures_per_minute` failed logins per client, on the real clock.
    pub fn new(max_failures_per_minute: NonZeroU32) -> Self {
        Self::with_clock(max_failures_per_minute, MonotonicClock)
    }
}

impl<C: Clock + Clone> LoginRateLimiter<C> {
    /// Like [`LoginRateLimiter::new`] on `clock` (tests pass a fake one).
    pub fn with_clock(max_failures_per_minute: NonZeroU32, clock: C) -> Self {
        let quota = Quota::per_minute(max_failures_per_minute);
        Self {
            budget: RateLimiter::dashmap_with_clock(quota, clock.clone()).with_middleware(),
            lockouts: DashMap::new(),
            clock,
            replenish: quota.replenish_interval(),
        }
    }

    /// Whether `client` may attempt a login now. Spends nothing.
    pub fn check(&self, client: IpAddr) -> Result<(), RetryAfter> {
        let key = client_key(client);
        let Some(until) = self.lockouts.get(&key).map(|until| *until) else {
            return Ok(());
        };
        let now = self.clock.now();
        if now < until {
            return Err(RetryAfter(until.duration_since(now).into()));
        }
        self.lockouts.remove_if(&key, |_, until| *until <= now);
        Ok(())
    }

    /// Spends one unit of `client`'s budget for a failed login. `Err` when the budget was already
    /// spent (concurrent attempts that all passed [`LoginRateLimiter::check`]).
    pub fn record_failure(&self, client: IpAddr) -> Result<(), RetryAfter> {
        let key = client_key(client);
        match self.budget.check_key(&key) {
            Ok(state) => {
                if state.remaining_burst_capacity() == 0 {
                    self.lock_out(key, self.replenish);
                }
                Ok(())
            }
            Err(not_until) => {
                let wait: Duration = not_until.wait_time_from(self.clock.now());
                self.lock_out(key, wait);
                Err(RetryAfter(wait))
            }
        }
    }

    /// Forgets clients whose budget is full again and lockouts that are over; run periodically.
    pub fn purge(&self) {
        let now = self.clock.now();
        self.lockouts.retain(|_, until| *until > now);
        self.budget.retain_recent();
        self.budget.shrink_to_fit();
    }

    /// Clients currently tracked (with a partly spent budget or a lockout).
    pub fn tracked_clients(&self) -> usize {
        self.budget.len().max(self.lockouts.len())
    }

    fn lock_out(&self, key: IpAddr, wait: Duration) {
        let until = self.clock.now() + wait.into();
        self.lockouts
            .entry(key)
            .and_modify(|current| *current = (*current).max(until))
            .or_insert(until);
    }
}

type KeyedBudget<K, C> =
    RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The successful-login budgets: one per client and one per account, each
/// `LOGIN_SUCCESS_MAX_PER_MINUTE` a minute (with that burst). A login spends from both.
pub struct SuccessfulLogins<C: Clock = MonotonicClock> {
    by_client: KeyedBudget<IpAddr, C>,
    by_account: KeyedBudget<u64, C>,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for SuccessfulLogins<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SuccessfulLogins")
            .field("clients", &self.by_client.len())
            .field("accounts", &self.by_account.len())
            .finish_non_exhaustive()
    }
}

impl SuccessfulLogins {
    /// Allows `per_minute` successful logins per client and per account, on the real clock.
    pub fn new(per_minute: NonZeroU32) -> Self {
        Self::with_clock(per_minute, MonotonicClock)
    }
}

impl<C: Clock + Clone> SuccessfulLogins<C> {
    /// Like [`SuccessfulLogins::new`] on `clock` (tests pass a fake one).
    pub fn with_clock(per_minute: NonZeroU32, clock: C) -> Self {
        let quota = Quota::per_minute(per_minute);
        Self {
            by_client: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            by_account: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// Spends one login of `client`'s and of `account`'s budgets, or says how long to wait.
    /// The account is checked first: an exhausted account spends nothing of the client's.
    pub fn spend(&self, client: IpAddr, account: u64) -> Result<(), RetryAfter> {
        let wait = |not_until: governor::NotUntil<C::Instant>| {
            RetryAfter(not_until.wait_time_from(self.clock.now()))
        };
        self.by_account.check_key(&account).map_err(wait)?;
        self.by_client.check_key(&client_key(client)).map_err(wait)
    }

    /// Forgets budgets that are full again; run periodically.
    pub fn purge(&self) {
        self.by_client.retain_recent();
        self.by_client.shrink_to_fit();
        self.by_account.retain_recent();
    }
}

/// The budget key of a client: its IPv4 address, or the /64 prefix of its IPv6 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn limiter(per_minute: u32) -> (LoginRateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let per_minute = NonZeroU32::new(per_minute).expect("non-zero");
        (
            LoginRateLimiter::with_clock(per_minute, clock.clone()),
            clock,
        )
    }

    #[test]
    fn the_attempt_after_the_budget_is_refused_with_a_wait() {
        let (limiter, _) = limiter(2);
        for _ in 0..2 {
            assert_eq!(limiter.check(A), Ok(()));
            assert_eq!(limiter.record_failure(A), Ok(()));
        }
        let RetryAfter(wait) = limiter.check(A).expect_err("budget spent");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }

    #[test]
    fn one_clients_failures_never_block_another() {
        let (limiter, _) = limiter(2);
        for _ in 0..5 {
            let _ = limiter.record_failure(A);
        }
        assert!(limiter.check(A).is_err());
        assert_eq!(limiter.check(B), Ok(()));
        assert_eq!(limiter.record_failure(B), Ok(()));
    }

    #[test]
    fn checking_alone_spends_nothing() {
        let (limiter, _) = limiter(1);
        for _ in 0..100 {
            assert_eq!(limiter.check(A), Ok(()));
        }
        assert_eq!(limiter.record_failure(A), Ok(()));
        assert!(limiter.check(A).is_err());
    }

    #[test]
    fn budget_comes_back_over_time() {
        let (limiter, clock) = limiter(2);
        limiter.record_failure(A).expect("first");
        limiter.record_failure(A).expect("second");
        let RetryAfter(wait) = limiter.check(A).expect_err("locked");
        clock.advance(wait);
        assert_eq!(limiter.check(A), Ok(()));
        assert_eq!(limiter.record_failure(A), Ok(()));
        assert!(
            limiter.check(A).is_err(),
            "one unit came back, not the whole budget"
        );
    }

    #[test]
    fn racing_failures_past_the_budget_are_refused() {
        let (limiter, _) = limiter(1);
        limiter.record_failure(A).expect("within budget");
        assert!(limiter.record_failure(A).is_err());
    }

    #[test]
    fn purge_forgets_rested_clients() {
        let (limiter, clock) = limiter(2);
        limiter.record_failure(A).expect("first");
        limiter.record_failure(B).expect("first");
        limiter.record_failure(B).expect("second");
        assert_eq!(limiter.tracked_clients(), 2);
        clock.advance(Duration::from_secs(120));
        limiter.purge();
        assert_eq!(limiter.tracked_clients(), 0);
        assert_eq!(limiter.check(B), Ok(()));
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64_prefix() {
        let (limiter, _) = limiter(1);
        let host: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let neighbour: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other_net: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        limiter.record_failure(host).expect("within budget");
        assert!(limiter.check(neighbour).is_err());
        assert_eq!(limiter.check(other_net), Ok(()));
    }

    fn successes(per_minute: u32) -> (SuccessfulLogins<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let per_minute = NonZeroU32::new(per_minute).expect("non-zero");
        (
            SuccessfulLogins::with_clock(per_minute, clock.clone()),
            clock,
        )
    }

    #[test]
    fn successful_logins_are_limited_per_account_and_per_client() {
        let (limits, clock) = successes(2);
        limits.spend(A, 1).expect("first");
        limits.spend(B, 1).expect("second, from elsewhere");
        let RetryAfter(wait) = limits
            .spend(B, 1)
            .expect_err("the account's budget is spent");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        limits.spend(A, 2).expect("another account from A");
        assert!(limits.spend(A, 3).is_err(), "A's budget is spent");
        limits
            .spend(B, 3)
            .expect("B has budget left and account 3 too");
        clock.advance(Duration::from_secs(60));
        limits.purge();
        limits.spend(A, 1).expect("budgets come back");
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let (limiter, _) = limiter(1);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        limiter.record_failure(mapped).expect("within budget");
        assert!(limiter.check(A).is_err());
    }
}
