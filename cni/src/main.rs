//! # tortie-cni — the CNI plugin binary
//!
//! Invoked by the container runtime with `CNI_COMMAND` and friends in the
//! environment and the network config on stdin; answers with JSON on
//! stdout as the CNI spec requires. Owns nothing but that translation: the
//! work is done by the `tortie_cni` library.

fn main() {
    let command = std::env::var("CNI_COMMAND").ok();
    let reply = tortie_cni::respond(command.as_deref());
    println!("{}", reply.body);
    std::process::exit(reply.exit_code);
}
