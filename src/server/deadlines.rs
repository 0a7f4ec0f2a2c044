//! Read deadlines for connections that wait for bytes with may's
//! `wait_io`, which has no timeout of its own.
//!
//! A socket read timeout in may costs a `setsockopt` to set it and a timer
//! registered and removed each time the connection parks; a keep-alive
//! connection parks once per request. Here, instead, one sweeper coroutine
//! per server sleeps until the earliest deadline and wakes the connections
//! whose deadline has come, and a connection's place in the schedule is
//! kept lazily: a connection that waits again with a later deadline (the
//! next request's) keeps its place, and is only put back in the schedule,
//! at its real deadline, when the sweeper reaches the old one. So a busy
//! keep-alive connection touches the schedule about once per idle timeout,
//! and a waiting one costs the sweeper nothing until its deadline: no
//! polling, no work that grows with the connections open.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use log::warn;
use may::sync::Blocker;

/// What wakes a connection waiting for bytes.
pub(crate) trait Wake: Send + Sync {
    /// Makes the connection's wait return.
    fn wake(&self);
}

/// One connection's alarm: how to wake it, and whether the sweeper has
/// taken it out of the schedule to ring it.
pub(crate) struct Alarm {
    wake: Box<dyn Wake>,
    rang: AtomicBool,
}

impl Alarm {
    /// An alarm that wakes with `wake`.
    pub(crate) fn new(wake: Box<dyn Wake>) -> Arc<Self> {
        Arc::new(Self {
            wake,
            rang: AtomicBool::new(false),
        })
    }
}

/// Where an alarm is in the schedule: its time, and a number that tells
/// apart alarms of the same time.
pub(crate) type Place = (Instant, u64);

/// The deadlines of one server's connections.
#[derive(Default)]
pub(crate) struct Deadlines {
    schedule: Arc<Schedule>,
}

#[derive(Default)]
struct Schedule {
    alarms: Mutex<BTreeMap<Place, Arc<Alarm>>>,
    next_number: AtomicU64,
    sweeper_started: AtomicBool,
    /// Set by the sweeper once it runs: what wakes it early.
    sweeper: OnceLock<Arc<Blocker>>,
}

impl Drop for Schedule {
    fn drop(&mut self) {
        // The sweeper, parked with nothing to wait for, finds the schedule
        // gone and ends.
        if let Some(sweeper) = self.sweeper.get() {
            sweeper.unpark();
        }
    }
}

/// One connection's read deadline, as the connection keeps it.
#[derive(Default)]
pub(crate) struct ReadDeadline {
    alarm: Option<Arc<Alarm>>,
    /// Where the alarm is in the schedule, as far as the connection knows;
    /// never later than the deadline of the wait in progress.
    place: Option<Place>,
}

impl ReadDeadline {
    /// Makes sure the connection is woken at `at` at the latest, with
    /// `wake` (asked for only the first time).
    pub(crate) fn arm(&mut self, deadlines: &Deadlines, at: Instant, wake: impl FnOnce() -> Box<dyn Wake>) {
        let alarm = self.alarm.get_or_insert_with(|| Alarm::new(wake()));
        // Read before it is reset: a locked swap on every wait cost more
        // than the rest of `arm`, and the alarm has almost never rung.
        if alarm.rang.load(Ordering::Acquire) && alarm.rang.swap(false, Ordering::AcqRel) {
            self.place = None;
        }
        match self.place {
            Some((when, _)) if when <= at => {}
            Some(place) => {
                deadlines.cancel(place);
                self.place = Some(deadlines.schedule(alarm, at));
            }
            None => self.place = Some(deadlines.schedule(alarm, at)),
        }
    }

    /// Whether the wait that ended was ended by the sweeper with `at`
    /// passed: a wait ended by bytes arriving reads no clock.
    pub(crate) fn passed(&self, at: Instant) -> bool {
        self.alarm
            .as_ref()
            .is_some_and(|alarm| alarm.rang.load(Ordering::Acquire))
            && Instant::now() >= at
    }

    /// Takes the alarm out of the schedule, for a connection that ends.
    pub(crate) fn disarm(&mut self, deadlines: &Deadlines) {
        if let Some(place) = self.place.take() {
            deadlines.cancel(place);
        }
    }
}

impl Deadlines {
    /// Rings `alarm` at `at`; where it is in the schedule.
    fn schedule(&self, alarm: &Arc<Alarm>, at: Instant) -> Place {
        self.start_sweeper();
        let schedule = &self.schedule;
        let place = (at, schedule.next_number.fetch_add(1, Ordering::Relaxed));
        let first = {
            let mut alarms = schedule.alarms.lock().unwrap_or_else(PoisonError::into_inner);
            alarms.insert(place, alarm.clone());
            alarms.first_key_value().is_some_and(|(first, _)| *first == place)
        };
        if first && let Some(sweeper) = schedule.sweeper.get() {
            // It sleeps until a later deadline.
            sweeper.unpark();
        }
        place
    }

    fn cancel(&self, place: Place) {
        let mut alarms = self.schedule.alarms.lock().unwrap_or_else(PoisonError::into_inner);
        alarms.remove(&place);
    }

    /// Starts the sweeper on the first alarm: a server whose clients never
    /// wait (and the in-memory connections of tests) has none.
    fn start_sweeper(&self) {
        let schedule = &self.schedule;
        if schedule.sweeper_started.load(Ordering::Relaxed) || schedule.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(schedule);
        // SAFETY: the sweeper blocks only on a may Blocker and takes the
        // schedule's lock for bounded work (no wait, no I/O under it); it
        // touches no thread-local state.
        let spawned = unsafe {
            may::coroutine::Builder::new()
                .name("deadlines".into())
                .spawn(move || sweep(&weak))
        };
        if let Err(err) = spawned {
            // The next alarm tries again.
            schedule.sweeper_started.store(false, Ordering::Release);
            warn!("cannot start the coroutine that times connections out: {err}");
        }
    }
}

/// Added to every sleep of the sweeper: may's timers can fire a little
/// early (and one of no length may not fire), and a sweeper woken before
/// the deadline would only sleep again.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// Sleeps until the earliest deadline, rings the alarms whose time has
/// come, and sleeps again; ends when the schedule is dropped.
fn sweep(schedule: &Weak<Schedule>) {
    let blocker = Blocker::current();
    match schedule.upgrade() {
        Some(schedule) => {
            let _ = schedule.sweeper.set(blocker.clone());
        }
        None => return,
    }
    loop {
        let Some(schedule) = schedule.upgrade() else {
            return;
        };
        let (due, next) = schedule.take_due(Instant::now());
        drop(schedule);
        for alarm in due.into_values() {
            alarm.rang.store(true, Ordering::Release);
            alarm.wake.wake();
        }
        let _ = blocker.park(next.map(|at| at.saturating_duration_since(Instant::now()) + TIMER_SLACK));
    }
}

impl Schedule {
    /// Takes out the alarms due by `now`; the time of the next one.
    fn take_due(&self, now: Instant) -> (BTreeMap<Place, Arc<Alarm>>, Option<Instant>) {
        let mut alarms = self.alarms.lock().unwrap_or_else(PoisonError::into_inner);
        let later = alarms.split_off(&(now, u64::MAX));
        let due = std::mem::replace(&mut *alarms, later);
        let next = alarms.first_key_value().map(|((at, _), _)| *at);
        (due, next)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    struct Count(Arc<AtomicUsize>);

    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<AtomicUsize>, impl FnOnce() -> Box<dyn Wake>) {
        let count = Arc::new(AtomicUsize::new(0));
        let wake = count.clone();
        (count, move || Box::new(Count(wake)) as Box<dyn Wake>)
    }

    /// Alarms in the schedule now.
    fn scheduled(deadlines: &Deadlines) -> usize {
        deadlines.schedule.alarms.lock().unwrap().len()
    }

    fn await_count(count: &AtomicUsize, at_least: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while count.load(Ordering::SeqCst) < at_least {
            assert!(Instant::now() < deadline, "not woken");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn an_alarm_rings_at_its_deadline_and_not_before() {
        let deadlines = Deadlines::default();
        let (count, wake) = counter();
        let mut deadline = ReadDeadline::default();
        let at = Instant::now() + Duration::from_millis(50);
        deadline.arm(&deadlines, at, wake);
        assert!(!deadline.passed(at));
        await_count(&count, 1);
        assert!(Instant::now() >= at);
        assert!(deadline.passed(at));
        assert_eq!(scheduled(&deadlines), 0);
    }

    #[test]
    fn a_later_deadline_keeps_the_earlier_place_and_is_put_back_when_it_rings() {
        let deadlines = Deadlines::default();
        let (count, wake) = counter();
        let mut deadline = ReadDeadline::default();
        let first = Instant::now() + Duration::from_millis(20);
        deadline.arm(&deadlines, first, wake);
        let later = first + Duration::from_secs(3600);
        deadline.arm(&deadlines, later, || unreachable!("the alarm is made once"));
        assert_eq!(
            deadline.place.map(|(at, _)| at),
            Some(first),
            "the earlier place is kept"
        );
        await_count(&count, 1);
        assert!(!deadline.passed(later), "rung early, the wait goes on");
        deadline.arm(&deadlines, later, || unreachable!());
        assert_eq!(
            deadline.place.map(|(at, _)| at),
            Some(later),
            "back in the schedule at its deadline"
        );
        deadline.disarm(&deadlines);
        assert_eq!(scheduled(&deadlines), 0);
    }

    #[test]
    fn an_earlier_deadline_moves_the_alarm_and_wakes_the_sweeper() {
        let deadlines = Deadlines::default();
        let (count, wake) = counter();
        let mut deadline = ReadDeadline::default();
        deadline.arm(&deadlines, Instant::now() + Duration::from_secs(3600), wake);
        let soon = Instant::now() + Duration::from_millis(20);
        deadline.arm(&deadlines, soon, || unreachable!());
        await_count(&count, 1);
        assert!(deadline.passed(soon));
        assert_eq!(scheduled(&deadlines), 0, "the later place was given up");
    }
}
