//! What the micro-benchmark files share: the criterion settings, short
//! enough that a full `cargo bench` takes a few minutes on a 2-core machine,
//! and a way to run one operation from several threads at once.

use std::ops::Range;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::Criterion;

/// Criterion with a 1 s warm-up and a 2 s measurement per benchmark, and
/// no plots: drawing them took longer than measuring. The estimates are
/// still saved under target/criterion, so a later run reports the change.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

/// `iters` operations shared out among `threads` threads: contiguous ranges
/// whose lengths differ by at most one.
#[allow(dead_code, reason = "not every bench file runs threads")]
pub fn split(iters: u64, threads: usize) -> Vec<Range<u64>> {
    let threads = threads as u64;
    (0..threads)
        .map(|thread| iters * thread / threads..iters * (thread + 1) / threads)
        .collect()
}

/// Runs `work` once per input, each on a thread of its own, all released
/// together by a barrier. Returns the wall-clock time from the first thread's
/// start to the last one's finish, so spawning and joining are not counted.
#[allow(dead_code, reason = "not every bench file runs threads")]
pub fn concurrently<I: Send>(inputs: Vec<I>, work: impl Fn(I) + Sync) -> Duration {
    let barrier = Barrier::new(inputs.len());
    let spans: Vec<(Instant, Instant)> = thread::scope(|scope| {
        let running: Vec<_> = inputs
            .into_iter()
            .map(|input| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    work(input);
                    (start, Instant::now())
                })
            })
            .collect();
        running
            .into_iter()
            .map(|thread| thread.join().expect("a benchmark thread panicked"))
            .collect()
    });
    let first = spans.iter().map(|span| span.0).min().expect("at least one thread");
    let last = spans.iter().map(|span| span.1).max().expect("at least one thread");
    last - first
}
