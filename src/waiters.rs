//! Who is waiting for a task to finish: a list per task of parked
//! coroutines, each woken once when the task reaches `done`, `failed` or
//! `canceled`, so that nobody polls.
//!
//! Two kinds of waiters share the lists:
//!
//! - a client's `GET /tasks/{id}?wait=...` ([`WaiterKind::Client`]), which
//!   is also woken when waiting is [closed](Waiters::close) for shutdown,
//!   so that every waiting request is answered at once;
//! - the worker running the task ([`WaiterKind::Worker`]), parked for the
//!   task's work duration, so that a cancel interrupts its work.
//!
//! Each waiter parks on a [`may::sync::Blocker`] of its own with its
//! deadline as the timeout: a parked coroutine costs no CPU until it is
//! woken or its time is up, and nothing holds a lock while parked. The
//! lists sit in a sharded map whose locks are held for a push, a swap
//! remove or a take, never across a park or a wake-up.
//!
//! Registering does not race with a transition as long as the waiter
//! registers first and only then reads the task's status (under the store's
//! shard lock): either that read sees the new status, or the transition,
//! which changes the status under the same lock and only then calls
//! [`wake`](Waiters::wake), finds the waiter in the list.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use may::sync::Blocker;
use rustc_hash::FxBuildHasher;

use crate::domain::TaskId;

/// What wakes a waiter besides its task finishing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaiterKind {
    /// A request waiting to answer: also woken, and no longer admitted, once
    /// waiting is closed for shutdown.
    Client,
    /// The worker running the task: woken only by the task finishing (it
    /// is canceled), so that a shutdown lets it work on.
    Worker,
}

/// One parked (or about to park) coroutine.
struct Waiter {
    blocker: Arc<Blocker>,
    kind: WaiterKind,
}

/// The waiters of every task that has any.
pub struct Waiters {
    /// Ids are assigned by the server, so a fast non-keyed hash is safe.
    lists: DashMap<TaskId, Vec<Waiter>, FxBuildHasher>,
    /// Registrations alive, of both kinds: a transition with nobody waiting
    /// anywhere (the usual case) costs one load.
    registered: AtomicUsize,
    /// Client registrations alive, for the metrics.
    clients: AtomicUsize,
    /// Set by [`close`](Self::close): clients are no longer made to wait.
    closed: AtomicBool,
}

impl Default for Waiters {
    fn default() -> Self {
        Self::new()
    }
}

impl Waiters {
    /// No waiters, open.
    pub fn new() -> Self {
        Self {
            lists: DashMap::with_hasher(FxBuildHasher),
            registered: AtomicUsize::new(0),
            clients: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Adds the calling coroutine (or thread) to the waiters of task `id`.
    /// `None` for a client once waiting is closed: it should answer at once.
    /// The caller must read the task's status after this returns, and park
    /// only if the task has not finished.
    pub fn register(&self, id: TaskId, kind: WaiterKind) -> Option<Registration<'_>> {
        let blocker = Blocker::current();
        self.registered.fetch_add(1, Ordering::SeqCst);
        self.lists.entry(id).or_default().push(Waiter {
            blocker: blocker.clone(),
            kind,
        });
        // Counted once in the list, so that a count of n waiting clients
        // means n that a close would find and wake.
        if kind == WaiterKind::Client {
            self.clients.fetch_add(1, Ordering::Relaxed);
        }
        let registration = Registration {
            waiters: self,
            id,
            kind,
            blocker,
        };
        // Read after the push: a close either sees the waiter in its list
        // (and wakes it) or happened before the push, and is seen here.
        if kind == WaiterKind::Client && self.is_closed() {
            return None;
        }
        Some(registration)
    }

    /// Wakes every waiter of task `id`; called after each move of the task
    /// to a finished status, once the store's lock on it is released.
    pub fn wake(&self, id: TaskId) {
        if self.registered.load(Ordering::SeqCst) == 0 {
            return;
        }
        if let Some((_, list)) = self.lists.remove(&id) {
            for waiter in list {
                waiter.blocker.unpark();
            }
        }
    }

    /// Wakes every waiting client, and makes later ones answer at once
    /// instead of waiting; workers keep working. Returns how many clients
    /// were woken.
    pub fn close(&self) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        let mut woken = 0;
        self.lists.retain(|_, list| {
            list.retain(|waiter| match waiter.kind {
                WaiterKind::Worker => true,
                WaiterKind::Client => {
                    waiter.blocker.unpark();
                    woken += 1;
                    false
                }
            });
            !list.is_empty()
        });
        woken
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// How many clients are waiting now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Takes one waiter out of its task's list, if a wake-up has not taken
    /// the whole list already.
    fn remove(&self, id: TaskId, blocker: &Arc<Blocker>) {
        let emptied = match self.lists.get_mut(&id) {
            Some(mut list) => {
                if let Some(at) = list.iter().position(|waiter| Arc::ptr_eq(&waiter.blocker, blocker)) {
                    list.swap_remove(at);
                }
                list.is_empty()
            }
            None => false,
        };
        if emptied {
            self.lists.remove_if(&id, |_, list| list.is_empty());
        }
    }
}

/// One waiter's place in its task's list; dropping it takes the place back
/// (if a wake-up has not), so a waiter that timed out leaves nothing behind.
pub struct Registration<'a> {
    waiters: &'a Waiters,
    id: TaskId,
    kind: WaiterKind,
    blocker: Arc<Blocker>,
}

impl Registration<'_> {
    /// Parks the calling coroutine until the task finishes (or, for a
    /// client, waiting closes) or `timeout` passes; true if it was woken.
    /// Returns at once if the wake-up came before the park. The timeout is
    /// rounded up to whole milliseconds, at least one: may keeps a park's
    /// timeout in milliseconds, and takes 0 for no timeout at all, so a
    /// remainder under a millisecond would otherwise park for ever.
    pub fn park(&self, timeout: Duration) -> bool {
        self.blocker.park(Some(whole_millis(timeout))).is_ok()
    }
}

/// `timeout` rounded up to whole milliseconds, at least one.
fn whole_millis(timeout: Duration) -> Duration {
    let millis = timeout.as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.waiters.remove(self.id, &self.blocker);
        if self.kind == WaiterKind::Client {
            self.waiters.clients.fetch_sub(1, Ordering::Relaxed);
        }
        self.waiters.registered.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_wake_up_reaches_every_waiter_of_that_task_only() {
        let waiters = Waiters::new();
        let first = waiters.register(1, WaiterKind::Client).unwrap();
        let second = waiters.register(1, WaiterKind::Worker).unwrap();
        let other = waiters.register(2, WaiterKind::Client).unwrap();
        waiters.wake(1);
        // Woken before parking: the park returns at once, as woken.
        assert!(first.park(Duration::from_secs(10)));
        assert!(second.park(Duration::from_secs(10)));
        assert!(!other.park(Duration::from_millis(1)), "task 2 did not finish");
        assert_eq!(waiters.clients(), 2);
        drop((first, second, other));
        assert_eq!(waiters.clients(), 0);
        assert!(waiters.lists.is_empty(), "nothing is left behind");
        assert_eq!(waiters.registered.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_waiter_that_times_out_leaves_its_list() {
        let waiters = Waiters::new();
        let staying = waiters.register(5, WaiterKind::Client).unwrap();
        let leaving = waiters.register(5, WaiterKind::Client).unwrap();
        let started = Instant::now();
        assert!(!leaving.park(Duration::from_millis(20)));
        assert!(started.elapsed() >= Duration::from_millis(19));
        drop(leaving);
        assert_eq!(waiters.lists.get(&5).map(|list| list.len()), Some(1));
        drop(staying);
        assert!(waiters.lists.is_empty());
    }

    #[test]
    fn timeouts_are_whole_milliseconds_never_zero() {
        assert_eq!(whole_millis(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(whole_millis(Duration::from_nanos(1)), Duration::from_millis(1));
        assert_eq!(whole_millis(Duration::from_micros(1500)), Duration::from_millis(2));
        assert_eq!(whole_millis(Duration::from_secs(3)), Duration::from_secs(3));
    }

    #[test]
    fn a_coroutine_parked_for_less_than_a_millisecond_wakes_up() {
        let waiters = Arc::new(Waiters::new());
        let parker = waiters.clone();
        // SAFETY: the coroutine holds no thread-local across its park.
        let parked = unsafe {
            may::coroutine::spawn(move || {
                let registration = parker.register(1, WaiterKind::Worker).unwrap();
                registration.park(Duration::from_micros(300))
            })
        };
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || done.send(parked.join()));
        let woken = finished.recv_timeout(Duration::from_secs(10)).expect("parked for ever");
        assert!(!woken.unwrap(), "timed out, not woken");
    }

    #[test]
    fn a_parked_thread_is_woken_by_another() {
        let waiters = Arc::new(Waiters::new());
        let (registered, has_registered) = mpsc::channel();
        let parked = {
            let waiters = waiters.clone();
            std::thread::spawn(move || {
                let registration = waiters.register(9, WaiterKind::Client).unwrap();
                registered.send(()).unwrap();
                registration.park(Duration::from_secs(30))
            })
        };
        has_registered.recv().unwrap();
        waiters.wake(9);
        assert!(parked.join().unwrap(), "woken, not timed out");
    }

    #[test]
    fn closing_wakes_clients_and_refuses_new_ones_but_spares_workers() {
        let waiters = Waiters::new();
        let client = waiters.register(3, WaiterKind::Client).unwrap();
        let worker = waiters.register(3, WaiterKind::Worker).unwrap();
        assert_eq!(waiters.close(), 1);
        assert!(client.park(Duration::from_secs(10)));
        assert!(!worker.park(Duration::from_millis(1)), "a worker works on");
        assert!(waiters.register(3, WaiterKind::Client).is_none());
        assert_eq!(waiters.clients(), 1, "the refused registration is gone");
        let late_worker = waiters.register(4, WaiterKind::Worker);
        assert!(late_worker.is_some());
        waiters.wake(3);
        assert!(worker.park(Duration::from_secs(10)), "a cancel still reaches it");
    }
}
