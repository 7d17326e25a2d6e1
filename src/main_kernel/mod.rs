//! The main kernel's side: what runs on the BSP once every sidecar CPU is
//! up.
//!
//! The BSP runs one executor (the same crate the sidecar CPUs run) with the
//! scenario's tasks. [`driver`] owns the nodes' control pages and the
//! response IPI; [`client`] is the typed async API a VMM uses to send
//! commands to sidecar CPUs; [`clock`] gives tasks timers on the APIC timer.
//!
//! In this kernel the BSP is the main kernel's only running CPU: it hosts
//! every node's driver (one per node, each with its own control page), and
//! every node's `response_cpu` is the BSP. The nodes' base VPs stay parked
//! for the main kernel, as the seed's design reserves them.

pub mod client;
pub mod clock;
pub mod driver;

use core::future::Future;

use executor::x86::HaltParker;
use executor::Executor;

use crate::arch::x86_64::interrupts::{self, TrapFrame};
use crate::arch::x86_64::ipi_notifier::IpiNotifier;
use crate::arch::x86_64::vectors::WAKE_VECTOR;
use crate::arch::x86_64::{apic, cpu};

/// The BSP's executor: room for the scenario's tasks.
pub type MainExecutor = Executor<8, 4096, IpiNotifier>;

static MAIN_EXECUTOR: MainExecutor = Executor::new(IpiNotifier::new(0, WAKE_VECTOR));

fn wake_interrupt(_frame: &mut TrapFrame) {
    apic::end_of_interrupt();
}

/// Turns the BSP into the main kernel: the drivers, the clock, the
/// executor. Then runs `main` to completion on the executor and returns its
/// output.
pub fn run<F>(main: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    MAIN_EXECUTOR.notifier().set_owner(cpu::apic_id());
    interrupts::set_handler(WAKE_VECTOR, wake_interrupt);
    clock::init();
    driver::init();
    let runner = MAIN_EXECUTOR
        .claim()
        .expect("the BSP claims the main executor once");
    x86_64::instructions::interrupts::enable();
    let output = match runner.block_on(&HaltParker, main) {
        Ok(output) => output,
        Err(_) => panic!("a fresh executor has room for the main task"),
    };
    x86_64::instructions::interrupts::disable();
    output
}

/// The BSP executor's notifier, for IPI counts.
pub fn notifier() -> &'static IpiNotifier {
    MAIN_EXECUTOR.notifier()
}
