//! One daemon per run directory: `<run dir>/tortie.pid`, locked with
//! flock(2) for the daemon's life and holding its pid. A second daemon on
//! the same run directory (the same node on this host) stops before it
//! touches the datastore, the kernel or the API socket, and names the
//! daemon that holds it. The kernel drops the lock when the holder exits,
//! however it exits, so a crash leaves nothing to clean up.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::path::Path;

use anyhow::{Context as _, bail};

/// The lock file's name in the run directory.
const FILE: &str = "tortie.pid";

/// The held lock (released when dropped or when the process ends).
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the run directory's lock, or says who holds it.
    pub fn take(run_dir: &Path) -> anyhow::Result<RunLock> {
        let path = run_dir.join(FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock(2) on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(
                "another tortie daemon (pid {}) already runs with run dir {}: stop it first, or give this one its own --run-dir",
                holder.trim(),
                run_dir.display()
            );
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(RunLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_the_first_ones_pid() {
        let dir = std::env::temp_dir().join(format!("tortie-runlock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = RunLock::take(&dir).unwrap();
        let err = RunLock::take(&dir).err().unwrap().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        assert!(RunLock::take(&dir).is_ok(), "free again once the holder is gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
