//! The baseline: a plain dispatch loop without the executor, as OpenHCL's
//! sidecar does it (halt until the status changes, then a `match`). It runs
//! the same command code as the dispatch task, so that the protocol
//! benchmark measures what the async design costs and nothing else.

use x86_64::instructions::interrupts;

use super::commands::{self, Outcome};
use super::this_cpu::ThisCpu;
use crate::abi::{CpuStatus, RunVpResponse};

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

/// The loop; never returns (a REMOVE parks the CPU).
pub fn run(this: ThisCpu) -> ! {
    loop {
        match wait_while(this, |s| s == CpuStatus::IDLE) {
            CpuStatus::RUN | CpuStatus::STOP => run_command(this),
            CpuStatus::REMOVE => this.leave(),
            _ => {}
        }
        this.complete();
    }
}

fn run_command(this: ThisCpu) {
    let Some(mut pages) = this.own_pages() else {
        return;
    };
    let memory = &mut this.guest_ram();
    let (page, state) = pages.command_and_state();
    if commands::execute(page, state, memory) == Outcome::RunVp {
        // The baseline runs no VP: it waits for the STOP and completes.
        wait_while(this, |s| s == CpuStatus::RUN);
        *pages.command().request_mut() = RunVpResponse { intercept: 0 };
    }
}
