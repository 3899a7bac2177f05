//! Compares the ways of computing the same `fib(n)`: on the calling thread (plain and with the
//! cooperative cancellation checks), and through `ComputePool` on tokio's blocking pool, on the
//! dedicated rayon pool and in a child process. The pool figures include admission, the hop to
//! the thread and back (or the process start, pipe and reap), which is what a request pays.
//!
//! `fib/overhead/*` runs `fib(0)`: no computation, so the figure is what each method costs by
//! itself (for a child: process start, exec, the reply on the pipe and the reap).
//!
//! Run with `cargo bench --bench compute` (add `-- --quick` for a short run, or a filter such
//! as `fib/35` or `overhead`).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use backflow::compute::fib::{fib, fib_cancellable};
use backflow::compute::{ComputeMethod, ComputePool, ComputeSettings};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const INPUTS: [u32; 3] = [25, 30, 35];

/// The methods that compute off the async runtime, each measured the same way.
const OFF_RUNTIME: [ComputeMethod; 3] = [
    ComputeMethod::SpawnBlocking,
    ComputeMethod::Rayon,
    ComputeMethod::ChildProcess,
];

fn compute_methods(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("benchmark runtime starts");
    let pool = ComputePool::new(ComputeSettings {
        worker_threads: 2,
        max_inflight: 4,
        timeout: Duration::from_secs(60),
        worker_exe: PathBuf::from(env!("CARGO_BIN_EXE_backflow")),
    })
    .expect("compute pool starts");

    let mut group = c.benchmark_group("fib");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for method in OFF_RUNTIME {
        group.bench_function(BenchmarkId::new("overhead", method.as_str()), |b| {
            b.to_async(&runtime).iter(|| async {
                pool.run(method, black_box(0))
                    .await
                    .expect("the job completes")
                    .result
            });
        });
    }
    for n in INPUTS {
        if n >= 35 {
            // A few hundred milliseconds per sample: criterion's minimum sample count is enough.
            group.sample_size(10);
        }
        group.bench_with_input(BenchmarkId::new("in_process", n), &n, |b, &n| {
            b.iter(|| fib(black_box(n)));
        });
        group.bench_with_input(
            BenchmarkId::new("in_process_cancellable", n),
            &n,
            |b, &n| b.iter(|| fib_cancellable(black_box(n), &|| false)),
        );
        for method in OFF_RUNTIME {
            group.bench_with_input(BenchmarkId::new(method.as_str(), n), &n, |b, &n| {
                b.to_async(&runtime).iter(|| async {
                    pool.run(method, black_box(n))
                        .await
                        .expect("the job completes")
                        .result
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, compute_methods);
criterion_main!(benches);
