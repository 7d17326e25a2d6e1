//! `stack-overflow-selftest`: a main-kernel CPU overflows its stack on
//! purpose. The unmapped guard page below every main-kernel stack (the
//! BSP's, each base VP's) must turn the overflow into a reported double
//! fault (CPU, vector, RIP) that ends the run, not a silent write into the
//! memory below the stack.
//!
//! The CPU that overflows is the main kernel's CPU of the machine's last
//! node: the BSP when there is one node, else that node's base VP (run
//! with `--nodes 2` or more CPUs than one node holds). It logs the stack's
//! lowest address, so that a test can check that the fault's CR2 lies in
//! the page right below it: the guard adjoins the stack.

use core::hint::black_box;

use crate::arch::x86_64::entry;
use crate::main_kernel::{clock, node};
use crate::{plan, report};

/// How long the BSP waits for the base VP's fault before it fails the run.
const FAULT_WAIT_US: u64 = 5_000_000;

/// Runs the self-test; the fault ends the run, so returning is a failure.
pub fn run() -> ! {
    let last = plan::get().topology.nodes.len() as u32 - 1;
    if last == 0 {
        info!(
            "stack-overflow-selftest: the BSP overflows its stack (its lowest address {:#x})",
            entry::bsp_stack_bottom()
        );
        let depth = overflow(0);
        report::finish(Some(format_args!(
            "stack-overflow-selftest: the BSP recursed {depth} frames without a fault"
        )));
    }
    let failure = crate::main_kernel::run(|_| async move {
        if !node::post(last, overflow_job) {
            return "its base VP does not serve the node";
        }
        clock::sleep_us(FAULT_WAIT_US).await;
        "no fault within 5 s"
    });
    report::finish(Some(format_args!(
        "stack-overflow-selftest: node {last}: {failure}"
    )))
}

/// The job posted to the last node's base VP: one task that overflows.
fn overflow_job(node: u32, spawner: node::NodeSpawner) {
    let bottom = node::stack_bottom(node).unwrap_or(0);
    info!(
        "stack-overflow-selftest: node {node}'s base VP overflows its stack (its lowest address {bottom:#x})"
    );
    let _ = spawner.spawn(async {
        overflow(0);
    });
}

/// Recurses with a 512-byte frame until the stack ends; returns only if it
/// never does (a depth no stack here holds).
#[inline(never)]
fn overflow(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    if black_box(depth) > 1 << 40 {
        return depth;
    }
    overflow(depth + 1) + frame[black_box(3)]
}
