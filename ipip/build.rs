//! Compiles the TC programs (`bpf/ipip.c`) with clang for the kernel's BPF
//! target; `ebpf.rs` embeds the object. clang, llvm and libbpf-dev come from
//! `scripts/install-deps`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "bpf/ipip.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("ipip.bpf.o");
    // The uapi headers' asm/ directory sits under the host's multiarch triple.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| std::env::consts::ARCH.into());
    let multiarch = format!("-I/usr/include/{arch}-linux-gnu");
    let status = Command::new("clang")
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", &multiarch, "-c", source, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("clang failed to compile {source} ({s}): see above"),
        Err(e) => panic!("clang is needed to build {source} ({e}): run scripts/install-deps (clang, llvm, libbpf-dev)"),
    }
}
