//! The one writer of the embedded store: a dedicated thread that commits writes in groups.
//!
//! SQLite calls block, so they never run on the async runtime: requests hand their write to
//! this thread through a channel and await its answer. The thread takes every write waiting in
//! the channel (up to [`MAX_BATCH`]) and commits them in one transaction, so under load the cost
//! of durability (one `write` of the WAL, or one `fsync` with `FSYNC_COMMITS`) is paid once per
//! batch, not once per request: the more requests wait, the larger the next batch (group
//! commit). After the commit, and only then, each write's completion runs on this thread: it
//! updates the in-memory index and answers the request. A failed commit is rolled back whole
//! and every write of the batch is answered with the error, its completion undoing what the
//! request had prepared, so a failure changes nothing.

use std::future::Future;
use std::sync::mpsc;
use std::time::Instant;

use metrics::{Counter, Histogram};
use tokio::sync::oneshot;

use super::Write;
use crate::fault::StoreError;
use crate::metrics::Metrics;

/// Most writes committed in one transaction: enough to absorb any burst of concurrent requests,
/// small enough that one commit never holds the thread for long.
pub const MAX_BATCH: usize = 1024;

/// What runs once a write is committed (with the rows it changed) or has failed.
pub type Completion = Box<dyn FnOnce(Result<usize, StoreError>) + Send>;

/// The durable record the journal commits to: SQLite in the server, a fault-injecting wrapper
/// in tests.
pub trait Record: Send + 'static {
    /// Applies `writes` in one transaction, all or nothing; returns the rows each changed.
    fn commit(&mut self, writes: &[Write]) -> Result<Vec<usize>, StoreError>;

    /// Makes everything committed durable and releases the record; the last call.
    fn close(&mut self);
}

enum Message {
    Write(Write, Completion),
    Close(oneshot::Sender<()>),
}

/// A handle to the writer thread. Clone freely; every clone feeds the same thread.
#[derive(Clone)]
pub struct Journal {
    sender: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").finish_non_exhaustive()
    }
}

impl Journal {
    /// Starts the writer thread over `record`.
    pub fn start(record: impl Record, metrics: &Metrics) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let meters = Meters {
            batch_size: metrics.histogram("store_commit_batch_size", &[]),
            commit_seconds: metrics.histogram("store_commit_seconds", &[]),
            failures: metrics.counter("store_commit_failures_total", &[]),
        };
        std::thread::Builder::new()
            .name("backflow-store".into())
            .spawn(move || run(record, &receiver, &meters))?;
        Ok(Self { sender })
    }

    /// Queues `write` at once (never blocks); once it is committed or has failed, `settle`
    /// runs on the writer thread with the rows it changed, and what it returns answers the
    /// future. `settle` runs even if the future is dropped (its client gone), so whatever
    /// it keeps in step with the record (an in-memory index) stays in step.
    pub fn commit<T: Send + 'static>(
        &self,
        write: Write,
        settle: impl FnOnce(Result<usize, StoreError>) -> Result<T, StoreError> + Send + 'static,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let done: Completion = Box::new(move |result| {
            // The request may have gone away; the write stands either way.
            let _ = reply.send(settle(result));
        });
        if let Err(mpsc::SendError(Message::Write(_, done))) =
            self.sender.send(Message::Write(write, done))
        {
            done(Err(closed()));
        }
        async move { answer.await.unwrap_or_else(|_| Err(closed())) }
    }

    /// Commits `write` and returns the rows it changed.
    pub fn write(&self, write: Write) -> impl Future<Output = Result<usize, StoreError>> + Send {
        self.commit(write, |result| result)
    }

    /// Commits what was submitted before, closes the record and stops the thread. Writes
    /// submitted afterwards fail.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.sender.send(Message::Close(reply)).is_ok() {
            let _ = done.await;
        }
    }
}

/// The error of a write that reached no writer.
fn closed() -> StoreError {
    StoreError::new("the store is closed")
}

struct Meters {
    batch_size: Histogram,
    commit_seconds: Histogram,
    failures: Counter,
}

fn run(mut record: impl Record, receiver: &mpsc::Receiver<Message>, meters: &Meters) {
    let mut writes = Vec::new();
    let mut completions: Vec<Completion> = Vec::new();
    let mut closing = None;
    while closing.is_none() {
        let Ok(first) = receiver.recv() else { break };
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(write, done) => {
                    writes.push(write);
                    completions.push(done);
                }
                Message::Close(reply) => {
                    closing = Some(reply);
                    break;
                }
            }
            if writes.len() < MAX_BATCH {
                next = receiver.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            commit(&mut record, &mut writes, &mut completions, meters);
        }
    }
    // Writes that arrived after the close are refused, not left waiting.
    while let Ok(message) = receiver.try_recv() {
        match message {
            Message::Write(_, done) => done(Err(closed())),
            Message::Close(reply) => {
                let _ = reply.send(());
            }
        }
    }
    record.close();
    if let Some(reply) = closing {
        let _ = reply.send(());
    }
}

fn commit(
    record: &mut impl Record,
    writes: &mut Vec<Write>,
    completions: &mut Vec<Completion>,
    meters: &Meters,
) {
    let started = Instant::now();
    let outcome = record.commit(writes);
    meters
        .commit_seconds
        .record(started.elapsed().as_secs_f64());
    meters.batch_size.record(writes.len() as f64);
    writes.clear();
    match outcome {
        Ok(changed) => {
            for (done, rows) in completions.drain(..).zip(changed) {
                done(Ok(rows));
            }
        }
        Err(err) => {
            meters.failures.increment(1);
            tracing::error!(%err, writes = completions.len(), "store commit failed; the batch was rolled back");
            for done in completions.drain(..) {
                done(Err(err.clone()));
            }
        }
    }
}
