//! The sidecar kernel binary. Everything lives in the library; this file only
//! exists so that the linker produces the bootable ELF.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the sidecar kernel runs on x86_64-unknown-none only: boot it with `cargo qemu`");
    std::process::exit(2);
}
