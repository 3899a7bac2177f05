//! A queue answered by the in-process [`QueueIndex`], whatever records it: the queue of
//! `STORE=memory` ([`MemoryQueue`], nothing recorded, a restart starts empty) and of
//! `STORE=embedded` (each plan committed to SQLite by the store's [`Recorder`]).

use std::future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::index::{Plan, Prepared, QueueIndex, drive};
use super::limits::{BatchSize, LeaseId, LeaseLength};
use super::record::{
    AckOutcome, DeadPage, Dequeued, EnqueueOutcome, LeaseBatch, Nacked, Outcome, QueueStatus,
    TaskView,
};
use super::{NackRequest, NewTask, QueueError, QueueSettings, QueueStore, Wakeups};
use crate::clock;
use crate::fault::StoreError;

/// Where an indexed queue records its plans.
pub trait Recorder: Send + Sync + 'static {
    /// Records `plan` and settles it on `index`, recorded or not. The settling must happen
    /// even if the returned future is dropped (its client gone), so that the index and the
    /// record never disagree.
    fn record(
        &self,
        index: &Arc<QueueIndex>,
        plan: Plan,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Lets the record forget acknowledgements and idempotency keys that expired before
    /// `now_ms` (the index forgot them already). Called by every reap.
    fn forget(&self, now_ms: u64) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// The recorder of a queue that keeps nothing: every plan is settled at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unrecorded;

impl Recorder for Unrecorded {
    fn record(
        &self,
        index: &Arc<QueueIndex>,
        plan: Plan,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        index.settle(plan, true);
        Box::pin(future::ready(Ok(())))
    }

    fn forget(&self, _now_ms: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(future::ready(Ok(())))
    }
}

/// The queue of `STORE=memory`: a bounded priority queue held in this process only.
pub type MemoryQueue = IndexedQueue<Unrecorded>;

impl MemoryQueue {
    /// An empty queue that keeps nothing.
    pub fn new(settings: QueueSettings) -> Self {
        Self::with_recorder(QueueIndex::new(settings), Unrecorded)
    }
}

/// A queue answered by `index`, each change recorded by `recorder` first.
#[derive(Debug)]
pub struct IndexedQueue<R> {
    index: Arc<QueueIndex>,
    recorder: R,
}

impl<R: Recorder> IndexedQueue<R> {
    /// The queue of `index`, recorded by `recorder`.
    pub fn with_recorder(index: QueueIndex, recorder: R) -> Self {
        Self {
            index: Arc::new(index),
            recorder,
        }
    }

    /// Runs an operation through the recorder.
    async fn run<T>(
        &self,
        prepare: impl FnMut(&QueueIndex, u64) -> Result<Prepared<T>, QueueError>,
    ) -> Result<Outcome<T>, QueueError> {
        drive(&self.index, prepare, |plan| {
            self.recorder.record(&self.index, plan)
        })
        .await
    }
}

impl<R: Recorder> QueueStore for IndexedQueue<R> {
    fn enqueue(&self, new: NewTask) -> BoxFuture<'_, Result<Outcome<EnqueueOutcome>, QueueError>> {
        Box::pin(async move {
            self.run(|index, now| index.prepare_enqueue(&new, now))
                .await
        })
    }

    fn dequeue(&self) -> BoxFuture<'_, Result<Outcome<Option<Dequeued>>, QueueError>> {
        Box::pin(self.run(|index, now| Ok(index.prepare_dequeue(now))))
    }

    fn status(&self) -> BoxFuture<'_, Result<QueueStatus, QueueError>> {
        Box::pin(future::ready(Ok(self.index.status(clock::unix_millis()))))
    }

    fn lease(
        &self,
        count: BatchSize,
        length: LeaseLength,
    ) -> BoxFuture<'_, Result<Outcome<LeaseBatch>, QueueError>> {
        Box::pin(self.run(move |index, now| Ok(index.prepare_lease(count, length, now))))
    }

    fn ack(
        &self,
        acks: Vec<(Uuid, LeaseId)>,
    ) -> BoxFuture<'_, Result<Outcome<Vec<AckOutcome>>, QueueError>> {
        Box::pin(async move {
            self.run(|index, now| Ok(index.prepare_ack(&acks, now)))
                .await
        })
    }

    fn nack(&self, nack: NackRequest) -> BoxFuture<'_, Result<Outcome<Nacked>, QueueError>> {
        Box::pin(async move { self.run(|index, now| index.prepare_nack(&nack, now)).await })
    }

    fn extend(
        &self,
        id: Uuid,
        lease: LeaseId,
        length: LeaseLength,
    ) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(async move {
            let outcome = self
                .run(|index, now| index.prepare_extend(id, lease, length, now))
                .await?;
            Ok(outcome.answer)
        })
    }

    fn get(&self, id: Uuid) -> BoxFuture<'_, Result<Option<TaskView>, QueueError>> {
        Box::pin(future::ready(Ok(self.index.get(id, clock::unix_millis()))))
    }

    fn dead(
        &self,
        limit: usize,
        after: Option<Uuid>,
    ) -> BoxFuture<'_, Result<DeadPage, QueueError>> {
        Box::pin(future::ready(self.index.dead_page(
            limit,
            after,
            clock::unix_millis(),
        )))
    }

    fn retry_dead(&self, id: Uuid) -> BoxFuture<'_, Result<Outcome<TaskView>, QueueError>> {
        Box::pin(self.run(move |index, now| index.prepare_retry_dead(id, now)))
    }

    fn delete_dead(&self, id: Uuid) -> BoxFuture<'_, Result<Outcome<()>, QueueError>> {
        Box::pin(self.run(move |index, now| index.prepare_delete_dead(id, now)))
    }

    fn reap(&self) -> BoxFuture<'_, Result<Outcome<bool>, QueueError>> {
        Box::pin(async move {
            let outcome = self.run(|index, now| Ok(index.prepare_reap(now))).await?;
            self.recorder.forget(clock::unix_millis()).await?;
            Ok(outcome)
        })
    }

    fn wakeups(&self) -> &Wakeups {
        self.index.wakeups()
    }

    fn size(&self) -> usize {
        self.index.len()
    }
}
