//! The task model: what a task is, the states it moves through, and how it
//! is written as JSON.
//!
//! A task only ever moves `pending -> running -> done`, `pending -> failed`,
//! or to `canceled` from `pending` or `running`; [`TaskStatus::can_become`]
//! is the one place that rule is written down.
//!
//! A stored task is kept small and in the form it is served in: its title
//! and description are held as JSON string literals, escaped once when the
//! task is created, so answering a request copies bytes instead of escaping
//! text again, and a million tasks fit in little memory.

use std::fmt;
use std::time::Duration;

use bytes::BufMut;
use compact_str::CompactString;

/// Identifier of a task: positive, assigned in creation order starting at 1.
pub type TaskId = i64;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Stored and waiting in the queue for a worker.
    Pending,
    /// A worker is sleeping through its work duration.
    Running,
    /// The work finished.
    Done,
    /// The task was never run: see its [`FailureReason`].
    Failed,
    /// A client canceled it (`DELETE /tasks/{id}`) before it finished: it
    /// never ran, or its work was interrupted.
    Canceled,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 5] = [Self::Pending, Self::Running, Self::Done, Self::Failed, Self::Canceled];

    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Whether the task has reached the end of its life (`done`, `failed`
    /// or `canceled`) and will not change again: what a waiting client
    /// waits for, and what eviction may remove.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Canceled)
    }

    /// The status's position in [`ALL`](Self::ALL), for tables indexed by status.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The status with this wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Whether the lifecycle allows moving from `self` to `next`.
    pub fn can_become(self, next: TaskStatus) -> bool {
        matches!(
            (self, next),
            (Self::Pending, Self::Running)
                | (Self::Running, Self::Done)
                | (Self::Pending, Self::Failed)
                | (Self::Pending | Self::Running, Self::Canceled)
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task failed; its message is the task's `error` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The queue was at capacity when the task was submitted.
    PoolFull,
    /// The server was shutting down when the task was submitted.
    PoolClosed,
}

impl FailureReason {
    /// The message clients see in the task's `error` field.
    pub fn message(self) -> &'static str {
        match self {
            Self::PoolFull => "task pool is full",
            Self::PoolClosed => "task pool is closed",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A status change the lifecycle does not allow, from the task's current status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAllowed {
    /// The status the task had, which it keeps.
    pub current: TaskStatus,
}

/// Status and failure reason in one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Done,
    Failed(FailureReason),
    Canceled,
}

/// A task as stored. Its id is the key it is stored under, not part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// The title then the description, each a JSON string literal; held
    /// inline, without a heap allocation, up to 24 bytes.
    json_text: CompactString,
    /// Where the title literal ends in `json_text`.
    title_end: u32,
    /// How long a worker sleeps on it, drawn at creation, in milliseconds.
    work_ms: u32,
    state: State,
}

impl Task {
    /// A `pending` task. `title` and `description` are kept as given (the
    /// service trims them); `work` is capped at `u32::MAX` milliseconds.
    pub fn new(title: &str, description: &str, work: Duration) -> Self {
        // Exact capacity when nothing needs escaping: inline up to 24 bytes,
        // otherwise one heap buffer that is never grown (less heap churn).
        let mut json_text = CompactString::with_capacity(title.len() + description.len() + 4);
        push_json_string(&mut json_text, title);
        let title_end = json_text.len() as u32;
        push_json_string(&mut json_text, description);
        Self {
            json_text,
            title_end,
            work_ms: u32::try_from(work.as_millis()).unwrap_or(u32::MAX),
            state: State::Pending,
        }
    }

    /// The current status.
    pub fn status(&self) -> TaskStatus {
        match self.state {
            State::Pending => TaskStatus::Pending,
            State::Running => TaskStatus::Running,
            State::Done => TaskStatus::Done,
            State::Failed(_) => TaskStatus::Failed,
            State::Canceled => TaskStatus::Canceled,
        }
    }

    /// Why the task failed, if it did.
    pub fn error(&self) -> Option<FailureReason> {
        match self.state {
            State::Failed(reason) => Some(reason),
            _ => None,
        }
    }

    /// How long its work takes.
    pub fn work(&self) -> Duration {
        Duration::from_millis(u64::from(self.work_ms))
    }

    /// How many bytes its title and description take as stored (as JSON
    /// string literals, quotes included).
    pub fn text_bytes(&self) -> usize {
        self.json_text.len()
    }

    /// The title as a JSON string literal, quotes included.
    pub fn title_json(&self) -> &str {
        &self.json_text[..self.title_end as usize]
    }

    /// The description as a JSON string literal, quotes included.
    pub fn description_json(&self) -> &str {
        &self.json_text[self.title_end as usize..]
    }

    /// Moves to `running`, `done` or `canceled` if the lifecycle allows it.
    pub fn advance(&mut self, next: TaskStatus) -> Result<(), NotAllowed> {
        let state = match next {
            TaskStatus::Running => State::Running,
            TaskStatus::Done => State::Done,
            TaskStatus::Canceled => State::Canceled,
            TaskStatus::Pending | TaskStatus::Failed => return Err(self.not_allowed()),
        };
        self.move_to(next, state)
    }

    /// Moves to `failed` with `reason` if the lifecycle allows it.
    pub fn fail(&mut self, reason: FailureReason) -> Result<(), NotAllowed> {
        self.move_to(TaskStatus::Failed, State::Failed(reason))
    }

    fn move_to(&mut self, next: TaskStatus, state: State) -> Result<(), NotAllowed> {
        if !self.status().can_become(next) {
            return Err(self.not_allowed());
        }
        self.state = state;
        Ok(())
    }

    fn not_allowed(&self) -> NotAllowed {
        NotAllowed { current: self.status() }
    }

    /// Writes `{"id","title","description","status"}`, plus `"error"` when
    /// the task failed.
    pub fn write_json(&self, id: TaskId, out: &mut impl BufMut) {
        self.write_id_and_title(id, out);
        out.put_slice(b",\"description\":");
        out.put_slice(&self.json_text.as_bytes()[self.title_end as usize..]);
        write_status(self.status(), out);
        if let Some(reason) = self.error() {
            out.put_slice(b",\"error\":\"");
            out.put_slice(reason.message().as_bytes());
            out.put_u8(b'"');
        }
        out.put_u8(b'}');
    }

    /// Writes the list form, `{"id","title","status"}`.
    pub fn write_summary_json(&self, id: TaskId, out: &mut impl BufMut) {
        self.write_id_and_title(id, out);
        write_status(self.status(), out);
        out.put_u8(b'}');
    }

    /// The opening both forms share: `{"id":...,"title":...`. The title is
    /// sliced as bytes: `title_end` is a char boundary by construction, and
    /// a `str` slice would check it again on every answer. Always inlined:
    /// the call would cost more than a short title's copy.
    #[inline(always)]
    fn write_id_and_title(&self, id: TaskId, out: &mut impl BufMut) {
        out.put_slice(b"{\"id\":");
        out.put_slice(itoa::Buffer::new().format(id).as_bytes());
        out.put_slice(b",\"title\":");
        out.put_slice(&self.json_text.as_bytes()[..self.title_end as usize]);
    }
}

/// Writes the `"status"` member, with its leading comma. Each arm copies
/// one constant, which compiles to a few moves where copying the name
/// (of varying length) would be a `memcpy` call between two more pieces.
/// Always inlined: the call would cost as much as the copy.
#[inline(always)]
fn write_status(status: TaskStatus, out: &mut impl BufMut) {
    match status {
        TaskStatus::Pending => out.put_slice(b",\"status\":\"pending\""),
        TaskStatus::Running => out.put_slice(b",\"status\":\"running\""),
        TaskStatus::Done => out.put_slice(b",\"status\":\"done\""),
        TaskStatus::Failed => out.put_slice(b",\"status\":\"failed\""),
        TaskStatus::Canceled => out.put_slice(b",\"status\":\"canceled\""),
    }
}

/// Appends `text` as a JSON string literal, escaped exactly as serde_json
/// escapes it (quote, backslash and control characters below U+0020).
fn push_json_string(out: &mut CompactString, text: &str) {
    if text.bytes().all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\') {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).expect("a string always serialises"));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn json_of(task: &Task, id: TaskId) -> Value {
        let mut out = Vec::new();
        task.write_json(id, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    fn summary_of(task: &Task, id: TaskId) -> Value {
        let mut out = Vec::new();
        task.write_summary_json(id, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn lifecycle_allows_only_the_documented_moves() {
        use TaskStatus::*;
        let allowed = [
            (Pending, Running),
            (Running, Done),
            (Pending, Failed),
            (Pending, Canceled),
            (Running, Canceled),
        ];
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn statuses_are_named_and_indexed_as_listed() {
        for (index, status) in TaskStatus::ALL.into_iter().enumerate() {
            assert_eq!(status.index(), index);
            assert_eq!(TaskStatus::from_name(status.as_str()), Some(status));
        }
        assert_eq!(TaskStatus::from_name("Done"), None);
        let finished: Vec<_> = TaskStatus::ALL.into_iter().filter(|s| s.is_finished()).collect();
        assert_eq!(finished, [TaskStatus::Done, TaskStatus::Failed, TaskStatus::Canceled]);
        assert_eq!(TaskStatus::from_name("canceled"), Some(TaskStatus::Canceled));
    }

    #[test]
    fn a_task_moves_only_along_the_lifecycle() {
        let mut task = Task::new("t", "", Duration::from_secs(1));
        assert_eq!(
            task.advance(TaskStatus::Done),
            Err(NotAllowed {
                current: TaskStatus::Pending
            })
        );
        assert_eq!(task.advance(TaskStatus::Running), Ok(()));
        assert_eq!(
            task.fail(FailureReason::PoolFull),
            Err(NotAllowed {
                current: TaskStatus::Running
            })
        );
        assert_eq!(task.advance(TaskStatus::Done), Ok(()));
        assert_eq!(
            task.advance(TaskStatus::Running),
            Err(NotAllowed {
                current: TaskStatus::Done
            })
        );
        assert_eq!((task.status(), task.error()), (TaskStatus::Done, None));
    }

    #[test]
    fn failing_keeps_the_reason() {
        let mut task = Task::new("t", "", Duration::ZERO);
        task.fail(FailureReason::PoolClosed).unwrap();
        assert_eq!(
            (task.status(), task.error()),
            (TaskStatus::Failed, Some(FailureReason::PoolClosed))
        );
        assert!(task.advance(TaskStatus::Running).is_err());
    }

    #[test]
    fn a_pending_or_running_task_can_be_canceled_once() {
        let mut pending = Task::new("t", "", Duration::from_secs(1));
        assert_eq!(pending.advance(TaskStatus::Canceled), Ok(()));
        assert_eq!(pending.status(), TaskStatus::Canceled);
        let refused = Err(NotAllowed {
            current: TaskStatus::Canceled,
        });
        assert_eq!(pending.advance(TaskStatus::Running), refused);
        assert_eq!(pending.advance(TaskStatus::Canceled), refused);
        let mut running = Task::new("t", "", Duration::from_secs(1));
        running.advance(TaskStatus::Running).unwrap();
        assert_eq!(running.advance(TaskStatus::Canceled), Ok(()));
        assert_eq!(running.advance(TaskStatus::Done), refused);
        let mut done = Task::new("t", "", Duration::ZERO);
        done.advance(TaskStatus::Running).unwrap();
        done.advance(TaskStatus::Done).unwrap();
        assert!(done.advance(TaskStatus::Canceled).is_err());
        let mut out = Vec::new();
        running.write_json(3, &mut out);
        assert_eq!(out, br#"{"id":3,"title":"t","description":"","status":"canceled"}"#);
    }

    #[test]
    fn task_json_has_error_only_when_set() {
        let mut task = Task::new("t", "d", Duration::from_secs(1));
        let mut out = Vec::new();
        task.write_json(7, &mut out);
        assert_eq!(out, br#"{"id":7,"title":"t","description":"d","status":"pending"}"#);
        task.fail(FailureReason::PoolFull).unwrap();
        assert_eq!(
            json_of(&task, 7),
            json!({"id":7,"title":"t","description":"d","status":"failed","error":"task pool is full"})
        );
    }

    #[test]
    fn every_status_is_written_by_its_name() {
        for status in TaskStatus::ALL {
            let mut out = Vec::new();
            write_status(status, &mut out);
            assert_eq!(out, format!(",\"status\":\"{status}\"").as_bytes());
        }
    }

    #[test]
    fn summary_has_id_title_status_only() {
        let task = Task::new("t", "d", Duration::ZERO);
        let mut out = Vec::new();
        task.write_summary_json(7, &mut out);
        assert_eq!(out, br#"{"id":7,"title":"t","status":"pending"}"#);
    }

    #[test]
    fn any_text_round_trips_through_the_json() {
        let texts = [
            "",
            "plain",
            "quote \" and backslash \\",
            "line\nbreak\ttab\r",
            "\u{0}\u{1f}\u{7f}",
            "é ü 漢字 🚀",
            "</script>",
        ];
        for title in texts {
            for description in texts {
                let task = Task::new(title, description, Duration::ZERO);
                assert_eq!(task.title_json(), serde_json::to_string(title).unwrap());
                assert_eq!(task.description_json(), serde_json::to_string(description).unwrap());
                let full = json_of(&task, i64::MAX);
                assert_eq!(full["title"], json!(title));
                assert_eq!(full["description"], json!(description));
                assert_eq!(full["id"], json!(i64::MAX));
                assert_eq!(summary_of(&task, 1)["title"], json!(title));
            }
        }
    }

    #[test]
    fn work_is_kept_to_the_millisecond() {
        assert_eq!(
            Task::new("t", "", Duration::from_millis(1234)).work(),
            Duration::from_millis(1234)
        );
        assert_eq!(
            Task::new("t", "", Duration::from_secs(u64::MAX)).work(),
            Duration::from_millis(u64::from(u32::MAX))
        );
    }

    #[test]
    fn a_stored_task_is_small() {
        assert_eq!(size_of::<Task>(), 40);
        let short = Task::new("task 123456", "", Duration::ZERO);
        assert!(!short.json_text.is_heap_allocated());
        let long = Task::new(&"x".repeat(100), "", Duration::ZERO);
        assert_eq!(long.text_bytes(), 104);
    }
}
