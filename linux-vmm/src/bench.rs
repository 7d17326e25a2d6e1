//! The VMM's two benchmarks through Linux, the same figures the main kernel
//! measures for itself (docs/performance.md, "Through Linux"):
//!
//! - the **command round trip**: one GET_VP_REGISTERS of RIP, from copying
//!   the command page out, through the REQUEST ioctl (status RUN, request
//!   IPI) and the WAIT ioctl (asleep until the response IPI), to the answer
//!   read back, as the main kernel's `protocol` scenario times it;
//! - the **VM-exit round trip**: from RUN_VP returning one I/O intercept
//!   to RUN_VP returning the VP's next one, with the emulation, a
//!   SET_VP_REGISTERS of RIP and the RUN_VP between, as the main kernel's
//!   `demo` times its I/O exits. The guest is [`Program::Compute`] with one
//!   round: it writes its result port, then its exit port, so each run
//!   gives one sample.
//!
//! Both run on one sidecar CPU while the others are idle, and print their
//! median, 99th percentile and sample count as report lines.

use sidecar::abi::client;
use sidecar::abi::{HvInputVtl, HvRegisterAssoc, HvX64RegisterName as Name, SidecarCommand};
use sidecar::emulation::{ExitCounts, VpEnd};
use sidecar::guests::{self, Program};
use sidecar::vocabulary::report_key as key;

use super::{tsc, Cpu, Vmm};
use crate::driver::Node;

/// Samples of each benchmark: enough for a stable p99, few enough that the
/// run stays short under TCG (a round trip is some tens of µs).
pub const SAMPLES: usize = 400;

/// One GET_VP_REGISTERS round trip on CPU `cpu`, in TSC cycles; checks
/// that the answer carries the register.
fn command_round_trip(node: &Node, cpu: u32) -> Result<u64, String> {
    let mut asked = [HvRegisterAssoc::new(Name::Rip, 0u64)];
    let start = tsc();
    let mut wrote = Ok(());
    let page = node
        .command(cpu, |page| {
            wrote = client::write_registers(
                page,
                SidecarCommand::GET_VP_REGISTERS,
                HvInputVtl::CURRENT_VTL,
                &asked,
            );
        })
        .map_err(|e| format!("CPU {cpu}: GET_VP_REGISTERS: {e}"))?;
    let cycles = tsc() - start;
    wrote.map_err(|e| format!("{e:?}"))?;
    client::read_get_registers(&page, &mut asked).map_err(|e| format!("CPU {cpu}: {e}"))?;
    Ok(cycles)
}

/// One run of a one-round Compute on `cpu`: its answer checked, and the
/// cycles between its I/O intercepts pushed to `samples`.
fn exit_round_trips_of_one_run(
    vmm: &Vmm,
    cpu: Cpu,
    seed: u32,
    samples: &mut Vec<u64>,
) -> Result<(), String> {
    let vp = cpu.vp;
    let mut counts = ExitCounts::default();
    let (end, reports) = cpu
        .run(
            vmm,
            Program::Compute,
            (seed, 1),
            false,
            &mut counts,
            Some(samples),
        )
        .map_err(|e| format!("VP {vp}: exit bench: {e}"))?;
    let expected = guests::expected_compute(seed, 1);
    match (end, reports.result) {
        (VpEnd::Exited, Some(result)) if result == expected => Ok(()),
        (end, result) => Err(format!(
            "VP {vp} computed {result:?} ({end:?}) in the exit bench, expected {expected:#x}"
        )),
    }
}

/// Prints the median, the 99th percentile and the count of `samples` as
/// report lines under `[p50, p99, count]`'s keys, and returns the median.
fn report_percentiles(keys: [&str; 3], mut samples: Vec<u64>) -> Result<u64, String> {
    let [p50_key, p99_key, count_key] = keys;
    if samples.is_empty() {
        return Err(format!("{count_key}: no samples"));
    }
    samples.sort_unstable();
    let n = samples.len();
    let p50 = samples[n / 2];
    println!("{p50_key}={p50}");
    println!("{p99_key}={}", samples[n * 99 / 100]);
    println!("{count_key}={n}");
    Ok(p50)
}

/// Both benchmarks on `cpu`, [`SAMPLES`] each, reported.
pub(super) fn round_trips(vmm: &Vmm, cpu: Cpu) -> Result<(), String> {
    let commands = (0..SAMPLES)
        .map(|_| command_round_trip(cpu.node, cpu.index))
        .collect::<Result<Vec<_>, _>>()?;
    let keys = [
        key::LINUX_COMMAND_RTT_CYCLES_P50,
        key::LINUX_COMMAND_RTT_CYCLES_P99,
        key::LINUX_COMMAND_RTT_CYCLES_SAMPLES,
    ];
    let p50 = report_percentiles(keys, commands)?;
    eprintln!("linux-vmm: command round trip p50 {p50} cycles");
    let mut exits = Vec::with_capacity(SAMPLES);
    for run in 0..SAMPLES as u32 {
        exit_round_trips_of_one_run(vmm, cpu, 0x5EED_0000 ^ run, &mut exits)?;
    }
    let keys = [
        key::LINUX_VMRUN_ROUNDTRIP_CYCLES_P50,
        key::LINUX_VMRUN_ROUNDTRIP_CYCLES_P99,
        key::LINUX_VMRUN_ROUNDTRIP_CYCLES_SAMPLES,
    ];
    let p50 = report_percentiles(keys, exits)?;
    eprintln!("linux-vmm: VM-exit round trip p50 {p50} cycles");
    Ok(())
}
