//! Running short commands (`ip`, `birdc`, `vtysh`…) with errors that say
//! which command failed and what it printed.

use std::process::{Command, Stdio};

use crate::{LabError, Result};

/// Runs `program args…` to completion and returns its stdout.
pub(crate) fn run<S: AsRef<str>>(program: &str, args: &[S]) -> Result<String> {
    run_with_env(program, args, &[])
}

/// Like [`run`], with extra environment variables.
pub(crate) fn run_with_env<S: AsRef<str>>(program: &str, args: &[S], env: &[(&str, &str)]) -> Result<String> {
    let line = command_line(program, args);
    let output = Command::new(program)
        .args(args.iter().map(AsRef::as_ref))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command {
            command: line.clone(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail = if stderr.trim().is_empty() { stdout.trim() } else { stderr.trim() };
        Err(LabError::Command { command: line, status: output.status.to_string(), stderr: detail.to_string() })
    }
}

/// Fails with [`LabError::Missing`] when `binary` is not in `PATH`.
pub(crate) fn require(binary: &'static str, package: &'static str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
        .unwrap_or(false);
    if found { Ok(()) } else { Err(LabError::Missing { binary, package }) }
}

/// The command as a shell would show it, for error messages.
pub(crate) fn command_line<S: AsRef<str>>(program: &str, args: &[S]) -> String {
    std::iter::once(program).chain(args.iter().map(AsRef::as_ref)).collect::<Vec<_>>().join(" ")
}
