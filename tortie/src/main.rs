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

/// The CNI plugin's name: `tortie` linked or copied under it acts as the plugin.
const CNI_PLUGIN_NAME: &str = "tortie-cni";

fn main() -> ExitCode {
    let invoked_as = std::env::args_os().next().map(std::path::PathBuf::from);
    if invoked_as.as_deref().and_then(|p| p.file_name()).is_some_and(|n| n == CNI_PLUGIN_NAME) {
        return ExitCode::from(tortie_cni::plugin::invoke() as u8);
    }
    tortie_bgp::malloc::tune();
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
