//! # tortie-cni — the CNI plugin binary
//!
//! Invoked by the container runtime with `CNI_COMMAND` and friends in the
//! environment and the network config on stdin; answers with JSON on
//! stdout as the CNI spec requires (errors too, with exit status 1). Logs
//! go to stderr. The work is done by the `tortie_cni` library.

fn main() {
    std::process::exit(tortie_cni::plugin::invoke());
}
