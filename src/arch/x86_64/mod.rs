//! Everything specific to x86_64: the only place with assembly and with most
//! of the kernel's `unsafe`.
//!
//! Pure data and logic ([`vectors`], [`tsc_frequency`]) build everywhere so
//! they are tested on the host; the modules that execute privileged
//! instructions exist only in the bare-metal build. The page-table format is pure and lives outside, in
//! [`crate::paging`].

pub mod tsc_frequency;
pub mod vectors;

#[cfg(target_os = "none")]
pub mod apic;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
mod critical_section;
#[cfg(target_os = "none")]
pub mod entry;
#[cfg(target_os = "none")]
pub mod gdt;
#[cfg(target_os = "none")]
pub mod interrupts;
#[cfg(target_os = "none")]
pub mod ipi_notifier;
#[cfg(target_os = "none")]
pub mod port;
#[cfg(target_os = "none")]
pub mod svm;
#[cfg(target_os = "none")]
pub mod time;
