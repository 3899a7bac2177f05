//! The in-process state of the queue: every task in every state, ordered, behind one lock.
//!
//! Both in-process stores answer from this index: `STORE=memory` alone, `STORE=embedded` with
//! each change committed to SQLite first. Every operation happens in two steps, so that a
//! durable store never shows what a crash could take back:
//!
//! 1. **prepare** (under the lock): the operation reads the index and decides, writing what it
//!    changes into a [`Plan`] (each touched task's record before and after). When it is done,
//!    every touched task becomes *pending*: out of every ordered set, so no other operation can
//!    take, acknowledge or lease it, and shown as it was before to reads. A new task only takes
//!    a slot of the capacity.
//! 2. **settle** (under the lock, once the store has recorded the plan, or failed to): the
//!    records after the change replace the pending ones and take their places in the order; on
//!    failure the records before it are put back exactly where they were (each keeps its
//!    arrival number), so a failure changes nothing.
//!
//! An operation on a task that is pending waits for it to settle ([`Prepared::Busy`]) and tries
//! again. Nothing here does I/O or awaits: the critical sections are map and tree operations.
//!
//! Time only moves forward through the arguments (`now_ms`): every operation first lets the
//! delays that are over become queued (no write: a past delay means queued) and takes back the
//! leases that ran out (a write: it costs an attempt and is announced), at most [`REAP_BATCH`]
//! at a time, so the next task always comes in its original order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use uuid::Uuid;

use super::limits::{BatchSize, ErrorText, IdempotencyKey, LeaseId, LeaseLength};
use super::record::{
    AckOutcome, DeadPage, DeathCause, Dequeued, EnqueueOutcome, Enqueued, LeaseBatch, LeasedTask,
    Nacked, Outcome, QueueStatus, RetryCause, StateName, TaskRecord, TaskState, TaskView,
    Transition,
};
use super::{Fingerprint, NackRequest, NewTask, QueueError, QueueSettings, Wakeups};
use crate::clock;
use crate::fault::StoreError;

/// Most expired leases one operation takes back; the reaper takes the rest.
pub const REAP_BATCH: usize = 1024;

/// The error text of a task whose last lease ran out.
const LEASE_EXPIRED: &str = "the lease ran out before the task was acknowledged";

/// Runs an operation on `index`: prepares it (waiting for the tasks it needs while they are
/// pending), has `record` record the plan and settle it, then answers. `record` is not called
/// for a plan that changes nothing.
pub async fn drive<T, P, R, F>(
    index: &QueueIndex,
    mut prepare: P,
    record: R,
) -> Result<Outcome<T>, QueueError>
where
    P: FnMut(&QueueIndex, u64) -> Result<Prepared<T>, QueueError>,
    R: FnOnce(Plan) -> F,
    F: Future<Output = Result<(), StoreError>>,
{
    loop {
        match prepare(index, clock::unix_millis())? {
            Prepared::Busy(settled) => settled.await,
            Prepared::Ready {
                plan,
                answer,
                transitions,
            } => {
                if !plan.is_empty() {
                    record(plan).await?;
                }
                return Ok(Outcome {
                    answer,
                    transitions,
                });
            }
        }
    }
}

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
    changes: Vec<Change>,
    tombstones: Vec<Tombstone>,
    key: Option<Box<KeyRecord>>,
    /// Tasks this plan makes available now, for the long polls waiting.
    available: usize,
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

/// What a prepare decided.
pub enum Prepared<T> {
    /// Record the plan, settle it, then answer `answer` and announce `transitions`.
    Ready {
        plan: Plan,
        answer: T,
        transitions: Vec<Transition>,
    },
    /// A task it needs is pending: wait for this, then prepare again.
    Busy(Pin<Box<OwnedNotified>>),
}

/// A task and whether it is pending.
#[derive(Debug)]
struct Entry {
    record: TaskRecord,
    pending: bool,
}

#[derive(Debug)]
struct KeyEntry {
    fingerprint: Fingerprint,
    /// `None` while the first request with this key is being recorded.
    answer: Option<Enqueued>,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<Uuid, Entry>,
    ready: BTreeMap<(i64, u64), Uuid>,
    delayed: BTreeMap<(u64, u64), Uuid>,
    leased: BTreeMap<(u64, u64), Uuid>,
    dead: BTreeMap<u64, Uuid>,
    acked: HashMap<Uuid, Tombstone>,
    acked_by_end: BTreeSet<(u64, Uuid)>,
    keys: HashMap<IdempotencyKey, KeyEntry>,
    keys_by_end: BTreeSet<(u64, IdempotencyKey)>,
    next_seq: u64,
    /// New tasks being recorded.
    reserved: usize,
}

/// The queue's in-process state. See the module documentation.
#[derive(Debug)]
pub struct QueueIndex {
    settings: QueueSettings,
    inner: Mutex<Inner>,
    /// Notified whenever a plan settles, for operations that found a task pending.
    settled: Arc<Notify>,
    wakeups: Wakeups,
}

/// What the durable record held at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub tasks: Vec<TaskRecord>,
    pub tombstones: Vec<Tombstone>,
    pub keys: Vec<KeyRecord>,
}

impl QueueIndex {
    /// An empty index.
    pub fn new(settings: QueueSettings) -> Self {
        Self::from_snapshot(settings, Snapshot::default(), 0)
    }

    /// An index holding what a durable record held. Every task is kept, even past the capacity
    /// (they were acknowledged); acknowledgements and keys that expired before `now_ms` are not.
    pub fn from_snapshot(settings: QueueSettings, snapshot: Snapshot, now_ms: u64) -> Self {
        let mut inner = Inner {
            tasks: HashMap::with_capacity(snapshot.tasks.len()),
            ..Inner::default()
        };
        for record in snapshot.tasks {
            inner.next_seq = inner.next_seq.max(record.seq + 1);
            inner.place(&record);
            inner.tasks.insert(
                record.task.id,
                Entry {
                    record,
                    pending: false,
                },
            );
        }
        for tombstone in snapshot.tombstones {
            if tombstone.until_ms > now_ms {
                inner.remember_ack(tombstone);
            }
        }
        for key in snapshot.keys {
            if key.expires_ms > now_ms {
                inner.keys_by_end.insert((key.expires_ms, key.key.clone()));
                inner.keys.insert(
                    key.key,
                    KeyEntry {
                        fingerprint: key.fingerprint,
                        answer: Some(key.answer),
                    },
                );
            }
        }
        Self {
            settings,
            inner: Mutex::new(inner),
            settled: Arc::default(),
            wakeups: Wakeups::default(),
        }
    }

    /// The index's settings.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// What long polls wait on.
    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    /// Tasks held, whatever their state (for the gauge).
    pub fn len(&self) -> usize {
        self.lock().tasks.len()
    }

    /// Whether the index holds no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a task, or answers again the first request with the same idempotency key.
    pub fn prepare_enqueue(
        &self,
        new: &NewTask,
        now_ms: u64,
    ) -> Result<Prepared<EnqueueOutcome>, QueueError> {
        let mut inner = self.lock();
        let mut draft = Draft::new(&mut inner, now_ms);
        if let Some((key, fingerprint)) = &new.key {
            draft.forget_expired();
            match draft.inner.keys.get(key) {
                Some(entry) if entry.fingerprint != *fingerprint => {
                    return Err(QueueError::KeyReused);
                }
                Some(KeyEntry { answer: None, .. }) => return Err(QueueError::KeyInUse),
                Some(KeyEntry {
                    answer: Some(answer),
                    ..
                }) => {
                    return Ok(Prepared::Ready {
                        plan: Plan::default(),
                        answer: EnqueueOutcome {
                            enqueued: answer.clone(),
                            replayed: true,
                        },
                        transitions: Vec::new(),
                    });
                }
                None if draft.inner.keys.len() >= self.settings.idempotency_max_keys => {
                    return Err(QueueError::KeysFull {
                        capacity: self.settings.idempotency_max_keys,
                    });
                }
                None => {}
            }
        }
        let held = draft.inner.tasks.len() + draft.inner.reserved;
        if held >= self.settings.capacity {
            return Err(QueueError::Full {
                capacity: self.settings.capacity,
            });
        }
        draft.catch_up();
        let seq = draft.inner.next_seq;
        draft.inner.next_seq += 1;
        let available_at_ms = (!new.delay.is_zero()).then(|| now_ms + new.delay.as_millis());
        let record = TaskRecord::new(seq, new.task.clone(), new.max_attempts, available_at_ms);
        let state = record.state.name(now_ms);
        draft.insert(record);
        let enqueued = Enqueued {
            task: new.task.clone(),
            state,
            available_at_ms: available_at_ms.unwrap_or(new.task.enqueued_at_ms),
            queue_size: draft.inner.ready.len(),
        };
        if let Some((key, fingerprint)) = &new.key {
            let expires_ms = now_ms.saturating_add(self.settings.idempotency_ttl_ms);
            draft.inner.keys.insert(
                key.clone(),
                KeyEntry {
                    fingerprint: *fingerprint,
                    answer: None,
                },
            );
            draft.plan.key = Some(Box::new(KeyRecord {
                key: key.clone(),
                fingerprint: *fingerprint,
                answer: enqueued.clone(),
                expires_ms,
            }));
        }
        draft
            .transitions
            .push(Transition::Enqueued(enqueued.clone()));
        Ok(draft.finish(EnqueueOutcome {
            enqueued,
            replayed: false,
        }))
    }

    /// Takes the next task out of the queue for good (at most once).
    pub fn prepare_dequeue(&self, now_ms: u64) -> Prepared<Option<Dequeued>> {
        let mut inner = self.lock();
        let mut draft = Draft::new(&mut inner, now_ms);
        draft.catch_up();
        let Some((_, id)) = draft.inner.ready.first_key_value().map(|(k, v)| (*k, *v)) else {
            return draft.finish(None);
        };
        let record = draft.remove(id);
        let dequeued = Dequeued {
            task: record.task,
            queue_size: draft.inner.ready.len(),
        };
        draft
            .transitions
            .push(Transition::Dequeued(dequeued.clone()));
        draft.finish(Some(dequeued))
    }

    /// Leases up to `count` tasks, in queue order, for `length`.
    pub fn prepare_lease(
        &self,
        count: BatchSize,
        length: LeaseLength,
        now_ms: u64,
    ) -> Prepared<LeaseBatch> {
        let mut inner = self.lock();
        let mut draft = Draft::new(&mut inner, now_ms);
        draft.catch_up();
        let expires_ms = now_ms.saturating_add(length.as_millis());
        let mut tasks = Vec::new();
        while tasks.len() < count.get() {
            let Some(id) = draft.inner.ready.first_key_value().map(|(_, id)| *id) else {
                break;
            };
            let mut record = draft.record(id).clone();
            record.attempt += 1;
            let lease = LeaseId::random();
            record.state = TaskState::Leased { lease, expires_ms };
            let leased = LeasedTask {
                task: record.task.clone(),
                attempt: record.attempt,
                max_attempts: record.max_attempts,
                lease,
                expires_ms,
            };
            draft.set(record);
            draft.transitions.push(Transition::Leased(leased.clone()));
            tasks.push(leased);
        }
        let batch = LeaseBatch {
            tasks,
            queue_size: draft.inner.ready.len(),
            next_due_ms: draft.inner.next_due(),
        };
        draft.finish(batch)
    }

    /// Acknowledges each `(id, lease)`; a task acknowledged is gone for good.
    pub fn prepare_ack(&self, acks: &[(Uuid, LeaseId)], now_ms: u64) -> Prepared<Vec<AckOutcome>> {
        let mut inner = self.lock();
        if let Some(wait) = self.wait_for_any(&inner, acks.iter().map(|(id, _)| id)) {
            return wait;
        }
        let mut draft = Draft::new(&mut inner, now_ms);
        draft.catch_up();
        let mut outcomes = Vec::with_capacity(acks.len());
        for &(id, lease) in acks {
            let outcome = match draft.current(id).map(|record| record.state) {
                Some(TaskState::Leased {
                    lease: held,
                    expires_ms,
                }) if held == lease && expires_ms > now_ms => {
                    let record = draft.remove(id);
                    draft.plan.tombstones.push(Tombstone {
                        id,
                        lease,
                        until_ms: expires_ms,
                    });
                    draft.transitions.push(Transition::Acked {
                        task: record.task,
                        attempt: record.attempt,
                    });
                    AckOutcome::Acked
                }
                Some(_) => AckOutcome::LeaseLost,
                None => match draft.tombstone(id) {
                    Some(t) if t.lease == lease && t.until_ms > now_ms => AckOutcome::AlreadyAcked,
                    Some(_) => AckOutcome::LeaseLost,
                    None => AckOutcome::NotFound,
                },
            };
            outcomes.push(outcome);
        }
        draft.finish(outcomes)
    }

    /// Gives a delivery back: after a delay, or to the dead-letter list when it was the last.
    pub fn prepare_nack(
        &self,
        nack: &NackRequest,
        now_ms: u64,
    ) -> Result<Prepared<Nacked>, QueueError> {
        let mut inner = self.lock();
        if let Some(wait) = self.wait_for_any(&inner, [&nack.id]) {
            return Ok(wait);
        }
        let mut draft = Draft::new(&mut inner, now_ms);
        draft.catch_up();
        let mut record = draft.leased_by(nack.id, nack.lease)?.clone();
        if let Some(error) = &nack.error {
            record.last_error = Some(error.clone());
        }
        let task = record.task.clone();
        let attempt = record.attempt;
        let nacked = if record.has_attempts_left() {
            let delay = nack
                .delay
                .unwrap_or_else(|| self.settings.retry.delay(attempt, nack.jitter));
            let available_at_ms = now_ms + delay.as_millis();
            record.state = if delay.is_zero() {
                TaskState::Queued
            } else {
                TaskState::Delayed {
                    until_ms: available_at_ms,
                }
            };
            draft.transitions.push(Transition::Retried {
                task,
                attempt,
                available_at_ms,
                cause: RetryCause::Nack,
            });
            Nacked {
                id: nack.id,
                state: record.state.name(now_ms),
                available_at_ms: Some(available_at_ms),
            }
        } else {
            record.state = TaskState::Dead { at_ms: now_ms };
            draft.transitions.push(Transition::Dead {
                task,
                attempt,
                cause: DeathCause::Nack,
            });
            Nacked {
                id: nack.id,
                state: StateName::Dead,
                available_at_ms: None,
            }
        };
        draft.set(record);
        Ok(draft.finish(nacked))
    }

    /// Extends a live lease to `length` from now; answers the new end.
    pub fn prepare_extend(
        &self,
        id: Uuid,
        lease: LeaseId,
        length: LeaseLength,
        now_ms: u64,
    ) -> Result<Prepared<u64>, QueueError> {
        let mut inner = self.lock();
        if let Some(wait) = self.wait_for_any(&inner, [&id]) {
            return Ok(wait);
        }
        let mut draft = Draft::new(&mut inner, now_ms);
        draft.catch_up();
        let mut record = draft.leased_by(id, lease)?.clone();
        let expires_ms = now_ms.saturating_add(length.as_millis());
        record.state = TaskState::Leased { lease, expires_ms };
        draft.set(record);
        Ok(draft.finish(expires_ms))
    }

    /// Puts a dead-lettered task back in the queue, at its place, with its attempts reset.
    pub fn prepare_retry_dead(
        &self,
        id: Uuid,
        now_ms: u64,
    ) -> Result<Prepared<TaskView>, QueueError> {
        let mut inner = self.lock();
        if let Some(wait) = self.wait_for_any(&inner, [&id]) {
            return Ok(wait);
        }
        let mut draft = Draft::new(&mut inner, now_ms);
        draft.catch_up();
        let mut record = draft.dead(id)?.clone();
        record.attempt = 0;
        record.state = TaskState::Queued;
        draft.transitions.push(Transition::Retried {
            task: record.task.clone(),
            attempt: 0,
            available_at_ms: now_ms,
            cause: RetryCause::DeadLetter,
        });
        let view = record.view(now_ms);
        draft.set(record);
        Ok(draft.finish(view))
    }

    /// Removes a dead-lettered task for good.
    pub fn prepare_delete_dead(&self, id: Uuid, now_ms: u64) -> Result<Prepared<()>, QueueError> {
        let mut inner = self.lock();
        if let Some(wait) = self.wait_for_any(&inner, [&id]) {
            return Ok(wait);
        }
        let mut draft = Draft::new(&mut inner, now_ms);
        draft.catch_up();
        draft.dead(id)?;
        let record = draft.remove(id);
        draft
            .transitions
            .push(Transition::Deleted { task: record.task });
        Ok(draft.finish(()))
    }

    /// Takes back leases that ran out and forgets expired acknowledgements and keys; answers
    /// whether more leases ran out than one batch takes.
    pub fn prepare_reap(&self, now_ms: u64) -> Prepared<bool> {
        let mut inner = self.lock();
        let mut draft = Draft::new(&mut inner, now_ms);
        draft.forget_expired();
        let more = draft.catch_up();
        draft.finish(more)
    }

    /// Applies a prepared plan once the store recorded it (`recorded`), or undoes it.
    pub fn settle(&self, plan: Plan, recorded: bool) {
        let mut inner = self.lock();
        let mut made_available = 0;
        let new_tasks = plan.new_tasks();
        for change in plan.changes {
            match (recorded, change.before, change.after) {
                (true, _, Some(after)) => {
                    inner.place(&after);
                    let entry = inner.tasks.entry(change.id).or_insert(Entry {
                        record: after.clone(),
                        pending: false,
                    });
                    entry.record = after;
                    entry.pending = false;
                }
                (true, _, None) => {
                    inner.tasks.remove(&change.id);
                }
                (false, Some(before), _) => {
                    inner.place(&before);
                    if let Some(entry) = inner.tasks.get_mut(&change.id) {
                        entry.pending = false;
                    }
                }
                (false, None, _) => {}
            }
        }
        inner.reserved = inner.reserved.saturating_sub(new_tasks);
        if recorded {
            for tombstone in plan.tombstones {
                inner.remember_ack(tombstone);
            }
            made_available = plan.available;
        }
        if let Some(key) = plan.key.map(|key| *key) {
            if recorded {
                inner.keys_by_end.insert((key.expires_ms, key.key.clone()));
                if let Some(entry) = inner.keys.get_mut(&key.key) {
                    entry.answer = Some(key.answer);
                }
            } else {
                inner.keys.remove(&key.key);
            }
        }
        drop(inner);
        self.settled.notify_waiters();
        self.wakeups.notify(made_available);
    }

    /// The size, the next task and the count of each state, at `now_ms`.
    pub fn status(&self, now_ms: u64) -> QueueStatus {
        let mut inner = self.lock();
        inner.promote_due(now_ms);
        QueueStatus {
            size: inner.ready.len(),
            next: inner
                .ready
                .first_key_value()
                .and_then(|(_, id)| inner.tasks.get(id))
                .map(|entry| entry.record.task.clone()),
            delayed: inner.delayed.len(),
            leased: inner.leased.len(),
            dead: inner.dead.len(),
        }
    }

    /// The task `id` as it stands at `now_ms` (as last recorded, while a change is pending).
    pub fn get(&self, id: Uuid, now_ms: u64) -> Option<TaskView> {
        let inner = self.lock();
        inner.tasks.get(&id).map(|entry| entry.record.view(now_ms))
    }

    /// Up to `limit` dead-lettered tasks after `after`'s place in arrival order.
    pub fn dead_page(
        &self,
        limit: usize,
        after: Option<Uuid>,
        now_ms: u64,
    ) -> Result<DeadPage, QueueError> {
        let inner = self.lock();
        let start = match after {
            None => 0,
            Some(id) => {
                inner
                    .tasks
                    .get(&id)
                    .ok_or(QueueError::UnknownCursor)?
                    .record
                    .seq
                    + 1
            }
        };
        let mut page = inner
            .dead
            .range(start..)
            .map(|(_, id)| &inner.tasks[id].record);
        let tasks: Vec<TaskView> = page.by_ref().take(limit).map(|r| r.view(now_ms)).collect();
        let next = page.next().and(tasks.last()).map(|last| last.task.id);
        Ok(DeadPage { tasks, next })
    }

    /// `Busy` if any of `ids` is pending.
    fn wait_for_any<'a, T>(
        &self,
        inner: &Inner,
        ids: impl IntoIterator<Item = &'a Uuid>,
    ) -> Option<Prepared<T>> {
        let busy = ids
            .into_iter()
            .any(|id| inner.tasks.get(id).is_some_and(|entry| entry.pending));
        busy.then(|| {
            let mut notified = Box::pin(Arc::clone(&self.settled).notified_owned());
            // Registered before the lock is released, so a settle in between is not missed.
            notified.as_mut().enable();
            Prepared::Busy(notified)
        })
    }

    /// The heap is left consistent even if a holder panicked (no operation panics half-way),
    /// so a poisoned lock is safe to reuse.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Plan {
    fn new_tasks(&self) -> usize {
        self.changes.iter().filter(|c| c.before.is_none()).count()
    }
}

impl Inner {
    /// Puts `record` in the ordered set of its state.
    fn place(&mut self, record: &TaskRecord) {
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
    fn unplace(&mut self, record: &TaskRecord) {
        let seq = record.seq;
        match record.state {
            TaskState::Queued => self.ready.remove(&(record.task.priority.get(), seq)),
            TaskState::Delayed { until_ms } => self.delayed.remove(&(until_ms, seq)),
            TaskState::Leased { expires_ms, .. } => self.leased.remove(&(expires_ms, seq)),
            TaskState::Dead { .. } => self.dead.remove(&seq),
        };
    }

    /// Delays that are over become queued: a past delay means queued, so nothing is recorded.
    fn promote_due(&mut self, now_ms: u64) {
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
    fn next_due(&self) -> Option<u64> {
        let delayed = self.delayed.first_key_value().map(|((at, _), _)| *at);
        let leased = self.leased.first_key_value().map(|((at, _), _)| *at);
        delayed.into_iter().chain(leased).min()
    }

    fn remember_ack(&mut self, tombstone: Tombstone) {
        self.acked_by_end.insert((tombstone.until_ms, tombstone.id));
        self.acked.insert(tombstone.id, tombstone);
    }
}

/// An operation under way: the index's state as the operation changes it, and the plan that
/// records each change.
struct Draft<'a> {
    inner: &'a mut Inner,
    now_ms: u64,
    plan: Plan,
    /// Index in `plan.changes` of each task touched.
    touched: HashMap<Uuid, usize>,
    transitions: Vec<Transition>,
}

impl<'a> Draft<'a> {
    fn new(inner: &'a mut Inner, now_ms: u64) -> Self {
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
    fn current(&self, id: Uuid) -> Option<&TaskRecord> {
        match self.touched.get(&id) {
            Some(&at) => self.plan.changes[at].after.as_ref(),
            None => self.inner.tasks.get(&id).map(|entry| &entry.record),
        }
    }

    /// The record of `id`, which the caller knows is there.
    fn record(&self, id: Uuid) -> &TaskRecord {
        self.current(id)
            .expect("an id taken from an ordered set is a task")
    }

    /// The record of `id` if it is leased by `lease` and the lease runs; else why not.
    fn leased_by(&self, id: Uuid, lease: LeaseId) -> Result<&TaskRecord, QueueError> {
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
    fn dead(&self, id: Uuid) -> Result<&TaskRecord, QueueError> {
        match self.current(id) {
            Some(record) if matches!(record.state, TaskState::Dead { .. }) => Ok(record),
            _ => Err(QueueError::TaskNotFound),
        }
    }

    /// The acknowledgement of `id`, remembered or made by this operation.
    fn tombstone(&self, id: Uuid) -> Option<Tombstone> {
        self.plan
            .tombstones
            .iter()
            .find(|t| t.id == id)
            .or_else(|| self.inner.acked.get(&id))
            .copied()
    }

    /// Replaces the record of an existing task.
    fn set(&mut self, record: TaskRecord) {
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
    fn insert(&mut self, record: TaskRecord) {
        if record.state == TaskState::Queued {
            self.plan.available += 1;
        }
        self.inner.place(&record);
        self.log(record.task.id, None, Some(record));
    }

    /// Removes a task; returns its record.
    fn remove(&mut self, id: Uuid) -> TaskRecord {
        let current = self.record(id).clone();
        self.inner.unplace(&current);
        self.log(id, Some(current.clone()), None);
        current
    }

    /// Records a change of `id`, merged with an earlier change of the same task.
    fn log(&mut self, id: Uuid, before: Option<TaskRecord>, after: Option<TaskRecord>) {
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
    fn catch_up(&mut self) -> bool {
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
    fn forget_expired(&mut self) {
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
    fn finish<T>(self, answer: T) -> Prepared<T> {
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
