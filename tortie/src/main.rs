//! # tortie — the binary
//!
//! The composition root: the command-line interface (clap), the node
//! daemon (`tortie node run`) and the IPAM commands; invoked under the name
//! `tortie-cni` (a symlink), it is the CNI plugin — one binary for a node.
//! It wires the parts together.
//!
//! Must not: hold protocol or dataplane logic; that lives in the library
//! crates (`tortie-bgp`, `tortie-felix`, `tortie-ipip`, `tortie-store`…).

mod cli;
mod lab;
mod node;

use std::process::ExitCode;

use clap::Parser;

/// A reflector or a node with many peers needs a socket each: lift the
/// soft open-files limit to the hard one (as BIRD's packagers do).
fn raise_open_files() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a valid struct; failure leaves the limit as it was.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// glibc malloc for a long-lived daemon whose bursts (a full table) mix
/// long-lived small allocations (the Loc-RIB's tables, felix's runs) with
/// short-lived buffers (decoded and encoded UPDATEs). One arena: glibc's
/// default (8 per core) holds freed memory in each. No fastbins (chunks of
/// up to 128 octets that stay unmerged with their free neighbours until a
/// consolidation; the per-thread cache of 7 chunks per size stays). Requests
/// of 32 KiB and more that no free chunk serves are mapped on their own
/// (and unmapped when freed) rather than growing the heap under long-lived
/// allocations; set here, the threshold no longer adapts to the largest
/// freed mapping. The 200,000-prefix Internet mix's peak RSS with both:
/// 22.3–25.8 MiB over 7 runs (median 23.2) against 22.7–27.1 over 18
/// (median 24.7), interleaved: suggestive, the spreads overlap
/// (docs/benchmarks.md, session 23). Mirrored by the benches'
/// `malloc_as_the_daemon`.
fn tune_malloc() {
    // SAFETY: mallopt(3) only tunes the allocator; called before any thread starts.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MXFAST, 0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024);
    }
}

/// The CNI plugin's name: `tortie` linked or copied under it acts as the plugin.
const CNI_PLUGIN_NAME: &str = "tortie-cni";

fn main() -> ExitCode {
    let invoked_as = std::env::args_os().next().map(std::path::PathBuf::from);
    if invoked_as.as_deref().and_then(|p| p.file_name()).is_some_and(|n| n == CNI_PLUGIN_NAME) {
        return ExitCode::from(tortie_cni::plugin::invoke() as u8);
    }
    tune_malloc();
    raise_open_files();
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tortie: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tortie: {e:#}");
            ExitCode::FAILURE
        }
    }
}
