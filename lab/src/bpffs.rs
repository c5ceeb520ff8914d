//! The bpffs the lab's tortie nodes pin their eBPF maps in. A daemon runs
//! under `ip netns exec`, in a mount namespace of its own whose `/sys` is
//! fresh: a bpffs it mounted there would go (and its pins with it) when
//! the daemon does. One mounted here, in the host's mount namespace, is
//! seen by every daemon and outlives each, as the host's `/sys/fs/bpf` does
//! for a real node. Each node pins under `tortie/net-<its netns inode>`;
//! a namespace's pins go with it (`netns.rs`).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{LabError, Result, cmd};

/// Where the lab's bpffs is mounted.
const MOUNT: &str = "/run/tortie-lab/bpffs";

/// The lab's bpffs, mounted on first use.
pub fn bpffs() -> Result<PathBuf> {
    // One mount even when tests start nodes at once (a second would hide the first).
    static MOUNTING: Mutex<()> = Mutex::new(());
    let _one = MOUNTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let path = PathBuf::from(MOUNT);
    std::fs::create_dir_all(&path).map_err(|e| LabError::io("creating", &path, e))?;
    let fs_type = cmd::run("stat", &["-f", "-c", "%T", MOUNT])?;
    if fs_type.trim() != "bpf_fs" {
        cmd::run("mount", &["-t", "bpf", "bpf", MOUNT])?;
    }
    Ok(path)
}

/// Removes the pins of the namespace mounted at `netns` (`/run/netns/<name>`).
pub(crate) fn forget(netns: &Path) {
    let Ok(meta) = std::fs::metadata(netns) else { return };
    let pins = Path::new(MOUNT).join("tortie").join(format!("net-{}", meta.ino()));
    if pins.exists()
        && let Err(e) = std::fs::remove_dir_all(&pins)
    {
        eprintln!("tortie-lab: cannot remove {}: {e}", pins.display());
    }
}
