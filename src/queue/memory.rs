//! The queue of `STORE=memory`: the heap alone, nothing recorded. A restart starts empty.

use futures_util::future::{self, BoxFuture};

use super::heap::TaskHeap;
use super::{Dequeued, Enqueued, QueueError, QueueStatus, QueueStore, QueuedTask};

/// A bounded priority queue held in this process only.
#[derive(Debug)]
pub struct MemoryQueue {
    heap: TaskHeap,
}

impl MemoryQueue {
    /// An empty queue holding at most `capacity` tasks.
    pub fn new(capacity: usize) -> Self {
        Self {
            heap: TaskHeap::new(capacity),
        }
    }

    /// Adds `task`, or refuses it when the queue is full.
    pub fn push(&self, task: QueuedTask) -> Result<Enqueued, QueueError> {
        // The stored copy shares the text with the answer: cloning copies a pointer, not bytes.
        let queue_size = self.heap.push(task.clone())?;
        Ok(Enqueued { task, queue_size })
    }

    /// Removes the next task.
    pub fn pop(&self) -> Option<Dequeued> {
        self.heap.pop().map(|(entry, queue_size)| Dequeued {
            task: entry.task,
            queue_size,
        })
    }
}

impl QueueStore for MemoryQueue {
    fn enqueue(&self, task: QueuedTask) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(future::ready(self.push(task)))
    }

    fn dequeue(&self) -> BoxFuture<'_, Result<Option<Dequeued>, QueueError>> {
        Box::pin(future::ready(Ok(self.pop())))
    }

    fn status(&self) -> BoxFuture<'_, Result<QueueStatus, QueueError>> {
        Box::pin(future::ready(Ok(self.heap.peek())))
    }

    fn size(&self) -> usize {
        self.heap.len()
    }
}
