//! What every [`QueueStore`] promises: lower priority numbers leave first and equal ones in
//! arrival order, the capacity holds and a refusal changes nothing, each task leaves exactly
//! once however many take at once, the status tells without taking, and a failure changes
//! nothing. [`matches_a_sorted_vector_model`] drives random sequences of operations against a
//! sorted vector. The promises of leases (fencing, expiry at the original place, back-off,
//! dead letters, delays, idempotency keys) are in [`leases`](super::leases).

use std::collections::HashSet;

use backflow::queue::limits::{Delay, MaxAttempts};
use backflow::queue::{NewTask, Priority, QueueError, QueueStore, QueuedTask, TaskText};
use futures_util::future::join_all;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

use super::{Backend, Subject};
use crate::common::redis::RedisServer;

contract!(every backend:
    tasks_leave_by_priority_then_arrival,
    a_dequeued_task_is_the_enqueued_one,
    a_full_queue_refuses_and_the_refusal_changes_nothing,
    concurrent_dequeues_take_each_task_exactly_once,
    the_status_tells_the_size_and_the_next_task_without_taking_it,
);
contract!(embedded, redis: a_failed_change_changes_nothing);

/// A task to enqueue at once, with five attempts.
pub fn task(text: &str, priority: i64) -> NewTask {
    task_with(text, priority, 0, 5)
}

/// A task to enqueue after `delay_ms`, allowed `max_attempts` deliveries.
pub fn task_with(text: &str, priority: i64, delay_ms: u64, max_attempts: u64) -> NewTask {
    NewTask {
        task: QueuedTask::new(
            TaskText::parse(text.to_owned()).expect("a valid text"),
            Priority::new(priority).expect("a valid priority"),
        ),
        delay: Delay::from_millis(delay_ms).expect("in range"),
        max_attempts: MaxAttempts::new(max_attempts).expect("in range"),
        key: None,
    }
}

/// Dequeues until the queue is empty; the texts, in order.
pub async fn drain(queue: &dyn QueueStore) -> Vec<String> {
    let mut texts = Vec::new();
    while let Some(out) = queue.dequeue().await.expect("dequeued").answer {
        texts.push(out.task.task.to_string());
    }
    texts
}

async fn tasks_leave_by_priority_then_arrival(backend: Backend) {
    let subject = backend.open(&[]).await;
    let queue = &*subject.stores.queue;
    for (text, priority) in [
        ("b1", 5),
        ("lowest", Priority::MAX),
        ("a1", 1),
        ("b2", 5),
        ("highest", Priority::MIN),
        ("a2", 1),
        ("b3", 5),
    ] {
        queue.enqueue(task(text, priority)).await.expect("room");
    }
    assert_eq!(
        drain(queue).await,
        ["highest", "a1", "a2", "b1", "b2", "b3", "lowest"]
    );
}

async fn a_dequeued_task_is_the_enqueued_one(backend: Backend) {
    let subject = backend.open(&[]).await;
    let queue = &*subject.stores.queue;
    let sent = task(r#"say "hi" to Zoë \ and ✓"#, -7);
    let outcome = queue.enqueue(sent.clone()).await.expect("room").answer;
    assert!(!outcome.replayed);
    let enqueued = outcome.enqueued;
    assert_eq!(
        (
            enqueued.task.id,
            &enqueued.task.task,
            enqueued.task.priority
        ),
        (sent.task.id, &sent.task.task, sent.task.priority)
    );
    assert_eq!(enqueued.queue_size, 1);
    let dequeued = queue
        .dequeue()
        .await
        .expect("dequeued")
        .answer
        .expect("a task");
    assert_eq!(
        (dequeued.task, dequeued.queue_size),
        (enqueued.task, 0),
        "id, text, priority and enqueue time come back as they were accepted"
    );
    assert!(queue.dequeue().await.expect("dequeued").answer.is_none());
}

async fn a_full_queue_refuses_and_the_refusal_changes_nothing(backend: Backend) {
    let subject = backend.open(&[("QUEUE_CAPACITY", "2")]).await;
    let queue = &*subject.stores.queue;
    queue.enqueue(task("a", 1)).await.expect("room");
    queue.enqueue(task("b", 1)).await.expect("room");
    assert_eq!(
        queue.enqueue(task("refused", 0)).await,
        Err(QueueError::Full { capacity: 2 })
    );
    let status = queue.status().await.expect("status");
    assert_eq!(status.size, 2);
    assert_eq!(
        status.next.map(|t| t.task.to_string()).as_deref(),
        Some("a")
    );

    queue
        .dequeue()
        .await
        .expect("dequeued")
        .answer
        .expect("a task");
    let enqueued = queue.enqueue(task("c", 1)).await.expect("room again");
    assert_eq!(enqueued.answer.enqueued.queue_size, 2);
    assert_eq!(drain(queue).await, ["b", "c"]);
}

async fn concurrent_dequeues_take_each_task_exactly_once(backend: Backend) {
    const TASKS: usize = 200;
    const TAKERS: usize = 8;
    let subject = backend.open(&[]).await;
    let enqueues = (0..TASKS).map(|n| {
        let queue = &subject.stores.queue;
        async move {
            let priority = i64::try_from(n % 4).expect("small");
            queue.enqueue(task(&format!("t{n}"), priority)).await
        }
    });
    let enqueued: HashSet<uuid::Uuid> = join_all(enqueues)
        .await
        .into_iter()
        .map(|result| result.expect("room").answer.enqueued.task.id)
        .collect();
    assert_eq!(enqueued.len(), TASKS, "every task has its own id");

    let takers = (0..TAKERS).map(|_| {
        let queue = subject.stores.queue.clone();
        tokio::spawn(async move {
            let mut taken = Vec::new();
            while let Some(out) = queue.dequeue().await.expect("dequeued").answer {
                taken.push((out.task.id, out.queue_size));
            }
            taken
        })
    });
    let taken: Vec<(uuid::Uuid, usize)> = join_all(takers)
        .await
        .into_iter()
        .flat_map(|taker| taker.expect("a taker ends without panicking"))
        .collect();
    let ids: HashSet<uuid::Uuid> = taken.iter().map(|(id, _)| *id).collect();
    assert_eq!(taken.len(), TASKS, "no task was taken twice");
    assert_eq!(ids, enqueued, "every task was taken");
    let sizes: HashSet<usize> = taken.iter().map(|(_, size)| *size).collect();
    assert_eq!(
        sizes,
        (0..TASKS).collect(),
        "each size after a dequeue once"
    );
}

async fn the_status_tells_the_size_and_the_next_task_without_taking_it(backend: Backend) {
    let subject = backend.open(&[]).await;
    let queue = &*subject.stores.queue;
    let empty = queue.status().await.expect("status");
    assert_eq!((empty.size, empty.next), (0, None));
    queue.enqueue(task("later", 5)).await.expect("room");
    let sooner = queue.enqueue(task("sooner", 1)).await.expect("room");
    let sooner = sooner.answer.enqueued.task;
    for _ in 0..2 {
        let status = queue.status().await.expect("status");
        assert_eq!(status.size, 2);
        assert_eq!(status.next.as_ref(), Some(&sooner));
    }
    assert_eq!(queue.size(), 2, "the gauge's size, as last seen");
}

async fn a_failed_change_changes_nothing(backend: Backend) {
    let mut subject = backend.open(&[]).await;
    subject
        .stores
        .queue
        .enqueue(task("kept", 1))
        .await
        .expect("room");

    subject.fail();
    let queue = &*subject.stores.queue;
    assert!(matches!(
        queue.enqueue(task("refused", 0)).await,
        Err(QueueError::Store(_))
    ));
    assert!(matches!(queue.dequeue().await, Err(QueueError::Store(_))));

    subject.recover().await;
    let queue = &*subject.stores.queue;
    let status = queue.status().await.expect("status");
    assert_eq!(status.size, 1);
    assert_eq!(
        status.next.map(|t| t.task.to_string()).as_deref(),
        Some("kept")
    );
    queue.enqueue(task("after", 1)).await.expect("room");
    assert_eq!(drain(queue).await, ["kept", "after"]);
}

/// An operation of the model test.
#[derive(Debug, Clone)]
enum Op {
    Enqueue(i64),
    Dequeue,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (-3i64..=3).prop_map(Op::Enqueue),
        2 => Just(Op::Dequeue),
    ]
}

/// Random sequences of enqueues and dequeues give what a vector kept sorted by (priority,
/// arrival) gives: the same refusals, the same tasks in the same order, the same sizes and
/// the same status after each step. Fewer cases where each operation is a commit or a round
/// trip.
mod matches_a_sorted_vector_model {
    use super::{Backend, check_model};

    #[test]
    fn memory() {
        check_model(Backend::memory(), 256);
    }

    #[test]
    fn embedded() {
        check_model(Backend::embedded(), 32);
    }

    #[test]
    fn redis() {
        check_model(Backend::redis(), 32);
    }
}

/// Runs the model test on `backend` for `cases` random cases, each on stores of its own (on
/// Redis, one server for all, a prefix per case).
fn check_model(backend: Backend, cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let shared = (backend == Backend::Redis).then(|| runtime.block_on(RedisServer::start()));
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let cases = (proptest::collection::vec(op(), 0..200), 1usize..20);
    let outcome = TestRunner::new(config).run(&cases, |(ops, capacity)| {
        runtime.block_on(async {
            let capacity_setting = capacity.to_string();
            let settings = [("QUEUE_CAPACITY", capacity_setting.as_str())];
            let subject = match &shared {
                Some(server) => Subject::on_shared_redis(server, &settings),
                None => backend.open(&settings).await,
            };
            let outcome = follow_the_model(&*subject.stores.queue, ops, capacity).await;
            subject.close().await;
            outcome
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

async fn follow_the_model(
    queue: &dyn QueueStore,
    ops: Vec<Op>,
    capacity: usize,
) -> Result<(), TestCaseError> {
    let mut model: Vec<(i64, usize, String)> = Vec::new();
    for (arrival, op) in ops.into_iter().enumerate() {
        match op {
            Op::Enqueue(priority) => {
                let text = format!("t{arrival}");
                let result = queue.enqueue(task(&text, priority)).await;
                if model.len() >= capacity {
                    prop_assert_eq!(result, Err(QueueError::Full { capacity }));
                } else {
                    model.push((priority, arrival, text));
                    model.sort();
                    prop_assert_eq!(
                        result.map(|e| e.answer.enqueued.queue_size),
                        Ok(model.len())
                    );
                }
            }
            Op::Dequeue => {
                let expected = (!model.is_empty()).then(|| model.remove(0));
                let got = queue.dequeue().await.expect("dequeued").answer;
                prop_assert_eq!(
                    got.map(|d| (d.task.priority.get(), d.task.task.to_string(), d.queue_size)),
                    expected.map(|(priority, _, text)| (priority, text, model.len()))
                );
            }
        }
        let status = queue.status().await.expect("status");
        prop_assert_eq!(status.size, model.len());
        prop_assert_eq!(
            status.next.map(|t| t.task.to_string()),
            model.first().map(|(_, _, text)| text.clone())
        );
    }
    Ok(())
}
