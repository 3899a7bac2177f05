//! The periodic notification producer of the demo.
//!
//! One task for the whole server (not one timer per connection, as the original had) publishes
//! a notification every `NOTIFY_INTERVAL_MS`; the bus fans it out, so every subscriber sees the
//! same event with the same id. The task ends when the server stops.
//!
//! When several instances share one event stream, only one of them may produce, or clients
//! would see one notification per instance per interval: each tick, the producer first asks its
//! [`NotifierLease`]. A server alone always holds it ([`Alone`]); a shared store grants it to one
//! instance at a time, and to another when the holder stops renewing it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, BoxFuture};
use tokio::time::MissedTickBehavior;

use super::{EventBus, Level, NewEvent};
use crate::fault::StoreError;
use crate::shutdown::Shutdown;

/// What the demo announces, in turn: one of each level.
const MESSAGES: [(Level, &str); 4] = [
    (Level::Info, "New user registered"),
    (Level::Warning, "High memory usage detected"),
    (Level::Success, "Backup completed successfully"),
    (Level::Error, "Failed to process payment"),
];

/// The `sequence`-th demo notification (from 0): the levels and messages rotate.
pub fn demo_notification(sequence: u64) -> NewEvent {
    let slot = usize::try_from(sequence % MESSAGES.len() as u64).unwrap_or_default();
    let (level, message) = MESSAGES[slot];
    NewEvent::notification(level, message)
}

/// The right to produce the notifications of a group of instances.
pub trait NotifierLease: Send + Sync {
    /// Whether this instance produces the next notification: takes the lease if it is free,
    /// renews it if this instance holds it.
    fn hold(&self) -> BoxFuture<'_, Result<bool, StoreError>>;
}

/// The lease of a server that shares its events with no one: always held.
#[derive(Debug, Clone, Copy, Default)]
pub struct Alone;

impl NotifierLease for Alone {
    fn hold(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(future::ready(Ok(true)))
    }
}

/// Publishes a demo notification every `period` while this instance holds `lease`, until
/// `shutdown`; the first after one period.
pub async fn run_notifier(
    bus: Arc<dyn EventBus>,
    lease: Arc<dyn NotifierLease>,
    period: Duration,
    shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // After a stall, carry on at the normal pace instead of publishing a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sequence = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.wait() => return,
        }
        match lease.hold().await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                tracing::warn!(%err, "the notification lease could not be checked");
                continue;
            }
        }
        if let Err(err) = bus.publish(demo_notification(sequence)).await {
            tracing::warn!(%err, "a notification could not be published");
        }
        sequence += 1;
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::events::{Delivery, MemoryEventBus};

    #[test]
    fn every_level_comes_in_turn() {
        let bus = MemoryEventBus::new(8);
        for sequence in 0..8 {
            bus.publish_now(demo_notification(sequence));
        }
        let sub = bus.subscribe_now(Some(0));
        let types: Vec<String> = sub
            .replay
            .iter()
            .map(|e| {
                let value: serde_json::Value = serde_json::from_str(&e.data).expect("JSON");
                value["type"].as_str().expect("type").to_owned()
            })
            .collect();
        assert_eq!(
            types,
            [
                "info", "warning", "success", "error", "info", "warning", "success", "error"
            ]
        );
    }

    /// A lease held by someone else.
    struct Elsewhere;

    impl NotifierLease for Elsewhere {
        fn hold(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
            Box::pin(future::ready(Ok(false)))
        }
    }

    #[tokio::test]
    async fn an_instance_without_the_lease_publishes_nothing() {
        let bus = Arc::new(MemoryEventBus::new(16));
        let shutdown = Shutdown::new();
        let task = tokio::spawn(run_notifier(
            bus.clone(),
            Arc::new(Elsewhere),
            Duration::from_millis(1),
            shutdown.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(30)).await;
        shutdown.trigger();
        task.await.expect("the notifier ends without panicking");
        assert_eq!(bus.last_id(), 0);
    }

    #[tokio::test]
    async fn publishes_each_period_and_stops_on_shutdown() {
        let bus = Arc::new(MemoryEventBus::new(16));
        let shutdown = Shutdown::new();
        let mut live = bus.subscribe_now(None).live;
        let task = tokio::spawn(run_notifier(
            bus.clone(),
            Arc::new(Alone),
            Duration::from_millis(1),
            shutdown.clone(),
        ));
        for expected in 1..=3 {
            match live.next().await {
                Some(Delivery::Event(event)) => assert_eq!(event.id, expected),
                other => panic!("unexpected {other:?}"),
            }
        }
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the notifier stops on shutdown")
            .expect("the notifier ends without panicking");
    }
}
