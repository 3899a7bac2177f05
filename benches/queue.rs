//! Cost of one enqueue + dequeue pair on a queue already holding n tasks, for n = 10^3..10^6.
//!
//! The pair keeps the size at n, so each sample measures the heap at that height: the figures
//! should grow by a roughly constant step per factor of ten (O(log n)), not tenfold.
//!
//! `cargo bench --bench queue -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use backflow::queue::{MemoryQueue, Priority, QueuedTask, TaskText};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// Priorities spread over this many values, so ties and sifting both happen.
const PRIORITY_SPREAD: u64 = 1_000;

/// A small deterministic generator (xorshift64): the same runs give the same heaps.
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

fn task(text: &TaskText, priority: Priority) -> QueuedTask {
    QueuedTask::new(text.clone(), priority)
}

fn enqueue_dequeue(c: &mut Criterion) {
    let text = TaskText::parse("Process payment".to_owned()).expect("valid text");
    let mut priorities = Priorities(0x9E37_79B9_7F4A_7C15);
    let mut group = c.benchmark_group("queue/enqueue_dequeue");
    for size in [1_000, 10_000, 100_000, 1_000_000] {
        let queue = MemoryQueue::new(size + 1);
        for _ in 0..size {
            queue
                .push(task(&text, priorities.next()))
                .expect("below capacity");
        }
        let template = task(&text, priorities.next());
        group.bench_with_input(BenchmarkId::from_parameter(size), &queue, |b, queue| {
            b.iter(|| {
                let mut entry = template.clone();
                entry.priority = priorities.next();
                queue.push(entry).expect("one slot is free");
                black_box(queue.pop())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, enqueue_dequeue);
criterion_main!(benches);
