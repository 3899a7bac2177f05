//! One notification producer for the whole cluster: a lease in Redis.
//!
//! Each instance's producer asks for the lease at every tick: the script takes it when it is
//! free and renews it when the caller holds it, so one instance holds it as long as it keeps
//! ticking. The lease outlives one interval by half an interval plus half a second, so a live
//! holder never loses it between two ticks, and when the holder dies another instance takes over
//! within about two intervals. An instance that stops gracefully gives it up at once.

use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::Script;
use uuid::Uuid;

use super::Redis;
use crate::events::NotifierLease;
use crate::fault::StoreError;

/// KEYS: lease. ARGV: holder, lifetime in ms. Returns 1 when the caller holds the lease.
const HOLD: &str = include_str!("lua/hold_lease.lua");

/// KEYS: lease. ARGV: holder. Deletes the lease if the caller holds it.
const RELEASE: &str = include_str!("lua/release_lease.lua");

/// This instance's claim on the notification lease.
pub struct RedisLease {
    redis: Redis,
    /// Who this instance is, for the lease's value.
    holder: String,
    lifetime: Duration,
    hold: Script,
    release: Script,
}

impl RedisLease {
    pub(super) fn new(redis: Redis, interval: Duration) -> Self {
        Self {
            redis,
            holder: Uuid::new_v4().to_string(),
            lifetime: lifetime(interval),
            hold: Script::new(HOLD),
            release: Script::new(RELEASE),
        }
    }

    /// Gives the lease up if this instance holds it (failures are logged: it expires anyway).
    pub(super) async fn release(&self) {
        let key = &self.redis.keys.notifier;
        let released = self
            .redis
            .run(|mut connection| async move {
                self.release
                    .key(key)
                    .arg(&self.holder)
                    .invoke_async::<u8>(&mut connection)
                    .await
            })
            .await;
        if let Err(err) = released {
            tracing::debug!(%err, "the notification lease was not released; it will expire");
        }
    }
}

/// How long a lease lasts: one interval, plus half an interval and half a second of slack for a
/// late tick.
fn lifetime(interval: Duration) -> Duration {
    interval + interval / 2 + Duration::from_millis(500)
}

impl NotifierLease for RedisLease {
    fn hold(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let key = &self.redis.keys.notifier;
            let millis = u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX);
            let held: u8 = self
                .redis
                .run(|mut connection| async move {
                    self.hold
                        .key(key)
                        .arg(&self.holder)
                        .arg(millis)
                        .invoke_async(&mut connection)
                        .await
                })
                .await?;
            Ok(held == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_outlives_one_interval_with_slack() {
        assert_eq!(
            lifetime(Duration::from_secs(2)),
            Duration::from_millis(3500)
        );
        assert_eq!(
            lifetime(Duration::from_millis(100)),
            Duration::from_millis(650)
        );
    }
}
