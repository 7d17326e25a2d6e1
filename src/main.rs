//! The sidecar kernel binary. Everything lives in the library (entry point
//! included); this file only exists so that the linker produces the bootable
//! ELF.
#![cfg_attr(target_os = "none", no_std, no_main)]

// Link the library: its entry assembly is what the ELF's entry point names.
#[cfg(target_os = "none")]
use sidecar as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the sidecar kernel runs on x86_64-unknown-none only: boot it with `cargo qemu`");
    std::process::exit(2);
}
