//! The VMM's two benchmarks through Linux, the same figures the main kernel
//! measures for itself (docs/performance.md, "Through Linux"):
//!
//! - the **command round trip**: one GET_VP_REGISTERS of RIP, from writing
//!   the command page through the REQUEST ioctl (status RUN, request IPI)
//!   and the WAIT ioctl (the driver's bounded poll for IDLE) to the answer
//!   read back, as the main kernel's `protocol` scenario times it;
//! - the **VM-exit round trip**: from RUN_VP returning one I/O intercept
//!   to RUN_VP returning the VP's next one, with the VMM's handling, a
//!   SET_VP_REGISTERS of RIP and the RUN_VP between, as the main kernel's
//!   `demo` times its I/O exits. The guest is [`Program::Compute`] with one
//!   round: it writes its result port, then its exit port, so each run
//!   gives one sample.
//!
//! Both run on one sidecar CPU while the others are idle, and print their
//! median, 99th percentile and sample count as report lines.

use sidecar::abi::client;
use sidecar::abi::{HvInputVtl, HvRegisterAssoc, HvX64RegisterName as Name, SidecarCommand};
use sidecar::guests::{self, Program};

use super::{run_program, tsc, Node};

/// Samples of each benchmark: enough for a stable p99, few enough that the
/// run stays short under TCG (a round trip is some tens of µs).
pub const SAMPLES: usize = 400;

/// One GET_VP_REGISTERS round trip on CPU `cpu`, in TSC cycles; checks
/// that the answer carries one register.
fn command_round_trip(node: &Node, cpu: u32) -> Result<u64, String> {
    let mut asked = [HvRegisterAssoc::new(Name::Rip, 0u64)];
    let start = tsc();
    let mut wrote = Ok(());
    let page = node.command(cpu, |page| {
        wrote = client::write_registers(
            page,
            SidecarCommand::GET_VP_REGISTERS,
            HvInputVtl::CURRENT_VTL,
            &asked,
        );
    })?;
    let cycles = tsc() - start;
    wrote.map_err(|e| format!("{e:?}"))?;
    client::read_get_registers(&page, &mut asked).map_err(|e| format!("CPU {cpu}: {e}"))?;
    Ok(cycles)
}

/// [`SAMPLES`] command round trips on CPU `cpu`.
pub fn command_round_trips(node: &Node, cpu: u32) -> Result<Vec<u64>, String> {
    (0..SAMPLES)
        .map(|_| command_round_trip(node, cpu))
        .collect()
}

/// [`SAMPLES`] VM-exit round trips on CPU `cpu`: one-round Compute runs,
/// each checked against its expected answer.
pub fn exit_round_trips(node: &Node, cpu: u32) -> Result<Vec<u64>, String> {
    let vp = node.base_vp + cpu;
    let mut samples = Vec::with_capacity(SAMPLES);
    for run in 0..SAMPLES as u32 {
        let seed = 0x5EED_0000 ^ run;
        let outcome = run_program(node, cpu, Program::Compute, seed, 1)?;
        let expected = guests::expected_compute(seed, 1);
        if outcome.result != Some(expected) {
            return Err(format!(
                "VP {vp} computed {:?} in exit-bench run {run}, expected {expected:#x}",
                outcome.result
            ));
        }
        samples.extend(outcome.io_round_trips);
    }
    Ok(samples)
}

/// Prints the median, the 99th percentile and the count of `samples` as
/// report lines under `[p50, p99, count]`'s keys, and returns the median.
pub fn report_percentiles(keys: [&str; 3], mut samples: Vec<u64>) -> Result<u64, String> {
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
