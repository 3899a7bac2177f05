//! The priority queue: lower numbers leave first, equal priorities leave in arrival order.
//!
//! Handlers talk to a [`TaskQueue`], the small trait a multi-instance deployment will implement
//! over Redis (a sorted set scored by priority and arrival). [`MemoryQueue`] is the default: a
//! `BinaryHeap` behind a mutex, O(log n) per operation, snapshotted to `DATA_DIR` on shutdown.
//!
//! # Why boxed futures rather than sync methods or `async fn`
//! A Redis store must await the network, so the trait's operations return futures: sync methods
//! would force it to block a runtime thread. `AppState` holds the store as `Arc<dyn TaskQueue>`,
//! and an `async fn` in a trait is not object-safe, so each method returns a [`BoxFuture`]
//! (what the `async-trait` macro would generate, written out without the dependency). For the
//! in-memory store the future is already complete when returned; the one small allocation it
//! costs happens outside the lock.

mod memory;
mod task;

use std::io;
use std::path::Path;

use futures_util::future::BoxFuture;

pub use memory::{MemoryQueue, SNAPSHOT_FILE};
pub use task::{InvalidPriority, InvalidTaskText, MAX_TASK_CHARS, Priority, QueuedTask, TaskText};

/// A task accepted by the queue and the queue's size just after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The task as stored.
    pub task: QueuedTask,
    /// Tasks in the queue once this one was added.
    pub queue_size: usize,
}

/// The task that left the queue and the queue's size just after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dequeued {
    /// The task with the lowest priority number, earliest among equals.
    pub task: QueuedTask,
    /// Tasks left in the queue.
    pub queue_size: usize,
}

/// What the queue holds, without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    /// Number of tasks.
    pub size: usize,
    /// The task the next dequeue would return.
    pub next: Option<QueuedTask>,
}

/// Why a queue operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue holds `capacity` tasks (or more, after restoring a larger snapshot).
    #[error("queue is full ({capacity} tasks)")]
    Full {
        /// The configured cap.
        capacity: usize,
    },
    /// The backing store could not be reached (a networked store; the in-memory one never fails).
    #[error("queue store unavailable: {0}")]
    Unavailable(String),
}

/// A priority queue of tasks shared by every request.
pub trait TaskQueue: Send + Sync {
    /// Adds `task`, unless the queue is at capacity.
    fn enqueue(&self, task: QueuedTask) -> BoxFuture<'_, Result<Enqueued, QueueError>>;

    /// Removes and returns the next task; `None` when the queue is empty.
    fn dequeue(&self) -> BoxFuture<'_, Result<Option<Dequeued>, QueueError>>;

    /// The size and the next task, without removing it.
    fn status(&self) -> BoxFuture<'_, Result<QueueStatus, QueueError>>;

    /// Number of tasks, without I/O: for the `queue_size` gauge, read on every metrics scrape.
    /// A networked store reports the size it last observed.
    fn size(&self) -> usize;

    /// Writes what must survive a restart into `dir`. A store that is durable by itself (Redis)
    /// has nothing to write.
    fn persist<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, io::Result<()>>;
}
