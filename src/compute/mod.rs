//! CPU-heavy work kept off the async runtime, with admission control and cancellation.
//!
//! A runtime thread that computes for a second stops serving every other request scheduled on
//! it for that second. [`ComputePool`] therefore runs naive Fibonacci elsewhere, in one of:
//!
//! - a child process (the server's own binary in worker mode, see [`child`]): isolated, killable
//!   at any instant, costs a process start;
//! - a dedicated rayon pool of named threads, or tokio's blocking pool (`pool.rs`): cheap to
//!   start, stopped cooperatively because a running thread cannot be aborted.
//!
//! Every job passes the same gates. Admission: at most `max_inflight` jobs running plus waiting,
//! checked with `try_acquire` so the next one is refused at once (the route answers 503) instead
//! of queueing without bound. Execution slots: at most `worker_threads` jobs compute at once
//! whatever their method, so child processes and blocking threads cannot oversubscribe the CPUs
//! (admitted jobs wait for a slot in arrival order). Deadline: `timeout` covers waiting and
//! computing. Dropping the future of [`ComputePool::run`] (deadline passed, client gone) cancels
//! the job: the child is killed and reaped, the thread stops at its next coarse check. The
//! permits are released only when the process or thread has really stopped.

pub mod child;
pub mod fib;
mod pool;
pub mod priority;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, HeavyPool};
use crate::fault::HEAVY_BUSY_RETRY_AFTER;
use crate::metrics::Metrics;
use child::ChildFailure;
pub use stats::Phase;
use stats::{JobStats, PhaseGuard};

/// Where a job computes. The names are the `method` of the HTTP answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeMethod {
    /// A child process running the server's binary in worker mode.
    ChildProcess = 0,
    /// tokio's blocking pool (`spawn_blocking`).
    SpawnBlocking = 1,
    /// The dedicated rayon pool.
    Rayon = 2,
    /// The async runtime thread serving the request: what the other methods exist to avoid.
    /// Only the opt-in demonstration route uses it.
    AsyncRuntimeBlocking = 3,
}

impl ComputeMethod {
    /// Every method, in discriminant order.
    pub const ALL: [Self; 4] = [
        Self::ChildProcess,
        Self::SpawnBlocking,
        Self::Rayon,
        Self::AsyncRuntimeBlocking,
    ];

    /// The name used in answers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChildProcess => "child_process",
            Self::SpawnBlocking => "spawn_blocking",
            Self::Rayon => "rayon",
            Self::AsyncRuntimeBlocking => "async_runtime_blocking",
        }
    }
}

impl From<HeavyPool> for ComputeMethod {
    fn from(pool: HeavyPool) -> Self {
        match pool {
            HeavyPool::Rayon => Self::Rayon,
            HeavyPool::Blocking => Self::SpawnBlocking,
        }
    }
}

/// Who computed a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    /// A child process.
    Process { pid: u32 },
    /// A thread of this process.
    Thread {
        /// Its name or id.
        label: String,
    },
}

/// A finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibOutcome {
    /// Where it ran.
    pub method: ComputeMethod,
    pub n: u32,
    /// `fib(n)`, exact.
    pub result: u64,
    /// Time from the start of execution (after any wait for a slot) to the result; includes the
    /// process start and exit for a child.
    pub elapsed: Duration,
    /// Which process or thread computed it.
    pub executor: Executor,
}

/// Why a job produced no result.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// The admission limit is reached.
    #[error("too many heavy jobs in flight")]
    Busy {
        /// Suggested wait before retrying.
        retry_after: Duration,
    },
    /// The deadline passed; the job was stopped.
    #[error("deadline passed")]
    TimedOut,
    /// The process or thread failed (the cause is for logs, not for clients).
    #[error("{0}")]
    WorkerFailed(String),
}

/// Why a [`ComputePool`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum PoolStartError {
    /// No worker executable was configured and the running one cannot be located.
    #[error("cannot locate the running executable for child workers: {0}")]
    WorkerExe(std::io::Error),
    /// The rayon threads could not be created.
    #[error("cannot start the rayon pool: {0}")]
    Rayon(#[from] rayon::ThreadPoolBuildError),
}

/// Limits of a [`ComputePool`].
#[derive(Debug, Clone)]
pub struct ComputeSettings {
    /// Size of the rayon pool, and most jobs computing at once across methods.
    pub worker_threads: usize,
    /// Most jobs running plus waiting.
    pub max_inflight: usize,
    /// Deadline of one job, waiting included.
    pub timeout: Duration,
    /// Executable started in worker mode for child jobs.
    pub worker_exe: PathBuf,
}

impl ComputeSettings {
    /// The settings of `config`; the worker executable defaults to the running binary.
    pub fn from_config(config: &Config) -> Result<Self, PoolStartError> {
        let worker_exe = match &config.compute.worker_exe {
            Some(path) => path.clone(),
            None => std::env::current_exe().map_err(PoolStartError::WorkerExe)?,
        };
        Ok(Self {
            worker_threads: config.compute.worker_threads,
            max_inflight: config.compute.max_inflight,
            timeout: config.compute.timeout,
            worker_exe,
        })
    }
}

/// What a job holds while it computes; dropping it frees its admission and its slot.
#[derive(Debug)]
struct JobPermit {
    _admission: OwnedSemaphorePermit,
    _slot: OwnedSemaphorePermit,
    running: PhaseGuard,
}

impl JobPermit {
    /// Frees the admission and the slot, then counts the job as completed or cancelled (a
    /// job that failed otherwise is just dropped).
    fn finish(self, cancelled: bool) {
        let Self { running, .. } = self;
        running.finish(cancelled);
    }
}

/// An admitted job holding its execution slot.
#[derive(Debug)]
struct Job {
    n: u32,
    /// Cancelled when the request times out or goes away.
    cancel: CancellationToken,
    /// Released when the process or thread has stopped.
    permit: JobPermit,
}

/// Runs heavy jobs off the async runtime. Cheap to clone.
#[derive(Clone)]
pub struct ComputePool {
    admission: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    timeout: Duration,
    worker_exe: Arc<PathBuf>,
    rayon: Arc<rayon::ThreadPool>,
    stats: Arc<JobStats>,
}

impl std::fmt::Debug for ComputePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputePool")
            .field("available_admissions", &self.admission.available_permits())
            .field("available_slots", &self.slots.available_permits())
            .field("timeout", &self.timeout)
            .field("worker_exe", &self.worker_exe)
            .finish_non_exhaustive()
    }
}

impl ComputePool {
    /// A pool with the limits of `config`.
    pub fn from_config(config: &Config) -> Result<Self, PoolStartError> {
        Self::new(ComputeSettings::from_config(config)?)
    }

    /// Starts the rayon pool; fails if its threads cannot be created.
    pub fn new(settings: ComputeSettings) -> Result<Self, PoolStartError> {
        Ok(Self {
            admission: Arc::new(Semaphore::new(settings.max_inflight)),
            slots: Arc::new(Semaphore::new(settings.worker_threads)),
            timeout: settings.timeout,
            worker_exe: Arc::new(settings.worker_exe),
            rayon: Arc::new(pool::build_rayon_pool(settings.worker_threads)?),
            stats: Arc::default(),
        })
    }

    /// Computes `fib(n)` with `method`; `n` must be at most [`fib::MAX_N`].
    ///
    /// Refused at once when the admission limit is reached. Dropping the returned future
    /// cancels the job.
    pub async fn run(&self, method: ComputeMethod, n: u32) -> Result<FibOutcome, ComputeError> {
        debug_assert!(n <= fib::MAX_N, "fib({n}) overflows u64");
        let Ok(admission) = Arc::clone(&self.admission).try_acquire_owned() else {
            self.stats.rejected();
            return Err(ComputeError::Busy {
                retry_after: HEAVY_BUSY_RETRY_AFTER,
            });
        };
        let cancel = CancellationToken::new();
        // Fires when this future ends in any way: on a timeout or a dropped request it stops
        // the job; after a result it is a no-op.
        let _cancel_on_drop = cancel.clone().drop_guard();
        let job = async {
            let waiting = self.stats.enter(method, Phase::Waiting);
            let slot = Arc::clone(&self.slots)
                .acquire_owned()
                .await
                .expect("the slot semaphore is never closed");
            drop(waiting);
            let permit = JobPermit {
                _admission: admission,
                _slot: slot,
                running: self.stats.enter(method, Phase::Running),
            };
            self.execute(method, n, cancel.clone(), permit).await
        };
        match tokio::time::timeout(self.timeout, job).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => {
                self.stats.timed_out(method);
                Err(ComputeError::TimedOut)
            }
        }
    }

    /// Jobs of `method` currently in `phase`.
    pub fn current(&self, method: ComputeMethod, phase: Phase) -> i64 {
        self.stats.current(method, phase)
    }

    /// Writes the job counts into `metrics`.
    pub fn export_metrics(&self, metrics: &Metrics) {
        self.stats.export(metrics);
    }

    async fn execute(
        &self,
        method: ComputeMethod,
        n: u32,
        cancel: CancellationToken,
        permit: JobPermit,
    ) -> Result<FibOutcome, ComputeError> {
        let job = Job { n, cancel, permit };
        let (result, elapsed, executor) = match method {
            ComputeMethod::ChildProcess => {
                let child = self.execute_in_child(job).await?;
                (
                    child.result,
                    child.elapsed,
                    Executor::Process { pid: child.pid },
                )
            }
            ComputeMethod::Rayon => on_thread(
                pool::spawn_on_rayon(&self.rayon, job)
                    .await
                    .map_err(|_| ComputeError::WorkerFailed("the rayon job panicked".into()))?,
            )?,
            ComputeMethod::SpawnBlocking => on_thread(
                tokio::task::spawn_blocking(move || pool::compute_on_current_thread(job))
                    .await
                    .map_err(|err| ComputeError::WorkerFailed(format!("blocking job: {err}")))?,
            )?,
            ComputeMethod::AsyncRuntimeBlocking => on_thread(pool::compute_on_current_thread(job))?,
        };
        Ok(FibOutcome {
            method,
            n,
            result,
            elapsed,
            executor,
        })
    }

    /// Runs the child under its own task, so that it is reaped even when this future is dropped.
    async fn execute_in_child(&self, job: Job) -> Result<child::ChildOutcome, ComputeError> {
        let Job { n, cancel, permit } = job;
        let exe = Arc::clone(&self.worker_exe);
        let supervisor = tokio::spawn(async move {
            let outcome = child::run_child(&exe, n, &cancel).await;
            match &outcome {
                Ok(_) => permit.finish(false),
                Err(ChildFailure::Cancelled) => permit.finish(true),
                Err(_) => drop(permit),
            }
            outcome
        });
        supervisor
            .await
            .map_err(|err| ComputeError::WorkerFailed(format!("child supervisor: {err}")))?
            .map_err(|err| ComputeError::WorkerFailed(err.to_string()))
    }
}

/// The figures of a job computed on a thread. `None` means cancelled, which only happens once
/// the request's future is dropped; a stray one is treated as a failure rather than a hang.
fn on_thread(
    outcome: Option<pool::ThreadOutcome>,
) -> Result<(u64, Duration, Executor), ComputeError> {
    let outcome = outcome.ok_or_else(|| ComputeError::WorkerFailed("job cancelled".into()))?;
    Ok((
        outcome.result,
        outcome.elapsed,
        Executor::Thread {
            label: outcome.thread,
        },
    ))
}
