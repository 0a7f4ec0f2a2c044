//! The task store (`worker_pool::store::TaskStore`, a sharded `DashMap`
//! plus an atomic id counter): storing a task (every `POST /tasks`), reading
//! one (`GET /tasks/{id}`), reading one and writing its JSON under the
//! shard's read lock (what that handler actually does), and moving a pending
//! task to `running` (what a worker does first).
//!
//! Each operation is measured alone on one thread, then from 2 and 4
//! threads at once on one shared store, because the server runs them
//! concurrently: handlers and workers are coroutines spread over several
//! threads. Every case shares its operations out among its threads, which a
//! barrier starts together, and reports the wall-clock time per operation
//! for all threads together: perfect scaling halves it with two threads; on
//! a 2-core machine four threads cannot beat two, so the 4-thread case shows
//! what oversubscription costs.
//!
//! Reads go to a store of 1000 tasks: `get` and `get_write_json` all ask for
//! task 1, a hot key like the load benchmark's `GET /tasks/1`, so every
//! thread takes the same shard's read lock; `get_spread` walks all 1000 ids
//! (each thread from its own offset), which sets the hot key's lock traffic
//! apart from what the machine allows. Inserts and status updates run in
//! rounds of 32768 operations, each on a fresh store set up outside the
//! timing: memory stays bounded, every sample sees a store of the same size
//! (inserts pay for its growth from empty), and every update finds its task
//! pending (a task moves to `running` only once).

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use worker_pool::domain::{Task, TaskId, TaskStatus};
use worker_pool::store::TaskStore;

mod common;

use common::{concurrently, split};

/// The thread counts every operation is measured with.
const THREADS: [usize; 3] = [1, 2, 4];
/// How many tasks the store holds for the reads.
const STORED: TaskId = 1000;
/// The task every hot-key read asks for.
const HOT_ID: TaskId = 1;
/// How many inserts or updates share one fresh store.
const ROUND: u64 = 32_768;

fn task() -> Task {
    Task::new("bench", "d", Duration::from_secs(3))
}

fn threads_label(threads: usize) -> String {
    if threads == 1 {
        "1-thread".to_owned()
    } else {
        format!("{threads}-threads")
    }
}

/// `iters` cut into rounds of at most [`ROUND`] operations.
fn rounds(iters: u64) -> impl Iterator<Item = u64> {
    (0..iters.div_ceil(ROUND)).map(move |round| ROUND.min(iters - round * ROUND))
}

/// A store holding `count` copies of [`task`], ids 1 to `count`.
fn filled_store(count: u64) -> TaskStore {
    let store = TaskStore::new();
    let template = task();
    for _ in 0..count {
        store.insert(template.clone());
    }
    store
}

fn insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    for threads in THREADS {
        group.bench_function(BenchmarkId::new("insert", threads_label(threads)), |b| {
            let template = task();
            b.iter_custom(|iters| {
                rounds(iters)
                    .map(|round| {
                        let store = TaskStore::new();
                        let batches: Vec<Vec<Task>> = split(round, threads)
                            .into_iter()
                            .map(|ops| ops.map(|_| template.clone()).collect())
                            .collect();
                        concurrently(batches, |tasks| {
                            for task in tasks {
                                black_box(store.insert(task));
                            }
                        })
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

fn get(c: &mut Criterion) {
    let store = filled_store(STORED as u64);
    let mut group = c.benchmark_group("store");
    for threads in THREADS {
        group.bench_function(BenchmarkId::new("get", threads_label(threads)), |b| {
            b.iter_custom(|iters| {
                concurrently(split(iters, threads), |ops| {
                    for _ in ops {
                        let _ = black_box(store.with_task(black_box(HOT_ID), Task::status));
                    }
                })
            })
        });
    }
    for threads in THREADS {
        group.bench_function(BenchmarkId::new("get_spread", threads_label(threads)), |b| {
            b.iter_custom(|iters| {
                concurrently(split(iters, threads), |ops| {
                    // Each thread starts at its own place among the ids.
                    let mut id = (ops.start % STORED as u64) as TaskId;
                    for _ in ops {
                        id = if id == STORED { 1 } else { id + 1 };
                        let _ = black_box(store.with_task(black_box(id), Task::status));
                    }
                })
            })
        });
    }
    for threads in THREADS {
        group.bench_function(BenchmarkId::new("get_write_json", threads_label(threads)), |b| {
            b.iter_custom(|iters| {
                let inputs = split(iters, threads)
                    .into_iter()
                    .map(|ops| (ops, BytesMut::with_capacity(256)))
                    .collect();
                concurrently(inputs, |(ops, mut out)| {
                    for _ in ops {
                        out.clear();
                        let id = black_box(HOT_ID);
                        let _ = store.with_task(id, |task| task.write_json(id, &mut out));
                        black_box(&out);
                    }
                })
            })
        });
    }
    group.finish();
}

fn advance(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    for threads in THREADS {
        group.bench_function(BenchmarkId::new("advance_to_running", threads_label(threads)), |b| {
            b.iter_custom(|iters| {
                rounds(iters)
                    .map(|round| {
                        let store = filled_store(round);
                        concurrently(split(round, threads), |ops| {
                            for index in ops {
                                let id = index as TaskId + 1;
                                let work = store.advance(black_box(id), TaskStatus::Running);
                                black_box(work.expect("a fresh task is pending"));
                            }
                        })
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = insert, get, advance
}
criterion_main!(benches);
