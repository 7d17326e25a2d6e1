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

use sidecar::abi::client::{self, RunVpExit};
use sidecar::abi::{
    HvInputVtl, HvMessageType, HvRegisterAssoc, HvX64RegisterName as Name, SidecarCommand,
};
use sidecar::emulation::devices::Devices;
use sidecar::emulation::{emulate, ExitCounts, VpEnd};
use sidecar::guests::{self, Program};
use sidecar::vocabulary::report_key as key;
use sidecar::vp::GuestRam;

use super::tsc;
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

/// One run of a one-round Compute on CPU `cpu`: its answer checked, and
/// the TSC cycles between each I/O intercept and the next.
fn exit_round_trips_of_one_run(
    node: &Node,
    cpu: u32,
    memory: &GuestRam,
    seed: u32,
    samples: &mut Vec<u64>,
) -> Result<(), String> {
    let vp = node.base_vp + cpu;
    let failed = |e: crate::driver::DriverError| format!("VP {vp}: exit bench: {e}");
    let registers = guests::start_registers(Program::Compute, vp, seed, 1);
    node.set_registers(cpu, &registers).map_err(failed)?;
    let (mut devices, mut counts) = (Devices::new(vp), ExitCounts::default());
    let mut last_io = None;
    loop {
        let message = match node.run_vp(cpu).map_err(failed)? {
            RunVpExit::Intercept(message) => message,
            RunVpExit::Stopped => return Err(format!("VP {vp} was stopped in the exit bench")),
        };
        let now = tsc();
        let io = message.header.typ == HvMessageType::HvMessageTypeX64IoPortIntercept;
        if let (true, Some(then)) = (io, last_io) {
            samples.push(now - then);
        }
        last_io = io.then_some(now);
        let read = |gpa| memory.read_array::<16>(gpa).unwrap_or_default();
        let emulation = emulate(&mut devices, &mut counts, &message, read);
        if !emulation.registers.is_empty() {
            node.set_registers(cpu, &emulation.registers)
                .map_err(failed)?;
        }
        match emulation.end {
            None => {}
            Some(VpEnd::Exited) => break,
            Some(end) => return Err(format!("VP {vp} ended the exit bench {end:?}")),
        }
    }
    let expected = guests::expected_compute(seed, 1);
    match devices.reports.result {
        Some(result) if result == expected => Ok(()),
        other => Err(format!(
            "VP {vp} computed {other:?} in the exit bench, expected {expected:#x}"
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

/// Both benchmarks on CPU `cpu` of `node`, [`SAMPLES`] each, reported.
pub fn round_trips(node: &Node, cpu: u32, memory: &GuestRam) -> Result<(), String> {
    let commands = (0..SAMPLES)
        .map(|_| command_round_trip(node, cpu))
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
        exit_round_trips_of_one_run(node, cpu, memory, 0x5EED_0000 ^ run, &mut exits)?;
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
