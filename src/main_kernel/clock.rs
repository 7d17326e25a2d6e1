//! Timers for the main kernel's tasks: an executor [`Clock`] over the TSC
//! and the BSP's local APIC timer.

use core::task::Waker;

use executor::time::{Clock, TimerQueue};

use crate::arch::x86_64::interrupts::{self, TrapFrame};
use crate::arch::x86_64::vectors::TIMER_VECTOR;
use crate::arch::x86_64::{apic, cpu, time};

/// The BSP's clock: TSC ticks, woken by its APIC timer.
pub struct ApicClock {
    queue: TimerQueue<16>,
}

/// The main kernel's clock.
pub static CLOCK: ApicClock = ApicClock {
    queue: TimerQueue::new(),
};

static MAIN_APIC_ID: spin::Once<u32> = spin::Once::new();

fn arm(deadline: Option<u64>) {
    let Some(deadline) = deadline else {
        return;
    };
    let left = deadline.saturating_sub(cpu::rdtsc());
    let count = (u128::from(time::ticks_to_us(left).max(1)) * u128::from(time::apic_timer_hz())
        / 1_000_000)
        .clamp(1, u128::from(u32::MAX)) as u32;
    apic::timer_one_shot(TIMER_VECTOR, count);
}

fn timer_interrupt(_frame: &mut TrapFrame) {
    apic::end_of_interrupt();
    if MAIN_APIC_ID.get() == Some(&cpu::apic_id()) {
        arm(CLOCK.queue.expire(cpu::rdtsc()));
    }
}

/// Takes over the timer vector (BSP, after boot).
pub fn init() {
    MAIN_APIC_ID.call_once(cpu::apic_id);
    interrupts::set_handler(TIMER_VECTOR, timer_interrupt);
}

impl Clock for ApicClock {
    fn now(&self) -> u64 {
        cpu::rdtsc()
    }

    fn wake_at(&self, deadline: u64, waker: &Waker) {
        match self.queue.register(deadline, waker) {
            Ok(earliest) => arm(Some(earliest)),
            // Full: poll again soon rather than never.
            Err(_) => waker.wake_by_ref(),
        }
    }
}

/// Sleeps for `us` microseconds.
pub async fn sleep_us(us: u64) {
    executor::time::sleep(&CLOCK, time::us_to_ticks(us)).await;
}
