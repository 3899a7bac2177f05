//! [`TaskQueue`]: the queue as the handlers see it.
//!
//! It asks the configured [`QueueStore`] for each change and then announces every transition
//! the store reports (`queue.enqueued`, `queue.leased`, `queue.expired`, ...) on the event bus,
//! so every caller emits the same events whichever store answers, and an expiry is announced
//! by the instance that handled it. It also waits on behalf of long polls, and
//! [`run_reaper`] takes back expired leases when no request does.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use super::limits::{
    BatchSize, Delay, ErrorText, IdempotencyKey, LeaseId, LeaseLength, MaxAttempts, Wait,
};
use super::record::{
    AckOutcome, DeadPage, DeathCause, Dequeued, EnqueueOutcome, LeaseBatch, Nacked, Outcome,
    QueueStatus, RetryCause, TaskView, Transition,
};
use super::{
    Fingerprint, NackRequest, NewTask, Priority, QueueError, QueueStore, QueuedTask, TaskText,
};
use crate::clock;
use crate::events::{self, EventBus, Level, NewEvent};
use crate::shutdown::Shutdown;

/// Longest a long poll waits without looking at the queue again, whatever it was told: a guard
/// against a wake-up that went to a poll whose client left.
const RECHECK: Duration = Duration::from_secs(1);

/// What a request that leaves a value out gets (`QUEUE_LEASE_MS`, `QUEUE_MAX_ATTEMPTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDefaults {
    pub lease: LeaseLength,
    pub max_attempts: MaxAttempts,
}

/// The priority queue and its leases, each change announced on the event bus.
#[derive(Clone)]
pub struct TaskQueue {
    store: Arc<dyn QueueStore>,
    events: Arc<dyn EventBus>,
    defaults: QueueDefaults,
    shutdown: Shutdown,
}

impl std::fmt::Debug for TaskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskQueue")
            .field("size", &self.store.size())
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl TaskQueue {
    /// The queue kept in `store`, announcing its changes on `events`; long polls end when
    /// `shutdown` fires.
    pub fn new(
        store: Arc<dyn QueueStore>,
        events: Arc<dyn EventBus>,
        defaults: QueueDefaults,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            store,
            events,
            defaults,
            shutdown,
        }
    }

    /// What requests that leave a value out get.
    pub fn defaults(&self) -> QueueDefaults {
        self.defaults
    }

    /// Adds a task (or answers again the first request with the same `key` and the same
    /// request).
    pub async fn enqueue(
        &self,
        task: TaskText,
        priority: Priority,
        delay: Delay,
        max_attempts: Option<MaxAttempts>,
        key: Option<IdempotencyKey>,
    ) -> Result<EnqueueOutcome, QueueError> {
        let max_attempts = max_attempts.unwrap_or(self.defaults.max_attempts);
        let key = key.map(|key| (key, Fingerprint::of(&task, priority, delay, max_attempts)));
        let new = NewTask {
            task: QueuedTask::new(task, priority),
            delay,
            max_attempts,
            key,
        };
        let outcome = self.store.enqueue(new).await?;
        Ok(self.announced(outcome).await)
    }

    /// Removes the next task for good; `None` when none is available.
    pub async fn dequeue(&self) -> Result<Option<Dequeued>, QueueError> {
        let outcome = self.store.dequeue().await?;
        Ok(self.announced(outcome).await)
    }

    /// The size, the next task and the count of each state.
    pub async fn status(&self) -> Result<QueueStatus, QueueError> {
        self.store.status().await
    }

    /// Leases up to `count` tasks for `length`; when none is available, waits up to `wait` for
    /// one (an enqueue, a retry or an expired lease on any instance wakes it), then answers
    /// what it got, possibly nothing. A stop of the server ends the wait at once.
    pub async fn lease(
        &self,
        count: BatchSize,
        length: LeaseLength,
        wait: Wait,
    ) -> Result<LeaseBatch, QueueError> {
        let deadline = Instant::now() + wait.duration();
        loop {
            // Listening before looking: a task that arrives in between still wakes this poll.
            let woken = self.store.wakeups().listen();
            let outcome = self.store.lease(count, length).await?;
            let batch = self.announced(outcome).await;
            let now = Instant::now();
            if !batch.tasks.is_empty() || now >= deadline || self.shutdown.is_triggered() {
                return Ok(batch);
            }
            let due = batch.next_due_ms.map(|at_ms| {
                now + Duration::from_millis(at_ms.saturating_sub(clock::unix_millis()))
            });
            let until = due
                .map_or(deadline, |due| due.min(deadline))
                .min(now + RECHECK);
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep_until(until) => {}
                () = self.shutdown.wait() => {}
            }
        }
    }

    /// Acknowledges one delivery.
    pub async fn ack(&self, id: Uuid, lease: LeaseId) -> Result<AckOutcome, QueueError> {
        let outcomes = self.ack_all(vec![(id, lease)]).await?;
        Ok(outcomes.into_iter().next().unwrap_or(AckOutcome::NotFound))
    }

    /// Acknowledges each delivery, answering each in order.
    pub async fn ack_all(&self, acks: Vec<(Uuid, LeaseId)>) -> Result<Vec<AckOutcome>, QueueError> {
        let outcome = self.store.ack(acks).await?;
        Ok(self.announced(outcome).await)
    }

    /// Gives a delivery back: retried after `delay` (the back-off when `None`), or
    /// dead-lettered when it was the last allowed.
    pub async fn nack(
        &self,
        id: Uuid,
        lease: LeaseId,
        delay: Option<Delay>,
        error: Option<ErrorText>,
    ) -> Result<Nacked, QueueError> {
        let nack = NackRequest {
            id,
            lease,
            delay,
            error,
            jitter: rand::random::<f64>(),
        };
        let outcome = self.store.nack(nack).await?;
        Ok(self.announced(outcome).await)
    }

    /// Extends a live lease to `length` from now; answers when it now runs out.
    pub async fn extend(
        &self,
        id: Uuid,
        lease: LeaseId,
        length: LeaseLength,
    ) -> Result<u64, QueueError> {
        self.store.extend(id, lease, length).await
    }

    /// The task `id`, if the queue still holds it.
    pub async fn get(&self, id: Uuid) -> Result<Option<TaskView>, QueueError> {
        self.store.get(id).await
    }

    /// A page of the dead-letter list.
    pub async fn dead(&self, limit: usize, after: Option<Uuid>) -> Result<DeadPage, QueueError> {
        self.store.dead(limit, after).await
    }

    /// Queues a dead-lettered task again with its attempts reset.
    pub async fn retry_dead(&self, id: Uuid) -> Result<TaskView, QueueError> {
        let outcome = self.store.retry_dead(id).await?;
        Ok(self.announced(outcome).await)
    }

    /// Deletes a dead-lettered task.
    pub async fn delete_dead(&self, id: Uuid) -> Result<(), QueueError> {
        let outcome = self.store.delete_dead(id).await?;
        self.announced(outcome).await;
        Ok(())
    }

    /// Takes back leases that ran out; answers whether more are left.
    pub async fn reap(&self) -> Result<bool, QueueError> {
        let outcome = self.store.reap().await?;
        Ok(self.announced(outcome).await)
    }

    /// Tasks held, whatever their state, as last known (for the gauge).
    pub fn size(&self) -> usize {
        self.store.size()
    }

    /// Announces the transitions of `outcome`, in order, and returns its answer. The changes
    /// are made already: an event that cannot be published is logged, and the answer stands.
    async fn announced<T>(&self, outcome: Outcome<T>) -> T {
        let Outcome {
            answer,
            transitions,
        } = outcome;
        if !transitions.is_empty() {
            let events = transitions.into_iter().map(event_of).collect();
            events::announce_all(&*self.events, events).await;
        }
        answer
    }
}

/// Takes back expired leases every `interval` until `shutdown`, whether or not any request
/// comes: an expiry is announced, and the task delivered again, even on an idle server. With
/// several instances on one Redis, whichever instance sees an expiry first handles it, once.
pub async fn run_reaper(queue: TaskQueue, interval: Duration, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = ticker.tick() => {}
        }
        loop {
            match queue.reap().await {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => {
                    tracing::warn!(%err, "expired leases could not be taken back");
                    break;
                }
            }
        }
    }
}

/// The event announcing `transition`. The task's id goes in `taskId`: `id` is the event's own
/// number, the one `Last-Event-ID` refers to.
fn event_of(transition: Transition) -> NewEvent {
    let of = |name: &'static str, level: Level, verb: &str, task: &QueuedTask| {
        NewEvent::app(name, level, format_args!("{verb}: {}", task.task))
            .with("taskId", task.id)
            .with("task", &task.task)
            .with("priority", task.priority)
    };
    match transition {
        Transition::Enqueued(enqueued) => {
            let event = of(
                "queue.enqueued",
                Level::Info,
                "Task enqueued",
                &enqueued.task,
            )
            .with("queueSize", enqueued.queue_size)
            .with("state", enqueued.state.as_str());
            if enqueued.available_at_ms > enqueued.task.enqueued_at_ms {
                event.with("availableAt", enqueued.available_at_ms)
            } else {
                event
            }
        }
        Transition::Dequeued(dequeued) => of(
            "queue.dequeued",
            Level::Info,
            "Task dequeued",
            &dequeued.task,
        )
        .with("queueSize", dequeued.queue_size),
        Transition::Leased(leased) => of("queue.leased", Level::Info, "Task leased", &leased.task)
            .with("attempt", leased.attempt)
            .with("maxAttempts", leased.max_attempts.get())
            .with("leaseExpiresAt", leased.expires_ms),
        Transition::Acked { task, attempt } => {
            of("queue.acked", Level::Success, "Task acknowledged", &task).with("attempt", attempt)
        }
        Transition::Retried {
            task,
            attempt,
            available_at_ms,
            cause,
        } => of("queue.retried", Level::Warning, "Task queued again", &task)
            .with("attempt", attempt)
            .with("availableAt", available_at_ms)
            .with(
                "cause",
                match cause {
                    RetryCause::Nack => "nack",
                    RetryCause::DeadLetter => "dead_letter",
                },
            ),
        Transition::Expired { task, attempt } => {
            of("queue.expired", Level::Warning, "Lease expired", &task).with("attempt", attempt)
        }
        Transition::Dead {
            task,
            attempt,
            cause,
        } => of("queue.dead", Level::Error, "Task dead-lettered", &task)
            .with("attempt", attempt)
            .with(
                "cause",
                match cause {
                    DeathCause::Nack => "nack",
                    DeathCause::Expired => "expired",
                },
            ),
        Transition::Deleted { task } => of(
            "queue.deleted",
            Level::Info,
            "Dead-lettered task deleted",
            &task,
        ),
    }
}
