//! The baseline: a plain dispatch loop without the executor, as OpenHCL's
//! sidecar does it (halt until the status changes, then a `match`). It runs
//! the same command code as the dispatch task, so that the protocol
//! benchmark measures what the async design costs and nothing else.

use x86_64::instructions::interrupts;

use crate::abi::{CpuStatus, RunVpResponse};
use crate::runtime::commands::{self, Outcome};

use super::cpu::LocalCpu;

/// Halts until the status is no longer `current`. Interrupts off for the
/// check, then `sti; hlt` in one step, so the request IPI cannot slip in
/// between (the same argument as the executor's halt parker).
fn wait_while(cpu: LocalCpu, current: impl Fn(CpuStatus) -> bool) -> CpuStatus {
    loop {
        interrupts::disable();
        let status = cpu.status();
        if !current(status) {
            interrupts::enable();
            return status;
        }
        interrupts::enable_and_hlt();
    }
}

/// The loop; never returns (a REMOVE parks the CPU).
pub fn run(cpu: LocalCpu) -> ! {
    loop {
        match wait_while(cpu, |s| s == CpuStatus::IDLE) {
            CpuStatus::RUN | CpuStatus::STOP => run_command(cpu),
            CpuStatus::REMOVE => cpu.leave(),
            _ => {}
        }
        cpu.complete();
    }
}

fn run_command(cpu: LocalCpu) {
    // SAFETY: the status is RUN or STOP: this CPU owns the pages until
    // `complete`, and this is the only reference.
    let (page, state) = unsafe { cpu.pages() };
    if commands::execute(page, state, &mut cpu.guest_memory()) == Outcome::RunVp {
        wait_while(cpu, |s| s == CpuStatus::RUN);
        *page.request_mut() = RunVpResponse { intercept: 0 };
    }
}
