//! Entering the runtime: the request-IPI handler, and the loop a sidecar
//! CPU runs from its first IDLE on.

use core::sync::atomic::Ordering;

use super::hooks::DispatchLoop;
use super::this_cpu::{ThisCpu, SIDECAR_TASK_BYTES};
use crate::arch::x86_64::interrupts::{self, TrapFrame};
use crate::arch::x86_64::vectors::REQUEST_VECTOR;
use crate::arch::x86_64::{apic, cpu};
use crate::percpu::{self, Phase};

fn request_interrupt(_frame: &mut TrapFrame) {
    // A request IPI that reaches a CPU on the boot tables (a converted CPU,
    // sent one by a driver that had not seen REMOVED yet) is dropped: that
    // CPU has no window.
    if on_boot_tables() {
        apic::end_of_interrupt();
        return;
    }
    // SAFETY: a CPU not on the boot tables is a sidecar CPU on its own
    // tables (every main-kernel CPU runs on the boot tables), so its window
    // is mapped.
    let this = unsafe { ThisCpu::get() };
    // No CPUID on this path: the TSC goes into the CPU's own globals.
    this.globals()
        .request_tsc
        .store(cpu::rdtsc(), Ordering::Relaxed);
    apic::end_of_interrupt();
    this.globals().executor.wake_flag_waiters();
}

/// Whether the running CPU uses the boot page tables (a main-kernel CPU)
/// rather than its own (a sidecar CPU). Reading CR3 costs no exit.
fn on_boot_tables() -> bool {
    let (pml4, _) = x86_64::registers::control::Cr3::read_raw();
    pml4.start_address().as_u64() == crate::arch::x86_64::entry::boot_pml4_address()
}

/// The executor's loop on a sidecar CPU: poll until nothing is ready, then
/// halt until an interrupt. Every wake of a sidecar task happens on this CPU
/// (its tasks, or the request IPI's handler: [`OwnCpuOnly`]), so the
/// executor's park protocol, which lets other CPUs know that they must send
/// an IPI, is not needed: the ready word keeps its "awake" bit, and the
/// handler's wake is one `lock or` instead of three locked instructions. No
/// wake is lost, as in the halt parker (`executor/src/x86.rs`): with
/// interrupts off, a wake that already happened shows in the ready word (an
/// interrupt handler on this CPU, before the `cli`), and one that has not is
/// held pending and ends the `hlt` that `sti` covers.
///
/// [`OwnCpuOnly`]: super::this_cpu::OwnCpuOnly
fn run_and_halt(runner: &executor::Runner<SIDECAR_TASK_BYTES>) -> ! {
    loop {
        runner.run_until_idle();
        x86_64::instructions::interrupts::disable();
        if runner.has_ready() {
            x86_64::instructions::interrupts::enable();
        } else {
            x86_64::instructions::interrupts::enable_and_hlt();
        }
    }
}

/// Installs the request-IPI handler (BSP, once, before starting APs).
pub fn install_request_handler() {
    interrupts::set_handler(REQUEST_VECTOR, request_interrupt);
}

/// Runs the CPU's dispatch loop forever, from its first IDLE: the hooks'
/// `on_ready` (before faults are contained: a fault there ends the run),
/// then the loop they pick.
pub fn run(this: ThisCpu) -> ! {
    let hooks = this.globals().hooks;
    hooks.on_ready(this);
    percpu::set_phase(Phase::Sidecar);
    match hooks.dispatch_loop(this.identity().vp) {
        DispatchLoop::Plain => super::plain::run(this),
        DispatchLoop::Executor => {
            let runner = this
                .globals()
                .executor
                .claim()
                .expect("only this CPU claims its executor");
            let spawner = runner.spawner();
            if runner
                .spawn(super::dispatch::dispatch(this, spawner))
                .is_err()
            {
                panic!("a fresh executor has room for the dispatch task");
            }
            x86_64::instructions::interrupts::enable();
            run_and_halt(&runner)
        }
    }
}
