//! Event fan-out: publishing one event and delivering it to every subscriber, for 1, 100 and
//! 1 000 subscribers. The event is serialized once and shared, so the cost per subscriber
//! should be a small constant (a reference-count increment and a wake-up).
//!
//! `cargo bench --bench events -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use backflow::events::{Delivery, Level, MemoryEventBus, NewEvent};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use futures_util::future::join_all;

fn fan_out(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let mut group = c.benchmark_group("events/publish_and_deliver");
    for subscribers in [1usize, 100, 1_000] {
        let bus = MemoryEventBus::new(1_000);
        let mut subs: Vec<_> = (0..subscribers).map(|_| bus.subscribe_now(None)).collect();
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter(|| {
                    bus.publish_now(
                        NewEvent::app("bench.event", Level::Info, "fan-out").with("n", 1),
                    );
                    runtime.block_on(async {
                        let received = join_all(subs.iter_mut().map(|s| s.live.next())).await;
                        for delivery in received {
                            assert!(matches!(delivery, Some(Delivery::Event(_))));
                            black_box(delivery);
                        }
                    });
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
