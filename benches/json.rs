//! A task written as JSON: the full form is the body of `GET /tasks/{id}`
//! and of `POST /tasks`, the summary form each element of `GET /tasks`.
//!
//! The store keeps a task's title and description as JSON string literals,
//! escaped once when the task is created (`Task::new`), so writing a task
//! only copies bytes: `Task::write_json` and `Task::write_summary_json`.
//! For reference, `serde_json` serialises a `#[derive(Serialize)]` struct
//! with the same fields held as plain strings, as a direct port would keep
//! them, escaping the text again on every answer. Both write into one reused
//! `BytesMut`, so neither pays for an allocation, and both produce the same
//! bytes (checked before measuring). The gap between them is what keeping
//! the text pre-escaped saves per answer; `task_new` is the one-off cost
//! that buys it.
//!
//! Two texts: plain ASCII with nothing to escape, and one with quotes,
//! backslashes, control characters and non-ASCII letters.

use std::hint::black_box;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde::Serialize;
use worker_pool::domain::{Task, TaskId};

mod common;

const ID: TaskId = 123_456;

/// (case name, title, description)
const TEXTS: [(&str, &str, &str); 2] = [
    (
        "plain",
        "write the quarterly report",
        "collect the numbers from every team, check them and summarise them on two pages",
    ),
    (
        "escaped",
        "fix the \"login\" bug — ünïcode",
        "steps:\n1. open C:\\app\\config\n2. press \"go\"\t(twice)\n3. see the error",
    ),
];

/// A task as a direct port would store it, serialised by serde.
#[derive(Serialize)]
struct PlainTask {
    id: TaskId,
    title: String,
    description: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

/// The list form of [`PlainTask`].
#[derive(Serialize)]
struct PlainSummary<'a> {
    id: TaskId,
    title: &'a str,
    status: &'static str,
}

impl PlainTask {
    fn summary(&self) -> PlainSummary<'_> {
        PlainSummary {
            id: self.id,
            title: &self.title,
            status: self.status,
        }
    }
}

fn serde_into(out: &mut BytesMut, value: &impl Serialize) {
    serde_json::to_writer(out.writer(), value).expect("writing to memory cannot fail");
}

fn task_json(c: &mut Criterion) {
    let mut group = c.benchmark_group("json");
    let mut out = BytesMut::with_capacity(512);
    for (case, title, description) in TEXTS {
        let task = Task::new(title, description, Duration::from_secs(3));
        let plain = PlainTask {
            id: ID,
            title: title.to_owned(),
            description: description.to_owned(),
            status: task.status().as_str(),
            error: None,
        };

        let mut expected = BytesMut::new();
        task.write_json(ID, &mut expected);
        out.clear();
        serde_into(&mut out, &plain);
        assert_eq!(out, expected, "serde and write_json disagree");
        expected.clear();
        task.write_summary_json(ID, &mut expected);
        out.clear();
        serde_into(&mut out, &plain.summary());
        assert_eq!(out, expected, "serde and write_summary_json disagree");

        group.bench_function(BenchmarkId::new(format!("full_{case}"), "write_json"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&task).write_json(black_box(ID), &mut out);
                black_box(&out);
            })
        });
        group.bench_function(BenchmarkId::new(format!("full_{case}"), "serde_json"), |b| {
            b.iter(|| {
                out.clear();
                serde_into(&mut out, black_box(&plain));
                black_box(&out);
            })
        });
        if case != "plain" {
            continue;
        }
        group.bench_function(BenchmarkId::new(format!("summary_{case}"), "write_summary_json"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&task).write_summary_json(black_box(ID), &mut out);
                black_box(&out);
            })
        });
        group.bench_function(BenchmarkId::new(format!("summary_{case}"), "serde_json"), |b| {
            b.iter(|| {
                out.clear();
                serde_into(&mut out, &black_box(&plain).summary());
                black_box(&out);
            })
        });
    }
    group.finish();
}

fn task_new(c: &mut Criterion) {
    let (_, title, description) = TEXTS[0];
    c.bench_function("json/task_new_plain", |b| {
        b.iter(|| Task::new(black_box(title), black_box(description), Duration::from_secs(3)))
    });
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = task_json, task_new
}
criterion_main!(benches);
