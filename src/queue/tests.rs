//! The index's state machine, on a clock the tests move by hand.

use uuid::Uuid;

use super::backoff::RetryPolicy;
use super::index::{Prepared, QueueIndex, Snapshot};
use super::limits::{
    BatchSize, Delay, ErrorText, IdempotencyKey, LeaseId, LeaseLength, MaxAttempts,
};
use super::record::{AckOutcome, StateName, TaskState, Transition};
use super::*;

const T0: u64 = 1_700_000_000_000;
const LEASE: u64 = 30_000;

fn settings(capacity: usize) -> QueueSettings {
    QueueSettings {
        capacity,
        retry: RetryPolicy {
            base_ms: 1_000,
            max_ms: 60_000,
        },
        idempotency_ttl_ms: 60_000,
        idempotency_max_keys: 2,
    }
}

fn new_task(text: &str, priority: i64) -> NewTask {
    new_task_with(text, priority, 0, 3)
}

fn new_task_with(text: &str, priority: i64, delay_ms: u64, max_attempts: u64) -> NewTask {
    NewTask {
        task: QueuedTask::new(
            TaskText::parse(text.to_owned()).expect("valid text"),
            Priority::new(priority).expect("valid priority"),
        ),
        delay: Delay::from_millis(delay_ms).expect("in range"),
        max_attempts: MaxAttempts::new(max_attempts).expect("in range"),
        key: None,
    }
}

/// Settles a prepared operation as recorded and returns its answer and transitions.
fn done<T>(index: &QueueIndex, prepared: Prepared<T>) -> (T, Vec<Transition>) {
    match prepared {
        Prepared::Ready {
            plan,
            answer,
            transitions,
        } => {
            index.settle(plan, true);
            (answer, transitions)
        }
        Prepared::Busy(_) => panic!("no task is pending in these tests"),
    }
}

fn enqueue(index: &QueueIndex, text: &str, priority: i64, now: u64) -> Uuid {
    let prepared = index
        .prepare_enqueue(&new_task(text, priority), now)
        .expect("room");
    done(index, prepared).0.enqueued.task.id
}

fn lease(index: &QueueIndex, count: usize, now: u64) -> Vec<(String, Uuid, LeaseId, u32)> {
    let prepared = index.prepare_lease(
        BatchSize::new(count).expect("in range"),
        LeaseLength::unchecked(std::time::Duration::from_millis(LEASE)),
        now,
    );
    done(index, prepared)
        .0
        .tasks
        .into_iter()
        .map(|t| (t.task.task.to_string(), t.task.id, t.lease, t.attempt))
        .collect()
}

fn ack(index: &QueueIndex, id: Uuid, lease: LeaseId, now: u64) -> AckOutcome {
    done(index, index.prepare_ack(&[(id, lease)], now)).0[0]
}

fn drain(index: &QueueIndex, now: u64) -> Vec<String> {
    std::iter::from_fn(|| done(index, index.prepare_dequeue(now)).0)
        .map(|d| d.task.task.to_string())
        .collect()
}

fn nack(
    index: &QueueIndex,
    id: Uuid,
    lease: LeaseId,
    delay: Option<u64>,
    now: u64,
) -> record::Nacked {
    let request = NackRequest {
        id,
        lease,
        delay: delay.map(|ms| Delay::from_millis(ms).expect("in range")),
        error: Some(ErrorText::parse("boom".into()).expect("short")),
        jitter: 0.0,
    };
    done(
        index,
        index.prepare_nack(&request, now).expect("a live lease"),
    )
    .0
}

#[test]
fn lower_numbers_leave_first_and_equal_priorities_in_arrival_order() {
    let index = QueueIndex::new(settings(10));
    for (text, priority) in [
        ("c1", 3),
        ("a1", 1),
        ("c2", 3),
        ("b", 2),
        ("a2", 1),
        ("neg", -5),
    ] {
        enqueue(&index, text, priority, T0);
    }
    assert_eq!(drain(&index, T0), ["neg", "a1", "a2", "b", "c1", "c2"]);
}

#[test]
fn every_task_counts_against_the_capacity_whatever_its_state() {
    let index = QueueIndex::new(settings(2));
    enqueue(&index, "a", 1, T0);
    enqueue(&index, "b", 1, T0);
    lease(&index, 1, T0);
    assert_eq!(
        index.prepare_enqueue(&new_task("c", 0), T0).err(),
        Some(QueueError::Full { capacity: 2 }),
        "a leased task still takes its slot"
    );
    let (_, id, held, _) = lease(&index, 1, T0).remove(0);
    assert_eq!(ack(&index, id, held, T0), AckOutcome::Acked);
    enqueue(&index, "c", 0, T0);
}

#[test]
fn a_leased_task_is_invisible_until_acknowledged_and_then_gone() {
    let index = QueueIndex::new(settings(10));
    let first = enqueue(&index, "first", 1, T0);
    enqueue(&index, "second", 2, T0);
    let leased = lease(&index, 1, T0);
    assert_eq!(leased[0].0, "first");
    assert_eq!(leased[0].3, 1, "the first delivery");
    let status = index.status(T0);
    assert_eq!((status.size, status.leased), (1, 1));
    assert_eq!(
        status.next.map(|t| t.task.to_string()).as_deref(),
        Some("second")
    );
    let held = leased[0].2;
    assert_eq!(
        ack(&index, first, LeaseId::random(), T0),
        AckOutcome::LeaseLost
    );
    assert_eq!(ack(&index, first, held, T0 + 1), AckOutcome::Acked);
    assert_eq!(ack(&index, first, held, T0 + 2), AckOutcome::AlreadyAcked);
    assert_eq!(ack(&index, Uuid::new_v4(), held, T0), AckOutcome::NotFound);
    assert!(index.get(first, T0).is_none());
    // Once the lease would have run out, a repeat is no longer recognised.
    done(&index, index.prepare_reap(T0 + LEASE));
    assert_eq!(ack(&index, first, held, T0 + LEASE), AckOutcome::NotFound);
    assert_eq!(drain(&index, T0), ["second"]);
}

#[test]
fn an_expired_lease_costs_an_attempt_and_returns_at_its_original_place() {
    let index = QueueIndex::new(settings(10));
    let stalled = enqueue(&index, "stalled", 1, T0);
    let (_, _, old_lease, _) = lease(&index, 1, T0).remove(0);
    enqueue(&index, "newer", 1, T0 + 1);
    let (taken, transitions) = done(
        &index,
        index.prepare_lease(
            BatchSize::ONE,
            LeaseLength::unchecked(std::time::Duration::from_millis(LEASE)),
            T0 + LEASE,
        ),
    );
    assert_eq!(
        taken.tasks[0].task.id, stalled,
        "ahead of the newer task of its priority"
    );
    assert_eq!(taken.tasks[0].attempt, 2);
    assert!(matches!(
        transitions[0],
        Transition::Expired { attempt: 1, .. }
    ));
    assert!(matches!(transitions[1], Transition::Leased(_)));
    assert_eq!(
        ack(&index, stalled, old_lease, T0 + LEASE),
        AckOutcome::LeaseLost,
        "the worker whose lease ran out can no longer complete it"
    );
}

#[test]
fn a_task_whose_last_lease_runs_out_is_dead_lettered() {
    let index = QueueIndex::new(settings(10));
    let prepared = index
        .prepare_enqueue(&new_task_with("once", 1, 0, 1), T0)
        .expect("room");
    let id = done(&index, prepared).0.enqueued.task.id;
    lease(&index, 1, T0);
    let (_, transitions) = done(&index, index.prepare_reap(T0 + LEASE));
    assert!(matches!(
        transitions[..],
        [Transition::Dead { attempt: 1, .. }]
    ));
    let view = index.get(id, T0 + LEASE).expect("kept");
    assert_eq!(view.state, StateName::Dead);
    assert!(
        view.last_error
            .is_some_and(|e| e.as_str().contains("lease ran out"))
    );
    assert!(lease(&index, 1, T0 + LEASE).is_empty());
}

#[test]
fn a_nack_backs_off_then_dead_letters_after_the_last_attempt() {
    let index = QueueIndex::new(settings(10));
    let id = enqueue(&index, "flaky", 1, T0);
    let (_, _, held, _) = lease(&index, 1, T0).remove(0);
    let nacked = nack(&index, id, held, None, T0);
    assert_eq!(nacked.state, StateName::Delayed);
    assert_eq!(
        nacked.available_at_ms,
        Some(T0 + 500),
        "half the first back-off, no jitter"
    );
    assert!(
        lease(&index, 1, T0 + 499).is_empty(),
        "invisible until its time"
    );
    let (_, _, held, attempt) = lease(&index, 1, T0 + 500).remove(0);
    assert_eq!(attempt, 2);
    assert_eq!(
        nack(&index, id, held, Some(0), T0 + 500).state,
        StateName::Queued
    );
    let (_, _, held, _) = lease(&index, 1, T0 + 500).remove(0);
    let last = nack(&index, id, held, None, T0 + 500);
    assert_eq!(last.state, StateName::Dead);
    let view = index.get(id, T0 + 500).expect("kept");
    assert_eq!(
        view.last_error.map(|e| e.as_str().to_owned()).as_deref(),
        Some("boom")
    );
    assert_eq!(
        index
            .prepare_nack(
                &NackRequest {
                    id,
                    lease: held,
                    delay: None,
                    error: None,
                    jitter: 0.0
                },
                T0 + 500
            )
            .err(),
        Some(QueueError::LeaseLost)
    );
}

#[test]
fn a_delayed_task_becomes_visible_at_its_time() {
    let index = QueueIndex::new(settings(10));
    let prepared = index
        .prepare_enqueue(&new_task_with("later", 1, 1_000, 3), T0)
        .expect("room");
    let (outcome, _) = done(&index, prepared);
    assert_eq!(outcome.enqueued.state, StateName::Delayed);
    assert_eq!(outcome.enqueued.available_at_ms, T0 + 1_000);
    assert_eq!(index.status(T0 + 999).delayed, 1);
    assert!(drain(&index, T0 + 999).is_empty());
    assert_eq!(index.status(T0 + 1_000).size, 1);
    assert_eq!(drain(&index, T0 + 1_000), ["later"]);
}

#[test]
fn a_live_lease_can_be_extended_and_an_expired_one_cannot() {
    let index = QueueIndex::new(settings(10));
    let id = enqueue(&index, "long job", 1, T0);
    let (_, _, held, _) = lease(&index, 1, T0).remove(0);
    let longer = LeaseLength::unchecked(std::time::Duration::from_millis(60_000));
    let (end, _) = done(
        &index,
        index
            .prepare_extend(id, held, longer, T0 + 10_000)
            .expect("live"),
    );
    assert_eq!(end, T0 + 70_000);
    done(&index, index.prepare_reap(T0 + 40_000));
    assert_eq!(ack(&index, id, held, T0 + 69_999), AckOutcome::Acked);
    let other = enqueue(&index, "short", 1, T0);
    let (_, _, held, _) = lease(&index, 1, T0).remove(0);
    assert_eq!(
        index.prepare_extend(other, held, longer, T0 + LEASE).err(),
        Some(QueueError::LeaseLost)
    );
}

#[test]
fn dead_letters_are_listed_in_pages_retried_at_their_place_and_deleted() {
    let index = QueueIndex::new(settings(10));
    let mut ids = Vec::new();
    for text in ["d1", "d2", "d3"] {
        let prepared = index
            .prepare_enqueue(&new_task_with(text, 5, 0, 1), T0)
            .expect("room");
        ids.push(done(&index, prepared).0.enqueued.task.id);
    }
    for (_, id, held, _) in lease(&index, 3, T0) {
        nack(&index, id, held, None, T0);
    }
    enqueue(&index, "fresh", 5, T0);
    let page = index.dead_page(2, None, T0).expect("listed");
    assert_eq!(
        page.tasks.iter().map(|t| t.task.id).collect::<Vec<_>>(),
        ids[..2]
    );
    assert_eq!(page.next, Some(ids[1]));
    let rest = index.dead_page(2, page.next, T0).expect("listed");
    assert_eq!(rest.tasks.len(), 1);
    assert_eq!(rest.next, None);
    assert_eq!(
        index.dead_page(2, Some(Uuid::new_v4()), T0).err(),
        Some(QueueError::UnknownCursor)
    );

    let (view, _) = done(&index, index.prepare_retry_dead(ids[1], T0).expect("dead"));
    assert_eq!((view.state, view.attempt), (StateName::Queued, 0));
    assert_eq!(drain(&index, T0), ["d2", "fresh"], "at its original place");
    done(&index, index.prepare_delete_dead(ids[0], T0).expect("dead"));
    assert!(index.get(ids[0], T0).is_none());
    assert_eq!(
        index.prepare_delete_dead(ids[0], T0).err(),
        Some(QueueError::TaskNotFound)
    );
    assert_eq!(index.status(T0).dead, 1);
}

#[test]
fn an_idempotency_key_replays_its_first_answer_and_refuses_another_body() {
    let index = QueueIndex::new(settings(10));
    let key = IdempotencyKey::parse(b"order-1").expect("valid");
    let keyed = |text: &str| {
        let mut new = new_task(text, 1);
        let fingerprint = Fingerprint::of(
            &new.task.task,
            new.task.priority,
            new.delay,
            new.max_attempts,
        );
        new.key = Some((key.clone(), fingerprint));
        new
    };
    let first = done(
        &index,
        index.prepare_enqueue(&keyed("pay"), T0).expect("room"),
    )
    .0;
    assert!(!first.replayed);
    let again = done(
        &index,
        index
            .prepare_enqueue(&keyed("pay"), T0 + 1)
            .expect("replay"),
    )
    .0;
    assert!(again.replayed);
    assert_eq!(again.enqueued, first.enqueued);
    assert_eq!(index.len(), 1, "nothing was added");
    assert_eq!(
        index.prepare_enqueue(&keyed("refund"), T0 + 1).err(),
        Some(QueueError::KeyReused)
    );
    // While the first request with a key is pending, a second is told it is in flight; a
    // failed first request forgets the key.
    let other = IdempotencyKey::parse(b"order-2").expect("valid");
    let mut pending = new_task("x", 1);
    pending.key = Some((other, Fingerprint([7; 32])));
    let Ok(Prepared::Ready { plan, .. }) = index.prepare_enqueue(&pending, T0) else {
        panic!("room");
    };
    assert_eq!(
        index.prepare_enqueue(&pending, T0).err(),
        Some(QueueError::KeyInUse)
    );
    index.settle(plan, false);
    let Ok(Prepared::Ready { plan, .. }) = index.prepare_enqueue(&pending, T0) else {
        panic!("the key was forgotten");
    };
    index.settle(plan, true);
    let mut third = new_task("y", 1);
    third.key = Some((
        IdempotencyKey::parse(b"order-3").expect("valid"),
        Fingerprint([1; 32]),
    ));
    assert_eq!(
        index.prepare_enqueue(&third, T0).err(),
        Some(QueueError::KeysFull { capacity: 2 })
    );
    assert!(
        index.prepare_enqueue(&third, T0 + 60_000).is_ok(),
        "the old keys expired"
    );
}

#[test]
fn a_failed_record_puts_every_task_back_where_it_was() {
    let index = QueueIndex::new(settings(10));
    for text in ["a", "b", "c"] {
        enqueue(&index, text, 1, T0);
    }
    let Prepared::Ready { plan, answer, .. } = index.prepare_lease(
        BatchSize::new(2).expect("in range"),
        LeaseLength::unchecked(std::time::Duration::from_millis(LEASE)),
        T0,
    ) else {
        panic!("nothing is pending");
    };
    assert_eq!(answer.tasks.len(), 2);
    assert_eq!(index.status(T0).size, 1, "pending tasks are out of reach");
    index.settle(plan, false);
    let status = index.status(T0);
    assert_eq!((status.size, status.leased), (3, 0));
    let Ok(Prepared::Ready { plan, .. }) = index.prepare_enqueue(&new_task("d", 0), T0) else {
        panic!("room");
    };
    index.settle(plan, false);
    assert_eq!(drain(&index, T0), ["a", "b", "c"]);
}

#[tokio::test]
async fn an_operation_on_a_pending_task_waits_for_it_to_settle() {
    let index = QueueIndex::new(settings(10));
    let id = enqueue(&index, "a", 1, T0);
    let (_, _, held, _) = lease(&index, 1, T0).remove(0);
    let Prepared::Ready { plan, .. } = index.prepare_ack(&[(id, held)], T0) else {
        panic!("nothing is pending");
    };
    let Prepared::Busy(settled) = index.prepare_ack(&[(id, held)], T0) else {
        panic!("the task is pending");
    };
    index.settle(plan, true);
    settled.await;
    assert_eq!(ack(&index, id, held, T0), AckOutcome::AlreadyAcked);
}

#[test]
fn a_snapshot_rebuilds_every_state_and_order() {
    let record = |seq: u64, text: &str, priority: i64, state: TaskState| record::TaskRecord {
        seq,
        task: new_task(text, priority).task,
        max_attempts: MaxAttempts::new(3).expect("in range"),
        attempt: u32::from(matches!(state, TaskState::Leased { .. })),
        state,
        last_error: None,
    };
    let lease = LeaseId::random();
    let leased = record(
        2,
        "leased",
        1,
        TaskState::Leased {
            lease,
            expires_ms: T0 + 5,
        },
    );
    let leased_id = leased.task.id;
    let snapshot = Snapshot {
        tasks: vec![
            record(7, "b2", 2, TaskState::Queued),
            record(3, "b1", 2, TaskState::Queued),
            leased,
            record(5, "due", 1, TaskState::Delayed { until_ms: T0 }),
            record(
                6,
                "later",
                0,
                TaskState::Delayed {
                    until_ms: T0 + 1_000,
                },
            ),
            record(4, "dead", 0, TaskState::Dead { at_ms: T0 }),
        ],
        ..Snapshot::default()
    };
    let index = QueueIndex::from_snapshot(settings(10), snapshot, T0);
    let status = index.status(T0);
    assert_eq!(
        (status.size, status.delayed, status.leased, status.dead),
        (3, 1, 1, 1)
    );
    assert_eq!(
        ack(&index, leased_id, lease, T0 + 1),
        AckOutcome::Acked,
        "a live lease acknowledges"
    );
    let newest = enqueue(&index, "new", 2, T0);
    assert_eq!(
        index
            .get(newest, T0)
            .map(|v| v.task.task.to_string())
            .as_deref(),
        Some("new")
    );
    assert_eq!(
        drain(&index, T0),
        ["due", "b1", "b2", "new"],
        "arrival numbers carry on after the record's"
    );
}
