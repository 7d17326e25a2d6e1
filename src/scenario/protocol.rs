//! `scenario=protocol`: the main kernel sends every command to every sidecar
//! CPU and checks each result, sends bad commands and checks each error,
//! stops a long command, and measures the command round trip against the
//! plain-loop baseline (sidecar CPU 2).

// Failures are one-line strings by value: there is no allocator to box them.
#![allow(clippy::result_large_err)]

use super::{sidecar_cpus, Failure};
use core::sync::atomic::Ordering;

use futures_util::future::join;

use crate::abi::{
    GetSetVpRegisterRequest, HvInputVtl, HvRegisterAssoc, HvX64RegisterName as Name,
    HvX64SegmentRegister, SidecarCommand, TranslateGvaControlFlagsX64 as Flags,
    TranslateGvaResultCode as Code,
};
use crate::arch::x86_64::cpu::rdtsc;
use crate::main_kernel::client::{ClientError, RunVpExit, SidecarCpu};
use crate::main_kernel::{clock, driver};
use crate::paging::{PRESENT, USER, WRITABLE};
use crate::plan;
use crate::report;
use crate::runtime::this_cpu::SERVICE_CYCLES;
use crate::vocabulary::report_key;

/// Round trips measured per CPU.
const ITERATIONS: usize = 2000;

/// The guest page tables the translation checks use: GVA 0x40_0000 maps to
/// GPA 0x10_0000, user and writable; everything else is unmapped.
pub(super) const GUEST_CR3: u64 = 0x1000;
pub(super) const MAPPED_GVA: u64 = 0x40_0000;
pub(super) const MAPPED_GPA: u64 = 0x10_0000;

pub(super) fn write_guest_page_tables() {
    let guest = plan::get().guest;
    let table = PRESENT | WRITABLE | USER;
    let entries = [
        (0x1000, 0x2000 | table),         // PML4[0] → PDPT
        (0x2000, 0x3000 | table),         // PDPT[0] → PD
        (0x3000 + 2 * 8, 0x4000 | table), // PD[2] (4 MiB) → PT
        (0x4000, MAPPED_GPA | table),     // PT[0] → the page
    ];
    for (gpa, value) in entries {
        let host = (guest.host_base + gpa) as *mut u64;
        // SAFETY: the guest's memory is RAM the BSP allocated and identity
        // maps; no VP runs yet, so nothing else writes these words.
        unsafe { host.write_volatile(value) };
    }
}

async fn check_registers(cpu: &SidecarCpu) -> Result<usize, Failure> {
    let vp = u64::from(cpu.vp());
    let cs = HvX64SegmentRegister {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector: 0x8,
        attributes: 0xA09B,
    };
    let set = [
        HvRegisterAssoc::new(Name::Rip, 0x1000 + vp),
        HvRegisterAssoc::new(Name::Rflags, 0x2u64),
        HvRegisterAssoc::new(Name::Rax, vp * 7),
        HvRegisterAssoc::new(Name::R15, !vp),
        HvRegisterAssoc::new(Name::Rsp, 0x8000 - vp),
        HvRegisterAssoc::new(Name::Cr0, 0x8001_0001u64),
        HvRegisterAssoc::new(Name::Cr3, GUEST_CR3),
        HvRegisterAssoc::new(Name::Cr4, 0x20u64),
        HvRegisterAssoc::new(Name::Efer, 0xD00u64),
        HvRegisterAssoc::new(Name::Cs, cs),
        HvRegisterAssoc::new(Name::Lstar, 0xFFFF_8000_0000_0000 | vp),
    ];
    if let Err(err) = cpu.set_vp_registers(&set).await {
        fail!("set registers on cpu {vp}: {err}");
    }
    // 40 reads of the 11 names: more than one command holds (31), so the
    // client sends it in two.
    let mut get = [HvRegisterAssoc::default(); 40];
    for (slot, register) in get.iter_mut().zip(set.iter().cycle()) {
        *slot = HvRegisterAssoc::new(register.name, 0u64);
    }
    if let Err(err) = cpu.get_vp_registers(&mut get).await {
        fail!("get registers on cpu {vp}: {err}");
    }
    for (register, got) in set.iter().cycle().zip(&get) {
        check!(
            register.value == got.value,
            "cpu {vp}: register {:?} read back {:?}, wrote {:?}",
            register.name,
            got.value,
            register.value
        );
    }
    Ok(2)
}

async fn check_translate(cpu: &SidecarCpu) -> Result<usize, Failure> {
    let vp = cpu.vp();
    match cpu
        .translate_gva(
            MAPPED_GVA >> 12,
            Flags(Flags::VALIDATE_WRITE.0 | Flags::USER_ACCESS.0),
        )
        .await
    {
        Ok(output) => check!(
            output.gpa_page == MAPPED_GPA >> 12
                && output.translation_result.result.result_code() == Code::SUCCESS,
            "cpu {vp}: GVA {MAPPED_GVA:#x} translated to {output:?}"
        ),
        Err(err) => fail!("cpu {vp}: translating {MAPPED_GVA:#x}: {err}"),
    }
    // A walk that fails is a result: its code, and the #PF a supervisor
    // read would raise (error code 0, CR2 the address).
    const UNMAPPED_GVA: u64 = 0x80_0000;
    match cpu
        .translate_gva(UNMAPPED_GVA >> 12, Flags::VALIDATE_READ)
        .await
    {
        Ok(output) => {
            let result = output.translation_result;
            let fault = result.event_info.as_exception();
            check!(
                result.result.result_code() == Code::PAGE_NOT_PRESENT
                    && fault.is_some_and(|f| f.vector() == 14
                        && f.deliver_error_code()
                        && f.error_code() == 0
                        && f.exception_parameter() == UNMAPPED_GVA)
                    && output.gpa_page == 0,
                "cpu {vp}: unmapped GVA {UNMAPPED_GVA:#x} gave {output:?}"
            )
        }
        Err(err) => fail!("cpu {vp}: unmapped GVA {UNMAPPED_GVA:#x} gave {err}, not a result"),
    }
    Ok(2)
}

/// Sends a bad request and expects an error containing `expected`, then a
/// good command, which must work.
async fn expect_error(
    cpu: &SidecarCpu,
    what: &str,
    fill: impl FnOnce(&mut crate::abi::CommandPage),
    expected: &str,
) -> Result<(), Failure> {
    let vp = cpu.vp();
    let result = cpu
        .command(
            |page| {
                fill(page);
                Ok(())
            },
            |_| (),
        )
        .await;
    match result {
        Err(ClientError::Failed { message, .. }) if message.contains(expected) => {}
        other => fail!("cpu {vp}: {what} gave {other:?}, expected an error with '{expected}'"),
    }
    if let Err(err) = cpu.get_vp_register_values(&[Name::Rip]).await {
        fail!("cpu {vp}: a good command after {what} failed: {err}");
    }
    Ok(())
}

async fn check_errors(cpu: &SidecarCpu) -> Result<usize, Failure> {
    let vp = cpu.vp();
    // NONE is no error: OpenHCL's client sends it to see a CPU is alive.
    if let Err(err) = cpu.test().await {
        fail!("cpu {vp}: NONE (the liveness test) gave {err}");
    }
    let rip = [HvRegisterAssoc::new(Name::Rip, 0u64)];
    expect_error(
        cpu,
        "an unknown command",
        |p| p.command = SidecarCommand(77),
        "unknown command 77",
    )
    .await?;
    expect_error(
        cpu,
        "40 registers",
        |p| {
            p.command = SidecarCommand::GET_VP_REGISTERS;
            p.request_mut::<GetSetVpRegisterRequest>().count = 40;
        },
        "40",
    )
    .await?;
    expect_error(
        cpu,
        "an unknown register",
        |p| {
            let bad = [HvRegisterAssoc::new(Name(0xDEAD), 0u64)];
            let _ = p.set_registers_request(
                SidecarCommand::SET_VP_REGISTERS,
                HvInputVtl::CURRENT_VTL,
                &bad,
            );
        },
        "unknown register name 0xdead",
    )
    .await?;
    expect_error(
        cpu,
        "VTL 2",
        |p| {
            let _ = p.set_registers_request(
                SidecarCommand::GET_VP_REGISTERS,
                HvInputVtl::target(2),
                &rip,
            );
        },
        "unsupported target VTL",
    )
    .await?;
    Ok(9)
}

async fn check_stop(cpu: &SidecarCpu) -> Result<usize, Failure> {
    let vp = cpu.vp();
    // A guest that spins until stopped.
    let spin = crate::vmm::start_registers(crate::vmm::guests::Program::Spin, vp, 0, 0);
    if let Err(err) = cpu.set_vp_registers(&spin).await {
        fail!("cpu {vp}: setting up the spinning guest: {err}");
    }
    let stopper = async {
        clock::sleep_us(2000).await;
        let busy = cpu.get_vp_register_values(&[Name::Rip]).await;
        let stopped = cpu.stop();
        (busy, stopped)
    };
    let (run, (busy, stopped)) = join(cpu.run_vp(), stopper).await;
    if !crate::arch::x86_64::svm::available() {
        // No SVM (QEMU's KVM here): an executor CPU's RUN_VP must say so at
        // once; the plain loop (CPU 2) runs no VP and waits for the STOP.
        match &run {
            Err(ClientError::Failed { message, .. }) if message.contains("no SVM") => return Ok(1),
            Ok(RunVpExit::Stopped) if stopped => return Ok(1),
            other => fail!("cpu {vp}: RUN_VP without SVM gave {other:?}"),
        }
    }
    check!(stopped, "cpu {vp}: RUN_VP was not running when stopped");
    check!(
        busy == Err(ClientError::Busy(vp)),
        "cpu {vp}: a second command gave {busy:?}"
    );
    check!(
        run == Ok(RunVpExit::Stopped),
        "cpu {vp}: stopped RUN_VP gave {run:?}"
    );
    Ok(3)
}

fn check_handles() -> Result<usize, Failure> {
    check!(
        SidecarCpu::new(0).err() == Some(ClientError::NotSidecar(0)),
        "the BSP is not a sidecar CPU"
    );
    check!(
        SidecarCpu::new(999).err() == Some(ClientError::UnknownCpu(999)),
        "CPU 999 does not exist"
    );
    Ok(2)
}

/// Round-trip samples: the executor's CPU and the plain loop's, kept out of
/// the task's future (which must fit a task slot).
static SAMPLES: spin::Mutex<[[u64; ITERATIONS]; 4]> = spin::Mutex::new([[0; ITERATIONS]; 4]);

/// One GET_VP_REGISTERS round trip: its cycles end to end, and the cycles
/// the sidecar CPU spent from its request IPI to its completion.
async fn round_trip(cpu: &SidecarCpu) -> Result<(u64, u64), Failure> {
    let start = rdtsc();
    if let Err(err) = cpu.get_vp_register_values(&[Name::Rip]).await {
        fail!("cpu {}: round trip: {err}", cpu.vp());
    }
    let end = rdtsc();
    let service = SERVICE_CYCLES[cpu.vp() as usize].load(Ordering::Relaxed);
    Ok((end - start, service))
}

/// The median and 99th percentile of `samples`, which it sorts.
fn percentiles(samples: &mut [u64]) -> (u64, u64) {
    samples.sort_unstable();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// The fairer baseline: the executor's CPU switches to the plain loop, and
/// the same round trips run again on the same CPU. (Under QEMU a virtual
/// CPU's wake-up latency can differ from its neighbour's by 30 µs for a
/// whole run, whatever loop it runs, which swamps the loops' difference.)
async fn same_cpu_baseline(cpu: &SidecarCpu, executor_p50: u64) -> Result<(), Failure> {
    let switched = cpu
        .command(
            |page| {
                page.command = SidecarCommand(super::runtime_hooks::SWITCH_TO_PLAIN_COMMAND);
                Ok(())
            },
            |_| (),
        )
        .await;
    if let Err(err) = switched {
        fail!("cpu {}: switching to the plain loop: {err}", cpu.vp());
    }
    for i in 0..ITERATIONS {
        let (cycles, _) = round_trip(cpu).await?;
        SAMPLES.lock()[1][i] = cycles;
    }
    let (base50, base99) = percentiles(&mut SAMPLES.lock()[1]);
    let ratio = executor_p50 * 1000 / base50.max(1);
    report::number(
        report_key::PROTOCOL_SAME_CPU_BASELINE_RTT_CYCLES_P50,
        base50,
    );
    report::number(
        report_key::PROTOCOL_SAME_CPU_BASELINE_RTT_CYCLES_P99,
        base99,
    );
    report::json(
        report_key::PROTOCOL_SAME_CPU_RTT_RATIO,
        format_args!("{}.{:03}", ratio / 1000, ratio % 1000),
    );
    info!(
        "plain loop on the executor's cpu {}: p50 {base50} cycles, p99 {base99}; executor/plain {}.{:03}",
        cpu.vp(),
        ratio / 1000,
        ratio % 1000
    );
    Ok(())
}

/// Every IPI the protocol sends: requests, responses, and executor wakes
/// of the BSP from other CPUs.
fn ipi_count() -> u64 {
    driver::REQUESTS_SENT.load(Ordering::Relaxed)
        + driver::RESPONSES_TAKEN.load(Ordering::Relaxed)
        + crate::main_kernel::notifier().sent()
}

/// Measures the executor's CPU and, if there is one, the plain-loop CPU
/// (CPU 2), alternating one round trip on each, in alternating order, so
/// that both see the same host conditions: under QEMU's software emulation
/// a round trip's cost swings with host load far more than the two dispatch
/// loops differ.
async fn benchmark() -> Result<(), Failure> {
    let Some(asynchronous) = sidecar_cpus().find(|c| c.vp() != 2) else {
        return Ok(());
    };
    let plain = sidecar_cpus().find(|c| c.vp() == 2);
    let mut ipis = 0;
    for i in 0..ITERATIONS {
        // Alternate which goes first too: the second of two back-to-back
        // round trips pays for waking a host thread the first one let sleep.
        let plain_first = i % 2 == 1;
        let mut plain_cycles = (0, 0);
        if let (true, Some(plain)) = (plain_first, &plain) {
            plain_cycles = round_trip(plain).await?;
        }
        let before = ipi_count();
        let async_cycles = round_trip(&asynchronous).await?;
        ipis += ipi_count() - before;
        if let (false, Some(plain)) = (plain_first, &plain) {
            plain_cycles = round_trip(plain).await?;
        }
        let mut samples = SAMPLES.lock();
        samples[0][i] = async_cycles.0;
        samples[1][i] = plain_cycles.0;
        samples[2][i] = async_cycles.1;
        samples[3][i] = plain_cycles.1;
    }
    let mut samples = SAMPLES.lock();
    let (service50, _) = percentiles(&mut samples[2]);
    report::number(report_key::PROTOCOL_SERVICE_CYCLES_P50, service50);
    let (p50, p99) = percentiles(&mut samples[0]);
    report::number(report_key::PROTOCOL_ITERATIONS, ITERATIONS as u64);
    report::number(report_key::PROTOCOL_RTT_CYCLES_P50, p50);
    report::number(report_key::PROTOCOL_RTT_CYCLES_P99, p99);
    let per_command_x1000 = ipis * 1000 / ITERATIONS as u64;
    report::json(
        report_key::PROTOCOL_IPIS_PER_COMMAND,
        format_args!(
            "{}.{:03}",
            per_command_x1000 / 1000,
            per_command_x1000 % 1000
        ),
    );
    info!(
        "executor round trip on cpu {}: p50 {p50} cycles, p99 {p99} cycles, {}.{:03} IPIs per command",
        asynchronous.vp(),
        per_command_x1000 / 1000,
        per_command_x1000 % 1000
    );
    if plain.is_some() {
        let (base50, base99) = percentiles(&mut samples[1]);
        report::number(report_key::PROTOCOL_BASELINE_RTT_CYCLES_P50, base50);
        report::number(report_key::PROTOCOL_BASELINE_RTT_CYCLES_P99, base99);
        let ratio = p50 * 1000 / base50.max(1);
        report::json(
            report_key::PROTOCOL_RTT_RATIO,
            format_args!("{}.{:03}", ratio / 1000, ratio % 1000),
        );
        let (base_service50, _) = percentiles(&mut samples[3]);
        report::number(
            report_key::PROTOCOL_BASELINE_SERVICE_CYCLES_P50,
            base_service50,
        );
        let service_ratio = service50 * 1000 / base_service50.max(1);
        report::json(
            report_key::PROTOCOL_SERVICE_RATIO,
            format_args!("{}.{:03}", service_ratio / 1000, service_ratio % 1000),
        );
        info!("plain-loop round trip on cpu 2: p50 {base50} cycles, p99 {base99} cycles");
        info!("sidecar-side service time p50: executor {service50}, plain loop {base_service50} cycles");
    }
    drop(samples);
    same_cpu_baseline(&asynchronous, p50).await?;
    Ok(())
}

/// The scenario.
pub async fn run() -> Result<(), Failure> {
    crate::vmm::prepare_memory(sidecar_cpus().map(|c| c.vp()));
    write_guest_page_tables();
    let count = sidecar_cpus().count();
    check!(
        count > 0,
        "the protocol scenario needs a sidecar CPU (use --cpus 2 or more)"
    );
    let mut checks = check_handles()?;
    for cpu in sidecar_cpus() {
        checks += check_registers(&cpu).await?;
        checks += check_translate(&cpu).await?;
        checks += check_errors(&cpu).await?;
        checks += check_stop(&cpu).await?;
    }
    info!("protocol: {checks} checks passed on {count} sidecar CPUs");
    report::number(report_key::PROTOCOL_CPUS, count as u64);
    report::number(report_key::PROTOCOL_CHECKS, checks as u64);
    benchmark().await
}
