//! Every open connection and what it is doing, so that room can be made when there is none.
//!
//! The accept loop registers each connection it takes and gets a [`Slot`] for it (see
//! `slot.rs`): one atomic word that the connection's own service updates as requests come and
//! go, and a wake-up through which the connection is asked to close. A request therefore costs a few stores to its
//! own connection's word and no lock; the registry's lock is taken when a connection opens and
//! when it closes, and when room is made or `/metrics` is read.
//!
//! A connection is in one [`Phase`]. Only connections that are doing nothing (`New`: no
//! complete request head yet, `Idle`: keep-alive between requests) are ever closed to make
//! room, least recently used first, as nginx does with its idle keep-alive connections; a
//! request in flight or an event stream never is. "Least recently used" is measured with the
//! registry's count of accepted connections, stamped into the word when a connection becomes
//! idle: room is only ever made when a connection arrives, so a clock that moves only then is
//! all the ordering needs, and a request reads it with one relaxed load instead of the time.
//!
//! The registry also counts connections per peer address (`MAX_CONNECTIONS_PER_IP`), under
//! the same lock at the same two moments, so one client cannot take every slot.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use super::slot::{Phase, Slot, phase_of, stamp_of};
use crate::metrics::Metrics;

/// Most idle connections closed at once to admit one: room for the next arrivals too, so a
/// flood at the cap does not scan every connection for each of them (nginx closes up to 32).
const ROOM_BATCH_MAX: usize = 32;

/// Least time between two warnings that the cap or the open-file limit was reached.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The open connections of one server, and its `MAX_CONNECTIONS`.
pub(super) struct ConnectionRegistry {
    open: Mutex<Open>,
    clock: Arc<AtomicU64>,
    /// Notified whenever a connection has closed.
    closed: Notify,
    max: usize,
    max_per_ip: usize,
    made_room: Counter,
    first_request_timeouts: Counter,
    per_ip_refusals: Counter,
}

struct Open {
    slots: HashMap<u64, Entry>,
    /// Open connections by peer address, for the capped peers only.
    per_ip: HashMap<IpAddr, usize>,
    /// Entries asked to close to make room that have not closed yet: no longer counted
    /// against the cap.
    closing: usize,
    last_warning: Option<Instant>,
}

struct Entry {
    slot: Arc<Slot>,
    closing: bool,
}

/// Why a connection was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// At the cap (or out of descriptors) with no idle connection to close.
    Full,
    /// Its peer address has `MAX_CONNECTIONS_PER_IP` connections open.
    PeerAtCap,
}

/// A registered connection; dropping it (when the connection's task ends) unregisters it.
pub(super) struct Registration {
    registry: Arc<ConnectionRegistry>,
    id: u64,
    slot: Arc<Slot>,
    capped_peer: Option<IpAddr>,
}

impl Registration {
    pub(super) fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }

    /// At the first-request deadline: moves a connection that has sent no request head yet
    /// to closing and counts it (`true`: the caller closes it).
    pub(super) fn expire_if_new(&self, peer: std::net::SocketAddr) -> bool {
        let expired = self.slot.expire_new();
        if expired {
            tracing::debug!(%peer, "no request head in time; connection closed");
            self.registry.first_request_timeouts.increment(1);
        }
        expired
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(self.id, self.capped_peer);
    }
}

impl ConnectionRegistry {
    /// A registry for at most `max` connections, `max_per_ip` from one capped peer address,
    /// whose counts `metrics` shows.
    pub(super) fn new(max: usize, max_per_ip: usize, metrics: &Metrics) -> Arc<Self> {
        let registry = Arc::new(Self {
            open: Mutex::new(Open {
                slots: HashMap::new(),
                per_ip: HashMap::new(),
                closing: 0,
                last_warning: None,
            }),
            clock: Arc::default(),
            closed: Notify::new(),
            max,
            max_per_ip,
            per_ip_refusals: metrics.counter(
                "http_connections_closed_total",
                &[("reason", "per_ip_limit")],
            ),
            made_room: metrics.counter("http_connections_closed_total", &[("reason", "make_room")]),
            first_request_timeouts: metrics.counter(
                "http_connections_closed_total",
                &[("reason", "first_request_timeout")],
            ),
        });
        export_census(&registry, metrics);
        registry
    }

    /// Registers a new connection from `capped_peer` (`None` for a peer the per-address cap
    /// does not apply to); at the cap, or when the process is `out_of_files`, first closes
    /// idle ones to make room. Refused when its peer is at its own cap, or when no connection
    /// could be closed.
    pub(super) fn admit(
        self: &Arc<Self>,
        out_of_files: bool,
        capped_peer: Option<IpAddr>,
    ) -> Result<Registration, Refusal> {
        let mut open = self.lock();
        if let Some(ip) = capped_peer
            && open.per_ip.get(&ip).is_some_and(|&n| n >= self.max_per_ip)
        {
            self.per_ip_refusals.increment(1);
            return Err(Refusal::PeerAtCap);
        }
        let full = out_of_files || open.slots.len() - open.closing >= self.max;
        if full && self.close_idle(&mut open) == 0 {
            return Err(Refusal::Full);
        }
        if let Some(ip) = capped_peer {
            *open.per_ip.entry(ip).or_default() += 1;
        }
        let id = self.clock.fetch_add(1, Relaxed) + 1;
        let slot = Arc::new(Slot::new(id, self.clock.clone()));
        open.slots.insert(
            id,
            Entry {
                slot: slot.clone(),
                closing: false,
            },
        );
        Ok(Registration {
            registry: self.clone(),
            id,
            slot,
            capped_peer,
        })
    }

    /// Closes a batch of idle connections, whether or not the cap is reached (the process ran
    /// out of resources).
    pub(super) fn make_room(&self) {
        self.close_idle(&mut self.lock());
    }

    /// Completes when a connection closes after this call.
    pub(super) fn closed(&self) -> Notified<'_> {
        self.closed.notified()
    }

    /// Asks every connection to close: at once if it has not sent a request, after its
    /// current response otherwise.
    pub(super) fn stop(&self) {
        let open = self.lock();
        for entry in open.slots.values() {
            let seen = entry.slot.seen();
            if phase_of(seen) == Phase::New {
                entry.slot.try_close(seen);
            }
            entry.slot.ask_to_close();
        }
    }

    /// Completes once every connection has closed.
    pub(super) async fn wait_until_empty(&self) {
        loop {
            let closed = self.closed();
            if self.lock().slots.is_empty() {
                return;
            }
            closed.await;
        }
    }

    /// Open connections by [`Phase::label`]; a label no connection has is absent.
    fn census(&self) -> HashMap<&'static str, usize> {
        let mut counts = HashMap::new();
        for entry in self.lock().slots.values() {
            *counts.entry(entry.slot.phase().label()).or_default() += 1;
        }
        counts
    }

    fn close_idle(&self, open: &mut Open) -> usize {
        let candidates = open
            .slots
            .iter()
            .filter(|(_, entry)| !entry.closing)
            .map(|(&id, entry)| (id, entry.slot.seen()));
        let mut closed = 0;
        for (id, seen) in least_recently_used(candidates) {
            let entry = open.slots.get_mut(&id).expect("the victim was just listed");
            if entry.slot.try_close(seen) {
                entry.closing = true;
                entry.slot.ask_to_close();
                closed += 1;
            }
        }
        open.closing += closed;
        self.made_room.increment(closed as u64);
        let now = Instant::now();
        if open
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= WARN_EVERY)
        {
            open.last_warning = Some(now);
            let open_connections = open.slots.len();
            if closed == 0 {
                tracing::warn!(
                    open_connections,
                    max = self.max,
                    "no connection is idle; new connections are refused until one closes"
                );
            } else {
                tracing::warn!(
                    open_connections,
                    max = self.max,
                    closed,
                    "closing idle connections to make room"
                );
            }
        }
        closed
    }

    fn remove(&self, id: u64, capped_peer: Option<IpAddr>) {
        {
            let mut open = self.lock();
            if open.slots.remove(&id).is_some_and(|entry| entry.closing) {
                open.closing -= 1;
            }
            if let Some(ip) = capped_peer
                && let MapEntry::Occupied(mut count) = open.per_ip.entry(ip)
            {
                *count.get_mut() -= 1;
                if *count.get() == 0 {
                    count.remove();
                }
            }
        }
        self.closed.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The connections to close to make room, among `(id, word)` pairs: those doing nothing,
/// least recently used first (the oldest stamp; among equal stamps the oldest connection), an
/// eighth of them, between 1 and [`ROOM_BATCH_MAX`].
fn least_recently_used(candidates: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut idle: Vec<(u64, u64)> = candidates
        .filter(|&(_, seen)| phase_of(seen).closing().is_some())
        .collect();
    let batch = (idle.len() / 8).clamp(1, ROOM_BATCH_MAX).min(idle.len());
    if batch == 0 {
        return idle;
    }
    let age = |&(id, seen): &(u64, u64)| (stamp_of(seen), id);
    idle.select_nth_unstable_by_key(batch - 1, age);
    idle.truncate(batch);
    idle.sort_unstable_by_key(age);
    idle
}

/// Sets `http_connections_open{state}`, one gauge per label, from the registry each time the
/// metrics are read.
fn export_census(registry: &Arc<ConnectionRegistry>, metrics: &Metrics) {
    let registry: Weak<ConnectionRegistry> = Arc::downgrade(registry);
    let mut gauges: Vec<(&'static str, Gauge)> = Vec::new();
    for label in Phase::ALL.map(Phase::label) {
        if gauges.iter().all(|(known, _)| *known != label) {
            gauges.push((
                label,
                metrics.gauge("http_connections_open", &[("state", label)]),
            ));
        }
    }
    metrics.refresh_on_render(move || {
        if let Some(registry) = registry.upgrade() {
            let counts = registry.census();
            for (label, gauge) in &gauges {
                gauge.set(counts.get(label).copied().unwrap_or(0) as f64);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::slot::word;

    fn ids(chosen: &[(u64, u64)]) -> Vec<u64> {
        chosen.iter().map(|&(id, _)| id).collect()
    }

    #[test]
    fn only_connections_doing_nothing_are_chosen_least_recently_used_first() {
        let connections = [
            (1, word(1, Phase::Active)),
            (2, word(50, Phase::Idle)),
            (3, word(3, Phase::Streaming)),
            (4, word(4, Phase::New)),
            (5, word(60, Phase::Idle)),
            (6, word(6, Phase::Closing)),
            (7, word(7, Phase::ClosingNew)),
        ];
        // Three idle or new: an eighth of them rounds up to the minimum of one, the oldest.
        assert_eq!(ids(&least_recently_used(connections.into_iter())), [4]);
        let busy = connections
            .into_iter()
            .filter(|&(_, w)| !matches!(phase_of(w), Phase::New | Phase::Idle));
        assert!(least_recently_used(busy).is_empty());
    }

    #[test]
    fn a_batch_is_an_eighth_of_the_idle_connections_at_most_32() {
        let idle = |n: u64| (1..=n).rev().map(|id| (id, word(id, Phase::Idle)));
        assert_eq!(
            ids(&least_recently_used(idle(80))),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(least_recently_used(idle(10_000)).len(), ROOM_BATCH_MAX);
        // Equal stamps: the connection accepted first goes first.
        let same_stamp = (10..20).map(|id| (id, word(7, Phase::Idle)));
        assert_eq!(ids(&least_recently_used(same_stamp)), [10]);
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room_and_busy_ones_never_do() {
        let metrics = Metrics::new();
        let registry = ConnectionRegistry::new(2, 10, &metrics);
        let first = registry.admit(false, None).expect("room");
        let second = registry.admit(false, None).expect("room");
        first.slot().request_started();
        second.slot().request_started();
        assert!(registry.admit(false, None).is_err(), "both are busy");
        second.slot().response_finished();
        let third = registry.admit(false, None).expect("the idle one made room");
        assert_eq!(second.slot().phase(), Phase::Closing);
        assert_eq!(first.slot().phase(), Phase::Active);
        // The closing one no longer counts against the cap, but is still open.
        assert_eq!(registry.census()["closing"], 1);
        drop(second);
        assert_eq!(registry.census().values().sum::<usize>(), 2);
        assert_eq!(third.slot().phase(), Phase::New);
        let text = metrics.render();
        for expected in [
            r#"http_connections_closed_total{reason="make_room"} 1"#,
            r#"http_connections_open{state="new"} 1"#,
            r#"http_connections_open{state="active"} 1"#,
            r#"http_connections_open{state="closing"} 0"#,
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }

    #[test]
    fn out_of_descriptors_room_is_made_below_the_cap_too() {
        let registry = ConnectionRegistry::new(10, 10, &Metrics::new());
        let busy = registry.admit(false, None).expect("room");
        busy.slot().request_started();
        assert!(
            registry.admit(true, None).is_err(),
            "the only connection is busy"
        );
        let silent = registry.admit(false, None).expect("below the cap");
        assert!(
            registry.admit(true, None).is_ok(),
            "the silent one made room"
        );
        assert_eq!(silent.slot().phase(), Phase::ClosingNew);
        assert_eq!(busy.slot().phase(), Phase::Active);
    }

    #[test]
    fn a_capped_peer_gets_its_share_and_uncapped_ones_do_not_count() {
        let metrics = Metrics::new();
        let registry = ConnectionRegistry::new(10, 2, &metrics);
        let peer: IpAddr = [10, 0, 0, 1].into();
        let first = registry.admit(false, Some(peer)).expect("room");
        let _second = registry.admit(false, Some(peer)).expect("room");
        assert_eq!(
            registry.admit(false, Some(peer)).err(),
            Some(Refusal::PeerAtCap)
        );
        let _other = registry
            .admit(false, Some([10, 0, 0, 2].into()))
            .expect("another peer");
        let _proxied: Vec<_> = (0..3)
            .map(|_| registry.admit(false, None).expect("uncapped"))
            .collect();
        drop(first);
        let _third = registry.admit(false, Some(peer)).expect("one closed");
        assert!(registry.lock().per_ip.len() == 2);
        assert!(
            metrics
                .render()
                .contains(r#"http_connections_closed_total{reason="per_ip_limit"} 1"#)
        );
    }
}
