//! The bounded queue of task ids and the coroutine workers that drain it.
//!
//! The queue is a fixed-capacity lock-free [`ArrayQueue`]; a may semaphore
//! counts what is in it, so idle workers park on the semaphore instead of
//! polling. Closing the queue refuses new ids, then wakes every worker once
//! more: a worker exits only when it finds the queue closed *and* empty, so
//! whatever was accepted before the close is still run.
//!
//! The pool knows nothing about tasks beyond their ids: what a worker does
//! with an id is the job closure it is started with.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use log::error;
use may::sync::Semphore;

use crate::domain::TaskId;

/// Why an id was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue holds `capacity` ids already.
    Full,
    /// The queue was closed for shutdown.
    Closed,
}

/// A bounded, closable multi-producer multi-consumer queue of task ids.
pub struct TaskQueue {
    ids: ArrayQueue<TaskId>,
    /// One permit per queued id, plus one per worker once closed.
    ready: Semphore,
    closed: AtomicBool,
    /// Admissions not yet pushed or dropped (see [`TaskQueue::admit`]);
    /// `close` waits for these, so no id lands after the workers have been
    /// told to stop, and no admitted id is refused as closed.
    submitting: AtomicUsize,
}

impl TaskQueue {
    /// An open, empty queue holding at most `capacity` ids (`capacity >= 1`).
    pub fn new(capacity: usize) -> Self {
        Self {
            ids: ArrayQueue::new(capacity),
            ready: Semphore::new(0),
            closed: AtomicBool::new(false),
            submitting: AtomicUsize::new(0),
        }
    }

    /// Queues `id` for a worker, or says why it cannot.
    pub fn submit(&self, id: TaskId) -> Result<(), SubmitError> {
        self.admit().ok_or(SubmitError::Closed)?.push(id)
    }

    /// Admits one submission, or `None` once the queue is closed. Until the
    /// admission is pushed or dropped, closing waits for it: so a caller can
    /// check first, then do the work that produces the id (store the task),
    /// and know the id will not be refused as closed. Keep that work short
    /// and bounded: the close spins meanwhile.
    pub fn admit(&self) -> Option<Admission<'_>> {
        self.submitting.fetch_add(1, Ordering::SeqCst);
        let admission = Admission { queue: self };
        (!self.closed.load(Ordering::SeqCst)).then_some(admission)
    }

    /// Refuses further submissions and wakes `waiters` consumers so each can
    /// notice the close once the queue is empty. Returns false if the queue
    /// was already closed.
    fn close(&self, waiters: usize) -> bool {
        if self.closed.swap(true, Ordering::SeqCst) {
            return false;
        }
        while self.submitting.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        for _ in 0..waiters {
            self.ready.post();
        }
        true
    }

    /// Blocks the calling coroutine until an id is queued, or returns `None`
    /// once the queue is closed and empty. Workers call this; it is public
    /// for benchmarks.
    pub fn take(&self) -> Option<TaskId> {
        loop {
            self.ready.wait();
            if let Some(id) = self.ids.pop() {
                return Some(id);
            }
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
        }
    }

    /// How many ids are waiting.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The most ids it holds.
    pub fn capacity(&self) -> usize {
        self.ids.capacity()
    }

    /// Whether no id is waiting.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether [`WorkerPool::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A submission admitted before the queue closed: see [`TaskQueue::admit`].
pub struct Admission<'a> {
    queue: &'a TaskQueue,
}

impl Admission<'_> {
    /// Queues `id`; the only refusal left is [`SubmitError::Full`].
    pub fn push(self, id: TaskId) -> Result<(), SubmitError> {
        self.queue.ids.push(id).map_err(|_| SubmitError::Full)?;
        self.queue.ready.post();
        Ok(())
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.queue.submitting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a worker does with each id: called with the worker's number (from 1)
/// and the id.
pub type Job = Arc<dyn Fn(usize, TaskId) + Send + Sync>;

/// A fixed set of worker coroutines draining one [`TaskQueue`].
pub struct WorkerPool {
    queue: Arc<TaskQueue>,
    gauge: WorkerGauge,
    live: Arc<(Mutex<usize>, Condvar)>,
}

/// A read-only view of what the workers are doing, for the metrics.
#[derive(Clone, Debug, Default)]
pub struct WorkerGauge {
    /// The id each worker is running, 0 when idle.
    running: Arc<[AtomicI64]>,
}

impl WorkerGauge {
    /// How many workers the pool was started with.
    pub fn size(&self) -> usize {
        self.running.len()
    }

    /// How many workers are running a task right now.
    pub fn busy(&self) -> usize {
        self.running.iter().filter(|id| id.load(Ordering::Relaxed) != 0).count()
    }
}

impl WorkerPool {
    /// Starts `workers` coroutines that run `job` for every id taken from `queue`.
    pub fn start(workers: usize, queue: Arc<TaskQueue>, job: Job) -> std::io::Result<Self> {
        let pool = Self {
            queue,
            gauge: WorkerGauge {
                running: (0..workers).map(|_| AtomicI64::new(0)).collect(),
            },
            live: Arc::new((Mutex::new(workers), Condvar::new())),
        };
        for index in 0..workers {
            pool.spawn_worker(index, job.clone())?;
        }
        Ok(pool)
    }

    fn spawn_worker(&self, index: usize, job: Job) -> std::io::Result<()> {
        let queue = self.queue.clone();
        let busy = self.gauge.running.clone();
        let exit = ExitSignal(self.live.clone());
        let builder = may::coroutine::Builder::new().name(format!("worker-{}", index + 1));
        // SAFETY: may marks spawning unsafe because a coroutine that holds a
        // thread-local across a yield point may resume on another thread. The
        // worker loop holds no thread-local: it parks on a may semaphore and
        // the job sleeps with may's sleep, touching no TLS across either.
        unsafe {
            builder.spawn(move || {
                let _exit = exit;
                while let Some(id) = queue.take() {
                    busy[index].store(id, Ordering::Relaxed);
                    if catch_unwind(AssertUnwindSafe(|| job(index + 1, id))).is_err() {
                        error!("worker {}: task {id} panicked; the worker goes on", index + 1);
                    }
                    busy[index].store(0, Ordering::Relaxed);
                }
            })?;
        }
        Ok(())
    }

    /// The queue this pool drains.
    pub fn queue(&self) -> &Arc<TaskQueue> {
        &self.queue
    }

    /// How many workers the pool was started with.
    pub fn size(&self) -> usize {
        self.gauge.size()
    }

    /// How many workers are running a task right now.
    pub fn busy(&self) -> usize {
        self.gauge.busy()
    }

    /// A view of the workers' activity that outlives borrowing the pool.
    pub fn gauge(&self) -> WorkerGauge {
        self.gauge.clone()
    }

    /// Stops accepting ids; workers finish everything already queued, then
    /// exit. Returns false if the pool was already closed.
    pub fn close(&self) -> bool {
        self.queue.close(self.size())
    }

    /// Waits up to `timeout` for every worker to exit after [`close`](Self::close);
    /// true if they all did. Blocks the calling thread: call it from a
    /// thread, not from a coroutine.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let (live, all_exited) = &*self.live;
        let live = live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (live, _) = all_exited
            .wait_timeout_while(live, timeout, |live| *live > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *live == 0
    }
}

/// Counts a worker out when it ends, however it ends.
struct ExitSignal(Arc<(Mutex<usize>, Condvar)>);

impl Drop for ExitSignal {
    fn drop(&mut self) {
        let (live, all_exited) = &*self.0;
        let mut live = live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *live -= 1;
        all_exited.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn submit_refuses_when_full_and_when_closed() {
        let queue = TaskQueue::new(2);
        assert_eq!(queue.submit(1), Ok(()));
        assert_eq!(queue.submit(2), Ok(()));
        assert_eq!(queue.submit(3), Err(SubmitError::Full));
        assert_eq!(queue.len(), 2);
        assert!(queue.close(0));
        assert!(!queue.close(0));
        assert_eq!(queue.submit(4), Err(SubmitError::Closed));
        assert!(queue.is_closed());
    }

    #[test]
    fn an_admission_taken_before_the_close_is_not_refused_as_closed() {
        let queue = Arc::new(TaskQueue::new(1));
        let admission = queue.admit().expect("open");
        let closer = queue.clone();
        let closing = std::thread::spawn(move || closer.close(0));
        while !queue.is_closed() {
            std::thread::yield_now();
        }
        assert!(queue.admit().is_none(), "closed to new admissions");
        assert!(!closing.is_finished(), "the close waits for the admission");
        assert_eq!(admission.push(7), Ok(()));
        assert!(closing.join().unwrap());
        assert_eq!(queue.submit(8), Err(SubmitError::Closed));
        assert_eq!((queue.len(), queue.ids.pop()), (1, Some(7)));
        let full = TaskQueue::new(1);
        full.submit(1).unwrap();
        assert_eq!(full.admit().expect("open").push(2), Err(SubmitError::Full));
    }

    #[test]
    fn workers_run_every_queued_id_then_stop_on_close() {
        let queue = Arc::new(TaskQueue::new(100));
        let (ran, ran_ids) = mpsc::channel();
        let ran = Mutex::new(ran);
        let job: Job = Arc::new(move |_, id| ran.lock().unwrap().send(id).unwrap());
        for id in 1..=50 {
            queue.submit(id).unwrap();
        }
        let pool = WorkerPool::start(3, queue.clone(), job).unwrap();
        assert!(pool.close());
        assert!(pool.wait_stopped(Duration::from_secs(10)), "workers did not stop");
        let mut ids: Vec<TaskId> = ran_ids.try_iter().collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=50).collect::<Vec<_>>());
        assert!(queue.is_empty());
    }

    #[test]
    fn idle_workers_wake_for_new_ids() {
        let queue = Arc::new(TaskQueue::new(4));
        let (ran, ran_ids) = mpsc::channel();
        let ran = Mutex::new(ran);
        let job: Job = Arc::new(move |worker, id| ran.lock().unwrap().send((worker, id)).unwrap());
        let pool = WorkerPool::start(2, queue.clone(), job).unwrap();
        queue.submit(42).unwrap();
        let (worker, id) = ran_ids.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(id, 42);
        assert!((1..=2).contains(&worker));
        pool.close();
        assert!(pool.wait_stopped(Duration::from_secs(10)));
    }

    #[test]
    fn a_panicking_job_does_not_kill_its_worker() {
        let queue = Arc::new(TaskQueue::new(4));
        let (ran, ran_ids) = mpsc::channel();
        let ran = Mutex::new(ran);
        let job: Job = Arc::new(move |_, id| {
            if id == 1 {
                panic!("job panics on purpose");
            }
            ran.lock().unwrap().send(id).unwrap();
        });
        let pool = WorkerPool::start(1, queue.clone(), job).unwrap();
        queue.submit(1).unwrap();
        queue.submit(2).unwrap();
        assert_eq!(ran_ids.recv_timeout(Duration::from_secs(10)).unwrap(), 2);
        pool.close();
        assert!(pool.wait_stopped(Duration::from_secs(10)));
    }

    #[test]
    fn wait_stopped_times_out_while_a_job_runs() {
        let queue = Arc::new(TaskQueue::new(4));
        let gate = Arc::new(Semphore::new(0));
        let (started, has_started) = mpsc::channel();
        let started = Mutex::new(started);
        let job_gate = gate.clone();
        let job: Job = Arc::new(move |_, _| {
            started.lock().unwrap().send(()).unwrap();
            job_gate.wait();
        });
        let pool = WorkerPool::start(1, queue.clone(), job).unwrap();
        queue.submit(1).unwrap();
        has_started.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(pool.busy(), 1);
        pool.close();
        assert!(!pool.wait_stopped(Duration::from_millis(50)));
        gate.post();
        assert!(pool.wait_stopped(Duration::from_secs(10)));
        assert_eq!(pool.busy(), 0);
    }
}
