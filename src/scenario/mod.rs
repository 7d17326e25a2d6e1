//! The scenarios a run can ask for with `scenario=` (see
//! [`crate::cmdline::Scenario`]). Each either ends the run with a verdict or,
//! for the self-tests, proves that failures are reported.
//!
//! A leaf: only the BSP's entry calls it, once with [`runtime_hooks`] (what
//! the sidecar CPUs run besides production code) and once with [`run`]
//! (what the BSP does after boot). Nothing else in the kernel imports it.

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
    plan::get()
        .topology
        .cpus
        .iter()
        .filter(|c| c.role == crate::topology::Role::Sidecar)
        .filter_map(|c| crate::main_kernel::client::SidecarCpu::new(c.vp).ok())
}

mod convert;
mod demo;
mod fault_containment;
mod garbage;
mod guest_edges;
mod protocol;
mod rng;
mod runtime_hooks;
mod stack_overflow;
mod stress;

use crate::arch::x86_64::{cpu, time};
use crate::boot::summary::BootSummary;
use crate::cmdline::{Options, Scenario};
use crate::plan;
use crate::report;
use crate::vocabulary::report_key;

pub use runtime_hooks::runtime_hooks;

/// With `late=VP`: VP came up after the BSP gave up on it, and must have
/// found REMOVED on its control page and parked, not entered sidecar.
// Failures are one-line strings by value: there is no allocator to box them.
#[allow(clippy::result_large_err)]
fn late_cpu_parked(vp: u32) -> Result<(), Failure> {
    let record = crate::boot::fanout::RECORDS.get(vp as usize);
    let up = || record.is_some_and(|r| r.up_tsc.load(core::sync::atomic::Ordering::Acquire) != 0);
    let began = cpu::rdtsc();
    while !up() && cpu::rdtsc() - began < time::us_to_ticks(2_000_000) {
        time::sleep_us(1000);
    }
    check!(up(), "the late cpu {vp} never came up");
    // Give it the moment from its Rust entry to its status check.
    time::sleep_us(10_000);
    let status = crate::boot::fanout::control_status(vp);
    check!(
        status == Some(crate::abi::CpuStatus::REMOVED),
        "the late cpu {vp} left its status at {status:?} instead of REMOVED"
    );
    info!("cpu {vp} came up after its timeout, found REMOVED and parked");
    report::string(report_key::BOOT_LATE_CPU, format_args!("parked"));
    Ok(())
}

/// An address the boot page tables do not map (above the 4 GiB identity map).
const UNMAPPED_ADDRESS: u64 = 0x40_0000_0000;

/// Runs the scenario `options` name on the BSP, once every sidecar CPU is
/// up, and ends the run.
pub fn run(options: Options, boot: &BootSummary) -> ! {
    let scenario = options.scenario;
    report::string(report_key::SCENARIO, format_args!("{}", scenario.name()));
    match scenario {
        Scenario::Boot if boot.unexpected_failures > 0 => report::finish(Some(format_args!(
            "{} CPUs did not come up",
            boot.unexpected_failures
        ))),
        Scenario::Boot => {
            if let Some(vp) = options.late {
                if let Err(failure) = late_cpu_parked(vp) {
                    report::finish(Some(format_args!("boot: {failure}")));
                }
            }
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
        Scenario::StackOverflowSelftest => stack_overflow::run(),
        Scenario::Convert => match crate::main_kernel::run(convert::run) {
            Ok(()) => report::finish(None),
            Err(failure) => report::finish(Some(format_args!("convert: {failure}"))),
        },
        Scenario::FaultContainment => match crate::main_kernel::run(|_| fault_containment::run()) {
            Ok(()) => report::finish(None),
            Err(failure) => report::finish(Some(format_args!("fault-containment: {failure}"))),
        },
        Scenario::Garbage => match crate::main_kernel::run(|_| garbage::run()) {
            Ok(()) => report::finish(None),
            Err(failure) => report::finish(Some(format_args!("garbage: {failure}"))),
        },
        Scenario::Stress => {
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
        Scenario::GuestEdges => match crate::main_kernel::run(|_| guest_edges::run()) {
            Ok(()) => report::finish(None),
            Err(failure) => report::finish(Some(format_args!("guest-edges: {failure}"))),
        },
        Scenario::Protocol => match crate::main_kernel::run(|_| protocol::run()) {
            Ok(()) => report::finish(None),
            Err(failure) => report::finish(Some(format_args!("protocol: {failure}"))),
        },
        Scenario::IsolationCommandSelftest | Scenario::IsolationStackSelftest => {
            if runtime_hooks::isolation_target(scenario).is_none() {
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
