//! `scenario=stress`: `commands=N` random operations across every sidecar
//! CPU, from `seed=S`: registers set then read back and checked,
//! translations with known answers (and unmapped ones, which must fail),
//! bad requests (which must fail), short guest runs with checked results,
//! guests stopped at random moments, and interrupts injected at random
//! moments. At the end every operation must have completed exactly once,
//! with the expected outcome, and no CPU may be stuck.
//!
//! Every operation is counted once as issued and once as one of
//! completed, cancelled (a stopped guest), errors_expected or
//! errors_unexpected; an operation that does not finish within a bound
//! counts as lost (and its CPU as stuck).

// Failures are one-line strings by value: there is no allocator to box them.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

use core::cell::Cell;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::{join, select, Either};

use crate::abi::{
    HvRegisterAssoc, HvX64RegisterName as Name, TranslateGvaControlFlagsX64 as Flags,
    TranslateGvaResultCode as Code,
};
use crate::main_kernel::client::{ClientError, SidecarCpu};
use crate::main_kernel::{clock, MainSpawner};
use crate::plan;
use crate::report;
use crate::topology::Role;
use crate::vmm::devices::{mmio_value, Devices};
use crate::vmm::guests::{expected_compute, Program, WAKE_VECTOR};
use crate::vmm::{self, ExitCounts, VpEnd};
use crate::vocabulary::report_key;

use super::protocol::{write_guest_page_tables, GUEST_CR3, MAPPED_GPA, MAPPED_GVA};
use super::rng::Rng;
use super::Failure;

/// How long one operation may take before it counts as lost.
const OPERATION_TIMEOUT_US: u64 = 10_000_000;

/// The tallies.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    issued: u64,
    completed: u64,
    cancelled: u64,
    errors_expected: u64,
    errors_unexpected: u64,
    lost: u64,
}

static TALLY: spin::Mutex<Tally> = spin::Mutex::new(Tally {
    issued: 0,
    completed: 0,
    cancelled: 0,
    errors_expected: 0,
    errors_unexpected: 0,
    lost: 0,
});

/// The first unexpected outcome, for the failure message.
static FIRST_PROBLEM: spin::Mutex<Option<Failure>> = spin::Mutex::new(None);

/// An operation's outcome.
enum Outcome {
    Completed,
    Cancelled,
    ExpectedError,
    Unexpected(Failure),
}

fn unexpected(args: core::fmt::Arguments<'_>) -> Outcome {
    let mut failure = Failure::new();
    let _ = failure.write_fmt(args);
    Outcome::Unexpected(failure)
}

const GPRS: [Name; 8] = [
    Name::Rax,
    Name::Rbx,
    Name::Rdx,
    Name::Rsi,
    Name::Rdi,
    Name::R9,
    Name::R13,
    Name::R15,
];

async fn registers(cpu: &SidecarCpu, rng: &mut Rng) -> Outcome {
    let count = 1 + rng.below(GPRS.len() as u64) as usize;
    let set: heapless::Vec<HvRegisterAssoc, 8> = GPRS[..count]
        .iter()
        .map(|&name| HvRegisterAssoc::new(name, rng.next()))
        .collect();
    if let Err(err) = cpu.set_vp_registers(&set).await {
        return unexpected(format_args!("cpu {}: set: {err}", cpu.vp()));
    }
    let mut get: heapless::Vec<HvRegisterAssoc, 8> = set
        .iter()
        .map(|r| HvRegisterAssoc::new(r.name, 0u64))
        .collect();
    match cpu.get_vp_registers(&mut get).await {
        Ok(()) if set.iter().zip(&get).all(|(r, g)| r.value == g.value) => Outcome::Completed,
        other => unexpected(format_args!(
            "cpu {}: read back {other:?}: {get:?}",
            cpu.vp()
        )),
    }
}

async fn translate(cpu: &SidecarCpu, rng: &mut Rng) -> Outcome {
    let paging = [
        HvRegisterAssoc::new(Name::Cr0, 0x8001_0011u64),
        HvRegisterAssoc::new(Name::Cr3, GUEST_CR3),
        HvRegisterAssoc::new(Name::Cr4, 0x20u64),
        HvRegisterAssoc::new(Name::Efer, 0xD00u64),
    ];
    if let Err(err) = cpu.set_vp_registers(&paging).await {
        return unexpected(format_args!("cpu {}: paging registers: {err}", cpu.vp()));
    }
    if rng.below(3) == 0 {
        let gvn = 0x80_0000 / 4096 + rng.below(1000);
        // A failed walk is a result, not an error; counted with the
        // expected failures all the same.
        return match cpu.translate_gva(gvn, Flags::VALIDATE_READ).await {
            Ok(output)
                if output.translation_result.result.result_code() == Code::PAGE_NOT_PRESENT =>
            {
                Outcome::ExpectedError
            }
            other => unexpected(format_args!(
                "cpu {}: unmapped GVA gave {other:?}",
                cpu.vp()
            )),
        };
    }
    match cpu
        .translate_gva(MAPPED_GVA >> 12, Flags::VALIDATE_READ)
        .await
    {
        Ok(output) if output.gpa_page == MAPPED_GPA >> 12 => Outcome::Completed,
        other => unexpected(format_args!("cpu {}: translation gave {other:?}", cpu.vp())),
    }
}

async fn bad_request(cpu: &SidecarCpu, rng: &mut Rng) -> Outcome {
    let name = Name(0x000F_0000 | rng.below(0xFFFF) as u32);
    match cpu
        .set_vp_registers(&[HvRegisterAssoc::new(name, 1u64)])
        .await
    {
        Err(ClientError::Failed { .. }) => Outcome::ExpectedError,
        other => unexpected(format_args!(
            "cpu {}: bad name {name:?} gave {other:?}",
            cpu.vp()
        )),
    }
}

async fn compute(cpu: &SidecarCpu, rng: &mut Rng) -> Outcome {
    let (seed, rounds) = (rng.next() as u32 | 1, 1 + rng.below(20_000) as u32);
    let mut devices = Devices::new(cpu.vp());
    let mut counts = ExitCounts::default();
    let registers = vmm::start_registers(Program::Compute, cpu.vp(), seed, rounds);
    match vmm::run_vp(cpu, &mut devices, &mut counts, &registers).await {
        Ok(VpEnd::Exited) if devices.reports.result == Some(expected_compute(seed, rounds)) => {
            Outcome::Completed
        }
        other => unexpected(format_args!("cpu {}: compute gave {other:?}", cpu.vp())),
    }
}

async fn stopped_spin(cpu: &SidecarCpu, rng: &mut Rng) -> Outcome {
    let delay = rng.below(1000);
    let mut devices = Devices::new(cpu.vp());
    let mut counts = ExitCounts::default();
    let registers = vmm::start_registers(Program::Spin, cpu.vp(), 0, 0);
    let done = Cell::new(false);
    let run = async {
        let end = vmm::run_vp(cpu, &mut devices, &mut counts, &registers).await;
        done.set(true);
        end
    };
    let stop = async {
        clock::sleep_us(delay).await;
        vmm::stop_reliably_unless(cpu, || done.get()).await;
    };
    match join(run, stop).await.0 {
        Ok(VpEnd::Stopped) => Outcome::Cancelled,
        other => unexpected(format_args!(
            "cpu {}: stopped spin gave {other:?}",
            cpu.vp()
        )),
    }
}

async fn injected(cpu: &SidecarCpu, rng: &mut Rng) -> Outcome {
    let delay = rng.below(2000);
    let vp = cpu.vp();
    let mut devices = Devices::new(vp);
    let mut counts = ExitCounts::default();
    let registers = vmm::start_registers(Program::Checksum, vp, 0, 0);
    let done = Cell::new(false);
    let run = async {
        let end = vmm::run_vp(cpu, &mut devices, &mut counts, &registers).await;
        done.set(true);
        end
    };
    // Inject at a random moment; the guest takes it once it halts.
    let inject = async {
        clock::sleep_us(delay).await;
        cpu.inject_interrupt(WAKE_VECTOR);
    };
    let (end, ()) = join(run, inject).await;
    let expected = vmm::expected_checksum(vp);
    match end {
        Ok(VpEnd::Exited)
            if devices.reports.result == Some(expected)
                && devices.reports.mmio == Some(mmio_value(vp)) =>
        {
            Outcome::Completed
        }
        other => unexpected(format_args!("cpu {vp}: injected run gave {other:?}")),
    }
}

/// Picks at and above this run a guest, which needs SVM.
const FIRST_GUEST_PICK: u64 = 72;

async fn operation(cpu: &SidecarCpu, rng: &mut Rng, pick: u64) -> Outcome {
    // Without SVM (QEMU's KVM here) guest runs are left out: their picks
    // fall back on the commands that need no guest (the report says so).
    let pick = if pick >= FIRST_GUEST_PICK && !guests_run() {
        pick % FIRST_GUEST_PICK
    } else {
        pick
    };
    match pick {
        0..40 => registers(cpu, rng).await,
        40..60 => translate(cpu, rng).await,
        60..72 => bad_request(cpu, rng).await,
        72..84 => compute(cpu, rng).await,
        84..92 => stopped_spin(cpu, rng).await,
        _ => injected(cpu, rng).await,
    }
}

fn record(outcome: Option<Outcome>) {
    let mut tally = TALLY.lock();
    match outcome {
        Some(Outcome::Completed) => tally.completed += 1,
        Some(Outcome::Cancelled) => tally.cancelled += 1,
        Some(Outcome::ExpectedError) => tally.errors_expected += 1,
        Some(Outcome::Unexpected(problem)) => {
            tally.errors_unexpected += 1;
            FIRST_PROBLEM.lock().get_or_insert(problem);
        }
        None => tally.lost += 1,
    }
}

/// One VMM task: `operations` operations spread round-robin over its
/// CPUs (every `stride`-th sidecar CPU from `first`).
async fn cpu_task(vps: &'static [u32], first: usize, stride: usize, operations: u64, seed: u64) {
    let mine = || vps.iter().skip(first).step_by(stride);
    let mut rng = Rng::new(seed ^ (first as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut stuck = [false; crate::MAX_CPUS];
    let mut sequence = first as u64;
    for n in 0..operations {
        let count = mine().count().max(1);
        let vp = *mine().nth(n as usize % count).unwrap_or(&0);
        TALLY.lock().issued += 1;
        let Ok(cpu) = SidecarCpu::new(vp) else {
            record(Some(unexpected(format_args!(
                "cpu {vp} is not a sidecar CPU"
            ))));
            continue;
        };
        if stuck[vp as usize] {
            record(None);
            continue;
        }
        let pick = rng.below(100);
        sequence = sequence.wrapping_mul(0x100_0000_01B3) ^ pick;
        let op = core::pin::pin!(operation(&cpu, &mut rng, pick));
        let timeout = core::pin::pin!(clock::sleep_us(OPERATION_TIMEOUT_US));
        match select(op, timeout).await {
            Either::Left((outcome, _)) => record(Some(outcome)),
            Either::Right(_) => {
                record(None);
                warn!("stress: cpu {vp} is stuck");
                stuck[vp as usize] = true;
            }
        }
    }
    SEQUENCE.fetch_xor(sequence, Ordering::Relaxed);
}

/// Whether guest runs are part of the mix: only where the CPUs have SVM.
fn guests_run() -> bool {
    crate::arch::x86_64::svm::available()
}

/// The operations the tasks picked, folded into one number (each task's
/// picks in order, the tasks XORed together): the same seed gives the same
/// number whatever the timing, and another seed another number.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The sidecar CPUs, for the tasks (a static: the task futures must be
/// `'static` and small).
static VPS: spin::Once<heapless::Vec<u32, { crate::MAX_CPUS }>> = spin::Once::new();

/// The scenario.
pub async fn run(spawner: MainSpawner, commands: u32, seed: u64) -> Result<(), Failure> {
    let vps: &'static [u32] = VPS.call_once(|| {
        plan::get()
            .topology
            .cpus
            .iter()
            .filter(|c| c.role == Role::Sidecar)
            .filter(|c| SidecarCpu::new(c.vp).is_ok())
            .map(|c| c.vp)
            .collect()
    });
    if vps.is_empty() {
        return Err(Failure::try_from("no sidecar CPU (use --cpus 2 or more)").unwrap_or_default());
    }
    vmm::prepare_memory(vps.iter().copied());
    write_guest_page_tables();
    let tasks = vps.len().min(spawner.free_slots().saturating_sub(1)).max(1);
    let mut handles: heapless::Vec<_, 32> = heapless::Vec::new();
    let per_task = u64::from(commands) / tasks as u64;
    let extra = u64::from(commands) % tasks as u64;
    for first in 0..tasks {
        let operations = per_task + u64::from((first as u64) < extra);
        if let Ok(handle) = spawner.spawn(cpu_task(vps, first, tasks, operations, seed)) {
            let _ = handles.push(handle);
        }
    }
    for handle in handles {
        let _ = handle.await;
    }
    let tally = *TALLY.lock();
    let accounted =
        tally.completed + tally.cancelled + tally.errors_expected + tally.errors_unexpected;
    report::number(report_key::STRESS_ISSUED, tally.issued);
    report::number(report_key::STRESS_COMPLETED, tally.completed);
    report::number(report_key::STRESS_CANCELLED, tally.cancelled);
    report::number(report_key::STRESS_ERRORS_EXPECTED, tally.errors_expected);
    report::number(
        report_key::STRESS_ERRORS_UNEXPECTED,
        tally.errors_unexpected,
    );
    report::number(
        report_key::STRESS_LOST,
        tally.lost + tally.issued.saturating_sub(accounted + tally.lost),
    );
    report::number(report_key::STRESS_CPUS, vps.len() as u64);
    report::number(
        report_key::STRESS_SEQUENCE,
        SEQUENCE.load(Ordering::Relaxed),
    );
    let guest_runs = if guests_run() {
        "run"
    } else {
        "skipped: the CPUs have no SVM"
    };
    report::string(report_key::STRESS_GUEST_RUNS, format_args!("{guest_runs}"));
    info!(
        "stress: {tally:?} on {} CPUs ({tasks} VMM tasks)",
        vps.len()
    );
    let mut failure = Failure::new();
    if let Some(problem) = FIRST_PROBLEM.lock().clone() {
        let _ = write!(
            failure,
            "{} unexpected outcomes, the first: {problem}",
            tally.errors_unexpected
        );
        return Err(failure);
    }
    if tally.lost > 0 || tally.issued != u64::from(commands) {
        let _ = write!(
            failure,
            "{} operations lost, {} issued of {commands}",
            tally.lost, tally.issued
        );
        return Err(failure);
    }
    Ok(())
}
