//! The local APIC: this CPU's identity, inter-processor interrupts and
//! INIT-SIPI-SIPI.
//!
//! Two register interfaces exist. xAPIC mode reaches the registers through
//! memory-mapped I/O at [`XAPIC_BASE`] (mapped uncached in every CPU's page
//! tables); x2APIC mode reaches them through MSRs and has 32-bit APIC IDs.
//! The BSP picks x2APIC when CPUID offers it (QEMU's TCG does not, KVM does)
//! and every other CPU follows the BSP's choice.

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::registers::model_specific::Msr;

/// Physical (and, identity-mapped, virtual) base of the xAPIC registers.
pub const XAPIC_BASE: u64 = 0xFEE0_0000;

const IA32_APIC_BASE: u32 = 0x1B;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const X2APIC_MSR_BASE: u32 = 0x800;

/// Register offsets in the xAPIC page; x2APIC MSR = 0x800 + offset / 16.
mod reg {
    pub const ID: u32 = 0x20;
    pub const EOI: u32 = 0xB0;
    pub const SPURIOUS: u32 = 0xF0;
    pub const ERROR_STATUS: u32 = 0x280;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const TIMER_INITIAL_COUNT: u32 = 0x380;
    pub const TIMER_CURRENT_COUNT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3E0;
}

/// ICR bits.
mod icr {
    pub const DELIVERY_FIXED: u32 = 0b000 << 8;
    pub const DELIVERY_INIT: u32 = 0b101 << 8;
    pub const DELIVERY_STARTUP: u32 = 0b110 << 8;
    pub const SEND_PENDING: u32 = 1 << 12;
    pub const LEVEL_ASSERT: u32 = 1 << 14;
}

/// The vector of spurious interrupts (its low 4 bits must be all ones on old
/// APICs).
pub const SPURIOUS_VECTOR: u8 = 0xFF;

static X2APIC: AtomicBool = AtomicBool::new(false);

/// Whether this CPU model offers x2APIC (CPUID.1:ECX bit 21).
fn cpu_has_x2apic() -> bool {
    // SAFETY: CPUID leaf 1 exists on every x86_64 CPU and has no side effects.
    #[allow(unused_unsafe)]
    let leaf = unsafe { core::arch::x86_64::__cpuid(1) };
    leaf.ecx & (1 << 21) != 0
}

/// On the BSP, before any other CPU starts: chooses x2APIC when available.
/// Returns whether it did.
pub fn choose_mode() -> bool {
    let x2apic = cpu_has_x2apic();
    X2APIC.store(x2apic, Ordering::Relaxed);
    x2apic
}

/// Whether the APICs run in x2APIC mode.
pub fn is_x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

fn read(offset: u32) -> u32 {
    if is_x2apic() {
        // SAFETY: x2APIC mode is enabled on this CPU (see `enable`) and the
        // register exists; reading it has no side effects.
        unsafe { Msr::new(X2APIC_MSR_BASE + offset / 16).read() as u32 }
    } else {
        let address = (XAPIC_BASE + u64::from(offset)) as *const u32;
        // SAFETY: the xAPIC page is mapped uncached at its physical address
        // in every CPU's page tables, and `offset` is a register of it.
        unsafe { address.read_volatile() }
    }
}

fn write(offset: u32, value: u32) {
    if is_x2apic() {
        // SAFETY: as in `read`; the callers write only registers whose effect
        // is the documented one (EOI, SVR, ESR, ICR).
        unsafe { Msr::new(X2APIC_MSR_BASE + offset / 16).write(u64::from(value)) }
    } else {
        let address = (XAPIC_BASE + u64::from(offset)) as *mut u32;
        // SAFETY: as in `read`.
        unsafe { address.write_volatile(value) }
    }
}

/// Enables this CPU's local APIC (in the chosen mode) with the spurious
/// vector set, ready to send and receive IPIs.
pub fn enable() {
    let mut base_msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; setting the enable
    // bit (and the x2APIC bit only when the CPU has x2APIC) keeps the APIC at
    // its base address.
    unsafe {
        let mut base = base_msr.read() | APIC_BASE_ENABLE;
        if is_x2apic() {
            base |= APIC_BASE_X2APIC;
        }
        base_msr.write(base);
    }
    write(reg::SPURIOUS, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(reg::ERROR_STATUS, 0);
}

/// Installs the handler of the spurious vector (BSP, once): a spurious
/// interrupt needs no EOI and no action.
pub fn install_spurious_handler() {
    super::interrupts::set_handler(SPURIOUS_VECTOR, |_frame| {});
}

/// This CPU's APIC ID, from the APIC itself.
pub fn id() -> u32 {
    let raw = read(reg::ID);
    if is_x2apic() {
        raw
    } else {
        raw >> 24
    }
}

/// Signals the end of the interrupt being handled.
pub fn end_of_interrupt() {
    write(reg::EOI, 0);
}

fn wait_for_idle_icr() {
    if is_x2apic() {
        return; // x2APIC ICR writes do not have a pending state
    }
    // Delivery takes a few hundred cycles; a hung APIC must not hang the
    // kernel, so give up after a bound and let the IPI's effect be checked.
    for _ in 0..1_000_000 {
        if read(reg::ICR_LOW) & icr::SEND_PENDING == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// Sends one IPI. In xAPIC mode that is two register writes (destination,
/// then command) plus the waits for the ICR to go idle; interrupts are off
/// for all of it, because an interrupt handler that sent an IPI in between
/// (the executor's notifier may be called from handlers) would change the
/// destination of this one. In x2APIC mode the ICR is one MSR write.
fn send(destination: u32, command: u32) {
    x86_64::instructions::interrupts::without_interrupts(|| send_now(destination, command));
}

fn send_now(destination: u32, command: u32) {
    wait_for_idle_icr();
    if is_x2apic() {
        let value = (u64::from(destination) << 32) | u64::from(command);
        // SAFETY: the fences only order memory; then the x2APIC ICR MSR,
        // whose write sends exactly the IPI that `command` describes to
        // `destination`. WRMSR to the ICR is not serializing, so without the
        // fences the IPI could overtake the stores it announces (a ready
        // bit, a status byte): the SDM asks for MFENCE; LFENCE first.
        unsafe {
            core::arch::asm!("mfence", "lfence", options(nostack, preserves_flags));
            Msr::new(X2APIC_MSR_BASE + reg::ICR_LOW / 16).write(value)
        }
    } else {
        write(reg::ICR_HIGH, destination << 24);
        write(reg::ICR_LOW, command);
    }
    wait_for_idle_icr();
}

/// Sends a fixed interrupt on `vector` to the CPU with APIC ID `destination`.
pub fn send_ipi(destination: u32, vector: u8) {
    send(
        destination,
        icr::DELIVERY_FIXED | icr::LEVEL_ASSERT | u32::from(vector),
    );
}

/// Sends an INIT IPI: the target resets and waits for a startup IPI.
pub fn send_init(destination: u32) {
    send(destination, icr::DELIVERY_INIT | icr::LEVEL_ASSERT);
}

/// Sends a startup IPI: the target starts in real mode at
/// `start_page * 4096`.
pub fn send_startup(destination: u32, start_page: u8) {
    send(
        destination,
        icr::DELIVERY_STARTUP | icr::LEVEL_ASSERT | u32::from(start_page),
    );
}

/// LVT timer: interrupt delivery masked.
const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration: divide the bus clock by 1.
const DIVIDE_BY_1: u32 = 0b1011;

/// Arms this CPU's APIC timer to interrupt once on `vector` after `count`
/// timer ticks (0 disarms it).
pub fn timer_one_shot(vector: u8, count: u32) {
    write(reg::TIMER_DIVIDE, DIVIDE_BY_1);
    write(reg::LVT_TIMER, u32::from(vector));
    write(reg::TIMER_INITIAL_COUNT, count);
}

/// Starts the timer counting down from `u32::MAX` with its interrupt masked,
/// for calibration; returns the start count.
pub fn timer_start_free_running() -> u32 {
    write(reg::TIMER_DIVIDE, DIVIDE_BY_1);
    write(reg::LVT_TIMER, LVT_MASKED);
    write(reg::TIMER_INITIAL_COUNT, u32::MAX);
    u32::MAX
}

/// The timer's current count.
pub fn timer_current_count() -> u32 {
    read(reg::TIMER_CURRENT_COUNT)
}
