//! The cap on open event streams (`SSE_MAX_CONNECTIONS`).
//!
//! Each open stream holds a [`SubscriberSlot`]; dropping the stream (client gone, server
//! stopping) frees it. When every slot is taken the next client is refused at once rather than
//! queued: a browser's `EventSource` would otherwise hang on a request that never starts.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// A fixed number of slots for open event streams. Clone freely; clones share the slots.
#[derive(Debug, Clone)]
pub struct SubscriberLimit {
    slots: Arc<Semaphore>,
    max: usize,
}

/// One taken slot, freed when dropped.
#[derive(Debug)]
pub struct SubscriberSlot {
    _permit: OwnedSemaphorePermit,
}

impl SubscriberLimit {
    /// At most `max` streams open at once.
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Takes a slot, or `None` when all are taken.
    pub fn try_acquire(&self) -> Option<SubscriberSlot> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(SubscriberSlot { _permit: permit }),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => None,
        }
    }

    /// How many streams are open now.
    pub fn open(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_freed_on_drop() {
        let limit = SubscriberLimit::new(2);
        let a = limit.try_acquire().expect("first slot");
        let _b = limit.try_acquire().expect("second slot");
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.open(), 2);
        drop(a);
        assert_eq!(limit.open(), 1);
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn a_zero_cap_refuses_everyone() {
        let limit = SubscriberLimit::new(0);
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.open(), 0);
    }
}
