//! The dispatch task: the sidecar CPU's one long-lived task.
//!
//! ```text
//! loop:
//!   await status != IDLE          (woken by the request IPI)
//!   RUN    → run the command; a STOP while it runs cancels it
//!   STOP   → the command was stopped before it started: take it, do not run it
//!   REMOVE → leave the loop
//!   then: results written, status IDLE, attention raised, response IPI
//! ```
//!
//! Short commands (registers, translation) run inline. RUN_VP runs as its own
//! task, so that a STOP can cancel it through the executor's cancel token:
//! the task's future is dropped at its next poll boundary (its `Drop` leaves
//! the VP consistent) and RUN_VP completes with `intercept = 0`.
//!
//! A STOP that arrives before the CPU took the command (the driver wrote
//! RUN, then STOP, before the request IPI was handled) is defined this way:
//! a RUN_VP is taken and not run, and completes normally with
//! `intercept = 0`, exactly as if it had been stopped at once. Any other
//! command ignores the STOP and runs: it is short and ends by itself, and a
//! STOP meant for a RUN_VP that raced with the VMM's next command must not
//! cancel that command.

use executor::{Completion, Spawner};
use futures_util::future::{select, Either};

use crate::abi::{CpuStatus, RunVpResponse, SidecarCommand};
use crate::runtime::commands::{self, Outcome};

use super::cpu::{LocalCpu, SIDECAR_TASK_BYTES};
use super::vp::RunEnd;

/// The dispatch loop; never ends (a REMOVE parks the CPU for good).
pub async fn dispatch(cpu: LocalCpu, spawner: Spawner<SIDECAR_TASK_BYTES>) {
    loop {
        spawner.wait_flag(|| cpu.status() != CpuStatus::IDLE).await;
        match cpu.status() {
            CpuStatus::RUN => run_command(cpu, &spawner).await,
            CpuStatus::STOP if next_command(cpu) == SidecarCommand::RUN_VP => {
                stopped_before_start(cpu)
            }
            // Short commands ignore a STOP: they end by themselves.
            CpuStatus::STOP => run_command(cpu, &spawner).await,
            CpuStatus::REMOVE => cpu.leave(),
            other => {
                warn!("status {other:?} is not a request; ignoring it");
                // Put the byte back to IDLE so the loop waits again.
            }
        }
        cpu.complete();
    }
}

async fn run_command(cpu: LocalCpu, spawner: &Spawner<SIDECAR_TASK_BYTES>) {
    {
        // SAFETY: the status is RUN (or STOP from here on): this CPU owns
        // the pages until `complete`; this reference ends before RUN_VP's
        // task makes its own.
        let (page, state) = unsafe { cpu.pages() };
        crate::scenario::before_command(page.command);
        if crate::scenario::switches_to_plain(page.command) {
            // The benchmark's same-CPU baseline: complete this command, then
            // serve every later one from the plain loop, for good.
            page.command = crate::abi::SidecarCommand::NONE;
            cpu.complete();
            super::plain::run(cpu);
        }
        if commands::execute(page, state, &mut cpu.guest_memory()) == Outcome::Done {
            return;
        }
    }
    let end = run_vp(cpu, spawner).await;
    // SAFETY: as above; RUN_VP's task is complete, so this is the only
    // reference again.
    let (page, _) = unsafe { cpu.pages() };
    let intercept = match end {
        Some(RunEnd::Intercept) => 1,
        Some(RunEnd::Refused(reason)) => {
            page.set_error_fmt(format_args!("VMRUN failed (VMEXIT_INVALID): {reason}"));
            0
        }
        Some(RunEnd::NoSvm) => {
            page.set_error(
                "RUN_VP: this CPU has no SVM (QEMU's KVM here offers none: use --accel tcg)",
            );
            0
        }
        Some(RunEnd::Halted) | None => 0,
    };
    *page.request_mut() = RunVpResponse { intercept };
}

/// Runs the VP as its own task until it ends (`Some`) or a STOP cancels it
/// (`None`).
async fn run_vp(cpu: LocalCpu, spawner: &Spawner<SIDECAR_TASK_BYTES>) -> Option<RunEnd> {
    let Ok(mut task) = spawner.spawn(super::vp::run_vp(cpu, *spawner)) else {
        // The dispatch task and RUN_VP are the only tasks: a slot is free.
        unreachable!("the RUN_VP slot is free between commands");
    };
    let stop = spawner.wait_flag(|| cpu.status() == CpuStatus::STOP);
    let completion = match select(&mut task, stop).await {
        Either::Left((completion, _)) => completion,
        Either::Right(((), _)) => {
            task.cancel();
            (&mut task).await
        }
    };
    match completion {
        Completion::Finished(end) => Some(end),
        Completion::Cancelled => None,
    }
}

/// The command waiting in the command page.
fn next_command(cpu: LocalCpu) -> SidecarCommand {
    // SAFETY: the status is STOP: this CPU owns the pages until `complete`;
    // the reference ends here.
    let (page, _) = unsafe { cpu.pages() };
    page.command
}

/// A RUN_VP whose STOP came before it started: taken, not run.
fn stopped_before_start(cpu: LocalCpu) {
    // SAFETY: the status is STOP: this CPU owns the pages until `complete`.
    let (page, _) = unsafe { cpu.pages() };
    page.command = SidecarCommand::NONE;
    page.has_error = 0;
    page.error.clear();
    *page.request_mut() = RunVpResponse { intercept: 0 };
}
