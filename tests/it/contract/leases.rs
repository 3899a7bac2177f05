//! What every [`QueueStore`] promises of reliable delivery: a leased task is out of everyone
//! else's reach and an acknowledgement removes it for good (a repeat says so, a stranger's
//! lease is refused); a lease that runs out costs an attempt and returns the task at its
//! original place, and its worker can no longer complete it; the last attempt dead-letters; a
//! nack backs off, a delay hides a task until its time, an extension keeps a lease alive; the
//! dead-letter list pages in arrival order and gives tasks back at their place; an idempotency
//! key answers its first answer again; concurrent leases take each task once; and a failure
//! changes nothing. On Redis, two instances that take back the same expired lease announce it
//! once.
//!
//! Leases here last a few hundred milliseconds (the HTTP layer's floor of a second is the
//! route's, not the store's), and waiting for one to run out polls the store.

use std::collections::HashSet;
use std::time::Duration;

use backflow::Config;
use backflow::metrics::Metrics;
use backflow::queue::limits::{BatchSize, Delay, ErrorText, IdempotencyKey, LeaseId, LeaseLength};
use backflow::queue::record::{AckOutcome, LeasedTask, StateName, Transition};
use backflow::queue::{Fingerprint, NackRequest, QueueError, QueueStore};
use futures_util::future::join_all;
use uuid::Uuid;

use super::Backend;
use super::queue::{drain, task, task_with};
use crate::common::eventually;
use crate::common::redis::{RedisServer, unique_prefix};

contract!(every backend:
    a_leased_task_is_hidden_and_its_acknowledgement_removes_it_for_good,
    leases_and_acknowledgements_report_their_transitions,
    an_expired_lease_returns_the_task_at_its_place_and_fences_its_worker,
    the_last_attempt_that_runs_out_dead_letters_the_task,
    a_nack_backs_off_and_the_last_one_dead_letters,
    a_delayed_task_is_hidden_until_its_time,
    an_extended_lease_outlives_its_first_end,
    dead_letters_are_paged_retried_at_their_place_and_deleted,
    an_idempotency_key_answers_its_first_answer_again,
    concurrent_leases_take_each_task_once,
);
contract!(embedded, redis: a_failed_lease_or_acknowledgement_changes_nothing);
contract!(redis: two_instances_take_back_an_expired_lease_once);

/// Leases that run out quickly.
const SHORT: Duration = Duration::from_millis(300);

fn short() -> LeaseLength {
    LeaseLength::unchecked(SHORT)
}

fn long() -> LeaseLength {
    LeaseLength::unchecked(Duration::from_secs(60))
}

async fn lease(queue: &dyn QueueStore, count: usize, length: LeaseLength) -> Vec<LeasedTask> {
    let count = BatchSize::new(count).expect("in range");
    queue
        .lease(count, length)
        .await
        .expect("leased")
        .answer
        .tasks
}

async fn ack(queue: &dyn QueueStore, leased: &LeasedTask) -> AckOutcome {
    let outcomes = queue
        .ack(vec![(leased.task.id, leased.lease)])
        .await
        .expect("answered");
    outcomes.answer[0]
}

async fn nack(queue: &dyn QueueStore, leased: &LeasedTask, delay: Option<u64>) -> StateName {
    let request = NackRequest {
        id: leased.task.id,
        lease: leased.lease,
        delay: delay.map(|ms| Delay::from_millis(ms).expect("in range")),
        error: Some(ErrorText::parse("boom".to_owned()).expect("short")),
        jitter: 0.0,
    };
    queue.nack(request).await.expect("nacked").answer.state
}

/// Leases one task, polling until one is available (a delay or a lease running out).
async fn lease_when_due(queue: &dyn QueueStore) -> LeasedTask {
    eventually("a task is available again", || async {
        lease(queue, 1, long()).await.pop()
    })
    .await
}

async fn enqueue(queue: &dyn QueueStore, text: &str, priority: i64) -> Uuid {
    queue
        .enqueue(task(text, priority))
        .await
        .expect("room")
        .answer
        .enqueued
        .task
        .id
}

async fn a_leased_task_is_hidden_and_its_acknowledgement_removes_it_for_good(backend: Backend) {
    let subject = backend.open(&[]).await;
    let queue = &*subject.stores.queue;
    let first = enqueue(queue, "first", 1).await;
    enqueue(queue, "second", 2).await;
    let leased = lease(queue, 1, long()).await.remove(0);
    assert_eq!((leased.task.id, leased.attempt), (first, 1));
    let status = queue.status().await.expect("status");
    assert_eq!((status.size, status.leased), (1, 1));
    assert_eq!(
        status.next.map(|t| t.task.to_string()).as_deref(),
        Some("second")
    );
    assert_eq!(
        queue.get(first).await.expect("read").map(|v| v.state),
        Some(StateName::Leased)
    );
    let stranger = LeasedTask {
        lease: LeaseId::random(),
        ..leased.clone()
    };
    assert_eq!(ack(queue, &stranger).await, AckOutcome::LeaseLost);
    assert_eq!(ack(queue, &leased).await, AckOutcome::Acked);
    assert_eq!(ack(queue, &leased).await, AckOutcome::AlreadyAcked);
    let unknown = LeasedTask {
        task: task("never enqueued", 1).task,
        ..leased.clone()
    };
    assert_eq!(ack(queue, &unknown).await, AckOutcome::NotFound);
    assert_eq!(queue.get(first).await.expect("read"), None);
    assert_eq!(drain(queue).await, ["second"]);
}

/// The transitions a lease and an acknowledgement report are what their events announce.
async fn leases_and_acknowledgements_report_their_transitions(backend: Backend) {
    let subject = backend.open(&[]).await;
    let queue = &*subject.stores.queue;
    let first = enqueue(queue, "first", 1).await;
    let second = enqueue(queue, "second", 2).await;
    let outcome = queue
        .lease(BatchSize::new(3).expect("in range"), long())
        .await
        .expect("leased");
    let leased = outcome.answer.tasks;
    let ids: Vec<Uuid> = leased.iter().map(|t| t.task.id).collect();
    assert_eq!(ids, [first, second]);
    let announced: Vec<LeasedTask> = outcome
        .transitions
        .into_iter()
        .map(|transition| match transition {
            Transition::Leased(task) => task,
            other => panic!("a lease reported {other:?}"),
        })
        .collect();
    assert_eq!(announced, leased);

    let acks = queue
        .ack(vec![
            (first, leased[0].lease),
            (second, LeaseId::random()),
            (first, leased[0].lease),
        ])
        .await
        .expect("answered");
    assert_eq!(
        acks.answer,
        [
            AckOutcome::Acked,
            AckOutcome::LeaseLost,
            AckOutcome::AlreadyAcked
        ]
    );
    match &acks.transitions[..] {
        [Transition::Acked { task, attempt: 1 }] => assert_eq!(task, &leased[0].task),
        other => panic!("the acknowledgements reported {other:?}"),
    }
}

async fn an_expired_lease_returns_the_task_at_its_place_and_fences_its_worker(backend: Backend) {
    let subject = backend.open(&[]).await;
    let queue = &*subject.stores.queue;
    let stalled = enqueue(queue, "stalled", 1).await;
    let first = lease(queue, 1, short()).await.remove(0);
    enqueue(queue, "newer", 1).await;
    tokio::time::sleep(SHORT * 2).await;
    let again = lease(queue, 1, long()).await.remove(0);
    assert_eq!(
        (again.task.id, again.attempt),
        (stalled, 2),
        "ahead of the newer task of its priority, one attempt spent"
    );
    assert_eq!(
        ack(queue, &first).await,
        AckOutcome::LeaseLost,
        "the worker whose lease ran out can no longer complete it"
    );
    assert_eq!(ack(queue, &again).await, AckOutcome::Acked);
}

async fn the_last_attempt_that_runs_out_dead_letters_the_task(backend: Backend) {
    let subject = backend.open(&[]).await;
    let queue = &*subject.stores.queue;
    let enqueued = queue
        .enqueue(task_with("once", 1, 0, 1))
        .await
        .expect("room");
    let id = enqueued.answer.enqueued.task.id;
    lease(queue, 1, short()).await;
    let transitions = eventually("the expired lease is taken back", || async {
        let reaped = queue.reap().await.expect("reaped").transitions;
        (!reaped.is_empty()).then_some(reaped)
    })
    .await;
    assert!(
        matches!(transitions[..], [Transition::Dead { attempt: 1, .. }]),
        "{transitions:?}"
    );
    let view = queue.get(id).await.expect("read").expect("kept");
    assert_eq!(view.state, StateName::Dead);
    assert!(view.last_error.is_some(), "the task says why it died");
    assert_eq!(queue.status().await.expect("status").dead, 1);
    assert!(lease(queue, 1, long()).await.is_empty());
}

async fn a_nack_backs_off_and_the_last_one_dead_letters(backend: Backend) {
    let subject = backend
        .open(&[
            ("QUEUE_RETRY_BASE_MS", "400"),
            ("QUEUE_RETRY_MAX_MS", "400"),
        ])
        .await;
    let queue = &*subject.stores.queue;
    queue
        .enqueue(task_with("flaky", 1, 0, 3))
        .await
        .expect("room");
    let leased = lease(queue, 1, long()).await.remove(0);
    assert_eq!(nack(queue, &leased, None).await, StateName::Delayed);
    assert!(
        lease(queue, 1, long()).await.is_empty(),
        "backing off: the task waits"
    );
    let second = lease_when_due(queue).await;
    assert_eq!(second.attempt, 2);
    assert_eq!(nack(queue, &second, Some(0)).await, StateName::Queued);
    let third = lease(queue, 1, long()).await.remove(0);
    assert_eq!(nack(queue, &third, None).await, StateName::Dead);
    let view = queue.get(third.task.id).await.expect("read").expect("kept");
    assert_eq!(
        view.last_error.map(|e| e.as_str().to_owned()).as_deref(),
        Some("boom")
    );
    let late = NackRequest {
        id: third.task.id,
        lease: third.lease,
        delay: None,
        error: None,
        jitter: 0.0,
    };
    assert_eq!(queue.nack(late).await.err(), Some(QueueError::LeaseLost));
}

async fn a_delayed_task_is_hidden_until_its_time(backend: Backend) {
    let subject = backend.open(&[]).await;
    let queue = &*subject.stores.queue;
    let enqueued = queue
        .enqueue(task_with("later", 1, 300, 5))
        .await
        .expect("room")
        .answer
        .enqueued;
    assert_eq!(enqueued.state, StateName::Delayed);
    assert!(enqueued.available_at_ms >= enqueued.task.enqueued_at_ms + 300);
    let status = queue.status().await.expect("status");
    assert_eq!((status.size, status.delayed), (0, 1));
    assert!(queue.dequeue().await.expect("dequeued").answer.is_none());
    let taken = eventually("the delay is over", || async {
        queue.dequeue().await.expect("dequeued").answer
    })
    .await;
    assert_eq!(taken.task.id, enqueued.task.id);
}

async fn an_extended_lease_outlives_its_first_end(backend: Backend) {
    let subject = backend.open(&[]).await;
    let queue = &*subject.stores.queue;
    enqueue(queue, "long job", 1).await;
    let leased = lease(queue, 1, short()).await.remove(0);
    let end = queue
        .extend(leased.task.id, leased.lease, long())
        .await
        .expect("a live lease");
    assert!(end > leased.expires_ms);
    tokio::time::sleep(SHORT * 2).await;
    queue.reap().await.expect("reaped");
    assert!(lease(queue, 1, long()).await.is_empty(), "still leased");
    assert_eq!(ack(queue, &leased).await, AckOutcome::Acked);
    assert_eq!(
        queue
            .extend(leased.task.id, leased.lease, long())
            .await
            .err(),
        Some(QueueError::TaskNotFound)
    );
}

async fn dead_letters_are_paged_retried_at_their_place_and_deleted(backend: Backend) {
    let subject = backend.open(&[]).await;
    let queue = &*subject.stores.queue;
    let mut ids = Vec::new();
    for text in ["d1", "d2", "d3"] {
        let enqueued = queue.enqueue(task_with(text, 5, 0, 1)).await.expect("room");
        ids.push(enqueued.answer.enqueued.task.id);
    }
    for leased in lease(queue, 3, long()).await {
        assert_eq!(nack(queue, &leased, None).await, StateName::Dead);
    }
    enqueue(queue, "fresh", 5).await;
    let page = queue.dead(2, None).await.expect("listed");
    let listed: Vec<Uuid> = page.tasks.iter().map(|t| t.task.id).collect();
    assert_eq!(listed, ids[..2], "oldest first");
    assert_eq!(page.next, Some(ids[1]));
    let rest = queue.dead(2, page.next).await.expect("listed");
    assert_eq!(
        (rest.tasks.len(), rest.next),
        (1, None),
        "the last page has no next"
    );
    assert_eq!(
        queue.dead(2, Some(Uuid::new_v4())).await.err(),
        Some(QueueError::UnknownCursor)
    );
    let retried = queue.retry_dead(ids[1]).await.expect("dead").answer;
    assert_eq!((retried.state, retried.attempt), (StateName::Queued, 0));
    assert_eq!(drain(queue).await, ["d2", "fresh"], "at its original place");
    queue.delete_dead(ids[0]).await.expect("dead");
    assert_eq!(queue.get(ids[0]).await.expect("read"), None);
    assert_eq!(
        queue.delete_dead(ids[0]).await.err(),
        Some(QueueError::TaskNotFound)
    );
    assert_eq!(
        queue.retry_dead(ids[2]).await.map(|o| o.answer.state),
        Ok(StateName::Queued)
    );
}

async fn an_idempotency_key_answers_its_first_answer_again(backend: Backend) {
    let subject = backend.open(&[]).await;
    let queue = &*subject.stores.queue;
    let key = IdempotencyKey::parse(b"order-42").expect("valid");
    let keyed = |text: &str| {
        let mut new = task(text, 1);
        let fingerprint = Fingerprint::of(
            &new.task.task,
            new.task.priority,
            new.delay,
            new.max_attempts,
        );
        new.key = Some((key.clone(), fingerprint));
        new
    };
    let first = queue.enqueue(keyed("pay")).await.expect("room").answer;
    assert!(!first.replayed);
    let again = queue.enqueue(keyed("pay")).await.expect("replayed").answer;
    assert!(again.replayed);
    assert_eq!(
        again.enqueued, first.enqueued,
        "the same answer, the same id"
    );
    assert_eq!(drain(queue).await, ["pay"], "added once");
    assert_eq!(
        queue.enqueue(keyed("refund")).await.err(),
        Some(QueueError::KeyReused)
    );
    let replayed_after_dequeue = queue.enqueue(keyed("pay")).await.expect("replayed").answer;
    assert!(
        replayed_after_dequeue.replayed,
        "remembered even once the task is gone"
    );
}

async fn concurrent_leases_take_each_task_once(backend: Backend) {
    const TASKS: usize = 120;
    let subject = backend.open(&[]).await;
    for n in 0..TASKS {
        enqueue(&*subject.stores.queue, &format!("t{n}"), (n % 3) as i64).await;
    }
    let takers = (0..6).map(|_| {
        let queue = subject.stores.queue.clone();
        tokio::spawn(async move {
            let mut taken = Vec::new();
            loop {
                let batch = lease(&*queue, 7, long()).await;
                if batch.is_empty() {
                    return taken;
                }
                taken.extend(batch.into_iter().map(|t| t.task.id));
            }
        })
    });
    let taken: Vec<Uuid> = join_all(takers)
        .await
        .into_iter()
        .flat_map(|taker| taker.expect("a taker ends without panicking"))
        .collect();
    let distinct: HashSet<&Uuid> = taken.iter().collect();
    assert_eq!(taken.len(), TASKS, "every task was leased");
    assert_eq!(distinct.len(), TASKS, "none twice");
    assert_eq!(
        subject.stores.queue.status().await.expect("status").leased,
        TASKS
    );
}

async fn a_failed_lease_or_acknowledgement_changes_nothing(backend: Backend) {
    let mut subject = backend.open(&[]).await;
    enqueue(&*subject.stores.queue, "leased", 1).await;
    enqueue(&*subject.stores.queue, "queued", 2).await;
    let leased = lease(&*subject.stores.queue, 1, long()).await.remove(0);

    subject.fail();
    let queue = &*subject.stores.queue;
    assert!(matches!(
        queue.lease(BatchSize::ONE, long()).await,
        Err(QueueError::Store(_))
    ));
    assert!(matches!(
        queue.ack(vec![(leased.task.id, leased.lease)]).await,
        Err(QueueError::Store(_))
    ));

    subject.recover().await;
    let queue = &*subject.stores.queue;
    let status = queue.status().await.expect("status");
    assert_eq!((status.size, status.leased), (1, 1));
    assert_eq!(
        ack(queue, &leased).await,
        AckOutcome::Acked,
        "the lease is still held"
    );
    assert_eq!(drain(queue).await, ["queued"]);
}

async fn two_instances_take_back_an_expired_lease_once(_backend: Backend) {
    let server = RedisServer::start().await;
    let url = server.url();
    let prefix = unique_prefix("reap-once");
    let open = || {
        let config = Config::from_pairs([
            ("STORE", "redis"),
            ("REDIS_URL", url.as_str()),
            ("REDIS_PREFIX", prefix.as_str()),
        ])
        .expect("valid settings");
        backflow::store::redis::open(&config, &Metrics::new()).expect("the Redis store opens")
    };
    let (one, two) = (open(), open());
    for n in 0..20 {
        enqueue(&*one.queue, &format!("t{n}"), 1).await;
    }
    lease(&*one.queue, 20, short()).await;
    tokio::time::sleep(SHORT * 2).await;
    let reapers = [one.queue.clone(), two.queue.clone()].map(|queue| {
        tokio::spawn(async move {
            let mut expired = 0;
            for _ in 0..5 {
                let reaped = queue.reap().await.expect("reaped").transitions;
                expired += reaped
                    .iter()
                    .filter(|t| matches!(t, Transition::Expired { .. }))
                    .count();
            }
            expired
        })
    });
    let counts: Vec<usize> = join_all(reapers)
        .await
        .into_iter()
        .map(|count| count.expect("a reaper ends"))
        .collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        20,
        "each expiry once: {counts:?}"
    );
    assert_eq!(one.queue.status().await.expect("status").size, 20);
}
