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
use crate::runtime::this_cpu::COMMAND_STAMPS;
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

/// Rounds of [`check_stop_at_once`] per CPU: round `r` sends the STOP `r`
/// microseconds after RUN_VP's request.
const STOP_AT_ONCE_ROUNDS: usize = 40;

/// STOPs sent 0 to 39 µs behind RUN_VP (the request IPI takes about 5 µs
/// here), so that they land anywhere in the VP's start: before the
/// dispatch task takes the command, inside the VP's first poll before its
/// VMRUN, or during a VMRUN. Each must end the run as `Stopped`. (A STOP
/// whose request IPI was taken just before a VMRUN used to leave the guest
/// spinning, and the command timed out.)
async fn check_stop_at_once(cpu: &SidecarCpu) -> Result<usize, Failure> {
    let vp = cpu.vp();
    if !crate::arch::x86_64::svm::available() {
        // Without SVM RUN_VP fails at once on an executor CPU (see above).
        return Ok(0);
    }
    let spin = crate::vmm::start_registers(crate::vmm::guests::Program::Spin, vp, 0, 0);
    for round in 0..STOP_AT_ONCE_ROUNDS {
        if let Err(err) = cpu.set_vp_registers(&spin).await {
            fail!("cpu {vp}: round {round}: setting up the spinning guest: {err}");
        }
        let stop_after = async {
            // A spin, not a sleep: the timer's wake-up is coarser than this.
            let until = rdtsc() + crate::arch::x86_64::time::us_to_ticks(round as u64);
            while rdtsc() < until {
                core::hint::spin_loop();
            }
            cpu.stop()
        };
        let (run, stopped) = join(cpu.run_vp(), stop_after).await;
        check!(
            stopped,
            "cpu {vp}: round {round}: RUN_VP was not running when stopped"
        );
        check!(
            run == Ok(RunVpExit::Stopped),
            "cpu {vp}: round {round}: RUN_VP stopped at once gave {run:?}"
        );
    }
    Ok(STOP_AT_ONCE_ROUNDS)
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

/// Where a round trip's time goes, from its TSC stamps (one clock on every
/// CPU): the client's start, the request IPI's entry on the sidecar CPU, the
/// command's completion there, the response IPI's entry on the BSP, and the
/// client's resumption.
#[derive(Clone, Copy, Debug, Default)]
struct Split {
    /// The whole round trip.
    total: u64,
    /// Client starts the command → the request IPI enters the sidecar CPU
    /// (the client's request, the IPI and the wake of a halted CPU).
    wake: u64,
    /// → the command completes there (the dispatch path: the service time).
    service: u64,
    /// → the response IPI enters the BSP's handler (the wake of the halted
    /// BSP).
    response: u64,
    /// → the client task resumes with the answer (the BSP executor's wake
    /// and poll, the client reading the results).
    resume: u64,
}

/// The segments of a [`Split`], in its order.
const SEGMENTS: usize = 5;

impl Split {
    fn parts(self) -> [u64; SEGMENTS] {
        [
            self.total,
            self.wake,
            self.service,
            self.response,
            self.resume,
        ]
    }
}

/// Which round trips a sample belongs to.
#[derive(Clone, Copy)]
enum Loop {
    /// The executor, on the measured CPU.
    Executor = 0,
    /// The plain loop, on the same CPU.
    Plain = 1,
    /// The plain loop on CPU 2 (which runs it from boot): the cross-CPU
    /// figure.
    OtherCpu = 2,
}

/// The segments kept of [`Loop::OtherCpu`]'s samples (total, wake,
/// response), in [`Split`] order: what shows the host's placement.
const OTHER_CPU_SEGMENTS: [usize; 3] = [0, 1, 3];

/// Round-trip samples, by [`Loop`] and [`Split`] segment, kept out of the
/// task's future (which must fit a task slot). 32 bits each (1.6 s at
/// 2.6 GHz, saturated), and only [`OTHER_CPU_SEGMENTS`] of CPU 2's: the
/// kernel image must end below 4 MiB.
struct Samples {
    same_cpu: [[[u32; ITERATIONS]; SEGMENTS]; 2],
    other_cpu: [[u32; ITERATIONS]; OTHER_CPU_SEGMENTS.len()],
}

static SAMPLES: spin::Mutex<Samples> = spin::Mutex::new(Samples {
    same_cpu: [[[0; ITERATIONS]; SEGMENTS]; 2],
    other_cpu: [[0; ITERATIONS]; OTHER_CPU_SEGMENTS.len()],
});

impl Samples {
    /// `which`'s kept segments, each with its index in [`Split`] order.
    fn of(&mut self, which: Loop) -> impl Iterator<Item = (usize, &mut [u32; ITERATIONS])> {
        let (same, other) = match which {
            Loop::OtherCpu => (None, Some(&mut self.other_cpu)),
            same_cpu => (Some(&mut self.same_cpu[same_cpu as usize]), None),
        };
        let same = same.into_iter().flat_map(|s| s.iter_mut().enumerate());
        let other = other
            .into_iter()
            .flat_map(|o| OTHER_CPU_SEGMENTS.into_iter().zip(o.iter_mut()));
        same.chain(other)
    }
}

/// Records `split` as sample `i` of `which`.
fn record(which: Loop, i: usize, split: Split) {
    let parts = split.parts();
    for (segment, samples) in SAMPLES.lock().of(which) {
        samples[i] = u32::try_from(parts[segment]).unwrap_or(u32::MAX);
    }
}

/// One GET_VP_REGISTERS round trip, split at its stamps.
async fn round_trip(cpu: &SidecarCpu) -> Result<Split, Failure> {
    let start = rdtsc();
    if let Err(err) = cpu.get_vp_register_values(&[Name::Rip]).await {
        fail!("cpu {}: round trip: {err}", cpu.vp());
    }
    let end = rdtsc();
    let stamps = &COMMAND_STAMPS[cpu.vp() as usize];
    let request = stamps.request.load(Ordering::Relaxed);
    let complete = stamps.complete.load(Ordering::Relaxed);
    let response = driver::RESPONSE_TSC.load(Ordering::Relaxed);
    Ok(Split {
        total: end - start,
        wake: request.saturating_sub(start),
        service: complete.saturating_sub(request),
        response: response.saturating_sub(complete),
        resume: end.saturating_sub(response),
    })
}

/// The median and 99th percentile of `samples`, which it sorts.
fn percentiles(samples: &mut [u32]) -> (u64, u64) {
    samples.sort_unstable();
    (
        u64::from(samples[samples.len() / 2]),
        u64::from(samples[samples.len() * 99 / 100]),
    )
}

/// One loop's percentiles: every segment's p50, in [`Split`] order, and
/// the total's p99.
struct Summary {
    p50: [u64; SEGMENTS],
    p99: u64,
}

impl Summary {
    /// Sorts `which`'s samples and takes their percentiles.
    fn of(which: Loop) -> Summary {
        let mut samples = SAMPLES.lock();
        let mut p50 = [0; SEGMENTS];
        let mut p99 = 0;
        for (segment, samples) in samples.of(which) {
            let (fifty, ninety_nine) = percentiles(samples);
            p50[segment] = fifty;
            if segment == 0 {
                p99 = ninety_nine;
            }
        }
        Summary { p50, p99 }
    }

    /// Reports the p50s and the p99 under `keys`: total p50, total p99,
    /// then wake, service, response and resume p50 (`None`: not kept).
    fn report(&self, keys: [Option<&str>; 6]) {
        let [total, wake, service, response, resume] = self.p50;
        let values = [total, self.p99, wake, service, response, resume];
        for (key, value) in keys.into_iter().zip(values) {
            if let Some(key) = key {
                report::number(key, value);
            }
        }
    }

    fn log(&self, what: &str, vp: u32) {
        let [total, wake, service, response, resume] = self.p50;
        info!(
            "{what} on cpu {vp}: round trip p50 {total} cycles, p99 {}; split p50: \
             request→sidecar entry {wake}, service {service}, complete→BSP entry \
             {response}, BSP entry→client {resume}",
            self.p99
        );
    }
}

/// Reports `numerator / denominator` to three decimals under `key`, and
/// returns it in thousandths.
fn report_ratio(key: &str, numerator: u64, denominator: u64) -> u64 {
    let ratio = numerator * 1000 / denominator.max(1);
    report::json(key, format_args!("{}.{:03}", ratio / 1000, ratio % 1000));
    ratio
}

/// Sends one of the protocol hooks' switch commands to `cpu`.
async fn switch(cpu: &SidecarCpu, command: u32) -> Result<(), Failure> {
    let switched = cpu
        .command(
            |page| {
                page.command = SidecarCommand(command);
                Ok(())
            },
            |_| (),
        )
        .await;
    if let Err(err) = switched {
        fail!("cpu {}: switch command {command:#x}: {err}", cpu.vp());
    }
    Ok(())
}

/// Every IPI the protocol sends: requests, responses, and executor wakes
/// of the BSP from other CPUs.
fn ipi_count() -> u64 {
    driver::REQUESTS_SENT.load(Ordering::Relaxed)
        + driver::RESPONSES_TAKEN.load(Ordering::Relaxed)
        + crate::main_kernel::notifier().sent()
}

/// Measures both loops on the same sidecar CPU (CPU 1), alternating one
/// round trip each: the CPU leaves its executor for the plain loop and
/// comes back between them (unmeasured switch commands, one before each
/// measured round trip, so both see the same history). Under QEMU a
/// virtual CPU's wake-up can cost 30 µs more than its neighbour's, in both
/// directions, for as long as the host keeps its thread on the other host
/// core than the BSP's, whatever loop it runs; measured on one CPU,
/// alternately, both loops meet the same placement. CPU 2 runs the plain
/// loop from boot and is measured in the same iterations, for the
/// cross-CPU figure, which shows that placement.
async fn benchmark() -> Result<(), Failure> {
    use super::runtime_hooks::{BACK_TO_EXECUTOR_COMMAND, SWITCH_TO_PLAIN_COMMAND};
    let Some(measured) = sidecar_cpus().find(|c| c.vp() != 2) else {
        return Ok(());
    };
    let other = sidecar_cpus().find(|c| c.vp() == 2);
    let mut ipis = 0;
    for i in 0..ITERATIONS {
        // Alternate where CPU 2's round trip falls: the second of two
        // back-to-back round trips pays for waking a host thread the first
        // one let sleep.
        let other_first = i % 2 == 1;
        if let (true, Some(other)) = (other_first, &other) {
            record(Loop::OtherCpu, i, round_trip(other).await?);
        }
        switch(&measured, SWITCH_TO_PLAIN_COMMAND).await?;
        record(Loop::Plain, i, round_trip(&measured).await?);
        switch(&measured, BACK_TO_EXECUTOR_COMMAND).await?;
        let before = ipi_count();
        record(Loop::Executor, i, round_trip(&measured).await?);
        ipis += ipi_count() - before;
        if let (false, Some(other)) = (other_first, &other) {
            record(Loop::OtherCpu, i, round_trip(other).await?);
        }
    }
    let vp = measured.vp();
    let executor = Summary::of(Loop::Executor);
    let plain = Summary::of(Loop::Plain);
    report::number(report_key::PROTOCOL_ITERATIONS, ITERATIONS as u64);
    executor.report([
        Some(report_key::PROTOCOL_RTT_CYCLES_P50),
        Some(report_key::PROTOCOL_RTT_CYCLES_P99),
        Some(report_key::PROTOCOL_WAKE_CYCLES_P50),
        Some(report_key::PROTOCOL_SERVICE_CYCLES_P50),
        Some(report_key::PROTOCOL_RESPONSE_CYCLES_P50),
        Some(report_key::PROTOCOL_RESUME_CYCLES_P50),
    ]);
    plain.report([
        Some(report_key::PROTOCOL_BASELINE_RTT_CYCLES_P50),
        Some(report_key::PROTOCOL_BASELINE_RTT_CYCLES_P99),
        Some(report_key::PROTOCOL_BASELINE_WAKE_CYCLES_P50),
        Some(report_key::PROTOCOL_BASELINE_SERVICE_CYCLES_P50),
        Some(report_key::PROTOCOL_BASELINE_RESPONSE_CYCLES_P50),
        Some(report_key::PROTOCOL_BASELINE_RESUME_CYCLES_P50),
    ]);
    let ratio = report_ratio(
        report_key::PROTOCOL_RTT_RATIO,
        executor.p50[0],
        plain.p50[0],
    );
    let service_ratio = report_ratio(
        report_key::PROTOCOL_SERVICE_RATIO,
        executor.p50[2],
        plain.p50[2],
    );
    let per_command_x1000 = ipis * 1000 / ITERATIONS as u64;
    report::json(
        report_key::PROTOCOL_IPIS_PER_COMMAND,
        format_args!(
            "{}.{:03}",
            per_command_x1000 / 1000,
            per_command_x1000 % 1000
        ),
    );
    executor.log("executor", vp);
    plain.log("plain loop", vp);
    info!(
        "same cpu: round trip executor/plain {}.{:03}, service {}.{:03}; {}.{:03} IPIs per command",
        ratio / 1000,
        ratio % 1000,
        service_ratio / 1000,
        service_ratio % 1000,
        per_command_x1000 / 1000,
        per_command_x1000 % 1000
    );
    if let Some(other) = &other {
        let cross = Summary::of(Loop::OtherCpu);
        cross.report([
            Some(report_key::PROTOCOL_OTHER_CPU_RTT_CYCLES_P50),
            Some(report_key::PROTOCOL_OTHER_CPU_RTT_CYCLES_P99),
            Some(report_key::PROTOCOL_OTHER_CPU_WAKE_CYCLES_P50),
            None,
            Some(report_key::PROTOCOL_OTHER_CPU_RESPONSE_CYCLES_P50),
            None,
        ]);
        let cross_ratio = report_ratio(
            report_key::PROTOCOL_CROSS_CPU_RTT_RATIO,
            executor.p50[0],
            cross.p50[0],
        );
        let [total, wake, _, response, _] = cross.p50;
        info!(
            "plain loop on cpu {}: round trip p50 {total} cycles, p99 {}; split p50: \
             request→sidecar entry {wake}, complete→BSP entry {response}",
            other.vp(),
            cross.p99
        );
        info!(
            "cross cpu: executor on cpu {vp} / plain loop on cpu {} {}.{:03}",
            other.vp(),
            cross_ratio / 1000,
            cross_ratio % 1000
        );
    }
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
        checks += check_stop_at_once(&cpu).await?;
    }
    info!("protocol: {checks} checks passed on {count} sidecar CPUs");
    report::number(report_key::PROTOCOL_CPUS, count as u64);
    report::number(report_key::PROTOCOL_CHECKS, checks as u64);
    benchmark().await
}
