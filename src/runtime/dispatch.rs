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

use core::cell::Cell;

use executor::{Completion, Spawner};
use futures_util::future::{select, Either};

use super::commands::{self, Outcome};
use super::hooks::AfterHook;
use super::run_vp::run_vp;
use super::this_cpu::{OwnedPages, ThisCpu, SIDECAR_TASK_BYTES};
use crate::abi::{CommandPage, CpuStatus, RunVpResponse, SidecarCommand};
use crate::vmrun::RunEnd;

/// The dispatch loop; never ends (a REMOVE parks the CPU for good).
pub async fn dispatch(this: ThisCpu, spawner: Spawner<SIDECAR_TASK_BYTES>) {
    loop {
        // The status the wait saw end it, so that the match below needs
        // no second read of the control page.
        let seen = Cell::new(CpuStatus::IDLE);
        spawner
            .wait_flag(|| {
                seen.set(this.status());
                seen.get() != CpuStatus::IDLE
            })
            .await;
        match seen.get() {
            CpuStatus::RUN | CpuStatus::STOP => {
                if start_command(this) == Started::RunVp {
                    run_vp_command(this, &spawner).await;
                }
            }
            CpuStatus::REMOVE => this.leave(),
            other => {
                warn!("status {other:?} is not a request; ignoring it");
                // Put the byte back to IDLE so the loop waits again.
            }
        }
        this.complete();
    }
}

/// The status is RUN or STOP, so the pages are this CPU's until `complete`.
fn own_pages(this: ThisCpu) -> OwnedPages {
    this.own_pages()
        .expect("the status is RUN or STOP and dispatch holds no other claim")
}

/// How [`start_command`] left the command.
#[derive(PartialEq, Eq)]
enum Started {
    /// Done, or taken and not run: the loop completes it.
    Done,
    /// A RUN_VP, to run as its own task.
    RunVp,
}

/// Takes the command and runs it if it is short, without an `await`: the
/// common command costs the dispatch task no state of its own.
/// `#[inline(always)]`: out of line, its call and frame cost the command
/// more than the state it saves (14 guest instructions under
/// `-icount`, docs/protocol.md).
#[inline(always)]
fn start_command(this: ThisCpu) -> Started {
    let mut pages = own_pages(this);
    // Short commands ignore a STOP (they end by themselves), so only a
    // RUN_VP reads the status again: one stopped before it started is taken
    // and not run.
    if pages.command().command == SidecarCommand::RUN_VP && this.status() == CpuStatus::STOP {
        stopped_before_start(pages.command());
        return Started::Done;
    }
    match this.globals().hooks.before_command(this, &mut pages) {
        AfterHook::Run => {}
        AfterHook::SwitchToPlainLoop => {
            pages.command().command = SidecarCommand::NONE;
            drop(pages);
            this.complete();
            // Returns with the command that switched back taken, not run:
            // the loop completes it.
            super::plain::serve(this);
            return Started::Done;
        }
        AfterHook::BackToExecutor => {
            pages.command().command = SidecarCommand::NONE;
            return Started::Done;
        }
    }
    let memory = &mut this.guest_ram();
    let (page, state) = pages.command_and_state();
    match commands::execute(page, state, memory) {
        Outcome::Done => Started::Done,
        Outcome::RunVp => Started::RunVp,
    }
}

/// Runs the VP of a RUN_VP that [`start_command`] took, and writes its
/// response.
async fn run_vp_command(this: ThisCpu, spawner: &Spawner<SIDECAR_TASK_BYTES>) {
    let end = run_vp_task(this, spawner).await;
    let mut pages = own_pages(this);
    let page = pages.command();
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
        Some(RunEnd::BadMxcsr(mxcsr)) => {
            page.set_error_fmt(format_args!(
                "RUN_VP: cpu_context's MXCSR {mxcsr:#x} has reserved bits set (FXRSTOR would fault)"
            ));
            0
        }
        Some(RunEnd::Unhandled(code)) => {
            page.set_error_fmt(format_args!(
                "RUN_VP: exit {code:?} has no handler and no intercept message; the VP was not re-entered"
            ));
            0
        }
        Some(RunEnd::Halted | RunEnd::HaltedForGood) | None => 0,
    };
    *page.request_mut() = RunVpResponse { intercept };
}

/// Runs the VP as its own task until it ends (`Some`) or a STOP cancels it
/// (`None`). The task's first poll (its first VMRUN) runs inside the spawn
/// (`spawn_now`): a VP that exits at once to the main kernel never goes
/// through the run loop. A STOP that comes during that poll ends the VMRUN
/// (the request IPI exits it), or, if its IPI came before the VMRUN, is
/// seen by the run's own look at the status before it (`vmrun::run`); then
/// by the wait below.
async fn run_vp_task(this: ThisCpu, spawner: &Spawner<SIDECAR_TASK_BYTES>) -> Option<RunEnd> {
    let Ok(mut task) = spawner.spawn_now(run_vp(this, *spawner)) else {
        // The dispatch task and RUN_VP are the only tasks: a slot is free.
        unreachable!("the RUN_VP slot is free between commands");
    };
    let stop = spawner.wait_flag(|| this.status() == CpuStatus::STOP);
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

/// A RUN_VP whose STOP came before it started: taken, not run.
fn stopped_before_start(page: &mut CommandPage) {
    page.command = SidecarCommand::NONE;
    page.has_error = 0;
    page.error.clear();
    *page.request_mut() = RunVpResponse { intercept: 0 };
}
