//! The in-memory index of the queue: a binary heap ordered by (priority, arrival).
//!
//! Each entry carries an arrival sequence number and the heap orders by (priority, sequence), so
//! equal priorities leave first-in first-out and every operation is O(log n). The critical
//! sections are a capacity check plus a push or a pop: the task (id, timestamp, shared text) is
//! built before the lock is taken and nothing is serialized under it.
//!
//! A durable store changes the heap only around its writes, in two steps, so that nothing a
//! client could see is ever missing from the record:
//! - an enqueue first [`reserve`](TaskHeap::reserve)s a slot and an arrival number, and the task
//!   enters the heap ([`fill`](TaskHeap::fill)) only once its write is committed, so no dequeue
//!   can hand out a task that a crash would take back; a failed write
//!   [`release`](TaskHeap::release)s the slot;
//! - a dequeue [`pop`](TaskHeap::pop)s at once, so no other dequeue can take the same task while
//!   its deletion is being committed; a failed write [`put_back`](TaskHeap::put_back)s the entry
//!   with its own arrival number, which restores the exact order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Priority, QueueError, QueueStatus, QueuedTask};

/// A queued task and its arrival number.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Arrival order: unique and increasing, kept by the durable store so a restart rebuilds the
    /// same order.
    pub seq: u64,
    pub task: QueuedTask,
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

/// A bounded priority queue held in this process.
#[derive(Debug)]
pub struct TaskHeap {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: BinaryHeap<Entry>,
    next_seq: u64,
    /// Slots taken by enqueues whose write is not committed yet.
    reserved: usize,
}

impl TaskHeap {
    /// An empty heap holding at most `capacity` tasks.
    pub fn new(capacity: usize) -> Self {
        Self::from_entries(capacity, Vec::new())
    }

    /// A heap holding `entries` (in any order: their arrival numbers decide).
    ///
    /// More than `capacity` entries are all kept (nothing already accepted is dropped); enqueues
    /// are refused until dequeues bring the size back under the cap.
    pub fn from_entries(capacity: usize, entries: Vec<Entry>) -> Self {
        let next_seq = entries.iter().map(|e| e.seq + 1).max().unwrap_or(0);
        Self {
            capacity,
            inner: Mutex::new(Inner {
                entries: BinaryHeap::from(entries),
                next_seq,
                reserved: 0,
            }),
        }
    }

    /// Adds `task` at once; returns the size after. For a store with nothing to record.
    pub fn push(&self, task: QueuedTask) -> Result<usize, QueueError> {
        let mut inner = self.lock();
        self.check_room(&inner)?;
        let seq = inner.take_seq();
        inner.entries.push(Entry { seq, task });
        Ok(inner.entries.len())
    }

    /// Takes a slot and the next arrival number for a task about to be recorded.
    pub fn reserve(&self) -> Result<u64, QueueError> {
        let mut inner = self.lock();
        self.check_room(&inner)?;
        inner.reserved += 1;
        Ok(inner.take_seq())
    }

    /// Adds a recorded entry in the slot [`reserve`](Self::reserve) took; returns the size after.
    pub fn fill(&self, entry: Entry) -> usize {
        let mut inner = self.lock();
        inner.reserved = inner.reserved.saturating_sub(1);
        inner.entries.push(entry);
        inner.entries.len()
    }

    /// Gives back a slot whose task could not be recorded.
    pub fn release(&self) {
        let mut inner = self.lock();
        inner.reserved = inner.reserved.saturating_sub(1);
    }

    /// Removes the entry with the lowest priority number, earliest among equals, and returns it
    /// with the size after.
    pub fn pop(&self) -> Option<(Entry, usize)> {
        let mut inner = self.lock();
        let entry = inner.entries.pop()?;
        Some((entry, inner.entries.len()))
    }

    /// Returns a popped entry whose removal could not be recorded, in its original place.
    pub fn put_back(&self, entry: Entry) {
        self.lock().entries.push(entry);
    }

    /// The size and the next task, unchanged.
    pub fn peek(&self) -> QueueStatus {
        let inner = self.lock();
        QueueStatus {
            size: inner.entries.len(),
            next: inner.entries.peek().map(|entry| entry.task.clone()),
        }
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the heap holds no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_room(&self, inner: &Inner) -> Result<(), QueueError> {
        if inner.entries.len() + inner.reserved >= self.capacity {
            Err(QueueError::Full {
                capacity: self.capacity,
            })
        } else {
            Ok(())
        }
    }

    /// The heap is left consistent even if a holder panicked (no operation can panic half-way
    /// through a push or pop), so a poisoned lock is safe to reuse.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::TaskText;

    fn task(text: &str, priority: i64) -> QueuedTask {
        QueuedTask::new(
            TaskText::parse(text.to_owned()).expect("valid text"),
            Priority::new(priority).expect("valid priority"),
        )
    }

    fn drain(heap: &TaskHeap) -> Vec<String> {
        std::iter::from_fn(|| heap.pop())
            .map(|(entry, _)| entry.task.task.to_string())
            .collect()
    }

    #[test]
    fn reserved_slots_count_against_the_cap_and_stay_invisible_until_filled() {
        let heap = TaskHeap::new(2);
        let first = heap.reserve().expect("room");
        let second = heap.reserve().expect("room");
        assert!(second > first, "arrival numbers increase");
        assert!(matches!(heap.reserve(), Err(QueueError::Full { .. })));
        assert!(
            heap.pop().is_none(),
            "nothing is visible before it is filled"
        );
        heap.release();
        assert_eq!(
            heap.fill(Entry {
                seq: first,
                task: task("a", 1)
            }),
            1
        );
        assert_eq!(heap.push(task("b", 1)), Ok(2));
        assert!(matches!(heap.reserve(), Err(QueueError::Full { .. })));
    }

    #[test]
    fn an_entry_put_back_regains_its_place() {
        let heap = TaskHeap::new(10);
        for (text, priority) in [("a1", 1), ("a2", 1), ("b", 2)] {
            heap.push(task(text, priority)).unwrap();
        }
        let (first, _) = heap.pop().expect("a task");
        heap.push(task("a3", 1)).unwrap();
        heap.put_back(first);
        assert_eq!(drain(&heap), ["a1", "a2", "a3", "b"]);
    }

    #[test]
    fn entries_rebuilt_from_a_record_keep_their_order_and_new_ones_come_after() {
        let original = TaskHeap::new(10);
        for (text, priority) in [("x1", 5), ("y", 1), ("x2", 5), ("x3", 5)] {
            original.push(task(text, priority)).unwrap();
        }
        let mut record: Vec<Entry> = std::iter::from_fn(|| original.pop())
            .map(|(entry, _)| entry)
            .collect();
        record.reverse();
        let rebuilt = TaskHeap::from_entries(10, record);
        rebuilt.push(task("x4", 5)).unwrap();
        assert_eq!(drain(&rebuilt), ["y", "x1", "x2", "x3", "x4"]);
    }

    #[test]
    fn an_oversized_rebuild_keeps_everything_and_refuses_new_tasks() {
        let entries = (0..3)
            .map(|seq| Entry {
                seq,
                task: task("t", 1),
            })
            .collect();
        let heap = TaskHeap::from_entries(2, entries);
        assert_eq!(heap.len(), 3);
        assert!(matches!(
            heap.push(task("d", 0)),
            Err(QueueError::Full { .. })
        ));
        heap.pop();
        heap.pop();
        assert!(heap.push(task("d", 0)).is_ok());
    }
}
