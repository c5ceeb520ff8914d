//! What a process used, for the benches: its CPU time, read from `/proc`.

/// CPU seconds (user + system) used so far by the threads of process `pid`
/// (`self` allowed) whose name is `thread`, or by all its threads: each
/// thread's `schedstat` (nanoseconds on a CPU, the scheduler's own count).
/// `stat`'s utime and stime count 10 ms ticks, and a thread working in
/// short bursts is caught by fewer of them than one working steadily: the
/// same build read 0.34x of BIRD's CPU by ticks and 0.39x by schedstat.
/// Panics on a kernel without schedstat (`CONFIG_SCHED_INFO`).
pub fn cpu_seconds(pid: &str, thread: Option<&str>) -> f64 {
    assert!(
        std::path::Path::new("/proc/self/schedstat").exists(),
        "no /proc/<pid>/schedstat (a kernel without CONFIG_SCHED_INFO): CPU time cannot be measured"
    );
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    let mut nanos = 0u64;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if thread.is_some_and(|t| comm.trim_end() != t) {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        nanos += schedstat.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    }
    nanos as f64 / 1e9
}
