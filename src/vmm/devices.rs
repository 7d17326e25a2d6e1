//! The kernel VMM's side of the device emulation: the emulation itself is
//! shared with the user-mode VMM ([`crate::emulation::devices`], re-exported
//! here); this module logs the guests' UART lines on the kernel's log and
//! counts them for the tasks that wait for a guest's output.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::MAX_CPUS;

pub use crate::emulation::devices::*;

/// UART lines each VP printed, by VP index (for tasks that wait for a
/// guest's output while another task runs the VP).
pub static UART_LINES: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Logs a UART line VP `vp` finished, `[vp N] line`, and counts it in
/// [`UART_LINES`].
pub fn log_line(vp: u32, line: Option<Line>) {
    if let Some(line) = line {
        info!("[vp {vp}] {line}");
        UART_LINES[vp as usize % MAX_CPUS].fetch_add(1, Ordering::Release);
    }
}
