//! The in-memory [`TaskQueue`]: a binary heap behind a mutex, snapshotted to disk on shutdown.
//!
//! Each entry carries an arrival sequence number, and the heap orders by (priority, sequence),
//! so equal priorities leave first-in first-out and enqueue and dequeue stay O(log n). The
//! critical section is a capacity check plus a push or a pop: the entry (id, timestamp, text)
//! is built before the lock is taken and nothing is serialized under it. The only allocation
//! that can happen there is the heap's amortized growth, bounded by `QUEUE_CAPACITY`.
//!
//! The snapshot lists the tasks in dequeue order; reading it back assigns fresh sequence numbers
//! in that order, which preserves FIFO among equal priorities without storing the numbers.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures_util::future::{self, BoxFuture};
use serde::{Deserialize, Serialize};

use super::{Dequeued, Enqueued, Priority, QueueError, QueueStatus, QueuedTask, TaskQueue};
use crate::snapshot;

/// Name of the snapshot file in `DATA_DIR`.
pub const SNAPSHOT_FILE: &str = "queue.json";

/// Format version written in the snapshot; a file with another version is ignored.
const SNAPSHOT_VERSION: u32 = 1;

/// A bounded priority queue held in this process.
#[derive(Debug)]
pub struct MemoryQueue {
    capacity: usize,
    heap: Mutex<Heap>,
}

#[derive(Debug, Default)]
struct Heap {
    entries: BinaryHeap<Entry>,
    next_seq: u64,
}

/// A queued task and its arrival number.
#[derive(Debug)]
struct Entry {
    seq: u64,
    task: QueuedTask,
}

impl Entry {
    fn key(&self) -> (Priority, u64) {
        (self.task.priority, self.seq)
    }
}

impl Ord for Entry {
    /// Reversed, because `BinaryHeap` pops the greatest entry and we want the smallest key.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

/// The file written to `DATA_DIR`.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// In dequeue order.
    tasks: Vec<QueuedTask>,
}

impl MemoryQueue {
    /// An empty queue holding at most `capacity` tasks.
    pub fn new(capacity: usize) -> Self {
        Self::from_ordered(capacity, Vec::new())
    }

    /// A queue holding `tasks`, which are taken to be in arrival order: among equal priorities,
    /// earlier elements leave first.
    ///
    /// More than `capacity` tasks are all kept (nothing already accepted is dropped); enqueues are
    /// refused until dequeues bring the size back under the cap.
    pub fn from_ordered(capacity: usize, tasks: Vec<QueuedTask>) -> Self {
        let entries: Vec<Entry> = tasks
            .into_iter()
            .zip(0..)
            .map(|(task, seq)| Entry { seq, task })
            .collect();
        let next_seq = entries.len() as u64;
        Self {
            capacity,
            heap: Mutex::new(Heap {
                entries: BinaryHeap::from(entries),
                next_seq,
            }),
        }
    }

    /// The queue saved in `dir` by [`TaskQueue::persist`], or an empty one when there is no
    /// usable snapshot (missing, unreadable, corrupt or of another version: logged, not fatal).
    pub async fn restore(dir: &Path, capacity: usize) -> Self {
        let Some(snapshot) = snapshot::load::<Snapshot>(dir, SNAPSHOT_FILE).await else {
            return Self::new(capacity);
        };
        if snapshot.version != SNAPSHOT_VERSION {
            tracing::warn!(
                version = snapshot.version,
                expected = SNAPSHOT_VERSION,
                "queue snapshot of an unknown version ignored, starting empty"
            );
            return Self::new(capacity);
        }
        let restored = snapshot.tasks.len();
        if restored > capacity {
            tracing::warn!(
                restored,
                capacity,
                "queue snapshot holds more tasks than QUEUE_CAPACITY; all kept, enqueues refused until it drains"
            );
        }
        tracing::info!(restored, "queue restored from snapshot");
        Self::from_ordered(capacity, snapshot.tasks)
    }

    /// The configured cap.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds `task`, or refuses it when the queue holds `capacity` tasks.
    pub fn push(&self, task: QueuedTask) -> Result<Enqueued, QueueError> {
        // The stored copy shares the text with the answer: cloning copies a pointer, not bytes.
        let answer = task.clone();
        let queue_size = {
            let mut heap = self.lock();
            if heap.entries.len() >= self.capacity {
                None
            } else {
                let seq = heap.next_seq;
                heap.next_seq += 1;
                heap.entries.push(Entry { seq, task });
                Some(heap.entries.len())
            }
        };
        match queue_size {
            Some(queue_size) => Ok(Enqueued {
                task: answer,
                queue_size,
            }),
            None => Err(QueueError::Full {
                capacity: self.capacity,
            }),
        }
    }

    /// Removes the task with the lowest priority number, earliest among equals.
    pub fn pop(&self) -> Option<Dequeued> {
        let mut heap = self.lock();
        let entry = heap.entries.pop()?;
        let queue_size = heap.entries.len();
        drop(heap);
        Some(Dequeued {
            task: entry.task,
            queue_size,
        })
    }

    /// The size and the next task, unchanged.
    pub fn peek(&self) -> QueueStatus {
        let heap = self.lock();
        QueueStatus {
            size: heap.entries.len(),
            next: heap.entries.peek().map(|entry| entry.task.clone()),
        }
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the queue holds no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every task, in the order they would be dequeued.
    pub fn tasks_in_order(&self) -> Vec<QueuedTask> {
        let mut entries: Vec<(Priority, u64, QueuedTask)> = self
            .lock()
            .entries
            .iter()
            .map(|entry| (entry.task.priority, entry.seq, entry.task.clone()))
            .collect();
        entries.sort_unstable_by_key(|(priority, seq, _)| (*priority, *seq));
        entries.into_iter().map(|(_, _, task)| task).collect()
    }

    /// The heap is left consistent even if a holder panicked (no operation can panic half-way
    /// through a push or pop), so a poisoned lock is safe to reuse.
    fn lock(&self) -> MutexGuard<'_, Heap> {
        self.heap.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TaskQueue for MemoryQueue {
    fn enqueue(&self, task: QueuedTask) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(future::ready(self.push(task)))
    }

    fn dequeue(&self) -> BoxFuture<'_, Result<Option<Dequeued>, QueueError>> {
        Box::pin(future::ready(Ok(self.pop())))
    }

    fn status(&self) -> BoxFuture<'_, Result<QueueStatus, QueueError>> {
        Box::pin(future::ready(Ok(self.peek())))
    }

    fn size(&self) -> usize {
        self.len()
    }

    fn persist<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            // Written even when empty, so an older snapshot is never restored again.
            let snapshot = Snapshot {
                version: SNAPSHOT_VERSION,
                tasks: self.tasks_in_order(),
            };
            let path = snapshot::save(dir, SNAPSHOT_FILE, &snapshot).await?;
            tracing::info!(tasks = snapshot.tasks.len(), path = %path.display(), "queue snapshot written");
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::queue::TaskText;

    fn task(text: &str, priority: i64) -> QueuedTask {
        QueuedTask::new(
            TaskText::parse(text.to_owned()).expect("valid text"),
            Priority::new(priority).expect("valid priority"),
        )
    }

    fn drain(queue: &MemoryQueue) -> Vec<String> {
        std::iter::from_fn(|| queue.pop())
            .map(|out| out.task.task.to_string())
            .collect()
    }

    #[test]
    fn lower_numbers_leave_first_and_equal_priorities_in_arrival_order() {
        let queue = MemoryQueue::new(10);
        for (text, priority) in [
            ("c1", 3),
            ("a1", 1),
            ("c2", 3),
            ("b", 2),
            ("a2", 1),
            ("neg", -5),
        ] {
            queue.push(task(text, priority)).expect("room");
        }
        assert_eq!(drain(&queue), ["neg", "a1", "a2", "b", "c1", "c2"]);
        assert!(queue.pop().is_none());
    }

    #[test]
    fn sizes_are_reported_after_each_operation() {
        let queue = MemoryQueue::new(10);
        assert_eq!(queue.push(task("a", 1)).unwrap().queue_size, 1);
        assert_eq!(queue.push(task("b", 0)).unwrap().queue_size, 2);
        let status = queue.peek();
        assert_eq!(status.size, 2);
        assert_eq!(
            status.next.map(|t| t.task.to_string()).as_deref(),
            Some("b")
        );
        assert_eq!(queue.pop().unwrap().queue_size, 1);
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn a_full_queue_refuses_until_a_task_leaves() {
        let queue = MemoryQueue::new(2);
        queue.push(task("a", 1)).unwrap();
        queue.push(task("b", 1)).unwrap();
        assert_eq!(
            queue.push(task("c", 0)).unwrap_err(),
            QueueError::Full { capacity: 2 }
        );
        queue.pop().unwrap();
        assert_eq!(queue.push(task("c", 0)).unwrap().queue_size, 2);
    }

    #[test]
    fn restored_tasks_keep_their_order_and_new_ones_come_after_equals() {
        let original = MemoryQueue::new(10);
        for (text, priority) in [("x1", 5), ("y", 1), ("x2", 5), ("x3", 5)] {
            original.push(task(text, priority)).unwrap();
        }
        let restored = MemoryQueue::from_ordered(10, original.tasks_in_order());
        restored.push(task("x4", 5)).unwrap();
        assert_eq!(drain(&restored), ["y", "x1", "x2", "x3", "x4"]);
    }

    #[test]
    fn an_oversized_restore_keeps_everything_and_refuses_new_tasks() {
        let tasks = vec![task("a", 1), task("b", 1), task("c", 1)];
        let queue = MemoryQueue::from_ordered(2, tasks);
        assert_eq!(queue.len(), 3);
        assert!(matches!(
            queue.push(task("d", 0)),
            Err(QueueError::Full { .. })
        ));
        queue.pop();
        queue.pop();
        assert!(queue.push(task("d", 0)).is_ok());
    }

    #[tokio::test]
    async fn snapshot_round_trip_keeps_ids_timestamps_and_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let original = MemoryQueue::new(10);
        for (text, priority) in [("b1", 2), ("a", 1), ("b2", 2)] {
            original.push(task(text, priority)).unwrap();
        }
        let expected = original.tasks_in_order();
        original.persist(dir.path()).await.expect("written");

        let restored = MemoryQueue::restore(dir.path(), 10).await;
        assert_eq!(restored.tasks_in_order(), expected);
    }

    #[tokio::test]
    async fn unusable_snapshots_start_an_empty_queue() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(MemoryQueue::restore(dir.path(), 10).await.is_empty());
        for bad in [
            "{not json",
            r#"{"version":2,"tasks":[]}"#,
            r#"{"version":1,"tasks":[{"id":"00000000-0000-4000-8000-000000000000","task":"","priority":1,"enqueuedAtMs":0}]}"#,
        ] {
            std::fs::write(dir.path().join(SNAPSHOT_FILE), bad).expect("write");
            assert!(
                MemoryQueue::restore(dir.path(), 10).await.is_empty(),
                "{bad}"
            );
        }
    }

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

    proptest! {
        /// The heap behaves like a vector kept sorted by (priority, arrival).
        #[test]
        fn matches_a_sorted_vector_model(ops in proptest::collection::vec(op(), 0..200), capacity in 1usize..20) {
            let queue = MemoryQueue::new(capacity);
            let mut model: Vec<(i64, usize, String)> = Vec::new();
            for (arrival, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Enqueue(priority) => {
                        let text = format!("t{arrival}");
                        let result = queue.push(task(&text, priority));
                        if model.len() >= capacity {
                            prop_assert_eq!(result, Err(QueueError::Full { capacity }));
                        } else {
                            model.push((priority, arrival, text));
                            model.sort();
                            prop_assert_eq!(result.map(|e| e.queue_size), Ok(model.len()));
                        }
                    }
                    Op::Dequeue => {
                        let expected = (!model.is_empty()).then(|| model.remove(0));
                        let got = queue.pop();
                        prop_assert_eq!(
                            got.as_ref().map(|d| (d.task.priority.get(), d.task.task.to_string(), d.queue_size)),
                            expected.map(|(p, _, text)| (p, text, model.len()))
                        );
                    }
                }
                let status = queue.peek();
                prop_assert_eq!(status.size, model.len());
                prop_assert_eq!(
                    status.next.map(|t| t.task.to_string()),
                    model.first().map(|(_, _, text)| text.clone())
                );
            }
        }
    }
}
