//! Time from the TSC, whose frequency CPUID states or the BSP measures
//! against the PIT, and sleeping on the local APIC timer.
//!
//! [`begin_calibration`] runs first thing on the BSP and
//! [`Calibration::finish`] just before its first INIT: when no CPUID leaf
//! states the frequency (see [`tsc_frequency`] for which do, and what QEMU
//! offers), the BSP's own set-up is the measuring interval, counted by the
//! PIT's channel 2, so a calibration waits only when the set-up took less
//! than 1 ms. The APIC timer is measured the same way against the TSC,
//! from the moment the APIC is enabled, unless the hypervisor's leaf states
//! it. Every CPU then turns TSC readings into time with the same frequency
//! (QEMU's TSCs tick together).
//!
//! [`sleep_us`] halts instead of spinning: under QEMU's software emulation
//! every spinning virtual CPU takes host time from the CPUs that have real
//! work, which matters when dozens of CPUs wait out INIT-SIPI-SIPI delays at
//! once.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::interrupts;
use x86_64::instructions::port::Port;

use super::apic;
use super::cpu::{cpuid, rdtsc};
use super::interrupts::TrapFrame;
use super::tsc_frequency::{self as tsc_frequency, CpuidTiming, TscSource, PIT_HZ};
use super::vectors::TIMER_VECTOR;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static APIC_TIMER_HZ: AtomicU64 = AtomicU64::new(0);

/// The shortest interval the APIC timer is measured over: it only decides
/// how long a sleep halts before its TSC-timed last stretch.
const MIN_APIC_WINDOW_US: u64 = 100;

/// One reading of a clock with the TSC at that moment.
#[derive(Clone, Copy)]
struct Reading {
    count: u32,
    tsc: u64,
}

/// A calibration in progress: begun at the BSP's entry, finished before
/// its first INIT.
pub struct Calibration {
    pit: Reading,
    apic: Option<Reading>,
}

/// Starts the PIT counting and notes where it and the TSC stand. BSP only,
/// first thing (it owns the PIT).
pub fn begin_calibration() -> Calibration {
    Calibration {
        pit: pit_restart(),
        apic: None,
    }
}

impl Calibration {
    /// Starts the APIC timer counting down from its maximum, to measure it
    /// against the TSC; call once the BSP's APIC is enabled.
    pub fn start_apic_timer(&mut self) {
        let count = apic::timer_start_free_running();
        self.apic = Some(Reading {
            count,
            tsc: rdtsc(),
        });
    }

    /// Settles both frequencies and installs the timer's interrupt handler.
    /// Returns where the TSC frequency came from.
    pub fn finish(mut self) -> TscSource {
        let stated = tsc_frequency::stated_frequencies(&cpuid_timing());
        let (source, tsc_hz) = match stated {
            Some(stated) => (stated.source, stated.tsc_hz),
            None => (TscSource::Pit, self.measure_tsc()),
        };
        TSC_HZ.store(tsc_hz.max(1), Ordering::Relaxed);
        let apic_hz = match stated.and_then(|s| s.apic_timer_hz) {
            Some(hz) => hz,
            None => self.measure_apic_timer(tsc_hz),
        };
        APIC_TIMER_HZ.store(apic_hz.max(1), Ordering::Relaxed);
        apic::timer_one_shot(TIMER_VECTOR, 0);
        super::interrupts::set_handler(TIMER_VECTOR, timer_interrupt);
        source
    }

    /// TSC ticks per second against the PIT, over at least
    /// [`tsc_frequency::MIN_PIT_TICKS`]; starts over if the PIT ran out
    /// (the set-up took more than its 55 ms).
    fn measure_tsc(&mut self) -> u64 {
        loop {
            let now = pit_read_at_edge();
            if pit_ran_out() {
                self.pit = pit_restart();
                continue;
            }
            let ticks = tsc_frequency::pit_ticks(self.pit.count as u16, now.count as u16);
            if ticks >= tsc_frequency::MIN_PIT_TICKS {
                return tsc_frequency::frequency(now.tsc - self.pit.tsc, u64::from(ticks), PIT_HZ);
            }
        }
    }

    /// APIC timer ticks per second against the TSC, over at least
    /// [`MIN_APIC_WINDOW_US`].
    fn measure_apic_timer(&mut self, tsc_hz: u64) -> u64 {
        let min_ticks = tsc_hz * MIN_APIC_WINDOW_US / 1_000_000;
        loop {
            let start = match self.apic {
                Some(start) => start,
                None => {
                    self.start_apic_timer();
                    continue;
                }
            };
            let count = apic::timer_current_count();
            let now = rdtsc();
            if count == 0 {
                // It ran down: the set-up took longer than the timer's
                // range. Start over.
                self.start_apic_timer();
                continue;
            }
            if now - start.tsc >= min_ticks {
                return tsc_frequency::frequency(
                    u64::from(start.count - count),
                    now - start.tsc,
                    tsc_hz,
                );
            }
            core::hint::spin_loop();
        }
    }
}

/// The CPUID values that may state the TSC frequency, each leaf read only
/// when the CPU's maximum covers it.
fn cpuid_timing() -> CpuidTiming {
    let max_basic_leaf = cpuid(0).eax;
    let hypervisor = cpuid(1).ecx & (1 << 31) != 0;
    // With the hypervisor bit set, leaf 0x4000_0000 is the hypervisor's.
    let max_hypervisor_leaf = if hypervisor {
        cpuid(0x4000_0000).eax
    } else {
        0
    };
    let leaf = |number: u32, max: u32| (number <= max).then(|| cpuid(number));
    CpuidTiming {
        max_basic_leaf,
        hypervisor,
        max_hypervisor_leaf,
        leaf_15: leaf(0x15, max_basic_leaf).map_or([0; 3], |r| [r.eax, r.ebx, r.ecx]),
        leaf_16_eax: leaf(0x16, max_basic_leaf).map_or(0, |r| r.eax),
        leaf_4000_0010: leaf(0x4000_0010, max_hypervisor_leaf).map_or([0; 2], |r| [r.eax, r.ebx]),
    }
}

/// The PC's speaker gate (bit 0: PIT channel 2's gate, bit 5: its output).
const SPEAKER_PORT: u16 = 0x61;
/// The PIT's command register.
const PIT_COMMAND_PORT: u16 = 0x43;
/// PIT channel 2's counter.
const PIT_CHANNEL2_PORT: u16 = 0x42;

/// Starts channel 2 counting down from 65536 in mode 0 (its output rises
/// when it reaches zero) and returns the first reading after it began.
fn pit_restart() -> Reading {
    let mut speaker = Port::<u8>::new(SPEAKER_PORT);
    let mut command = Port::<u8>::new(PIT_COMMAND_PORT);
    let mut channel2 = Port::<u8>::new(PIT_CHANNEL2_PORT);
    // SAFETY: the speaker gate and the PIT are the BSP's alone during boot
    // (nothing else in the kernel uses them); programming them has no
    // memory effect.
    unsafe {
        let gate = speaker.read();
        speaker.write((gate & !0x02) | 0x01); // gate on, speaker off
        command.write(0b1011_0000); // channel 2, low then high byte, mode 0
        channel2.write(0);
        channel2.write(0); // 0 is 65536
    }
    pit_read_at_edge()
}

/// Latches and reads channel 2's count, with the TSC at the latch.
fn pit_read() -> Reading {
    let mut command = Port::<u8>::new(PIT_COMMAND_PORT);
    let mut channel2 = Port::<u8>::new(PIT_CHANNEL2_PORT);
    // SAFETY: as in `pit_restart`; the latch command freezes the count for
    // the two reads that follow.
    unsafe {
        let before = rdtsc();
        command.write(0b1000_0000); // latch channel 2
        let after = rdtsc();
        let low = channel2.read();
        let high = channel2.read();
        Reading {
            count: u32::from(u16::from_le_bytes([low, high])),
            tsc: before / 2 + after / 2,
        }
    }
}

/// The first reading after the count changes, so that both ends of an
/// interval sit on a tick's edge (a bounded wait: a missing PIT must not
/// hang the boot).
fn pit_read_at_edge() -> Reading {
    let first = pit_read();
    for _ in 0..100_000 {
        let next = pit_read();
        if next.count != first.count {
            return next;
        }
    }
    first
}

/// Whether channel 2 reached zero since it was started.
fn pit_ran_out() -> bool {
    let mut speaker = Port::<u8>::new(SPEAKER_PORT);
    // SAFETY: reading the speaker port has no side effect.
    unsafe { speaker.read() & 0x20 != 0 }
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

/// The TSC frequency in Hz.
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
