//! The priority queue: lower numbers leave first, equal priorities leave in arrival order.
//!
//! [`TaskQueue`] is the domain service the handlers call: it asks the configured
//! [`QueueStore`] to make the change and then announces it on the event bus
//! (`queue.enqueued`, `queue.dequeued`), so every caller emits the same events. The stores:
//! - [`MemoryQueue`] (`STORE=memory`): a [`TaskHeap`] and nothing else;
//! - the embedded store (`STORE=embedded`, in `src/store/embedded`): the same heap as the
//!   index that answers, with every change committed to SQLite before it is acknowledged.
//!
//! # Why boxed futures rather than sync methods or `async fn`
//! A store that writes to disk or to the network must await, so the trait's operations return
//! futures: sync methods would force it to block a runtime thread. `AppState` holds the store
//! as `Arc<dyn QueueStore>`, and an `async fn` in a trait is not object-safe, so each method
//! returns a [`BoxFuture`] (what the `async-trait` macro would generate, written out without
//! the dependency). For the in-memory store the future is already complete when returned.

mod heap;
mod memory;
mod task;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::events::{self, EventBus, Level, NewEvent};
use crate::fault::StoreError;

pub use heap::{Entry, TaskHeap};
pub use memory::MemoryQueue;
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

/// Why a queue operation failed; in either case nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue holds `capacity` tasks (or more, after restoring a larger record).
    #[error("queue is full ({capacity} tasks)")]
    Full { capacity: usize },
    /// The store could not record the change.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the queue lives. An operation that returns `Ok` is recorded as durably as the store
/// promises; one that returns `Err` changed nothing.
pub trait QueueStore: Send + Sync {
    /// Adds `task`, unless the queue is at capacity.
    fn enqueue(&self, task: QueuedTask) -> BoxFuture<'_, Result<Enqueued, QueueError>>;

    /// Removes and returns the next task; `None` when the queue is empty.
    fn dequeue(&self) -> BoxFuture<'_, Result<Option<Dequeued>, QueueError>>;

    /// The size and the next task, without removing it.
    fn status(&self) -> BoxFuture<'_, Result<QueueStatus, QueueError>>;

    /// Number of tasks, without I/O: for the `queue_size` gauge, read on every metrics scrape.
    /// A networked store reports the size it last observed.
    fn size(&self) -> usize;
}

/// The priority queue as the handlers see it: the store's operations, each announced on the
/// event bus once it is done.
#[derive(Clone)]
pub struct TaskQueue {
    store: Arc<dyn QueueStore>,
    events: Arc<dyn EventBus>,
}

impl std::fmt::Debug for TaskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskQueue")
            .field("size", &self.store.size())
            .finish_non_exhaustive()
    }
}

impl TaskQueue {
    /// The queue kept in `store`, announcing its changes on `events`.
    pub fn new(store: Arc<dyn QueueStore>, events: Arc<dyn EventBus>) -> Self {
        Self { store, events }
    }

    /// Adds a task and publishes `queue.enqueued`.
    pub async fn enqueue(
        &self,
        task: TaskText,
        priority: Priority,
    ) -> Result<Enqueued, QueueError> {
        let enqueued = self.store.enqueue(QueuedTask::new(task, priority)).await?;
        self.announce(
            "queue.enqueued",
            "Task enqueued",
            &enqueued.task,
            enqueued.queue_size,
        )
        .await;
        Ok(enqueued)
    }

    /// Removes the next task and publishes `queue.dequeued`; `None` when the queue is empty.
    pub async fn dequeue(&self) -> Result<Option<Dequeued>, QueueError> {
        let dequeued = self.store.dequeue().await?;
        if let Some(dequeued) = &dequeued {
            self.announce(
                "queue.dequeued",
                "Task dequeued",
                &dequeued.task,
                dequeued.queue_size,
            )
            .await;
        }
        Ok(dequeued)
    }

    /// The size and the next task.
    pub async fn status(&self) -> Result<QueueStatus, QueueError> {
        self.store.status().await
    }

    /// Number of tasks, as last known (for the gauge).
    pub fn size(&self) -> usize {
        self.store.size()
    }

    /// The task's id goes in `taskId`: `id` is the event's own number, the one `Last-Event-ID`
    /// refers to.
    async fn announce(&self, event: &'static str, message: &str, task: &QueuedTask, size: usize) {
        let event = NewEvent::app(event, Level::Info, format_args!("{message}: {}", task.task))
            .with("taskId", task.id)
            .with("task", &task.task)
            .with("priority", task.priority)
            .with("queueSize", size);
        events::announce(&*self.events, event).await;
    }
}
