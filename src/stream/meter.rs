//! What `/metrics` shows about streamed responses.
//!
//! The meter lives inside the body stream, so its `Drop` runs exactly when the server lets go of
//! the body: after the last chunk, or as soon as the client disconnects. That makes "the producer
//! stopped" observable: `stream_responses_total{outcome="aborted"}` increments and
//! `stream_items_total` stops growing.

use metrics::{Counter, Gauge};

use crate::metrics::Metrics;

/// Counts the items of one streamed response and records how it ended.
pub struct StreamMeter {
    items: Counter,
    active: Gauge,
    completed: Counter,
    aborted: Counter,
    complete: bool,
}

impl StreamMeter {
    /// Registers the stream as active on `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        let active = metrics.gauge("stream_responses_active", &[]);
        active.increment(1.0);
        Self {
            items: metrics.counter("stream_items_total", &[]),
            active,
            completed: metrics.counter("stream_responses_total", &[("outcome", "completed")]),
            aborted: metrics.counter("stream_responses_total", &[("outcome", "aborted")]),
            complete: false,
        }
    }

    /// `items` more items were produced.
    pub fn produced(&self, items: u64) {
        self.items.increment(items);
    }

    /// The last chunk was produced.
    pub fn complete(&mut self) {
        self.complete = true;
    }
}

impl Drop for StreamMeter {
    fn drop(&mut self) {
        self.active.decrement(1.0);
        if self.complete {
            self.completed.increment(1);
        } else {
            self.aborted.increment(1);
        }
    }
}

impl std::fmt::Debug for StreamMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamMeter")
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}
