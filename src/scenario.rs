//! The scenarios a run can ask for with `scenario=` (see
//! [`crate::cmdline::Scenario`]). Each either ends the run with a verdict or,
//! for the self-tests, proves that failures are reported.

use crate::arch::x86_64::cpu;
use crate::boot::summary::BootSummary;
use crate::cmdline::Scenario;
use crate::report;

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
    }
}
