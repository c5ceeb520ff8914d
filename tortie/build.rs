//! Lays out the daemon's executed code side by side in release builds: the
//! linker places the functions named in `text-order.txt` (written by
//! `scripts/order-text`, hottest first) at the start of `.text`. The kernel
//! maps text 64 KiB around each page a process executes, so the same code
//! spread over the whole binary costs several times its size in RSS.
//! Names the binary no longer has are skipped (a stale file costs memory,
//! not correctness). Only where rustc links with LLD
//! (`--symbol-ordering-file`), its default on x86_64 Linux since 1.90:
//! not when the build names another linker.

fn main() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("text-order.txt");
    // (Watching a file that does not exist would run this script, and
    // build the binary again, on every build.)
    let watched = if order.exists() { "text-order.txt" } else { "build.rs" };
    println!("cargo:rerun-if-changed={watched}");
    for name in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
        "RUSTC_LINKER",
    ] {
        println!("cargo:rerun-if-env-changed={name}");
    }
    if var("PROFILE") != "release" || var("TARGET") != "x86_64-unknown-linux-gnu" || !order.exists() {
        return;
    }
    // A linker named in the configuration (`RUSTC_LINKER`) or rustflags
    // that choose one (`-C linker=`, `-C linker-flavor`, `-fuse-ld=`, …)
    // may not be LLD, and another linker rejects the option.
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let chooses_linker = |f: &str| f.contains("linker") || f.contains("link-self-contained") || f.contains("fuse-ld");
    if !var("RUSTC_LINKER").is_empty() || flags.split('\x1f').any(chooses_linker) {
        println!("cargo:warning=another linker is configured: text-order.txt is not used (more RSS, same code)");
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
