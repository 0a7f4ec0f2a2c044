//! The building blocks of `GET /metrics`: counters and a histogram that are
//! updated with atomics only, and a writer for the Prometheus text
//! exposition format (version 0.0.4).
//!
//! Each layer owns the numbers it can see (the service its task counts, the
//! HTTP layer its request counts) and writes them through [`Exposition`].

use std::cell::Cell;
use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn increment(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A table of counters cheap enough to bump on every request: each thread
/// that counts gets a copy of its own (up to [`STRIPES`] threads), which only
/// it writes, so a count is a plain load and store: no locked instruction,
/// no cache line shared between cores. Threads beyond that share one copy
/// and add atomically. A read adds the copies up.
#[derive(Debug)]
pub struct StripedCounters<const N: usize> {
    /// `STRIPES` private copies, then the shared one.
    stripes: Box<[Stripe<N>]>,
}

/// One copy, alone on its cache lines.
#[derive(Debug)]
#[repr(align(128))]
struct Stripe<const N: usize>([AtomicU64; N]);

/// Threads that get a private copy: more than the scheduler threads of any
/// machine this server is likely to run on.
const STRIPES: usize = 64;

impl<const N: usize> Default for StripedCounters<N> {
    fn default() -> Self {
        Self {
            stripes: (0..=STRIPES)
                .map(|_| Stripe(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }
}

impl<const N: usize> StripedCounters<N> {
    /// Adds one to counter `index` (< N).
    pub fn increment(&self, index: usize) {
        match thread_number() {
            Some(own) if own < STRIPES => {
                // Only this thread writes this copy, so load-then-store loses
                // no count; readers see each store whole.
                let counter = &self.stripes[own].0[index];
                counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            _ => {
                self.stripes[STRIPES].0[index].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The count of counter `index` so far.
    pub fn get(&self, index: usize) -> u64 {
        self.stripes
            .iter()
            .map(|stripe| stripe.0[index].load(Ordering::Relaxed))
            .sum()
    }
}

/// A number for the calling thread, unique in the process, given in turn as
/// threads first ask (`None` while the thread is being torn down). Read once
/// per count, never held across a coroutine's yield, so a coroutine moving
/// between threads is harmless: what matters is the thread doing the store.
fn thread_number() -> Option<usize> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    const UNASSIGNED: usize = usize::MAX;
    thread_local! {
        // Const-initialised and without a destructor: reading it is one load.
        static NUMBER: Cell<usize> = const { Cell::new(UNASSIGNED) };
    }
    NUMBER
        .try_with(|number| {
            if number.get() == UNASSIGNED {
                number.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            number.get()
        })
        .ok()
}

/// Upper bounds, in seconds, of the buckets of [`Histogram`] (the last,
/// `+Inf`, is implicit). They suit work of milliseconds to a minute; the
/// default work of 1 to 5 s falls in the whole-second buckets.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 30.0, 60.0,
];

/// A histogram of durations over [`DURATION_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// A metrics page being written in the Prometheus text format.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

/// What kind of metric a family is.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Bucketed observations.
    Histogram,
}

impl Exposition {
    /// Starts a metric family with its `HELP` and `TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// Writes a family that has one sample and no labels.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// Writes one sample. Label values are written as given: callers pass
    /// only fixed names that need no escaping.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, label_value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{label_value}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
        self
    }

    /// Writes a whole histogram family.
    pub fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) -> &mut Self {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (index, count) in histogram.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = DURATION_BUCKETS.get(index).map_or("+Inf".to_owned(), f64::to_string);
            self.sample(&bucket, &[("le", &bound)], cumulative);
        }
        let sum = histogram.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], cumulative)
    }

    /// The page.
    pub fn into_text(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counters_add_up_across_threads() {
        let counters = std::sync::Arc::new(StripedCounters::<3>::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counters.increment(1);
                    }
                    counters.increment(2);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!([counters.get(0), counters.get(1), counters.get(2)], [0, 8000, 8]);
    }

    #[test]
    fn threads_beyond_the_private_copies_share_one_and_lose_nothing() {
        let counters = std::sync::Arc::new(StripedCounters::<1>::default());
        let threads: Vec<_> = (0..STRIPES + 36)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || (0..100).for_each(|_| counters.increment(0)))
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(counters.get(0), (STRIPES as u64 + 36) * 100);
        assert!(counters.stripes[STRIPES].0[0].load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn families_and_samples_follow_the_text_format() {
        let mut page = Exposition::default();
        page.family("jobs_total", Kind::Counter, "Jobs seen.")
            .sample("jobs_total", &[("kind", "a"), ("class", "2xx")], 3)
            .sample("jobs_total", &[], 4)
            .single("depth", Kind::Gauge, "Depth now.", 2);
        assert_eq!(
            page.into_text(),
            "# HELP jobs_total Jobs seen.\n# TYPE jobs_total counter\njobs_total{kind=\"a\",class=\"2xx\"} 3\njobs_total 4\n\
             # HELP depth Depth now.\n# TYPE depth gauge\ndepth 2\n"
        );
    }

    #[test]
    fn a_histogram_is_cumulative_with_sum_and_count() {
        let histogram = Histogram::default();
        for millis in [3, 10, 1500, 2000, 90_000] {
            histogram.observe(Duration::from_millis(millis));
        }
        let mut page = Exposition::default();
        page.histogram("run_seconds", "Run time.", &histogram);
        let text = page.into_text();
        for line in [
            "# TYPE run_seconds histogram",
            "run_seconds_bucket{le=\"0.005\"} 1",
            "run_seconds_bucket{le=\"0.01\"} 2",
            "run_seconds_bucket{le=\"1\"} 2",
            "run_seconds_bucket{le=\"2\"} 4",
            "run_seconds_bucket{le=\"60\"} 4",
            "run_seconds_bucket{le=\"+Inf\"} 5",
            "run_seconds_sum 93.513",
            "run_seconds_count 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
