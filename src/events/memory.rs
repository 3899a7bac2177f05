//! The in-process event bus: a ring buffer for replay plus a tokio broadcast channel for fan-out.

use std::collections::VecDeque;
use std::sync::Mutex;

use futures_util::StreamExt;
use futures_util::future::{self, BoxFuture};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::{Delivery, Event, EventBus, NewEvent, Subscription};
use crate::clock;
use crate::fault::StoreError;

/// Events a live subscriber may fall behind by before it skips ahead. Bounded so that memory
/// does not depend on the slowest client: the channel holds at most this many shared events.
pub const LIVE_BUFFER: usize = 1024;

/// [`EventBus`] for a single instance.
#[derive(Debug)]
pub struct MemoryEventBus {
    inner: Mutex<Inner>,
    sender: broadcast::Sender<Event>,
    replay_capacity: usize,
}

#[derive(Debug)]
struct Inner {
    last_id: u64,
    retained: VecDeque<Event>,
}

impl MemoryEventBus {
    /// A bus that retains the last `replay_capacity` events for reconnecting clients.
    pub fn new(replay_capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(LIVE_BUFFER);
        Self {
            inner: Mutex::new(Inner {
                last_id: 0,
                retained: VecDeque::with_capacity(replay_capacity),
            }),
            sender,
            replay_capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The critical sections cannot panic half-way, so a poisoned lock still holds valid data.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MemoryEventBus {
    /// Publishes `event`; returns its id. Never fails and never waits for a subscriber.
    pub fn publish_now(&self, event: NewEvent) -> u64 {
        // The event was serialized as it was built; the clock is read before the lock, so
        // publishers on other threads wait only for the id and one copy of the bytes.
        let timestamp = clock::now_rfc3339();
        let mut inner = self.lock();
        // Id assignment, retention and sending happen under one lock so every subscriber sees
        // ids in order and a new subscription's replay meets its live stream exactly.
        let id = inner.last_id + 1;
        inner.last_id = id;
        let event = Event {
            id,
            data: event.into_data(id, &timestamp),
        };
        let mut evicted = None;
        if self.replay_capacity > 0 {
            if inner.retained.len() == self.replay_capacity {
                evicted = inner.retained.pop_front();
            }
            inner.retained.push_back(event.clone());
        }
        // An error only means nobody is subscribed right now; it hands the event back.
        let unsent = self.sender.send(event).err();
        drop(inner);
        // The oldest event's bytes, allocated by whichever thread published it, are freed
        // after the lock is released.
        drop((evicted, unsent));
        id
    }

    /// Subscribes; with `last_event_id`, first replays the retained events after it.
    pub fn subscribe_now(&self, last_event_id: Option<u64>) -> Subscription {
        let inner = self.lock();
        let receiver = self.sender.subscribe();
        let (replay, missed) = match last_event_id {
            None => (Vec::new(), 0),
            Some(after) => {
                // Ids restart at 1 with the process: an id ahead of ours was seen from an earlier
                // run, so every event of this run is new to that client.
                let after = if after > inner.last_id { 0 } else { after };
                // Retained ids are consecutive, so the replay starts at a computed index.
                let first_retained = inner.retained.front().map_or(inner.last_id + 1, |e| e.id);
                let skip = usize::try_from((after + 1).saturating_sub(first_retained))
                    .unwrap_or(usize::MAX);
                let replay: Vec<Event> = inner.retained.iter().skip(skip).cloned().collect();
                let first_available = replay.first().map_or(inner.last_id + 1, |e| e.id);
                let missed = first_available - (after + 1);
                (replay, missed)
            }
        };
        drop(inner);
        let live = BroadcastStream::new(receiver)
            .map(|item| match item {
                Ok(event) => Delivery::Event(event),
                Err(BroadcastStreamRecvError::Lagged(skipped)) => Delivery::Lagged { skipped },
            })
            .boxed();
        Subscription {
            replay,
            missed,
            live,
        }
    }

    /// Id of the most recent event (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.lock().last_id
    }
}

impl EventBus for MemoryEventBus {
    fn publish(&self, event: NewEvent) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(future::ready(Ok(self.publish_now(event))))
    }

    fn subscribe(
        &self,
        last_event_id: Option<u64>,
    ) -> BoxFuture<'_, Result<Subscription, StoreError>> {
        Box::pin(future::ready(Ok(self.subscribe_now(last_event_id))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Level;

    fn note(text: &str) -> NewEvent {
        NewEvent::notification(Level::Info, text)
    }

    #[tokio::test]
    async fn a_lagging_subscriber_skips_ahead_and_is_told() {
        let bus = MemoryEventBus::new(0);
        let mut slow = bus.subscribe_now(None);
        let total = LIVE_BUFFER as u64 + 10;
        for i in 0..total {
            bus.publish_now(note(&format!("n{i}")));
        }
        assert_eq!(
            slow.live.next().await,
            Some(Delivery::Lagged { skipped: 10 })
        );
        match slow.live.next().await {
            Some(Delivery::Event(e)) => assert_eq!(e.id, 11),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn deliveries_are_gap_notice_then_replay_then_live() {
        let bus = MemoryEventBus::new(2);
        for i in 0..4 {
            bus.publish_now(note(&format!("n{i}")));
        }
        let mut deliveries = bus.subscribe_now(Some(1)).into_deliveries();
        bus.publish_now(note("live"));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(deliveries.next().await.expect("a delivery"));
        }
        let ids: Vec<Option<u64>> = seen
            .iter()
            .map(|d| match d {
                Delivery::Event(e) => Some(e.id),
                Delivery::Lagged { .. } => None,
            })
            .collect();
        assert_eq!(seen[0], Delivery::Lagged { skipped: 1 });
        assert_eq!(ids, vec![None, Some(3), Some(4), Some(5)]);
    }

    #[test]
    fn event_json_has_the_contract_fields() {
        let bus = MemoryEventBus::new(1);
        bus.publish_now(
            NewEvent::app("queue.enqueued", Level::Success, "Task enqueued").with("priority", 3),
        );
        let sub = bus.subscribe_now(Some(0));
        let value: serde_json::Value = serde_json::from_str(&sub.replay[0].data).expect("JSON");
        assert_eq!(value["id"], 1);
        assert_eq!(value["type"], "success");
        assert_eq!(value["message"], "Task enqueued");
        assert_eq!(value["event"], "queue.enqueued");
        assert_eq!(value["priority"], 3);
        assert!(value["timestamp"].is_string());
        assert!(
            sub.replay[0]
                .data
                .starts_with(r#"{"id":1,"type":"success","message":"Task enqueued","event":"#),
            "contract order: {}",
            sub.replay[0].data
        );
        assert!(sub.replay[0].data.ends_with(r#""}"#));
    }

    #[test]
    fn fields_cannot_override_the_id_or_timestamp() {
        let bus = MemoryEventBus::new(1);
        bus.publish_now(note("x").with("id", 999).with("timestamp", "yesterday"));
        let data = &bus.subscribe_now(Some(0)).replay[0].data;
        let value: serde_json::Value = serde_json::from_str(data).expect("JSON");
        assert_eq!(value["id"], 1);
        assert_ne!(value["timestamp"], "yesterday");
        assert_eq!(data.matches("\"id\"").count(), 1, "{data}");
    }
}
