//! The priority queue and its reliable delivery: lower numbers leave first, equal priorities in
//! arrival order; a task is either taken for good (`/dequeue`, at most once) or leased to a
//! worker, which acknowledges it when done (at least once, acknowledged exactly once).
//!
//! - [`task`] and [`limits`]: the values a queue holds and the bounds of each, parsed at the
//!   edge into types that cannot be wrong;
//! - [`record`]: a task's states (queued, delayed, leased, dead) and what operations answer;
//! - [`QueueStore`]: where the queue lives, one implementation per `STORE`;
//! - [`index`]: the in-process state the memory and embedded stores answer from, and
//!   [`indexed`]: the store trait over it, for whatever records its changes;
//! - [`TaskQueue`] ([`service`]): what the handlers call; it announces every transition on the
//!   event bus, waits for tasks on behalf of long polls, and takes back expired leases.
//!
//! # Why boxed futures rather than sync methods or `async fn`
//! A store that writes to disk or to the network must await, so the trait's operations return
//! futures: sync methods would force it to block a runtime thread. `AppState` holds the store
//! as `Arc<dyn QueueStore>`, and an `async fn` in a trait is not object-safe, so each method
//! returns a [`BoxFuture`] (what the `async-trait` macro would generate, written out without
//! the dependency). For the in-memory store the future is already complete when returned.

pub mod backoff;
pub mod index;
pub mod indexed;
pub mod limits;
pub mod record;
mod service;
mod task;

use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use uuid::Uuid;

use crate::fault::StoreError;
use backoff::RetryPolicy;
use limits::{BatchSize, Delay, ErrorText, IdempotencyKey, LeaseId, LeaseLength, MaxAttempts};
use record::{AckOutcome, DeadPage, Nacked, Outcome, TaskView};

pub use indexed::MemoryQueue;
pub use record::{Dequeued, EnqueueOutcome, Enqueued, LeaseBatch, QueueStatus};
pub use service::{QueueDefaults, TaskQueue, run_reaper};
pub use task::{InvalidPriority, InvalidTaskText, MAX_TASK_CHARS, Priority, QueuedTask, TaskText};

/// How a store keeps its queue: capacity, back-off, idempotency keys. From `QUEUE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Tasks held at most, whatever their state (`QUEUE_CAPACITY`).
    pub capacity: usize,
    /// The back-off of nacked tasks.
    pub retry: RetryPolicy,
    /// How long an idempotency key is remembered, in ms.
    pub idempotency_ttl_ms: u64,
    /// Idempotency keys remembered at most.
    pub idempotency_max_keys: usize,
}

/// A digest of what an enqueue asked for, so a repeat of its `Idempotency-Key` with another
/// body is told apart from a retry of the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of an enqueue of `task` at `priority`, delayed by `delay`, allowed
    /// `max_attempts` deliveries (after defaults are applied, so an explicit default and an
    /// omitted field are the same request).
    pub fn of(
        task: &TaskText,
        priority: Priority,
        delay: Delay,
        max_attempts: MaxAttempts,
    ) -> Self {
        let mut hash = Sha256::new();
        hash.update(priority.get().to_be_bytes());
        hash.update(delay.as_millis().to_be_bytes());
        hash.update(max_attempts.get().to_be_bytes());
        hash.update(task.as_str().as_bytes());
        Self(hash.finalize().into())
    }

    /// Lower-case hexadecimal, as the Redis store keeps it.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A task to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// What, at which priority, with its id and enqueue time.
    pub task: QueuedTask,
    /// How long it stays invisible.
    pub delay: Delay,
    /// Deliveries allowed.
    pub max_attempts: MaxAttempts,
    /// The request's `Idempotency-Key` and body fingerprint.
    pub key: Option<(IdempotencyKey, Fingerprint)>,
}

/// A nack: give a delivery back.
#[derive(Debug, Clone, PartialEq)]
pub struct NackRequest {
    pub id: Uuid,
    pub lease: LeaseId,
    /// The delay before the next delivery; the back-off when `None`.
    pub delay: Option<Delay>,
    /// What went wrong, kept as the task's `lastError`.
    pub error: Option<ErrorText>,
    /// The back-off's random draw, in `[0, 1)`.
    pub jitter: f64,
}

/// Why a queue operation failed; in every case nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue holds `capacity` tasks (or more, after restoring a larger record).
    #[error("queue is full ({capacity} tasks)")]
    Full { capacity: usize },
    /// No task has this id (in the state the operation needs).
    #[error("no such task")]
    TaskNotFound,
    /// The lease ran out or a later delivery superseded it.
    #[error("the lease is no longer held")]
    LeaseLost,
    /// The idempotency key was used with another request.
    #[error("the idempotency key was used with another request")]
    KeyReused,
    /// The first request with this idempotency key is still being recorded.
    #[error("a request with this idempotency key is in flight")]
    KeyInUse,
    /// `capacity` idempotency keys are remembered.
    #[error("too many idempotency keys are remembered ({capacity})")]
    KeysFull { capacity: usize },
    /// The page cursor names no task.
    #[error("the cursor names no task")]
    UnknownCursor,
    /// The store could not record the change.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What long polls wait on: notified once for each task that becomes available.
///
/// A waiter that is notified and goes away without taking a task passes its notification on to
/// the next waiter (tokio's `notify_one` semantics), so a task never sits unnoticed while a
/// poll waits; long polls still look again at least every second, as a guard.
#[derive(Debug, Clone, Default)]
pub struct Wakeups(Arc<Notify>);

impl Wakeups {
    /// Most waiters woken for one change: a change that frees a thousand tasks at once wakes
    /// every poll that could use them, and the rest find them when they look.
    const MAX_WOKEN: usize = 1024;

    /// Wakes up to `tasks` waiting polls.
    pub fn notify(&self, tasks: usize) {
        for _ in 0..tasks.min(Self::MAX_WOKEN) {
            self.0.notify_one();
        }
    }

    /// A registration: completes once a task may have become available after this call.
    pub fn listen(&self) -> Pin<Box<OwnedNotified>> {
        let mut notified = Box::pin(Arc::clone(&self.0).notified_owned());
        notified.as_mut().enable();
        notified
    }
}

/// Where the queue lives. An operation that returns `Ok` is recorded as durably as the store
/// promises; one that returns `Err` changed nothing. Stores read their own clock (the Redis
/// store the Redis server's, so that every instance agrees on when a lease runs out).
pub trait QueueStore: Send + Sync {
    /// Adds a task, or answers again the first request with the same idempotency key.
    fn enqueue(&self, new: NewTask) -> BoxFuture<'_, Result<Outcome<EnqueueOutcome>, QueueError>>;

    /// Removes and returns the next task for good; `None` when none is available.
    fn dequeue(&self) -> BoxFuture<'_, Result<Outcome<Option<Dequeued>>, QueueError>>;

    /// The size, the next task and the count of each state, without changing anything.
    fn status(&self) -> BoxFuture<'_, Result<QueueStatus, QueueError>>;

    /// Leases up to `count` available tasks in queue order, each for `length`.
    fn lease(
        &self,
        count: BatchSize,
        length: LeaseLength,
    ) -> BoxFuture<'_, Result<Outcome<LeaseBatch>, QueueError>>;

    /// Acknowledges each `(task, lease)`, answering each in order.
    fn ack(
        &self,
        acks: Vec<(Uuid, LeaseId)>,
    ) -> BoxFuture<'_, Result<Outcome<Vec<AckOutcome>>, QueueError>>;

    /// Gives a delivery back, to be retried or dead-lettered.
    fn nack(&self, nack: NackRequest) -> BoxFuture<'_, Result<Outcome<Nacked>, QueueError>>;

    /// Extends a live lease to `length` from now; answers when it now runs out.
    fn extend(
        &self,
        id: Uuid,
        lease: LeaseId,
        length: LeaseLength,
    ) -> BoxFuture<'_, Result<u64, QueueError>>;

    /// The task `id`; `None` once acknowledged, dequeued or deleted, or if never enqueued.
    fn get(&self, id: Uuid) -> BoxFuture<'_, Result<Option<TaskView>, QueueError>>;

    /// Up to `limit` dead-lettered tasks in arrival order, after the task `after`.
    fn dead(
        &self,
        limit: usize,
        after: Option<Uuid>,
    ) -> BoxFuture<'_, Result<DeadPage, QueueError>>;

    /// Queues a dead-lettered task again, at its place, with its attempts reset.
    fn retry_dead(&self, id: Uuid) -> BoxFuture<'_, Result<Outcome<TaskView>, QueueError>>;

    /// Deletes a dead-lettered task.
    fn delete_dead(&self, id: Uuid) -> BoxFuture<'_, Result<Outcome<()>, QueueError>>;

    /// Takes back leases that ran out and forgets what expired; answers whether more is left
    /// to take back than one call takes.
    fn reap(&self) -> BoxFuture<'_, Result<Outcome<bool>, QueueError>>;

    /// What long polls wait on.
    fn wakeups(&self) -> &Wakeups;

    /// Tasks held, whatever their state, without I/O: for the `queue_size` gauge. A networked
    /// store reports what it last observed.
    fn size(&self) -> usize;
}

#[cfg(test)]
mod tests;
