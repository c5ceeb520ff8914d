//! Errors of the lab: each names the command, namespace or daemon involved.

use std::time::Duration;

/// The result type of every lab operation.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

/// What went wrong while building or driving a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A tool the lab needs is not installed.
    #[error("`{binary}` is not installed: install the Debian package `{package}` (scripts/test does this)")]
    Missing {
        /// The executable looked for in `PATH`.
        binary: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A command could not be started or exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, as a shell would show it.
        command: String,
        /// Exit status, or why it could not be spawned.
        status: String,
        /// What the command wrote to stderr (trimmed).
        stderr: String,
    },
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the lab was doing.
        what: &'static str,
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A name does not fit the kernel's limits or the lab's conventions.
    #[error("invalid {what} `{value}`: {why}")]
    InvalidName {
        /// Which kind of name (namespace, interface…).
        what: &'static str,
        /// The rejected value.
        value: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// A daemon exited while the lab still needed it.
    #[error("daemon `{name}` exited ({status}); last lines of {log}:\n{tail}")]
    DaemonExited {
        /// The daemon's lab name.
        name: String,
        /// Its exit status.
        status: String,
        /// Where its output went.
        log: String,
        /// The end of that output.
        tail: String,
    },
    /// A condition did not come true in time.
    #[error("timed out after {after:?} waiting for {what}; last observation: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the lab waited.
        after: Duration,
        /// The last state seen, or the last error.
        last: String,
    },
    /// A peer's output could not be understood.
    #[error("cannot parse {what} from {source_name}: {why}\n--- output ---\n{output}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The daemon or command that printed it.
        source_name: String,
        /// Why parsing failed.
        why: String,
        /// The output in question.
        output: String,
    },
}

impl LabError {
    /// A parse error for `what`, read from `source_name`'s `output`.
    pub(crate) fn parse(what: &'static str, source_name: &str, why: impl ToString, output: &str) -> Self {
        LabError::Parse { what, source_name: source_name.to_string(), why: why.to_string(), output: output.to_string() }
    }

    /// An I/O error while doing `what` to `path`.
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        LabError::Io { what, path: path.display().to_string(), source }
    }
}
