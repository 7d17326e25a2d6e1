//! The scenarios a run can ask for with `scenario=` (see
//! [`crate::cmdline::Scenario`]). Each either ends the run with a verdict or,
//! for the self-tests, proves that failures are reported.

/// Why a scenario failed: one line saying which check failed. Kept by value:
/// there is no allocator to box it.
pub type Failure = heapless::String<256>;

/// Returns a [`Failure`] made from a format string.
macro_rules! fail {
    ($($arg:tt)*) => {{
        let mut failure = $crate::scenario::Failure::new();
        let _ = core::fmt::Write::write_fmt(&mut failure, format_args!($($arg)*));
        return Err(failure)
    }};
}

/// Fails with the message unless the condition holds.
macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            fail!($($arg)*);
        }
    };
}

/// A [`Failure`] for a command that failed on `vp`.
fn client_failure(vp: u32, what: &str, err: crate::main_kernel::client::ClientError) -> Failure {
    let mut failure = Failure::new();
    let _ = core::fmt::Write::write_fmt(&mut failure, format_args!("vp {vp}: {what}: {err}"));
    failure
}

/// Handles on every sidecar CPU that came up (and was not converted or
/// faulted since).
fn sidecar_cpus() -> impl Iterator<Item = crate::main_kernel::client::SidecarCpu> {
    startup::plan()
        .topology
        .cpus
        .iter()
        .filter(|c| c.role == crate::topology::Role::Sidecar)
        .filter_map(|c| crate::main_kernel::client::SidecarCpu::new(c.vp).ok())
}

mod convert;
mod demo;
mod fault;
mod garbage;
mod protocol;
mod stress;

use spin::Once;

use crate::arch::x86_64::{cpu, time};
use crate::boot::startup;
use crate::boot::summary::BootSummary;
use crate::cmdline::Scenario;
use crate::layout::private;
use crate::report;
use crate::runtime::cpu::RuntimeKind;

static SCENARIO: Once<Scenario> = Once::new();
static OPTIONS: Once<crate::cmdline::Options> = Once::new();

/// Records the scenario for every CPU to see (BSP, before starting APs).
pub fn publish(options: crate::cmdline::Options) {
    SCENARIO.call_once(|| options.scenario);
    OPTIONS.call_once(|| options);
}

/// The physical address sidecar CPU 1 reads in an isolation self-test: a
/// page of CPU 2's that only CPU 2 maps.
fn isolation_target(scenario: Scenario) -> Option<u64> {
    let plan = startup::plan();
    let victim = plan.topology.cpus.get(2)?;
    let region = (*plan.regions.get(victim.node as usize)?)?;
    let index = u64::from(victim.vp - plan.topology.nodes[victim.node as usize].base_vp);
    match scenario {
        Scenario::IsolationCommandSelftest => Some(region.command_page(index)),
        Scenario::IsolationStackSelftest => Some(region.private_page(index, private::STACK)),
        _ => None,
    }
}

/// Which dispatch loop sidecar CPU `vp` runs in `scenario`: the executor,
/// except for CPU 2 in the protocol scenario, which runs the plain loop as
/// the benchmark's baseline.
pub fn runtime_for(scenario: Scenario, vp: u32) -> RuntimeKind {
    match (scenario, vp) {
        (Scenario::Protocol, 2) => RuntimeKind::Plain,
        _ => RuntimeKind::Async,
    }
}

/// A sidecar CPU's part of the scenario, once it is ready.
pub fn on_sidecar_cpu(vp: u32) {
    let Some(&scenario) = SCENARIO.get() else {
        return;
    };
    if vp != 1 {
        return;
    }
    if let Some(target) = isolation_target(scenario) {
        info!("{}: reading cpu 2's page at {target:#x}", scenario.name());
        // SAFETY: not safe, on purpose: this CPU's page tables do not map the
        // page, so the read must fault, and the fault ends the run.
        let value = unsafe { core::ptr::read_volatile(target as *const u64) };
        report::finish(Some(format_args!(
            "cpu 1 read cpu 2's page at {target:#x} without a fault (read {value:#x})"
        )));
    }
}

/// The command number the protocol scenario sends to make a sidecar CPU
/// leave its executor for the plain loop, so that both loops are measured
/// on the same CPU (honoured in that scenario only).
pub const SWITCH_TO_PLAIN_COMMAND: u32 = 0x5A17;

/// Whether `command` asks this CPU to switch to the plain loop.
pub fn switches_to_plain(command: crate::abi::SidecarCommand) -> bool {
    SCENARIO.get() == Some(&Scenario::Protocol) && command.0 == SWITCH_TO_PLAIN_COMMAND
}

/// The command number the fault-containment scenario sends to make a
/// sidecar CPU fault on purpose (honoured in that scenario only).
pub const FAULT_COMMAND: u32 = 0xFA17;

/// The command number that makes a sidecar CPU panic in the
/// fault-containment scenario.
pub const PANIC_COMMAND: u32 = 0xFA18;

/// A sidecar CPU's hook before it runs a command: in the fault-containment
/// scenario, [`FAULT_COMMAND`] makes it read unmapped memory and
/// [`PANIC_COMMAND`] makes it panic.
pub fn before_command(command: crate::abi::SidecarCommand) {
    let containment = SCENARIO.get() == Some(&Scenario::FaultContainment);
    if containment && command.0 == PANIC_COMMAND {
        panic!("fault-containment: deliberate panic");
    }
    if containment && command.0 == FAULT_COMMAND {
        // SAFETY: not safe, on purpose: the address is unmapped, the read
        // faults, and the fault handler contains it (the CPU leaves
        // sidecar) without returning here.
        let value = unsafe { core::ptr::read_volatile(UNMAPPED_ADDRESS as *const u64) };
        warn!("reading {UNMAPPED_ADDRESS:#x} did not fault (read {value:#x})");
    }
}

/// An address the boot page tables do not map (above the 4 GiB identity map).
const UNMAPPED_ADDRESS: u64 = 0x40_0000_0000;

/// Runs `scenario` on the BSP, once every sidecar CPU is up, and ends the
/// run.
pub fn run(scenario: Scenario, boot: &BootSummary) -> ! {
    report::string("scenario", format_args!("{}", scenario.name()));
    match scenario {
        Scenario::Boot if boot.unexpected_failures > 0 => report::finish(Some(format_args!(
            "{} CPUs did not come up",
            boot.unexpected_failures
        ))),
        Scenario::Boot => {
            info!("boot scenario complete");
            report::finish(None)
        }
        Scenario::FaultSelftest => {
            info!("fault-selftest: reading unmapped address {UNMAPPED_ADDRESS:#x}");
            // SAFETY: not safe, on purpose: the read must fault, and the fault
            // handler ends the run without returning here.
            let value = unsafe { core::ptr::read_volatile(UNMAPPED_ADDRESS as *const u64) };
            report::finish(Some(format_args!(
                "fault-selftest: reading {UNMAPPED_ADDRESS:#x} did not fault (read {value:#x})"
            )))
        }
        Scenario::PanicSelftest => panic!("panic-selftest: deliberate panic"),
        Scenario::HangSelftest => {
            info!("hang-selftest: halting forever; the runner's timeout must end this run");
            cpu::halt_forever()
        }
        Scenario::Convert => match crate::main_kernel::run(convert::run) {
            Ok(()) => report::finish(None),
            Err(failure) => report::finish(Some(format_args!("convert: {failure}"))),
        },
        Scenario::FaultContainment => match crate::main_kernel::run(|_| fault::run()) {
            Ok(()) => report::finish(None),
            Err(failure) => report::finish(Some(format_args!("fault-containment: {failure}"))),
        },
        Scenario::Garbage => match crate::main_kernel::run(|_| garbage::run()) {
            Ok(()) => report::finish(None),
            Err(failure) => report::finish(Some(format_args!("garbage: {failure}"))),
        },
        Scenario::Stress => {
            let options = OPTIONS.get().copied().unwrap_or_default();
            match crate::main_kernel::run(move |spawner| {
                stress::run(spawner, options.commands, options.seed)
            }) {
                Ok(()) => report::finish(None),
                Err(failure) => report::finish(Some(format_args!("stress: {failure}"))),
            }
        }
        Scenario::Demo => match crate::main_kernel::run(demo::run) {
            Ok(()) => report::finish(None),
            Err(failure) => report::finish(Some(format_args!("demo: {failure}"))),
        },
        Scenario::Protocol => match crate::main_kernel::run(|_| protocol::run()) {
            Ok(()) => report::finish(None),
            Err(failure) => report::finish(Some(format_args!("protocol: {failure}"))),
        },
        Scenario::IsolationCommandSelftest | Scenario::IsolationStackSelftest => {
            if isolation_target(scenario).is_none() {
                report::finish(Some(format_args!(
                    "{} needs at least 3 CPUs",
                    scenario.name()
                )));
            }
            // CPU 1's fault ends the run; if it does not come, that is the
            // failure.
            time::sleep_us(5_000_000);
            report::finish(Some(format_args!(
                "{}: no fault within 5 s",
                scenario.name()
            )))
        }
    }
}
