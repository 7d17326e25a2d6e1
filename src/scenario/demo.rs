//! `scenario=demo`, the default of `cargo qemu`: a VM with one VP per
//! sidecar CPU, each node's VPs run by the VMM on that node's main-kernel
//! CPU (the BSP for node 0 and for a node whose base VP did not come up,
//! else the node's base VP), all nodes at once.
//!
//! Every VP runs the checksum program over a region only it was given,
//! prints its result through the UART, halts until the VMM injects an
//! interrupt, reads the MMIO device, and exits through the test port; the
//! VMM checks every answer. Then the first sidecar CPU shows the rest:
//! a spinning VP cancelled by STOP (the cancel latency), a guest touching
//! memory outside its VM, a guest triple fault, and a VMCB state VMRUN
//! refuses, after which the CPU still runs a good VP.

// Failures are one-line strings by value: there is no allocator to box them.
#![allow(clippy::result_large_err)]

use super::{client_failure, sidecar_cpus, Failure};
use core::cell::Cell;
use core::fmt::Write as _;
use core::sync::atomic::Ordering;

use futures_util::future::{join, join3};

use crate::abi::{CommandPage, HvRegisterAssoc, HvX64RegisterName as Name, SidecarCommand};
use crate::arch::x86_64::cpu::rdtsc;
use crate::arch::x86_64::time;
use crate::emulation::answers::check_checksum;
use crate::main_kernel::client::{ClientError, SidecarCpu};
use crate::main_kernel::{clock, node};
use crate::report;
use crate::topology::MAX_NODES;
use crate::vmm::devices::{Devices, UART_LINES};
use crate::vmm::guests::{self, Program, OUTSIDE_GPA, WAKE_VECTOR};
use crate::vmm::{self, ExitCounts, VpEnd};
use crate::vocabulary::report_key;

/// Exit counts over all VPs.
static TOTALS: spin::Mutex<ExitCounts> = spin::Mutex::new(ExitCounts {
    io: 0,
    memory: 0,
    other: 0,
});

/// How long one VP's checksum run may take before the demo stops it and
/// fails, naming the VP and where it stood (the whole demo takes seconds
/// under TCG).
const VP_BOUND_US: u64 = 30_000_000;

/// How often the bound's watch looks whether the run ended.
const WATCH_STEP_US: u64 = 100_000;

/// One VP's run of the checksum program, with the interrupt injected once
/// the guest printed its line (and so is about to halt).
async fn checksum_vp(cpu: SidecarCpu) -> Result<(), Failure> {
    let vp = cpu.vp();
    let mut devices = Devices::new(vp);
    let mut counts = ExitCounts::default();
    let registers = vmm::start_registers(Program::Checksum, vp, 0, 0);
    let lines_before = UART_LINES[vp as usize].load(Ordering::Acquire);
    let finished = Cell::new(false);
    let run = async {
        let end = vmm::run_vp(&cpu, &mut devices, &mut counts, &registers).await;
        finished.set(true);
        end
    };
    let inject = async {
        // Wait (without spinning) for the guest's line, then a little more
        // so that it is halted, then inject the wake vector.
        while !finished.get() && UART_LINES[vp as usize].load(Ordering::Acquire) == lines_before {
            clock::sleep_us(500).await;
        }
        clock::sleep_us(1000).await;
        vmm::inject_reliably_unless(&cpu, WAKE_VECTOR, || finished.get()).await;
    };
    // The bound: past it, the VP is stopped (so its state can be read) and
    // the run fails below, saying where the VP stood.
    let timed_out = Cell::new(false);
    let watch = async {
        let mut waited = 0;
        while !finished.get() && waited < VP_BOUND_US {
            clock::sleep_us(WATCH_STEP_US).await;
            waited += WATCH_STEP_US;
        }
        if !finished.get() {
            timed_out.set(true);
            vmm::stop_reliably_unless(&cpu, || finished.get()).await;
        }
    };
    let (end, (), ()) = join3(run, inject, watch).await;
    if timed_out.get() {
        return Err(stuck(&cpu, lines_before).await);
    }
    let end = end.map_err(|err| client_failure(vp, "running the checksum program", err))?;
    let expected = vmm::expected_checksum(vp);
    if let Err(wrong) = check_checksum(vp, end, &devices.reports, expected) {
        fail!("vp {vp}: {wrong}");
    }
    TOTALS.lock().add(&counts);
    Ok(())
}

/// The failure of a VP that outlived [`VP_BOUND_US`] and was stopped: its
/// CPU's status, whether it printed, whether its interrupt request was
/// taken, where the guest stood (RIP, RFLAGS.IF) and how many interrupts
/// its handler counted.
async fn stuck(cpu: &SidecarCpu, lines_before: u32) -> Failure {
    let vp = cpu.vp();
    let printed = UART_LINES[vp as usize].load(Ordering::Acquire) != lines_before;
    let pending = cpu.interrupt_pending();
    let count_gpa = guests::IRQ_COUNTS_GPA + 4 * u64::from(vp);
    let irqs = u32::from_le_bytes(vmm::read_guest::<4>(count_gpa));
    let mut failure = Failure::new();
    let _ =
        write!(
        failure,
        "vp {vp}: the checksum program did not end within {} s and was stopped: CPU status {:?}, \
         {} UART line, interrupt request {}, guest interrupt count {irqs}",
        VP_BOUND_US / 1_000_000,
        cpu.status(),
        if printed { "its" } else { "no" },
        if pending { "still pending" } else { "taken by the CPU" },
    );
    match cpu.get_vp_register_values(&[Name::Rip, Name::Rflags]).await {
        Ok([rip, rflags]) => {
            let _ = write!(
                failure,
                ", RIP {:#x}, RFLAGS {:#x}",
                rip.as_u64(),
                rflags.as_u64()
            );
        }
        Err(err) => {
            let _ = write!(failure, ", registers unreadable ({err})");
        }
    }
    failure
}

/// Stops a spinning VP `rounds` times; returns the STOP-to-completion
/// latencies' median and maximum, in TSC cycles.
/// One spinning VP stopped 3 ms after it started; returns how it
/// ended, the STOP's request IPIs re-sent, and the cycles from the STOP to
/// the end. With `lose_ipi`, the STOP's first request IPI is dropped.
async fn stopped_spin(cpu: &SidecarCpu, lose_ipi: bool) -> Result<(VpEnd, u32, u64), Failure> {
    let vp = cpu.vp();
    let mut devices = Devices::new(vp);
    let mut counts = ExitCounts::default();
    let registers = vmm::start_registers(Program::Spin, vp, 0, 0);
    let stopped_at = Cell::new(0u64);
    let done_at = Cell::new(0u64);
    let run = async {
        let end = vmm::run_vp(cpu, &mut devices, &mut counts, &registers).await;
        done_at.set(rdtsc());
        end
    };
    let stopper = async {
        clock::sleep_us(3000).await;
        stopped_at.set(rdtsc());
        if lose_ipi {
            vmm::stop_reliably_losing_the_first_ipi(cpu).await
        } else {
            vmm::stop_reliably(cpu).await
        }
    };
    let (end, resends) = join(run, stopper).await;
    let end = end.map_err(|err| client_failure(vp, "spinning", err))?;
    Ok((end, resends, done_at.get() - stopped_at.get()))
}

/// Tries of the lost-IPI STOP: a request IPI re-sent for an earlier STOP can
/// still be on its way under QEMU and end the VMRUN by itself, so one try
/// may not need the re-send; a re-send path that does not work fails every
/// try with the client's bound instead.
const LOST_IPI_TRIES: usize = 3;

async fn cancel_latency(cpu: &SidecarCpu, rounds: usize) -> Result<(u64, u64), Failure> {
    let vp = cpu.vp();
    let mut samples = [0u64; 16];
    let rounds = rounds.clamp(1, samples.len());
    for sample in samples.iter_mut().take(rounds) {
        let (end, resends, cycles) = stopped_spin(cpu, false).await?;
        check!(
            end == VpEnd::Stopped,
            "vp {vp}: the spinning VP ended with {end:?}"
        );
        *sample = cycles;
        if resends > 0 {
            info!("vp {vp}: the STOP needed {resends} more request IPIs");
        }
    }
    // A STOP whose first request IPI is dropped on purpose: the re-send
    // must still stop the VP (not a latency sample).
    let mut resends = 0;
    for _ in 0..LOST_IPI_TRIES {
        // Let any request IPI still on its way land first.
        clock::sleep_us(20_000).await;
        let (end, sent, _) = stopped_spin(cpu, true).await?;
        check!(
            end == VpEnd::Stopped,
            "vp {vp}: the VP whose STOP lost its IPI ended with {end:?}"
        );
        resends = sent;
        if sent >= 1 {
            break;
        }
    }
    check!(
        resends >= 1,
        "vp {vp}: a STOP with a lost IPI took without a re-send in {LOST_IPI_TRIES} tries"
    );
    info!("vp {vp}: a STOP whose IPI was lost took after {resends} re-sent IPI(s)");
    report::number(report_key::CANCEL_LOST_IPI_RESENDS, u64::from(resends));
    let taken = &mut samples[..rounds];
    taken.sort_unstable();
    Ok((taken[taken.len() / 2], taken[taken.len() - 1]))
}

/// The error paths, on one CPU.
async fn error_paths(cpu: &SidecarCpu) -> Result<(), Failure> {
    let vp = cpu.vp();
    let mut devices = Devices::new(vp);
    let mut counts = ExitCounts::default();

    let before = vmm::expected_checksum(vp);
    let registers = vmm::start_registers(Program::Outside, vp, 0, 0);
    let end = vmm::run_vp(cpu, &mut devices, &mut counts, &registers)
        .await
        .map_err(|err| client_failure(vp, "reaching outside", err))?;
    check!(
        end == VpEnd::UnmappedAccess {
            gpa: OUTSIDE_GPA,
            write: false
        },
        "vp {vp}: reaching outside the VM ended with {end:?}"
    );
    check!(
        vmm::expected_checksum(vp) == before,
        "vp {vp}: guest memory changed"
    );
    info!("vp {vp}: a read of GPA {OUTSIDE_GPA:#x} outside the VM was a nested page fault");

    let registers = vmm::start_registers(Program::TripleFault, vp, 0, 0);
    let end = vmm::run_vp(cpu, &mut devices, &mut counts, &registers)
        .await
        .map_err(|err| client_failure(vp, "triple faulting", err))?;
    check!(
        end == VpEnd::TripleFault,
        "vp {vp}: the triple fault ended with {end:?}"
    );
    info!("vp {vp}: a guest triple fault was reported as an unrecoverable exception");

    // CR0.NW without CR0.CD is an illegal state: VMRUN must refuse it.
    let mut registers = vmm::start_registers(Program::Checksum, vp, 0, 0);
    let _ = registers.push(HvRegisterAssoc::new(Name::Cr0, 0x2000_0011u64));
    match vmm::run_vp(cpu, &mut devices, &mut counts, &registers).await {
        Err(ClientError::Failed { message, .. }) if message.contains("VMRUN") => {
            info!("vp {vp}: a bad VMCB state was refused: {message}");
        }
        other => fail!("vp {vp}: a bad VMCB state gave {other:?}"),
    }
    bad_mxcsr(cpu).await?;
    let registers = vmm::start_registers(Program::Compute, vp, 12345, 1000);
    let mut devices = Devices::new(vp);
    let end = vmm::run_vp(cpu, &mut devices, &mut counts, &registers)
        .await
        .map_err(|err| client_failure(vp, "computing after the bad state", err))?;
    let expected = crate::vmm::guests::expected_compute(12345, 1000);
    check!(
        end == VpEnd::Exited && devices.reports.result == Some(expected),
        "vp {vp}: after a refused VMRUN, a good VP ended with {end:?}, result {:?}",
        devices.reports.result
    );
    Ok(())
}

/// A RUN_VP whose `cpu_context` holds an MXCSR with reserved bits (which
/// the main kernel writes and FXRSTOR would fault on) must be a command
/// error, not a fault of the sidecar CPU; the MXCSR is then put back.
async fn bad_mxcsr(cpu: &SidecarCpu) -> Result<(), Failure> {
    let vp = cpu.vp();
    let mut good = 0;
    let run_with_bad_mxcsr = |page: &mut CommandPage| {
        good = page.cpu_context.fx_state.mxcsr;
        page.cpu_context.fx_state.mxcsr = good | 0x8000_0000;
        page.command = SidecarCommand::RUN_VP;
        Ok(())
    };
    match cpu.command(run_with_bad_mxcsr, |_| ()).await {
        Err(ClientError::Failed { message, .. }) if message.contains("MXCSR") => {
            info!("vp {vp}: a reserved MXCSR bit was refused: {message}");
        }
        other => fail!("vp {vp}: a reserved MXCSR bit gave {other:?}"),
    }
    let put_back = |page: &mut CommandPage| {
        page.cpu_context.fx_state.mxcsr = good;
        page.command = SidecarCommand::GET_VP_REGISTERS;
        page.set_registers_request(
            SidecarCommand::GET_VP_REGISTERS,
            crate::abi::HvInputVtl::CURRENT_VTL,
            &[HvRegisterAssoc::new(Name::Rip, 0u64)],
        )
        .map_err(|_| ClientError::BadRequest("one register"))
    };
    cpu.command(put_back, |_| ())
        .await
        .map_err(|err| client_failure(vp, "putting MXCSR back", err))
}

/// Runs the checksum program on every CPU of `cpus` at once, in waves as
/// large as `spawner`'s executor has free slots.
async fn checksum_vps<const BYTES: usize>(
    mut cpus: core::iter::Peekable<impl Iterator<Item = SidecarCpu>>,
    spawner: executor::Spawner<BYTES>,
) -> Result<(), Failure> {
    while cpus.peek().is_some() {
        let mut wave: heapless::Vec<_, 64> = heapless::Vec::new();
        while spawner.free_slots() > 1 {
            let Some(cpu) = cpus.next() else { break };
            match spawner.spawn(checksum_vp(cpu)) {
                Ok(handle) => {
                    let _ = wave.push(handle);
                }
                Err(_) => fail!("no task slot for vp {}", cpu.vp()),
            }
        }
        // An empty wave would loop here for ever without yielding.
        if wave.is_empty() {
            fail!(
                "no free task slot for vp {}'s VMM task",
                cpus.peek().map_or(0, SidecarCpu::vp)
            );
        }
        for handle in wave {
            match handle.await {
                executor::Completion::Finished(result) => result?,
                executor::Completion::Cancelled => fail!("a VP task was cancelled"),
            }
        }
    }
    Ok(())
}

/// The sidecar CPUs of `node`.
fn cpus_of(node: u32) -> impl Iterator<Item = SidecarCpu> {
    sidecar_cpus().filter(move |cpu| node_of(cpu) == node)
}

fn node_of(cpu: &SidecarCpu) -> u32 {
    crate::plan::get().topology.cpus[cpu.vp() as usize].node
}

/// Per node: its base VP ran all its VPs (or failed; see [`NODE_FAILURE`]).
static NODE_DONE: [node::Done; MAX_NODES] = [const { node::Done::new() }; MAX_NODES];

/// The first failure of a node run on its base VP.
static NODE_FAILURE: spin::Mutex<Option<Failure>> = spin::Mutex::new(None);

fn node_failed(failure: Failure) {
    NODE_FAILURE.lock().get_or_insert(failure);
}

/// The node's share of the demo, on its base VP.
fn node_job(node: u32, spawner: node::NodeSpawner) {
    async fn all_vps(node: u32, spawner: node::NodeSpawner) {
        if let Err(failure) = checksum_vps(cpus_of(node).peekable(), spawner).await {
            node_failed(failure);
        }
        NODE_DONE[node as usize].set();
    }
    if spawner.spawn(all_vps(node, spawner)).is_err() {
        let mut failure = Failure::new();
        let _ = core::fmt::Write::write_fmt(
            &mut failure,
            format_args!("node {node}: no task slot on its base VP"),
        );
        node_failed(failure);
        NODE_DONE[node as usize].set();
    }
}

/// Every VP at once: each node served by its base VP runs its own there,
/// the BSP runs the rest; then the BSP waits for the nodes.
async fn all_checksum_vps(spawner: crate::main_kernel::MainSpawner) -> Result<(), Failure> {
    let mut posted = crate::topology::CpuSet::new();
    for node in &crate::plan::get().topology.nodes {
        NODE_DONE[node.index as usize].reset();
        if node::post(node.index, node_job) {
            posted.insert(node.index as usize);
        }
    }
    let on_bsp = sidecar_cpus().filter(|cpu| !posted.contains(node_of(cpu) as usize));
    let bsp_result = checksum_vps(on_bsp.peekable(), spawner).await;
    for node in posted.iter() {
        NODE_DONE[node].wait().await;
    }
    bsp_result?;
    match NODE_FAILURE.lock().take() {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// The scenario.
pub async fn run(spawner: crate::main_kernel::MainSpawner) -> Result<(), Failure> {
    let count = sidecar_cpus().count();
    check!(
        count > 0,
        "the demo needs a sidecar CPU (use --cpus 2 or more)"
    );
    vmm::prepare_memory(sidecar_cpus().map(|c| c.vp()));

    all_checksum_vps(spawner).await?;
    info!("demo: {count} VPs computed, printed, took an interrupt and read the MMIO device");

    let first = sidecar_cpus().next().expect("counted above");
    let (cancel_p50, cancel_max) = cancel_latency(&first, 11).await?;
    error_paths(&first).await?;

    let totals = *TOTALS.lock();
    report::number(report_key::VPS, count as u64);
    report::number(report_key::EXITS_IO, u64::from(totals.io));
    report::number(report_key::EXITS_MEMORY, u64::from(totals.memory));
    report::number(report_key::EXITS_OTHER, u64::from(totals.other));
    report::number(report_key::CANCEL_LATENCY_CYCLES_P50, cancel_p50);
    report::number(report_key::CANCEL_LATENCY_CYCLES_MAX, cancel_max);
    let mut round_trips = vmm::IO_ROUND_TRIPS.lock();
    if !round_trips.is_empty() {
        round_trips.sort_unstable();
        let n = round_trips.len();
        let p50 = u64::from(round_trips[n / 2]);
        report::number(report_key::VMRUN_ROUNDTRIP_CYCLES_P50, p50);
        report::number(
            report_key::VMRUN_ROUNDTRIP_CYCLES_P99,
            u64::from(round_trips[n * 99 / 100]),
        );
        report::number(report_key::VMRUN_ROUNDTRIP_CYCLES_SAMPLES, n as u64);
        info!(
            "demo: I/O exit round trip p50 {} us over {n} exits",
            time::ticks_to_us(p50)
        );
    }
    info!(
        "demo: cancel latency p50 {} us, max {} us",
        time::ticks_to_us(cancel_p50),
        time::ticks_to_us(cancel_max)
    );
    Ok(())
}
