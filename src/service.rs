//! The use-cases: create a task, find one (at once, or once it has
//! finished), list them, cancel one, and run one on a worker. Input validation and the mapping of store and queue outcomes to
//! the answers the API promises live here, so the HTTP layer only translates.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use serde::Deserialize;

use crate::config::WorkRange;
use crate::domain::{FailureReason, NotAllowed, Task, TaskId, TaskStatus};
use crate::metrics::{Counter, Exposition, Histogram, Kind};
use crate::pool::TaskQueue;
use crate::store::{Absent, CancelError, PageQuery, TaskStore, TransitionError};
use crate::waiters::Registration;

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
    /// The `wait` of a `GET /tasks/{id}` is not a number of seconds from 0
    /// to `MAX_WAIT`, which is `max_seconds`.
    InvalidWait {
        /// The most seconds a request may wait (`MAX_WAIT`).
        max_seconds: u64,
    },
    /// The task to cancel has finished already.
    TaskFinished,
}

impl ServiceError {
    /// The `error` message of the JSON answer.
    pub fn message(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::InvalidInput => "invalid input",
            Self::InvalidTaskId => "invalid task id",
            Self::TaskNotFound => "task not found",
            Self::TaskExpired => "task expired",
            Self::InvalidLimit => "invalid limit: expected an integer from 1 to 10000",
            Self::InvalidAfter => "invalid after: expected a task id, or 0 for the first page",
            Self::InvalidStatus => "invalid status: expected one of pending, running, done, failed, canceled",
            Self::InvalidWait { max_seconds } => {
                return Cow::Owned(format!(
                    "invalid wait: expected a decimal number of seconds from 0 to {max_seconds}"
                ));
            }
            Self::TaskFinished => "task already finished",
        })
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
    max_wait: Duration,
    counts: TaskCounts,
}

/// What the service counts as it goes, for the metrics.
#[derive(Debug, Default)]
struct TaskCounts {
    created: Counter,
    /// Tasks the queue refused, by [`FailureReason`]: full, then closed.
    rejected: [Counter; 2],
    /// Tasks canceled by `DELETE /tasks/{id}`.
    canceled: Counter,
    run_time: Histogram,
}

impl TaskService {
    /// A service storing into `store`, queueing onto `queue`, drawing each
    /// task's work duration from `work`, letting a request wait up to
    /// `max_wait` for a task to finish.
    pub fn new(store: Arc<TaskStore>, queue: Arc<TaskQueue>, work: WorkRange, max_wait: Duration) -> Self {
        Self {
            store,
            queue,
            work,
            max_wait,
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

    /// The longest a request may wait for a task to finish (`MAX_WAIT`).
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// Runs `read` on the task with this id once it has finished (done,
    /// failed or canceled), or once `wait` has passed, or at once when
    /// shutdown has begun, whichever comes first: the request parks its
    /// coroutine meanwhile, at no cost until one of them happens. A `wait`
    /// of zero reads at once, as [`find`](Self::find) does; so does an id
    /// with no task (404, or 410 when evicted).
    pub fn find_when_finished<R>(
        &self,
        id: TaskId,
        wait: Duration,
        read: impl FnOnce(&Task) -> R,
    ) -> Result<R, ServiceError> {
        if !wait.is_zero() {
            self.store.wait_until_finished(id, Instant::now() + wait);
        }
        self.find(id, read)
    }

    /// Cancels a pending or running task and runs `read` on it, canceled.
    /// A pending task will never run (its worker skips it); a running
    /// task's worker stops at once and takes the next task. Whoever waits
    /// on the task is answered.
    pub fn cancel<R>(&self, id: TaskId, read: impl FnOnce(&Task) -> R) -> Result<R, ServiceError> {
        match self.store.cancel(id, read) {
            Ok((before, read)) => {
                self.counts.canceled.increment();
                info!("task {id} canceled while {before}");
                Ok(read)
            }
            Err(CancelError::Absent(Absent::NotFound)) => Err(ServiceError::TaskNotFound),
            Err(CancelError::Absent(Absent::Evicted)) => Err(ServiceError::TaskExpired),
            Err(CancelError::Finished(_)) => Err(ServiceError::TaskFinished),
        }
    }

    /// Answers every request waiting for a task, and every later one at
    /// once: shutdown calls this as it closes the pool. Returns how many
    /// were waiting.
    pub fn close_waiting(&self) -> usize {
        self.store.close_waiting()
    }

    /// Calls `each` for the tasks of one page of the listing, in id order,
    /// until it says the page has no more room, and returns the id the next
    /// page starts after, if tasks may follow.
    pub fn list(&self, query: &PageQuery, each: impl FnMut(TaskId, &Task) -> bool) -> Option<TaskId> {
        self.store.page(query, each)
    }

    /// The worker job: runs the task if it is still pending, parked through
    /// its work duration unless a cancel wakes it first, and logs its start
    /// and its end (done or canceled). A task canceled while pending is
    /// skipped.
    pub fn run(&self, worker: usize, id: TaskId) {
        // Watching before the task is running, so a cancel from the moment
        // it runs reaches this worker.
        let watch = self.store.watch_work(id);
        let planned = match self.store.advance(id, TaskStatus::Running) {
            Ok(work) => work,
            Err(TransitionError::NotAllowed(NotAllowed {
                current: TaskStatus::Canceled,
            })) => {
                info!("worker {worker}: task {id} skipped: canceled before it started");
                return;
            }
            Err(refused) => {
                warn!("worker {worker}: skipping task {id}: {refused:?}");
                return;
            }
        };
        info!("worker {worker}: task {id} started, planned {planned:?}");
        let started = Instant::now();
        let canceled = work_through(&watch, planned, started);
        drop(watch);
        let elapsed = started.elapsed();
        let actual = Duration::from_millis(elapsed.as_millis() as u64);
        if canceled {
            info!("worker {worker}: task {id} canceled after {actual:?}, planned {planned:?}");
            return;
        }
        self.counts.run_time.observe(elapsed);
        // Logged before the store says done: a shutdown report (which reads
        // the store) taken in between names the task as running, so no
        // task is reported finished without its line in the log.
        info!("worker {worker}: task {id} done in {actual:?}, planned {planned:?}");
        match self.store.advance(id, TaskStatus::Done) {
            Ok(_) => {}
            Err(TransitionError::NotAllowed(NotAllowed {
                current: TaskStatus::Canceled,
            })) => info!("worker {worker}: task {id} canceled as its work ended: it stays canceled"),
            Err(refused) => warn!("worker {worker}: task {id} could not be marked done: {refused:?}"),
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
            "worker_pool_tasks_canceled_total",
            Kind::Counter,
            "Tasks canceled by DELETE /tasks/{id}, pending or running.",
            self.counts.canceled.get(),
        )
        .single(
            "worker_pool_task_waiters",
            Kind::Gauge,
            "Requests waiting for a task to finish (GET /tasks/{id}?wait=...).",
            self.store.waiting_clients(),
        )
        .single(
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
    /// evicted, a worker logs a task done before the store says so, and a
    /// cancel is logged as the task becomes canceled; so every task
    /// answered 201 is logged done, logged canceled, or named here.
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

/// Parses the `wait` of a `GET /tasks/{id}`: seconds as a non-negative
/// decimal number (`2.5`, `0`, `1e-3`; read as an `f64`), at most `max`.
/// NaN, infinities, signs other than on zero, and anything but digits, a
/// point and an exponent are refused, naming the parameter.
pub fn parse_wait(raw: &str, max: Duration) -> Result<Duration, ServiceError> {
    let refused = ServiceError::InvalidWait {
        max_seconds: max.as_secs(),
    };
    // Only what a number is made of: `f64::from_str` alone would also take
    // "inf", "NaN" and "infinity".
    let numeric = raw
        .bytes()
        .all(|byte| byte.is_ascii_digit() || matches!(byte, b'.' | b'e' | b'E' | b'+' | b'-'));
    match raw.parse::<f64>() {
        // Compared as read, before any rounding to nanoseconds, so that
        // nothing above `max` passes. -0 is zero.
        Ok(seconds) if numeric && seconds >= 0.0 && seconds <= max.as_secs_f64() => {
            Duration::try_from_secs_f64(seconds).map_err(|_| refused)
        }
        _ => Err(refused),
    }
}

/// Parks the calling worker through `planned` work from `started`; true if
/// a cancel woke it first. Only the task finishing wakes a worker's watch
/// (shutdown does not), and only a cancel can finish a running task other
/// than its worker.
fn work_through(watch: &Registration<'_>, planned: Duration, started: Instant) -> bool {
    if planned.is_zero() {
        // No work, but still a yield, as a sleep of zero is: a worker
        // taking a long run of instant tasks does not hold its thread.
        may::coroutine::sleep(planned);
        return false;
    }
    loop {
        let left = planned.saturating_sub(started.elapsed());
        if left.is_zero() {
            return false;
        }
        if watch.park(left) {
            return true;
        }
    }
}

/// Parses a task id as the API accepts it: a decimal integer in i64 range,
/// optionally signed (as Go's `strconv.ParseInt`), greater than zero.
/// A negative id is refused like any other that is not positive, so only
/// `+` is read as a sign. The digits are folded by hand: `str::parse` took
/// 39 instructions for the id `1`, about twice as many, on every task
/// request.
pub fn parse_task_id(raw: &str) -> Result<TaskId, ServiceError> {
    let digits = raw.strip_prefix('+').unwrap_or(raw).as_bytes();
    if digits.is_empty() {
        return Err(ServiceError::InvalidTaskId);
    }
    let mut id: TaskId = 0;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(ServiceError::InvalidTaskId);
        }
        id = id
            .checked_mul(10)
            .and_then(|id| id.checked_add(TaskId::from(digit)))
            .ok_or(ServiceError::InvalidTaskId)?;
    }
    if id > 0 {
        Ok(id)
    } else {
        Err(ServiceError::InvalidTaskId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(pool_size: usize) -> TaskService {
        let work = WorkRange { min_ms: 1, max_ms: 1 };
        TaskService::new(
            Arc::new(TaskStore::new()),
            Arc::new(TaskQueue::new(pool_size)),
            work,
            MAX_WAIT,
        )
    }

    const MAX_WAIT: Duration = Duration::from_secs(60);

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
        let service = TaskService::new(store, Arc::new(TaskQueue::new(1)), work, MAX_WAIT);
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
            ServiceError::InvalidWait { max_seconds: 60 },
        ] {
            let name = format!("{error:?}");
            let parameter = name["Invalid".len()..].split(' ').next().unwrap().to_lowercase();
            assert!(
                error.message().starts_with(&format!("invalid {parameter}:")),
                "{error:?}"
            );
        }
        let message = ServiceError::InvalidStatus.message();
        for status in TaskStatus::ALL {
            assert!(message.contains(status.as_str()), "{message} names {status}");
        }
    }

    #[test]
    fn a_wait_is_a_non_negative_decimal_up_to_the_maximum() {
        let max = Duration::from_secs(60);
        for (raw, expected) in [
            ("0", Duration::ZERO),
            ("2.5", Duration::from_millis(2500)),
            ("60", max),
            ("060.000", max),
            ("1e-3", Duration::from_millis(1)),
            (".5", Duration::from_millis(500)),
            ("-0", Duration::ZERO),
        ] {
            assert_eq!(parse_wait(raw, max), Ok(expected), "{raw:?}");
        }
        let refused = Err(ServiceError::InvalidWait { max_seconds: 60 });
        for raw in [
            "",
            "-1",
            "-0.001",
            "60.000000000001",
            "61",
            "1e400",
            "NaN",
            "nan",
            "inf",
            "+inf",
            "infinity",
            "1s",
            "0x10",
            " 1",
            "1,5",
            ".",
            "e1",
        ] {
            assert_eq!(parse_wait(raw, max), refused, "{raw:?}");
        }
        assert_eq!(
            parse_wait("0.5", Duration::ZERO),
            Err(ServiceError::InvalidWait { max_seconds: 0 })
        );
        assert_eq!(parse_wait("0", Duration::ZERO), Ok(Duration::ZERO));
        assert_eq!(
            ServiceError::InvalidWait { max_seconds: 60 }.message(),
            "invalid wait: expected a decimal number of seconds from 0 to 60"
        );
    }

    #[test]
    fn cancel_answers_with_the_canceled_task_once() {
        let service = service(4);
        service.create(input("t", None)).unwrap();
        assert_eq!(service.cancel(1, Task::status), Ok(TaskStatus::Canceled));
        assert_eq!(service.cancel(1, Task::status), Err(ServiceError::TaskFinished));
        assert_eq!(service.cancel(2, Task::status), Err(ServiceError::TaskNotFound));
        assert_eq!(service.counts.canceled.get(), 1);
        service.run(1, 1);
        assert_eq!(
            status(&service, 1),
            Ok(TaskStatus::Canceled),
            "a canceled task never runs"
        );
        assert!(metrics_of(&service).contains("\nworker_pool_task_run_seconds_count 0\n"));
        assert!(metrics_of(&service).contains("\nworker_pool_tasks_canceled_total 1\n"));
    }

    fn metrics_of(service: &TaskService) -> String {
        let mut page = Exposition::default();
        service.write_metrics(&mut page);
        page.into_text()
    }

    #[test]
    fn a_cancel_interrupts_the_worker_running_the_task() {
        let work = WorkRange {
            min_ms: 60_000,
            max_ms: 60_000,
        };
        let store = Arc::new(TaskStore::new());
        let service = Arc::new(TaskService::new(store, Arc::new(TaskQueue::new(4)), work, MAX_WAIT));
        service.create(input("long", None)).unwrap();
        let worker = {
            let service = service.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                service.run(1, 1);
                started.elapsed()
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while status(&service, 1) != Ok(TaskStatus::Running) {
            assert!(Instant::now() < deadline, "the task never started");
            std::thread::yield_now();
        }
        service.cancel(1, |_| ()).unwrap();
        let worked = worker.join().unwrap();
        assert!(worked < Duration::from_secs(10), "the worker ran on for {worked:?}");
        assert_eq!(status(&service, 1), Ok(TaskStatus::Canceled));
        let metrics = metrics_of(&service);
        assert!(
            metrics.contains("\nworker_pool_task_run_seconds_count 0\n"),
            "a canceled task is not a completed one: {metrics}"
        );
    }

    #[test]
    fn find_when_finished_waits_for_the_worker() {
        let work = WorkRange { min_ms: 50, max_ms: 50 };
        let store = Arc::new(TaskStore::new());
        let service = Arc::new(TaskService::new(store, Arc::new(TaskQueue::new(4)), work, MAX_WAIT));
        service.create(input("t", None)).unwrap();
        assert_eq!(
            service.find_when_finished(1, Duration::ZERO, Task::status),
            Ok(TaskStatus::Pending)
        );
        let worker = {
            let service = service.clone();
            std::thread::spawn(move || service.run(1, 1))
        };
        let started = Instant::now();
        assert_eq!(
            service.find_when_finished(1, Duration::from_secs(30), Task::status),
            Ok(TaskStatus::Done)
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        worker.join().unwrap();
        assert_eq!(
            service.find_when_finished(7, Duration::from_secs(30), Task::status),
            Err(ServiceError::TaskNotFound)
        );
    }

    #[test]
    fn task_ids_are_positive_decimal_i64() {
        assert_eq!(parse_task_id("1"), Ok(1));
        assert_eq!(parse_task_id("+1"), Ok(1));
        assert_eq!(parse_task_id("007"), Ok(7));
        assert_eq!(parse_task_id("9223372036854775807"), Ok(i64::MAX));
        for bad in [
            "0",
            "-1",
            "abc",
            "",
            "+",
            "++1",
            "+-1",
            "1.0",
            " 1",
            "9223372036854775808",
            "0x1",
            "1_000",
        ] {
            assert_eq!(parse_task_id(bad), Err(ServiceError::InvalidTaskId), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// The hand-written fold takes exactly the ids `str::parse` does.
        #[test]
        fn task_ids_parse_as_str_parse_does(raw in "[+-]?[0-9]{0,21}|[+-]?[0-9a-f .]{0,5}|\\PC{0,8}") {
            let expected = match raw.parse::<TaskId>() {
                Ok(id) if id > 0 => Ok(id),
                _ => Err(ServiceError::InvalidTaskId),
            };
            proptest::prop_assert_eq!(parse_task_id(&raw), expected);
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
