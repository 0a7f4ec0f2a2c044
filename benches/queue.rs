//! The task queue (`worker_pool::pool::TaskQueue`): a bounded lock-free
//! array of task ids with a may semaphore counting them, so idle workers
//! park on it instead of polling. Every accepted `POST /tasks` submits one
//! id and a worker takes it.
//!
//! - `submit_take`: submit then take on one thread. The queue is never empty
//!   when taken from, so nothing parks: this is the bookkeeping alone (the
//!   in-flight counter, the array push and pop, the semaphore post and its
//!   uncontended wait).
//! - `handoff`: a producer thread submits N ids while a consumer thread
//!   takes them, time per id passed. Whenever the consumer catches up it
//!   parks on the semaphore and the producer's post has to wake it, so this
//!   shows what the notifier costs across threads. With room for 10 ids (the
//!   default `POOL_SIZE`) the producer also often finds the queue full; it
//!   then yields and retries, where the server would answer 503.

use std::hint::black_box;
use std::thread;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use worker_pool::domain::TaskId;
use worker_pool::pool::TaskQueue;

mod common;

use common::concurrently;

fn submit_take(c: &mut Criterion) {
    let queue = TaskQueue::new(1024);
    let mut id: TaskId = 0;
    c.bench_function("queue/submit_take", |b| {
        b.iter(|| {
            id += 1;
            queue.submit(black_box(id)).expect("the queue has room");
            black_box(queue.take())
        })
    });
}

/// One side of a hand-off.
enum Side {
    Produce,
    Consume,
}

fn handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue/handoff");
    for capacity in [10, 1024] {
        group.bench_function(BenchmarkId::new("capacity", capacity), |b| {
            b.iter_custom(|iters| {
                let queue = TaskQueue::new(capacity);
                let elapsed = concurrently(vec![Side::Produce, Side::Consume], |side| match side {
                    Side::Produce => {
                        for id in 1..=iters as TaskId {
                            while queue.submit(id).is_err() {
                                thread::yield_now();
                            }
                        }
                    }
                    Side::Consume => {
                        for _ in 0..iters {
                            black_box(queue.take().expect("the queue is never closed"));
                        }
                    }
                });
                assert!(queue.is_empty());
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = submit_take, handoff
}
criterion_main!(benches);
