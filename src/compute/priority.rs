//! Scheduling priority of the threads and processes that compute.
//!
//! Heavy jobs run on their own threads (rayon) or in child processes, so they never block the
//! async runtime; but they still compete with the runtime's threads for the CPUs. At equal
//! priority the kernel lets a computation finish its time slice before it runs a runtime thread
//! that has a request to answer, which shows as milliseconds of extra latency on every light
//! request while the pool is saturated. Ten nice steps lower, the kernel prefers the runtime
//! threads: light requests keep their idle latency, and the computations get the CPU time that
//! is left (all of it when the server has nothing else to do).
//!
//! On Linux the nice value belongs to a thread, so this touches only the caller. Elsewhere it
//! does nothing. tokio's blocking pool is left alone: its threads are shared with file I/O, and
//! an unprivileged thread cannot raise its priority back once it has lowered it.

/// How many nice steps below the server computing threads and processes run.
pub const NICE_STEPS: i32 = 10;

/// The lowest priority (highest nice value) Linux has.
#[cfg(target_os = "linux")]
const MAX_NICE: i32 = 19;

/// Lowers the calling thread's priority by [`NICE_STEPS`] (to at most nice 19). A failure is
/// logged and otherwise ignored: the job still runs, only at the server's own priority.
pub fn lower_current_thread() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let thread = Some(rustix::thread::gettid());
        let lowered = getpriority_process(thread)
            .and_then(|nice| setpriority_process(thread, (nice + NICE_STEPS).min(MAX_NICE)));
        if let Err(err) = lowered {
            tracing::warn!(%err, "cannot lower the priority of a compute thread");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::process::getpriority_process;
    use rustix::thread::gettid;

    use super::*;

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let (before, after) = std::thread::spawn(|| {
            let before = getpriority_process(Some(gettid())).expect("own priority");
            lower_current_thread();
            let after = getpriority_process(Some(gettid())).expect("own priority");
            (before, after)
        })
        .join()
        .expect("the thread ends");
        assert_eq!(after, (before + NICE_STEPS).min(MAX_NICE));
        let here = getpriority_process(Some(gettid())).expect("own priority");
        assert_eq!(here, before, "other threads keep their priority");
    }
}
