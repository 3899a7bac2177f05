//! The cluster's one queue, with its leases: a hash of task records and a sorted set per
//! state, every transition one script.
//!
//! The ready set is scored by priority. Priorities span ±2^53, exactly the integers a sorted-set
//! score (an f64) holds, so there is no room left in the score for the arrival number: equal
//! scores are ordered by member instead, and each member starts with the task's arrival number,
//! zero-padded to 20 digits, then its id. `ZPOPMIN` therefore takes the lowest priority,
//! earliest among equals, and a task that comes back (a lease that ran out, a nack, a retried
//! dead letter) takes its original place. The delayed and leased sets are scored by time, on
//! the Redis server's clock, so every instance agrees on when a lease runs out; whichever
//! instance's script sees an expiry first takes the task back, once, and announces it.
//!
//! Every script starts with `lua/queue_prelude.lua` (the key layout, the record's shape, the
//! promotion of delays that are over and the reaping of expired leases) and answers one JSON
//! document: the answer and the transitions it made (a lease and an acknowledgement answer the
//! records of their tasks instead, and the instance makes their transitions from those, so
//! no task is encoded twice in one script). Scripts that make a task available
//! publish on the wake channel, which every instance's event relay forwards to its long polls.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use redis::Script;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::Redis;
use crate::fault::StoreError;
use crate::queue::limits::{BatchSize, LeaseId, LeaseLength, MAX_DELAY_MS};
use crate::queue::record::{
    AckOutcome, DeadPage, Dequeued, EnqueueOutcome, LeaseBatch, Nacked, Outcome, QueueStatus,
    TaskView, Transition,
};
use crate::queue::{NackRequest, NewTask, QueueError, QueueSettings, QueueStore, Wakeups};

mod replies;

use replies::{
    Empty, EnqueueAnswer, OrRefused, RawAck, RawBatch, RawDequeued, RawExtended, RawLeased,
    RawNacked, RawPage, RawStatus, RawView, Reply, number, state_name,
};

const PRELUDE: &str = include_str!("../lua/queue_prelude.lua");

/// The scripts of the queue, each with the prelude in front.
struct Scripts {
    enqueue: Script,
    dequeue: Script,
    status: Script,
    lease: Script,
    ack: Script,
    nack: Script,
    extend: Script,
    get: Script,
    dead: Script,
    retry_dead: Script,
    delete_dead: Script,
    reap: Script,
}

impl Scripts {
    fn new() -> Self {
        let script = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            enqueue: script(include_str!("../lua/queue_enqueue.lua")),
            dequeue: script(include_str!("../lua/queue_dequeue.lua")),
            status: script(include_str!("../lua/queue_status.lua")),
            lease: script(include_str!("../lua/queue_lease.lua")),
            ack: script(include_str!("../lua/queue_ack.lua")),
            nack: script(include_str!("../lua/queue_nack.lua")),
            extend: script(include_str!("../lua/queue_extend.lua")),
            get: script(include_str!("../lua/queue_get.lua")),
            dead: script(include_str!("../lua/queue_dead.lua")),
            retry_dead: script(include_str!("../lua/queue_retry_dead.lua")),
            delete_dead: script(include_str!("../lua/queue_delete_dead.lua")),
            reap: script(include_str!("../lua/queue_reap.lua")),
        }
    }
}

/// The queue kept in Redis.
pub struct RedisQueue {
    redis: Redis,
    settings: QueueSettings,
    scripts: Scripts,
    wakeups: Wakeups,
    /// Tasks held, as last seen, for the gauge.
    last_size: AtomicUsize,
}

impl RedisQueue {
    pub(super) fn new(redis: Redis, settings: QueueSettings, wakeups: Wakeups) -> Self {
        Self {
            redis,
            settings,
            scripts: Scripts::new(),
            wakeups,
            last_size: AtomicUsize::new(0),
        }
    }

    /// Runs `script` with the queue's keys, the wake channel and `args`; parses its answer.
    async fn run<T: DeserializeOwned>(
        &self,
        script: &Script,
        args: Vec<String>,
    ) -> Result<Reply<T>, StoreError> {
        let keys = &self.redis.keys;
        let json: String = self
            .redis
            .run(|mut connection| async move {
                let mut invocation = script.prepare_invoke();
                for key in keys.queue_keys() {
                    invocation.key(key);
                }
                invocation.arg(&keys.queue_wake);
                for arg in &args {
                    invocation.arg(arg);
                }
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        serde_json::from_str(&json).map_err(|err| {
            StoreError::new(format_args!(
                "redis: a queue script answered {json:?}: {err}"
            ))
        })
    }
}

impl RedisQueue {
    fn seen(&self, held: usize) {
        self.last_size.store(held, Ordering::Relaxed);
    }
}

impl QueueStore for RedisQueue {
    fn enqueue(&self, new: NewTask) -> BoxFuture<'_, Result<Outcome<EnqueueOutcome>, QueueError>> {
        Box::pin(async move {
            let (key, fingerprint) = new
                .key
                .as_ref()
                .map(|(key, fingerprint)| (key.as_str().to_owned(), fingerprint.to_hex()))
                .unwrap_or_default();
            let args = vec![
                new.task.id.to_string(),
                new.task.task.as_str().to_owned(),
                new.task.priority.get().to_string(),
                new.delay.as_millis().to_string(),
                new.max_attempts.get().to_string(),
                self.settings.capacity.to_string(),
                key,
                fingerprint,
                self.settings.idempotency_ttl_ms.to_string(),
                self.settings.idempotency_max_keys.to_string(),
            ];
            let reply: Reply<EnqueueAnswer> = self.run(&self.scripts.enqueue, args).await?;
            let capacity = self.settings.capacity;
            let max_keys = self.settings.idempotency_max_keys;
            reply.outcome(|answer| match answer {
                EnqueueAnswer::First { first } => Ok(EnqueueOutcome {
                    enqueued: first.enqueued()?,
                    replayed: false,
                }),
                EnqueueAnswer::Replay { replay } => Ok(EnqueueOutcome {
                    enqueued: replay.enqueued()?,
                    replayed: true,
                }),
                EnqueueAnswer::Refused { refused } => Err(match refused.as_str() {
                    "full" => QueueError::Full { capacity },
                    "keys_full" => QueueError::KeysFull { capacity: max_keys },
                    "key_reused" => QueueError::KeyReused,
                    other => QueueError::Store(StoreError::new(format_args!(
                        "redis: the enqueue script refused with {other:?}"
                    ))),
                }),
            })
        })
    }

    fn dequeue(&self) -> BoxFuture<'_, Result<Outcome<Option<Dequeued>>, QueueError>> {
        Box::pin(async move {
            let reply: Reply<Option<RawDequeued>> =
                self.run(&self.scripts.dequeue, Vec::new()).await?;
            reply.outcome(|answer| {
                answer
                    .map(|raw| {
                        Ok(Dequeued {
                            task: raw.task.task()?,
                            queue_size: raw.qs,
                        })
                    })
                    .transpose()
            })
        })
    }

    fn status(&self) -> BoxFuture<'_, Result<QueueStatus, QueueError>> {
        Box::pin(async move {
            let reply: Reply<RawStatus> = self.run(&self.scripts.status, Vec::new()).await?;
            let raw = reply.r;
            self.seen(raw.size + raw.delayed + raw.leased + raw.dead);
            Ok(QueueStatus {
                size: raw.size,
                next: raw.next.map(|view| view.task.task()).transpose()?,
                delayed: raw.delayed,
                leased: raw.leased,
                dead: raw.dead,
            })
        })
    }

    fn lease(
        &self,
        count: BatchSize,
        length: LeaseLength,
    ) -> BoxFuture<'_, Result<Outcome<LeaseBatch>, QueueError>> {
        Box::pin(async move {
            let mut args = vec![length.as_millis().to_string()];
            args.extend((0..count.get()).map(|_| LeaseId::random().to_string()));
            let reply: Reply<RawBatch> = self.run(&self.scripts.lease, args).await?;
            let mut outcome = reply.outcome(|raw| {
                let tasks = raw
                    .tasks
                    .into_iter()
                    .map(RawLeased::leased)
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let next_due_ms = (!raw.due.is_empty())
                    .then(|| number(&raw.due))
                    .transpose()?;
                Ok(LeaseBatch {
                    tasks,
                    queue_size: raw.qs,
                    next_due_ms,
                })
            })?;
            // After the leases that ran out on the way (the script's own transitions).
            let leased = outcome.answer.tasks.iter().cloned().map(Transition::Leased);
            outcome.transitions.extend(leased);
            Ok(outcome)
        })
    }

    fn ack(
        &self,
        acks: Vec<(Uuid, LeaseId)>,
    ) -> BoxFuture<'_, Result<Outcome<Vec<AckOutcome>>, QueueError>> {
        Box::pin(async move {
            let args = acks
                .iter()
                .flat_map(|(id, lease)| [id.to_string(), lease.to_string()])
                .collect();
            let reply: Reply<Vec<RawAck>> = self.run(&self.scripts.ack, args).await?;
            let mut acked = Vec::new();
            let mut outcome = reply.outcome(|answers| {
                answers
                    .into_iter()
                    .map(|answer| match answer {
                        RawAck::Acked { task, a } => {
                            acked.push(Transition::Acked {
                                task: task.task()?,
                                attempt: a,
                            });
                            Ok(AckOutcome::Acked)
                        }
                        RawAck::Other(word) => word_outcome(&word),
                    })
                    .collect()
            })?;
            outcome.transitions.extend(acked);
            Ok(outcome)
        })
    }

    fn nack(&self, nack: NackRequest) -> BoxFuture<'_, Result<Outcome<Nacked>, QueueError>> {
        Box::pin(async move {
            let (error, has_error) = match &nack.error {
                Some(error) => (error.as_str().to_owned(), "1"),
                None => (String::new(), "0"),
            };
            let delay = nack
                .delay
                .map_or_else(|| "-1".to_owned(), |delay| delay.as_millis().to_string());
            let args = vec![
                nack.id.to_string(),
                nack.lease.to_string(),
                delay,
                error,
                has_error.to_owned(),
                nack.jitter.clamp(0.0, 1.0).to_string(),
                self.settings.retry.base_ms.to_string(),
                self.settings.retry.max_ms.to_string(),
                MAX_DELAY_MS.to_string(),
            ];
            let reply: Reply<OrRefused<RawNacked>> = self.run(&self.scripts.nack, args).await?;
            let id = nack.id;
            reply.outcome(|answer| {
                let raw = answer.done()?;
                Ok(Nacked {
                    id,
                    state: state_name(&raw.st)?,
                    available_at_ms: raw.av.as_deref().map(number).transpose()?,
                })
            })
        })
    }

    fn extend(
        &self,
        id: Uuid,
        lease: LeaseId,
        length: LeaseLength,
    ) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(async move {
            let args = vec![
                id.to_string(),
                lease.to_string(),
                length.as_millis().to_string(),
            ];
            let reply: Reply<OrRefused<RawExtended>> = self.run(&self.scripts.extend, args).await?;
            let raw = reply.r.done()?;
            Ok(number(&raw.le)?)
        })
    }

    fn get(&self, id: Uuid) -> BoxFuture<'_, Result<Option<TaskView>, QueueError>> {
        Box::pin(async move {
            let reply: Reply<Option<RawView>> =
                self.run(&self.scripts.get, vec![id.to_string()]).await?;
            Ok(reply.r.map(RawView::view).transpose()?)
        })
    }

    fn dead(
        &self,
        limit: usize,
        after: Option<Uuid>,
    ) -> BoxFuture<'_, Result<DeadPage, QueueError>> {
        Box::pin(async move {
            let after = after.map(|id| id.to_string()).unwrap_or_default();
            let reply: Reply<OrRefused<RawPage>> = self
                .run(&self.scripts.dead, vec![limit.to_string(), after])
                .await?;
            let raw = reply.r.done()?;
            let tasks = raw
                .tasks
                .into_iter()
                .map(RawView::view)
                .collect::<Result<Vec<_>, _>>()?;
            let next = if raw.more {
                tasks.last().map(|last| last.task.id)
            } else {
                None
            };
            Ok(DeadPage { tasks, next })
        })
    }

    fn retry_dead(&self, id: Uuid) -> BoxFuture<'_, Result<Outcome<TaskView>, QueueError>> {
        Box::pin(async move {
            let reply: Reply<OrRefused<RawView>> = self
                .run(&self.scripts.retry_dead, vec![id.to_string()])
                .await?;
            reply.outcome(|answer| Ok(answer.done()?.view()?))
        })
    }

    fn delete_dead(&self, id: Uuid) -> BoxFuture<'_, Result<Outcome<()>, QueueError>> {
        Box::pin(async move {
            let reply: Reply<OrRefused<Empty>> = self
                .run(&self.scripts.delete_dead, vec![id.to_string()])
                .await?;
            reply.outcome(|answer| answer.done().map(drop))
        })
    }

    fn reap(&self) -> BoxFuture<'_, Result<Outcome<bool>, QueueError>> {
        Box::pin(async move {
            let reply: Reply<bool> = self.run(&self.scripts.reap, Vec::new()).await?;
            reply.outcome(Ok)
        })
    }

    fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    fn size(&self) -> usize {
        self.last_size.load(Ordering::Relaxed)
    }
}

/// The outcome of an acknowledgement the script answered with a word.
fn word_outcome(word: &str) -> Result<AckOutcome, QueueError> {
    match word {
        "again" => Ok(AckOutcome::AlreadyAcked),
        "lost" => Ok(AckOutcome::LeaseLost),
        "missing" => Ok(AckOutcome::NotFound),
        other => Err(QueueError::Store(StoreError::new(format_args!(
            "redis: unknown acknowledgement outcome {other:?}"
        )))),
    }
}
