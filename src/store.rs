//! The in-memory task store: a sharded concurrent map from id to task, the
//! id counter, a count of tasks in each status, and the eviction that keeps
//! the store within its `MAX_TASKS` bound.
//!
//! Status changes go through [`Task`]'s own checked moves while the task's
//! shard is write-locked, so concurrent workers and request handlers can
//! never push a task backwards.
//!
//! Every move of a task to a finished status (done, failed, canceled) wakes
//! whoever waits on it ([`Waiters`]): clients long-polling the task, and
//! for a cancel, the worker running it.
//!
//! Eviction removes finished tasks (done, failed or canceled) oldest first. A cursor
//! walks the ids upwards; a task it passes while still pending or running is
//! remembered (kept) and removed once it has finished. So every id below the
//! cursor is either evicted or kept, which is what lets a lookup tell an
//! evicted task from one that never existed, and lets a page in id order
//! skip the evicted range without visiting it.
//!
//! Eviction never makes anyone wait and never does unbounded work, because
//! its callers are coroutines and a coroutine that blocks or spins holds its
//! whole scheduler thread:
//!
//! - only an insert evicts, and it looks at no more than [`EVICTION_STEPS`]
//!   ids; the store may be over its bound for a while, by what the inserts
//!   racing it add, and comes back within it as inserts go on;
//! - the eviction lock is only ever `try_lock`ed by eviction: an insert
//!   that finds it taken skips its share;
//! - finishing a task evicts nothing. If the cursor has passed the task,
//!   the finisher pushes its id on a lock-free queue, and the next eviction
//!   removes it from there, without looking for it among the kept tasks.

use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Unbounded};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use rustc_hash::FxBuildHasher;

use crate::domain::{FailureReason, NotAllowed, Task, TaskId, TaskStatus};
use crate::waiters::{WaiterKind, Waiters};

/// Why a status change was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TransitionError {
    /// No task has that id.
    NotFound,
    /// The lifecycle does not allow the move from the task's status.
    NotAllowed(NotAllowed),
}

impl From<NotAllowed> for TransitionError {
    fn from(refused: NotAllowed) -> Self {
        Self::NotAllowed(refused)
    }
}

/// Why a task could not be canceled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelError {
    /// No task is stored under the id.
    Absent(Absent),
    /// The task has finished already.
    Finished(NotAllowed),
}

/// Why a lookup found no task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absent {
    /// No task is stored under this id, and none was evicted from it: the
    /// id was not given yet, or was given to a task that was never stored.
    NotFound,
    /// The task finished and was evicted to stay within the bound.
    Evicted,
}

/// Which tasks a page of the listing holds: those with an id above `after`,
/// in id order, at most `limit` of them, only those in `status` if given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageQuery {
    /// Only ids above this one (0 for the first page).
    pub after: TaskId,
    /// The most tasks the page holds.
    pub limit: usize,
    /// Only tasks currently in this status, if set.
    pub status: Option<TaskStatus>,
}

/// Most ids one page looks at, whatever the filter matches: a page of a
/// rare status among millions of tasks stops here, short, and says where
/// the next page resumes, so no request does unbounded work.
pub const PAGE_SCAN_BUDGET: usize = 100_000;

/// What the store may hold before it evicts; a field of 0 sets no bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    /// The most tasks.
    pub max_tasks: usize,
    /// The most bytes of task text (titles and descriptions, as stored),
    /// so that large tasks cannot take memory that a count alone allows.
    pub max_text_bytes: usize,
}

/// Counts kept for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Tasks stored now.
    pub stored: usize,
    /// Bytes of task text stored now.
    pub text_bytes: usize,
    /// Tasks stored now in each status, indexed by [`TaskStatus::index`].
    pub by_status: [usize; TaskStatus::ALL.len()],
    /// Tasks evicted since start.
    pub evicted: u64,
}

/// The most ids one insert's eviction looks at (each one evicted or passed
/// by the cursor), so an insert's cost is bounded (a few microseconds)
/// however large the store. Well above one, so that a store pushed over
/// its bound (by unfinished tasks that have since finished, or by inserts
/// that found eviction busy and left it to the holder) comes back within
/// it as inserts go on: with several threads inserting, one evicting must
/// catch up with what the others added meanwhile.
const EVICTION_STEPS: usize = 32;

/// How many kept ids a page copies at a time under the eviction lock, so
/// that it holds the lock briefly.
const KEPT_CHUNK: usize = 1024;

/// Shards of the map. A shard's table doubles as it fills, moving every
/// task in it at once; dashmap's default (four per CPU, so four under
/// `taskset -c 0`) made those moves stall requests for tens of milliseconds
/// at a million tasks. With this many, each move is small.
const SHARDS: usize = 128;

/// Concurrency-safe storage for every task the server has accepted.
pub struct TaskStore {
    /// Ids are assigned by the server, not chosen by clients, so a fast
    /// non-keyed hash is safe here.
    tasks: DashMap<TaskId, Task, FxBuildHasher>,
    last_id: AtomicI64,
    /// How many tasks are stored (dashmap's own count locks every shard).
    stored: AtomicUsize,
    /// Bytes of task text stored.
    text_bytes: AtomicUsize,
    /// How many stored tasks are in each status.
    by_status: [AtomicUsize; TaskStatus::ALL.len()],
    evicted: AtomicU64,
    bounds: Bounds,
    /// The next id eviction looks at: every id below it is evicted or kept.
    /// Only the holder of `kept` moves it, and only while holding the shard
    /// lock of the id it passes; so whoever holds a task's shard lock knows
    /// which side of the cursor the task is on, and a missing id below it
    /// was evicted.
    cursor: AtomicI64,
    /// The ids below the cursor whose tasks are still stored (they were
    /// pending or running when passed), in id order. Eviction only
    /// `try_lock`s it; pages wait for it by yielding.
    kept: Mutex<BTreeSet<TaskId>>,
    /// Kept ids whose tasks have finished, pushed by whoever finished them,
    /// so eviction finds them without looking.
    finished_kept: SegQueue<TaskId>,
    /// Coroutines parked until a task finishes.
    waiters: Waiters,
}

impl Default for TaskStore {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskStore {
    /// An empty, unbounded store whose first id will be 1.
    pub fn new() -> Self {
        Self::bounded(Bounds::default())
    }

    /// An empty store keeping at most `max_tasks` tasks (0: no bound).
    pub fn with_max_tasks(max_tasks: usize) -> Self {
        Self::bounded(Bounds {
            max_tasks,
            max_text_bytes: 0,
        })
    }

    /// An empty store kept within `bounds` by evicting the oldest finished
    /// tasks. Pending and running tasks are never evicted, so they may take
    /// the store past its bounds.
    pub fn bounded(bounds: Bounds) -> Self {
        Self {
            tasks: DashMap::with_hasher_and_shard_amount(FxBuildHasher, SHARDS),
            last_id: AtomicI64::new(0),
            stored: AtomicUsize::new(0),
            text_bytes: AtomicUsize::new(0),
            by_status: Default::default(),
            evicted: AtomicU64::new(0),
            bounds,
            cursor: AtomicI64::new(1),
            kept: Mutex::new(BTreeSet::new()),
            finished_kept: SegQueue::new(),
            waiters: Waiters::new(),
        }
    }

    /// Stores `task` under the next id and returns the id; over the bound,
    /// first evicts a bounded number of the oldest finished tasks.
    pub fn insert(&self, task: Task) -> TaskId {
        // Counted before the task can be seen, so an eviction of it never
        // takes a count below zero.
        self.by_status[task.status().index()].fetch_add(1, Ordering::Relaxed);
        self.text_bytes.fetch_add(task.text_bytes(), Ordering::AcqRel);
        self.stored.fetch_add(1, Ordering::AcqRel);
        let id = self.skip_id();
        self.tasks.insert(id, task);
        self.evict_some();
        id
    }

    /// Takes the next id without storing anything under it, for a task
    /// refused before it was stored: the id names the task in its answer,
    /// and a lookup of it answers [`Absent::NotFound`]. Eviction cannot tell
    /// such an id from an insert still under way, so its cursor stops there
    /// for good; take one only once (almost) nothing more will be stored,
    /// as once the pool has closed.
    pub fn skip_id(&self) -> TaskId {
        self.last_id.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Runs `read` on the task with this id while holding only its shard's
    /// read lock, so callers can serialise it without copying.
    pub fn with_task<R>(&self, id: TaskId, read: impl FnOnce(&Task) -> R) -> Result<R, Absent> {
        match self.tasks.get(&id) {
            Some(task) => Ok(read(&task)),
            None => Err(self.absent(id)),
        }
    }

    /// Why no task is stored under `id`: evicted if the cursor has passed
    /// it, never stored otherwise.
    fn absent(&self, id: TaskId) -> Absent {
        if id < self.cursor.load(Ordering::Acquire) {
            Absent::Evicted
        } else {
            Absent::NotFound
        }
    }

    /// Moves a task to `running` or `done` if the lifecycle allows it, and
    /// returns its work duration. Evicts nothing: a worker finishing a task
    /// does O(1) work here, whatever the store holds.
    pub fn advance(&self, id: TaskId, next: TaskStatus) -> Result<Duration, TransitionError> {
        let work = {
            let mut task = self.tasks.get_mut(&id).ok_or(TransitionError::NotFound)?;
            let before = task.status();
            task.advance(next)?;
            self.moved(id, before, next);
            task.work()
        };
        if next.is_finished() {
            self.waiters.wake(id);
        }
        Ok(work)
    }

    /// Marks a pending task `failed` with `reason`. Evicts nothing.
    pub fn fail(&self, id: TaskId, reason: FailureReason) -> Result<(), TransitionError> {
        {
            let mut task = self.tasks.get_mut(&id).ok_or(TransitionError::NotFound)?;
            let before = task.status();
            task.fail(reason)?;
            self.moved(id, before, TaskStatus::Failed);
        }
        self.waiters.wake(id);
        Ok(())
    }

    /// Moves a pending or running task to `canceled`, and wakes whoever
    /// waits on it: waiting clients, and the worker running it, whose work
    /// is cut short. Returns the status the task had and what `read` made
    /// of the canceled task (read under the same lock, so an eviction
    /// cannot come in between). Evicts nothing.
    pub fn cancel<R>(&self, id: TaskId, read: impl FnOnce(&Task) -> R) -> Result<(TaskStatus, R), CancelError> {
        let answer = {
            let Some(mut task) = self.tasks.get_mut(&id) else {
                return Err(CancelError::Absent(self.absent(id)));
            };
            let before = task.status();
            task.advance(TaskStatus::Canceled).map_err(CancelError::Finished)?;
            self.moved(id, before, TaskStatus::Canceled);
            (before, read(&task))
        };
        self.waiters.wake(id);
        Ok(answer)
    }

    /// Parks the calling coroutine until task `id` has finished, `deadline`
    /// has passed, or waiting has been closed for shutdown; returns at once
    /// if none of the three is still ahead, or no task has the id. The
    /// caller then reads the task as it is.
    pub fn wait_until_finished(&self, id: TaskId, deadline: Instant) {
        let finished = |store: &Self| store.with_task(id, |task| task.status().is_finished()).unwrap_or(true);
        if self.waiters.is_closed() || finished(self) {
            return;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let Some(registration) = self.waiters.register(id, WaiterKind::Client) else {
                return;
            };
            // Read after registering: see `Waiters` on why no move is missed.
            if finished(self) || registration.park(left) {
                return;
            }
            // Timed out: the timer may fire a little early; wait out the rest.
        }
    }

    /// Registers the calling worker as waiting on task `id`, before it
    /// moves the task to `running`: a cancel from then on wakes it.
    pub fn watch_work(&self, id: TaskId) -> crate::waiters::Registration<'_> {
        self.waiters
            .register(id, WaiterKind::Worker)
            .expect("workers are always admitted")
    }

    /// Answers every waiting client at once, and every later one without
    /// waiting: for shutdown. Returns how many were waiting.
    pub fn close_waiting(&self) -> usize {
        self.waiters.close()
    }

    /// How many clients are waiting for a task to finish.
    pub fn waiting_clients(&self) -> usize {
        self.waiters.clients()
    }

    /// Counts a move of task `id`, and if it finished after the cursor
    /// passed it, tells eviction it can go. Called while the task's shard is
    /// write-locked: an eviction of the task (which takes that lock) sees
    /// the counts moved, and the cursor cannot pass the task meanwhile, so
    /// exactly one of this and the cursor's pass sees the task finished.
    fn moved(&self, id: TaskId, from: TaskStatus, to: TaskStatus) {
        self.by_status[from.index()].fetch_sub(1, Ordering::Relaxed);
        self.by_status[to.index()].fetch_add(1, Ordering::Relaxed);
        if to.is_finished() && id < self.cursor.load(Ordering::Acquire) {
            self.finished_kept.push(id);
        }
    }

    /// Calls `each` for the tasks of one page, in id order, and returns the
    /// id the next page starts after, or `None` when no task follows. `each`
    /// returns whether the page has room for more (a caller bounding the
    /// page's size in bytes ends it early so).
    pub fn page(&self, query: &PageQuery, each: impl FnMut(TaskId, &Task) -> bool) -> Option<TaskId> {
        self.page_within(query, PAGE_SCAN_BUDGET, each)
    }

    /// A page looks at the kept ids above `after` (taken in chunks), then
    /// at every id from the cursor on: together, every id that may still
    /// be stored.
    fn page_within(&self, query: &PageQuery, budget: usize, each: impl FnMut(TaskId, &Task) -> bool) -> Option<TaskId> {
        let mut walk = PageWalk::new(query, budget, each);
        let mut after = query.after;
        let cursor = loop {
            let (chunk, cursor) = self.kept_after(after);
            for &id in &chunk {
                if let ControlFlow::Break(next) = walk.visit(self, id) {
                    return next;
                }
            }
            match chunk.last() {
                Some(&last) if chunk.len() == KEPT_CHUNK => after = last,
                _ => break cursor,
            }
        };
        let first_unpassed = query.after.saturating_add(1).max(cursor);
        for id in first_unpassed..=self.last_id.load(Ordering::Acquire) {
            if let ControlFlow::Break(next) = walk.visit(self, id) {
                return next;
            }
        }
        None
    }

    /// Up to [`KEPT_CHUNK`] kept ids above `after`, and the cursor as of
    /// the same moment.
    fn kept_after(&self, after: TaskId) -> (Vec<TaskId>, TaskId) {
        let kept = self.lock_kept();
        let chunk = kept
            .range((Excluded(after), Unbounded))
            .take(KEPT_CHUNK)
            .copied()
            .collect();
        (chunk, self.cursor.load(Ordering::Acquire))
    }

    /// Takes the eviction lock for a reader. An eviction holds it for a
    /// few steps at most; meanwhile the caller yields its scheduler thread
    /// to other coroutines (or, outside a coroutine, the CPU) instead of
    /// blocking it.
    fn lock_kept(&self) -> MutexGuard<'_, BTreeSet<TaskId>> {
        loop {
            match self.kept.try_lock() {
                Ok(kept) => return kept,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => may::coroutine::yield_now(),
            }
        }
    }

    /// Ids of the tasks currently in one of `statuses`, ascending, each with
    /// the status it was seen in (one pass, so no task is seen twice).
    pub fn ids_with_status(&self, statuses: &[TaskStatus]) -> Vec<(TaskId, TaskStatus)> {
        let mut ids: Vec<(TaskId, TaskStatus)> = self
            .tasks
            .iter()
            .map(|entry| (*entry.key(), entry.status()))
            .filter(|(_, status)| statuses.contains(status))
            .collect();
        ids.sort_unstable_by_key(|(id, _)| *id);
        ids
    }

    /// How many tasks are stored.
    pub fn len(&self) -> usize {
        self.stored.load(Ordering::Acquire)
    }

    /// Whether no task is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counts the metrics report.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            stored: self.len(),
            text_bytes: self.text_bytes.load(Ordering::Relaxed),
            by_status: self.by_status.each_ref().map(|count| count.load(Ordering::Relaxed)),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    fn over_bound(&self) -> bool {
        let Bounds {
            max_tasks,
            max_text_bytes,
        } = self.bounds;
        (max_tasks != 0 && self.len() > max_tasks)
            || (max_text_bytes != 0 && self.text_bytes.load(Ordering::Acquire) > max_text_bytes)
    }

    /// Over the bound, evicts or passes at most [`EVICTION_STEPS`] ids. If
    /// another thread is evicting, leaves it to that one and to the inserts
    /// that follow: nobody waits for the eviction lock.
    fn evict_some(&self) {
        if !self.over_bound() {
            return;
        }
        let mut kept = match self.kept.try_lock() {
            Ok(kept) => kept,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        for _ in 0..EVICTION_STEPS {
            if !self.over_bound() || !self.evict_step(&mut kept) {
                return;
            }
        }
    }

    /// Evicts the oldest kept task known to have finished, or else moves
    /// the cursor past one id; false if neither can be done now.
    fn evict_step(&self, kept: &mut BTreeSet<TaskId>) -> bool {
        match self.finished_kept.pop() {
            Some(id) => {
                kept.remove(&id);
                if let Some((_, task)) = self.tasks.remove_if(&id, |_, task| task.status().is_finished()) {
                    self.count_eviction(&task);
                }
                true
            }
            None => self.pass_cursor(kept),
        }
    }

    /// Moves the cursor past its id, evicting the task there if it has
    /// finished and keeping it otherwise; false if no task is stored there
    /// (its insert is under way, or the id was skipped).
    fn pass_cursor(&self, kept: &mut BTreeSet<TaskId>) -> bool {
        let id = self.cursor.load(Ordering::Acquire);
        let Entry::Occupied(task) = self.tasks.entry(id) else {
            return false;
        };
        // Moved while the shard is locked: see `cursor` and `moved`.
        self.cursor.store(id + 1, Ordering::Release);
        if task.get().status().is_finished() {
            let (_, task) = task.remove_entry();
            self.count_eviction(&task);
        } else {
            kept.insert(id);
        }
        true
    }

    fn count_eviction(&self, task: &Task) {
        self.by_status[task.status().index()].fetch_sub(1, Ordering::Relaxed);
        self.stored.fetch_sub(1, Ordering::AcqRel);
        self.text_bytes.fetch_sub(task.text_bytes(), Ordering::AcqRel);
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }
}

/// One page's walk over candidate ids: what it has taken, and where the
/// next page would resume.
struct PageWalk<'q, F> {
    query: &'q PageQuery,
    budget: usize,
    each: F,
    examined: usize,
    taken: usize,
    room: bool,
    resume_after: TaskId,
}

impl<'q, F: FnMut(TaskId, &Task) -> bool> PageWalk<'q, F> {
    fn new(query: &'q PageQuery, budget: usize, each: F) -> Self {
        Self {
            query,
            budget,
            each,
            examined: 0,
            taken: 0,
            room: true,
            resume_after: query.after,
        }
    }

    /// Looks at one id; breaks with the page's answer (where the next page
    /// resumes, if anywhere) once the page is complete.
    fn visit(&mut self, store: &TaskStore, id: TaskId) -> ControlFlow<Option<TaskId>> {
        if self.examined == self.budget {
            return ControlFlow::Break(Some(self.resume_after));
        }
        self.examined += 1;
        let page_full = self.taken == self.query.limit || !self.room;
        let wanted = self.query.status;
        if let Some(task) = store
            .tasks
            .get(&id)
            .filter(|task| wanted.is_none_or(|status| task.status() == status))
        {
            if page_full {
                return ControlFlow::Break(Some(self.resume_after));
            }
            self.room = (self.each)(id, &task);
            self.taken += 1;
        }
        if !page_full {
            self.resume_after = id;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn add(store: &TaskStore) -> TaskId {
        store.insert(Task::new("t", "", Duration::from_millis(5)))
    }

    #[test]
    fn ids_start_at_one_and_increase() {
        let store = TaskStore::new();
        assert_eq!(add(&store), 1);
        assert_eq!(add(&store), 2);
        assert_eq!(store.with_task(2, Task::status), Ok(TaskStatus::Pending));
        assert_eq!(store.with_task(3, Task::status), Err(Absent::NotFound));
    }

    #[test]
    fn advancing_follows_the_lifecycle_and_gives_the_work() {
        let store = TaskStore::new();
        let id = add(&store);
        let refused = |current| Err(TransitionError::NotAllowed(NotAllowed { current }));
        assert_eq!(store.advance(id, TaskStatus::Done), refused(TaskStatus::Pending));
        assert_eq!(store.advance(id, TaskStatus::Running), Ok(Duration::from_millis(5)));
        assert!(store.fail(id, FailureReason::PoolFull).is_err());
        assert!(store.advance(id, TaskStatus::Done).is_ok());
        assert_eq!(store.advance(id, TaskStatus::Running), refused(TaskStatus::Done));
        assert_eq!(store.advance(99, TaskStatus::Running), Err(TransitionError::NotFound));
    }

    #[test]
    fn failing_records_the_reason() {
        let store = TaskStore::new();
        let id = add(&store);
        store.fail(id, FailureReason::PoolClosed).unwrap();
        assert_eq!(store.with_task(id, Task::error), Ok(Some(FailureReason::PoolClosed)));
        assert!(store.advance(id, TaskStatus::Running).is_err());
    }

    fn page(
        store: &TaskStore,
        after: TaskId,
        limit: usize,
        status: Option<TaskStatus>,
    ) -> (Vec<TaskId>, Option<TaskId>) {
        page_within(store, after, limit, status, PAGE_SCAN_BUDGET)
    }

    fn page_within(
        store: &TaskStore,
        after: TaskId,
        limit: usize,
        status: Option<TaskStatus>,
        budget: usize,
    ) -> (Vec<TaskId>, Option<TaskId>) {
        let mut ids = Vec::new();
        let query = PageQuery { after, limit, status };
        let next = store.page_within(&query, budget, |id, _| {
            ids.push(id);
            true
        });
        (ids, next)
    }

    /// Runs task `id` to the end.
    fn finish(store: &TaskStore, id: TaskId) {
        store.advance(id, TaskStatus::Running).unwrap();
        store.advance(id, TaskStatus::Done).unwrap();
    }

    #[test]
    fn pages_follow_id_order_and_say_where_the_next_starts() {
        let store = TaskStore::new();
        assert_eq!(page(&store, 0, 10, None), (vec![], None));
        for _ in 0..25 {
            add(&store);
        }
        assert_eq!(page(&store, 0, 10, None), ((1..=10).collect(), Some(10)));
        assert_eq!(page(&store, 10, 10, None), ((11..=20).collect(), Some(20)));
        assert_eq!(page(&store, 20, 10, None), ((21..=25).collect(), None));
        assert_eq!(page(&store, 15, 10, None), ((16..=25).collect(), None));
        assert_eq!(page(&store, 25, 10, None), (vec![], None));
        assert_eq!(page(&store, TaskId::MAX, 10, None), (vec![], None));
    }

    #[test]
    fn filtered_pages_hold_only_that_status() {
        let store = TaskStore::new();
        for _ in 0..10 {
            add(&store);
        }
        for id in [2, 5, 9] {
            finish(&store, id);
        }
        let done = Some(TaskStatus::Done);
        assert_eq!(page(&store, 0, 2, done), (vec![2, 5], Some(5)));
        assert_eq!(page(&store, 5, 2, done), (vec![9], None));
        assert_eq!(page(&store, 0, 3, done), (vec![2, 5, 9], None));
        assert_eq!(page(&store, 0, 100, Some(TaskStatus::Failed)), (vec![], None));
    }

    #[test]
    fn a_page_stops_at_its_scan_budget_and_resumes_there() {
        let store = TaskStore::new();
        for _ in 0..10 {
            add(&store);
        }
        finish(&store, 8);
        let done = Some(TaskStatus::Done);
        assert_eq!(page_within(&store, 0, 5, done, 4), (vec![], Some(4)));
        assert_eq!(page_within(&store, 4, 5, done, 4), (vec![8], Some(8)));
        assert_eq!(page_within(&store, 8, 5, done, 4), (vec![], None));
        assert_eq!(page_within(&store, 0, 2, None, 4), (vec![1, 2], Some(2)));
    }

    #[test]
    fn over_the_bound_the_oldest_finished_tasks_are_evicted() {
        let store = TaskStore::with_max_tasks(3);
        for _ in 0..3 {
            add(&store);
        }
        finish(&store, 2);
        store.fail(3, FailureReason::PoolFull).unwrap();
        add(&store);
        assert_eq!(store.with_task(2, Task::status), Err(Absent::Evicted));
        assert_eq!(store.with_task(1, Task::status), Ok(TaskStatus::Pending));
        add(&store);
        assert_eq!(store.with_task(3, Task::status), Err(Absent::Evicted));
        assert_eq!(store.len(), 3);
        assert_eq!(page(&store, 0, 10, None), (vec![1, 4, 5], None));
        assert_eq!(store.with_task(6, Task::status), Err(Absent::NotFound));
    }

    #[test]
    fn unfinished_tasks_are_kept_past_the_bound_then_evicted_once_finished() {
        let store = TaskStore::with_max_tasks(2);
        for _ in 0..4 {
            add(&store);
        }
        assert_eq!(store.len(), 4, "pending tasks are never evicted");
        finish(&store, 1);
        finish(&store, 3);
        assert_eq!(store.len(), 4, "finishing evicts nothing: the next insert does");
        add(&store);
        assert_eq!(store.with_task(1, Task::status), Err(Absent::Evicted));
        assert_eq!(store.with_task(3, Task::status), Err(Absent::Evicted));
        assert_eq!(store.len(), 3, "2, 4 and 5 are still unfinished");
        assert_eq!(store.with_task(2, Task::status), Ok(TaskStatus::Pending));
        finish(&store, 2);
        add(&store);
        assert_eq!(page(&store, 0, 10, None), (vec![4, 5, 6], None));
        assert_eq!(store.stats().evicted, 3);
        finish(&store, 5);
        assert_eq!(page(&store, 3, 10, None), (vec![4, 5, 6], None));
    }

    #[test]
    fn one_insert_evicts_a_bounded_number_of_tasks() {
        let store = TaskStore::with_max_tasks(10);
        let ids: Vec<TaskId> = (0..1000).map(|_| add(&store)).collect();
        for &id in &ids {
            finish(&store, id);
        }
        assert_eq!(store.len(), 1000);
        add(&store);
        assert_eq!(store.len(), 1001 - EVICTION_STEPS);
        for _ in 0..200 {
            let id = add(&store);
            store.fail(id, FailureReason::PoolFull).unwrap();
        }
        assert_eq!(store.len(), 10, "each insert evicts more than it adds");
    }

    #[test]
    fn an_insert_does_not_wait_for_an_eviction_under_way() {
        let store = TaskStore::with_max_tasks(1);
        let first = add(&store);
        store.fail(first, FailureReason::PoolFull).unwrap();
        let eviction = store.kept.lock().unwrap();
        // With a blocking lock this would deadlock: the lock is held here.
        add(&store);
        assert_eq!(store.len(), 2, "the eviction was left to the holder");
        drop(eviction);
        add(&store);
        assert_eq!(store.with_task(first, Task::status), Err(Absent::Evicted));
    }

    #[test]
    fn a_skipped_id_is_not_found_and_ids_go_on() {
        let store = TaskStore::with_max_tasks(1);
        add(&store);
        assert_eq!(store.skip_id(), 2);
        assert_eq!(add(&store), 3);
        finish(&store, 1);
        finish(&store, 3);
        add(&store);
        assert_eq!(store.with_task(2, Task::status), Err(Absent::NotFound));
        assert_eq!(store.with_task(1, Task::status), Err(Absent::Evicted));
        assert_eq!(page(&store, 0, 10, None), (vec![3, 4], None));
    }

    #[test]
    fn a_page_ends_where_its_caller_runs_out_of_room() {
        let store = TaskStore::new();
        for _ in 0..5 {
            add(&store);
        }
        let mut ids = Vec::new();
        let query = PageQuery {
            after: 0,
            limit: 10,
            status: None,
        };
        let next = store.page(&query, |id, _| {
            ids.push(id);
            ids.len() < 2
        });
        assert_eq!((ids, next), (vec![1, 2], Some(2)));
    }

    #[test]
    fn over_the_text_bound_the_oldest_finished_tasks_are_evicted() {
        let store = TaskStore::bounded(Bounds {
            max_tasks: 0,
            max_text_bytes: 250,
        });
        let big = |store: &TaskStore| store.insert(Task::new(&"x".repeat(98), "", Duration::ZERO));
        for _ in 0..2 {
            let id = big(&store);
            finish(&store, id);
        }
        assert_eq!(store.stats().text_bytes, 2 * 102);
        big(&store);
        assert_eq!(store.with_task(1, Task::status), Err(Absent::Evicted));
        assert_eq!(store.stats().text_bytes, 2 * 102);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn stats_count_tasks_by_status() {
        let store = TaskStore::with_max_tasks(3);
        for _ in 0..4 {
            add(&store);
        }
        store.advance(1, TaskStatus::Running).unwrap();
        finish(&store, 2);
        store.fail(3, FailureReason::PoolFull).unwrap();
        add(&store);
        let stats = store.stats();
        assert_eq!(stats.stored, 3);
        assert_eq!(stats.evicted, 2);
        let [pending, running, done, failed, canceled] = stats.by_status;
        assert_eq!((pending, running, done, failed, canceled), (2, 1, 0, 0, 0));
        store.cancel(4, |_| ()).unwrap();
        store.cancel(1, |_| ()).unwrap();
        assert_eq!(store.stats().by_status, [1, 0, 0, 0, 2]);
    }

    #[test]
    fn pending_and_running_tasks_are_canceled_finished_ones_are_not() {
        let store = TaskStore::new();
        let pending = add(&store);
        let running = add(&store);
        store.advance(running, TaskStatus::Running).unwrap();
        let done = add(&store);
        finish(&store, done);
        let status_of = |store: &TaskStore, id| store.with_task(id, Task::status);
        assert_eq!(
            store.cancel(pending, Task::status),
            Ok((TaskStatus::Pending, TaskStatus::Canceled))
        );
        assert_eq!(
            store.cancel(running, Task::status),
            Ok((TaskStatus::Running, TaskStatus::Canceled))
        );
        let finished = |current| Err(CancelError::Finished(NotAllowed { current }));
        assert_eq!(store.cancel(done, |_| ()), finished(TaskStatus::Done));
        assert_eq!(store.cancel(pending, |_| ()), finished(TaskStatus::Canceled));
        assert_eq!(status_of(&store, running), Ok(TaskStatus::Canceled));
        assert!(
            store.advance(running, TaskStatus::Done).is_err(),
            "a canceled task is never done"
        );
        assert!(store.advance(pending, TaskStatus::Running).is_err(), "nor run");
        assert_eq!(store.cancel(99, |_| ()), Err(CancelError::Absent(Absent::NotFound)));
    }

    #[test]
    fn canceled_tasks_are_evicted_like_finished_ones() {
        let store = TaskStore::with_max_tasks(2);
        let first = add(&store);
        let second = add(&store);
        store.cancel(first, |_| ()).unwrap();
        add(&store);
        assert_eq!(store.with_task(first, Task::status), Err(Absent::Evicted));
        assert_eq!(store.cancel(first, |_| ()), Err(CancelError::Absent(Absent::Evicted)));
        store.advance(second, TaskStatus::Running).unwrap();
        add(&store);
        assert_eq!(store.len(), 3, "a running task is kept");
        store.cancel(second, |_| ()).unwrap();
        add(&store);
        assert_eq!(store.with_task(second, Task::status), Err(Absent::Evicted));
    }

    /// Runs `wait_until_finished` on a thread, returning how long it took.
    fn wait_on_thread(store: &Arc<TaskStore>, id: TaskId, wait: Duration) -> std::thread::JoinHandle<Duration> {
        let store = store.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            store.wait_until_finished(id, started + wait);
            started.elapsed()
        })
    }

    /// Waits until `count` clients are parked (or about to park) on the store.
    fn await_waiting(store: &TaskStore, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.waiting_clients() != count {
            assert!(
                Instant::now() < deadline,
                "{} waiting, not {count}",
                store.waiting_clients()
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_waiter_returns_when_its_task_finishes_however_it_finishes() {
        let store = Arc::new(TaskStore::new());
        let long = Duration::from_secs(30);
        let [done, canceled, failed] = [add(&store), add(&store), add(&store)];
        store.advance(done, TaskStatus::Running).unwrap();
        let waiting: Vec<_> = [done, canceled, failed]
            .into_iter()
            .map(|id| wait_on_thread(&store, id, long))
            .collect();
        await_waiting(&store, 3);
        store.advance(done, TaskStatus::Done).unwrap();
        store.cancel(canceled, |_| ()).unwrap();
        store.fail(failed, FailureReason::PoolFull).unwrap();
        for waited in waiting {
            assert!(waited.join().unwrap() < Duration::from_secs(10));
        }
        assert_eq!(store.waiting_clients(), 0);
    }

    #[test]
    fn a_waiter_returns_at_its_deadline_or_at_once_when_there_is_nothing_to_wait_for() {
        let store = Arc::new(TaskStore::new());
        let pending = add(&store);
        let waited = wait_on_thread(&store, pending, Duration::from_millis(100))
            .join()
            .unwrap();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        let finished = add(&store);
        finish(&store, finished);
        for id in [finished, 99] {
            let waited = wait_on_thread(&store, id, Duration::from_secs(30)).join().unwrap();
            assert!(waited < Duration::from_secs(5), "task {id}: {waited:?}");
        }
        assert_eq!(store.waiting_clients(), 0);
    }

    #[test]
    fn closing_answers_every_waiter_and_later_ones_at_once() {
        let store = Arc::new(TaskStore::new());
        let id = add(&store);
        let waiting: Vec<_> = (0..3)
            .map(|_| wait_on_thread(&store, id, Duration::from_secs(30)))
            .collect();
        await_waiting(&store, 3);
        assert_eq!(store.close_waiting(), 3);
        for waited in waiting {
            assert!(waited.join().unwrap() < Duration::from_secs(10));
        }
        let late = wait_on_thread(&store, id, Duration::from_secs(30)).join().unwrap();
        assert!(late < Duration::from_secs(5), "{late:?}");
        assert_eq!(store.with_task(id, Task::status), Ok(TaskStatus::Pending));
    }

    #[test]
    fn a_cancel_wakes_the_worker_watching_the_task() {
        let store = Arc::new(TaskStore::new());
        let id = add(&store);
        let (parked, has_parked) = std::sync::mpsc::channel();
        let worker = {
            let store = store.clone();
            std::thread::spawn(move || {
                let watch = store.watch_work(id);
                store.advance(id, TaskStatus::Running).unwrap();
                parked.send(()).unwrap();
                watch.park(Duration::from_secs(30))
            })
        };
        has_parked.recv().unwrap();
        store.close_waiting();
        store.cancel(id, |_| ()).unwrap();
        assert!(worker.join().unwrap(), "woken by the cancel, not the timeout");
    }

    #[test]
    fn a_bounded_store_stays_bounded_under_concurrent_inserts() {
        let store = Arc::new(TaskStore::with_max_tasks(100));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..5000 {
                        let id = add(&store);
                        store.fail(id, FailureReason::PoolFull).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let last = add(&store);
        store.fail(last, FailureReason::PoolFull).unwrap();
        let stored = store.len();
        assert_eq!(store.stats().evicted, 20_001 - stored as u64);
        let (ids, next) = page(&store, 0, 1000, None);
        assert!(ids.is_sorted() && next.is_none(), "{ids:?}");
        assert_eq!((ids.len(), ids.last()), (stored, Some(&20_001)));
        for _ in 0..stored {
            if store.len() == 100 {
                break;
            }
            let id = add(&store);
            store.fail(id, FailureReason::PoolFull).unwrap();
        }
        assert_eq!(store.len(), 100, "back within the bound, and exactly at it");
    }

    #[test]
    fn concurrent_inserts_get_distinct_ids() {
        let store = Arc::new(TaskStore::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || (0..1000).map(|_| add(&store)).collect::<Vec<_>>())
            })
            .collect();
        let mut ids: Vec<TaskId> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=4000).collect::<Vec<_>>());
        assert_eq!(store.len(), 4000);
    }

    #[test]
    fn only_one_of_racing_transitions_wins() {
        let store = Arc::new(TaskStore::new());
        let id = add(&store);
        let winners: usize = (0..4)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || store.advance(id, TaskStatus::Running).is_ok() as usize)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(winners, 1);
    }

    #[test]
    fn ids_with_status_filters_and_orders() {
        let store = TaskStore::new();
        for _ in 0..5 {
            add(&store);
        }
        store.advance(2, TaskStatus::Running).unwrap();
        store.advance(4, TaskStatus::Running).unwrap();
        store.fail(5, FailureReason::PoolFull).unwrap();
        let unfinished = store.ids_with_status(&[TaskStatus::Pending, TaskStatus::Running]);
        use TaskStatus::{Pending, Running};
        assert_eq!(unfinished, vec![(1, Pending), (2, Running), (3, Pending), (4, Running)]);
    }
}

/// Property tests: random operations on a small bounded store from several
/// threads at once, then the store's invariants checked at rest.
#[cfg(test)]
mod properties {
    use std::collections::HashSet;
    use std::sync::Arc;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// One thread's next move, on one of the tasks it created (by index
    /// among those in the right status), so each thread knows exactly what
    /// status each of its tasks has.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        /// A task with a title of this many bytes.
        Insert(usize),
        Start(usize),
        Finish(usize),
        Fail(usize),
        /// Cancel one of the pending or running tasks.
        Cancel(usize),
        /// Walk the whole listing, a few tasks a page.
        List,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1..40usize).prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Start),
            2 => any::<usize>().prop_map(Op::Finish),
            2 => any::<usize>().prop_map(Op::Fail),
            2 => any::<usize>().prop_map(Op::Cancel),
            1 => Just(Op::List),
        ]
    }

    /// The tasks one thread created, with the status it gave each.
    type Mine = Vec<(TaskId, TaskStatus)>;

    fn apply(store: &TaskStore, mine: &mut Mine, op: Op) {
        let nth = |mine: &Mine, status, n: usize| {
            let with: Vec<usize> = (0..mine.len()).filter(|&i| mine[i].1 == status).collect();
            (!with.is_empty()).then(|| with[n % with.len()])
        };
        let (from, to, n) = match op {
            Op::Insert(len) => {
                let id = store.insert(Task::new(&"t".repeat(len), "", Duration::ZERO));
                mine.push((id, TaskStatus::Pending));
                return;
            }
            Op::List => return assert_listed(store, mine),
            Op::Cancel(n) => {
                let unfinished: Vec<usize> = (0..mine.len()).filter(|&i| !mine[i].1.is_finished()).collect();
                if let Some(&index) = unfinished.get(n % unfinished.len().max(1)) {
                    let (id, before) = mine[index];
                    assert_eq!(store.cancel(id, Task::status), Ok((before, TaskStatus::Canceled)));
                    mine[index].1 = TaskStatus::Canceled;
                }
                return;
            }
            Op::Start(n) => (TaskStatus::Pending, TaskStatus::Running, n),
            Op::Finish(n) => (TaskStatus::Running, TaskStatus::Done, n),
            Op::Fail(n) => (TaskStatus::Pending, TaskStatus::Failed, n),
        };
        let Some(index) = nth(mine, from, n) else { return };
        let id = mine[index].0;
        match to {
            TaskStatus::Failed => store.fail(id, FailureReason::PoolFull).unwrap(),
            _ => drop(store.advance(id, to).unwrap()),
        }
        mine[index].1 = to;
    }

    /// No pending or running task is ever evicted: each thread's own
    /// unfinished tasks are found, in the status it gave them.
    fn assert_unfinished_found(store: &TaskStore, mine: &Mine) {
        for &(id, status) in mine.iter().filter(|(_, status)| !status.is_finished()) {
            assert_eq!(store.with_task(id, Task::status), Ok(status), "task {id}");
        }
    }

    /// A walk through every page lists ids in order, and lists every
    /// unfinished task of this thread (none can be skipped by the cursor).
    fn assert_listed(store: &TaskStore, mine: &Mine) {
        let mut listed = Vec::new();
        let mut after = 0;
        loop {
            let query = PageQuery {
                after,
                limit: 3,
                status: None,
            };
            let next = store.page(&query, |id, _| {
                listed.push(id);
                true
            });
            match next {
                Some(next) => after = next,
                None => break,
            }
        }
        assert!(listed.is_sorted_by(|a, b| a < b), "{listed:?}");
        let listed: HashSet<TaskId> = listed.into_iter().collect();
        for &(id, _) in mine.iter().filter(|(_, status)| !status.is_finished()) {
            assert!(listed.contains(&id), "unfinished task {id} not listed");
        }
    }

    /// At rest: the counts match the map, every id below the cursor is
    /// evicted or kept, and every kept task that finished is queued for
    /// eviction (none is forgotten).
    fn assert_invariants(store: &TaskStore) {
        let mut by_status = [0; TaskStatus::ALL.len()];
        let mut text_bytes = 0;
        for task in store.tasks.iter() {
            by_status[task.status().index()] += 1;
            text_bytes += task.text_bytes();
        }
        let stats = store.stats();
        assert_eq!(stats.by_status, by_status);
        assert_eq!((stats.stored, stats.text_bytes), (store.tasks.len(), text_bytes));
        let cursor = store.cursor.load(Ordering::Acquire);
        let kept = store.kept.lock().unwrap().clone();
        assert!(kept.iter().all(|&id| id < cursor), "kept ids are below the cursor");
        for id in 1..cursor {
            assert_eq!(
                store.tasks.contains_key(&id),
                kept.contains(&id),
                "id {id} below the cursor"
            );
        }
        let last = store.last_id.load(Ordering::Acquire);
        assert!(
            (cursor..=last).all(|id| store.tasks.contains_key(&id)),
            "nothing vanishes above the cursor"
        );
        let mut queued = Vec::new();
        while let Some(id) = store.finished_kept.pop() {
            queued.push(id);
        }
        let finished_kept: HashSet<TaskId> = kept
            .iter()
            .copied()
            .filter(|id| store.tasks.get(id).is_some_and(|task| task.status().is_finished()))
            .collect();
        assert_eq!(queued.iter().copied().collect::<HashSet<_>>(), finished_kept);
        assert_eq!(queued.len(), finished_kept.len(), "an id is queued once");
        queued.into_iter().for_each(|id| store.finished_kept.push(id));
    }

    /// Inserts until the store is within its bound, or holds no finished
    /// task but the newest (unfinished tasks may take it past the bound).
    fn assert_comes_back_within_bound(store: &TaskStore) {
        let finished = |store: &TaskStore| {
            let by_status = store.stats().by_status;
            TaskStatus::ALL
                .into_iter()
                .filter(|status| status.is_finished())
                .map(|status| by_status[status.index()])
                .sum::<usize>()
        };
        for _ in 0..=store.len() {
            if !store.over_bound() || finished(store) <= 1 {
                return;
            }
            let id = store.insert(Task::new("t", "", Duration::ZERO));
            store.fail(id, FailureReason::PoolFull).unwrap();
        }
        panic!("still over the bound with {} finished tasks stored", finished(store));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn invariants_hold_under_concurrent_insert_advance_and_evict(
            max_tasks in 1..8usize,
            max_text_bytes in prop_oneof![Just(0usize), 40..200usize],
            plans in vec(vec(op(), 1..150), 3),
        ) {
            let store = Arc::new(TaskStore::bounded(Bounds { max_tasks, max_text_bytes }));
            let threads: Vec<_> = plans
                .into_iter()
                .map(|plan| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        let mut mine = Mine::new();
                        for op in plan {
                            apply(&store, &mut mine, op);
                            assert_unfinished_found(&store, &mine);
                        }
                        mine
                    })
                })
                .collect();
            let mine: Vec<Mine> = threads.into_iter().map(|thread| thread.join().unwrap()).collect();
            assert_invariants(&store);
            for (id, status) in mine.into_iter().flatten() {
                match store.with_task(id, Task::status) {
                    Ok(found) => prop_assert_eq!(found, status),
                    Err(absent) => {
                        prop_assert!(status.is_finished(), "unfinished task {} evicted", id);
                        prop_assert_eq!(absent, Absent::Evicted);
                    }
                }
            }
            assert_comes_back_within_bound(&store);
            assert_invariants(&store);
        }
    }
}
