//! Each operation of the index, prepared into a plan (see the module documentation of
//! [`super`]).

use uuid::Uuid;

use crate::queue::limits::{BatchSize, LeaseId, LeaseLength};
use crate::queue::record::{
    AckOutcome, DeathCause, Dequeued, EnqueueOutcome, Enqueued, LeaseBatch, LeasedTask, Nacked,
    RetryCause, StateName, TaskRecord, TaskState, TaskView, Transition,
};
use crate::queue::{NackRequest, NewTask, QueueError};

use super::state::{Draft, KeyEntry};
use super::{KeyRecord, Plan, Prepared, QueueIndex, Tombstone};

impl QueueIndex {
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
}
