//! The task model: what a task is, the states it moves through, and the
//! views of it that clients see.
//!
//! A task only ever moves `pending -> running -> done` or `pending -> failed`;
//! [`TaskStatus::can_become`] is the one place that rule is written down.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Identifier of a task: positive, assigned in creation order starting at 1.
pub type TaskId = i64;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Stored and waiting in the queue for a worker.
    Pending,
    /// A worker is sleeping through its work duration.
    Running,
    /// The work finished.
    Done,
    /// The task was never run: see its [`FailureReason`].
    Failed,
}

impl TaskStatus {
    /// Every status, in lifecycle order (for listings and metrics).
    pub const ALL: [TaskStatus; 4] = [Self::Pending, Self::Running, Self::Done, Self::Failed];

    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Whether the lifecycle allows moving from `self` to `next`.
    pub fn can_become(self, next: TaskStatus) -> bool {
        matches!(
            (self, next),
            (Self::Pending, Self::Running) | (Self::Running, Self::Done) | (Self::Pending, Self::Failed)
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task failed; its message is the task's `error` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FailureReason {
    /// The queue was at capacity when the task was submitted.
    #[serde(rename = "task pool is full")]
    PoolFull,
    /// The server was shutting down when the task was submitted.
    #[serde(rename = "task pool is closed")]
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

/// A task as stored, and as `GET /tasks/{id}` and `POST /tasks` return it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Task {
    /// Assigned by the store.
    pub id: TaskId,
    /// Trimmed, never empty.
    pub title: Box<str>,
    /// Trimmed, possibly empty.
    pub description: Box<str>,
    /// Current lifecycle state.
    pub status: TaskStatus,
    /// Set only when `status` is `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FailureReason>,
    /// How long a worker sleeps on it, drawn at creation. Not part of the API.
    #[serde(skip)]
    pub work: Duration,
}

/// The short form of a task in `GET /tasks`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskSummary {
    /// The task's id.
    pub id: TaskId,
    /// The task's title.
    pub title: Box<str>,
    /// The task's status at the time of listing.
    pub status: TaskStatus,
}

impl From<&Task> for TaskSummary {
    fn from(task: &Task) -> Self {
        Self {
            id: task.id,
            title: task.title.clone(),
            status: task.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: TaskStatus, error: Option<FailureReason>) -> Task {
        Task {
            id: 7,
            title: "t".into(),
            description: "d".into(),
            status,
            error,
            work: Duration::from_secs(1),
        }
    }

    #[test]
    fn lifecycle_allows_only_the_documented_moves() {
        use TaskStatus::*;
        let allowed = [(Pending, Running), (Running, Done), (Pending, Failed)];
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn task_json_has_error_only_when_set() {
        let ok = serde_json::to_string(&task(TaskStatus::Pending, None)).unwrap();
        assert_eq!(ok, r#"{"id":7,"title":"t","description":"d","status":"pending"}"#);
        let failed = serde_json::to_string(&task(TaskStatus::Failed, Some(FailureReason::PoolFull))).unwrap();
        assert_eq!(
            failed,
            r#"{"id":7,"title":"t","description":"d","status":"failed","error":"task pool is full"}"#
        );
    }

    #[test]
    fn failure_reason_serializes_as_its_message() {
        for reason in [FailureReason::PoolFull, FailureReason::PoolClosed] {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.message()));
        }
    }

    #[test]
    fn summary_has_id_title_status_only() {
        let summary = TaskSummary::from(&task(TaskStatus::Done, None));
        let json = serde_json::to_string(&summary).unwrap();
        assert_eq!(json, r#"{"id":7,"title":"t","status":"done"}"#);
    }
}
