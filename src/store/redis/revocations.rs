//! The cluster's revocation list: a sorted set of token ids (16 bytes each) scored by the
//! token's `exp`.
//!
//! Every authenticated request checks its token here, so checks are batched: the checks that
//! arrive while one round trip is under way are answered together by the next one, a single
//! `ZMSCORE` with every token id (see [`Checks`]). A request therefore costs at most one round
//! trip, shared with every request that arrived at the same time, and a logout answered by any
//! instance is seen by every instance's next check. Expired entries are removed by score range,
//! by the sweep of every instance and before each revocation, so the set holds live revocations
//! only; the revocation script also enforces `REVOCATION_LIST_MAX` atomically.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::{self, BoxFuture};
use redis::Script;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::Redis;
use crate::auth::jwt;
use crate::auth::{Revocation, RevocationStore, RevokeError, RevokedToken};
use crate::fault::StoreError;

/// KEYS: revoked set. ARGV: jti, exp, purge below this exp, capacity.
/// Returns {1, size} when revoked, {0, size} when already revoked, {-1, size} when full.
const REVOKE: &str = include_str!("lua/revoke.lua");

/// Most token ids checked by one `ZMSCORE`.
const MAX_CHECKS_PER_ROUND_TRIP: usize = 512;

/// The revocation list kept in Redis.
pub struct RedisRevocations {
    redis: Redis,
    capacity: usize,
    revoke: Script,
    last_len: AtomicUsize,
    checks: Checks,
}

impl RedisRevocations {
    /// The list, with its check batcher running until this value is dropped.
    pub(super) fn new(redis: Redis, capacity: usize) -> Self {
        Self {
            checks: Checks::start(redis.clone()),
            redis,
            capacity,
            revoke: Script::new(REVOKE),
            last_len: AtomicUsize::new(0),
        }
    }
}

/// A check waiting for its batch: the token id and where its `exp` (if revoked) goes.
type Check = (Uuid, oneshot::Sender<Result<Option<u64>, StoreError>>);

/// The batcher of revocation checks: one task takes every check waiting (up to
/// [`MAX_CHECKS_PER_ROUND_TRIP`]), asks Redis for all of them in one `ZMSCORE`, answers each,
/// and starts over. Under load the batches grow with the concurrency, so Redis and this instance
/// do one command's work for many requests; alone, a check waits for nothing but its own round
/// trip. The task ends when the list is dropped.
struct Checks {
    sender: mpsc::UnboundedSender<Check>,
}

impl Checks {
    fn start(redis: Redis) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run_checks(redis, receiver));
        Self { sender }
    }

    /// The `exp` of `jti` if it is revoked.
    async fn exp_of(&self, jti: Uuid) -> Result<Option<u64>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((jti, reply))
            .map_err(|_| StoreError::new("the revocation checks stopped"))?;
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::new("the revocation checks stopped")))
    }
}

async fn run_checks(redis: Redis, mut receiver: mpsc::UnboundedReceiver<Check>) {
    let mut batch: Vec<Check> = Vec::with_capacity(MAX_CHECKS_PER_ROUND_TRIP);
    while receiver
        .recv_many(&mut batch, MAX_CHECKS_PER_ROUND_TRIP)
        .await
        > 0
    {
        let key = &redis.keys.revoked;
        let ids: Vec<&[u8]> = batch
            .iter()
            .map(|(jti, _)| jti.as_bytes().as_slice())
            .collect();
        let scores = redis
            .run(|mut connection| async move {
                redis::cmd("ZMSCORE")
                    .arg(key)
                    .arg(&ids)
                    .query_async::<Vec<Option<f64>>>(&mut connection)
                    .await
            })
            .await;
        match scores {
            // Scores are Unix seconds written from integers: exact in an f64.
            Ok(scores) if scores.len() == batch.len() => {
                for ((_, reply), score) in batch.drain(..).zip(scores) {
                    let _ = reply.send(Ok(score.map(|exp| exp as u64)));
                }
            }
            Ok(_) => answer_all(
                &mut batch,
                &StoreError::new("redis: ZMSCORE answered short"),
            ),
            Err(err) => answer_all(&mut batch, &err),
        }
    }
}

fn answer_all(batch: &mut Vec<Check>, err: &StoreError) {
    for (_, reply) in batch.drain(..) {
        let _ = reply.send(Err(err.clone()));
    }
}

impl RevocationStore for RedisRevocations {
    fn revoke(
        &self,
        token: RevokedToken,
        now: u64,
    ) -> BoxFuture<'_, Result<Revocation, RevokeError>> {
        if !jwt::accepted_at(token.exp, now) {
            // Refused by verification anyway: nothing to remember.
            return Box::pin(future::ready(Ok(Revocation::Revoked)));
        }
        Box::pin(async move {
            let key = &self.redis.keys.revoked;
            let before = jwt::oldest_accepted_exp(now);
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
            let exp = self.checks.exp_of(jti).await?;
            Ok(exp.is_some_and(|exp| jwt::accepted_at(exp, now)))
        })
    }

    fn purge_expired(&self, now: u64) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let key = &self.redis.keys.revoked;
            let before = jwt::oldest_accepted_exp(now);
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
