//! Links the kernel binary with its own linker script when it is built for the
//! bare-metal target; the host build (a library for unit tests) needs nothing.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let script = "src/arch/x86_64/linker.ld";
    println!("cargo:rerun-if-changed={script}");
    if target_os == "none" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/{script}");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
