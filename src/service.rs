//! The use-cases: create a task, find one, list them, and run one on a
//! worker. Input validation and the mapping of store and queue outcomes to
//! the answers the API promises live here, so the HTTP layer only translates.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use serde::Deserialize;

use crate::config::WorkRange;
use crate::domain::{FailureReason, Task, TaskId, TaskStatus};
use crate::pool::{SubmitError, TaskQueue};
use crate::store::TaskStore;

/// What a `POST /tasks` body must be, in the words of its error messages.
pub const NEW_TASK_SHAPE: &str = "a JSON object with a string \"title\" and an optional string \"description\"";

/// The body of `POST /tasks`. Unknown fields are ignored, as Go's decoder
/// does. Strings without escapes are borrowed from the body, not copied.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a JSON object with a string \"title\" and an optional string \"description\"")]
pub struct NewTask<'a> {
    /// Required; surrounding white space is trimmed.
    #[serde(borrow)]
    pub title: Option<Cow<'a, str>>,
    /// Optional; surrounding white space is trimmed.
    #[serde(borrow)]
    pub description: Option<Cow<'a, str>>,
}

/// A request the service refuses, with the message clients see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceError {
    /// The title is missing or blank.
    InvalidInput,
    /// The id is not a positive decimal integer that fits in an i64.
    InvalidTaskId,
    /// No task has that id.
    TaskNotFound,
}

impl ServiceError {
    /// The `error` message of the JSON answer.
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid input",
            Self::InvalidTaskId => "invalid task id",
            Self::TaskNotFound => "task not found",
        }
    }
}

/// What became of a task that passed validation.
#[derive(Debug, PartialEq)]
pub enum Created {
    /// Stored and queued: it will run. The task as it was stored.
    Queued(TaskId, Task),
    /// Stored but refused by the queue: it is `failed` and will not run.
    Rejected(TaskId, Task),
}

/// Tasks that shutdown left unfinished, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unfinished {
    /// Still waiting for a worker.
    pub queued: Vec<TaskId>,
    /// On a worker when the count was taken.
    pub running: Vec<TaskId>,
}

/// The task use-cases over one store and one queue.
pub struct TaskService {
    store: Arc<TaskStore>,
    queue: Arc<TaskQueue>,
    work: WorkRange,
}

impl TaskService {
    /// A service storing into `store`, queueing onto `queue`, drawing each
    /// task's work duration from `work`.
    pub fn new(store: Arc<TaskStore>, queue: Arc<TaskQueue>, work: WorkRange) -> Self {
        Self { store, queue, work }
    }

    /// Validates `input`, stores the task as `pending` and queues it. A task
    /// the queue refuses is kept as `failed` with the reason.
    pub fn create(&self, input: NewTask<'_>) -> Result<Created, ServiceError> {
        let title = input.title.as_deref().map(str::trim).unwrap_or_default();
        if title.is_empty() {
            return Err(ServiceError::InvalidInput);
        }
        let description = input.description.as_deref().map(str::trim).unwrap_or_default();
        let task = Task::new(title, description, self.work.draw());
        let id = self.store.insert(task.clone());
        let reason = match self.queue.submit(id) {
            Ok(()) => return Ok(Created::Queued(id, task)),
            Err(SubmitError::Full) => FailureReason::PoolFull,
            Err(SubmitError::Closed) => FailureReason::PoolClosed,
        };
        let mut failed = task;
        failed.fail(reason).expect("a new task is pending");
        self.store
            .fail(id, reason)
            .expect("a task the queue refused was never started");
        Ok(Created::Rejected(id, failed))
    }

    /// Whether new tasks are being accepted: false once shutdown has closed the pool.
    pub fn is_accepting(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Runs `read` on the task with this id.
    pub fn find<R>(&self, id: TaskId, read: impl FnOnce(&Task) -> R) -> Result<R, ServiceError> {
        self.store.with_task(id, read).ok_or(ServiceError::TaskNotFound)
    }

    /// Calls `each` for every task, in id order.
    pub fn for_each_task(&self, mut each: impl FnMut(TaskId, &Task)) {
        for id in self.store.ids() {
            self.store.with_task(id, |task| each(id, task));
        }
    }

    /// The worker job: runs the task if it is still pending, sleeping through
    /// its work duration with may's sleep, and logs its start and completion.
    pub fn run(&self, worker: usize, id: TaskId) {
        let planned = match self.store.advance(id, TaskStatus::Running) {
            Ok(work) => work,
            Err(refused) => {
                warn!("worker {worker}: skipping task {id}: {refused:?}");
                return;
            }
        };
        info!("worker {worker}: task {id} started, planned {planned:?}");
        let started = Instant::now();
        may::coroutine::sleep(planned);
        let actual = Duration::from_millis(started.elapsed().as_millis() as u64);
        match self.store.advance(id, TaskStatus::Done) {
            Ok(_) => info!("worker {worker}: task {id} done in {actual:?}, planned {planned:?}"),
            Err(refused) => warn!("worker {worker}: task {id} could not be marked done: {refused:?}"),
        }
    }

    /// The accepted tasks that have not finished (for the shutdown report),
    /// from one pass over the store.
    pub fn unfinished(&self) -> Unfinished {
        let mut unfinished = Unfinished::default();
        for (id, status) in self.store.ids_with_status(&[TaskStatus::Pending, TaskStatus::Running]) {
            match status {
                TaskStatus::Running => unfinished.running.push(id),
                _ => unfinished.queued.push(id),
            }
        }
        unfinished
    }
}

/// Parses a task id as the API accepts it: a decimal integer in i64 range,
/// optionally signed (as Go's `strconv.ParseInt`), greater than zero.
pub fn parse_task_id(raw: &str) -> Result<TaskId, ServiceError> {
    match raw.parse::<TaskId>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ServiceError::InvalidTaskId),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(pool_size: usize) -> TaskService {
        let work = WorkRange { min_ms: 1, max_ms: 1 };
        TaskService::new(Arc::new(TaskStore::new()), Arc::new(TaskQueue::new(pool_size)), work)
    }

    fn input<'a>(title: &'a str, description: Option<&'a str>) -> NewTask<'a> {
        NewTask {
            title: Some(title.into()),
            description: description.map(Into::into),
        }
    }

    fn status(service: &TaskService, id: TaskId) -> Result<TaskStatus, ServiceError> {
        service.find(id, Task::status)
    }

    #[test]
    fn create_trims_and_queues() {
        let service = service(1);
        let Ok(Created::Queued(id, task)) = service.create(input("  write  ", Some("\tdocs \n"))) else {
            panic!("expected the task to be queued");
        };
        assert_eq!(
            (id, task.title_json(), task.description_json()),
            (1, "\"write\"", "\"docs\"")
        );
        assert_eq!(task.status(), TaskStatus::Pending);
        assert_eq!(service.queue.len(), 1);
    }

    #[test]
    fn missing_or_blank_title_is_invalid_input() {
        let service = service(1);
        assert_eq!(service.create(NewTask::default()), Err(ServiceError::InvalidInput));
        assert_eq!(service.create(input(" \t ", None)), Err(ServiceError::InvalidInput));
        assert!(service.store.is_empty());
    }

    #[test]
    fn description_defaults_to_empty() {
        let Ok(Created::Queued(_, task)) = service(1).create(input("t", None)) else {
            panic!("expected the task to be queued");
        };
        assert_eq!(task.description_json(), "\"\"");
    }

    #[test]
    fn a_full_queue_fails_the_task() {
        let service = service(1);
        service.create(input("first", None)).unwrap();
        let Ok(Created::Rejected(id, task)) = service.create(input("second", None)) else {
            panic!("expected the task to be rejected");
        };
        assert_eq!(
            (id, task.status(), task.error()),
            (2, TaskStatus::Failed, Some(FailureReason::PoolFull))
        );
        assert_eq!(status(&service, 2), Ok(TaskStatus::Failed));
    }

    #[test]
    fn a_closed_queue_fails_the_task() {
        let service = service(1);
        let pool = crate::pool::WorkerPool::start(1, service.queue.clone(), Arc::new(|_, _| {})).unwrap();
        pool.close();
        let Ok(Created::Rejected(_, task)) = service.create(input("late", None)) else {
            panic!("expected the task to be rejected");
        };
        assert_eq!(task.error(), Some(FailureReason::PoolClosed));
    }

    #[test]
    fn find_reports_unknown_ids() {
        let service = service(4);
        service.create(input("t", None)).unwrap();
        assert_eq!(status(&service, 1), Ok(TaskStatus::Pending));
        assert_eq!(status(&service, 2), Err(ServiceError::TaskNotFound));
    }

    #[test]
    fn every_task_is_visited_in_id_order() {
        let service = service(100);
        for i in 0..20 {
            service.create(input(&format!("t{i}"), None)).unwrap();
        }
        let mut seen = Vec::new();
        service.for_each_task(|id, _| seen.push(id));
        assert_eq!(seen, (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn task_ids_are_positive_decimal_i64() {
        assert_eq!(parse_task_id("1"), Ok(1));
        assert_eq!(parse_task_id("+1"), Ok(1));
        assert_eq!(parse_task_id("007"), Ok(7));
        assert_eq!(parse_task_id("9223372036854775807"), Ok(i64::MAX));
        for bad in ["0", "-1", "abc", "", "1.0", " 1", "9223372036854775808", "0x1", "1_000"] {
            assert_eq!(parse_task_id(bad), Err(ServiceError::InvalidTaskId), "{bad:?}");
        }
    }

    #[test]
    fn run_moves_pending_to_running_to_done() {
        let service = service(4);
        service.create(input("t", None)).unwrap();
        service.run(1, 1);
        assert_eq!(status(&service, 1), Ok(TaskStatus::Done));
        service.run(1, 1);
        assert_eq!(status(&service, 1), Ok(TaskStatus::Done));
    }

    #[test]
    fn run_skips_failed_tasks() {
        let service = service(1);
        service.create(input("a", None)).unwrap();
        service.create(input("b", None)).unwrap();
        service.run(1, 2);
        assert_eq!(status(&service, 2), Ok(TaskStatus::Failed));
    }

    #[test]
    fn unfinished_lists_queued_and_running() {
        let service = service(4);
        for title in ["a", "b", "c"] {
            service.create(input(title, None)).unwrap();
        }
        service.store.advance(2, TaskStatus::Running).unwrap();
        assert_eq!(
            service.unfinished(),
            Unfinished {
                queued: vec![1, 3],
                running: vec![2]
            }
        );
    }
}
