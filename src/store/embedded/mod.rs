//! `STORE=embedded`: the queue and the revocation list recorded in SQLite, so that what was
//! acknowledged survives a crash of the process (and, with `FSYNC_COMMITS`, of the machine).
//!
//! The in-memory indexes still answer every read: the queue's
//! [`QueueIndex`](crate::queue::index::QueueIndex) serves dequeues, leases and the status, the
//! [`RevocationIndex`] serves each token check, so reads never touch the disk. The database is
//! the record they are rebuilt from at start-up. Every change goes through the [`Journal`], the
//! one writer thread, and is applied to the index only after its commit (the index keeps the
//! tasks a change is pending for out of everyone's reach meanwhile), so a client is never
//! answered with something a crash could take back, and a failed commit changes nothing.
//! Events stay in the process: a restart begins a new sequence of ids, which reconnecting
//! clients detect.
//!
//! Layout: [`database`] (the file, its schema, reading it back), [`rows`] (the SQL of each
//! record), [`journal`] (the writer thread and group commit), [`queue`] (the queue over the
//! index and the journal).

pub mod database;
pub mod journal;
pub mod queue;
pub mod rows;

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
use crate::queue::index::Plan;
use crate::store::{self, StoreHealth, Stores};
use database::{Database, MAKE_IT_WRITABLE, OpenError};
use journal::{Journal, Record};

/// One change for the journal to commit.
#[derive(Debug, Clone)]
pub enum Write {
    /// A change of the queue's index: tasks written or deleted, acknowledgements and an
    /// idempotency key remembered.
    Queue(Plan),
    /// Acknowledgements and idempotency keys that expired before `before_ms` are forgotten.
    ForgetAcknowledgements {
        /// Milliseconds since the Unix epoch.
        before_ms: u64,
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
    let settings = config.queue.settings();
    let revocation_list_max = config.auth.revocation_list_max;
    // Reading the file and building the indexes takes a while for a large queue: all of it on
    // the blocking pool, none on the runtime's threads.
    let (db, queue, index) = tokio::task::spawn_blocking(move || {
        let mut db = Database::open(&dir, fsync)?;
        let contents = db.load(
            jwt::oldest_accepted_exp(now),
            settings,
            clock::unix_millis(),
        )?;
        let queue = contents.queue;
        let tasks = queue.len();
        let revocations = contents.revocations.len();
        let index = RevocationIndex::from_entries(revocation_list_max, contents.revocations, now);
        tracing::info!(
            path = %db.path().display(),
            tasks,
            revocations,
            fsync_commits = fsync,
            "embedded store opened"
        );
        Ok::<_, OpenError>((db, queue, index))
    })
    .await
    .map_err(|err| OpenError::new(&config.store.data_dir, err, MAKE_IT_WRITABLE))??;
    let tasks = queue.len();
    if tasks > config.queue.capacity {
        tracing::warn!(
            tasks,
            capacity = config.queue.capacity,
            "the store holds more tasks than QUEUE_CAPACITY; all kept, enqueues refused until it drains"
        );
    }
    let path = db.path().to_path_buf();
    let index = Arc::new(index);
    let journal = Journal::start(wrap(db), metrics)
        .map_err(|err| OpenError::new(&path, err, MAKE_IT_WRITABLE))?;
    Ok(Stores {
        queue: Arc::new(queue::EmbeddedQueue::with_recorder(
            queue,
            queue::JournalRecorder::new(journal.clone()),
        )),
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
