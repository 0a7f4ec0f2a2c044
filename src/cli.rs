//! The command line: `worker-pool [SETTINGS]` serves, and
//! `worker-pool healthcheck [SETTINGS]` asks a running server whether it is
//! alive, for container health checks. The settings are [`Config`]'s; clap
//! prints `--help`, `--version` and usage errors itself.

use std::path::Path;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::config::Config;

/// The log filter when `RUST_LOG` is unset: `main` installs the logger with it.
pub const DEFAULT_LOG_FILTER: &str = "info,may=warn";

/// The command line, parsed and checked.
#[derive(Debug, Parser)]
#[command(name = "worker-pool", version, about, after_help = after_help())]
pub struct Cli {
    /// What to do besides serving; serving when absent.
    #[command(subcommand)]
    pub command: Option<Subcommand>,
    /// The settings: for serving, or for finding the server to check.
    #[command(flatten)]
    pub config: Config,
}

/// What `worker-pool` can be asked to do instead of serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum Subcommand {
    /// Checks a running server, for container health checks: exit 0 if GET /healthz answers 200 within 2 s, else 1
    ///
    /// Asks HTTP_HOST:HTTP_PORT (127.0.0.1 when HTTP_HOST is 0.0.0.0 or ::), as the same settings, environment and .env give them to the server. Prints nothing when healthy, one line saying why not otherwise.
    Healthcheck,
}

impl Cli {
    /// Reads `.env` from the working directory (without overriding the
    /// environment), then the command line and the environment. Prints help,
    /// the version or the error and exits (2 for a bad setting) as clap does.
    pub fn load() -> Self {
        Self::try_load(std::env::args_os()).unwrap_or_else(|err| err.exit())
    }

    /// As [`load`](Self::load) with these arguments, returning the error
    /// (or the help or version request) instead of exiting.
    pub fn try_load<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        load_dot_env(Path::new(".env")).map_err(|message| Self::command().error(ErrorKind::Io, message))?;
        let mut command = Self::command();
        let matches = command.try_get_matches_from_mut(args)?;
        let Self {
            command: subcommand,
            config,
        } = Self::from_arg_matches(&matches).map_err(|err| err.format(&mut command))?;
        Ok(Self {
            command: subcommand,
            config: config.checked(&mut command)?,
        })
    }
}

/// Sets the variables of the `.env` file at `path`, if there is one, that
/// the environment does not already set.
fn load_dot_env(path: &Path) -> Result<(), String> {
    if !path.exists() {
        return Ok(());
    }
    dotenvy::from_path(path).map_err(|err| {
        format!(
            "cannot read {}: expected a readable file of KEY=value lines ({err})",
            path.display()
        )
    })
}

/// The end of `--help`: what is not a setting but is still read.
fn after_help() -> String {
    format!(
        "Logs go to stderr, filtered by RUST_LOG (env_logger syntax) [env: RUST_LOG=] [default: {DEFAULT_LOG_FILTER}]\n\n\
         Exit codes: 0 after a full drain on SIGINT or SIGTERM, 1 when SHUTDOWN_TIMEOUT left tasks unfinished or the \
         server could not start, 2 for an invalid setting or usage."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_dot_env_that_does_not_parse_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "WORKERS='unterminated\n").unwrap();
        let message = load_dot_env(&path).unwrap_err();
        assert!(message.contains(".env"), "{message}");
        assert_eq!(load_dot_env(&dir.path().join("absent")), Ok(()));
    }
}
