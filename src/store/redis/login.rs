//! The failed-login budget per client, shared by every instance: N instances allow the budget
//! once, not N times.
//!
//! The budget is the same GCRA as the in-process one (`LOGIN_MAX_PER_MINUTE` failures in a
//! burst, one back every `60 s / budget`), kept as one key per client holding its theoretical
//! arrival time, in milliseconds of the Redis server's clock (so instances' clocks never
//! disagree). The key expires when the budget is full again.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::Script;

use super::Redis;
use crate::auth::rate_limit::{BudgetError, LoginFailures, RetryAfter, client_key};

/// KEYS: the client's budget. ARGV: interval between units in ms, burst, `check` or `spend`.
/// Returns 0 when allowed (and spent, for `spend`), or the milliseconds to wait.
const BUDGET: &str = include_str!("lua/login_budget.lua");

/// Failed-login budgets kept in Redis.
pub struct RedisLoginFailures {
    redis: Redis,
    /// Milliseconds for one unit to come back.
    interval_ms: u64,
    burst: NonZeroU32,
    script: Script,
}

impl RedisLoginFailures {
    pub(super) fn new(redis: Redis, per_minute: NonZeroU32) -> Self {
        Self {
            redis,
            interval_ms: 60_000 / u64::from(per_minute.get()),
            burst: per_minute,
            script: Script::new(BUDGET),
        }
    }

    async fn ask(&self, client: IpAddr, mode: &'static str) -> Result<(), BudgetError> {
        let key = self.redis.keys.login_failures_of(client_key(client));
        let wait_ms: u64 = self
            .redis
            .run(|mut connection| async move {
                self.script
                    .key(key)
                    .arg(self.interval_ms)
                    .arg(self.burst.get())
                    .arg(mode)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        if wait_ms == 0 {
            Ok(())
        } else {
            Err(BudgetError::Spent(RetryAfter(Duration::from_millis(
                wait_ms,
            ))))
        }
    }
}

impl LoginFailures for RedisLoginFailures {
    fn check(&self, client: IpAddr) -> BoxFuture<'_, Result<(), BudgetError>> {
        Box::pin(self.ask(client, "check"))
    }

    fn record_failure(&self, client: IpAddr) -> BoxFuture<'_, Result<(), BudgetError>> {
        Box::pin(self.ask(client, "spend"))
    }

    fn purge(&self) {
        // Each client's key expires by itself once its budget is full again.
    }
}
