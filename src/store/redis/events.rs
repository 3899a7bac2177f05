//! The cluster's event stream: global ids, a replay window in Redis, and one subscription per
//! instance fanned out to its local clients.
//!
//! Publishing is one script: it takes the next id from a counter, writes the event's JSON
//! around it, appends it to a capped stream (the replay window, `SSE_REPLAY_BUFFER` entries, with
//! the id as the entry id) and publishes `<id> <data>` on the deployment's channel. The script
//! runs atomically, so ids increase in the order events reach the channel.
//!
//! Each instance runs one relay task: it holds the instance's only subscription and forwards
//! every event, in id order, to a local broadcast channel that the instance's SSE clients read
//! (a slow client skips ahead, as with the in-process bus). The relay notices any gap in the
//! ids (a reconnection, a message lost in a blip) and fills it from the stream; what the stream
//! no longer holds is announced to every client as a lagged notice. While Redis is unreachable
//! the relay retries with a backoff, and open streams stay open.
//!
//! A client resuming with `Last-Event-ID` subscribes to the local channel first, then reads the
//! stream after its id; live events it already got from the stream are skipped by id, so the
//! seam has no gap and no duplicate, whichever instance served the events before.
//!
//! Until the relay's first subscription is active, nothing would reach the local channel: an
//! event published then would be lost to every client already subscribed. So a subscription
//! waits for the relay to be active once (at most [`TIMEOUT`], then it is refused as a store
//! failure); after that, the relay fills any gap itself.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use metrics::Counter;
use redis::Script;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::sync::CancellationToken;

use super::{CONNECT_TIMEOUT, Redis, TIMEOUT};
use crate::clock;
use crate::events::{Delivery, Event, EventBus, LIVE_BUFFER, NewEvent, Subscription};
use crate::fault::StoreError;
use crate::metrics::Metrics;
use crate::queue::Wakeups;

/// KEYS: id counter, stream. ARGV: timestamp, stream length (0: keep none), channel, then the
/// members of each event. Returns the last event's id.
const PUBLISH: &str = include_str!("lua/publish.lua");

/// Delays between attempts to subscribe again while Redis is unreachable.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The event bus shared through Redis.
pub struct RedisEventBus {
    redis: Redis,
    retained: usize,
    publish: Script,
    local: broadcast::Sender<Delivery>,
    /// Turns `true` once the relay's first subscription is active.
    following: watch::Receiver<bool>,
}

impl RedisEventBus {
    /// Starts the relay (until `stop`), which also wakes `wakeups` when a task becomes
    /// available on any instance, and returns the bus.
    pub(super) fn start(
        redis: Redis,
        retained: usize,
        metrics: &Metrics,
        wakeups: Wakeups,
        stop: CancellationToken,
    ) -> Self {
        let (local, _) = broadcast::channel(LIVE_BUFFER);
        let (followed, following) = watch::channel(false);
        let relay = Relay {
            redis: redis.clone(),
            local: local.clone(),
            followed,
            wakeups,
            last_seen: None,
            reconnects: metrics.counter("events_subscription_reconnects_total", &[]),
        };
        tokio::spawn(relay.run(stop));
        Self {
            redis,
            retained,
            publish: Script::new(PUBLISH),
            local,
            following,
        }
    }
}

impl EventBus for RedisEventBus {
    fn publish(&self, event: NewEvent) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.publish_all(vec![event])
    }

    /// One script for all of them: consecutive ids, one round trip.
    fn publish_all(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let keys = &self.redis.keys;
            let timestamp = clock::now_rfc3339();
            self.redis
                .run(|mut connection| async move {
                    let mut invocation = self.publish.prepare_invoke();
                    invocation
                        .key(&keys.event_ids)
                        .key(&keys.events)
                        .arg(timestamp)
                        .arg(self.retained)
                        .arg(&keys.event_channel);
                    for event in &events {
                        invocation.arg(event.members());
                    }
                    invocation.invoke_async(&mut connection).await
                })
                .await
        })
    }

    fn subscribe(
        &self,
        last_event_id: Option<u64>,
    ) -> BoxFuture<'_, Result<Subscription, StoreError>> {
        Box::pin(async move {
            let mut following = self.following.clone();
            match tokio::time::timeout(TIMEOUT, following.wait_for(|active| *active)).await {
                Ok(Ok(_)) => {}
                _ => {
                    return Err(StoreError::new(
                        "redis: the event subscription is not active yet",
                    ));
                }
            }
            // Subscribed before the replay is read: nothing published in between is missed.
            let receiver = self.local.subscribe();
            let Some(after) = last_event_id else {
                return Ok(Subscription {
                    replay: Vec::new(),
                    missed: 0,
                    live: live(receiver, 0),
                });
            };
            let (newest, mut retained) = read_after(&self.redis, after).await?;
            let after = if after > newest {
                // An id ahead of the counter was not given by this deployment (or Redis lost
                // its data since): every retained event is new to that client.
                retained = read_after(&self.redis, 0).await?.1;
                0
            } else {
                after
            };
            let first_available = retained.first().map_or(newest + 1, |event| event.id);
            let seen_up_to = retained.last().map_or(after.max(newest), |event| event.id);
            Ok(Subscription {
                missed: first_available.saturating_sub(after + 1),
                replay: retained,
                live: live(receiver, seen_up_to),
            })
        })
    }
}

/// The local channel's deliveries, without the events up to `seen_up_to` (already replayed).
fn live(
    receiver: broadcast::Receiver<Delivery>,
    seen_up_to: u64,
) -> futures_util::stream::BoxStream<'static, Delivery> {
    BroadcastStream::new(receiver)
        .filter_map(move |item| {
            std::future::ready(match item {
                Ok(Delivery::Event(event)) if event.id <= seen_up_to => None,
                Ok(delivery) => Some(delivery),
                Err(BroadcastStreamRecvError::Lagged(skipped)) => {
                    Some(Delivery::Lagged { skipped })
                }
            })
        })
        .boxed()
}

/// The newest event id, and the retained events after `after` (oldest first).
async fn read_after(redis: &Redis, after: u64) -> Result<(u64, Vec<Event>), StoreError> {
    let keys = &redis.keys;
    let start = format!("{}-0", after.saturating_add(1));
    let (newest, entries): (Option<u64>, Vec<(String, Vec<String>)>) = redis
        .run(|mut connection| async move {
            redis::pipe()
                .cmd("GET")
                .arg(&keys.event_ids)
                .cmd("XRANGE")
                .arg(&keys.events)
                .arg(start)
                .arg("+")
                .query_async(&mut connection)
                .await
        })
        .await?;
    let events = entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let id = id
                .split_once('-')
                .map_or(id.as_str(), |(n, _)| n)
                .parse()
                .ok()?;
            let data = fields.into_iter().nth(1)?;
            Some(Event {
                id,
                data: data.into(),
            })
        })
        .collect();
    Ok((newest.unwrap_or(0), events))
}

/// The task that holds this instance's subscription and feeds the local channel; it also
/// forwards the queue's wake-ups to this instance's long polls.
struct Relay {
    redis: Redis,
    local: broadcast::Sender<Delivery>,
    /// Told once the first subscription is active.
    followed: watch::Sender<bool>,
    wakeups: Wakeups,
    /// The newest id forwarded; `None` until the first subscription.
    last_seen: Option<u64>,
    reconnects: Counter,
}

impl Relay {
    async fn run(mut self, stop: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        loop {
            match stop.run_until_cancelled(self.follow()).await {
                None => return,
                Some(Ok(())) => backoff = MIN_BACKOFF,
                Some(Err(err)) => {
                    tracing::warn!(%err, retry_in = ?backoff, "event subscription lost");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            self.reconnects.increment(1);
            if stop
                .run_until_cancelled(tokio::time::sleep(backoff))
                .await
                .is_none()
            {
                return;
            }
        }
    }

    /// Subscribes, catches up with what was published meanwhile, then forwards messages until
    /// the subscription ends.
    async fn follow(&mut self) -> Result<(), StoreError> {
        let mut subscription = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut pubsub = self.redis.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.redis.keys.event_channel).await?;
            pubsub.subscribe(&self.redis.keys.queue_wake).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await
        .map_err(|_| StoreError::new("redis: no subscription within the connect timeout"))?
        .map_err(|err| StoreError::new(format_args!("redis: {err}")))?;
        match self.last_seen {
            None => self.last_seen = Some(read_after(&self.redis, u64::MAX).await?.0),
            Some(seen) => self.catch_up(seen).await?,
        }
        tracing::debug!(last_seen = ?self.last_seen, "event subscription active");
        self.followed.send_replace(true);
        // Wake-ups sent while there was no subscription are lost: let every poll look again.
        self.wakeups.notify(usize::MAX);
        let mut messages = subscription.on_message();
        while let Some(message) = messages.next().await {
            let payload = message.get_payload_bytes();
            if message.get_channel_name() == self.redis.keys.queue_wake {
                let tasks = std::str::from_utf8(payload)
                    .ok()
                    .and_then(|n| n.parse().ok());
                self.wakeups.notify(tasks.unwrap_or(1));
                continue;
            }
            let Some((id, data)) = parse(payload) else {
                tracing::warn!("an event message that is not `<id> <data>` was ignored");
                continue;
            };
            let seen = self.last_seen.unwrap_or(0);
            if id <= seen {
                continue;
            }
            if id > seen + 1 {
                self.catch_up(seen).await?;
                if id <= self.last_seen.unwrap_or(0) {
                    continue;
                }
            }
            self.forward(Event {
                id,
                data: data.into(),
            });
        }
        Err(StoreError::new("redis: the subscription was closed"))
    }

    /// Forwards every retained event after `seen`, announcing first those no longer retained.
    async fn catch_up(&mut self, mut seen: u64) -> Result<(), StoreError> {
        let (mut newest, mut retained) = read_after(&self.redis, seen).await?;
        if newest < seen {
            tracing::warn!(
                newest,
                seen,
                "event ids went back: Redis lost its data; following the new ids"
            );
            seen = 0;
            self.last_seen = Some(seen);
            (newest, retained) = read_after(&self.redis, seen).await?;
        }
        let first_available = retained.first().map_or(newest + 1, |event| event.id);
        let missed = first_available.saturating_sub(seen + 1);
        if missed > 0 {
            let _ = self.local.send(Delivery::Lagged { skipped: missed });
        }
        for event in retained {
            self.forward(event);
        }
        // Events past the newest retained one that were not retained (no replay window) are
        // counted as missed above; nothing older than `newest` is waited for.
        self.last_seen = Some(self.last_seen.unwrap_or(seen).max(newest));
        Ok(())
    }

    fn forward(&mut self, event: Event) {
        self.last_seen = Some(event.id);
        // An error only means no local client is listening.
        let _ = self.local.send(Delivery::Event(event));
    }
}

/// `<id> <data>` of a channel message.
fn parse(payload: &[u8]) -> Option<(u64, &str)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (id, data) = text.split_once(' ')?;
    Some((id.parse().ok()?, data))
}
