//! What the queue knows about each task, what its operations answer, and the transitions they
//! report (which the service announces as events).
//!
//! A task lives in one [`TaskState`] at a time:
//!
//! ```text
//!            enqueue                 lease                 ack
//!   (new) ──────────► queued ◄──────────────► leased ─────────────► (gone)
//!            delayMs    ▲  ▲   lease runs out    │
//!   (new) ──► delayed ──┘  │   (attempts left)   │ nack (attempts left)
//!                ▲         │                     ▼
//!                └─────────┼──────────────── delayed (back-off)
//!                          │ retry               │ nack or lease runs out, no attempt left
//!                          └──── dead ◄──────────┘
//! ```
//!
//! Its arrival number (`seq`) never changes, so whenever it is queued again it takes its
//! original place: by priority, then arrival, ahead of tasks enqueued after it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::limits::{ErrorText, LeaseId, MaxAttempts};
use super::task::QueuedTask;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// Invisible until `until_ms` (a delayed enqueue, or a nack's back-off); queued from then on.
    Delayed {
        /// Milliseconds since the epoch.
        until_ms: u64,
    },
    /// Delivered to a worker, whose lease runs until `expires_ms`.
    Leased {
        /// This delivery's id; only it can acknowledge, nack or extend.
        lease: LeaseId,
        /// Milliseconds since the epoch.
        expires_ms: u64,
    },
    /// Out of attempts: kept until retried or deleted.
    Dead {
        /// When it died, in milliseconds since the epoch.
        at_ms: u64,
    },
}

/// A task's state as the API names it: `queued`, `delayed` (until its `availableAt`), `leased`
/// (until its `leaseExpiresAt`) or `dead` (out of attempts). A delay that is over is `queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateName {
    Queued,
    Delayed,
    Leased,
    Dead,
}

impl StateName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delayed => "delayed",
            Self::Leased => "leased",
            Self::Dead => "dead",
        }
    }
}

impl TaskState {
    /// The state's name at `now_ms`.
    pub fn name(self, now_ms: u64) -> StateName {
        match self {
            Self::Queued => StateName::Queued,
            Self::Delayed { until_ms } if until_ms <= now_ms => StateName::Queued,
            Self::Delayed { .. } => StateName::Delayed,
            Self::Leased { .. } => StateName::Leased,
            Self::Dead { .. } => StateName::Dead,
        }
    }
}

/// A task as every store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// Arrival number: unique, increasing, kept for the task's life.
    pub seq: u64,
    /// What it is.
    pub task: QueuedTask,
    /// Deliveries allowed before it is dead-lettered.
    pub max_attempts: MaxAttempts,
    /// Deliveries so far (a lease counts one, whether it ends in an ack, a nack or nothing).
    pub attempt: u32,
    pub state: TaskState,
    /// What the last failed delivery reported.
    pub last_error: Option<ErrorText>,
}

impl TaskRecord {
    /// A new task, queued or delayed until `available_at_ms`.
    pub fn new(
        seq: u64,
        task: QueuedTask,
        max_attempts: MaxAttempts,
        available_at_ms: Option<u64>,
    ) -> Self {
        Self {
            seq,
            task,
            max_attempts,
            attempt: 0,
            state: available_at_ms.map_or(TaskState::Queued, |until_ms| TaskState::Delayed {
                until_ms,
            }),
            last_error: None,
        }
    }

    /// Whether another delivery is allowed after the current one.
    pub fn has_attempts_left(&self) -> bool {
        self.attempt < self.max_attempts.get()
    }

    /// What `GET /tasks/{id}` shows at `now_ms`.
    pub fn view(&self, now_ms: u64) -> TaskView {
        let (available_at_ms, lease_expires_at_ms) = match self.state {
            TaskState::Delayed { until_ms } if until_ms > now_ms => (Some(until_ms), None),
            TaskState::Leased { expires_ms, .. } => (None, Some(expires_ms)),
            _ => (None, None),
        };
        TaskView {
            task: self.task.clone(),
            state: self.state.name(now_ms),
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            available_at_ms,
            lease_expires_at_ms,
            last_error: self.last_error.clone(),
        }
    }
}

/// A task as `GET /tasks/{id}` and the dead-letter list show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub task: QueuedTask,
    pub state: StateName,
    pub attempt: u32,
    pub max_attempts: MaxAttempts,
    /// When a delayed task becomes visible.
    pub available_at_ms: Option<u64>,
    /// When a leased task's lease runs out.
    pub lease_expires_at_ms: Option<u64>,
    pub last_error: Option<ErrorText>,
}

/// A task accepted by the queue, as its enqueue was answered (and is answered again to a repeat
/// of the same `Idempotency-Key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enqueued {
    /// The task as stored.
    pub task: QueuedTask,
    /// `queued` or `delayed`.
    pub state: StateName,
    /// When it becomes visible (its enqueue time when it is at once).
    pub available_at_ms: u64,
    /// Tasks the queue held once this one was added, whatever their state.
    pub queue_size: usize,
}

/// What an enqueue answered: the task just added, or the first answer to the same idempotency
/// key and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueOutcome {
    pub enqueued: Enqueued,
    /// `true` when this is the answer of an earlier request with the same key.
    pub replayed: bool,
}

/// The task that left the queue for good (`/dequeue`) and the number still available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dequeued {
    /// The task with the lowest priority number, earliest among equals.
    pub task: QueuedTask,
    /// Tasks still available now.
    pub queue_size: usize,
}

/// One delivery of a task to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedTask {
    pub task: QueuedTask,
    /// This delivery's number, from 1.
    pub attempt: u32,
    pub max_attempts: MaxAttempts,
    pub lease: LeaseId,
    pub expires_ms: u64,
}

/// What a lease took.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseBatch {
    /// In queue order; empty when nothing was available.
    pub tasks: Vec<LeasedTask>,
    /// Tasks still available now.
    pub queue_size: usize,
    /// When the next delayed task becomes visible or the next lease runs out, if the store
    /// knows: a long poll waits no longer than that.
    pub next_due_ms: Option<u64>,
}

/// The answer to one acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The task is gone for good.
    Acked,
    /// The same lease acknowledged it before, and that lease would still be running.
    AlreadyAcked,
    /// No such task (never enqueued, or acknowledged longer ago than its lease ran).
    NotFound,
    /// The lease ran out or another delivery superseded it: the task is not this worker's.
    LeaseLost,
}

/// Where a nacked task went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nacked {
    pub id: Uuid,
    /// `queued` (no delay), `delayed` (until `available_at_ms`) or `dead`.
    pub state: StateName,
    pub available_at_ms: Option<u64>,
}

/// A page of the dead-letter list, oldest (by arrival) first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeadPage {
    pub tasks: Vec<TaskView>,
    /// The id to pass as `after` for the next page, when there is one.
    pub next: Option<Uuid>,
}

/// What the queue holds, without changing it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueStatus {
    /// Tasks available now.
    pub size: usize,
    /// The task the next dequeue or lease would take.
    pub next: Option<QueuedTask>,
    /// Tasks waiting for their time.
    pub delayed: usize,
    /// Tasks delivered and not yet acknowledged.
    pub leased: usize,
    /// Dead-lettered tasks.
    pub dead: usize,
}

/// Why a task was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathCause {
    /// Its last allowed delivery was nacked.
    Nack,
    /// Its last allowed delivery's lease ran out.
    Expired,
}

/// Why a task went back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// Its delivery was nacked.
    Nack,
    /// It was taken out of the dead-letter list.
    DeadLetter,
}

/// One change a store made, in the order it made it: the service announces each as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Enqueued(Enqueued),
    Dequeued(Dequeued),
    Leased(LeasedTask),
    Acked {
        task: QueuedTask,
        attempt: u32,
    },
    Retried {
        task: QueuedTask,
        attempt: u32,
        available_at_ms: u64,
        cause: RetryCause,
    },
    Expired {
        task: QueuedTask,
        attempt: u32,
    },
    Dead {
        task: QueuedTask,
        attempt: u32,
        cause: DeathCause,
    },
    Deleted {
        task: QueuedTask,
    },
}

/// An operation's answer and the transitions it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<T> {
    pub answer: T,
    pub transitions: Vec<Transition>,
}

impl<T> Outcome<T> {
    /// An answer that changed nothing.
    pub fn quiet(answer: T) -> Self {
        Self {
            answer,
            transitions: Vec::new(),
        }
    }
}
