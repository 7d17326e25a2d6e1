//! Small wrappers around single instructions: CPU identity, time stamps,
//! halting.

use core::arch::x86_64::{__cpuid, _rdtsc, CpuidResult};

/// The running CPU's initial APIC ID, all 32 bits: CPUID leaf 0xB's x2APIC
/// ID where the CPU has that leaf and its sub-leaf 0 is valid (EBX non-zero,
/// Intel SDM vol. 2, CPUID), else leaf 1's 8-bit ID (EBX bits 24..32). The
/// AP trampoline reads it the same way.
pub fn apic_id() -> u32 {
    // SAFETY: CPUID leaves 0 and 1 exist on every x86_64 CPU, leaf 0xB is
    // read only when leaf 0 says it exists, and CPUID has no side effects.
    #[allow(unused_unsafe)]
    unsafe {
        if __cpuid(0).eax >= 0xB {
            let topology = __cpuid(0xB);
            if topology.ebx != 0 {
                return topology.edx;
            }
        }
        __cpuid(1).ebx >> 24
    }
}

/// CPUID `leaf` (subleaf 0). A leaf above the CPU's maximum returns
/// another leaf's data: callers check the maximum first.
pub fn cpuid(leaf: u32) -> CpuidResult {
    // SAFETY: CPUID exists on every x86_64 CPU and has no side effects.
    #[allow(unused_unsafe)]
    unsafe {
        __cpuid(leaf)
    }
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
