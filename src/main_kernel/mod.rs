//! The main kernel's side: what runs on the BSP and on the nodes' base VPs
//! once every sidecar CPU is up.
//!
//! The BSP runs one executor (the same crate the sidecar CPUs run) with the
//! scenario's tasks. [`driver`] owns the nodes' control pages and the
//! response IPI; [`client`] is the typed async API a VMM uses to send
//! commands to sidecar CPUs; [`clock`] gives tasks timers on the APIC timer;
//! [`node`] starts the nodes' base VPs.
//!
//! Each node has one driver (with its own control page). The BSP is node
//! 0's `response_cpu`; every other node's base VP is started into
//! main-kernel code with an executor, clock and watchdog of its own and
//! becomes its node's `response_cpu`, so the scenario can run a node's VMM
//! tasks there ([`node::post`]) and the nodes' exits are handled in
//! parallel. A base VP that does not come up leaves its node to the BSP.

pub mod client;
pub mod clock;
pub mod convert;
pub mod driver;
pub mod node;

use core::future::Future;

use executor::x86::HaltParker;
use executor::Executor;

use crate::arch::x86_64::interrupts::{self, TrapFrame};
use crate::arch::x86_64::ipi_notifier::IpiNotifier;
use crate::arch::x86_64::vectors::WAKE_VECTOR;
use crate::arch::x86_64::{apic, cpu};

/// Task slots of the BSP's executor: the scenario's main task, the
/// driver's watchdog, and a VMM task per VP it runs at once. 20 (160 KiB):
/// the executor is in the kernel image, which must end below 4 MiB, and the
/// other nodes' VPs run on their base VPs' executors.
pub const MAIN_TASKS: usize = 20;
/// Bytes per task slot of the BSP's executor.
pub const MAIN_TASK_BYTES: usize = 8192;

/// The BSP's executor.
pub type MainExecutor = Executor<MAIN_TASKS, MAIN_TASK_BYTES, IpiNotifier>;

/// Spawns tasks on the BSP's executor.
pub type MainSpawner = executor::Spawner<MAIN_TASK_BYTES>;

static MAIN_EXECUTOR: MainExecutor = Executor::new(IpiNotifier::new(0, WAKE_VECTOR));

fn wake_interrupt(_frame: &mut TrapFrame) {
    apic::end_of_interrupt();
}

/// Turns the BSP into the main kernel: the drivers, the clock, the
/// executor, the other nodes' base VPs. Then runs the future `main` makes (given a spawner for more
/// tasks) to completion on the executor and returns its output.
pub fn run<M, F>(main: M) -> F::Output
where
    M: FnOnce(MainSpawner) -> F,
    F: Future + 'static,
    F::Output: 'static,
{
    MAIN_EXECUTOR.notifier().set_owner(cpu::apic_id());
    interrupts::set_handler(WAKE_VECTOR, wake_interrupt);
    clock::init();
    driver::init();
    node::start_all();
    let runner = MAIN_EXECUTOR
        .claim()
        .expect("the BSP claims the main executor once");
    x86_64::instructions::interrupts::enable();
    if runner.spawn(driver::watchdog()).is_err() {
        panic!("a fresh executor has room for the driver's watchdog");
    }
    let main = main(runner.spawner());
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
