//! The baseline: a plain dispatch loop without the executor, as OpenHCL's
//! sidecar does it (halt until the status changes, then a `match`). It runs
//! the same command code and the same hook call as the dispatch task, so
//! that the protocol benchmark measures what the async design costs and
//! nothing else. A CPU runs it from boot if its hooks say so, or for a while
//! from inside its dispatch task ([`serve`]), so that the benchmark can
//! measure both loops on the same CPU.

use x86_64::instructions::interrupts;

use super::commands::{self, Outcome};
use super::hooks::AfterHook;
use super::this_cpu::ThisCpu;
use crate::abi::{CpuStatus, RunVpResponse, SidecarCommand};

/// Halts until the status is no longer `current`. Interrupts off for the
/// check, then `sti; hlt` in one step, so the request IPI cannot slip in
/// between (the same argument as the executor's halt parker).
fn wait_while(this: ThisCpu, current: impl Fn(CpuStatus) -> bool) -> CpuStatus {
    loop {
        interrupts::disable();
        let status = this.status();
        if !current(status) {
            interrupts::enable();
            return status;
        }
        interrupts::enable_and_hlt();
    }
}

/// The loop of a CPU whose hooks pick the plain loop from boot; never
/// returns (a REMOVE parks the CPU).
pub fn run(this: ThisCpu) -> ! {
    loop {
        serve(this);
        // No executor to go back to: the command completes, not run.
        this.complete();
    }
}

/// Serves commands until one's hook says [`AfterHook::BackToExecutor`],
/// and returns with that command taken and not run, for the caller to
/// complete.
pub fn serve(this: ThisCpu) {
    loop {
        match wait_while(this, |s| s == CpuStatus::IDLE) {
            CpuStatus::RUN | CpuStatus::STOP if run_command(this) == AfterHook::BackToExecutor => {
                return;
            }
            CpuStatus::REMOVE => this.leave(),
            _ => {}
        }
        this.complete();
    }
}

/// Runs the command unless its hook says otherwise (the same hook call the
/// dispatch task makes, so that the two loops differ only in how they
/// dispatch); what the hook said.
fn run_command(this: ThisCpu) -> AfterHook {
    let Some(mut pages) = this.own_pages() else {
        return AfterHook::Run;
    };
    let after = this.globals().hooks.before_command(this, &mut pages);
    if after != AfterHook::Run {
        pages.command().command = SidecarCommand::NONE;
        return after;
    }
    let memory = &mut this.guest_ram();
    let (page, state) = pages.command_and_state();
    if commands::execute(page, state, memory) == Outcome::RunVp {
        // The baseline runs no VP: it waits for the STOP and completes.
        wait_while(this, |s| s == CpuStatus::RUN);
        *pages.command().request_mut() = RunVpResponse { intercept: 0 };
    }
    AfterHook::Run
}
