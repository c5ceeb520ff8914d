//! Lays out the daemon's executed code side by side in release builds: the
//! linker places the functions named in `text-order.txt` (written by
//! `scripts/order-text`, hottest first) at the start of `.text`. The kernel
//! maps text 64 KiB around each page a process executes, so the same code
//! spread over the whole binary costs several times its size in RSS.
//! Names the binary no longer has are skipped. Only where rustc links with
//! LLD (`--symbol-ordering-file`), its default on x86_64 Linux since 1.90,
//! and not when the build picks another linker.

fn main() {
    println!("cargo:rerun-if-changed=text-order.txt");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let release = var("PROFILE") == "release";
    let lld_default = var("TARGET") == "x86_64-unknown-linux-gnu";
    let other_linker = var("CARGO_ENCODED_RUSTFLAGS").contains("link");
    let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("text-order.txt");
    if release && lld_default && !other_linker && order.exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
