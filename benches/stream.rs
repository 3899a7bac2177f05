//! Serialization cost of `/stream`: producing one chunk of items (random value, one timestamp
//! per chunk, hand-written JSON or NDJSON framing into the reused buffer), for the default chunk
//! of 100 items and the largest of 10 000. Reported as bytes per second, the figure to set
//! against the 500 MB/s the whole route must reach on loopback.
//!
//! `cargo bench --bench stream -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use backflow::metrics::Metrics;
use backflow::stream::{Format, ItemStream, StreamMeter, StreamSpec};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{FutureExt, StreamExt};

/// The next chunk of a stream that never waits (`delay=0`), so polling it completes at once.
fn next_chunk(stream: &mut ItemStream) -> bytes::Bytes {
    stream
        .next()
        .now_or_never()
        .expect("a stream without delay is always ready")
        .expect("an endless stream has a next chunk")
        .expect("infallible")
}

fn encode(c: &mut Criterion) {
    let metrics = Metrics::new();
    let mut group = c.benchmark_group("stream/chunk");
    for format in [Format::Json, Format::Ndjson] {
        for chunk_size in [100u32, 10_000] {
            let spec = StreamSpec {
                chunk_size,
                total_items: u64::MAX,
                delay: Duration::ZERO,
                format,
            };
            let mut stream = ItemStream::new(spec, StreamMeter::new(&metrics));
            // Skip the first chunk (it opens the JSON array) and size the throughput on the next.
            next_chunk(&mut stream);
            group.throughput(Throughput::Bytes(next_chunk(&mut stream).len() as u64));
            let name = match format {
                Format::Json => "json",
                Format::Ndjson => "ndjson",
            };
            group.bench_function(BenchmarkId::new(name, chunk_size), |b| {
                b.iter(|| black_box(next_chunk(&mut stream)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
