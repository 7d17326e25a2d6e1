//! Time from the TSC, calibrated once against the PIT, and sleeping on the
//! local APIC timer.
//!
//! QEMU's models have no CPUID leaf that states the TSC frequency, so the BSP
//! counts TSC ticks across a known PIT interval, then APIC timer ticks across
//! a known TSC interval. Every CPU then turns TSC readings into time with the
//! same frequency (QEMU's TSCs tick together).
//!
//! [`sleep_us`] halts instead of spinning: under QEMU's software emulation
//! every spinning virtual CPU takes host time from the CPUs that have real
//! work, which matters when dozens of CPUs wait out INIT-SIPI-SIPI delays at
//! once.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::interrupts;
use x86_64::instructions::port::Port;

use super::apic;
use super::cpu::rdtsc;
use super::interrupts::TrapFrame;
use super::vectors::TIMER_VECTOR;

/// The PIT's input clock.
const PIT_HZ: u64 = 1_193_182;
/// The calibration interval.
const CALIBRATION_MS: u64 = 10;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static APIC_TIMER_HZ: AtomicU64 = AtomicU64::new(0);

/// Measures the TSC frequency against the PIT and the APIC timer against the
/// TSC, and installs the timer's interrupt handler. BSP only, after enabling
/// its APIC and before other CPUs run (it owns the PIT). Returns the TSC
/// frequency.
pub fn calibrate() -> u64 {
    let hz = calibrate_tsc();
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    let start = apic::timer_start_free_running();
    let tsc_start = rdtsc();
    while rdtsc() - tsc_start < hz / 1000 {
        core::hint::spin_loop();
    }
    let elapsed = u64::from(start - apic::timer_current_count());
    APIC_TIMER_HZ.store((elapsed * 1000).max(1), Ordering::Relaxed);
    apic::timer_one_shot(TIMER_VECTOR, 0);
    super::interrupts::set_handler(TIMER_VECTOR, timer_interrupt);
    hz
}

/// The APIC timer's frequency in Hz.
pub fn apic_timer_hz() -> u64 {
    APIC_TIMER_HZ.load(Ordering::Relaxed).max(1)
}

fn timer_interrupt(_frame: &mut TrapFrame) {
    apic::end_of_interrupt();
}

/// The last stretch of a sleep is spun, not halted: waking from HLT takes
/// QEMU up to about a millisecond, which would stretch every wait.
const SPIN_TAIL_US: u64 = 1000;

/// Waits at least `us` microseconds, halted on the APIC timer for all but
/// the last [`SPIN_TAIL_US`] (other interrupts may end a halt early; the loop
/// re-arms the timer for what is left). Returns with interrupts disabled.
pub fn sleep_us(us: u64) {
    let deadline = rdtsc() + us_to_ticks(us);
    let halt_until = deadline.saturating_sub(us_to_ticks(SPIN_TAIL_US));
    loop {
        interrupts::disable();
        let now = rdtsc();
        if now >= halt_until {
            break;
        }
        let left_us = ticks_to_us(halt_until - now).max(1);
        let count = (u128::from(left_us) * u128::from(apic_timer_hz()) / 1_000_000)
            .clamp(1, u128::from(u32::MAX)) as u32;
        apic::timer_one_shot(TIMER_VECTOR, count);
        // `sti; hlt` as one step: the timer cannot fire between the check
        // above and the halt (the STI shadow covers the HLT).
        interrupts::enable_and_hlt();
    }
    while rdtsc() < deadline {
        core::hint::spin_loop();
    }
}

fn calibrate_tsc() -> u64 {
    let count = PIT_HZ * CALIBRATION_MS / 1000;
    let mut speaker = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: ports 0x61/0x42/0x43 are the PC's speaker gate and PIT, which
    // nothing else in the kernel uses; programming them has no memory effect.
    let ticks = unsafe {
        let gate = speaker.read();
        speaker.write((gate & !0x02) | 0x01); // gate on, speaker off
        command.write(0b1011_0000); // channel 2, low then high byte, mode 0
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        let start = rdtsc();
        // Output 2 (bit 5) rises when the count reaches zero; bound the wait
        // so that a missing PIT cannot hang the boot.
        let mut spins = 0u64;
        while speaker.read() & 0x20 == 0 && spins < 100_000_000 {
            spins += 1;
        }
        let end = rdtsc();
        speaker.write(gate);
        end - start
    };
    ticks * 1000 / CALIBRATION_MS
}

/// The calibrated TSC frequency in Hz.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed).max(1)
}

/// Converts a TSC interval to microseconds.
pub fn ticks_to_us(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(tsc_hz())) as u64
}

/// Converts microseconds to TSC ticks.
pub fn us_to_ticks(us: u64) -> u64 {
    (u128::from(us) * u128::from(tsc_hz()) / 1_000_000) as u64
}
