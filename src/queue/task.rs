//! The values a queue holds, parsed at the edge so the queue itself never sees invalid input.
//!
//! [`TaskText`] and [`Priority`] carry the contract's rules (1..=1024 characters; an integer
//! within ±2^53, the range a JavaScript client represents exactly). They are checked again when
//! a snapshot is read back, so a hand-edited file cannot smuggle in a value the API would refuse.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock;

/// Longest task description, in characters (Unicode scalar values, not bytes).
pub const MAX_TASK_CHARS: usize = 1024;

/// A task description of 1..=[`MAX_TASK_CHARS`] characters, stored verbatim.
///
/// Shared (`Arc<str>`) so that peeking at the queue or publishing an event copies a pointer, not
/// the text: nothing is allocated while the queue's lock is held.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TaskText(Arc<str>);

/// Why a task description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Task must be a string of 1 to {MAX_TASK_CHARS} characters (got {chars} characters)")]
pub struct InvalidTaskText {
    /// Length of the refused text, in characters.
    pub chars: usize,
}

impl TaskText {
    /// Accepts `text` when it has 1..=[`MAX_TASK_CHARS`] characters.
    pub fn parse(text: String) -> Result<Self, InvalidTaskText> {
        // Stops counting just past the limit, so an oversized text costs no more than a valid one.
        let chars = text.chars().take(MAX_TASK_CHARS + 1).count();
        if (1..=MAX_TASK_CHARS).contains(&chars) {
            Ok(Self(Arc::from(text)))
        } else {
            Err(InvalidTaskText { chars })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskText {
    type Error = InvalidTaskText;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(text)
    }
}

impl Serialize for TaskText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl fmt::Display for TaskText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A task's priority: lower numbers leave first. An integer within ±2^53.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Priority(i64);

/// Why a priority was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Priority must be an integer between -2^53 and 2^53 (got {got})")]
pub struct InvalidPriority {
    /// The refused value, as written by the client.
    pub got: String,
}

impl Priority {
    /// Highest accepted value, 2^53: beyond it a JavaScript client cannot tell integers apart.
    pub const MAX: i64 = 1 << 53;
    /// Lowest accepted value, -2^53.
    pub const MIN: i64 = -Self::MAX;

    /// Accepts `value` when it lies within [`Priority::MIN`]..=[`Priority::MAX`].
    pub fn new(value: i64) -> Result<Self, InvalidPriority> {
        if (Self::MIN..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(InvalidPriority {
                got: value.to_string(),
            })
        }
    }

    /// Accepts a floating-point value that is a whole number within range (JSON does not
    /// distinguish `2` from `2.0`); refuses fractions, infinities and NaN.
    pub fn from_f64(value: f64) -> Result<Self, InvalidPriority> {
        let refused = || InvalidPriority {
            got: value.to_string(),
        };
        // Both bounds are powers of two, so the comparison in f64 is exact.
        if value.fract() != 0.0 || !(Self::MIN as f64..=Self::MAX as f64).contains(&value) {
            return Err(refused());
        }
        // Exact: a whole number within ±2^53 converts to i64 without rounding.
        Ok(Self(value as i64))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Priority {
    type Error = InvalidPriority;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Priority> for i64 {
    fn from(priority: Priority) -> Self {
        priority.0
    }
}

/// A task as the queue holds it: identified, timestamped, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedTask {
    /// Random (v4) identifier, returned to the client at enqueue.
    pub id: Uuid,
    /// What to do.
    pub task: TaskText,
    /// Lower leaves first.
    pub priority: Priority,
    /// When it was enqueued, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
}

impl QueuedTask {
    /// A new task with a fresh id, enqueued now. Built before the queue's lock is taken.
    pub fn new(task: TaskText, priority: Priority) -> Self {
        Self {
            id: Uuid::new_v4(),
            task,
            priority,
            enqueued_at_ms: clock::unix_millis(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_length_is_counted_in_characters_not_bytes() {
        let widest = "é".repeat(MAX_TASK_CHARS);
        assert_eq!(widest.len(), 2 * MAX_TASK_CHARS);
        assert!(TaskText::parse(widest).is_ok());
        let err = TaskText::parse("é".repeat(MAX_TASK_CHARS + 1)).unwrap_err();
        assert!(err.to_string().contains("1 to 1024 characters"), "{err}");
        assert_eq!(TaskText::parse(String::new()).unwrap_err().chars, 0);
        assert_eq!(TaskText::parse("x".into()).unwrap().as_str(), "x");
    }

    #[test]
    fn priority_accepts_integers_within_two_to_the_53() {
        assert_eq!(
            Priority::new(Priority::MAX).unwrap().get(),
            9_007_199_254_740_992
        );
        assert_eq!(
            Priority::new(Priority::MIN).unwrap().get(),
            -9_007_199_254_740_992
        );
        assert!(Priority::new(Priority::MAX + 1).is_err());
        assert!(Priority::new(Priority::MIN - 1).is_err());
        assert!(Priority::new(i64::MIN).is_err());
    }

    #[test]
    fn whole_floats_are_priorities_but_fractions_are_not() {
        assert_eq!(Priority::from_f64(2.0).unwrap().get(), 2);
        assert_eq!(Priority::from_f64(-0.0).unwrap().get(), 0);
        assert_eq!(
            Priority::from_f64(9_007_199_254_740_992.0).unwrap().get(),
            Priority::MAX
        );
        for bad in [
            1.5,
            -0.25,
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NAN,
            18_014_398_509_481_984.0,
        ] {
            let err = Priority::from_f64(bad).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("Priority must be an integer between -2^53 and 2^53")
            );
        }
    }

    #[test]
    fn snapshot_values_are_validated_when_read_back() {
        let task = QueuedTask::new(
            TaskText::parse("a".into()).unwrap(),
            Priority::new(3).unwrap(),
        );
        let json = serde_json::to_value(&task).unwrap();
        assert_eq!(json["task"], "a");
        assert_eq!(json["priority"], 3);
        assert!(
            json["enqueuedAtMs"]
                .as_u64()
                .is_some_and(|ms| ms > 1_600_000_000_000)
        );
        assert_eq!(
            serde_json::from_value::<QueuedTask>(json.clone()).unwrap(),
            task
        );

        let mut empty_task = json.clone();
        empty_task["task"] = "".into();
        assert!(serde_json::from_value::<QueuedTask>(empty_task).is_err());
        let mut huge_priority = json;
        huge_priority["priority"] = (Priority::MAX + 1).into();
        assert!(serde_json::from_value::<QueuedTask>(huge_priority).is_err());
    }
}
