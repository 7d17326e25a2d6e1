//! A fault on a sidecar CPU, contained: the CPU reports it to the main
//! kernel through its own pages and leaves sidecar; the run goes on.
//!
//! `crate::fatal` decides, by the running CPU's phase, whether a fault is
//! contained here or ends the run.

use super::this_cpu::ThisCpu;
use crate::percpu::{self, Phase};

/// Whether the running CPU is a sidecar CPU inside its runtime, whose
/// faults are contained.
pub fn in_runtime() -> bool {
    percpu::phase() == Phase::Sidecar
}

/// After a fault on this sidecar CPU: the reason goes into the command
/// page's error (`has_error`), the status becomes REMOVED, and the driver is
/// told; then the CPU parks. Whatever command was in flight completes with
/// that error.
///
/// # Safety
///
/// Only from the fault and panic handlers, on a CPU for which
/// [`in_runtime`] holds: the interrupted code never runs again.
pub unsafe fn contain(reason: core::fmt::Arguments<'_>) -> ! {
    // SAFETY: a CPU in its runtime is a sidecar CPU (the caller checked).
    let this = unsafe { ThisCpu::get() };
    // SAFETY: the caller is the fault path; what it interrupted never runs
    // again.
    unsafe { this.fail_command(reason) }
}
