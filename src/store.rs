//! The in-memory task store: a sharded concurrent map from id to task, and
//! the id counter.
//!
//! Every status change goes through [`TaskStore::transition`], which refuses
//! any move the lifecycle in [`crate::domain`] does not allow, so concurrent
//! workers and request handlers can never push a task backwards.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use crate::domain::{FailureReason, Task, TaskId, TaskStatus, TaskSummary};

/// Why a status change was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TransitionError {
    /// No task has that id.
    NotFound,
    /// The task is in a state the requested move does not start from.
    NotAllowed {
        /// The status the task has now.
        current: TaskStatus,
    },
}

/// Concurrency-safe storage for every task the server has accepted.
pub struct TaskStore {
    tasks: DashMap<TaskId, Task>,
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
            tasks: DashMap::new(),
            last_id: AtomicI64::new(0),
        }
    }

    /// Stores a new `pending` task under the next id and returns a copy of it.
    pub fn insert(&self, title: Box<str>, description: Box<str>, work: Duration) -> Task {
        let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        let task = Task {
            id,
            title,
            description,
            status: TaskStatus::Pending,
            error: None,
            work,
        };
        self.tasks.insert(id, task.clone());
        task
    }

    /// Runs `read` on the task with this id while holding only its shard's
    /// read lock, so callers can serialise it without cloning.
    pub fn with_task<R>(&self, id: TaskId, read: impl FnOnce(&Task) -> R) -> Option<R> {
        self.tasks.get(&id).map(|task| read(&task))
    }

    /// Moves a task to `next` if the lifecycle allows it from its current
    /// status, and returns the task as it is after the move.
    pub fn transition(&self, id: TaskId, next: TaskStatus) -> Result<Task, TransitionError> {
        let mut task = self.tasks.get_mut(&id).ok_or(TransitionError::NotFound)?;
        if !task.status.can_become(next) {
            return Err(TransitionError::NotAllowed { current: task.status });
        }
        task.status = next;
        Ok(task.clone())
    }

    /// Marks a pending task `failed` with `reason`, and returns it.
    pub fn fail(&self, id: TaskId, reason: FailureReason) -> Result<Task, TransitionError> {
        let mut task = self.tasks.get_mut(&id).ok_or(TransitionError::NotFound)?;
        if !task.status.can_become(TaskStatus::Failed) {
            return Err(TransitionError::NotAllowed { current: task.status });
        }
        task.status = TaskStatus::Failed;
        task.error = Some(reason);
        Ok(task.clone())
    }

    /// Every task's summary, ordered by id.
    pub fn summaries(&self) -> Vec<TaskSummary> {
        let mut all: Vec<TaskSummary> = self
            .tasks
            .iter()
            .map(|entry| TaskSummary::from(entry.value()))
            .collect();
        all.sort_unstable_by_key(|summary| summary.id);
        all
    }

    /// Ids of the tasks currently in `status`, ordered by id.
    pub fn ids_with_status(&self, status: TaskStatus) -> Vec<TaskId> {
        let mut ids: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|entry| entry.status == status)
            .map(|entry| *entry.key())
            .collect();
        ids.sort_unstable();
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

    use super::*;

    fn add(store: &TaskStore, title: &str) -> Task {
        store.insert(title.into(), "".into(), Duration::from_millis(1))
    }

    #[test]
    fn ids_start_at_one_and_increase() {
        let store = TaskStore::new();
        assert_eq!(add(&store, "a").id, 1);
        assert_eq!(add(&store, "b").id, 2);
        assert_eq!(store.with_task(2, |t| t.title.clone()), Some("b".into()));
        assert_eq!(store.with_task(3, |t| t.id), None);
    }

    #[test]
    fn new_tasks_are_pending_without_error() {
        let store = TaskStore::new();
        let task = add(&store, "a");
        assert_eq!(task.status, TaskStatus::Pending);
        assert_eq!(task.error, None);
    }

    #[test]
    fn transitions_follow_the_lifecycle() {
        let store = TaskStore::new();
        let id = add(&store, "a").id;
        assert_eq!(
            store.transition(id, TaskStatus::Done),
            Err(TransitionError::NotAllowed {
                current: TaskStatus::Pending
            })
        );
        assert_eq!(
            store.transition(id, TaskStatus::Running).unwrap().status,
            TaskStatus::Running
        );
        assert!(store.fail(id, FailureReason::PoolFull).is_err());
        assert_eq!(store.transition(id, TaskStatus::Done).unwrap().status, TaskStatus::Done);
        assert_eq!(
            store.transition(id, TaskStatus::Running),
            Err(TransitionError::NotAllowed {
                current: TaskStatus::Done
            })
        );
        assert_eq!(
            store.transition(99, TaskStatus::Running),
            Err(TransitionError::NotFound)
        );
    }

    #[test]
    fn failing_records_the_reason() {
        let store = TaskStore::new();
        let id = add(&store, "a").id;
        let failed = store.fail(id, FailureReason::PoolClosed).unwrap();
        assert_eq!(
            (failed.status, failed.error),
            (TaskStatus::Failed, Some(FailureReason::PoolClosed))
        );
        assert_eq!(store.with_task(id, |t| t.error), Some(Some(FailureReason::PoolClosed)));
        assert!(store.transition(id, TaskStatus::Running).is_err());
    }

    #[test]
    fn summaries_are_ordered_by_id() {
        let store = TaskStore::new();
        for i in 0..100 {
            add(&store, &format!("t{i}"));
        }
        let ids: Vec<TaskId> = store.summaries().iter().map(|s| s.id).collect();
        assert_eq!(ids, (1..=100).collect::<Vec<_>>());
    }

    #[test]
    fn concurrent_inserts_get_distinct_ids() {
        let store = Arc::new(TaskStore::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || (0..1000).map(|_| add(&store, "x").id).collect::<Vec<_>>())
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
        let id = add(&store, "a").id;
        let winners: usize = (0..4)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || store.transition(id, TaskStatus::Running).is_ok() as usize)
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
            add(&store, "x");
        }
        store.transition(2, TaskStatus::Running).unwrap();
        store.transition(4, TaskStatus::Running).unwrap();
        assert_eq!(store.ids_with_status(TaskStatus::Running), vec![2, 4]);
        assert_eq!(store.ids_with_status(TaskStatus::Pending), vec![1, 3, 5]);
    }
}
