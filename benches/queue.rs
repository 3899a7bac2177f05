//! Cost of the queue's index, on a queue already holding n tasks, for n = 10^3..10^6: one
//! enqueue + dequeue pair, and one job cycle (enqueue, lease, acknowledge).
//!
//! Each iteration leaves the size at n, so each sample measures the index at that height: the
//! figures should grow by a roughly constant step per factor of ten (O(log n)), not tenfold.
//!
//! `cargo bench --bench queue -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use backflow::queue::backoff::RetryPolicy;
use backflow::queue::index::{Prepared, QueueIndex};
use backflow::queue::limits::{BatchSize, Delay, LeaseLength, MaxAttempts};
use backflow::queue::{NewTask, Priority, QueueSettings, QueuedTask, TaskText};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// Priorities spread over this many values, so ties and tree descents both happen.
const PRIORITY_SPREAD: u64 = 1_000;

/// A fixed clock: the index's time only moves through its arguments.
const NOW: u64 = 1_700_000_000_000;

/// A small deterministic generator (xorshift64): the same runs give the same queues.
struct Priorities(u64);

impl Priorities {
    fn next(&mut self) -> Priority {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let value = i64::try_from(self.0 % PRIORITY_SPREAD).expect("below the spread");
        Priority::new(value).expect("within range")
    }
}

fn new_task(text: &TaskText, priority: Priority) -> NewTask {
    NewTask {
        task: QueuedTask::new(text.clone(), priority),
        delay: Delay::NONE,
        max_attempts: MaxAttempts::new(5).expect("in range"),
        key: None,
    }
}

/// Settles a prepared operation as recorded, as the memory store does, and returns its answer.
fn settled<T>(index: &QueueIndex, prepared: Prepared<T>) -> T {
    match prepared {
        Prepared::Ready { plan, answer, .. } => {
            index.settle(plan, true);
            answer
        }
        Prepared::Busy(_) => unreachable!("nothing is pending in a single-threaded bench"),
    }
}

fn filled(size: usize, text: &TaskText, priorities: &mut Priorities) -> QueueIndex {
    let index = QueueIndex::new(QueueSettings {
        capacity: size + 1,
        retry: RetryPolicy {
            base_ms: 1_000,
            max_ms: 300_000,
        },
        idempotency_ttl_ms: 86_400_000,
        idempotency_max_keys: 1,
    });
    for _ in 0..size {
        let prepared = index
            .prepare_enqueue(&new_task(text, priorities.next()), NOW)
            .expect("below capacity");
        settled(&index, prepared);
    }
    index
}

fn queue(c: &mut Criterion) {
    let text = TaskText::parse("Process payment".to_owned()).expect("valid text");
    let mut priorities = Priorities(0x9E37_79B9_7F4A_7C15);
    let lease = LeaseLength::unchecked(Duration::from_secs(30));
    let mut pairs = c.benchmark_group("queue/enqueue_dequeue");
    for size in [1_000, 10_000, 100_000, 1_000_000] {
        let index = filled(size, &text, &mut priorities);
        pairs.bench_with_input(BenchmarkId::from_parameter(size), &index, |b, index| {
            b.iter(|| {
                let new = new_task(&text, priorities.next());
                settled(
                    index,
                    index.prepare_enqueue(&new, NOW).expect("one slot is free"),
                );
                black_box(settled(index, index.prepare_dequeue(NOW)))
            });
        });
    }
    pairs.finish();
    let mut cycles = c.benchmark_group("queue/enqueue_lease_ack");
    for size in [1_000, 10_000, 100_000, 1_000_000] {
        let index = filled(size, &text, &mut priorities);
        cycles.bench_with_input(BenchmarkId::from_parameter(size), &index, |b, index| {
            b.iter(|| {
                let new = new_task(&text, priorities.next());
                settled(
                    index,
                    index.prepare_enqueue(&new, NOW).expect("one slot is free"),
                );
                let batch = settled(index, index.prepare_lease(BatchSize::ONE, lease, NOW));
                let taken = &batch.tasks[0];
                black_box(settled(
                    index,
                    index.prepare_ack(&[(taken.task.id, taken.lease)], NOW),
                ))
            });
        });
    }
    cycles.finish();
}

criterion_group!(benches, queue);
criterion_main!(benches);
