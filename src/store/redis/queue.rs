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
//! document: the answer and the transitions it made. Scripts that make a task available
//! publish on the wake channel, which every instance's event relay forwards to its long polls.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use redis::Script;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::Redis;
use crate::fault::StoreError;
use crate::queue::limits::{BatchSize, ErrorText, LeaseId, LeaseLength, MAX_DELAY_MS, MaxAttempts};
use crate::queue::record::{
    AckOutcome, DeadPage, DeathCause, Dequeued, EnqueueOutcome, Enqueued, LeaseBatch, LeasedTask,
    Nacked, Outcome, QueueStatus, RetryCause, StateName, TaskView, Transition,
};
use crate::queue::{
    NackRequest, NewTask, Priority, QueueError, QueueSettings, QueueStore, QueuedTask, TaskText,
    Wakeups,
};

const PRELUDE: &str = include_str!("lua/queue_prelude.lua");

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
            enqueue: script(include_str!("lua/queue_enqueue.lua")),
            dequeue: script(include_str!("lua/queue_dequeue.lua")),
            status: script(include_str!("lua/queue_status.lua")),
            lease: script(include_str!("lua/queue_lease.lua")),
            ack: script(include_str!("lua/queue_ack.lua")),
            nack: script(include_str!("lua/queue_nack.lua")),
            extend: script(include_str!("lua/queue_extend.lua")),
            get: script(include_str!("lua/queue_get.lua")),
            dead: script(include_str!("lua/queue_dead.lua")),
            retry_dead: script(include_str!("lua/queue_retry_dead.lua")),
            delete_dead: script(include_str!("lua/queue_delete_dead.lua")),
            reap: script(include_str!("lua/queue_reap.lua")),
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

/// What every queue script answers.
#[derive(Deserialize)]
struct Reply<T> {
    r: T,
    ev: Vec<RawEvent>,
}

impl<T> Reply<T> {
    /// The answer, mapped, with the transitions made.
    fn outcome<U>(
        self,
        answer: impl FnOnce(T) -> Result<U, QueueError>,
    ) -> Result<Outcome<U>, QueueError> {
        let transitions = self
            .ev
            .into_iter()
            .map(RawEvent::into_transition)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Outcome {
            answer: answer(self.r)?,
            transitions,
        })
    }
}

/// A task's identity as scripts write it (large numbers as decimal strings).
#[derive(Deserialize)]
struct RawTask {
    id: Uuid,
    t: String,
    p: String,
    e: String,
}

impl RawTask {
    fn task(self) -> Result<QueuedTask, StoreError> {
        Ok(QueuedTask {
            id: self.id,
            task: TaskText::parse(self.t).map_err(StoreError::new)?,
            priority: Priority::new(number(&self.p)?).map_err(StoreError::new)?,
            enqueued_at_ms: number(&self.e)?,
        })
    }
}

/// A number a script wrote as a decimal string.
fn number<T: FromStr>(text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::new(format_args!("redis: {text:?} is not a number")))
}

fn state_name(text: &str) -> Result<StateName, StoreError> {
    match text {
        "queued" => Ok(StateName::Queued),
        "delayed" => Ok(StateName::Delayed),
        "leased" => Ok(StateName::Leased),
        "dead" => Ok(StateName::Dead),
        other => Err(StoreError::new(format_args!(
            "redis: unknown task state {other:?}"
        ))),
    }
}

fn max_attempts(m: u32) -> Result<MaxAttempts, StoreError> {
    MaxAttempts::new(u64::from(m)).map_err(StoreError::new)
}

/// A transition as a script reports it.
#[derive(Deserialize)]
struct RawEvent {
    k: String,
    #[serde(flatten)]
    task: RawTask,
    a: u32,
    m: u32,
    st: Option<String>,
    av: Option<String>,
    qs: Option<usize>,
    l: Option<Uuid>,
    le: Option<String>,
    c: Option<String>,
}

impl RawEvent {
    fn into_transition(self) -> Result<Transition, StoreError> {
        let attempt = self.a;
        let max = self.m;
        let available = self.av.as_deref().map(number).transpose()?;
        let queue_size = self.qs.unwrap_or(0);
        let lease = self.l.map(LeaseId::from_uuid);
        let lease_end = self.le.as_deref().map(number).transpose()?;
        let nack = self.c.as_deref() == Some("nack");
        let kind = self.k;
        let state = self.st.as_deref().map(state_name).transpose()?;
        let task = self.task.task()?;
        let missing = || StoreError::new(format_args!("redis: a {kind} event lacks a field"));
        Ok(match kind.as_str() {
            "enqueued" => Transition::Enqueued(Enqueued {
                available_at_ms: available.unwrap_or(task.enqueued_at_ms),
                task,
                state: state.unwrap_or(StateName::Queued),
                queue_size,
            }),
            "dequeued" => Transition::Dequeued(Dequeued { task, queue_size }),
            "leased" => Transition::Leased(LeasedTask {
                task,
                attempt,
                max_attempts: max_attempts(max)?,
                lease: lease.ok_or_else(missing)?,
                expires_ms: lease_end.ok_or_else(missing)?,
            }),
            "acked" => Transition::Acked { task, attempt },
            "retried" => Transition::Retried {
                task,
                attempt,
                available_at_ms: available.ok_or_else(missing)?,
                cause: if nack {
                    RetryCause::Nack
                } else {
                    RetryCause::DeadLetter
                },
            },
            "expired" => Transition::Expired { task, attempt },
            "dead" => Transition::Dead {
                task,
                attempt,
                cause: if nack {
                    DeathCause::Nack
                } else {
                    DeathCause::Expired
                },
            },
            "deleted" => Transition::Deleted { task },
            other => {
                return Err(StoreError::new(format_args!(
                    "redis: unknown queue event {other:?}"
                )));
            }
        })
    }
}

/// A task as `view` in the prelude shows it.
#[derive(Deserialize)]
struct RawView {
    #[serde(flatten)]
    task: RawTask,
    st: String,
    a: u32,
    m: u32,
    av: Option<String>,
    le: Option<String>,
    err: Option<String>,
}

impl RawView {
    fn view(self) -> Result<TaskView, StoreError> {
        Ok(TaskView {
            task: self.task.task()?,
            state: state_name(&self.st)?,
            attempt: self.a,
            max_attempts: max_attempts(self.m)?,
            available_at_ms: self.av.as_deref().map(number).transpose()?,
            lease_expires_at_ms: self.le.as_deref().map(number).transpose()?,
            last_error: self
                .err
                .map(ErrorText::parse)
                .transpose()
                .map_err(StoreError::new)?,
        })
    }
}

/// The first answer of an enqueue, as the enqueue script keeps it.
#[derive(Deserialize)]
struct RawFirst {
    #[serde(flatten)]
    task: RawTask,
    st: String,
    av: String,
    qs: usize,
}

impl RawFirst {
    fn enqueued(self) -> Result<Enqueued, StoreError> {
        Ok(Enqueued {
            task: self.task.task()?,
            state: state_name(&self.st)?,
            available_at_ms: number(&self.av)?,
            queue_size: self.qs,
        })
    }
}

/// An answer that may be a refusal.
#[derive(Deserialize)]
#[serde(untagged)]
enum OrRefused<T> {
    Refused { refused: String },
    Done(T),
}

impl<T> OrRefused<T> {
    fn done(self) -> Result<T, QueueError> {
        match self {
            Self::Done(value) => Ok(value),
            Self::Refused { refused } => Err(match refused.as_str() {
                "missing" => QueueError::TaskNotFound,
                "lost" => QueueError::LeaseLost,
                "cursor" => QueueError::UnknownCursor,
                "key_reused" => QueueError::KeyReused,
                other => QueueError::Store(StoreError::new(format_args!(
                    "redis: a queue script refused with {other:?}"
                ))),
            }),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EnqueueAnswer {
    Replay { replay: RawFirst },
    First { first: RawFirst },
    Refused { refused: String },
}

#[derive(Deserialize)]
struct RawDequeued {
    #[serde(flatten)]
    task: RawTask,
    qs: usize,
}

#[derive(Deserialize)]
struct RawStatus {
    size: usize,
    next: Option<RawView>,
    delayed: usize,
    leased: usize,
    dead: usize,
}

#[derive(Deserialize)]
struct RawLeased {
    #[serde(flatten)]
    task: RawTask,
    a: u32,
    m: u32,
    l: Uuid,
    le: String,
}

#[derive(Deserialize)]
struct RawBatch {
    tasks: Vec<RawLeased>,
    qs: usize,
    due: String,
}

#[derive(Deserialize)]
struct RawNacked {
    st: String,
    av: Option<String>,
}

#[derive(Deserialize)]
struct RawExtended {
    le: String,
}

#[derive(Deserialize)]
struct RawPage {
    tasks: Vec<RawView>,
    more: bool,
}

#[derive(Deserialize)]
struct Empty {}

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
            reply.outcome(|raw| {
                let tasks = raw
                    .tasks
                    .into_iter()
                    .map(|leased| {
                        Ok(LeasedTask {
                            task: leased.task.task()?,
                            attempt: leased.a,
                            max_attempts: max_attempts(leased.m)?,
                            lease: LeaseId::from_uuid(leased.l),
                            expires_ms: number(&leased.le)?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let next_due_ms = (!raw.due.is_empty())
                    .then(|| number(&raw.due))
                    .transpose()?;
                Ok(LeaseBatch {
                    tasks,
                    queue_size: raw.qs,
                    next_due_ms,
                })
            })
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
            let reply: Reply<Vec<String>> = self.run(&self.scripts.ack, args).await?;
            reply.outcome(|words| {
                words
                    .iter()
                    .map(|word| match word.as_str() {
                        "acked" => Ok(AckOutcome::Acked),
                        "again" => Ok(AckOutcome::AlreadyAcked),
                        "lost" => Ok(AckOutcome::LeaseLost),
                        "missing" => Ok(AckOutcome::NotFound),
                        other => Err(QueueError::Store(StoreError::new(format_args!(
                            "redis: unknown acknowledgement outcome {other:?}"
                        )))),
                    })
                    .collect()
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_event_becomes_its_transition() {
        let id = Uuid::new_v4();
        let lease = Uuid::new_v4();
        let json = format!(
            r#"{{"k":"leased","id":"{id}","t":"send report","p":"-9007199254740992","e":"1700000000000","a":2,"m":5,"l":"{lease}","le":"1700000030000"}}"#
        );
        let event: RawEvent = serde_json::from_str(&json).expect("parses");
        match event.into_transition().expect("valid") {
            Transition::Leased(leased) => {
                assert_eq!(leased.task.priority.get(), -9_007_199_254_740_992);
                assert_eq!(leased.attempt, 2);
                assert_eq!(leased.expires_ms, 1_700_000_030_000);
                assert_eq!(leased.lease, LeaseId::from_uuid(lease));
            }
            other => panic!("unexpected {other:?}"),
        }
        let broken = format!(r#"{{"k":"leased","id":"{id}","t":"x","p":"1","e":"1","a":1,"m":5}}"#);
        let event: RawEvent = serde_json::from_str(&broken).expect("parses");
        assert!(event.into_transition().is_err(), "a lease needs its id");
    }

    #[test]
    fn refusals_map_to_the_queue_errors() {
        let refused: OrRefused<Empty> =
            serde_json::from_str(r#"{"refused":"lost"}"#).expect("parses");
        assert_eq!(refused.done().err(), Some(QueueError::LeaseLost));
        let done: OrRefused<Empty> = serde_json::from_str("{}").expect("parses");
        assert!(done.done().is_ok());
    }
}
