//! The cluster's revocation list: a sorted set of token ids (16 bytes each) scored by the
//! token's `exp`.
//!
//! A check is one `ZSCORE`: a single cheap round trip, and a logout answered by any instance is
//! seen by every instance's next check. Expired entries are removed by score range, by the sweep
//! of every instance and before each revocation, so the set holds live revocations only; the
//! revocation script also enforces `REVOCATION_LIST_MAX` atomically.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::{self, BoxFuture};
use redis::Script;
use uuid::Uuid;

use super::Redis;
use crate::auth::jwt::LEEWAY_SECONDS;
use crate::auth::revocation::Expiry;
use crate::auth::{Revocation, RevocationStore, RevokeError, RevokedToken};
use crate::store::StoreError;

/// KEYS: revoked set. ARGV: jti, exp, purge below this exp, capacity.
/// Returns {1, size} when revoked, {0, size} when already revoked, {-1, size} when full.
const REVOKE: &str = include_str!("lua/revoke.lua");

/// The revocation list kept in Redis.
pub struct RedisRevocations {
    redis: Redis,
    capacity: usize,
    revoke: Script,
    expiry: Expiry,
    last_len: AtomicUsize,
}

impl RedisRevocations {
    pub(super) fn new(redis: Redis, capacity: usize) -> Self {
        Self {
            redis,
            capacity,
            revoke: Script::new(REVOKE),
            expiry: Expiry::new(LEEWAY_SECONDS),
            last_len: AtomicUsize::new(0),
        }
    }
}

impl RevocationStore for RedisRevocations {
    fn revoke(
        &self,
        token: RevokedToken,
        now: u64,
    ) -> BoxFuture<'_, Result<Revocation, RevokeError>> {
        if !self.expiry.in_force(token.exp, now) {
            // Refused by verification anyway: nothing to remember.
            return Box::pin(future::ready(Ok(Revocation::Revoked)));
        }
        Box::pin(async move {
            let key = &self.redis.keys.revoked;
            let before = self.expiry.purge_before(now);
            let (outcome, size): (i8, usize) = self
                .redis
                .run(|mut connection| async move {
                    self.revoke
                        .key(key)
                        .arg(token.jti.as_bytes().as_slice())
                        .arg(token.exp)
                        .arg(before)
                        .arg(self.capacity)
                        .invoke_async(&mut connection)
                        .await
                })
                .await?;
            self.last_len.store(size, Ordering::Relaxed);
            match outcome {
                1 => Ok(Revocation::Revoked),
                0 => Ok(Revocation::AlreadyRevoked),
                _ => Err(RevokeError::Full {
                    capacity: self.capacity,
                }),
            }
        })
    }

    fn is_revoked(&self, jti: Uuid, now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let key = &self.redis.keys.revoked;
            let exp: Option<u64> = self
                .redis
                .run(|mut connection| async move {
                    redis::cmd("ZSCORE")
                        .arg(key)
                        .arg(jti.as_bytes().as_slice())
                        .query_async::<Option<f64>>(&mut connection)
                        .await
                        // Scores are Unix seconds written from integers: exact in an f64.
                        .map(|score| score.map(|exp| exp as u64))
                })
                .await?;
            Ok(exp.is_some_and(|exp| self.expiry.in_force(exp, now)))
        })
    }

    fn purge_expired(&self, now: u64) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let key = &self.redis.keys.revoked;
            let before = self.expiry.purge_before(now);
            let (purged, size): (usize, usize) = self
                .redis
                .run(|mut connection| async move {
                    redis::pipe()
                        .cmd("ZREMRANGEBYSCORE")
                        .arg(key)
                        .arg("-inf")
                        .arg(format!("({before}"))
                        .cmd("ZCARD")
                        .arg(key)
                        .query_async(&mut connection)
                        .await
                })
                .await?;
            self.last_len.store(size, Ordering::Relaxed);
            Ok(purged)
        })
    }

    fn len(&self) -> usize {
        self.last_len.load(Ordering::Relaxed)
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}
