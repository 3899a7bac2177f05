//! Fibonacci on threads outside the async runtime: a dedicated rayon pool or tokio's blocking pool.
//!
//! Both run [`compute_on_current_thread`]: cancellable recursion that stops once the job's token
//! is cancelled, because a running thread cannot be aborted from outside. The job owns its permit and
//! drops it when the thread is really done, so the admission limit counts threads that still
//! spin after their request has gone, and the slot is free before the answer is sent.

use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Job;
use super::fib;

/// Prefix of the rayon pool's thread names (`backflow-fib-0`, `backflow-fib-1`, ...).
pub const RAYON_THREAD_PREFIX: &str = "backflow-fib-";

/// What a thread computed, and which thread it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadOutcome {
    /// `fib(n)`.
    pub result: u64,
    /// Time spent computing.
    pub elapsed: Duration,
    /// The thread's name when it has its own, else its id.
    pub thread: String,
}

/// Builds the dedicated pool of `threads` named threads.
pub fn build_rayon_pool(threads: usize) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|index| format!("{RAYON_THREAD_PREFIX}{index}"))
        // The runtime's threads answer requests; the pool gets the CPU they leave.
        .start_handler(|_| super::priority::lower_current_thread())
        // Without a handler a panicking job aborts the process; here its request gets a 500.
        .panic_handler(|_| tracing::error!("a rayon job panicked"))
        .build()
}

/// Computes `job` on the current thread; `None` when it was cancelled.
pub fn compute_on_current_thread(job: Job) -> Option<ThreadOutcome> {
    let Job { n, cancel, permit } = job;
    let started = Instant::now();
    let result = fib::fib_cancellable(n, &|| cancel.is_cancelled());
    let elapsed = started.elapsed();
    permit.finish(result.is_err());
    result.ok().map(|result| ThreadOutcome {
        result,
        elapsed,
        thread: thread_label(),
    })
}

/// The thread's own name (rayon threads are named one by one), else its id (tokio names all
/// of its threads alike).
fn thread_label() -> String {
    let current = thread::current();
    match current.name() {
        Some(name) if name.starts_with(RAYON_THREAD_PREFIX) => name.to_owned(),
        _ => format!("{:?}", current.id()),
    }
}

/// Queues `job` on `pool`; the receiver yields its outcome, or an error if the job panicked.
pub fn spawn_on_rayon(
    pool: &rayon::ThreadPool,
    job: Job,
) -> oneshot::Receiver<Option<ThreadOutcome>> {
    let (reply, outcome) = oneshot::channel();
    pool.spawn(move || {
        // The receiver is gone when the request was dropped; the job was cancelled then.
        let _ = reply.send(compute_on_current_thread(job));
    });
    outcome
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::{
        ComputeError, ComputeMethod, ComputePool, ComputeSettings, Executor, Phase,
    };
    use super::*;

    fn pool(max_inflight: usize, timeout: Duration) -> ComputePool {
        ComputePool::new(ComputeSettings {
            worker_threads: 1,
            max_inflight,
            timeout,
            worker_exe: PathBuf::from("/nonexistent/worker"),
        })
        .expect("pool starts")
    }

    /// Waits (ten seconds at most) until `method` has `count` jobs running.
    async fn until_running(pool: &ComputePool, method: ComputeMethod, count: i64) {
        let wait = async {
            while pool.current(method, Phase::Running) != count {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("{} never had {count} running", method.as_str()));
    }

    #[tokio::test]
    async fn threads_compute_exact_results() {
        let pool = pool(2, Duration::from_secs(30));
        let rayon = pool.run(ComputeMethod::Rayon, 27).await.expect("computed");
        assert_eq!(rayon.result, 196_418);
        assert!(
            matches!(&rayon.executor, Executor::Thread { label } if label == "backflow-fib-0"),
            "{rayon:?}"
        );
        let blocking = pool.run(ComputeMethod::SpawnBlocking, 27).await;
        assert_eq!(blocking.expect("computed").result, 196_418);
    }

    #[tokio::test]
    async fn admission_refuses_beyond_the_limit_until_a_job_ends() {
        let pool = pool(1, Duration::from_secs(30));
        let long = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(ComputeMethod::Rayon, MAX_TEST_N).await }
        });
        until_running(&pool, ComputeMethod::Rayon, 1).await;
        let refused = pool.run(ComputeMethod::SpawnBlocking, 1).await;
        assert!(
            matches!(refused, Err(ComputeError::Busy { .. })),
            "{refused:?}"
        );

        long.abort();
        until_running(&pool, ComputeMethod::Rayon, 0).await;
        let admitted = pool.run(ComputeMethod::SpawnBlocking, 10).await;
        assert_eq!(admitted.expect("admitted again").result, 55);
    }

    #[tokio::test]
    async fn a_job_past_its_deadline_stops_its_thread() {
        let pool = pool(1, Duration::from_millis(50));
        let outcome = pool.run(ComputeMethod::SpawnBlocking, MAX_TEST_N).await;
        assert!(
            matches!(outcome, Err(ComputeError::TimedOut)),
            "{outcome:?}"
        );
        until_running(&pool, ComputeMethod::SpawnBlocking, 0).await;
    }

    /// Takes hours by plain recursion: only cancellation ends it within a test.
    const MAX_TEST_N: u32 = 60;
}
