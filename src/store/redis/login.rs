//! The failed-login budgets per client and per account, shared by every instance: N instances
//! allow each budget once, not N times.
//!
//! The budgets are the same GCRA as the in-process ones ([`Budget`]), kept as one key per
//! client or account holding its theoretical arrival time, in milliseconds of the Redis
//! server's clock (so instances' clocks never disagree). A reservation is one script: the read
//! and the write cannot be split by another instance's. The key expires when the budget is
//! full again.

use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::Script;

use super::Redis;
use crate::auth::rate_limit::{Budget, BudgetError, BudgetKey, LoginFailures, RetryAfter};
use crate::fault::StoreError;

/// KEYS: the budget. ARGV: interval between units in ms, burst, back-off ceiling in ms,
/// `reserve` or `refund`. Returns 0 when reserved (or refunded), or the milliseconds to wait.
const BUDGET: &str = include_str!("lua/login_budget.lua");

/// Failed-login budgets kept in Redis.
pub struct RedisLoginFailures {
    redis: Redis,
    clients: Budget,
    accounts: Budget,
    script: Script,
}

impl RedisLoginFailures {
    pub(super) fn new(redis: Redis, clients: Budget, accounts: Budget) -> Self {
        Self {
            redis,
            clients,
            accounts,
            script: Script::new(BUDGET),
        }
    }

    async fn run(&self, key: BudgetKey, mode: &'static str) -> Result<u64, StoreError> {
        let (name, budget) = match key {
            BudgetKey::Client(ip) => (self.redis.keys.login_failures_of(ip), self.clients),
            BudgetKey::Account(digest) => {
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                (
                    self.redis
                        .keys
                        .login_failures_of(format_args!("account:{hex}")),
                    self.accounts,
                )
            }
        };
        self.redis
            .run(|mut connection| async move {
                self.script
                    .key(name)
                    .arg(budget.interval_ms)
                    .arg(budget.burst.get())
                    .arg(budget.backoff_max_ms)
                    .arg(mode)
                    .invoke_async(&mut connection)
                    .await
            })
            .await
    }
}

impl LoginFailures for RedisLoginFailures {
    fn reserve(&self, key: BudgetKey) -> BoxFuture<'_, Result<(), BudgetError>> {
        Box::pin(async move {
            match self.run(key, "reserve").await? {
                0 => Ok(()),
                wait_ms => Err(BudgetError::Spent(RetryAfter(Duration::from_millis(
                    wait_ms,
                )))),
            }
        })
    }

    fn refund(&self, key: BudgetKey) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.run(key, "refund").await.map(drop) })
    }

    fn purge(&self) {
        // Each key expires by itself once its budget is full again.
    }
}
