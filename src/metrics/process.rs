//! The standard process metrics, named as Prometheus client libraries name
//! them (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...),
//! so the usual dashboards and alerts work unchanged. Read from `/proc` when
//! the page is written, never on the request path; on a system without
//! `/proc` the families are left out.

use std::fs;

use log::debug;

use super::{Exposition, Kind};

/// Writes every process metric that can be read now.
pub fn write(page: &mut Exposition) {
    write_stat(page);
    write_fds(page);
}

/// CPU time, memory and start time, from `/proc/self/stat`.
fn write_stat(page: &mut Exposition) {
    let Some(stat) = read("/proc/self/stat").as_deref().and_then(parse_stat) else {
        return;
    };
    let ticks = sysconf(libc::_SC_CLK_TCK) as f64;
    page.single(
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
        stat.cpu_ticks as f64 / ticks,
    )
    .single(
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory size in bytes.",
        stat.resident_pages * sysconf(libc::_SC_PAGESIZE),
    )
    .single(
        "process_virtual_memory_bytes",
        Kind::Gauge,
        "Virtual memory size in bytes.",
        stat.virtual_bytes,
    );
    if let Some(boot) = read("/proc/stat").as_deref().and_then(parse_boot_time) {
        let start = boot as f64 + stat.start_ticks as f64 / ticks;
        page.single(
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            start,
        );
    }
}

/// Open and most file descriptors, from `/proc/self/fd` and `/proc/self/limits`.
fn write_fds(page: &mut Exposition) {
    match fs::read_dir("/proc/self/fd") {
        Ok(entries) => {
            let open = entries.count();
            page.single(
                "process_open_fds",
                Kind::Gauge,
                "Number of open file descriptors.",
                open,
            );
        }
        Err(err) => debug!("process metrics: /proc/self/fd: {err}"),
    }
    if let Some(max) = read("/proc/self/limits").as_deref().and_then(parse_max_open_files) {
        page.single(
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
            max,
        );
    }
}

/// The fields of `/proc/self/stat` the metrics use.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    /// User plus system CPU time, in clock ticks.
    cpu_ticks: u64,
    /// When the process started, in clock ticks after boot.
    start_ticks: u64,
    virtual_bytes: u64,
    resident_pages: u64,
}

/// Parses `/proc/<pid>/stat` (proc(5)). The command name, in parentheses,
/// may itself hold spaces and parentheses: fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, after_name) = text.rsplit_once(')')?;
    // Fields from the third (state) on; field n is at index n - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// The boot time, in seconds since the epoch: the `btime` line of `/proc/stat`.
fn parse_boot_time(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|line| line.strip_prefix("btime "))?;
    line.trim().parse().ok()
}

/// The soft limit on open files, from `/proc/<pid>/limits`; `None` when unlimited.
fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .map_err(|err| debug!("process metrics: {path}: {err}"))
        .ok()
}

/// A `sysconf` value: clock ticks per second or the page size, which every
/// Linux system has.
fn sysconf(name: libc::c_int) -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 987654 123456789 2048 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let expected = Stat {
            cpu_ticks: 300,
            start_ticks: 987_654,
            virtual_bytes: 123_456_789,
            resident_pages: 2048,
        };
        assert_eq!(parse_stat(line), Some(expected));
        assert_eq!(parse_stat("1234 (truncated) S 1 2"), None);
    }

    #[test]
    fn boot_time_and_open_file_limit_are_found_by_their_labels() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1764370000\nprocesses 9\n"),
            Some(1_764_370_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             95000                95000                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(
            parse_max_open_files("Max open files  unlimited  unlimited  files\n"),
            None
        );
    }

    #[test]
    fn this_process_is_described_plausibly() {
        let mut page = Exposition::default();
        write(&mut page);
        let text = page.into_text();
        let values: HashMap<&str, f64> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once(' '))
            .map(|(name, value)| (name, value.parse().unwrap()))
            .collect();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let started = values["process_start_time_seconds"];
        assert!(
            now - 86_400.0 < started && started <= now + 1.0,
            "{started} vs {now}\n{text}"
        );
        assert!(values["process_cpu_seconds_total"] >= 0.0, "{text}");
        assert!(values["process_resident_memory_bytes"] > 1e5, "{text}");
        assert!(values["process_virtual_memory_bytes"] >= values["process_resident_memory_bytes"]);
        assert!(values["process_open_fds"] >= 3.0, "{text}");
        assert!(values["process_max_fds"] >= values["process_open_fds"], "{text}");
    }
}
