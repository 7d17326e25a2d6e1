//! Small wrappers around single instructions: CPU identity, time stamps,
//! halting.

use core::arch::x86_64::{__cpuid, _rdtsc};

/// The initial APIC ID of the running CPU (CPUID leaf 1, EBX bits 24..32).
pub fn apic_id() -> u32 {
    // SAFETY: CPUID leaf 1 exists on every x86_64 CPU and has no side effects.
    #[allow(unused_unsafe)]
    let leaf = unsafe { __cpuid(1) };
    leaf.ebx >> 24
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86_64 CPU and only reads a counter.
    #[allow(unused_unsafe)]
    unsafe {
        _rdtsc()
    }
}

/// Stops this CPU for good: interrupts off, then halt in a loop (an NMI or SMI
/// may still resume it for a moment).
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
