//! What every [`EventBus`] promises: ids increase by one, every subscriber sees each event in
//! order, a replay after a `Last-Event-ID` meets the live events with no gap and no duplicate
//! (also while events are being published), what left the replay window is counted as missed,
//! an id the bus never gave replays everything it retains, and a failed publish changes
//! nothing.

use backflow::events::{Delivery, Event, EventBus, Level, NewEvent, Subscription};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{Backend, GUARD};

contract!(every backend:
    ids_increase_by_one,
    every_subscriber_sees_each_event_in_order,
    a_replay_meets_the_live_events_with_no_gap_and_no_duplicate,
    the_seam_holds_while_events_are_published,
    events_gone_from_the_replay_window_are_counted_as_missed,
    an_id_the_bus_never_gave_replays_everything_retained,
);
contract!(redis: a_failed_publish_changes_nothing);

fn note(n: u64) -> NewEvent {
    NewEvent::notification(Level::Info, format_args!("note {n}")).with("n", n)
}

/// Publishes `count` events; their ids.
async fn publish(bus: &dyn EventBus, count: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(bus.publish(note(n)).await.expect("published"));
    }
    ids
}

async fn subscribe(bus: &dyn EventBus, last_event_id: Option<u64>) -> Subscription {
    bus.subscribe(last_event_id).await.expect("subscribed")
}

/// The next event of `live`; panics on a lagged notice or after [`GUARD`].
async fn next_event(live: &mut BoxStream<'static, Delivery>) -> Event {
    let delivery = tokio::time::timeout(GUARD, live.next())
        .await
        .unwrap_or_else(|_| panic!("an event within {GUARD:?}"))
        .expect("the live stream goes on");
    match delivery {
        Delivery::Event(event) => event,
        Delivery::Lagged { skipped } => panic!("lagged by {skipped} events"),
    }
}

fn ids_of(events: &[Event]) -> Vec<u64> {
    events.iter().map(|event| event.id).collect()
}

async fn ids_increase_by_one(backend: Backend) {
    let subject = backend.open(&[]).await;
    let ids = publish(&*subject.stores.events, 5).await;
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
}

async fn every_subscriber_sees_each_event_in_order(backend: Backend) {
    let subject = backend.open(&[]).await;
    let bus = &*subject.stores.events;
    let mut a = subscribe(bus, None).await;
    let mut b = subscribe(bus, None).await;
    assert!(
        a.replay.is_empty() && a.missed == 0,
        "no replay without an id"
    );
    let ids = publish(bus, 3).await;
    let mut seen = Vec::new();
    for live in [&mut a.live, &mut b.live] {
        let mut events = Vec::new();
        for _ in 0..3 {
            events.push(next_event(live).await);
        }
        assert_eq!(ids_of(&events), ids);
        seen.push(events);
    }
    assert_eq!(seen[0], seen[1], "the same bytes for every subscriber");
    let data: serde_json::Value = serde_json::from_str(&seen[0][0].data).expect("JSON data");
    assert_eq!(data["id"], ids[0], "the data carries the id");
    assert_eq!(data["message"], "note 0");
}

async fn a_replay_meets_the_live_events_with_no_gap_and_no_duplicate(backend: Backend) {
    let subject = backend.open(&[]).await;
    let bus = &*subject.stores.events;
    let ids = publish(bus, 5).await;
    let mut resumed = subscribe(bus, Some(ids[1])).await;
    assert_eq!(ids_of(&resumed.replay), ids[2..]);
    assert_eq!(resumed.missed, 0);
    let live = bus.publish(note(5)).await.expect("published");
    assert_eq!(next_event(&mut resumed.live).await.id, live);
    let up_to_date = subscribe(bus, Some(live)).await;
    assert!(up_to_date.replay.is_empty() && up_to_date.missed == 0);
}

async fn the_seam_holds_while_events_are_published(backend: Backend) {
    const BEFORE: u64 = 10;
    const DURING: u64 = 100;
    let subject = backend.open(&[]).await;
    let ids = publish(&*subject.stores.events, BEFORE).await;
    let resume_after = ids[4];
    let publisher = {
        let bus = subject.stores.events.clone();
        tokio::spawn(async move { publish(&*bus, DURING).await })
    };
    // Subscribed while the publisher runs: some events are replayed, the rest arrive live.
    tokio::task::yield_now().await;
    let mut resumed = subscribe(&*subject.stores.events, Some(resume_after)).await;
    let last = *publisher
        .await
        .expect("the publisher ends without panicking")
        .last()
        .expect("published");
    let mut seen = ids_of(&resumed.replay);
    while seen.last().is_none_or(|id| *id < last) {
        seen.push(next_event(&mut resumed.live).await.id);
    }
    let expected: Vec<u64> = (resume_after + 1..=last).collect();
    assert_eq!(seen, expected, "every id once, in order, across the seam");
}

async fn events_gone_from_the_replay_window_are_counted_as_missed(backend: Backend) {
    let subject = backend.open(&[("SSE_REPLAY_BUFFER", "3")]).await;
    let bus = &*subject.stores.events;
    let ids = publish(bus, 10).await;
    let resumed = subscribe(bus, Some(ids[1])).await;
    assert_eq!(
        ids_of(&resumed.replay),
        ids[7..],
        "the window holds the last 3"
    );
    assert_eq!(resumed.missed, 5, "the 5 events between are gone");
}

async fn an_id_the_bus_never_gave_replays_everything_retained(backend: Backend) {
    let subject = backend.open(&[("SSE_REPLAY_BUFFER", "3")]).await;
    let bus = &*subject.stores.events;
    let ids = publish(bus, 5).await;
    // An id from before a restart of the bus (or of another deployment): every event retained
    // now is new to that client, and those no longer retained are missed.
    let resumed = subscribe(bus, Some(ids[4] + 100)).await;
    assert_eq!(ids_of(&resumed.replay), ids[2..]);
    assert_eq!(resumed.missed, 2);
}

async fn a_failed_publish_changes_nothing(backend: Backend) {
    let mut subject = backend.open(&[]).await;
    let mut open = subscribe(&*subject.stores.events, None).await;
    let before = subject
        .stores
        .events
        .publish(note(0))
        .await
        .expect("published");
    assert_eq!(next_event(&mut open.live).await.id, before);

    subject.fail();
    let bus = &*subject.stores.events;
    assert!(bus.publish(note(1)).await.is_err());
    assert!(bus.subscribe(Some(0)).await.is_err());

    subject.recover().await;
    let bus = &*subject.stores.events;
    let after = bus.publish(note(2)).await.expect("published");
    assert_eq!(after, before + 1, "the failed publish took no id");
    assert_eq!(
        next_event(&mut open.live).await.id,
        after,
        "the stream opened before the outage goes on, with nothing in between"
    );
    let replayed = subscribe(bus, Some(0)).await;
    assert_eq!(ids_of(&replayed.replay), [before, after]);
}
