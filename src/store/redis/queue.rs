//! The cluster's one priority queue: a sorted set.
//!
//! A task's score is its priority. Priorities span ±2^53, which is exactly the range of integers
//! a sorted-set score (an f64) holds, so there is no room left in the score for an arrival
//! counter. Ties are ordered by the member instead: Redis orders equal scores by member bytes,
//! and each member starts with the task's arrival number, zero-padded to 20 digits, followed by
//! the task as JSON. `ZPOPMIN` therefore returns the lowest priority, earliest among equals,
//! and each task exactly once whichever instance asks. The capacity check and the insert are
//! one script, so concurrent enqueues on several instances cannot overshoot `QUEUE_CAPACITY`.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use redis::Script;

use super::Redis;
use crate::fault::StoreError;
use crate::queue::{Dequeued, Enqueued, QueueError, QueueStatus, QueueStore, QueuedTask};

/// Width of the arrival number at the start of each member.
const ARRIVAL_DIGITS: usize = 20;

/// KEYS: queue, arrival counter. ARGV: priority, task JSON, capacity.
/// Returns {1, size} when added, {0, size} when full.
const ENQUEUE: &str = include_str!("lua/enqueue.lua");

/// KEYS: queue. Returns {member, size after} or nil when empty.
const DEQUEUE: &str = include_str!("lua/dequeue.lua");

/// The queue kept in Redis.
pub struct RedisQueue {
    redis: Redis,
    capacity: usize,
    enqueue: Script,
    dequeue: Script,
    /// The size last seen, for the gauge.
    last_size: AtomicUsize,
}

impl RedisQueue {
    pub(super) fn new(redis: Redis, capacity: usize) -> Self {
        Self {
            redis,
            capacity,
            enqueue: Script::new(ENQUEUE),
            dequeue: Script::new(DEQUEUE),
            last_size: AtomicUsize::new(0),
        }
    }

    fn seen(&self, size: usize) -> usize {
        self.last_size.store(size, Ordering::Relaxed);
        size
    }
}

/// The task of a member: its JSON after the arrival number, validated as when it was accepted.
fn task_of(member: &str) -> Result<QueuedTask, StoreError> {
    member
        .get(ARRIVAL_DIGITS..)
        .ok_or_else(|| StoreError::new("redis: a queue member is too short"))
        .and_then(|json| serde_json::from_str(json).map_err(StoreError::new))
}

impl QueueStore for RedisQueue {
    fn enqueue(&self, task: QueuedTask) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(async move {
            let json = serde_json::to_string(&task).map_err(StoreError::new)?;
            let keys = &self.redis.keys;
            let (added, size): (u8, usize) = self
                .redis
                .run(|mut connection| async move {
                    self.enqueue
                        .key(&keys.queue)
                        .key(&keys.queue_arrivals)
                        .arg(task.priority.get())
                        .arg(json)
                        .arg(self.capacity)
                        .invoke_async(&mut connection)
                        .await
                })
                .await?;
            let queue_size = self.seen(size);
            if added == 0 {
                return Err(QueueError::Full {
                    capacity: self.capacity,
                });
            }
            Ok(Enqueued { task, queue_size })
        })
    }

    fn dequeue(&self) -> BoxFuture<'_, Result<Option<Dequeued>, QueueError>> {
        Box::pin(async move {
            let keys = &self.redis.keys;
            let popped: Option<(String, usize)> = self
                .redis
                .run(|mut connection| async move {
                    self.dequeue
                        .key(&keys.queue)
                        .invoke_async(&mut connection)
                        .await
                })
                .await?;
            let Some((member, size)) = popped else {
                self.seen(0);
                return Ok(None);
            };
            let queue_size = self.seen(size);
            let task = task_of(&member).inspect_err(|err| {
                tracing::error!(%err, "a task removed from the queue could not be read");
            })?;
            Ok(Some(Dequeued { task, queue_size }))
        })
    }

    fn status(&self) -> BoxFuture<'_, Result<QueueStatus, QueueError>> {
        Box::pin(async move {
            let key = &self.redis.keys.queue;
            let (first, size): (Vec<String>, usize) = self
                .redis
                .run(|mut connection| async move {
                    redis::pipe()
                        .cmd("ZRANGE")
                        .arg(key)
                        .arg(0)
                        .arg(0)
                        .cmd("ZCARD")
                        .arg(key)
                        .query_async(&mut connection)
                        .await
                })
                .await?;
            let next = first.first().map(|member| task_of(member)).transpose()?;
            Ok(QueueStatus {
                size: self.seen(size),
                next,
            })
        })
    }

    fn size(&self) -> usize {
        self.last_size.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Priority, TaskText};

    #[test]
    fn a_member_is_the_padded_arrival_then_the_task() {
        let task = QueuedTask::new(
            TaskText::parse("send report".into()).expect("valid"),
            Priority::new(-3).expect("valid"),
        );
        let member = format!(
            "{:020}{}",
            42,
            serde_json::to_string(&task).expect("serializes")
        );
        assert_eq!(task_of(&member).expect("readable"), task);
        assert!(task_of("123").is_err());
        assert!(
            task_of(&format!("{:020}{{}}", 1)).is_err(),
            "fields are required"
        );
        assert!(
            format!("{:020}", 9) < format!("{:020}", 10),
            "arrival sorts as bytes"
        );
    }
}
