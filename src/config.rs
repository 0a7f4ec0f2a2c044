//! Settings read at start-up from the environment and an optional `.env`
//! file in the working directory (the environment wins).
//!
//! Every value is checked here, once: a value that does not parse or is out
//! of range stops start-up with a [`ConfigError`] naming the variable and the
//! value, so nothing later has to second-guess its configuration.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Everything the server can be configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on (`HTTP_HOST`, default every interface).
    pub http_host: IpAddr,
    /// TCP port to listen on (`HTTP_PORT`, default 8080).
    pub http_port: u16,
    /// Scheduler threads running the coroutines (`THREADS`, default: the
    /// CPUs this process may run on, after its affinity mask and cgroup quota).
    pub threads: usize,
    /// Number of worker coroutines (`WORKERS`, default 5).
    pub workers: usize,
    /// Capacity of the task queue (`POOL_SIZE`, default 10).
    pub pool_size: usize,
    /// How long shutdown may take before giving up (`SHUTDOWN_TIMEOUT` seconds, default 10).
    pub shutdown_timeout: Duration,
    /// Range the work duration of each task is drawn from.
    pub work: WorkRange,
    /// Largest request body accepted (`MAX_BODY_BYTES`, default 64 KiB).
    pub max_body_bytes: usize,
    /// Most connections open at once (`MAX_CONNECTIONS`, default 10000).
    pub max_connections: usize,
    /// Connections from one client IP open at once (`MAX_CONNECTIONS_PER_CLIENT`,
    /// default 0: no per-client bound).
    pub max_connections_per_client: usize,
    /// How long a connection may go without starting a request before it
    /// is closed (`IDLE_TIMEOUT` seconds, default 60).
    pub idle_timeout: Duration,
    /// How long a request head may take to arrive, from its first byte, before
    /// it is answered 408 (`HEADER_TIMEOUT` seconds, default 10).
    pub header_timeout: Duration,
    /// Largest request line plus header block (`MAX_HEADER_BYTES`, default 64 KiB).
    pub max_header_bytes: usize,
    /// Most tasks kept in memory; past it the oldest finished tasks are
    /// evicted (`MAX_TASKS`, default 1,000,000; 0 for no bound).
    pub max_tasks: usize,
    /// Most bytes of task titles and descriptions kept in memory, evicted
    /// the same way (`MAX_TEXT_BYTES`, default 1 GiB; 0 for no bound).
    pub max_text_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_host: IpAddr::from([0, 0, 0, 0]),
            http_port: 8080,
            threads: available_cpus(),
            workers: 5,
            pool_size: 10,
            shutdown_timeout: Duration::from_secs(10),
            work: WorkRange {
                min_ms: 1000,
                max_ms: 5000,
            },
            max_body_bytes: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_client: 0,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_tasks: 1_000_000,
            max_text_bytes: 1 << 30,
        }
    }
}

/// The CPUs this process may run on: its affinity mask, narrowed by a cgroup
/// CPU quota where one is set (so `taskset -c 0` means one).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |cpus| cpus.get())
}

/// Bounds of a task's work duration, in milliseconds (`WORK_MIN_MS`, `WORK_MAX_MS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkRange {
    /// Shortest work, inclusive.
    pub min_ms: u64,
    /// Longest work, inclusive.
    pub max_ms: u64,
}

impl WorkRange {
    /// Draws a duration uniformly from the range. When both bounds are whole
    /// seconds the draw is in whole seconds, as in the Go original (1 to 5 s
    /// by default); otherwise it is in milliseconds.
    pub fn draw(self) -> Duration {
        if self.min_ms.is_multiple_of(1000) && self.max_ms.is_multiple_of(1000) {
            Duration::from_secs(rand::random_range(self.min_ms / 1000..=self.max_ms / 1000))
        } else {
            Duration::from_millis(rand::random_range(self.min_ms..=self.max_ms))
        }
    }
}

/// A setting that stops start-up.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable (or file) at fault.
    pub variable: String,
    /// The value as given.
    pub value: String,
    /// What was expected instead.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: {}={:?}: expected {}",
            self.variable, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads `.env` from the working directory if there is one (without
    /// overriding variables already set), then reads the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let env_file = Path::new(".env");
        if env_file.exists() {
            dotenvy::from_path(env_file).map_err(|err| ConfigError {
                variable: ".env".into(),
                value: env_file.display().to_string(),
                expected: format!("a readable file of KEY=value lines ({err})"),
            })?;
        }
        Self::from_lookup(|name| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned()))
    }

    /// Builds a configuration from `lookup`, which returns a variable's value
    /// if it is set; unset variables take their defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let read = Reader { lookup: &lookup };
        let config = Self {
            http_host: read.parsed(
                "HTTP_HOST",
                defaults.http_host,
                "an IP address such as 0.0.0.0 or 127.0.0.1",
            )?,
            http_port: read.in_range("HTTP_PORT", defaults.http_port, 1, u16::MAX)?,
            threads: read.in_range("THREADS", defaults.threads, 1, 1024)?,
            workers: read.in_range("WORKERS", defaults.workers, 1, 10_000)?,
            pool_size: read.in_range("POOL_SIZE", defaults.pool_size, 1, 10_000_000)?,
            shutdown_timeout: read.seconds("SHUTDOWN_TIMEOUT", defaults.shutdown_timeout, 0)?,
            work: WorkRange {
                min_ms: read.in_range("WORK_MIN_MS", defaults.work.min_ms, 0, 86_400_000)?,
                max_ms: read.in_range("WORK_MAX_MS", defaults.work.max_ms, 0, 86_400_000)?,
            },
            max_body_bytes: read.in_range("MAX_BODY_BYTES", defaults.max_body_bytes, 1, 16 * 1024 * 1024)?,
            max_connections: read.in_range("MAX_CONNECTIONS", defaults.max_connections, 1, 1_000_000)?,
            max_connections_per_client: read.in_range(
                "MAX_CONNECTIONS_PER_CLIENT",
                defaults.max_connections_per_client,
                0,
                1_000_000,
            )?,
            idle_timeout: read.seconds("IDLE_TIMEOUT", defaults.idle_timeout, 1)?,
            header_timeout: read.seconds("HEADER_TIMEOUT", defaults.header_timeout, 1)?,
            max_header_bytes: read.in_range("MAX_HEADER_BYTES", defaults.max_header_bytes, 1024, 1024 * 1024)?,
            max_tasks: read.in_range("MAX_TASKS", defaults.max_tasks, 0, 1_000_000_000)?,
            max_text_bytes: read.in_range("MAX_TEXT_BYTES", defaults.max_text_bytes, 0, 1 << 40)?,
        };
        if config.work.min_ms > config.work.max_ms {
            return Err(ConfigError {
                variable: "WORK_MIN_MS".into(),
                value: config.work.min_ms.to_string(),
                expected: format!("at most WORK_MAX_MS ({})", config.work.max_ms),
            });
        }
        Ok(config)
    }
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    fn parsed<T: FromStr>(&self, name: &str, default: T, expected: &str) -> Result<T, ConfigError> {
        match (self.lookup)(name) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|_| ConfigError {
                variable: name.into(),
                value: raw,
                expected: expected.into(),
            }),
        }
    }

    /// Whole seconds from `min` up to a day.
    fn seconds(&self, name: &str, default: Duration, min: u64) -> Result<Duration, ConfigError> {
        self.in_range(name, default.as_secs(), min, 86_400)
            .map(Duration::from_secs)
    }

    fn in_range<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let expected = format!("a whole number from {min} to {max}");
        let value = self.parsed(name, default, &expected)?;
        if value < min || value > max {
            return Err(ConfigError {
                variable: name.into(),
                value: value.to_string(),
                expected,
            });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config_from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_go_original() {
        let config = config_from(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.http_port, 8080);
        assert_eq!(config.threads, available_cpus());
        assert_eq!((config.workers, config.pool_size), (5, 10));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
        assert_eq!((config.work.min_ms, config.work.max_ms), (1000, 5000));
        assert_eq!(config.max_body_bytes, 65536);
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.max_connections_per_client, 0);
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert_eq!(config.max_header_bytes, 65536);
        assert_eq!(config.max_tasks, 1_000_000);
        assert_eq!(config.max_text_bytes, 1 << 30);
    }

    #[test]
    fn every_variable_is_read() {
        let config = config_from(&[
            ("HTTP_HOST", "127.0.0.1"),
            ("HTTP_PORT", "9090"),
            ("THREADS", "3"),
            ("WORKERS", "2"),
            ("POOL_SIZE", " 3 "),
            ("SHUTDOWN_TIMEOUT", "0"),
            ("WORK_MIN_MS", "10"),
            ("WORK_MAX_MS", "20"),
            ("MAX_BODY_BYTES", "100"),
            ("MAX_CONNECTIONS", "7"),
            ("MAX_CONNECTIONS_PER_CLIENT", "4"),
            ("IDLE_TIMEOUT", "3"),
            ("HEADER_TIMEOUT", "2"),
            ("MAX_HEADER_BYTES", "2048"),
            ("MAX_TASKS", "0"),
            ("MAX_TEXT_BYTES", "4096"),
        ])
        .unwrap();
        assert_eq!(config.http_host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(config.http_port, 9090);
        assert_eq!(config.threads, 3);
        assert_eq!((config.workers, config.pool_size), (2, 3));
        assert_eq!(config.shutdown_timeout, Duration::ZERO);
        assert_eq!(config.work, WorkRange { min_ms: 10, max_ms: 20 });
        assert_eq!(config.max_body_bytes, 100);
        assert_eq!(config.max_connections, 7);
        assert_eq!(config.max_connections_per_client, 4);
        assert_eq!(config.idle_timeout, Duration::from_secs(3));
        assert_eq!(config.header_timeout, Duration::from_secs(2));
        assert_eq!(config.max_header_bytes, 2048);
        assert_eq!(config.max_tasks, 0);
        assert_eq!(config.max_text_bytes, 4096);
    }

    #[test]
    fn bad_values_name_the_variable_and_value() {
        let cases = [
            ("THREADS", "0"),
            ("WORKERS", "abc"),
            ("WORKERS", "0"),
            ("WORKERS", ""),
            ("POOL_SIZE", "0"),
            ("POOL_SIZE", "-1"),
            ("HTTP_PORT", "0"),
            ("HTTP_PORT", "70000"),
            ("HTTP_HOST", "localhost:1"),
            ("SHUTDOWN_TIMEOUT", "1.5"),
            ("MAX_BODY_BYTES", "0"),
            ("MAX_CONNECTIONS", "0"),
            ("IDLE_TIMEOUT", "0"),
            ("HEADER_TIMEOUT", "0"),
            ("MAX_HEADER_BYTES", "1023"),
            ("MAX_CONNECTIONS_PER_CLIENT", "-1"),
            ("MAX_TASKS", "-1"),
            ("MAX_TEXT_BYTES", "1.5"),
        ];
        for (name, value) in cases {
            let err = config_from(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name);
            let message = err.to_string();
            assert!(message.contains(name), "{message}");
            assert!(
                message.contains(&format!("{value:?}")) || message.contains(value.trim()),
                "{message}"
            );
        }
    }

    #[test]
    fn min_work_above_max_is_refused() {
        let err = config_from(&[("WORK_MIN_MS", "300"), ("WORK_MAX_MS", "200")]).unwrap_err();
        assert_eq!((err.variable.as_str(), err.value.as_str()), ("WORK_MIN_MS", "300"));
        assert!(err.to_string().contains("WORK_MAX_MS (200)"));
    }

    #[test]
    fn whole_second_bounds_draw_whole_seconds() {
        let range = WorkRange {
            min_ms: 1000,
            max_ms: 5000,
        };
        for _ in 0..200 {
            let work = range.draw();
            assert_eq!(work.subsec_nanos(), 0);
            assert!((1..=5).contains(&work.as_secs()), "{work:?}");
        }
    }

    #[test]
    fn millisecond_bounds_draw_within_the_range() {
        let range = WorkRange { min_ms: 5, max_ms: 7 };
        for _ in 0..200 {
            let ms = range.draw().as_millis();
            assert!((5..=7).contains(&ms), "{ms}");
        }
        assert_eq!(WorkRange { min_ms: 9, max_ms: 9 }.draw(), Duration::from_millis(9));
    }
}
