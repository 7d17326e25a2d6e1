//! What the self-tests and the protocol benchmark make sidecar CPUs do,
//! through the runtime's one seam ([`RuntimeHooks`]). Each scenario that
//! needs a hook gets its own type; every other scenario gets the runtime's
//! [`NoHooks`], so a command number means something special only in the
//! scenario that defines it.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::abi::SidecarCommand;
use crate::cmdline::Scenario;
use crate::layout::private;
use crate::plan;
use crate::report;
use crate::runtime::hooks::{AfterHook, DispatchLoop, NoHooks, RuntimeHooks};
use crate::runtime::this_cpu::{OwnedPages, ThisCpu};
use crate::MAX_CPUS;

use super::UNMAPPED_ADDRESS;

/// The hooks every sidecar CPU gets in `scenario` (BSP, at boot).
pub fn runtime_hooks(scenario: Scenario) -> &'static dyn RuntimeHooks {
    match scenario {
        Scenario::Protocol => &ProtocolHooks,
        Scenario::FaultContainment => &FaultContainmentHooks,
        Scenario::IsolationCommandSelftest => &IsolationHooks(Scenario::IsolationCommandSelftest),
        Scenario::IsolationStackSelftest => &IsolationHooks(Scenario::IsolationStackSelftest),
        _ => &NoHooks,
    }
}

/// The command number the protocol scenario sends to make a sidecar CPU
/// leave its executor for the plain loop, so that both loops are measured
/// on the same CPU.
pub const SWITCH_TO_PLAIN_COMMAND: u32 = 0x5A17;

/// The command number that makes a sidecar CPU in the plain loop (entered
/// through [`SWITCH_TO_PLAIN_COMMAND`]) go back to its executor.
pub const BACK_TO_EXECUTOR_COMMAND: u32 = 0x5A18;

/// The protocol benchmark's baselines: CPU 2 runs the plain loop from the
/// start, and any CPU switches to it on [`SWITCH_TO_PLAIN_COMMAND`] and
/// back on [`BACK_TO_EXECUTOR_COMMAND`].
struct ProtocolHooks;

impl RuntimeHooks for ProtocolHooks {
    fn dispatch_loop(&self, vp: u32) -> DispatchLoop {
        if vp == 2 {
            DispatchLoop::Plain
        } else {
            DispatchLoop::Executor
        }
    }

    fn before_command(&self, _cpu: ThisCpu, pages: &mut OwnedPages) -> AfterHook {
        match pages.command().command {
            SidecarCommand(SWITCH_TO_PLAIN_COMMAND) => AfterHook::SwitchToPlainLoop,
            SidecarCommand(BACK_TO_EXECUTOR_COMMAND) => AfterHook::BackToExecutor,
            _ => AfterHook::Run,
        }
    }
}

/// The command number that makes a sidecar CPU fault (read unmapped
/// memory) in the fault-containment scenario.
pub const FAULT_COMMAND: u32 = 0xFA17;

/// The command number that makes a sidecar CPU panic in the
/// fault-containment scenario.
pub const PANIC_COMMAND: u32 = 0xFA18;

/// The command number that wedges a sidecar CPU for good (interrupts off,
/// spinning), so that the client's bound must end the command.
pub const WEDGE_COMMAND: u32 = 0xFA19;

/// The command number after which a sidecar CPU ignores STOP: its next
/// RUN_VP spins inside dispatch, so the bound after the STOP must end it.
pub const DEAF_TO_STOP_COMMAND: u32 = 0xFA1A;

/// The command number that makes a sidecar CPU complete its command without
/// the response IPI (it clears its node's response vector first).
pub const NO_RESPONSE_COMMAND: u32 = 0xFA1B;

/// Per VP: the CPU took [`DEAF_TO_STOP_COMMAND`].
static DEAF_TO_STOP: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Faults, panics and wedges on command, for the containment test.
struct FaultContainmentHooks;

impl RuntimeHooks for FaultContainmentHooks {
    fn before_command(&self, cpu: ThisCpu, pages: &mut OwnedPages) -> AfterHook {
        let command = pages.command().command;
        let vp = cpu.identity().vp as usize;
        if command == SidecarCommand(WEDGE_COMMAND) {
            x86_64::instructions::interrupts::disable();
            loop {
                core::hint::spin_loop();
            }
        }
        if command == SidecarCommand(DEAF_TO_STOP_COMMAND) {
            DEAF_TO_STOP[vp].store(true, Ordering::Relaxed);
        }
        if command == SidecarCommand::RUN_VP && DEAF_TO_STOP[vp].load(Ordering::Relaxed) {
            // Interrupts stay on (the request IPI is taken), but dispatch
            // never gets to look at the status again.
            loop {
                core::hint::spin_loop();
            }
        }
        if command == SidecarCommand(NO_RESPONSE_COMMAND) {
            cpu.control().response_vector.store(0, Ordering::Release);
        }
        if command == SidecarCommand(PANIC_COMMAND) {
            panic!("fault-containment: deliberate panic");
        }
        if command == SidecarCommand(FAULT_COMMAND) {
            // SAFETY: not safe, on purpose: the address is unmapped, the
            // read faults, and the fault handler contains it (the CPU leaves
            // sidecar) without returning here.
            let value = unsafe { core::ptr::read_volatile(UNMAPPED_ADDRESS as *const u64) };
            warn!("reading {UNMAPPED_ADDRESS:#x} did not fault (read {value:#x})");
        }
        AfterHook::Run
    }
}

/// The physical address sidecar CPU 1 reads in an isolation self-test: a
/// page of CPU 2's that only CPU 2 maps.
pub fn isolation_target(scenario: Scenario) -> Option<u64> {
    let pages = plan::get().cpu_pages(2)?;
    match scenario {
        Scenario::IsolationCommandSelftest => Some(pages.region.command_page(pages.index)),
        Scenario::IsolationStackSelftest => {
            Some(pages.region.private_page(pages.index, private::STACK))
        }
        _ => None,
    }
}

/// CPU 1 reads a page of CPU 2's as soon as it is ready: the read must
/// fault, and the fault (not contained yet) ends the run.
struct IsolationHooks(Scenario);

impl RuntimeHooks for IsolationHooks {
    fn on_ready(&self, cpu: ThisCpu) {
        if cpu.identity().vp != 1 {
            return;
        }
        let scenario = self.0;
        if let Some(target) = isolation_target(scenario) {
            info!("{}: reading cpu 2's page at {target:#x}", scenario.name());
            // SAFETY: not safe, on purpose: this CPU's page tables do not map
            // the page, so the read must fault, and the fault ends the run.
            let value = unsafe { core::ptr::read_volatile(target as *const u64) };
            report::finish(Some(format_args!(
                "cpu 1 read cpu 2's page at {target:#x} without a fault (read {value:#x})"
            )));
        }
    }
}
