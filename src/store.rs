//! The in-memory task store: a sharded concurrent map from id to task, and
//! the id counter.
//!
//! Status changes go through [`Task`]'s own checked moves while the task's
//! shard is write-locked, so concurrent workers and request handlers can
//! never push a task backwards.

use std::sync::atomic::{AtomicI64, Ordering};

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;

use crate::domain::{FailureReason, NotAllowed, Task, TaskId, TaskStatus};

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
}

impl Default for TaskStore {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskStore {
    /// An empty store whose first id will be 1.
    pub fn new() -> Self {
        Self {
            tasks: DashMap::with_hasher_and_shard_amount(FxBuildHasher, SHARDS),
            last_id: AtomicI64::new(0),
        }
    }

    /// Stores `task` under the next id and returns the id.
    pub fn insert(&self, task: Task) -> TaskId {
        let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.tasks.insert(id, task);
        id
    }

    /// Runs `read` on the task with this id while holding only its shard's
    /// read lock, so callers can serialise it without copying.
    pub fn with_task<R>(&self, id: TaskId, read: impl FnOnce(&Task) -> R) -> Option<R> {
        self.tasks.get(&id).map(|task| read(&task))
    }

    /// Moves a task to `running` or `done` if the lifecycle allows it, and
    /// returns its work duration.
    pub fn advance(&self, id: TaskId, next: TaskStatus) -> Result<std::time::Duration, TransitionError> {
        let mut task = self.tasks.get_mut(&id).ok_or(TransitionError::NotFound)?;
        task.advance(next)?;
        Ok(task.work())
    }

    /// Marks a pending task `failed` with `reason`.
    pub fn fail(&self, id: TaskId, reason: FailureReason) -> Result<(), TransitionError> {
        let mut task = self.tasks.get_mut(&id).ok_or(TransitionError::NotFound)?;
        Ok(task.fail(reason)?)
    }

    /// Every stored id, ascending.
    pub fn ids(&self) -> Vec<TaskId> {
        let mut ids: Vec<TaskId> = self.tasks.iter().map(|entry| *entry.key()).collect();
        ids.sort_unstable();
        ids
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
        self.tasks.len()
    }

    /// Whether no task has been stored.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn add(store: &TaskStore) -> TaskId {
        store.insert(Task::new("t", "", Duration::from_millis(5)))
    }

    #[test]
    fn ids_start_at_one_and_increase() {
        let store = TaskStore::new();
        assert_eq!(add(&store), 1);
        assert_eq!(add(&store), 2);
        assert_eq!(store.with_task(2, Task::status), Some(TaskStatus::Pending));
        assert_eq!(store.with_task(3, Task::status), None);
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
        assert_eq!(store.with_task(id, Task::error), Some(Some(FailureReason::PoolClosed)));
        assert!(store.advance(id, TaskStatus::Running).is_err());
    }

    #[test]
    fn ids_are_listed_in_order() {
        let store = TaskStore::new();
        for _ in 0..100 {
            add(&store);
        }
        assert_eq!(store.ids(), (1..=100).collect::<Vec<_>>());
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
