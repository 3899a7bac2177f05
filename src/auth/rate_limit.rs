//! Login budgets: failed logins per client and per account ([`LoginFailures`], reserved before
//! the password is checked), and successful logins per client and per account
//! ([`SuccessfulLogins`], `LOGIN_SUCCESS_MAX_PER_MINUTE`).
//!
//! **Failures.** Each login attempt first *reserves* one unit of its client's budget
//! (`LOGIN_MAX_PER_MINUTE`) and one of its account's (`LOGIN_ACCOUNT_MAX_PER_MINUTE`, whatever
//! the client address), atomically: a reservation either takes a unit or is refused, so a burst
//! of parallel guesses gets no more answers than the budget, however it is timed. Only then is
//! the password checked; a login that succeeds gives its units back, so a client that logs in
//! correctly is never slowed down. A client or account without budget is refused (429) before
//! any password check, so the 429 tells nothing about the guess.
//!
//! Each budget is a GCRA (the generic cell rate algorithm of `governor` and of Redis' own
//! rate limiters): one value per key, its *theoretical arrival time*; a burst of `budget`
//! attempts, then one more every `60 s / budget`. An account's budget also backs off: an
//! attempt refused for lack of budget pushes the account's next unit one interval further
//! (up to `LOGIN_BACKOFF_MAX_SECONDS`), so whoever keeps guessing waits longer, while a
//! person who stops gets the account back as before.
//!
//! **Successes** are limited because each token can be logged out, and each logout is
//! remembered until the token expires: a client with a valid account logging in and out in a
//! loop would otherwise grow the revocation list as fast as it can send requests.
//!
//! Clients are keyed by IP address; IPv6 clients by their /64 prefix, since one host usually
//! owns a whole /64 and could otherwise rotate addresses for a fresh budget on every try.
//! Accounts are keyed by a digest of the username as typed, known or not, so a refusal does
//! not tell which usernames exist.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures_util::future::{self, BoxFuture};
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};

use crate::fault::StoreError;

/// The client must wait this long before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins; retry in {0:?}")]
pub struct RetryAfter(pub Duration);

/// Why a budget refused or could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// No unit is left.
    #[error(transparent)]
    Spent(#[from] RetryAfter),
    /// The budget is kept in a store that did not answer: the login is refused (fails closed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whose budget: a client's (its address, or /64) or an account's (a digest of its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetKey {
    /// A client address, as [`client_key`] groups them.
    Client(IpAddr),
    /// The first 16 bytes of the SHA-256 of a username.
    Account([u8; 16]),
}

impl BudgetKey {
    /// The budget of the client at `ip`.
    pub fn client(ip: IpAddr) -> Self {
        Self::Client(client_key(ip))
    }

    /// The budget of the account `username` (configured or not).
    pub fn account(username: &str) -> Self {
        let digest = Sha256::digest(username.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Self::Account(key)
    }
}

/// The shape of one kind of budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Attempts in a burst.
    pub burst: NonZeroU32,
    /// Milliseconds for one attempt to come back.
    pub interval_ms: u64,
    /// How far refused attempts may push the wait (0: they do not push it).
    pub backoff_max_ms: u64,
}

impl Budget {
    /// `per_minute` attempts a minute, in a burst of as many; refused attempts push the wait
    /// up to `backoff_max` further.
    pub fn per_minute(per_minute: NonZeroU32, backoff_max: Duration) -> Self {
        Self {
            burst: per_minute,
            interval_ms: (60_000 / u64::from(per_minute.get())).max(1),
            backoff_max_ms: u64::try_from(backoff_max.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// How far ahead of `now` the arrival time may be for an attempt to pass.
    fn tolerance(self) -> u64 {
        u64::from(self.burst.get() - 1) * self.interval_ms
    }

    /// One reservation at `now` against the arrival time `tat` (none: a full budget): the new
    /// arrival time to keep, and `Err` with the wait when refused.
    pub fn reserve(self, tat: Option<u64>, now: u64) -> (u64, Result<(), u64>) {
        let tat = tat.unwrap_or(now).max(now);
        if tat - now <= self.tolerance() {
            return (tat + self.interval_ms, Ok(()));
        }
        let ceiling = now + self.tolerance() + self.interval_ms + self.backoff_max_ms;
        let pushed = if self.backoff_max_ms > 0 {
            (tat + self.interval_ms).min(ceiling.max(tat))
        } else {
            tat
        };
        (pushed, Err(pushed - now - self.tolerance()))
    }

    /// The arrival time once a reservation made before `now` is given back (none: the budget
    /// is full again).
    pub fn refund(self, tat: Option<u64>, now: u64) -> Option<u64> {
        tat.map(|tat| tat.saturating_sub(self.interval_ms))
            .filter(|tat| *tat > now)
    }
}

/// Where the failed-login budgets live: in this process ([`LoginBudgets`]), or in a store
/// shared by every instance, so N instances do not allow N times the budget.
pub trait LoginFailures: Send + Sync {
    /// Takes one unit of `key`'s budget, or says how long to wait; atomic, so parallel
    /// attempts never take more units than the budget holds.
    fn reserve(&self, key: BudgetKey) -> BoxFuture<'_, Result<(), BudgetError>>;

    /// Gives back a unit [`LoginFailures::reserve`] took, for a login that succeeded (or was
    /// refused for another budget).
    fn refund(&self, key: BudgetKey) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Forgets keys whose budget is full again; run periodically.
    fn purge(&self);
}

/// Milliseconds on some monotonic clock.
pub trait Millis: Send + Sync {
    /// Now.
    fn now_ms(&self) -> u64;
}

/// The process's monotonic clock, from its creation.
#[derive(Debug, Clone)]
pub struct Monotonic(Instant);

impl Default for Monotonic {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Millis for Monotonic {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Failed-login budgets of this process: one arrival time per client and per account.
pub struct LoginBudgets<C = Monotonic> {
    clients: Budget,
    accounts: Budget,
    tats: DashMap<BudgetKey, u64>,
    clock: C,
}

impl<C> std::fmt::Debug for LoginBudgets<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBudgets")
            .field("clients", &self.clients)
            .field("accounts", &self.accounts)
            .field("tracked", &self.tats.len())
            .finish_non_exhaustive()
    }
}

impl LoginBudgets {
    /// Budgets shaped `clients` and `accounts`, on the real clock.
    pub fn new(clients: Budget, accounts: Budget) -> Self {
        Self::with_clock(clients, accounts, Monotonic::default())
    }
}

impl<C: Millis> LoginBudgets<C> {
    /// Like [`LoginBudgets::new`] on `clock` (tests pass a fake one).
    pub fn with_clock(clients: Budget, accounts: Budget, clock: C) -> Self {
        Self {
            clients,
            accounts,
            tats: DashMap::new(),
            clock,
        }
    }

    fn shape(&self, key: BudgetKey) -> Budget {
        match key {
            BudgetKey::Client(_) => self.clients,
            BudgetKey::Account(_) => self.accounts,
        }
    }

    /// Takes one unit of `key`'s budget, or says how long to wait.
    pub fn try_reserve(&self, key: BudgetKey) -> Result<(), RetryAfter> {
        let now = self.clock.now_ms();
        let budget = self.shape(key);
        // The entry's shard lock makes the read and the write one step.
        let mut entry = self.tats.entry(key).or_insert(now);
        let (tat, outcome) = budget.reserve(Some(*entry), now);
        *entry = tat;
        outcome.map_err(|wait| RetryAfter(Duration::from_millis(wait)))
    }

    /// Gives back one unit of `key`'s budget.
    pub fn give_back(&self, key: BudgetKey) {
        let now = self.clock.now_ms();
        let budget = self.shape(key);
        self.tats
            .remove_if_mut(&key, |_, tat| match budget.refund(Some(*tat), now) {
                Some(refunded) => {
                    *tat = refunded;
                    false
                }
                None => true,
            });
    }

    /// Forgets keys whose budget is full again.
    pub fn forget_rested(&self) {
        let now = self.clock.now_ms();
        self.tats.retain(|_, tat| *tat > now);
        self.tats.shrink_to_fit();
    }

    /// Keys currently tracked (with a partly spent budget).
    pub fn tracked(&self) -> usize {
        self.tats.len()
    }
}

impl<C: Millis> LoginFailures for LoginBudgets<C> {
    fn reserve(&self, key: BudgetKey) -> BoxFuture<'_, Result<(), BudgetError>> {
        Box::pin(future::ready(
            self.try_reserve(key).map_err(BudgetError::from),
        ))
    }

    fn refund(&self, key: BudgetKey) -> BoxFuture<'_, Result<(), StoreError>> {
        self.give_back(key);
        Box::pin(future::ready(Ok(())))
    }

    fn purge(&self) {
        self.forget_rested();
    }
}

impl<C: Millis> Millis for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
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
    use std::sync::atomic::{AtomicU64, Ordering};

    use governor::clock::FakeRelativeClock;

    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[derive(Default)]
    struct FakeMillis(AtomicU64);

    impl FakeMillis {
        fn advance(&self, by: Duration) {
            self.0
                .fetch_add(u64::try_from(by.as_millis()).unwrap(), Ordering::SeqCst);
        }
    }

    impl Millis for FakeMillis {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn shape(per_minute: u32, backoff_secs: u64) -> Budget {
        Budget::per_minute(
            NonZeroU32::new(per_minute).expect("non-zero"),
            Duration::from_secs(backoff_secs),
        )
    }

    fn budgets(clients: u32, accounts: u32) -> (LoginBudgets<Arc<FakeMillis>>, Arc<FakeMillis>) {
        let clock = Arc::new(FakeMillis::default());
        let budgets =
            LoginBudgets::with_clock(shape(clients, 0), shape(accounts, 600), clock.clone());
        (budgets, clock)
    }

    #[test]
    fn the_reservation_after_the_budget_is_refused_with_a_wait() {
        let (budgets, _) = budgets(2, 100);
        let client = BudgetKey::client(A);
        budgets.try_reserve(client).expect("first");
        budgets.try_reserve(client).expect("second");
        let RetryAfter(wait) = budgets.try_reserve(client).expect_err("budget spent");
        assert_eq!(wait, Duration::from_secs(30));
        assert!(
            budgets.try_reserve(BudgetKey::client(B)).is_ok(),
            "B has its own"
        );
    }

    #[test]
    fn a_refund_gives_the_unit_back() {
        let (budgets, _) = budgets(1, 100);
        let client = BudgetKey::client(A);
        for _ in 0..10 {
            budgets.try_reserve(client).expect("a unit");
            budgets.give_back(client);
        }
        assert_eq!(budgets.tracked(), 0, "a full budget is not kept");
    }

    #[test]
    fn budgets_come_back_one_interval_at_a_time() {
        let (budgets, clock) = budgets(2, 100);
        let client = BudgetKey::client(A);
        budgets.try_reserve(client).expect("first");
        budgets.try_reserve(client).expect("second");
        let RetryAfter(wait) = budgets.try_reserve(client).expect_err("spent");
        clock.advance(wait);
        budgets.try_reserve(client).expect("one came back");
        assert!(budgets.try_reserve(client).is_err(), "only one");
        clock.advance(Duration::from_secs(120));
        budgets.forget_rested();
        assert_eq!(budgets.tracked(), 0);
    }

    #[test]
    fn an_account_backs_off_while_refused_attempts_go_on() {
        let (budgets, clock) = budgets(100, 2);
        let account = BudgetKey::account("alice");
        budgets.try_reserve(account).expect("first");
        budgets.try_reserve(account).expect("second");
        let waits: Vec<Duration> = (0..4)
            .map(|_| budgets.try_reserve(account).expect_err("spent").0)
            .collect();
        assert!(waits.windows(2).all(|w| w[1] > w[0]), "{waits:?}");
        let capped: Vec<Duration> = (0..30)
            .map(|_| budgets.try_reserve(account).expect_err("spent").0)
            .collect();
        // At most one interval (30 s) plus the back-off ceiling (600 s).
        assert_eq!(capped.last(), Some(&Duration::from_secs(630)), "{capped:?}");
        clock.advance(*capped.last().expect("a wait"));
        budgets.try_reserve(account).expect("back after the wait");
        assert_ne!(BudgetKey::account("alice"), BudgetKey::account("bob"));
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64_prefix() {
        let host: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let neighbour: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other_net: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(BudgetKey::client(host), BudgetKey::client(neighbour));
        assert_ne!(BudgetKey::client(host), BudgetKey::client(other_net));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(BudgetKey::client(mapped), BudgetKey::client(A));
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
}
