//! A lab: a unique name prefix and a run directory that every namespace,
//! link and daemon of one test (or one `tortie lab`) hangs off.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::netns::{Bridge, Netns};
use crate::{Daemon, LabError, Result, cmd};

/// Every test lab's namespaces start with this; the test suite asserts that
/// none is left when it ends (see [`crate::leftovers`]).
pub const TEST_PREFIX: &str = "ttest-";

/// Labs made by this process so far, to keep prefixes unique across threads.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A set of namespaces and daemons with one unique name prefix.
///
/// Dropping the `Lab` (and every [`Netns`] and [`crate::Daemon`] taken from
/// it) removes all of it; the run directory goes last.
pub struct Lab {
    prefix: String,
    dir: Arc<RunDir>,
}

impl Lab {
    /// Makes a lab for the test (or demo) called `purpose`. Namespace names
    /// are `ttest-<pid>-<n>-<name>`, unique among concurrent tests in any
    /// number of processes.
    pub fn new(purpose: &str) -> Result<Lab> {
        cmd::require("ip", "iproute2")?;
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{TEST_PREFIX}{:x}-{n}-", std::process::id());
        let dir = run_root().join(format!("{}{}", prefix, sanitize(purpose)));
        RunDir::create(&dir).map(|dir| Lab { prefix, dir: Arc::new(dir) })
    }

    /// A lab meant to outlive this process (`tortie lab up`): namespaces
    /// `<prefix><name>`, run directory `<run root>/<prefix>lab`. Refuses
    /// when namespaces with that prefix exist (one such lab at a time). The
    /// caller keeps it alive with `std::mem::forget` once it is complete;
    /// [`crate::leftovers::remove`] takes it down.
    pub fn persistent(prefix: &str) -> Result<Lab> {
        cmd::require("ip", "iproute2")?;
        let existing = crate::leftovers::find(prefix)?;
        if !existing.namespaces.is_empty() {
            return Err(LabError::InvalidName {
                what: "lab",
                value: prefix.into(),
                why: "a lab with this prefix is already up",
            });
        }
        let dir = run_root().join(format!("{prefix}lab"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| LabError::io("removing stale", &dir, e))?;
        }
        RunDir::create(&dir).map(|dir| Lab { prefix: prefix.into(), dir: Arc::new(dir) })
    }

    /// The prefix of every namespace name in this lab.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lab's run directory (configs, sockets, logs). World-traversable,
    /// because some peers (FRR) drop root privileges.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// Creates the namespace `<prefix><name>` with `lo` up.
    pub fn netns(&self, name: &str) -> Result<Netns> {
        Netns::create(&self.prefix, name, self.dir.clone())
    }

    /// Starts `program args…` in the caller's own network namespace (for
    /// services on loopback such as etcd), logging to `<lab dir>/<name>.log`.
    pub fn spawn_host<S: AsRef<str>>(
        &self,
        name: &str,
        program: &str,
        args: &[S],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        Daemon::spawn(None, self.dir.clone(), self.dir(), name, program, args, env)
    }

    /// Creates a namespace holding one Linux bridge, a switch that node
    /// namespaces attach to with [`Bridge::attach`].
    pub fn bridge(&self, name: &str) -> Result<Bridge> {
        Bridge::create(self.netns(name)?)
    }
}

/// Where labs keep their run directories.
pub(crate) fn run_root() -> PathBuf {
    std::env::temp_dir().join("tortie-lab")
}

/// Keeps names usable as file names: anything but `[A-Za-z0-9_-]` becomes `_`.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// A run directory, removed with everything in it when the last user drops.
pub(crate) struct RunDir(PathBuf);

impl RunDir {
    fn create(path: &Path) -> Result<RunDir> {
        std::fs::create_dir_all(path).map_err(|e| LabError::io("creating run directory", path, e))?;
        for dir in [path, &run_root()] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| LabError::io("setting mode 0755 on", dir, e))?;
        }
        Ok(RunDir(path.to_path_buf()))
    }

    /// Creates (if needed) and returns the subdirectory `name`, mode 0755.
    pub(crate) fn subdir(&self, name: &str) -> Result<PathBuf> {
        let path = self.0.join(sanitize(name));
        std::fs::create_dir_all(&path).map_err(|e| LabError::io("creating directory", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| LabError::io("setting mode 0755 on", &path, e))?;
        Ok(path)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("tortie-lab: cannot remove run directory {}: {e}", self.0.display());
        }
    }
}
