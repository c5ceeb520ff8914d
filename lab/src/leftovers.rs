//! Finding what labs left behind: namespaces with a prefix and processes
//! still using a lab run directory or living in such a namespace.

use std::collections::BTreeSet;

use crate::lab::run_root;
use crate::{Result, cmd, netns};

/// How long processes get after SIGTERM before SIGKILL.
const GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// What is left of labs whose names start with a prefix.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Namespace names.
    pub namespaces: Vec<String>,
    /// `(pid, command line)` of processes.
    pub processes: Vec<(i32, String)>,
}

impl Leftovers {
    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.processes.is_empty()
    }
}

/// Namespaces named `prefix…`, and processes inside them or whose command
/// line mentions a run directory `…/tortie-lab/prefix…`.
pub fn find(prefix: &str) -> Result<Leftovers> {
    let namespaces: Vec<String> = cmd::run("ip", &["netns", "list"])?
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(String::from)
        .collect();
    let mut pids = BTreeSet::new();
    for ns in &namespaces {
        pids.extend(netns::pids_in(ns)?);
    }
    let marker = run_root().join(prefix).display().to_string();
    let mut processes = Vec::new();
    let proc_dir = std::fs::read_dir("/proc").map_err(|e| crate::LabError::io("listing", "/proc".as_ref(), e))?;
    for entry in proc_dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        // A process may exit between listing and reading: skip it then.
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ").trim().to_string();
        if pid != std::process::id() as i32 && (pids.contains(&pid) || cmdline.contains(&marker)) {
            processes.push((pid, cmdline));
        }
    }
    Ok(Leftovers { namespaces, processes })
}

/// Removes what [`find`] finds for `prefix`: processes (SIGTERM, then
/// SIGKILL), namespaces, and run directories `<run root>/<prefix>…`.
/// Returns what was there.
pub fn remove(prefix: &str) -> Result<Leftovers> {
    let found = find(prefix)?;
    for (pid, _) in &found.processes {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(*pid, libc::SIGTERM) };
    }
    let deadline = std::time::Instant::now() + GRACE;
    let alive = |pid: i32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    while found.processes.iter().any(|(p, _)| alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for (pid, _) in &found.processes {
        // SAFETY: as above.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    for ns in &found.namespaces {
        netns::destroy(ns)?;
    }
    let root = run_root();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                std::fs::remove_dir_all(e.path()).map_err(|err| crate::LabError::io("removing", &e.path(), err))?;
            }
        }
    }
    Ok(found)
}
