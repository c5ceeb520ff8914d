//! # tortie — the binary
//!
//! The composition root: the command-line interface (clap), and later the
//! node daemon (`tortie node run`), the local API over a Unix socket and
//! `tortie lab`. It wires the parts together.
//!
//! Must not: hold protocol or dataplane logic; that lives in the library
//! crates (`tortie-bgp`, `tortie-felix`, `tortie-ipip`, `tortie-store`…).

mod cli;
mod node;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
