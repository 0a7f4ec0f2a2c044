//! The building blocks of `GET /metrics`: counters and a histogram that are
//! updated with atomics only, and a writer for the Prometheus text
//! exposition format (version 0.0.4).
//!
//! Each layer owns the numbers it can see (the service its task counts, the
//! HTTP layer its request counts) and writes them through [`Exposition`].

pub mod process;

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
/// Never inlined: the compiler may keep a thread-local's address across a
/// call, and a coroutine can change threads at one (a yield); here the
/// address is taken afresh on every call.
#[inline(never)]
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

/// The most a bucket's upper bound may be above the one before it. Within a
/// bucket, `histogram_quantile` interpolates linearly, so its estimate is
/// off by less than this ratio: under 10% even after the bounds are rounded
/// to four significant digits.
pub const MAX_BUCKET_RATIO: f64 = 1.09;

/// The most finite buckets [`Histogram::spanning`] makes: a wider span gets
/// a larger ratio rather than more series.
pub const MAX_BUCKETS: usize = 40;

/// The lowest bound [`Histogram::spanning`] starts at, in seconds: work of
/// zero still takes some microseconds to observe.
const LOWEST_BOUND: f64 = 1e-4;

/// A histogram of durations: observations counted per bucket, with atomics
/// only.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the finite buckets, in seconds, ascending.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    /// A histogram with the `+Inf` bucket only: a count and a sum.
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Histogram {
    /// A histogram over `bounds`, upper bounds in seconds, ascending.
    pub fn new(bounds: Vec<f64>) -> Self {
        debug_assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]), "{bounds:?}");
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            bounds: bounds.into_boxed_slice(),
            buckets,
            sum_micros: AtomicU64::new(0),
        }
    }

    /// A histogram for durations planned from `shortest` to `longest`: see
    /// [`geometric_bounds`].
    pub fn spanning(shortest: Duration, longest: Duration) -> Self {
        Self::new(geometric_bounds(shortest, longest))
    }

    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = self.bounds.partition_point(|&bound| bound < seconds);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Bucket bounds, in seconds, for durations planned from `shortest` to
/// `longest`: from a little below `shortest` to a little above `longest`
/// plus a millisecond (a sleep overshoots what was planned), each at most
/// [`MAX_BUCKET_RATIO`] above the one before, and no more than
/// [`MAX_BUCKETS`] of them (a wider span gets a larger ratio). Bounds are
/// rounded to four significant digits, so they read well as `le` labels;
/// being geometric, they sit on planned whole seconds or milliseconds only
/// by chance.
pub fn geometric_bounds(shortest: Duration, longest: Duration) -> Vec<f64> {
    let low = (shortest.as_secs_f64() * 0.95).max(LOWEST_BOUND);
    let high = (longest.as_secs_f64() * 1.1 + 1e-3).max(low * MAX_BUCKET_RATIO);
    let span = high / low;
    let steps = (span.ln() / MAX_BUCKET_RATIO.ln()).ceil().min((MAX_BUCKETS - 1) as f64);
    let ratio = span.powf(1.0 / steps);
    (0..=steps as i32)
        .map(|step| significant(low * ratio.powi(step)))
        .collect()
}

/// `value` rounded to four significant digits.
fn significant(value: f64) -> f64 {
    let scale = 10f64.powi(3 - value.log10().floor() as i32);
    (value * scale).round() / scale
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
            let bound = histogram.bounds.get(index).map_or("+Inf".to_owned(), f64::to_string);
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
    use crate::config::WorkRange;

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
        let histogram = Histogram::new(vec![0.005, 0.01, 1.0, 2.0, 60.0]);
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

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn bounds_span_the_work_geometrically_in_at_most_40_buckets() {
        for (min, max) in [
            (0, 0),
            (1, 1),
            (1, 20),
            (1000, 5000),
            (5000, 5000),
            (1, 86_400_000),
            (0, 86_400_000),
        ] {
            let bounds = geometric_bounds(ms(min), ms(max));
            assert!(bounds.len() <= MAX_BUCKETS, "{min}..{max}: {} buckets", bounds.len());
            assert!(bounds[0] < (min as f64 / 1000.0).max(2e-4), "{min}..{max}: {bounds:?}");
            assert!(
                *bounds.last().unwrap() > max as f64 / 1000.0,
                "{min}..{max}: {bounds:?}"
            );
            assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]), "{bounds:?}");
            let ratio = bounds.windows(2).map(|pair| pair[1] / pair[0]).fold(0.0, f64::max);
            if max - min <= 20_000 {
                assert!(ratio < 1.1, "{min}..{max}: ratio {ratio} in {bounds:?}");
            }
        }
        let default = geometric_bounds(ms(1000), ms(5000));
        assert!(default.len() <= 25, "{default:?}");
        // A task planned at 1 to 5 whole seconds is observed a little longer:
        // no bound sits just under a whole second, where half the tasks of
        // that length would fall in the bucket above.
        for (bound, second) in default
            .iter()
            .flat_map(|&bound| (1..=5).map(move |second| (bound, second)))
        {
            let gap = f64::from(second) - bound;
            assert!(!(0.0..0.01).contains(&gap), "a bound at {bound} for work of {second} s");
        }
    }

    /// (upper bound, cumulative count) of each bucket as the page writes
    /// them, `+Inf` last.
    fn page_buckets(histogram: &Histogram) -> Vec<(f64, f64)> {
        let mut page = Exposition::default();
        page.histogram("run_seconds", "Run time.", histogram);
        let text = page.into_text();
        let buckets = text
            .lines()
            .filter_map(|line| line.strip_prefix("run_seconds_bucket{le=\""));
        let parsed = buckets.map(|rest| {
            let (bound, count) = rest.split_once("\"} ").expect("a bucket sample");
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().unwrap()
            };
            (bound, count.parse().unwrap())
        });
        parsed.collect()
    }

    /// What Prometheus's `histogram_quantile` answers for `buckets`: its
    /// `bucketQuantile` (promql/quantile.go), which interpolates linearly
    /// within the bucket the rank falls in.
    fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
        let last = buckets.len() - 1;
        let rank = q * buckets[last].1;
        let b = buckets[..last].partition_point(|&(_, count)| count < rank);
        if b == last {
            return buckets[last - 1].0;
        }
        if b == 0 && buckets[0].0 <= 0.0 {
            return buckets[0].0;
        }
        let (start, below) = if b > 0 { buckets[b - 1] } else { (0.0, 0.0) };
        let (end, count) = buckets[b];
        start + (end - start) * ((rank - below) / (count - below))
    }

    /// Observes 5000 draws from `work`, each overshooting by up to 1.5 ms
    /// as a sleep does, and checks `histogram_quantile` against the true
    /// p50, p90 and p99.
    fn assert_quantiles_within_10_percent(work: WorkRange) {
        let histogram = Histogram::spanning(ms(work.min_ms), ms(work.max_ms));
        let overshoot_micros = [30, 100, 300, 700, 1500];
        let mut observed: Vec<f64> = (0..5000)
            .map(|i| work.draw() + Duration::from_micros(overshoot_micros[i % overshoot_micros.len()]))
            .inspect(|&duration| histogram.observe(duration))
            .map(|duration| duration.as_secs_f64())
            .collect();
        observed.sort_by(f64::total_cmp);
        let buckets = page_buckets(&histogram);
        for q in [0.5, 0.9, 0.99] {
            let truth = observed[(q * observed.len() as f64).ceil() as usize - 1];
            let estimate = histogram_quantile(q, &buckets);
            let error = (estimate - truth).abs() / truth;
            assert!(error < 0.10, "{work:?} p{}: {estimate} for {truth}", q * 100.0);
        }
    }

    #[test]
    fn quantiles_are_within_10_percent_for_whole_second_work() {
        for (min_ms, max_ms) in [(1000, 5000), (5000, 5000), (1000, 1000), (2000, 60_000)] {
            assert_quantiles_within_10_percent(WorkRange { min_ms, max_ms });
        }
    }

    #[test]
    fn quantiles_are_within_10_percent_for_millisecond_work() {
        for (min_ms, max_ms) in [(1, 20), (20, 20), (5, 7), (10, 999)] {
            assert_quantiles_within_10_percent(WorkRange { min_ms, max_ms });
        }
    }
}
