//! The bounded values of reliable delivery, parsed at the edge into types that cannot be wrong.
//!
//! Each limit is named once here; the HTTP layer's parsers and its OpenAPI schemas both read
//! these constants, so the documented range and the enforced one are the same numbers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest `delayMs` of an enqueue or a nack: 30 days.
pub const MAX_DELAY_MS: u64 = 2_592_000_000;
/// Shortest `leaseMs`: a lease shorter than a second would expire under a normal round trip.
pub const MIN_LEASE_MS: u64 = 1_000;
/// Longest `leaseMs`: 12 hours.
pub const MAX_LEASE_MS: u64 = 43_200_000;
/// Longest `waitMs` of a long poll: 30 s, below the idle timeouts of usual proxies.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Most tasks one lease or one batch acknowledgement handles.
pub const MAX_BATCH: usize = 100;
/// Most deliveries a task may be allowed (`maxAttempts`).
pub const MAX_ATTEMPTS: u8 = 100;
/// Longest error text a nack records, in characters.
pub const MAX_ERROR_CHARS: usize = 1024;
/// Longest `Idempotency-Key`, in bytes (visible ASCII).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Most dead-lettered tasks one page lists.
pub const MAX_DEAD_PAGE: usize = 1_000;

/// A value outside its range; the message names the range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be {expected} (got {got})")]
pub struct OutOfRange {
    /// The accepted values, in words.
    pub expected: String,
    /// The refused value.
    pub got: String,
}

fn check(value: u64, min: u64, max: u64) -> Result<u64, OutOfRange> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(OutOfRange {
            expected: format!("an integer between {min} and {max}"),
            got: value.to_string(),
        })
    }
}

/// How long a task stays invisible: 0..=[`MAX_DELAY_MS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Delay(u64);

impl Delay {
    /// None at all: visible at once.
    pub const NONE: Self = Self(0);

    pub fn from_millis(ms: u64) -> Result<Self, OutOfRange> {
        check(ms, 0, MAX_DELAY_MS).map(Self)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// How long a lease lasts: [`MIN_LEASE_MS`]..=[`MAX_LEASE_MS`] over HTTP. Stores accept any
/// length, so their contract tests can let leases run out in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaseLength(u64);

impl LeaseLength {
    pub fn from_millis(ms: u64) -> Result<Self, OutOfRange> {
        check(ms, MIN_LEASE_MS, MAX_LEASE_MS).map(Self)
    }

    /// Any length of at least one millisecond, without the HTTP bounds.
    pub fn unchecked(duration: Duration) -> Self {
        Self(
            u64::try_from(duration.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        )
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }
}

/// How long a lease waits for a task when none is available: 0..=[`MAX_WAIT_MS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wait(u64);

impl Wait {
    pub fn from_millis(ms: u64) -> Result<Self, OutOfRange> {
        check(ms, 0, MAX_WAIT_MS).map(Self)
    }

    pub fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

/// How many tasks one request takes or acknowledges: 1..=[`MAX_BATCH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSize(usize);

impl BatchSize {
    /// One task.
    pub const ONE: Self = Self(1);

    pub fn new(n: usize) -> Result<Self, OutOfRange> {
        check(n as u64, 1, MAX_BATCH as u64).map(|n| Self(n as usize))
    }

    pub fn get(self) -> usize {
        self.0
    }
}

/// How many deliveries a task is allowed before it is dead-lettered: 1..=[`MAX_ATTEMPTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct MaxAttempts(u8);

impl MaxAttempts {
    pub fn new(n: u64) -> Result<Self, OutOfRange> {
        check(n, 1, u64::from(MAX_ATTEMPTS)).map(|n| Self(n as u8))
    }

    pub fn get(self) -> u32 {
        u32::from(self.0)
    }
}

impl TryFrom<u8> for MaxAttempts {
    type Error = OutOfRange;

    fn try_from(n: u8) -> Result<Self, Self::Error> {
        Self::new(u64::from(n))
    }
}

impl From<MaxAttempts> for u8 {
    fn from(max: MaxAttempts) -> Self {
        max.0
    }
}

/// The id of one delivery of a task: a fresh random value at each lease, so a worker whose
/// lease ran out can never complete a delivery another worker now holds (fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(Uuid);

impl LeaseId {
    /// A new, unguessable lease id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a worker said went wrong (`nack`'s `error`): at most [`MAX_ERROR_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ErrorText(Arc<str>);

impl ErrorText {
    pub fn parse(text: String) -> Result<Self, OutOfRange> {
        let chars = text.chars().take(MAX_ERROR_CHARS + 1).count();
        if chars <= MAX_ERROR_CHARS {
            Ok(Self(text.into()))
        } else {
            Err(OutOfRange {
                expected: format!("a string of at most {MAX_ERROR_CHARS} characters"),
                got: format!("{chars} characters or more"),
            })
        }
    }

    /// A text the server writes itself (always within bounds).
    pub(crate) fn fixed(text: &'static str) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ErrorText {
    type Error = OutOfRange;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(text)
    }
}

impl Serialize for ErrorText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// An `Idempotency-Key`: 1..=[`MAX_IDEMPOTENCY_KEY_BYTES`] visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    pub fn parse(raw: &[u8]) -> Result<Self, OutOfRange> {
        let visible = raw.iter().all(|b| (0x21..=0x7e).contains(b));
        if (1..=MAX_IDEMPOTENCY_KEY_BYTES).contains(&raw.len()) && visible {
            let text = std::str::from_utf8(raw).expect("visible ASCII is UTF-8");
            Ok(Self(text.into()))
        } else {
            Err(OutOfRange {
                expected: format!(
                    "1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters (no spaces)"
                ),
                got: format!("{} bytes", raw.len()),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_is_inclusive_and_names_the_range() {
        assert!(Delay::from_millis(MAX_DELAY_MS).is_ok());
        let err = Delay::from_millis(MAX_DELAY_MS + 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "must be an integer between 0 and 2592000000 (got 2592000001)"
        );
        assert!(LeaseLength::from_millis(MIN_LEASE_MS - 1).is_err());
        assert!(LeaseLength::from_millis(MAX_LEASE_MS).is_ok());
        assert!(Wait::from_millis(MAX_WAIT_MS + 1).is_err());
        assert!(BatchSize::new(0).is_err());
        assert_eq!(BatchSize::new(MAX_BATCH).map(BatchSize::get), Ok(MAX_BATCH));
        assert!(MaxAttempts::new(0).is_err());
        assert_eq!(MaxAttempts::new(100).map(MaxAttempts::get), Ok(100));
        assert!(MaxAttempts::new(101).is_err());
    }

    #[test]
    fn error_texts_are_counted_in_characters() {
        assert!(ErrorText::parse("é".repeat(MAX_ERROR_CHARS)).is_ok());
        assert!(ErrorText::parse("é".repeat(MAX_ERROR_CHARS + 1)).is_err());
        assert!(ErrorText::parse(String::new()).is_ok());
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse(b"order-42/attempt:1").is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; MAX_IDEMPOTENCY_KEY_BYTES]).is_ok());
        for bad in [
            &b""[..],
            b"has space",
            b"tab\t",
            "é".as_bytes(),
            &[b'k'; 256],
        ] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_lease_length_without_bounds_is_at_least_a_millisecond() {
        assert_eq!(LeaseLength::unchecked(Duration::ZERO).as_millis(), 1);
        assert_eq!(
            LeaseLength::unchecked(Duration::from_millis(50)).as_millis(),
            50
        );
    }
}
