//! The scheduler threads: as many as the CPUs the process may use, or as
//! `THREADS` says, and never pinned outside the process's affinity mask.

mod common;

use std::time::Duration;

use common::Server;

/// The CPUs the calling thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data (all-zero is the empty set); the
    // kernel writes at most size_of::<cpu_set_t>() bytes into `set`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set), 0);
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Restricts the calling thread (and so the children it spawns) to `cpus`.
fn set_allowed_cpus(cpus: &[usize]) {
    // SAFETY: as above; `set` is a live local handed to the kernel to read.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        assert_eq!(libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set), 0);
    }
}

/// The `Cpus_allowed_list` of every thread of process `pid`.
fn thread_affinities(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the server's threads");
    tasks
        .map(|task| {
            let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
            let line = status
                .lines()
                .find(|line| line.starts_with("Cpus_allowed_list:"))
                .unwrap();
            line.split_once(':').unwrap().1.trim().to_owned()
        })
        .collect()
}

#[test]
fn one_allowed_cpu_means_one_thread_pinned_inside_the_mask() {
    let everything = allowed_cpus();
    // The last CPU, so that pinning to "core 0" regardless of the mask would show.
    let cpu = *everything.last().unwrap();
    set_allowed_cpus(&[cpu]);
    let server = Server::start(&[]);
    set_allowed_cpus(&everything);
    server.wait_for_log("1 scheduler thread(s)", Duration::from_secs(10));
    assert_eq!(server.get("/tasks").status, 200);
    let affinities = thread_affinities(server.pid());
    assert!(affinities.len() > 1, "{affinities:?}");
    assert!(affinities.iter().all(|list| *list == cpu.to_string()), "{affinities:?}");
}

#[test]
fn the_thread_count_defaults_to_the_allowed_cpus_and_can_be_set() {
    let cpus = allowed_cpus().len();
    let default = Server::start(&[]);
    default.wait_for_log(&format!("{cpus} scheduler thread(s)"), Duration::from_secs(10));
    let set = Server::start(&[("THREADS", "3")]);
    set.wait_for_log("3 scheduler thread(s)", Duration::from_secs(10));
    assert_eq!(set.get("/tasks").status, 200);
}
