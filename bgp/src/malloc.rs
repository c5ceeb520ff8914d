//! glibc malloc as a process running the speaker wants it: the node
//! daemon (`tortie`'s `main`) and the benches that run the speaker in
//! their own process, so that they measure it as it runs in production.
//!
//! A full table's burst mixes long-lived small allocations (the Loc-RIB's
//! tables, felix's runs) with short-lived buffers (decoded and encoded
//! UPDATEs). One arena: glibc's default (8 per core) holds freed memory in
//! each. No fastbins (chunks of up to 128 octets that stay unmerged with
//! their free neighbours until a consolidation; the per-thread cache of 7
//! chunks per size stays). Requests of 32 KiB and more that no free chunk
//! serves are mapped on their own (and unmapped when freed) rather than
//! growing the heap under long-lived allocations; set here, the threshold
//! no longer adapts to the largest freed mapping. The 200,000-prefix
//! Internet mix's peak RSS with the last two: 22.3–25.8 MiB over 7 runs
//! (median 23.2) against 22.7–27.1 over 18 (median 24.7), interleaved:
//! suggestive, the spreads overlap (docs/benchmarks.md, session 23).

/// The size from which malloc maps a request on its own (see the module).
pub const MMAP_THRESHOLD: usize = 32 * 1024;

/// Tunes malloc (see the module). Call before any thread starts.
pub fn tune() {
    // SAFETY: mallopt(3) only tunes the allocator; the caller calls it
    // before any other thread exists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MXFAST, 0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}
