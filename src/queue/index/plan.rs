//! What one operation changes: each touched task's record before and after, the
//! acknowledgements and the idempotency key to remember.

use uuid::Uuid;

use crate::queue::Fingerprint;
use crate::queue::limits::{IdempotencyKey, LeaseId};
use crate::queue::record::{Enqueued, TaskRecord};

/// One task's change in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: Uuid,
    /// `None`: a new task.
    pub before: Option<TaskRecord>,
    /// `None`: the task leaves the queue (dequeued, acknowledged, deleted).
    pub after: Option<TaskRecord>,
}

/// An acknowledgement remembered until its lease would have run out, so a repeat is answered
/// `AlreadyAcked` rather than `NotFound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    pub id: Uuid,
    pub lease: LeaseId,
    pub until_ms: u64,
}

/// An idempotency key remembered with the answer it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub answer: Enqueued,
    pub expires_ms: u64,
}

/// What one operation changes, for the store to record and then [`QueueIndex::settle`].
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub(super) changes: Vec<Change>,
    pub(super) tombstones: Vec<Tombstone>,
    pub(super) key: Option<Box<KeyRecord>>,
    /// Tasks this plan makes available now, for the long polls waiting.
    pub(super) available: usize,
    /// Acknowledgements and keys that expired before this time may be forgotten by the record.
    pub forget_before_ms: u64,
}

impl Plan {
    /// The tasks changed, each once, in the order first touched.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The acknowledgements to remember.
    pub fn tombstones(&self) -> &[Tombstone] {
        &self.tombstones
    }

    /// The idempotency key to remember.
    pub fn key(&self) -> Option<&KeyRecord> {
        self.key.as_deref()
    }

    /// Whether there is anything to record.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.tombstones.is_empty() && self.key.is_none()
    }
}

impl Plan {
    pub(super) fn new_tasks(&self) -> usize {
        self.changes.iter().filter(|c| c.before.is_none()).count()
    }
}
