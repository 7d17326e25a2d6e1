//! Sidecar: a bare-metal x86_64 kernel in which most CPUs of a large virtual
//! machine never boot the main kernel.
//!
//! (The crate-level story is written out in full as the kernel grows; see
//! `docs/` for the design.)
#![no_std]

#[cfg(test)]
extern crate std;

pub mod abi;
pub mod acpi;

/// The most CPUs sidecar handles: QEMU's TCG stops at 255 without x2APIC, and
/// xAPIC IDs are 8 bits wide.
pub const MAX_CPUS: usize = 256;
