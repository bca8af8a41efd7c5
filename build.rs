//! Kernels force inlining only in optimised builds. Forced inlining is what lets a kernel's
//! accumulators live in registers; at opt-level 0 it only piles every inlined local into one
//! stack frame (over 9 MiB for the AVX-512 driver, a stack overflow) and slows the build.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(sinter_inline)");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("OPT_LEVEL").is_ok_and(|o| o != "0") {
        println!("cargo::rustc-cfg=sinter_inline");
    }
}
