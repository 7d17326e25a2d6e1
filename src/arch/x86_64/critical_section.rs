//! The `critical-section` implementation for the kernel: a critical section
//! is a stretch with maskable interrupts disabled on this CPU.
//!
//! Sidecar never shares a critical-section-protected value between CPUs
//! (each executor, timer queue and `embassy-sync` primitive is one CPU's), so
//! masking interrupts is all the exclusion needed. Nesting is safe: each
//! section restores the interrupt flag it found.

use x86_64::instructions::interrupts;

struct InterruptsOff;

critical_section::set_impl!(InterruptsOff);

// SAFETY: `acquire` disables maskable interrupts and returns whether they
// were enabled; `release` re-enables them only if they were. Between the
// two, no interrupt handler can run on this CPU, which is the exclusion the
// crate's contract asks for on a single CPU.
unsafe impl critical_section::Impl for InterruptsOff {
    unsafe fn acquire() -> critical_section::RawRestoreState {
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        were_enabled
    }

    unsafe fn release(were_enabled: critical_section::RawRestoreState) {
        if were_enabled {
            interrupts::enable();
        }
    }
}
