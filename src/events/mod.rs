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
//! The bus is a trait so a multi-instance deployment can fan out through Redis; [`MemoryEventBus`]
//! is the default.

mod memory;
mod notifier;
mod subscribers;

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use serde::Serialize;
use serde_json::Value;

use crate::clock;

pub use memory::{LIVE_BUFFER, MemoryEventBus};
pub use notifier::{demo_notification, run_notifier};
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
}

/// An event to publish; the bus adds `id` and `timestamp`.
///
/// The fields are a short list under static names rather than a JSON map: an event is built for
/// every enqueue, dequeue and login, and a map would allocate each key and tree node only to be
/// serialized once and dropped.
#[derive(Debug, Clone)]
pub struct NewEvent {
    fields: Vec<(&'static str, Value)>,
}

impl NewEvent {
    /// A periodic notification: `{"type", "message"}`.
    pub fn notification(level: Level, message: impl Into<String>) -> Self {
        let mut fields = Vec::with_capacity(8);
        fields.push(("type", serde_json::to_value(level).unwrap_or(Value::Null)));
        fields.push(("message", Value::String(message.into())));
        Self { fields }
    }

    /// An application event such as `queue.enqueued`: a notification with an `event` field.
    pub fn app(event: &'static str, level: Level, message: impl Into<String>) -> Self {
        Self::notification(level, message).with("event", event)
    }

    /// Adds a field to the event's JSON, replacing one of the same name; never use it for
    /// secrets (tokens, passwords).
    pub fn with(mut self, key: &'static str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        match self.fields.iter_mut().find(|(name, _)| *name == key) {
            Some(field) => field.1 = value,
            None => self.fields.push((key, value)),
        }
        self
    }

    /// The `event` name, if this is an application event.
    pub fn name(&self) -> Option<&str> {
        self.field("event").and_then(Value::as_str)
    }

    fn field(&self, key: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    /// Serializes the event as sent in `data:`, except for its id, in the contract's order:
    /// `type`, `message`, `event`, the other fields in the order they were added, `timestamp`.
    /// The bus owns `id` and `timestamp`, so fields of those names are left out rather than
    /// sent twice. The bus serializes before it takes its lock and adds the id under it, with
    /// [`EventBody::with_id`].
    /// The event's `data:` JSON without an id (for notices that are not bus events), stamped
    /// now.
    pub fn to_json_without_id(&self) -> String {
        self.to_body(&clock::now_rfc3339()).0
    }

    fn to_body(&self, timestamp: &str) -> EventBody {
        let json = serde_json::to_string(&EventData {
            event: self,
            timestamp,
        })
        .expect("string keys and JSON values always serialize");
        EventBody(json)
    }
}

/// An event's JSON object without its `id`; it always has at least the `timestamp` member.
struct EventBody(String);

impl EventBody {
    /// The complete `data:` JSON, `{"id":<id>,...}`: the id written first, as the contract shows.
    fn with_id(&self, id: u64) -> Arc<str> {
        let members = self.0.strip_prefix('{').unwrap_or(&self.0);
        let mut data = String::with_capacity(self.0.len() + 28);
        data.push_str("{\"id\":");
        data.push_str(itoa::Buffer::new().format(id));
        data.push(',');
        data.push_str(members);
        data.into()
    }
}

/// Fields written first, in this order, when present.
const LEADING_FIELDS: [&str; 3] = ["type", "message", "event"];
/// Fields the bus writes itself.
const BUS_FIELDS: [&str; 2] = ["id", "timestamp"];

/// The `data:` JSON of one event but its id, borrowed from its parts.
struct EventData<'a> {
    event: &'a NewEvent,
    timestamp: &'a str,
}

impl Serialize for EventData<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for key in LEADING_FIELDS {
            if let Some(value) = self.event.field(key) {
                map.serialize_entry(key, value)?;
            }
        }
        for (key, value) in &self.event.fields {
            if !LEADING_FIELDS.contains(key) && !BUS_FIELDS.contains(key) {
                map.serialize_entry(key, value)?;
            }
        }
        map.serialize_entry("timestamp", self.timestamp)?;
        map.end()
    }
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
    fn publish(&self, event: NewEvent) -> u64;

    /// Subscribes; with `last_event_id`, first replays the retained events after it.
    fn subscribe(&self, last_event_id: Option<u64>) -> Subscription;

    /// Id of the most recent event (0 before the first).
    fn last_id(&self) -> u64;

    /// How many events are retained for replay.
    fn retained(&self) -> usize;
}
