//! `scenario=guest-edges`: guests at the edges of what RUN_VP must handle,
//! on the first sidecar CPU. Each case is bounded: a guest that would keep
//! the CPU looping is stopped, and the case fails saying so.
//!
//! - Every SVM instruction (VMRUN, VMLOAD, VMSAVE, STGI, CLGI, SKINIT,
//!   INVLPGA): each must raise #UD in the guest, as on a CPU without nested
//!   virtualisation, and the guest reports 7 #UDs and exits.
//! - An interrupt whose delivery an exit interrupts: with ESP outside guest
//!   memory, delivering the injected interrupt pushes onto an unmapped page
//!   (a nested page fault in mid-delivery). The VMM must see the event
//!   pending, and once it points ESP at a real stack, the same interrupt
//!   must reach the guest's handler exactly once.
//! - A spin with interrupts disabled: the STOP ends it.
//! - `cli; hlt` and an injected interrupt: the interrupt must stay pending
//!   (the guest cannot take it), so only the STOP ends the run.
//! - A stop that finds its run over (the VMM gives up on it): the next run
//!   of the VP must run to its end, not come back "stopped" at once.
//! - The segments VMRUN does not switch: the guest must start with the TR
//!   and FS the VMM set (not the host's), and the TR and GS it loads must be
//!   what GET_VP_REGISTERS reads after the exit (VMLOAD and VMSAVE around
//!   each VMRUN; without them the guest ran on the host's TR and its `ltr`
//!   stayed in the host).

// Failures are one-line strings by value: there is no allocator to box them.
#![allow(clippy::result_large_err)]

use core::cell::Cell;

use futures_util::future::join;

use crate::abi::{
    HvRegisterAssoc, HvX64RegisterName as Name, HvX64SegmentRegister, HvX64TableRegister,
};
use crate::main_kernel::client::SidecarCpu;
use crate::main_kernel::clock;
use crate::report;
use crate::vmm::devices::Devices;
use crate::vmm::guests::{
    self, Program, IRQ_COUNTS_GPA, OUTSIDE_GPA, SVM_INSTRUCTIONS, WAKE_VECTOR,
};
use crate::vmm::{self, ExitCounts, VpEnd};
use crate::vocabulary::report_key;

use super::{client_failure, sidecar_cpus, Failure};

/// How long a case that must end by itself may run before it is stopped
/// (and fails): far longer than any of them takes.
const CASE_BOUND_US: u64 = 2_000_000;

/// Runs `program` on `cpu` from `registers`; with `inject_after_us`, injects
/// the wake vector that long after the start; stops the VP after
/// `stop_after_us` unless it ended by itself.
async fn run_bounded(
    cpu: &SidecarCpu,
    devices: &mut Devices,
    registers: &[HvRegisterAssoc],
    inject_after_us: Option<u64>,
    stop_after_us: u64,
) -> Result<VpEnd, Failure> {
    let vp = cpu.vp();
    let mut counts = ExitCounts::default();
    let done = Cell::new(false);
    let run = async {
        let end = vmm::run_vp(cpu, devices, &mut counts, registers).await;
        done.set(true);
        end
    };
    let side = async {
        let mut waited = 0;
        if let Some(delay) = inject_after_us {
            clock::sleep_us(delay).await;
            cpu.inject_interrupt(WAKE_VECTOR);
            waited = delay;
        }
        while !done.get() && waited < stop_after_us {
            clock::sleep_us(1000).await;
            waited += 1000;
        }
        if !done.get() {
            vmm::stop_reliably_unless(cpu, || done.get()).await;
        }
    };
    let (end, _) = join(run, side).await;
    end.map_err(|err| client_failure(vp, "running", err))
}

/// The guest's interrupt counter for `vp`.
fn interrupts_taken(vp: u32) -> u32 {
    u32::from_le_bytes(vmm::read_guest(IRQ_COUNTS_GPA + u64::from(vp) * 4))
}

async fn svm_instructions(cpu: &SidecarCpu) -> Result<(), Failure> {
    let vp = cpu.vp();
    let mut devices = Devices::new(vp);
    let registers = vmm::start_registers(Program::SvmInstructions, vp, 0, 0);
    let end = run_bounded(cpu, &mut devices, &registers, None, CASE_BOUND_US).await?;
    check!(
        end != VpEnd::Stopped,
        "vp {vp}: the SVM instructions kept the VP running until the STOP (no #UD reached the guest)"
    );
    check!(
        end == VpEnd::Exited && devices.reports.result == Some(SVM_INSTRUCTIONS),
        "vp {vp}: the SVM instructions ended with {end:?}, #UDs counted {:?} (expected {SVM_INSTRUCTIONS})",
        devices.reports.result
    );
    info!("guest-edges: vp {vp}: each of the {SVM_INSTRUCTIONS} SVM instructions raised #UD in the guest");
    Ok(())
}

async fn cli_hlt(cpu: &SidecarCpu) -> Result<(), Failure> {
    let vp = cpu.vp();
    let mut devices = Devices::new(vp);
    let registers = vmm::start_registers(Program::CliHlt, vp, 0, 0);
    let end = run_bounded(cpu, &mut devices, &registers, Some(20_000), 100_000).await?;
    check!(
        end == VpEnd::Stopped && devices.reports.irqs.is_none(),
        "vp {vp}: `cli; hlt` woke up: the run ended with {end:?}, the guest reported {:?} interrupts",
        devices.reports.irqs
    );
    check!(
        interrupts_taken(vp) == 0,
        "vp {vp}: `cli; hlt` took {} interrupts with interrupts disabled",
        interrupts_taken(vp)
    );
    // The request stays in the register page for whoever runs the VP with
    // interrupts enabled: this case comes last.
    info!(
        "guest-edges: vp {vp}: an interrupt injected into `cli; hlt` stayed pending until the STOP"
    );
    Ok(())
}

async fn cli_spin(cpu: &SidecarCpu) -> Result<(), Failure> {
    let vp = cpu.vp();
    let mut devices = Devices::new(vp);
    // `start_registers` starts with RFLAGS.IF clear.
    let registers = vmm::start_registers(Program::Spin, vp, 0, 0);
    let end = run_bounded(cpu, &mut devices, &registers, None, 10_000).await?;
    check!(
        end == VpEnd::Stopped,
        "vp {vp}: a spin with interrupts disabled ended with {end:?}"
    );
    Ok(())
}

async fn event_in_flight(cpu: &SidecarCpu) -> Result<(), Failure> {
    let vp = cpu.vp();
    let mut devices = Devices::new(vp);
    let mut registers = vmm::start_registers(Program::EventInFlight, vp, 0, 0);
    let bad_stack = OUTSIDE_GPA + 0x1000;
    let _ = registers.push(HvRegisterAssoc::new(Name::Rsp, bad_stack));
    let end = run_bounded(cpu, &mut devices, &registers, Some(10_000), CASE_BOUND_US).await?;
    let VpEnd::UnmappedAccess { gpa, write: true } = end else {
        fail!("vp {vp}: delivering onto a stack outside the VM ended with {end:?}");
    };
    check!(
        (OUTSIDE_GPA..bad_stack).contains(&gpa),
        "vp {vp}: the delivery faulted at GPA {gpa:#x}, not on the stack below {bad_stack:#x}"
    );
    let pending = cpu
        .get_vp_register_values(&[Name::PendingInterruption])
        .await
        .map_err(|err| client_failure(vp, "reading the pending interruption", err))?;
    let pending = pending.first().map_or(0, |value| value.as_u64());
    let vector = (pending >> 16) & 0xFFFF;
    check!(
        pending & 1 == 1 && vector == u64::from(WAKE_VECTOR),
        "vp {vp}: after the exit in mid-delivery the pending interruption is {pending:#x}, not vector {WAKE_VECTOR:#x}"
    );
    let good_stack = [HvRegisterAssoc::new(Name::Rsp, vmm::stack_top(vp))];
    let end = run_bounded(cpu, &mut devices, &good_stack, None, CASE_BOUND_US).await?;
    check!(
        end == VpEnd::Exited && devices.reports.irqs == Some(1),
        "vp {vp}: with a good stack the interrupt in flight gave {end:?}, the guest counted {:?} interrupts (expected 1)",
        devices.reports.irqs
    );
    info!("guest-edges: vp {vp}: an interrupt whose delivery faulted was pending at the exit and delivered once after");
    Ok(())
}

/// An interrupt requested before the guest enables interrupts with
/// `sti; hlt`: it must wake the HLT, not be taken before it (QEMU 7.2
/// takes the VINTR exit inside the STI shadow; an injection there ran the
/// handler before the HLT, which then waited for ever; docs/vmm.md).
async fn sti_hlt_with_a_request_pending(cpu: &SidecarCpu) -> Result<(), Failure> {
    let vp = cpu.vp();
    let mut devices = Devices::new(vp);
    // The VP enters right at the program's `sti; hlt` (its IDT gate was set
    // by the earlier case) with IF clear and the request already pending:
    // the entry arms a virtual interrupt, and the `sti` is the first
    // instruction the VP runs, as in the demo runs that hung.
    let entry = Program::EventInFlight.entry();
    let image = guests::image();
    let from = (entry - guests::CODE_GPA) as usize;
    let Some(at) = image[from..]
        .windows(3)
        .position(|b| b == [0xFB, 0xF4, 0xFA])
    else {
        fail!("vp {vp}: no `sti; hlt; cli` in the event-in-flight program");
    };
    vmm::write_guest(IRQ_COUNTS_GPA + u64::from(vp) * 4, &[0; 4]);
    let mut registers = vmm::start_registers(Program::EventInFlight, vp, 0, 0);
    // The tables the program's own `lgdt`/`lidt` would have loaded.
    let table = |base: u64, limit: u16| HvX64TableRegister {
        pad: [0; 3],
        limit,
        base,
    };
    let _ = registers.push(HvRegisterAssoc::new(
        Name::Gdtr,
        table(guests::CODE_GPA, 23),
    ));
    let _ = registers.push(HvRegisterAssoc::new(
        Name::Idtr,
        table(guests::IDT_GPA, 0x7FF),
    ));
    let _ = registers.push(HvRegisterAssoc::new(Name::Rip, entry + at as u64));
    cpu.inject_interrupt(WAKE_VECTOR);
    let end = run_bounded(cpu, &mut devices, &registers, None, CASE_BOUND_US).await?;
    check!(
        end == VpEnd::Exited && devices.reports.irqs == Some(1),
        "vp {vp}: an interrupt requested before `sti; hlt` gave {end:?}, the guest counted {:?} \
         interrupts (expected an exit after 1)",
        devices.reports.irqs
    );
    info!("guest-edges: vp {vp}: an interrupt requested before `sti; hlt` woke the HLT");
    Ok(())
}

/// A stop whose run had ended before it took must not stop the next run
/// (it did: the VMM's stop request outlived the run it was for).
async fn stop_after_the_run(cpu: &SidecarCpu) -> Result<(), Failure> {
    let vp = cpu.vp();
    // The run it was for is over: `finished` says so at once.
    vmm::stop_reliably_unless(cpu, || true).await;
    let mut devices = Devices::new(vp);
    let (seed, rounds) = (7, 1000);
    let registers = vmm::start_registers(Program::Compute, vp, seed, rounds);
    let end = run_bounded(cpu, &mut devices, &registers, None, CASE_BOUND_US).await?;
    let expected = guests::expected_compute(seed, rounds);
    check!(
        end == VpEnd::Exited && devices.reports.result == Some(expected),
        "vp {vp}: the run after a stop that found its run over ended with {end:?}, result \
         {:?} (expected an exit with {expected:#x})",
        devices.reports.result
    );
    info!("guest-edges: a stop that found its run over left the next run alone");
    Ok(())
}

/// The guest sees the TR and FS the VMM set, and the VMM reads back the TR
/// and GS the guest loaded.
async fn segments(cpu: &SidecarCpu) -> Result<(), Failure> {
    let vp = cpu.vp();
    let mut devices = Devices::new(vp);
    let mut registers = vmm::start_registers(Program::Segments, vp, 0, 0);
    // FS null, unlike the host's data selector (0x10): the guest must see 0.
    let null = HvX64SegmentRegister {
        base: 0,
        limit: 0,
        selector: 0,
        attributes: 0,
    };
    let _ = registers.push(HvRegisterAssoc::new(Name::Fs, null));
    let end = run_bounded(cpu, &mut devices, &registers, None, CASE_BOUND_US).await?;
    check!(
        end == VpEnd::Exited && devices.reports.result == Some(0),
        "vp {vp}: the guest saw TR:FS {:#x?} (expected 0: the selectors the VMM set, \
         not the host's), ended with {end:?}",
        devices.reports.result
    );
    let [tr, gs] = cpu
        .get_vp_register_values(&[Name::Tr, Name::Gs])
        .await
        .map_err(|err| client_failure(vp, "reading TR and GS", err))?;
    let (tr, gs) = (tr.as_segment(), gs.as_segment());
    check!(
        tr.selector == 0x18 && tr.base == guests::TSS_GPA && gs.selector == 0,
        "vp {vp}: after the exit TR is {:#x} at {:#x} and GS {:#x} (the guest loaded \
         0x18 at {:#x} and 0)",
        tr.selector,
        tr.base,
        gs.selector,
        guests::TSS_GPA
    );
    info!("guest-edges: the guest ran on its own TR and FS, and the TR and GS it loaded came back");
    Ok(())
}

/// The scenario.
pub async fn run() -> Result<(), Failure> {
    let Some(cpu) = sidecar_cpus().next() else {
        fail!("guest-edges needs a sidecar CPU (use --cpus 2 or more)");
    };
    vmm::prepare_memory(sidecar_cpus().map(|c| c.vp()));
    svm_instructions(&cpu).await?;
    event_in_flight(&cpu).await?;
    cli_spin(&cpu).await?;
    cli_hlt(&cpu).await?;
    sti_hlt_with_a_request_pending(&cpu).await?;
    stop_after_the_run(&cpu).await?;
    segments(&cpu).await?;
    report::number(report_key::GUEST_EDGES_CASES, 7);
    Ok(())
}
