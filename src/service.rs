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
use crate::metrics::{Counter, Exposition, Histogram, Kind};
use crate::pool::TaskQueue;
use crate::store::{Absent, PageQuery, TaskStore};

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
    /// The task finished and was evicted to keep memory bounded.
    TaskExpired,
    /// The `limit` of a listing is not an integer in range.
    InvalidLimit,
    /// The `after` of a listing is not a task id or 0.
    InvalidAfter,
    /// The `status` of a listing is not a status name.
    InvalidStatus,
}

impl ServiceError {
    /// The `error` message of the JSON answer.
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid input",
            Self::InvalidTaskId => "invalid task id",
            Self::TaskNotFound => "task not found",
            Self::TaskExpired => "task expired",
            Self::InvalidLimit => "invalid limit: expected an integer from 1 to 10000",
            Self::InvalidAfter => "invalid after: expected a task id, or 0 for the first page",
            Self::InvalidStatus => "invalid status: expected one of pending, running, done, failed",
        }
    }
}

/// What became of a task that passed validation.
#[derive(Debug, PartialEq)]
pub enum Created {
    /// Stored and queued: it will run. The task as it was stored.
    Queued(TaskId, Task),
    /// Refused by the queue: it is `failed` with the reason and will not
    /// run. Refused as full it is stored; refused as closed it is not.
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
    counts: TaskCounts,
}

/// What the service counts as it goes, for the metrics.
#[derive(Debug, Default)]
struct TaskCounts {
    created: Counter,
    /// Tasks the queue refused, by [`FailureReason`]: full, then closed.
    rejected: [Counter; 2],
    run_time: Histogram,
}

impl TaskService {
    /// A service storing into `store`, queueing onto `queue`, drawing each
    /// task's work duration from `work`.
    pub fn new(store: Arc<TaskStore>, queue: Arc<TaskQueue>, work: WorkRange) -> Self {
        Self {
            store,
            queue,
            work,
            counts: TaskCounts {
                run_time: Histogram::spanning(Duration::from_millis(work.min_ms), Duration::from_millis(work.max_ms)),
                ..TaskCounts::default()
            },
        }
    }

    /// Validates `input`, stores the task as `pending` and queues it. A task
    /// the queue refuses as full is kept as `failed` with the reason. One
    /// refused because the pool is closed (shutdown) takes an id but is not
    /// stored: its answer is all there is of it, and a lookup of its id
    /// finds nothing. Storing it would let a flood during shutdown fill the
    /// store with tasks nobody can ask about, and make inserts evict them.
    pub fn create(&self, input: NewTask<'_>) -> Result<Created, ServiceError> {
        let title = input.title.as_deref().map(str::trim).unwrap_or_default();
        if title.is_empty() {
            return Err(ServiceError::InvalidInput);
        }
        let description = input.description.as_deref().map(str::trim).unwrap_or_default();
        let task = Task::new(title, description, self.work.draw());
        self.counts.created.increment();
        // Admitted before the task is stored, so a stored task is never
        // refused as closed: the close waits for the insert.
        let Some(admission) = self.queue.admit() else {
            return Ok(self.refused(self.store.skip_id(), task, FailureReason::PoolClosed));
        };
        let id = self.store.insert(task.clone());
        if admission.push(id).is_ok() {
            return Ok(Created::Queued(id, task));
        }
        self.store
            .fail(id, FailureReason::PoolFull)
            .expect("a task the queue refused was never started");
        Ok(self.refused(id, task, FailureReason::PoolFull))
    }

    /// Counts a refusal and gives the answer: the task, failed with `reason`.
    fn refused(&self, id: TaskId, mut task: Task, reason: FailureReason) -> Created {
        self.counts.rejected[reason as usize].increment();
        task.fail(reason).expect("a new task is pending");
        Created::Rejected(id, task)
    }

    /// Whether new tasks are being accepted: false once shutdown has closed the pool.
    pub fn is_accepting(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Runs `read` on the task with this id.
    pub fn find<R>(&self, id: TaskId, read: impl FnOnce(&Task) -> R) -> Result<R, ServiceError> {
        self.store.with_task(id, read).map_err(|absent| match absent {
            Absent::NotFound => ServiceError::TaskNotFound,
            Absent::Evicted => ServiceError::TaskExpired,
        })
    }

    /// Calls `each` for the tasks of one page of the listing, in id order,
    /// until it says the page has no more room, and returns the id the next
    /// page starts after, if tasks may follow.
    pub fn list(&self, query: &PageQuery, each: impl FnMut(TaskId, &Task) -> bool) -> Option<TaskId> {
        self.store.page(query, each)
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
        let elapsed = started.elapsed();
        self.counts.run_time.observe(elapsed);
        let actual = Duration::from_millis(elapsed.as_millis() as u64);
        // Logged before the store says done: a shutdown report (which reads
        // the store) taken in between names the task as running, so no
        // task is reported finished without its line in the log.
        info!("worker {worker}: task {id} done in {actual:?}, planned {planned:?}");
        if let Err(refused) = self.store.advance(id, TaskStatus::Done) {
            warn!("worker {worker}: task {id} could not be marked done: {refused:?}");
        }
    }

    /// Writes the task, queue and eviction metrics.
    pub fn write_metrics(&self, page: &mut Exposition) {
        let stats = self.store.stats();
        page.single(
            "worker_pool_tasks_created_total",
            Kind::Counter,
            "Tasks created by POST /tasks, queued or refused.",
            self.counts.created.get(),
        );
        page.family("worker_pool_tasks", Kind::Gauge, "Tasks held in memory, by status.");
        for status in TaskStatus::ALL {
            let count = stats.by_status[status.index()];
            page.sample("worker_pool_tasks", &[("status", status.as_str())], count);
        }
        page.single(
            "worker_pool_tasks_text_bytes",
            Kind::Gauge,
            "Bytes of task titles and descriptions held in memory.",
            stats.text_bytes,
        )
        .single(
            "worker_pool_tasks_evicted_total",
            Kind::Counter,
            "Finished tasks evicted to stay within MAX_TASKS and MAX_TEXT_BYTES.",
            stats.evicted,
        )
        .family(
            "worker_pool_tasks_rejected_total",
            Kind::Counter,
            "Tasks the queue refused, by reason.",
        );
        for (reason, label) in [(FailureReason::PoolFull, "full"), (FailureReason::PoolClosed, "closed")] {
            let count = self.counts.rejected[reason as usize].get();
            page.sample("worker_pool_tasks_rejected_total", &[("reason", label)], count);
        }
        page.single(
            "worker_pool_queue_depth",
            Kind::Gauge,
            "Task ids waiting in the queue.",
            self.queue.len(),
        )
        .single(
            "worker_pool_queue_capacity",
            Kind::Gauge,
            "The most task ids the queue holds (POOL_SIZE).",
            self.queue.capacity(),
        )
        .histogram(
            "worker_pool_task_run_seconds",
            "Time workers spent on each completed task.",
            &self.counts.run_time,
        );
        crate::metrics::process::write(page);
    }

    /// The accepted tasks that have not finished (for the shutdown report),
    /// from one pass over the store. Pending and running tasks are never
    /// evicted, and a worker logs a task done before the store says so; so
    /// every task answered 201 is either logged done or named here.
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

/// How many tasks a page of the listing holds when the client does not say.
pub const DEFAULT_PAGE_LIMIT: usize = 1000;

/// The most tasks a page of the listing may hold.
pub const MAX_PAGE_LIMIT: usize = 10_000;

/// Builds a page query from the listing's parameters as given (`None` when
/// absent), or names the first one that is not valid.
pub fn page_query(limit: Option<&str>, after: Option<&str>, status: Option<&str>) -> Result<PageQuery, ServiceError> {
    let limit = match limit {
        None => DEFAULT_PAGE_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(limit) if (1..=MAX_PAGE_LIMIT).contains(&limit) => limit,
            _ => return Err(ServiceError::InvalidLimit),
        },
    };
    let after = match after {
        None => 0,
        Some(raw) => match raw.parse::<TaskId>() {
            Ok(after) if after >= 0 => after,
            _ => return Err(ServiceError::InvalidAfter),
        },
    };
    let status = match status {
        None => None,
        Some(name) => Some(TaskStatus::from_name(name).ok_or(ServiceError::InvalidStatus)?),
    };
    Ok(PageQuery { after, limit, status })
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
    fn a_task_refused_as_closed_takes_an_id_but_is_not_stored() {
        let service = service(1);
        service.create(input("early", None)).unwrap();
        let pool = crate::pool::WorkerPool::start(1, service.queue.clone(), Arc::new(|_, _| {})).unwrap();
        pool.close();
        let Ok(Created::Rejected(id, task)) = service.create(input("late", None)) else {
            panic!("expected the task to be rejected");
        };
        assert_eq!((id, task.status()), (2, TaskStatus::Failed));
        assert_eq!(task.error(), Some(FailureReason::PoolClosed));
        assert_eq!(status(&service, 2), Err(ServiceError::TaskNotFound));
        assert_eq!(service.store.len(), 1);
        let Ok(Created::Rejected(next, _)) = service.create(input("later", None)) else {
            panic!("expected the task to be rejected");
        };
        assert_eq!(next, 3, "ids stay unique");
    }

    #[test]
    fn find_reports_unknown_ids() {
        let service = service(4);
        service.create(input("t", None)).unwrap();
        assert_eq!(status(&service, 1), Ok(TaskStatus::Pending));
        assert_eq!(status(&service, 2), Err(ServiceError::TaskNotFound));
    }

    #[test]
    fn a_page_lists_tasks_in_id_order() {
        let service = service(100);
        for i in 0..20 {
            service.create(input(&format!("t{i}"), None)).unwrap();
        }
        let mut seen = Vec::new();
        let query = page_query(Some("15"), Some("3"), None).unwrap();
        let next = service.list(&query, |id, _| {
            seen.push(id);
            true
        });
        assert_eq!((seen, next), ((4..=18).collect::<Vec<_>>(), Some(18)));
    }

    #[test]
    fn an_evicted_task_is_expired_not_missing() {
        let work = WorkRange { min_ms: 1, max_ms: 1 };
        let store = Arc::new(TaskStore::with_max_tasks(1));
        let service = TaskService::new(store, Arc::new(TaskQueue::new(1)), work);
        for title in ["queued", "refused", "refused too", "refused last"] {
            service.create(input(title, None)).unwrap();
        }
        assert_eq!(status(&service, 1), Ok(TaskStatus::Pending));
        assert_eq!(status(&service, 2), Err(ServiceError::TaskExpired));
        assert_eq!(status(&service, 3), Err(ServiceError::TaskExpired));
        assert_eq!(
            status(&service, 4),
            Ok(TaskStatus::Failed),
            "finishing evicts nothing: the next insert does"
        );
        assert_eq!(status(&service, 5), Err(ServiceError::TaskNotFound));
    }

    #[test]
    fn page_parameters_are_checked_one_by_one() {
        assert_eq!(
            page_query(None, None, None),
            Ok(PageQuery {
                after: 0,
                limit: DEFAULT_PAGE_LIMIT,
                status: None
            })
        );
        assert_eq!(
            page_query(Some("10000"), Some("0"), Some("running")),
            Ok(PageQuery {
                after: 0,
                limit: MAX_PAGE_LIMIT,
                status: Some(TaskStatus::Running)
            })
        );
        for limit in ["0", "10001", "-1", "", "ten", "1.5", "99999999999999999999999"] {
            assert_eq!(
                page_query(Some(limit), None, None),
                Err(ServiceError::InvalidLimit),
                "{limit:?}"
            );
        }
        for after in ["-1", "", "x", "9223372036854775808"] {
            assert_eq!(
                page_query(None, Some(after), None),
                Err(ServiceError::InvalidAfter),
                "{after:?}"
            );
        }
        for status in ["", "Done", "finished"] {
            assert_eq!(
                page_query(None, None, Some(status)),
                Err(ServiceError::InvalidStatus),
                "{status:?}"
            );
        }
        for error in [
            ServiceError::InvalidLimit,
            ServiceError::InvalidAfter,
            ServiceError::InvalidStatus,
        ] {
            let parameter = format!("{error:?}")["Invalid".len()..].to_lowercase();
            assert!(
                error.message().starts_with(&format!("invalid {parameter}:")),
                "{error:?}"
            );
        }
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
