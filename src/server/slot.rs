//! One connection's state, as its own service and the registry see it: a [`Phase`] and a
//! stamp packed in one atomic word, and the wake-up through which it is asked to close.
//!
//! The connection's service stores to the word as requests come and go (a relaxed store, no
//! lock); the registry reads it to choose connections to close and moves it to a closing phase
//! with a compare-and-swap, which fails if a request arrived since the choice, so a connection
//! that just became busy is never closed.
//!
//! An HTTP/2 connection carries many requests at once, so its word also counts them: while it
//! is active or streaming, the stamp's bits hold how many streams are open and how many of
//! those are event streams, updated with compare-and-swap loops since its streams run on tasks
//! of their own. It is idle when its last stream ends, like an HTTP/1.1 connection between two
//! requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// Bits of a slot's word that hold the phase; the rest hold the stamp.
const PHASE_BITS: u32 = 3;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Accepted; no complete request head yet.
    New,
    /// A request is being handled, or its response is still being sent.
    Active,
    /// Keep-alive, between two requests.
    Idle,
    /// Sending an event stream.
    Streaming,
    /// Asked to close before it sent a request: nothing was answered, it is dropped at once.
    ClosingNew,
    /// Asked to close after a response: the response is finished, then the connection closed.
    Closing,
}

impl Phase {
    pub(super) const ALL: [Self; 6] = [
        Self::New,
        Self::Active,
        Self::Idle,
        Self::Streaming,
        Self::ClosingNew,
        Self::Closing,
    ];

    /// The `state` label of `http_connections_open` for connections in this phase.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Active => "active",
            Self::Idle => "idle",
            Self::Streaming => "sse",
            Self::ClosingNew | Self::Closing => "closing",
        }
    }

    /// The phase a connection doing nothing moves to when asked to close.
    pub(super) fn closing(self) -> Option<Self> {
        match self {
            Self::New => Some(Self::ClosingNew),
            Self::Idle => Some(Self::Closing),
            _ => None,
        }
    }
}

pub(super) fn word(stamp: u64, phase: Phase) -> u64 {
    (stamp << PHASE_BITS) | phase as u64
}

pub(super) fn phase_of(word: u64) -> Phase {
    Phase::ALL[(word & ((1 << PHASE_BITS) - 1)) as usize]
}

pub(super) fn stamp_of(word: u64) -> u64 {
    word >> PHASE_BITS
}

/// Bits of a multiplexed connection's stamp that count its open streams; the bits above count
/// its event streams. `HTTP2_MAX_CONCURRENT_STREAMS` is far below the 2^24 this allows.
const STREAM_COUNT_BITS: u32 = 24;
const STREAM_COUNT_MASK: u64 = (1 << STREAM_COUNT_BITS) - 1;

/// The open streams and event streams a multiplexed connection's word counts (none unless it
/// is active or streaming).
fn streams_of(word: u64) -> (u64, u64) {
    match phase_of(word) {
        Phase::Active | Phase::Streaming => {
            let stamp = stamp_of(word);
            (stamp & STREAM_COUNT_MASK, stamp >> STREAM_COUNT_BITS)
        }
        _ => (0, 0),
    }
}

/// The word of a multiplexed connection with `open` streams, `events` of them event streams
/// (`open` > 0).
fn streams_word(open: u64, events: u64) -> u64 {
    let phase = if events > 0 {
        Phase::Streaming
    } else {
        Phase::Active
    };
    word((events << STREAM_COUNT_BITS) | open, phase)
}

/// One connection's phase and its wake-up, shared by its task, its service and the registry.
pub(super) struct Slot {
    word: AtomicU64,
    close: Notify,
    /// The registry's count of accepted connections.
    clock: Arc<AtomicU64>,
}

impl Slot {
    /// The slot of the `id`th connection accepted, new, on the registry's `clock`.
    pub(super) fn new(id: u64, clock: Arc<AtomicU64>) -> Self {
        Self {
            word: AtomicU64::new(word(id, Phase::New)),
            close: Notify::new(),
            clock,
        }
    }

    /// A request head arrived. Stored over a pending close too: the connection task then
    /// finishes this request before it closes.
    pub(super) fn request_started(&self) {
        self.word.store(word(0, Phase::Active), Relaxed);
    }

    /// The response is an event stream.
    pub(super) fn streaming(&self) {
        self.word.store(word(0, Phase::Streaming), Relaxed);
    }

    /// The response body was sent, or dropped.
    pub(super) fn response_finished(&self) {
        let now = self.clock.load(Relaxed);
        self.word.store(word(now, Phase::Idle), Relaxed);
    }

    /// A stream of a multiplexed (HTTP/2) connection opened.
    pub(super) fn stream_opened(&self) {
        self.update(|seen| {
            let (open, events) = streams_of(seen);
            streams_word(open + 1, events)
        });
    }

    /// A stream of a multiplexed connection turned out to be an event stream.
    pub(super) fn stream_is_events(&self) {
        self.update(|seen| {
            let (open, events) = streams_of(seen);
            streams_word(open.max(1), events + 1)
        });
    }

    /// A stream of a multiplexed connection ended (`events`: it was an event stream); the
    /// last one leaves the connection idle.
    pub(super) fn stream_closed(&self, events: bool) {
        self.update(|seen| {
            let (open, open_events) = streams_of(seen);
            let open = open.saturating_sub(1);
            let open_events = open_events.saturating_sub(u64::from(events));
            if open == 0 {
                word(self.clock.load(Relaxed), Phase::Idle)
            } else {
                streams_word(open, open_events)
            }
        });
    }

    fn update(&self, next: impl Fn(u64) -> u64) {
        let _ = self
            .word
            .fetch_update(Relaxed, Relaxed, |seen| Some(next(seen)));
    }

    pub(super) fn phase(&self) -> Phase {
        phase_of(self.word.load(Relaxed))
    }

    /// Moves a connection that has not sent a request yet to [`Phase::ClosingNew`]; `false` if
    /// it has, or is already closing.
    pub(super) fn expire_new(&self) -> bool {
        let seen = self.word.load(Relaxed);
        phase_of(seen) == Phase::New && self.try_close(seen)
    }

    /// Completes when the connection is asked to close (made room for, or the server stops).
    pub(super) fn close_requested(&self) -> Notified<'_> {
        self.close.notified()
    }

    /// Wakes the connection's task to close it (see [`Slot::close_requested`]).
    pub(super) fn ask_to_close(&self) {
        self.close.notify_one();
    }

    /// The word as it is now: the phase and stamp a choice to close is made on.
    pub(super) fn seen(&self) -> u64 {
        self.word.load(Relaxed)
    }

    /// Moves the word from `seen`, a phase that may be closed, to its closing phase, unless a
    /// request changed it meanwhile.
    pub(super) fn try_close(&self, seen: u64) -> bool {
        let Some(closing) = phase_of(seen).closing() else {
            return false;
        };
        self.word
            .compare_exchange(seen, word(stamp_of(seen), closing), Relaxed, Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_keeps_its_connection_from_being_closed() {
        let clock = Arc::new(AtomicU64::new(9));
        let slot = Slot::new(1, clock);
        let seen = slot.seen();
        slot.request_started();
        assert!(
            !slot.try_close(seen),
            "the request arrived after the choice"
        );
        assert!(!slot.expire_new());
        slot.streaming();
        assert_eq!(slot.phase(), Phase::Streaming);
        slot.response_finished();
        let seen = slot.seen();
        assert_eq!((phase_of(seen), stamp_of(seen)), (Phase::Idle, 9));
        assert!(slot.try_close(seen));
        assert_eq!(slot.phase(), Phase::Closing);
    }

    #[test]
    fn a_multiplexed_connection_is_idle_only_when_its_last_stream_ends() {
        let clock = Arc::new(AtomicU64::new(4));
        let slot = Slot::new(1, clock);
        slot.stream_opened();
        slot.stream_opened();
        assert_eq!(slot.phase(), Phase::Active);
        slot.stream_is_events();
        assert_eq!(slot.phase(), Phase::Streaming);
        slot.stream_closed(false);
        assert_eq!(
            slot.phase(),
            Phase::Streaming,
            "the event stream is still open"
        );
        assert!(!slot.try_close(slot.seen()));
        slot.stream_opened();
        slot.stream_closed(true);
        assert_eq!(slot.phase(), Phase::Active);
        slot.stream_closed(false);
        let seen = slot.seen();
        assert_eq!((phase_of(seen), stamp_of(seen)), (Phase::Idle, 4));
        assert!(slot.try_close(seen));
    }
}
