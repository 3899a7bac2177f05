//! The ordered sets of the index, and the draft an operation changes them through.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use crate::queue::limits::{ErrorText, IdempotencyKey, LeaseId};
use crate::queue::record::{DeathCause, Enqueued, StateName, TaskRecord, TaskState, Transition};
use crate::queue::{Fingerprint, QueueError};

use super::{Change, Plan, Prepared, REAP_BATCH, Tombstone};

/// The error text of a task whose last lease ran out.
const LEASE_EXPIRED: &str = "the lease ran out before the task was acknowledged";

/// A task and whether it is pending.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) record: TaskRecord,
    pub(super) pending: bool,
}

#[derive(Debug)]
pub(super) struct KeyEntry {
    pub(super) fingerprint: Fingerprint,
    /// `None` while the first request with this key is being recorded.
    pub(super) answer: Option<Enqueued>,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) tasks: HashMap<Uuid, Entry>,
    pub(super) ready: BTreeMap<(i64, u64), Uuid>,
    pub(super) delayed: BTreeMap<(u64, u64), Uuid>,
    pub(super) leased: BTreeMap<(u64, u64), Uuid>,
    pub(super) dead: BTreeMap<u64, Uuid>,
    pub(super) acked: HashMap<Uuid, Tombstone>,
    pub(super) acked_by_end: BTreeSet<(u64, Uuid)>,
    pub(super) keys: HashMap<IdempotencyKey, KeyEntry>,
    pub(super) keys_by_end: BTreeSet<(u64, IdempotencyKey)>,
    pub(super) next_seq: u64,
    /// New tasks being recorded.
    pub(super) reserved: usize,
}

impl Inner {
    /// Puts `record` in the ordered set of its state.
    pub(super) fn place(&mut self, record: &TaskRecord) {
        let id = record.task.id;
        let seq = record.seq;
        match record.state {
            TaskState::Queued => self.ready.insert((record.task.priority.get(), seq), id),
            TaskState::Delayed { until_ms } => self.delayed.insert((until_ms, seq), id),
            TaskState::Leased { expires_ms, .. } => self.leased.insert((expires_ms, seq), id),
            TaskState::Dead { .. } => self.dead.insert(seq, id),
        };
    }

    /// Takes `record` out of the ordered set of its state.
    pub(super) fn unplace(&mut self, record: &TaskRecord) {
        let seq = record.seq;
        match record.state {
            TaskState::Queued => self.ready.remove(&(record.task.priority.get(), seq)),
            TaskState::Delayed { until_ms } => self.delayed.remove(&(until_ms, seq)),
            TaskState::Leased { expires_ms, .. } => self.leased.remove(&(expires_ms, seq)),
            TaskState::Dead { .. } => self.dead.remove(&seq),
        };
    }

    /// Delays that are over become queued: a past delay means queued, so nothing is recorded.
    pub(super) fn promote_due(&mut self, now_ms: u64) {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let id = entry.remove();
            if let Some(task) = self.tasks.get_mut(&id) {
                task.record.state = TaskState::Queued;
                let key = (task.record.task.priority.get(), task.record.seq);
                self.ready.insert(key, id);
            }
        }
    }

    /// When the next delay is over or the next lease runs out.
    pub(super) fn next_due(&self) -> Option<u64> {
        let delayed = self.delayed.first_key_value().map(|((at, _), _)| *at);
        let leased = self.leased.first_key_value().map(|((at, _), _)| *at);
        delayed.into_iter().chain(leased).min()
    }

    pub(super) fn remember_ack(&mut self, tombstone: Tombstone) {
        self.acked_by_end.insert((tombstone.until_ms, tombstone.id));
        self.acked.insert(tombstone.id, tombstone);
    }
}

/// An operation under way: the index's state as the operation changes it, and the plan that
/// records each change.
pub(super) struct Draft<'a> {
    pub(super) inner: &'a mut Inner,
    pub(super) now_ms: u64,
    pub(super) plan: Plan,
    /// Index in `plan.changes` of each task touched.
    pub(super) touched: HashMap<Uuid, usize>,
    pub(super) transitions: Vec<Transition>,
}

impl<'a> Draft<'a> {
    pub(super) fn new(inner: &'a mut Inner, now_ms: u64) -> Self {
        Self {
            inner,
            now_ms,
            plan: Plan {
                forget_before_ms: now_ms,
                ..Plan::default()
            },
            touched: HashMap::new(),
            transitions: Vec::new(),
        }
    }

    /// The record of `id` as this operation sees it (`None` once removed or if unknown).
    pub(super) fn current(&self, id: Uuid) -> Option<&TaskRecord> {
        match self.touched.get(&id) {
            Some(&at) => self.plan.changes[at].after.as_ref(),
            None => self.inner.tasks.get(&id).map(|entry| &entry.record),
        }
    }

    /// The record of `id`, which the caller knows is there.
    pub(super) fn record(&self, id: Uuid) -> &TaskRecord {
        self.current(id)
            .expect("an id taken from an ordered set is a task")
    }

    /// The record of `id` if it is leased by `lease` and the lease runs; else why not.
    pub(super) fn leased_by(&self, id: Uuid, lease: LeaseId) -> Result<&TaskRecord, QueueError> {
        let record = self.current(id).ok_or(QueueError::TaskNotFound)?;
        match record.state {
            TaskState::Leased {
                lease: held,
                expires_ms,
            } if held == lease && expires_ms > self.now_ms => Ok(record),
            _ => Err(QueueError::LeaseLost),
        }
    }

    /// The record of `id` if it is dead-lettered.
    pub(super) fn dead(&self, id: Uuid) -> Result<&TaskRecord, QueueError> {
        match self.current(id) {
            Some(record) if matches!(record.state, TaskState::Dead { .. }) => Ok(record),
            _ => Err(QueueError::TaskNotFound),
        }
    }

    /// The acknowledgement of `id`, remembered or made by this operation.
    pub(super) fn tombstone(&self, id: Uuid) -> Option<Tombstone> {
        self.plan
            .tombstones
            .iter()
            .find(|t| t.id == id)
            .or_else(|| self.inner.acked.get(&id))
            .copied()
    }

    /// Replaces the record of an existing task.
    pub(super) fn set(&mut self, record: TaskRecord) {
        let id = record.task.id;
        let current = self.record(id).clone();
        self.inner.unplace(&current);
        self.inner.place(&record);
        if record.state.name(self.now_ms) == StateName::Queued
            && current.state.name(self.now_ms) != StateName::Queued
        {
            self.plan.available += 1;
        }
        self.log(id, Some(current), Some(record));
    }

    /// Adds a new task.
    pub(super) fn insert(&mut self, record: TaskRecord) {
        if record.state == TaskState::Queued {
            self.plan.available += 1;
        }
        self.inner.place(&record);
        self.log(record.task.id, None, Some(record));
    }

    /// Removes a task; returns its record.
    pub(super) fn remove(&mut self, id: Uuid) -> TaskRecord {
        let current = self.record(id).clone();
        self.inner.unplace(&current);
        self.log(id, Some(current.clone()), None);
        current
    }

    /// Records a change of `id`, merged with an earlier change of the same task.
    pub(super) fn log(&mut self, id: Uuid, before: Option<TaskRecord>, after: Option<TaskRecord>) {
        match self.touched.get(&id) {
            Some(&at) => self.plan.changes[at].after = after,
            None => {
                self.touched.insert(id, self.plan.changes.len());
                self.plan.changes.push(Change { id, before, after });
            }
        }
    }

    /// Lets delays that are over become queued and takes back leases that ran out (a batch of
    /// them); answers whether more ran out.
    pub(super) fn catch_up(&mut self) -> bool {
        self.inner.promote_due(self.now_ms);
        let expired: Vec<Uuid> = self
            .inner
            .leased
            .range(..=(self.now_ms, u64::MAX))
            .take(REAP_BATCH + 1)
            .map(|(_, id)| *id)
            .collect();
        let more = expired.len() > REAP_BATCH;
        for id in expired.into_iter().take(REAP_BATCH) {
            let mut record = self.record(id).clone();
            let task = record.task.clone();
            let attempt = record.attempt;
            if record.has_attempts_left() {
                record.state = TaskState::Queued;
                self.transitions.push(Transition::Expired { task, attempt });
            } else {
                record.state = TaskState::Dead { at_ms: self.now_ms };
                record.last_error = Some(ErrorText::fixed(LEASE_EXPIRED));
                self.transitions.push(Transition::Dead {
                    task,
                    attempt,
                    cause: DeathCause::Expired,
                });
            }
            self.set(record);
        }
        more
    }

    /// Forgets acknowledgements and idempotency keys that expired.
    pub(super) fn forget_expired(&mut self) {
        let now = self.now_ms;
        while let Some(&(until, id)) = self.inner.acked_by_end.first() {
            if until > now {
                break;
            }
            self.inner.acked_by_end.pop_first();
            self.inner.acked.remove(&id);
        }
        while let Some((until, _)) = self.inner.keys_by_end.first() {
            if *until > now {
                break;
            }
            if let Some((_, key)) = self.inner.keys_by_end.pop_first() {
                self.inner.keys.remove(&key);
            }
        }
    }

    /// Makes every touched task pending (out of the ordered sets, shown as it was) and hands
    /// over the plan.
    pub(super) fn finish<T>(self, answer: T) -> Prepared<T> {
        let Self {
            inner,
            plan,
            transitions,
            ..
        } = self;
        for change in &plan.changes {
            if let Some(after) = &change.after {
                inner.unplace(after);
            }
            match change.before {
                Some(_) => {
                    if let Some(entry) = inner.tasks.get_mut(&change.id) {
                        entry.pending = true;
                    }
                }
                None => inner.reserved += 1,
            }
        }
        Prepared::Ready {
            plan,
            answer,
            transitions,
        }
    }
}
