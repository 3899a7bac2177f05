//! What the queue's scripts answer: one JSON document each, the answer and the transitions
//! made, large numbers written as decimal strings; parsed here into the queue's own types.

use std::str::FromStr;

use serde::Deserialize;
use uuid::Uuid;

use crate::fault::StoreError;
use crate::queue::limits::{ErrorText, LeaseId, MaxAttempts};
use crate::queue::record::{
    DeathCause, Dequeued, Enqueued, LeasedTask, Outcome, RetryCause, StateName, TaskView,
    Transition,
};
use crate::queue::{Priority, QueueError, QueuedTask, TaskText};

/// What every queue script answers.
#[derive(Deserialize)]
pub(super) struct Reply<T> {
    pub(super) r: T,
    pub(super) ev: Vec<RawEvent>,
}

impl<T> Reply<T> {
    /// The answer, mapped, with the transitions made.
    pub(super) fn outcome<U>(
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
pub(super) struct RawTask {
    pub(super) id: Uuid,
    pub(super) t: String,
    pub(super) p: String,
    pub(super) e: String,
}

impl RawTask {
    pub(super) fn task(self) -> Result<QueuedTask, StoreError> {
        Ok(QueuedTask {
            id: self.id,
            task: TaskText::parse(self.t).map_err(StoreError::new)?,
            priority: Priority::new(number(&self.p)?).map_err(StoreError::new)?,
            enqueued_at_ms: number(&self.e)?,
        })
    }
}

/// A number a script wrote as a decimal string.
pub(super) fn number<T: FromStr>(text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::new(format_args!("redis: {text:?} is not a number")))
}

pub(super) fn state_name(text: &str) -> Result<StateName, StoreError> {
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

pub(super) fn max_attempts(m: u32) -> Result<MaxAttempts, StoreError> {
    MaxAttempts::new(u64::from(m)).map_err(StoreError::new)
}

/// A transition as a script reports it (a lease and an acknowledgement report theirs through
/// their answers: [`RawLeased`], [`RawAck`]).
#[derive(Deserialize)]
pub(super) struct RawEvent {
    pub(super) k: String,
    #[serde(flatten)]
    pub(super) task: RawTask,
    pub(super) a: u32,
    pub(super) st: Option<String>,
    pub(super) av: Option<String>,
    pub(super) qs: Option<usize>,
    pub(super) c: Option<String>,
}

impl RawEvent {
    pub(super) fn into_transition(self) -> Result<Transition, StoreError> {
        let attempt = self.a;
        let available = self.av.as_deref().map(number).transpose()?;
        let queue_size = self.qs.unwrap_or(0);
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
pub(super) struct RawView {
    #[serde(flatten)]
    pub(super) task: RawTask,
    pub(super) st: String,
    pub(super) a: u32,
    pub(super) m: u32,
    pub(super) av: Option<String>,
    pub(super) le: Option<String>,
    pub(super) err: Option<String>,
}

impl RawView {
    pub(super) fn view(self) -> Result<TaskView, StoreError> {
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
pub(super) struct RawFirst {
    #[serde(flatten)]
    pub(super) task: RawTask,
    pub(super) st: String,
    pub(super) av: String,
    pub(super) qs: usize,
}

impl RawFirst {
    pub(super) fn enqueued(self) -> Result<Enqueued, StoreError> {
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
pub(super) enum OrRefused<T> {
    Refused { refused: String },
    Done(T),
}

impl<T> OrRefused<T> {
    pub(super) fn done(self) -> Result<T, QueueError> {
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
pub(super) enum EnqueueAnswer {
    Replay { replay: RawFirst },
    First { first: RawFirst },
    Refused { refused: String },
}

#[derive(Deserialize)]
pub(super) struct RawDequeued {
    #[serde(flatten)]
    pub(super) task: RawTask,
    pub(super) qs: usize,
}

#[derive(Deserialize)]
pub(super) struct RawStatus {
    pub(super) size: usize,
    pub(super) next: Option<RawView>,
    pub(super) delayed: usize,
    pub(super) leased: usize,
    pub(super) dead: usize,
}

/// A task leased now: its record as the lease script saved it, with its id.
#[derive(Deserialize)]
pub(super) struct RawLeased {
    #[serde(flatten)]
    pub(super) task: RawTask,
    pub(super) a: u32,
    pub(super) m: u32,
    pub(super) l: Uuid,
    /// When the lease runs out.
    pub(super) at: String,
}

impl RawLeased {
    pub(super) fn leased(self) -> Result<LeasedTask, StoreError> {
        Ok(LeasedTask {
            task: self.task.task()?,
            attempt: self.a,
            max_attempts: max_attempts(self.m)?,
            lease: LeaseId::from_uuid(self.l),
            expires_ms: number(&self.at)?,
        })
    }
}

/// What the acknowledgement script answers for one task: the record of a task acknowledged
/// now (with its id), or the word of any other outcome.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawAck {
    Acked {
        #[serde(flatten)]
        task: RawTask,
        a: u32,
    },
    Other(String),
}

#[derive(Deserialize)]
pub(super) struct RawBatch {
    pub(super) tasks: Vec<RawLeased>,
    pub(super) qs: usize,
    pub(super) due: String,
}

#[derive(Deserialize)]
pub(super) struct RawNacked {
    pub(super) st: String,
    pub(super) av: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawExtended {
    pub(super) le: String,
}

#[derive(Deserialize)]
pub(super) struct RawPage {
    pub(super) tasks: Vec<RawView>,
    pub(super) more: bool,
}

#[derive(Deserialize)]
pub(super) struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_event_becomes_its_transition() {
        let id = Uuid::new_v4();
        let json = format!(
            r#"{{"k":"retried","id":"{id}","t":"send report","p":"-9007199254740992","e":"1700000000000","a":2,"m":5,"av":"1700000030000","c":"nack"}}"#
        );
        let event: RawEvent = serde_json::from_str(&json).expect("parses");
        match event.into_transition().expect("valid") {
            Transition::Retried {
                task,
                attempt,
                available_at_ms,
                cause,
            } => {
                assert_eq!(task.priority.get(), -9_007_199_254_740_992);
                assert_eq!((attempt, available_at_ms), (2, 1_700_000_030_000));
                assert_eq!(cause, RetryCause::Nack);
            }
            other => panic!("unexpected {other:?}"),
        }
        let broken =
            format!(r#"{{"k":"retried","id":"{id}","t":"x","p":"1","e":"1","a":1,"m":5}}"#);
        let event: RawEvent = serde_json::from_str(&broken).expect("parses");
        assert!(event.into_transition().is_err(), "a retry needs its time");
    }

    #[test]
    fn a_leased_record_and_an_acknowledged_one_parse_with_their_id() {
        let id = Uuid::new_v4();
        let lease = Uuid::new_v4();
        let json = format!(
            r#"{{"id":"{id}","seq":"7","t":"send \"it\"","p":"-9007199254740992","e":"1700000000000","m":5,"a":2,"st":"leased","l":"{lease}","at":"1700000030000"}}"#
        );
        let leased = serde_json::from_str::<RawLeased>(&json)
            .expect("parses")
            .leased()
            .expect("valid");
        assert_eq!(leased.task.id, id);
        assert_eq!(leased.task.task.as_str(), "send \"it\"");
        assert_eq!(leased.task.priority.get(), -9_007_199_254_740_992);
        assert_eq!((leased.attempt, leased.max_attempts.get()), (2, 5));
        assert_eq!(leased.lease, LeaseId::from_uuid(lease));
        assert_eq!(leased.expires_ms, 1_700_000_030_000);

        let answers: Vec<RawAck> =
            serde_json::from_str(&format!(r#"[{json},"again","lost","missing"]"#)).expect("parses");
        assert!(matches!(&answers[0], RawAck::Acked { task, a: 2 } if task.id == id));
        let words: Vec<&str> = answers[1..]
            .iter()
            .map(|answer| match answer {
                RawAck::Other(word) => word.as_str(),
                RawAck::Acked { .. } => panic!("a word parsed as a record"),
            })
            .collect();
        assert_eq!(words, ["again", "lost", "missing"]);
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
