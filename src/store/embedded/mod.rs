//! `STORE=embedded`: the queue and the revocation list recorded in SQLite, so that what was
//! acknowledged survives a crash of the process (and, with `FSYNC_COMMITS`, of the machine).
//!
//! The in-memory indexes still answer every read: the [`TaskHeap`] serves dequeues and the
//! status, the [`RevocationIndex`] serves each token check, so reads never touch the disk. The
//! database is the record they are rebuilt from at start-up. Every change goes through the
//! [`Journal`], the one writer thread, and is applied to the index only after its commit (see
//! [`TaskHeap`] for how a dequeue reserves its task meanwhile), so a client is never answered
//! with something a crash could take back, and a failed commit changes nothing. Events stay in
//! the process: a restart begins a new sequence of ids, which reconnecting clients detect.
//!
//! Layout: [`database`] (the file, its schema, reading it back), [`journal`] (the writer thread
//! and group commit).

pub mod database;
pub mod journal;

use std::sync::Arc;

use futures_util::future::{self, BoxFuture};
use uuid::Uuid;

use crate::auth::jwt;
use crate::auth::revocation::Admit;
use crate::auth::{Revocation, RevocationIndex, RevocationStore, RevokeError, RevokedToken};
use crate::clock;
use crate::config::Config;
use crate::events::Alone;
use crate::fault::StoreError;
use crate::metrics::Metrics;
use crate::queue::{
    Dequeued, Enqueued, Entry, QueueError, QueueStatus, QueueStore, QueuedTask, TaskHeap,
};
use crate::store::{self, StoreHealth, Stores};
use database::{Database, MAKE_IT_WRITABLE, OpenError};
use journal::{Journal, Record};

/// One change for the journal to commit.
#[derive(Debug, Clone)]
pub enum Write {
    /// A task enters the queue with its arrival number.
    InsertTask {
        /// Arrival number.
        seq: u64,
        task: QueuedTask,
    },
    /// A task leaves the queue.
    DeleteTask {
        /// Its arrival number.
        seq: u64,
    },
    /// A token is revoked until its `exp`.
    Revoke(RevokedToken),
    /// Revocations whose `exp` is below `before` are forgotten.
    PurgeRevocations {
        /// Unix seconds.
        before: u64,
    },
    /// A readiness check's write, proving that commits go through.
    Touch {
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
}

/// Opens the store in `DATA_DIR`: rebuilds the indexes from the file and starts the writer
/// thread.
pub async fn open(config: &Config, metrics: &Metrics) -> Result<Stores, OpenError> {
    open_with(config, metrics, |db| db).await
}

/// Like [`open`], with the database wrapped by `wrap` (tests inject faults this way).
pub async fn open_with<R: Record>(
    config: &Config,
    metrics: &Metrics,
    wrap: impl FnOnce(Database) -> R,
) -> Result<Stores, OpenError> {
    let dir = config.store.data_dir.clone();
    let fsync = config.store.fsync_commits;
    let now = clock::unix_seconds();
    let (db, contents) = tokio::task::spawn_blocking(move || {
        let mut db = Database::open(&dir, fsync)?;
        let contents = db.load(jwt::oldest_accepted_exp(now))?;
        Ok::<_, OpenError>((db, contents))
    })
    .await
    .map_err(|err| OpenError::new(&config.store.data_dir, err, MAKE_IT_WRITABLE))??;
    tracing::info!(
        path = %db.path().display(),
        tasks = contents.tasks.len(),
        revocations = contents.revocations.len(),
        fsync_commits = fsync,
        "embedded store opened"
    );
    if contents.tasks.len() > config.queue.capacity {
        tracing::warn!(
            tasks = contents.tasks.len(),
            capacity = config.queue.capacity,
            "the store holds more tasks than QUEUE_CAPACITY; all kept, enqueues refused until it drains"
        );
    }
    let path = db.path().to_path_buf();
    let heap = Arc::new(TaskHeap::from_entries(
        config.queue.capacity,
        contents.tasks,
    ));
    let index = Arc::new(RevocationIndex::from_entries(
        config.auth.revocation_list_max,
        contents.revocations,
        now,
    ));
    let journal = Journal::start(wrap(db), metrics)
        .map_err(|err| OpenError::new(&path, err, MAKE_IT_WRITABLE))?;
    Ok(Stores {
        queue: Arc::new(EmbeddedQueue {
            heap,
            journal: journal.clone(),
        }),
        revocations: Arc::new(EmbeddedRevocations {
            index,
            journal: journal.clone(),
        }),
        events: store::local_events(config),
        notifier: Arc::new(Alone),
        login_failures: store::local_login_failures(config),
        health: Arc::new(EmbeddedHealth { journal }),
    })
}

/// The queue: the heap answers, the journal records.
#[derive(Debug)]
pub struct EmbeddedQueue {
    heap: Arc<TaskHeap>,
    journal: Journal,
}

impl QueueStore for EmbeddedQueue {
    fn enqueue(&self, task: QueuedTask) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        let seq = match self.heap.reserve() {
            Ok(seq) => seq,
            Err(err) => return Box::pin(future::ready(Err(err))),
        };
        let heap = Arc::clone(&self.heap);
        let entry = Entry {
            seq,
            task: task.clone(),
        };
        let committed = self.journal.commit(
            Write::InsertTask {
                seq,
                task: task.clone(),
            },
            move |result| match result {
                Ok(_) => Ok(heap.fill(entry)),
                Err(err) => {
                    heap.release();
                    Err(err)
                }
            },
        );
        Box::pin(async move {
            let queue_size = committed.await?;
            Ok(Enqueued { task, queue_size })
        })
    }

    fn dequeue(&self) -> BoxFuture<'_, Result<Option<Dequeued>, QueueError>> {
        let Some((entry, queue_size)) = self.heap.pop() else {
            return Box::pin(future::ready(Ok(None)));
        };
        let heap = Arc::clone(&self.heap);
        let task = entry.task.clone();
        let committed = self
            .journal
            .commit(Write::DeleteTask { seq: entry.seq }, move |result| {
                if result.is_err() {
                    heap.put_back(entry);
                }
                result
            });
        Box::pin(async move {
            committed.await?;
            Ok(Some(Dequeued { task, queue_size }))
        })
    }

    fn status(&self) -> BoxFuture<'_, Result<QueueStatus, QueueError>> {
        Box::pin(future::ready(Ok(self.heap.peek())))
    }

    fn size(&self) -> usize {
        self.heap.len()
    }
}

/// The revocation list: the index answers, the journal records.
#[derive(Debug)]
pub struct EmbeddedRevocations {
    index: Arc<RevocationIndex>,
    journal: Journal,
}

impl RevocationStore for EmbeddedRevocations {
    fn revoke(
        &self,
        token: RevokedToken,
        now: u64,
    ) -> BoxFuture<'_, Result<Revocation, RevokeError>> {
        let slot = match self.index.admit(token, now) {
            Ok(Admit::Record(slot)) => slot,
            Ok(Admit::Skip(outcome)) => return Box::pin(future::ready(Ok(outcome))),
            Err(err) => return Box::pin(future::ready(Err(err))),
        };
        let index = Arc::clone(&self.index);
        let committed = self
            .journal
            .commit(Write::Revoke(token), move |result| match result {
                // The row was already there: another logout of the same token won.
                Ok(0) => {
                    index.settle(slot, token, true);
                    Ok(Revocation::AlreadyRevoked)
                }
                Ok(_) => Ok(index.settle(slot, token, true)),
                Err(err) => {
                    index.settle(slot, token, false);
                    Err(err)
                }
            });
        Box::pin(async move { Ok(committed.await?) })
    }

    fn is_revoked(&self, jti: Uuid, now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(future::ready(Ok(self.index.contains(&jti, now))))
    }

    fn purge_expired(&self, now: u64) -> BoxFuture<'_, Result<usize, StoreError>> {
        let before = jwt::oldest_accepted_exp(now);
        let index = Arc::clone(&self.index);
        // The index forgets only once the rows are gone: a failed purge leaves both as they were.
        let committed = self
            .journal
            .commit(Write::PurgeRevocations { before }, move |result| {
                result.map(|_| index.purge_expired(now))
            });
        Box::pin(committed)
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn capacity(&self) -> usize {
        self.index.capacity()
    }
}

/// Readiness and closing of the embedded store.
#[derive(Debug)]
struct EmbeddedHealth {
    journal: Journal,
}

impl StoreHealth for EmbeddedHealth {
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.journal
                .write(Write::Touch {
                    at_ms: clock::unix_millis(),
                })
                .await
                .map(drop)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.journal.close())
    }
}

#[cfg(test)]
mod tests;
