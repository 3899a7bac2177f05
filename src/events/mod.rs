//! The event bus behind `/notifications`: one stream of numbered events, fanned out to every
//! subscriber, with the most recent ones retained for clients that reconnect.
//!
//! Publishers (the notification producer, the queue, authentication) hand the bus a [`NewEvent`];
//! the bus gives it the next id and a timestamp, serializes it once, and shares those bytes with
//! every subscriber. A [`Subscription`] is a replay of the retained events after the client's
//! `Last-Event-ID`, followed by live events, taken atomically so there is no gap and no duplicate
//! at the seam. A subscriber that falls too far behind skips ahead and is told how many events it
//! missed, so one slow client never slows the others nor makes the server buffer without bound.
//!
//! The bus is a trait, async and fallible, so a multi-instance deployment can fan out through a
//! networked store; [`MemoryEventBus`] serves one process.

mod memory;
mod notifier;
mod subscribers;

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use serde::Serialize;

use crate::clock;
use crate::fault::StoreError;

pub use memory::{LIVE_BUFFER, MemoryEventBus};
pub use notifier::{Alone, NotifierLease, demo_notification, run_notifier};
pub use subscribers::{SubscriberLimit, SubscriberSlot};

/// Severity shown to the client as the event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Something happened.
    Info,
    /// Something needs attention.
    Warning,
    /// Something went well.
    Success,
    /// Something failed.
    Error,
}

impl Level {
    /// Every level, in declaration order.
    pub const ALL: [Level; 4] = [Level::Info, Level::Warning, Level::Success, Level::Error];

    /// The name the client sees, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Success => "success",
            Level::Error => "error",
        }
    }
}

/// An event to publish; the bus adds `id` and `timestamp`.
///
/// The event is serialized as it is built, into one buffer of JSON members in the contract's
/// order (`type`, `message`, `event`, then the added fields): an event is built for every
/// enqueue, dequeue and login, and a tree of JSON values would allocate each key and string only
/// to be serialized once and dropped. The bus then adds the id in front and the timestamp at the
/// end, under its lock only the id ([`NewEvent::into_data`]).
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `"type":…,"message":…`, then `,"event":…` and `,"key":value` for each added field.
    members: Vec<u8>,
}

/// Names the bus or the constructors write; [`NewEvent::with`] leaves them out.
const RESERVED_FIELDS: [&str; 5] = ["id", "type", "message", "event", "timestamp"];

impl NewEvent {
    /// A periodic notification: `{"type", "message"}`.
    pub fn notification(level: Level, message: impl std::fmt::Display) -> Self {
        let mut members = Vec::with_capacity(256);
        members.extend_from_slice(b"\"type\":\"");
        members.extend_from_slice(level.as_str().as_bytes());
        members.extend_from_slice(b"\",\"message\":");
        // Written through its `Display`, escaped on the way, without a `String` in between.
        serde::Serializer::collect_str(&mut serde_json::Serializer::new(&mut members), &message)
            .expect("writing to a Vec cannot fail");
        Self { members }
    }

    /// An application event such as `queue.enqueued`: a notification with an `event` field.
    pub fn app(event: &'static str, level: Level, message: impl std::fmt::Display) -> Self {
        let mut new = Self::notification(level, message);
        new.push_member("event", event);
        new
    }

    /// Adds a field to the event's JSON; never use it for secrets (tokens, passwords). The names
    /// the bus and the constructors write (`id`, `type`, `message`, `event`, `timestamp`) are
    /// left out, so they are never sent twice; other names are expected once each.
    pub fn with(mut self, key: &'static str, value: impl Serialize) -> Self {
        if !RESERVED_FIELDS.contains(&key) {
            self.push_member(key, value);
        }
        self
    }

    /// Appends `,"key":value`; a value that cannot be serialized (a map with non-string keys)
    /// is written as `null` rather than leaving half of it in the buffer.
    fn push_member(&mut self, key: &str, value: impl Serialize) {
        self.members.push(b',');
        serde_json::to_writer(&mut self.members, key).expect("a string always serializes");
        self.members.push(b':');
        let start = self.members.len();
        if serde_json::to_writer(&mut self.members, &value).is_err() {
            self.members.truncate(start);
            self.members.extend_from_slice(b"null");
        }
    }

    /// The event's `data:` JSON without an id (for notices that are not bus events), stamped
    /// now.
    pub fn to_json_without_id(&self) -> String {
        let mut json = String::with_capacity(self.members.len() + 48);
        json.push('{');
        json.push_str(self.members());
        push_timestamp(&mut json, &clock::now_rfc3339());
        json
    }

    /// The complete `data:` JSON, `{"id":<id>,…,"timestamp":…}`: the id written first, as the
    /// contract shows.
    fn into_data(self, id: u64, timestamp: &str) -> Arc<str> {
        let mut id_text = itoa::Buffer::new();
        let id = id_text.format(id);
        let mut json = String::with_capacity(self.members.len() + id.len() + 56);
        json.push_str("{\"id\":");
        json.push_str(id);
        json.push(',');
        json.push_str(self.members());
        push_timestamp(&mut json, timestamp);
        json.into()
    }

    /// The event's members as JSON text, without braces, id or timestamp: what a store that
    /// numbers events itself wraps as `{"id":<id>,<members>,"timestamp":"<timestamp>"}`.
    pub fn members(&self) -> &str {
        std::str::from_utf8(&self.members).expect("serde_json writes UTF-8")
    }
}

/// Closes an event's JSON with its `timestamp` member.
fn push_timestamp(json: &mut String, timestamp: &str) {
    json.push_str(",\"timestamp\":\"");
    json.push_str(timestamp);
    json.push_str("\"}");
}

/// A published event: its id and its JSON, shared by every subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Increasing id, sent as the SSE `id:` line.
    pub id: u64,
    /// The JSON sent as the SSE `data:` line.
    pub data: Arc<str>,
}

/// What a live subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next event.
    Event(Event),
    /// The subscriber fell behind and `skipped` events were dropped for it; delivery resumes
    /// with the oldest event still available.
    Lagged {
        /// How many events it missed.
        skipped: u64,
    },
}

/// A subscriber's view of the bus.
pub struct Subscription {
    /// Retained events after the requested id, oldest first.
    pub replay: Vec<Event>,
    /// Events between the requested id and the oldest retained one that are no longer available.
    pub missed: u64,
    /// Every event published after the replay, in order.
    pub live: BoxStream<'static, Delivery>,
}

impl Subscription {
    /// Everything this subscriber receives, in order, as one stream: a `Lagged` notice when
    /// events between its `Last-Event-ID` and the replay window are gone, the replay, then the
    /// live events.
    pub fn into_deliveries(self) -> BoxStream<'static, Delivery> {
        let gap = (self.missed > 0).then_some(Delivery::Lagged {
            skipped: self.missed,
        });
        let replay = self.replay.into_iter().map(Delivery::Event);
        stream::iter(gap.into_iter().chain(replay))
            .chain(self.live)
            .boxed()
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("replay", &self.replay.len())
            .field("missed", &self.missed)
            .finish_non_exhaustive()
    }
}

/// Fan-out of numbered events with a replay window.
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `event` to every subscriber; returns its id.
    fn publish(&self, event: NewEvent) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Publishes `events` in order, with consecutive ids; returns the last id. A networked bus
    /// publishes them in one round trip.
    fn publish_all(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut last = 0;
            for event in events {
                last = self.publish(event).await?;
            }
            Ok(last)
        })
    }

    /// Subscribes; with `last_event_id`, first replays the retained events after it.
    fn subscribe(
        &self,
        last_event_id: Option<u64>,
    ) -> BoxFuture<'_, Result<Subscription, StoreError>>;
}

/// Publishes `event` for a change that is already made: a bus that cannot take it is logged
/// and counted, and the change stands (its client is answered as usual).
pub async fn announce(bus: &dyn EventBus, event: NewEvent) {
    if let Err(err) = bus.publish(event).await {
        tracing::warn!(%err, "an application event could not be published");
    }
}

/// Publishes `events`, in order, for changes that are already made (see [`announce`]).
pub async fn announce_all(bus: &dyn EventBus, events: Vec<NewEvent>) {
    if let Err(err) = bus.publish_all(events).await {
        tracing::warn!(%err, "application events could not be published");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn level_names_are_their_serialized_names() {
        for level in Level::ALL {
            assert_eq!(json!(level), level.as_str());
        }
    }

    #[test]
    fn event_json_is_escaped_and_in_the_contract_order() {
        let unserializable = HashMap::from([((1, 2), 3)]);
        let data = NewEvent::app(
            "queue.enqueued",
            Level::Warning,
            format_args!("say \"{}\"\n", "hi\\"),
        )
        .with("task", "a\"b")
        .with("n", 7)
        .with("event", "renamed")
        .with("bad", &unserializable)
        .into_data(42, "2026-11-23T10:00:00Z");
        assert!(
            data.starts_with(r#"{"id":42,"type":"warning","message":"say \"hi\\\"\n","event":"queue.enqueued","task":"a\"b","n":7,"bad":null,"timestamp":"#),
            "{data}"
        );
        let value: Value = serde_json::from_str(&data).expect("valid JSON");
        assert_eq!(value["message"], "say \"hi\\\"\n");
        assert_eq!(value["event"], "queue.enqueued");
        assert_eq!(value["timestamp"], "2026-11-23T10:00:00Z");
    }

    #[test]
    fn json_without_id_is_stamped_now() {
        let json = NewEvent::notification(Level::Info, "hello")
            .with("skipped", 3)
            .to_json_without_id();
        let value: Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(value.get("id"), None);
        assert_eq!(value["type"], "info");
        assert_eq!(value["skipped"], 3);
        assert!(
            value["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }
}
