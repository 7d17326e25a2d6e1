//! The one seam through which self-tests and benchmarks reach into a
//! sidecar CPU's runtime.
//!
//! The BSP picks one [`RuntimeHooks`] object at boot (the self-tests supply
//! it) and writes a reference to it into every sidecar CPU's
//! globals. A production run gets [`NoHooks`], whose methods do nothing:
//! nothing a command page can say makes dispatch do anything but run the
//! command. The runtime never names a self-test; a self-test names
//! the runtime's hooks. The calls are where the design would also put tracing:
//! once per CPU at start, once per command.

use super::this_cpu::{OwnedPages, ThisCpu};

/// Which loop a sidecar CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DispatchLoop {
    /// The executor with its dispatch task (the design).
    Executor,
    /// A plain halt-and-match loop without the executor (the baseline the
    /// protocol benchmark compares against, as OpenHCL's sidecar does it).
    Plain,
}

/// What dispatch does after [`RuntimeHooks::before_command`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterHook {
    /// Run the command.
    Run,
    /// Complete the command without running it, then serve the later
    /// commands from the plain loop until one's hook says
    /// [`AfterHook::BackToExecutor`] (the protocol benchmark measures both
    /// loops on the same CPU, alternately).
    SwitchToPlainLoop,
    /// Complete the command without running it; in the plain loop entered
    /// through [`AfterHook::SwitchToPlainLoop`], go back to the executor.
    BackToExecutor,
}

/// Self-test and benchmark hooks. Every method has a default that does
/// nothing, which is what production runs.
pub trait RuntimeHooks: Sync {
    /// Which loop CPU `vp` runs.
    fn dispatch_loop(&self, _vp: u32) -> DispatchLoop {
        DispatchLoop::Executor
    }

    /// Called once the CPU is IDLE, before it waits for its first command
    /// and before its faults are contained (a fault here ends the run).
    fn on_ready(&self, _cpu: ThisCpu) {}

    /// Called with the command pages owned, before the command runs. A
    /// hook may also not return (a deliberate fault or panic, which the
    /// fault handler contains).
    fn before_command(&self, _cpu: ThisCpu, _pages: &mut OwnedPages) -> AfterHook {
        AfterHook::Run
    }
}

/// The production hooks: none.
pub struct NoHooks;

impl RuntimeHooks for NoHooks {}
