//! # tortie — the binary
//!
//! The composition root: the command-line interface (clap), and later the
//! node daemon (`tortie node run`), the local API over a Unix socket and
//! `tortie lab`. It wires the parts together.
//!
//! Must not: hold protocol or dataplane logic; that lives in the library
//! crates (`tortie-bgp`, `tortie-felix`, `tortie-ipip`, `tortie-store`…).

use clap::Parser;

/// Layer-3 pod networking with an embedded BGP speaker.
#[derive(Parser, Debug)]
#[command(name = "tortie", version, about, long_about = None)]
struct Cli {}

fn main() {
    let Cli {} = Cli::parse();
    println!("tortie {}: no subcommands yet; see README.md for what runs today", env!("CARGO_PKG_VERSION"));
}
