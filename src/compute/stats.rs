//! Live counts of heavy jobs per method, exported to `/metrics` on each scrape.
//!
//! Jobs update plain atomics (from async tasks and pool threads alike); [`JobStats::export`]
//! copies them into the metric registry, so the figures can never drift from the truth and the
//! compute code does not depend on how metrics are rendered.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::ComputeMethod;
use crate::metrics::Metrics;

/// Counters of one method.
#[derive(Debug, Default)]
struct MethodCounts {
    waiting: AtomicI64,
    running: AtomicI64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    timed_out: AtomicU64,
}

/// Counters of every method plus the admission refusals.
#[derive(Debug, Default)]
pub struct JobStats {
    methods: [MethodCounts; ComputeMethod::ALL.len()],
    rejected: AtomicU64,
}

/// Which gauge a [`Phase`] guard holds up.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// Admitted, waiting for an execution slot.
    Waiting,
    /// Holding a slot: a thread or process computes for this job.
    Running,
}

/// Counts one job in a [`Phase`] for as long as it lives (so also on panic or cancellation).
#[derive(Debug)]
pub struct PhaseGuard {
    stats: Arc<JobStats>,
    method: ComputeMethod,
    phase: Phase,
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        self.stats
            .gauge(self.method, self.phase)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl PhaseGuard {
    /// Leaves the phase, then counts the job as completed, or cancelled when `cancelled`.
    pub fn finish(self, cancelled: bool) {
        let stats = Arc::clone(&self.stats);
        let method = self.method;
        drop(self);
        if cancelled {
            stats.cancelled(method);
        } else {
            stats.completed(method);
        }
    }
}

impl JobStats {
    fn counts(&self, method: ComputeMethod) -> &MethodCounts {
        &self.methods[method as usize]
    }

    fn gauge(&self, method: ComputeMethod, phase: Phase) -> &AtomicI64 {
        let counts = self.counts(method);
        match phase {
            Phase::Waiting => &counts.waiting,
            Phase::Running => &counts.running,
        }
    }

    /// Counts a job of `method` in `phase` until the guard is dropped.
    pub fn enter(self: &Arc<Self>, method: ComputeMethod, phase: Phase) -> PhaseGuard {
        self.gauge(method, phase).fetch_add(1, Ordering::Relaxed);
        PhaseGuard {
            stats: Arc::clone(self),
            method,
            phase,
        }
    }

    /// A job finished with a result.
    pub fn completed(&self, method: ComputeMethod) {
        self.counts(method)
            .completed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A job's thread or process was stopped before it finished.
    pub fn cancelled(&self, method: ComputeMethod) {
        self.counts(method)
            .cancelled
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A job passed its deadline.
    pub fn timed_out(&self, method: ComputeMethod) {
        self.counts(method)
            .timed_out
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A job was refused because the admission limit was reached.
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Jobs of `method` currently in `phase`.
    pub fn current(&self, method: ComputeMethod, phase: Phase) -> i64 {
        self.gauge(method, phase).load(Ordering::Relaxed)
    }

    /// Copies every figure into `metrics`.
    pub fn export(&self, metrics: &Metrics) {
        for method in ComputeMethod::ALL {
            let counts = self.counts(method);
            let labels = [("method", method.as_str())];
            let load = |gauge: &AtomicI64| gauge.load(Ordering::Relaxed) as f64;
            metrics
                .gauge("heavy_tasks_waiting", &labels)
                .set(load(&counts.waiting));
            metrics
                .gauge("heavy_tasks_running", &labels)
                .set(load(&counts.running));
            for (name, counter) in [
                ("heavy_tasks_completed_total", &counts.completed),
                ("heavy_tasks_cancelled_total", &counts.cancelled),
                ("heavy_tasks_timed_out_total", &counts.timed_out),
            ] {
                metrics
                    .counter(name, &labels)
                    .absolute(counter.load(Ordering::Relaxed));
            }
        }
        metrics
            .counter("heavy_tasks_rejected_total", &[])
            .absolute(self.rejected.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_while_alive() {
        let stats = Arc::new(JobStats::default());
        let waiting = stats.enter(ComputeMethod::Rayon, Phase::Waiting);
        let running = stats.enter(ComputeMethod::Rayon, Phase::Running);
        assert_eq!(stats.current(ComputeMethod::Rayon, Phase::Waiting), 1);
        assert_eq!(stats.current(ComputeMethod::Rayon, Phase::Running), 1);
        assert_eq!(
            stats.current(ComputeMethod::ChildProcess, Phase::Running),
            0
        );
        drop(waiting);
        drop(running);
        assert_eq!(stats.current(ComputeMethod::Rayon, Phase::Waiting), 0);
        assert_eq!(stats.current(ComputeMethod::Rayon, Phase::Running), 0);
    }

    #[test]
    fn export_labels_every_method() {
        let stats = Arc::new(JobStats::default());
        let _running = stats.enter(ComputeMethod::SpawnBlocking, Phase::Running);
        stats.cancelled(ComputeMethod::ChildProcess);
        stats.rejected();
        let metrics = Metrics::new();
        stats.export(&metrics);
        let text = metrics.render();
        assert!(
            text.contains(r#"heavy_tasks_running{method="spawn_blocking"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"heavy_tasks_waiting{method="rayon"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"heavy_tasks_cancelled_total{method="child_process"} 1"#),
            "{text}"
        );
        assert!(text.contains("heavy_tasks_rejected_total 1"), "{text}");
    }
}
