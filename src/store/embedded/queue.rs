//! The queue of `STORE=embedded`: the index answers, the journal records.
//!
//! Each operation prepares its plan on the index and hands it to the journal, whose writer
//! thread settles it on the index right after the commit (or the failure), so the index and the
//! file never disagree about a change, even when the request that made it has gone away.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;

use super::Write;
use super::journal::Journal;
use crate::fault::StoreError;
use crate::queue::index::{Plan, QueueIndex};
use crate::queue::indexed::{IndexedQueue, Recorder};

/// How often expired acknowledgements and idempotency keys are deleted from the file. The
/// index forgets them at once; the rows only cost disk space until then.
const FORGET_EVERY_MS: u64 = 60_000;

/// The queue recorded in SQLite.
pub type EmbeddedQueue = IndexedQueue<JournalRecorder>;

/// Records the queue's plans through the journal.
#[derive(Debug)]
pub struct JournalRecorder {
    journal: Journal,
    /// When expired rows were last deleted.
    forgot_at_ms: AtomicU64,
}

impl JournalRecorder {
    pub(super) fn new(journal: Journal) -> Self {
        Self {
            journal,
            forgot_at_ms: AtomicU64::new(0),
        }
    }
}

impl Recorder for JournalRecorder {
    fn record(
        &self,
        index: &Arc<QueueIndex>,
        plan: Plan,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let index = Arc::clone(index);
        let write = Write::Queue(plan.clone());
        Box::pin(self.journal.commit(write, move |result| {
            index.settle(plan, result.is_ok());
            result.map(drop)
        }))
    }

    fn forget(&self, now_ms: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let last = self.forgot_at_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= FORGET_EVERY_MS {
                self.journal
                    .write(Write::ForgetAcknowledgements { before_ms: now_ms })
                    .await?;
                self.forgot_at_ms.store(now_ms, Ordering::Relaxed);
            }
            Ok(())
        })
    }
}
