//! Timers for the main kernel's tasks: an executor [`Clock`] over the TSC
//! and a main-kernel CPU's local APIC timer.
//!
//! Every main-kernel CPU that runs an executor has its own clock: the BSP's
//! is a static, a base VP's lives in its main-kernel memory
//! (`main_kernel::node`). A task sleeps on the clock of the CPU it runs on,
//! and that CPU's timer interrupt expires it.

use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use core::task::Waker;

use executor::time::{Clock, TimerQueue};

use crate::arch::x86_64::interrupts::{self, TrapFrame};
use crate::arch::x86_64::vectors::TIMER_VECTOR;
use crate::arch::x86_64::{apic, cpu, time};
use crate::topology::MAX_NODES;
use crate::{percpu, plan};

/// Timers one clock holds: one per task of the largest main-kernel
/// executor (a base VP's), and the few of the BSP's scenario code. With
/// fewer, a CPU whose tasks all sleep (31 VMM tasks and the watchdog on a
/// node's base VP) finds the queue full, polls the overflow again at once
/// and never halts (seen: 66 934 overflows in one 40-CPU demo with 16).
const CLOCK_TIMERS: usize = super::node::NODE_TASKS + 5;
const _: () = assert!(CLOCK_TIMERS > super::MAIN_TASKS);

/// One main-kernel CPU's clock: TSC ticks, woken by its APIC timer.
pub struct ApicClock {
    queue: TimerQueue<CLOCK_TIMERS>,
    /// The APIC ID of the CPU whose timer serves the queue.
    owner: AtomicU32,
}

impl ApicClock {
    /// A clock nobody owns yet.
    pub const fn new() -> Self {
        Self {
            queue: TimerQueue::new(),
            owner: AtomicU32::new(u32::MAX),
        }
    }
}

impl Default for ApicClock {
    fn default() -> Self {
        Self::new()
    }
}

/// The BSP's clock (node 0's, and every node's whose base VP does not run).
static BSP_CLOCK: ApicClock = ApicClock::new();

/// Per node: its base VP's clock, once the base VP runs (null before).
static NODE_CLOCKS: [AtomicPtr<ApicClock>; MAX_NODES] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_NODES];

/// The clock of the main-kernel CPU with `apic_id`.
fn clock_of(apic_id: u32) -> &'static ApicClock {
    let node = percpu::vp_of(apic_id)
        .and_then(|vp| plan::get().topology.cpus.get(vp as usize))
        .map(|cpu| cpu.node as usize);
    let clock = node.map_or(core::ptr::null_mut(), |node| {
        NODE_CLOCKS[node].load(Ordering::Acquire)
    });
    // SAFETY: a non-null entry points at a clock in a base VP's main-kernel
    // memory, which stays its clock for the rest of the run.
    unsafe { clock.as_ref() }.unwrap_or(&BSP_CLOCK)
}

/// The running CPU's clock.
fn this_cpu() -> &'static ApicClock {
    clock_of(apic::id())
}

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
    let me = apic::id();
    let clock = clock_of(me);
    if clock.owner.load(Ordering::Relaxed) == me {
        arm(clock.queue.expire(cpu::rdtsc()));
    }
}

/// Takes over the timer vector (BSP, after boot).
pub fn init() {
    BSP_CLOCK.owner.store(apic::id(), Ordering::Relaxed);
    interrupts::set_handler(TIMER_VECTOR, timer_interrupt);
}

/// Makes `clock` the running CPU's, the base VP of `node` (on that CPU,
/// before its executor runs).
pub fn init_base_vp(clock: &'static ApicClock, node: u32) {
    clock.owner.store(apic::id(), Ordering::Relaxed);
    let pointer = core::ptr::from_ref(clock).cast_mut();
    NODE_CLOCKS[node as usize].store(pointer, Ordering::Release);
}

impl Clock for ApicClock {
    fn now(&self) -> u64 {
        cpu::rdtsc()
    }

    fn wake_at(&self, deadline: u64, waker: &Waker) {
        // Only the owner's timer expires the queue, and the queue is the
        // owner's alone (its critical section masks only local interrupts):
        // a task must sleep on the clock of the CPU it runs on.
        assert_eq!(
            self.owner.load(Ordering::Relaxed),
            apic::id(),
            "a task slept on another CPU's clock"
        );
        match self.queue.register(deadline, waker) {
            Ok(earliest) => arm(Some(earliest)),
            // Full: poll again soon rather than never.
            Err(_) => waker.wake_by_ref(),
        }
    }
}

/// Sleeps for `us` microseconds, on the running CPU's clock.
pub async fn sleep_us(us: u64) {
    executor::time::sleep(this_cpu(), time::us_to_ticks(us)).await;
}
