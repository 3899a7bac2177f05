//! `STORE=redis`: the state of every instance that uses the same `REDIS_URL` and
//! `REDIS_PREFIX`, so that several instances behind a load balancer behave as one server.
//!
//! - [`queue`]: one priority queue with its leases: task records in a hash, a sorted set per
//!   state (the ready one scored by priority, its members sorting by arrival within a score);
//!   each transition is one server-side script (atomic, one round trip);
//! - [`revocations`]: a sorted set of revoked token ids scored by expiry; concurrent checks share
//!   one `ZMSCORE`;
//! - [`events`]: global event ids, a capped stream for replay, and one subscription per
//!   instance fanned out to its local clients;
//! - [`lease`]: which instance produces the periodic notifications;
//! - [`login`]: the failed-login budgets per client and per account, shared by every
//!   instance.
//!
//! Every key starts with `REDIS_PREFIX` inside a hash tag per structure (see [`Keys`]), so
//! several deployments share one Redis and every script stays valid in a Redis Cluster.
//!
//! `REDIS_URL` may be `rediss://` (TLS through rustls, the server checked against the system's
//! certificate roots, or those of `SSL_CERT_FILE`); no log line shows its credentials, whatever
//! the URL's form (see [`RedisUrl`](crate::config::RedisUrl)).
//!
//! Commands go through one multiplexed connection (`ConnectionManager`, which reconnects by
//! itself), never a connection per request; only the event subscription has a connection of its
//! own, as pub/sub requires. Each operation has [`TIMEOUT`] to complete, reconnection included:
//! while Redis is unreachable a request is answered `503 store_unavailable` within about a
//! second instead of hanging, and authentication fails closed.

mod events;
mod lease;
mod login;
mod queue;
mod revocations;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use metrics::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::fault::StoreError;
use crate::metrics::Metrics;
use crate::queue::Wakeups;
use crate::store::{StoreHealth, Stores};

/// Longest a store operation may take, reconnection included, before it is answered as a store
/// failure.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The names of one deployment's keys.
///
/// Each structure has its own hash tag (`{<prefix>:queue}`, ...): every script touches the keys
/// of one structure only, so in a Redis Cluster each structure stays whole on one shard while
/// the structures (and the per-client budgets) spread over the shards.
#[derive(Debug)]
struct Keys {
    /// The queue's keys, in the order of `lua/queue_prelude.lua`: the task records, the sets
    /// of ready, delayed, leased and dead tasks, the acknowledgements remembered and their
    /// ends, the idempotency keys and their ends, the arrival counter.
    queue: [String; 10],
    /// Pub/sub channel: a task became available (the number of them).
    queue_wake: String,
    /// Sorted set: revoked token ids scored by `exp`.
    revoked: String,
    /// Counter: the last event id.
    event_ids: String,
    /// Stream: the events retained for replay.
    events: String,
    /// Pub/sub channel: every event, as `<id> <data>`.
    event_channel: String,
    /// String with expiry: the instance producing notifications.
    notifier: String,
    /// The failed-login budgets: this, then the client's address (or `account:` and the
    /// digest of a username), then `}`.
    login_failures: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            queue: [
                "tasks",
                "ready",
                "delayed",
                "leased",
                "dead",
                "acked",
                "acked:ends",
                "keys",
                "keys:ends",
                "arrivals",
            ]
            .map(|name| format!("{{{prefix}:queue}}:{name}")),
            queue_wake: format!("{prefix}:queue:wake"),
            revoked: format!("{{{prefix}:revoked}}"),
            event_ids: format!("{{{prefix}:events}}:ids"),
            events: format!("{{{prefix}:events}}"),
            event_channel: format!("{prefix}:events"),
            notifier: format!("{{{prefix}:notifier}}"),
            login_failures: format!("{{{prefix}:login:"),
        }
    }

    /// The queue's keys, for its scripts.
    fn queue_keys(&self) -> &[String; 10] {
        &self.queue
    }

    /// The failed-login budget of one client (its own hash tag: budgets spread over shards).
    fn login_failures_of(&self, client: impl std::fmt::Display) -> String {
        format!("{}{client}}}", self.login_failures)
    }
}

/// The connection shared by this instance's Redis stores. Cheap to clone.
#[derive(Clone)]
struct Redis {
    client: Client,
    connection: ConnectionManager,
    keys: Arc<Keys>,
    errors: Counter,
}

impl Redis {
    /// A lazily connected handle: the server starts even while Redis is down, and reports
    /// itself not ready until it answers.
    fn new(config: &Config, metrics: &Metrics) -> Result<Self, StoreError> {
        let url = config
            .store
            .redis_url
            .as_ref()
            .ok_or_else(|| StoreError::new("REDIS_URL is not set"))?;
        if url.is_tls() {
            // rediss:// verifies the server with rustls and the system's roots (or
            // SSL_CERT_FILE); the process has one crypto provider, ring, whoever installs it.
            let _already = rustls::crypto::ring::default_provider().install_default();
        }
        let client = Client::open(url.as_str()).map_err(StoreError::new)?;
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(CONNECT_TIMEOUT);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), settings)
            .map_err(StoreError::new)?;
        Ok(Self {
            client,
            connection,
            keys: Arc::new(Keys::new(&config.store.redis_prefix)),
            errors: metrics.counter("store_errors_total", &[("store", "redis")]),
        })
    }

    /// Runs `operation` on the shared connection within [`TIMEOUT`].
    async fn run<T, F, Fut>(&self, operation: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let outcome = tokio::time::timeout(TIMEOUT, operation(self.connection.clone())).await;
        let error = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => StoreError::new(format_args!("redis: {err}")),
            Err(_) => StoreError::new(format_args!("redis: no answer within {TIMEOUT:?}")),
        };
        self.errors.increment(1);
        Err(error)
    }
}

/// Opens the Redis stores of `config`. Nothing is sent to Redis yet: the connection is made on
/// first use, so an instance starts (and says it is not ready) while Redis is down.
pub fn open(config: &Config, metrics: &Metrics) -> Result<Stores, StoreError> {
    let redis = Redis::new(config, metrics)?;
    let stop = CancellationToken::new();
    // Long polls of this instance, woken by the relay when any instance makes a task available.
    let wakeups = Wakeups::default();
    let lease = Arc::new(lease::RedisLease::new(
        redis.clone(),
        config.events.notify_interval,
    ));
    tracing::info!(
        prefix = %config.store.redis_prefix,
        url = ?config.store.redis_url,
        "redis store: state shared with every instance using this URL and prefix"
    );
    Ok(Stores {
        queue: Arc::new(queue::RedisQueue::new(
            redis.clone(),
            config.queue.settings(),
            wakeups.clone(),
        )),
        revocations: Arc::new(revocations::RedisRevocations::new(
            redis.clone(),
            config.auth.revocation_list_max,
        )),
        events: Arc::new(events::RedisEventBus::start(
            redis.clone(),
            config.events.sse_replay_buffer,
            metrics,
            wakeups,
            stop.clone(),
        )),
        notifier: lease.clone(),
        login_failures: Arc::new(login::RedisLoginFailures::new(
            redis.clone(),
            config.auth.client_budget(),
            config.auth.account_budget(),
        )),
        health: Arc::new(RedisHealth { redis, lease, stop }),
    })
}

/// Readiness and closing of the Redis stores.
struct RedisHealth {
    redis: Redis,
    lease: Arc<lease::RedisLease>,
    stop: CancellationToken,
}

impl StoreHealth for RedisHealth {
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.redis.run(|mut connection| async move {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map(drop)
        }))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.cancel();
            // Another instance takes over the notifications at its next tick, not a lease later.
            self.lease.release().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_structure_has_its_own_hash_tag_under_the_prefix() {
        let keys = Keys::new("shop");
        let tag = |key: &str| key[key.find('{').unwrap() + 1..key.find('}').unwrap()].to_owned();
        assert!(keys.queue.iter().all(|key| tag(key) == "shop:queue"));
        assert_eq!(tag(&keys.events), tag(&keys.event_ids));
        assert_ne!(tag(&keys.queue[0]), tag(&keys.events));
        assert_eq!(
            keys.login_failures_of("192.0.2.1"),
            "{shop:login:192.0.2.1}"
        );
        assert!(keys.revoked.starts_with("{shop:"));
    }
}
