//! Long-lived processes inside a namespace, killed by PID (and process
//! group) when dropped.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lab::RunDir;
use crate::{LabError, Netns, Result, cmd};

/// How long a daemon gets to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);
/// Lines of a daemon's log shown in errors and when a test panics.
const TAIL_LINES: usize = 30;

/// A process running inside a lab namespace. Dropping it sends SIGTERM to
/// its process group, then SIGKILL after a grace period, and reaps it.
pub struct Daemon {
    name: String,
    child: Mutex<Child>,
    log: PathBuf,
    // Keep the namespace (if any) and the run directory alive while the process runs.
    _netns: Option<Netns>,
    _run_dir: Arc<RunDir>,
}

impl Daemon {
    /// Starts `program args…` inside `ns` (or in the caller's namespace when
    /// `ns` is `None`), logging to `<dir>/<name>.log`.
    pub(crate) fn spawn<S: AsRef<str>>(
        ns: Option<&Netns>,
        run_dir: Arc<RunDir>,
        dir: &Path,
        name: &str,
        program: &str,
        args: &[S],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(|e| LabError::io("creating log", &log, e))?;
        let err = out.try_clone().map_err(|e| LabError::io("opening log", &log, e))?;
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name(), program]);
                c
            }
            None => Command::new(program),
        };
        command
            .args(args.iter().map(AsRef::as_ref))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group, so helpers it forks die with it.
            .process_group(0);
        let child = command.spawn().map_err(|e| LabError::Command {
            command: cmd::command_line(program, args),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
        Ok(Daemon { name: name.to_string(), child: Mutex::new(child), log, _netns: ns.cloned(), _run_dir: run_dir })
    }

    /// The daemon's name in the lab.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.lock().id()
    }

    /// Where its stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything it has written so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }

    /// `Ok` while the process runs; [`LabError::DaemonExited`] with its log
    /// tail once it has exited.
    pub fn check_running(&self) -> Result<()> {
        let status = self.lock().try_wait().map_err(|e| LabError::io("waiting for", &self.log, e))?;
        match status {
            None => Ok(()),
            Some(status) => Err(LabError::DaemonExited {
                name: self.name.clone(),
                status: status.to_string(),
                log: self.log.display().to_string(),
                tail: self.log_tail(),
            }),
        }
    }

    /// SIGKILLs the daemon's process group at once (a crash, for restart
    /// tests) and reaps it.
    pub fn kill_now(&self) {
        let mut child = self.lock();
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Child> {
        // A poisoned lock only means another thread panicked holding it; the Child is intact.
        self.child.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- tortie-lab: last lines of {} ({}) ---\n{}\n---",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        let child = self.child.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        let group = -(child.id() as i32);
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + GRACE;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (the leader, or helpers it forked) dies now.
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        if let Err(e) = child.wait() {
            eprintln!("tortie-lab: cannot reap daemon {}: {e}", self.name);
        }
    }
}
