//! Names of the CPU exception vectors, for fault reports.

/// The mnemonic and name of exception `vector` (0..32), e.g. `("#PF", "page
/// fault")`; reserved vectors get `("#??", "reserved exception")`.
pub const fn exception_name(vector: u8) -> (&'static str, &'static str) {
    match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection fault"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point exception"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection exception"),
        28 => ("#HV", "hypervisor injection exception"),
        29 => ("#VC", "VMM communication exception"),
        30 => ("#SX", "security exception"),
        _ => ("#??", "reserved exception"),
    }
}

/// The vector the main kernel IPIs to wake a sidecar CPU (the control page's
/// `request_vector`).
pub const REQUEST_VECTOR: u8 = 0xF0;

/// The vector sidecar CPUs IPI the main kernel with when a command finished
/// (the control page's `response_vector`).
pub const RESPONSE_VECTOR: u8 = 0xF1;

/// The vector that wakes a main-kernel executor whose task another CPU woke.
pub const WAKE_VECTOR: u8 = 0xF2;

/// The vector of each CPU's local APIC timer.
pub const TIMER_VECTOR: u8 = 0xEE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_known_vectors() {
        assert_eq!(exception_name(14), ("#PF", "page fault"));
        assert_eq!(exception_name(13).0, "#GP");
        assert_eq!(exception_name(15).1, "reserved exception");
    }
}
