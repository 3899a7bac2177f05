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

use std::sync::Arc;

use futures_util::stream::BoxStream;
use serde::Serialize;
use serde_json::{Map, Value};

pub use memory::MemoryEventBus;

/// Severity shown to the client as the event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone)]
pub struct NewEvent {
    fields: Map<String, Value>,
}

impl NewEvent {
    /// A periodic notification: `{"type", "message"}`.
    pub fn notification(level: Level, message: impl Into<String>) -> Self {
        let mut fields = Map::new();
        fields.insert(
            "type".into(),
            serde_json::to_value(level).unwrap_or(Value::Null),
        );
        fields.insert("message".into(), Value::String(message.into()));
        Self { fields }
    }

    /// An application event such as `queue.enqueued`: a notification with an `event` field.
    pub fn app(event: &'static str, level: Level, message: impl Into<String>) -> Self {
        let mut new = Self::notification(level, message);
        new.fields
            .insert("event".into(), Value::String(event.into()));
        new
    }

    /// Adds a field to the event's JSON; never use it for secrets (tokens, passwords).
    pub fn with(mut self, key: &'static str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.fields.insert(key.into(), value);
        self
    }

    /// The `event` name, if this is an application event.
    pub fn name(&self) -> Option<&str> {
        self.fields.get("event").and_then(Value::as_str)
    }

    /// Serializes the event with `id` first and the given timestamp, as sent in `data:`.
    fn to_data(&self, id: u64, timestamp: &str) -> String {
        let mut object = Map::with_capacity(self.fields.len() + 2);
        object.insert("id".into(), Value::from(id));
        for (key, value) in &self.fields {
            object.insert(key.clone(), value.clone());
        }
        object.insert("timestamp".into(), Value::String(timestamp.to_owned()));
        Value::Object(object).to_string()
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
