//! The item stream behind `/stream`: a lazily produced, chunked body with backpressure.
//!
//! [`ItemStream`] is a hand-written `Stream` of byte chunks. It does nothing until polled, and
//! the HTTP server polls a body only when it can write, so a client that reads slowly pauses the
//! producer and a client that goes away drops it, which stops it at once. Memory is one chunk
//! (at most [`MAX_CHUNK_SIZE`] items) no matter how many items the stream has: each chunk is
//! written into one reused buffer and handed off with `split().freeze()`, no allocation per item.
//! A [`StreamMeter`] records what was produced and whether the stream completed or was aborted.

mod encode;
mod meter;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Sleep;

pub use encode::MAX_ITEM_BYTES;
pub use meter::StreamMeter;

/// Largest `chunkSize`: bounds the memory of one chunk (about 1.5 MB).
pub const MAX_CHUNK_SIZE: u32 = 10_000;
/// `chunkSize` when the client gives none.
pub const DEFAULT_CHUNK_SIZE: u32 = 100;
/// `totalItems` when the client gives none.
pub const DEFAULT_TOTAL_ITEMS: u64 = 1000;
/// Longest `delay` between chunks, in milliseconds.
pub const MAX_DELAY_MS: u64 = 10_000;
/// `delay` when the client gives none, in milliseconds.
pub const DEFAULT_DELAY_MS: u64 = 100;

/// Upper bound (exclusive) of an item's `value`.
const VALUE_RANGE: f64 = 1000.0;

/// How the items are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON array for the whole body.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl Format {
    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Ndjson => "application/x-ndjson",
        }
    }
}

/// What to stream; every field is already validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// Items per chunk, `1..=MAX_CHUNK_SIZE`.
    pub chunk_size: u32,
    /// Items in the whole stream.
    pub total_items: u64,
    /// Pause between two chunks (none before the first); zero means none.
    pub delay: Duration,
    /// Framing of the items.
    pub format: Format,
}

/// The body of one `/stream` response, as a stream of chunks.
#[derive(Debug)]
pub struct ItemStream {
    spec: StreamSpec,
    /// Id of the next item to write.
    next_id: u64,
    /// Reused for every chunk: a chunk is split off it, and once the server has written and
    /// dropped that chunk the next `reserve` reclaims the same allocation.
    buffer: BytesMut,
    rng: SmallRng,
    /// The pause before the next chunk; created once, then reset.
    pause: Option<Pin<Box<Sleep>>>,
    paused: bool,
    done: bool,
    meter: StreamMeter,
}

impl ItemStream {
    /// A stream producing `spec`, reporting to `meter`.
    pub fn new(spec: StreamSpec, meter: StreamMeter) -> Self {
        Self {
            spec,
            next_id: 1,
            buffer: BytesMut::new(),
            rng: SmallRng::from_rng(&mut rand::rng()),
            pause: None,
            paused: false,
            done: false,
            meter,
        }
    }

    /// Writes the next chunk into the buffer and splits it off.
    fn next_chunk(&mut self) -> Bytes {
        let total = self.spec.total_items;
        if total == 0 {
            self.buffer
                .extend_from_slice(encode::empty_body(self.spec.format));
            return self.buffer.split().freeze();
        }
        let last_id = self
            .next_id
            .saturating_add(u64::from(self.spec.chunk_size) - 1)
            .min(total);
        let items = last_id - self.next_id + 1;
        self.buffer
            .reserve(usize::try_from(items).unwrap_or(usize::MAX) * MAX_ITEM_BYTES);
        // One timestamp per chunk: every item of a chunk is produced in the same instant.
        let timestamp = crate::clock::now_rfc3339();
        for id in self.next_id..=last_id {
            let item = encode::Item {
                id,
                value: self.rng.random::<f64>() * VALUE_RANGE,
                timestamp: &timestamp,
            };
            encode::write_item(&mut self.buffer, self.spec.format, item, total);
        }
        self.next_id = last_id + 1;
        self.meter.produced(items);
        self.buffer.split().freeze()
    }

    fn is_last_chunk_written(&self) -> bool {
        self.next_id > self.spec.total_items
    }
}

impl Stream for ItemStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.paused {
            if let Some(pause) = this.pause.as_mut() {
                std::task::ready!(pause.as_mut().poll(cx));
            }
            this.paused = false;
        }
        if this.spec.total_items == 0 && this.spec.format == Format::Ndjson {
            this.done = true;
            this.meter.complete();
            return Poll::Ready(None);
        }
        let chunk = this.next_chunk();
        if this.is_last_chunk_written() {
            this.done = true;
            this.meter.complete();
        } else if !this.spec.delay.is_zero() {
            let deadline = tokio::time::Instant::now() + this.spec.delay;
            match this.pause.as_mut() {
                Some(pause) => pause.as_mut().reset(deadline),
                None => this.pause = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            this.paused = true;
        }
        Poll::Ready(Some(Ok(chunk)))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{FutureExt, StreamExt};

    use super::*;
    use crate::metrics::Metrics;

    fn spec(chunk_size: u32, total_items: u64, format: Format) -> StreamSpec {
        StreamSpec {
            chunk_size,
            total_items,
            delay: Duration::ZERO,
            format,
        }
    }

    async fn collect(spec: StreamSpec, metrics: &Metrics) -> Vec<Bytes> {
        ItemStream::new(spec, StreamMeter::new(metrics))
            .map(|chunk| chunk.expect("infallible"))
            .collect()
            .await
    }

    #[tokio::test]
    async fn chunks_hold_chunk_size_items_and_join_into_one_array() {
        let metrics = Metrics::new();
        let chunks = collect(spec(3, 10, Format::Json), &metrics).await;
        assert_eq!(chunks.len(), 4, "3 + 3 + 3 + 1 items");
        let whole: Vec<u8> = chunks.concat();
        let items: Vec<serde_json::Value> = serde_json::from_slice(&whole).expect("one array");
        let ids: Vec<u64> = items.iter().filter_map(|i| i["id"].as_u64()).collect();
        assert_eq!(ids, (1..=10).collect::<Vec<_>>());
        for item in &items {
            let value = item["value"].as_f64().expect("a number");
            assert!((0.0..VALUE_RANGE).contains(&value), "{value}");
        }
        let first: &str = std::str::from_utf8(&chunks[0]).expect("UTF-8");
        assert_eq!(first.matches("\"id\"").count(), 3);
    }

    #[tokio::test]
    async fn empty_streams_follow_the_format() {
        let metrics = Metrics::new();
        let json = collect(spec(5, 0, Format::Json), &metrics).await;
        assert_eq!(json.concat(), b"[]\n");
        let ndjson = collect(spec(5, 0, Format::Ndjson), &metrics).await;
        assert!(ndjson.is_empty());
    }

    #[tokio::test]
    async fn meter_counts_items_and_outcomes() {
        let metrics = Metrics::new();
        collect(spec(4, 10, Format::Ndjson), &metrics).await;
        let mut abandoned =
            ItemStream::new(spec(4, 10, Format::Ndjson), StreamMeter::new(&metrics));
        abandoned.next().await;
        drop(abandoned);
        let text = metrics.render();
        assert!(text.contains("stream_items_total 14"), "{text}");
        assert!(
            text.contains(r#"stream_responses_total{outcome="completed"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"stream_responses_total{outcome="aborted"} 1"#),
            "{text}"
        );
        assert!(text.contains("stream_responses_active 0"), "{text}");
    }

    #[tokio::test]
    async fn the_delay_comes_between_chunks_not_before_the_first_nor_after_the_last() {
        let metrics = Metrics::new();
        let hour = Duration::from_secs(3600);
        let two_chunks = StreamSpec {
            delay: hour,
            ..spec(1, 2, Format::Ndjson)
        };
        let mut stream = ItemStream::new(two_chunks, StreamMeter::new(&metrics));
        assert!(
            stream.next().now_or_never().flatten().is_some(),
            "first chunk at once"
        );
        assert!(stream.next().now_or_never().is_none(), "second chunk waits");

        let mut single = ItemStream::new(
            StreamSpec {
                delay: hour,
                ..spec(5, 3, Format::Ndjson)
            },
            StreamMeter::new(&metrics),
        );
        assert!(single.next().now_or_never().flatten().is_some());
        assert_eq!(
            single.next().now_or_never(),
            Some(None),
            "no pause after the end"
        );
    }

    #[tokio::test]
    async fn nothing_is_produced_before_the_first_poll() {
        let metrics = Metrics::new();
        let mut stream = ItemStream::new(
            spec(10, 1_000_000, Format::Json),
            StreamMeter::new(&metrics),
        );
        assert!(metrics.render().contains("stream_items_total 0"));
        stream.next().await;
        assert!(metrics.render().contains("stream_items_total 10"));
    }
}
