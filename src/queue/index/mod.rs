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

//!
//! Layout: [`plan`] (what an operation changes), `state` (the ordered sets and the draft an
//! operation works on), `operations` (each operation's prepare).

mod operations;
mod plan;
mod state;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use uuid::Uuid;

use super::record::{DeadPage, Outcome, QueueStatus, TaskRecord, TaskView, Transition};
use super::{QueueError, QueueSettings, Wakeups};
use crate::clock;
use crate::fault::StoreError;

pub use plan::{Change, KeyRecord, Plan, Tombstone};
use state::{Entry, Inner, KeyEntry};

/// Most expired leases one operation takes back; the reaper takes the rest.
pub const REAP_BATCH: usize = 1024;

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
        IndexBuilder::with_capacity(snapshot.tasks.len()).build(settings, snapshot, now_ms)
    }
}

/// Builds an index from a durable record a task at a time, so that a large queue read at
/// start-up is never held twice (once as rows read, once as the index).
#[derive(Debug)]
pub struct IndexBuilder {
    inner: Inner,
}

impl IndexBuilder {
    /// A builder with room for `tasks` tasks.
    pub fn with_capacity(tasks: usize) -> Self {
        Self {
            inner: Inner {
                tasks: HashMap::with_capacity(tasks),
                ..Inner::default()
            },
        }
    }

    /// Adds a task as the record held it.
    pub fn task(&mut self, record: TaskRecord) {
        let inner = &mut self.inner;
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

    /// The index of the tasks added and of `rest`'s tasks, acknowledgements and keys (see
    /// [`QueueIndex::from_snapshot`]).
    pub fn build(mut self, settings: QueueSettings, rest: Snapshot, now_ms: u64) -> QueueIndex {
        for record in rest.tasks {
            self.task(record);
        }
        let mut inner = self.inner;
        for tombstone in rest.tombstones {
            if tombstone.until_ms > now_ms {
                inner.remember_ack(tombstone);
            }
        }
        for key in rest.keys {
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
        QueueIndex {
            settings,
            inner: Mutex::new(inner),
            settled: Arc::default(),
            wakeups: Wakeups::default(),
        }
    }
}

impl QueueIndex {
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
