//! Sidecar: a bare-metal x86_64 kernel in which most CPUs of a large virtual
//! machine never boot the main kernel.
//!
//! Booting every CPU of a large VM into a general-purpose kernel is slow and
//! costs memory on every CPU. Sidecar boots only a few CPUs into the main
//! kernel (the BSP and the first CPU of each node); every other CPU runs a
//! tiny, allocation-free async executor that runs guest virtual processors
//! (VPs) and hands the main kernel whatever it cannot handle itself.
//!
//! The crate builds two ways. For `x86_64-unknown-none` it is the kernel
//! itself (the `sidecar` binary, booted by QEMU through `cargo qemu`). On the
//! host it is a library of the kernel's pure logic (command-line parsing, ACPI
//! parsing, page layouts, page-table arithmetic), unit-tested by `cargo test`.
//!
//! Where things live, by side and by phase (the arrows between them are
//! drawn in `docs/overview.md` and checked by `tests/layering.rs`):
//! - [`arch`]: x86_64 specifics, and all of the assembly;
//! - [`boot`]: what the BSP does once, from the PVH hand-off on, and an AP's
//!   first steps; it publishes the machine [`plan`];
//! - [`runtime`]: a sidecar CPU's life after boot; it names nothing of the
//!   main kernel, the VMM or the scenarios;
//! - `main_kernel` and `vmm`: the other side (drivers, client, VMM), which
//!   names nothing of the runtime;
//! - `vmrun`: the VMRUN loop both sides run; `percpu`: which CPU this is
//!   and in which phase;
//! - `scenario`: what a run does after boot, and the self-tests' hooks; a
//!   leaf that only the BSP's entry calls;
//! - [`abi`]: the control and command page layouts shared with the main
//!   kernel's driver; it names nothing else of the kernel;
//! - [`svm`], [`vp`], [`paging`], [`layout`], [`topology`], [`acpi`],
//!   [`cmdline`], [`json`]: pure logic, tested on the host;
//! - [`linux`]: handing the BSP over to a real Linux (`--main linux`);
//! - [`guests`]: the guest programs and their memory layout, which both the
//!   kernel's VMM and the user-mode VMM under Linux (`linux-vmm/`) load;
//! - [`emulation`]: their devices and the checks of their answers, which
//!   both VMMs run (pure, no log);
//! - [`vocabulary`]: the names the kernel and `qemu-runner` share (scenarios,
//!   option values, report keys);
//! - `log`, `report`, `fatal`: the serial log, the report channel, faults.
//!
//! `docs/` tells the design as a whole.
#![no_std]

#[cfg(test)]
extern crate std;

#[cfg(target_os = "none")]
#[macro_use]
mod log;

pub mod abi;
pub mod acpi;
pub mod arch;
pub mod boot;
pub mod cmdline;
pub mod emulation;
pub mod guests;
pub mod json;
pub mod layout;
pub mod linux;
#[cfg(target_os = "none")]
pub mod main_kernel;
pub mod paging;
pub mod plan;
pub mod runtime;
pub mod svm;
pub mod topology;
pub mod vocabulary;
pub mod vp;

#[cfg(target_os = "none")]
pub mod fatal;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(target_os = "none")]
pub mod report;
#[cfg(target_os = "none")]
pub mod scenario;
#[cfg(target_os = "none")]
pub mod vmm;
#[cfg(target_os = "none")]
pub mod vmrun;

/// The most CPUs sidecar handles. QEMU 7.2 makes at most 288 (q35 under
/// KVM, with x2APIC; TCG stops at 255), and every per-CPU table of the
/// kernel image is sized from this: 512 keeps the image inside the 2 MiB
/// its page tables map. The memory plan's cost per CPU does not depend on
/// it.
pub const MAX_CPUS: usize = 512;

/// APIC IDs the kernel's tables indexed by APIC ID cover (0 up to this,
/// exclusive): the AP trampoline finds a CPU's page tables by its APIC ID.
/// A CPU with a larger ID is a clear boot error.
pub const APIC_ID_LIMIT: usize = 512;
