//! `scenario=convert`: every VP runs a long computation; mid-run the VMM
//! converts half of the sidecar CPUs into main kernel CPUs, which resume
//! their VPs themselves; every VP must finish with the right result, and
//! the converted CPUs then do main kernel work.
//!
//! The converted CPUs cover the three cases: a VP that was running (most),
//! a VP that was halted waiting for an interrupt (the third sidecar CPU,
//! with 3 or more), and a CPU that was idle (the fifth, with 5 or more).
//! Then the error cases: converting the BSP, an unknown CPU, or a CPU
//! already converted, and sending a converted CPU a command.

// Failures are one-line strings by value: there is no allocator to box them.
#![allow(clippy::result_large_err)]

use super::{client_failure, sidecar_cpus, Failure};
use core::cell::Cell;
use core::sync::atomic::Ordering;

use futures_util::future::join;

use crate::arch::x86_64::vectors::REQUEST_VECTOR;
use crate::arch::x86_64::{apic, cpu::rdtsc, time};
use crate::main_kernel::client::{ClientError, SidecarCpu};
use crate::main_kernel::convert::{self, Job, Outcome, OUTCOMES, REPORTS, WORK};
use crate::main_kernel::{clock, MainSpawner};
use crate::plan;
use crate::report;
use crate::vmm::devices::{mmio_value, Devices, Reports, UART_LINES};
use crate::vmm::guests::{expected_compute, Program};
use crate::vmm::{self, ExitCounts, VpEnd};
use crate::vocabulary::report_key;

/// Rounds of the computation: long enough to still run when the VMM
/// converts its CPU.
const ROUNDS: u32 = 30_000_000;
/// How long the VPs run before the conversions.
const CONVERT_AFTER_US: u64 = 10_000;
/// How long a converted CPU may take to finish its job.
const JOB_TIMEOUT_US: u64 = 30_000_000;
/// The answer of the converted CPUs' main kernel work.
const PRIMES_BELOW_10000: u64 = 5_736_396;

fn seed(vp: u32) -> u32 {
    vp.wrapping_mul(0x9E37_79B9) | 1
}

/// What each CPU of the scenario does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// Computes to the end on its sidecar CPU.
    Stay,
    /// Converted while its VP computes.
    Running,
    /// Converted while its VP halts.
    Halted,
    /// Converted while idle.
    Idle,
}

fn case(position: usize) -> Case {
    match position {
        p if p % 2 == 1 => Case::Stay,
        2 => Case::Halted,
        4 => Case::Idle,
        _ => Case::Running,
    }
}

/// Waits for the converted CPU `vp` to report its job done.
async fn converted_outcome(vp: u32) -> Result<(), Failure> {
    let start = rdtsc();
    loop {
        match OUTCOMES[vp as usize].load(Ordering::Acquire) {
            0 if time::ticks_to_us(rdtsc() - start) > JOB_TIMEOUT_US => {
                fail!("vp {vp}: the converted CPU did not finish its job")
            }
            0 => clock::sleep_us(1000).await,
            o if o == Outcome::Done as u32 => break,
            _ => fail!("vp {vp}: the resumed VP failed on the converted CPU"),
        }
    }
    let work = WORK[vp as usize].load(Ordering::Relaxed);
    check!(
        work == PRIMES_BELOW_10000,
        "vp {vp}: main kernel work gave {work}"
    );
    check_stack(vp)
}

/// The converted CPU `vp` never reached the bottom of its stack.
fn check_stack(vp: u32) -> Result<(), Failure> {
    check!(
        convert::stack_canary_intact(vp),
        "vp {vp}: the converted CPU's stack reached its lowest 512 bytes (it has no guard page)"
    );
    Ok(())
}

/// Sends the converted CPU `vp` a request IPI, as a driver that had not seen
/// REMOVED yet would, and gives it time to take it: the CPU must drop it
/// (before the fix its handler looked for the sidecar window, which a
/// converted CPU lacks, and the machine reset).
async fn stray_request_ipi(vp: u32) {
    let apic_id = plan::get().topology.cpus[vp as usize].apic_id;
    apic::send_ipi(apic_id, REQUEST_VECTOR);
    clock::sleep_us(20_000).await;
}

/// Runs `program` on `cpu` and stops it once `ready` says so; returns how
/// the run ended and what the guest reported before it.
async fn run_then_stop(
    cpu: &SidecarCpu,
    program: Program,
    ready: impl Fn() -> bool,
) -> Result<(VpEnd, Reports), Failure> {
    let vp = cpu.vp();
    let mut devices = Devices::new(vp);
    let mut counts = ExitCounts::default();
    let registers = vmm::start_registers(program, vp, seed(vp), ROUNDS);
    let done = Cell::new(false);
    let run = async {
        let end = vmm::run_vp(cpu, &mut devices, &mut counts, &registers).await;
        done.set(true);
        end
    };
    let stopper = async {
        while !done.get() && !ready() {
            clock::sleep_us(1000).await;
        }
        if !done.get() {
            vmm::stop_reliably_unless(cpu, || done.get()).await;
        }
    };
    let (end, ()) = join(run, stopper).await;
    let end = end.map_err(|err| client_failure(vp, "running", err))?;
    Ok((end, devices.reports))
}

/// What the guest reported over its whole life: before its conversion, to
/// the VMM through the protocol, and after it, to the converted CPU's local
/// VMM (a result written just before the STOP landed went to the first).
fn merged(before: Reports, vp: u32) -> Reports {
    let after = REPORTS[vp as usize].lock().unwrap_or_default();
    Reports {
        result: after.result.or(before.result),
        irqs: after.irqs.or(before.irqs),
        mmio: after.mmio.or(before.mmio),
        exited: after.exited,
    }
}

async fn cpu_task(cpu: SidecarCpu, position: usize) -> Result<(), Failure> {
    let vp = cpu.vp();
    let started = rdtsc();
    let after = move || time::ticks_to_us(rdtsc() - started) >= CONVERT_AFTER_US;
    match case(position) {
        Case::Stay => {
            let mut devices = Devices::new(vp);
            let mut counts = ExitCounts::default();
            let registers = vmm::start_registers(Program::Compute, vp, seed(vp), ROUNDS);
            let end = vmm::run_vp(&cpu, &mut devices, &mut counts, &registers)
                .await
                .map_err(|err| client_failure(vp, "computing", err))?;
            let expected = expected_compute(seed(vp), ROUNDS);
            check!(
                end == VpEnd::Exited && devices.reports.result == Some(expected),
                "vp {vp}: computed {:?} ({end:?}), expected {expected:#x}",
                devices.reports.result
            );
        }
        Case::Running => {
            let (end, before) = run_then_stop(&cpu, Program::Compute, after).await?;
            check!(
                end == VpEnd::Stopped,
                "vp {vp}: finished ({end:?}) before its conversion"
            );
            convert::convert(&cpu, Job::ContinueVp)
                .await
                .map_err(|err| client_failure(vp, "converting", err))?;
            converted_outcome(vp).await?;
            let reports = merged(before, vp);
            let expected = expected_compute(seed(vp), ROUNDS);
            check!(
                reports.result == Some(expected),
                "vp {vp}: after its conversion computed {:?}, expected {expected:#x}",
                reports.result
            );
        }
        Case::Halted => {
            let lines = UART_LINES[vp as usize].load(Ordering::Acquire);
            let printed = move || UART_LINES[vp as usize].load(Ordering::Acquire) > lines;
            let (end, before) = run_then_stop(&cpu, Program::Checksum, printed).await?;
            check!(
                end == VpEnd::Stopped,
                "vp {vp}: the halting VP ended with {end:?}"
            );
            convert::convert(&cpu, Job::ContinueVp)
                .await
                .map_err(|err| client_failure(vp, "converting while halted", err))?;
            converted_outcome(vp).await?;
            let reports = merged(before, vp);
            check!(
                reports.irqs == Some(1) && reports.mmio == Some(mmio_value(vp)),
                "vp {vp}: resumed from its halt, it reported {reports:?}"
            );
        }
        Case::Idle => {
            convert::convert(&cpu, Job::Idle)
                .await
                .map_err(|err| client_failure(vp, "converting while idle", err))?;
            converted_outcome(vp).await?;
            stray_request_ipi(vp).await;
            check_stack(vp)?;
        }
    }
    Ok(())
}

fn latencies() -> (u64, u64, usize) {
    let mut samples: heapless::Vec<u64, { crate::MAX_CPUS }> = heapless::Vec::new();
    for vp in 0..plan::get().topology.cpus.len() {
        let removed = convert::REMOVE_TSC[vp].load(Ordering::Relaxed);
        let running = convert::RUNNING_TSC[vp].load(Ordering::Relaxed);
        if removed != 0 && running > removed {
            let _ = samples.push(running - removed);
        }
    }
    samples.sort_unstable();
    let n = samples.len();
    if n == 0 {
        return (0, 0, 0);
    }
    (samples[n / 2], samples[n - 1], n)
}

async fn error_cases(converted: Option<u32>) -> Result<(), Failure> {
    check!(
        SidecarCpu::new(0).err() == Some(ClientError::NotSidecar(0)),
        "the BSP must not be convertible"
    );
    check!(
        SidecarCpu::new(999).err() == Some(ClientError::UnknownCpu(999)),
        "an unknown CPU must not be convertible"
    );
    if let Some(vp) = converted {
        check!(
            SidecarCpu::new(vp).err() == Some(ClientError::NotSidecar(vp)),
            "vp {vp}: a converted CPU must refuse commands and a second conversion"
        );
    }
    Ok(())
}

/// The scenario.
pub async fn run(spawner: MainSpawner) -> Result<(), Failure> {
    let count = sidecar_cpus().count();
    check!(
        count > 0,
        "the convert scenario needs a sidecar CPU (use --cpus 2 or more)"
    );
    vmm::prepare_memory(sidecar_cpus().map(|c| c.vp()));
    let first = sidecar_cpus().next().map(|c| c.vp());
    let mut wave: heapless::Vec<_, 32> = heapless::Vec::new();
    for (position, cpu) in sidecar_cpus().enumerate() {
        if spawner.free_slots() <= 1 {
            fail!("more sidecar CPUs than VMM task slots: use at most 20 CPUs");
        }
        match spawner.spawn(cpu_task(cpu, position)) {
            Ok(handle) => {
                let _ = wave.push(handle);
            }
            Err(_) => fail!("no task slot for vp {}", cpu.vp()),
        }
    }
    for handle in wave {
        match handle.await {
            executor::Completion::Finished(result) => result?,
            executor::Completion::Cancelled => fail!("a VP task was cancelled"),
        }
    }
    error_cases(first).await?;
    let (p50, max, converted) = latencies();
    info!(
        "convert: {converted} CPUs converted, REMOVE to main kernel code p50 {} us, max {} us",
        time::ticks_to_us(p50),
        time::ticks_to_us(max)
    );
    report::number(report_key::CONVERT_CONVERTED, converted as u64);
    report::number(report_key::CONVERT_VPS, count as u64);
    report::number(report_key::CONVERT_LATENCY_CYCLES_P50, p50);
    report::number(report_key::CONVERT_LATENCY_CYCLES_MAX, max);
    Ok(())
}
