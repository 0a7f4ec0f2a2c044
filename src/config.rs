//! Settings read at start-up from command-line flags, the environment and an
//! optional `.env` file in the working directory, in that order of
//! precedence, then the built-in defaults.
//!
//! [`Config`] is the one list of settings: each field's attribute gives its
//! flag, environment variable, default and check, and its doc comment is its
//! `--help` text. Adding a setting is adding a field (plus its line in the
//! README table and `.env.example`, which a test holds to this list).
//!
//! Every value is checked here, once: a value that does not parse or is out
//! of range stops start-up with an error naming the flag, the variable and
//! the value (exit code 2), so nothing later has to second-guess its
//! configuration.

use std::fmt::Display;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Command, FromArgMatches};

use crate::http::AllowedOrigins;

/// Everything the server can be configured with.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
#[command(next_help_heading = "Settings (flag, else environment, else .env, else default)")]
pub struct Config {
    /// Address to listen on: an IP address such as 0.0.0.0 (every interface) or 127.0.0.1.
    #[arg(long, env, global = true, default_value = "0.0.0.0", value_parser = ip_address)]
    pub http_host: IpAddr,
    /// Port to listen on.
    #[arg(long, env, global = true, default_value = "8080", value_parser = whole::<u16>(1, u16::MAX))]
    pub http_port: u16,
    /// Scheduler threads running the coroutines, each pinned to one CPU; the default is the CPUs this process may run on (affinity mask and cgroup quota).
    #[arg(long, env, global = true, default_value_t = available_cpus(), value_parser = whole::<usize>(1, 1024))]
    pub threads: usize,
    /// Worker coroutines running tasks.
    #[arg(long, env, global = true, default_value = "5", value_parser = whole::<usize>(1, 10_000))]
    pub workers: usize,
    /// Capacity of the task queue; a task created while it is full fails at once (503).
    #[arg(long, env, global = true, default_value = "10", value_parser = whole::<usize>(1, 10_000_000))]
    pub pool_size: usize,
    /// Seconds shutdown may take to finish queued and running tasks before it gives up (exit 1).
    #[arg(long, env, global = true, default_value = "10", value_parser = seconds(0))]
    pub shutdown_timeout: Duration,
    /// Range each task's work duration is drawn from.
    #[command(flatten)]
    pub work: WorkRange,
    /// Largest request body accepted, in bytes; a longer one gets 413.
    #[arg(long, env, global = true, default_value = "65536", value_parser = whole::<usize>(1, 16 << 20))]
    pub max_body_bytes: usize,
    /// Most connections open at once; more are answered 503 and closed.
    #[arg(long, env, global = true, default_value = "10000", value_parser = whole::<usize>(1, 1_000_000))]
    pub max_connections: usize,
    /// Most connections open at once from one client IP address; 0 for no bound.
    #[arg(long, env, global = true, default_value = "0", value_parser = whole::<usize>(0, 1_000_000))]
    pub max_connections_per_client: usize,
    /// Seconds a connection may go without starting a request before it is closed.
    #[arg(long, env, global = true, default_value = "60", value_parser = seconds(1))]
    pub idle_timeout: Duration,
    /// Seconds a request line and headers may take from their first byte; a slower request gets 408.
    #[arg(long, env, global = true, default_value = "10", value_parser = seconds(1))]
    pub header_timeout: Duration,
    /// Seconds a request body may take from the end of its headers; a slower request gets 408.
    #[arg(long, env, global = true, default_value = "60", value_parser = seconds(1))]
    pub body_timeout: Duration,
    /// Largest request line plus headers, in bytes; larger gets 431.
    #[arg(long, env, global = true, default_value = "65536", value_parser = whole::<usize>(1024, 1 << 20))]
    pub max_header_bytes: usize,
    /// Most tasks kept in memory; past it the oldest finished tasks are evicted (410 afterwards). 0 for no bound.
    #[arg(long, env, global = true, default_value = "1000000", value_parser = whole::<usize>(0, 1_000_000_000))]
    pub max_tasks: usize,
    /// Most bytes of task titles and descriptions kept in memory, evicted the same way. 0 for no bound.
    #[arg(long, env, global = true, default_value = "1073741824", value_parser = whole::<usize>(0, 1 << 40))]
    pub max_text_bytes: usize,
    /// Origins whose web pages may call the API (CORS): comma-separated, each scheme://host[:port] (https://app.example.com,http://localhost:3000), or * for any; empty for none, and no CORS headers.
    #[arg(long, env, global = true, default_value = "", value_parser = AllowedOrigins::parse)]
    pub cors_allowed_origins: AllowedOrigins,
    /// Most seconds a GET /tasks/{id}?wait=SECONDS may wait for the task to finish; a longer wait gets 400. 0 allows no waiting.
    #[arg(long, env, global = true, default_value = "60", value_parser = seconds(0))]
    pub max_wait: Duration,
}

/// The CPUs this process may run on: its affinity mask, narrowed by a cgroup
/// CPU quota where one is set (so `taskset -c 0` means one).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |cpus| cpus.get())
}

/// Bounds of a task's work duration, in milliseconds: the work each task
/// simulates is drawn from them.
#[derive(Args, Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkRange {
    /// Shortest work duration of a task, in milliseconds. When both bounds are whole seconds the draw is in whole seconds.
    #[arg(
        id = "work_min_ms",
        long = "work-min-ms",
        env = "WORK_MIN_MS",
        value_name = "WORK_MIN_MS",
        global = true,
        default_value = "1000",
        value_parser = whole::<u64>(0, 86_400_000)
    )]
    pub min_ms: u64,
    /// Longest work duration of a task, in milliseconds (at least WORK_MIN_MS).
    #[arg(
        id = "work_max_ms",
        long = "work-max-ms",
        env = "WORK_MAX_MS",
        value_name = "WORK_MAX_MS",
        global = true,
        default_value = "5000",
        value_parser = whole::<u64>(0, 86_400_000)
    )]
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

impl Default for Config {
    /// The built-in defaults, as `--help` shows them.
    fn default() -> Self {
        Self::from_lookup(|_| None).expect("the defaults pass their own checks")
    }
}

impl Config {
    /// The environment variable of every setting, in `--help` order: the
    /// list the README table, `.env.example` and the test harness must match.
    pub fn variables() -> Vec<String> {
        Self::augment_args(Command::new("worker-pool"))
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .collect()
    }

    /// Builds a configuration from `lookup` in place of the environment
    /// (for tests): it returns a variable's value if it is set, and unset
    /// variables take their defaults. Fails as start-up would.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, clap::Error> {
        let mut args = vec!["worker-pool".to_owned()];
        let mut command = Self::augment_args(Command::new("worker-pool")).mut_args(|arg| {
            let value = arg.get_env().and_then(|name| lookup(&name.to_string_lossy()));
            if let (Some(value), Some(long)) = (value, arg.get_long()) {
                args.push(format!("--{long}={value}"));
            }
            arg.env(None)
        });
        let matches = command.try_get_matches_from_mut(args)?;
        let config = Self::from_arg_matches(&matches).map_err(|err| err.format(&mut command))?;
        config.checked(&mut command)
    }

    /// The configuration, once its settings are checked against each other
    /// (each was checked on its own as it was parsed); the error is formatted
    /// for `command`.
    pub fn checked(self, command: &mut Command) -> Result<Self, clap::Error> {
        match self.inconsistency() {
            None => Ok(self),
            Some(message) => Err(command.error(ErrorKind::ValueValidation, message)),
        }
    }

    /// What is wrong with settings that are each valid on their own.
    fn inconsistency(&self) -> Option<String> {
        let WorkRange { min_ms, max_ms } = self.work;
        (min_ms > max_ms).then(|| {
            format!(
                "invalid value '{min_ms}' for '--work-min-ms <WORK_MIN_MS>': expected at most WORK_MAX_MS ({max_ms})"
            )
        })
    }
}

/// Parses an IP address.
fn ip_address(raw: &str) -> Result<IpAddr, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected an IP address such as 0.0.0.0 or 127.0.0.1".to_owned())
}

/// A parser of whole numbers from `min` to `max`; surrounding white space
/// (as a `.env` line may leave) is ignored.
fn whole<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |raw| match raw.trim().parse::<T>() {
        Ok(value) if min <= value && value <= max => Ok(value),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// A parser of whole seconds from `min` up to a day.
fn seconds(min: u64) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    let whole = whole(min, 86_400);
    move |raw| whole(raw).map(Duration::from_secs)
}
#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config_from(pairs: &[(&str, &str)]) -> Result<Config, clap::Error> {
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
        assert_eq!(config.body_timeout, Duration::from_secs(60));
        assert_eq!(config.max_header_bytes, 65536);
        assert_eq!(config.max_tasks, 1_000_000);
        assert_eq!(config.max_text_bytes, 1 << 30);
        assert_eq!(config.cors_allowed_origins, AllowedOrigins::None);
        assert_eq!(config.max_wait, Duration::from_secs(60));
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
            ("BODY_TIMEOUT", "4"),
            ("MAX_HEADER_BYTES", "2048"),
            ("MAX_TASKS", "0"),
            ("MAX_TEXT_BYTES", "4096"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example, http://localhost:3000"),
            ("MAX_WAIT", "5"),
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
        assert_eq!(config.body_timeout, Duration::from_secs(4));
        assert_eq!(config.max_header_bytes, 2048);
        assert_eq!(config.max_tasks, 0);
        assert_eq!(config.max_text_bytes, 4096);
        assert_eq!(
            config.cors_allowed_origins,
            AllowedOrigins::List(vec!["https://a.example".into(), "http://localhost:3000".into()])
        );
        assert_eq!(config.max_wait, Duration::from_secs(5));
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
            ("BODY_TIMEOUT", "0"),
            ("MAX_HEADER_BYTES", "1023"),
            ("MAX_CONNECTIONS_PER_CLIENT", "-1"),
            ("MAX_TASKS", "-1"),
            ("MAX_TEXT_BYTES", "1.5"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example/app"),
            ("CORS_ALLOWED_ORIGINS", "a.example"),
            ("MAX_WAIT", "2.5"),
            ("MAX_WAIT", "86401"),
        ];
        for (name, value) in cases {
            let err = config_from(&[(name, value)]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{name}={value:?}");
            let message = err.to_string();
            let flag = format!("--{}", name.to_lowercase().replace('_', "-"));
            assert!(message.contains(&format!("{flag} <{name}>")), "{message}");
            assert!(message.contains(&format!("'{value}'")), "{message}");
        }
    }

    #[test]
    fn min_work_above_max_is_refused() {
        let err = config_from(&[("WORK_MIN_MS", "300"), ("WORK_MAX_MS", "200")]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        let message = err.to_string();
        assert!(message.contains("'300' for '--work-min-ms <WORK_MIN_MS>'"), "{message}");
        assert!(message.contains("WORK_MAX_MS (200)"), "{message}");
        assert!(config_from(&[("WORK_MIN_MS", "200"), ("WORK_MAX_MS", "200")]).is_ok());
    }

    #[test]
    fn every_setting_has_a_variable_named_after_its_flag() {
        let command = Config::augment_args(Command::new("worker-pool"));
        let mut count = 0;
        for arg in command.get_arguments() {
            let long = arg.get_long().expect("every setting has a flag");
            let env = arg.get_env().expect("every setting has a variable").to_string_lossy();
            assert_eq!(env, long.to_uppercase().replace('-', "_"));
            assert!(arg.get_default_values().len() == 1, "{long} has one default");
            count += 1;
        }
        assert_eq!(Config::variables().len(), count);
        assert_eq!(Config::variables()[..2], ["HTTP_HOST", "HTTP_PORT"]);
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
