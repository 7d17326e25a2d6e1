//! Running the VP (RUN_VP) with AMD SVM: `loop { VMRUN; handle the exit }`.
//!
//! The VP's state lives in the VP-state block of the register page between
//! runs (so GET/SET_VP_REGISTERS and the main kernel see it); a run loads it
//! into the CPU's VMCB, and every exit saves it back before the future can
//! be suspended, so a STOP that drops the future at a poll boundary leaves a
//! consistent VP behind.
//!
//! Exits handled here, on the sidecar CPU:
//! - INTR and the like (a physical interrupt, such as the request IPI):
//!   yield to the executor, so a STOP gets its chance to cancel the run,
//!   then re-enter;
//! - HLT: the VP waits, without spinning, for an interrupt the VMM requests
//!   through the register page (or for a STOP); then it is injected.
//!
//! Everything else that [`crate::svm::intercept_message`] describes (port
//! I/O, nested page faults, MSRs, a triple fault) goes to the main kernel as
//! an intercept. A VMRUN the CPU refuses is a command error.

use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::Ordering;
use core::task::{Context, Poll};

use executor::Spawner;

use super::cpu::{LocalCpu, SIDECAR_TASK_BYTES};
use crate::abi::{CommandPage, CpuContextX64};
use crate::arch::x86_64::svm::{self, GuestRegisters};
use crate::boot::startup;
use crate::layout::window;
use crate::svm::exit_code::VMEXIT_HLT;
use crate::svm::vmcb::{event, TLB_CONTROL_DO_NOTHING};
use crate::svm::{handled_by_sidecar, intercept_message, Vmcb};
use crate::vp::{RegisterPage, INTERRUPT_REQUEST_VALID};

/// Per VP: SVM is on for the CPU that runs it.
static SVM_ON: [core::sync::atomic::AtomicBool; crate::MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; crate::MAX_CPUS];

/// Turns SVM on for this CPU if the CPU model has it.
pub fn enable_svm(host_save_area: u64) {
    if svm::available() {
        // SAFETY: SVM is available, and the host save area is this CPU's own
        // private page, which nothing else uses.
        unsafe { svm::enable(host_save_area) };
        if let Some(on) = SVM_ON.get(crate::percpu::current_vp() as usize) {
            on.store(true, Ordering::Relaxed);
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// An intercept for the main kernel; its message is in the command page.
    Intercept,
    /// VMRUN refused the guest state (VMEXIT_INVALID), for this reason.
    Refused(&'static str),
    /// The VP halted and the caller handles it (a main kernel CPU).
    Halted,
    /// This CPU has no SVM: no VP can run here.
    NoSvm,
}

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// The ASID every sidecar VP uses (any non-zero value: each CPU has its own
/// TLB, and runs one VP).
const ASID: u32 = 1;

/// The pages a run works on, as raw pointers: each use makes a short-lived
/// reference, never held across an `await`. A sidecar CPU reaches them
/// through its window; a CPU converted to the main kernel through the
/// identity map.
pub struct VpPages {
    vmcb: *mut Vmcb,
    vmcb_pa: u64,
    command: *mut CommandPage,
    registers: *mut RegisterPage,
}

impl VpPages {
    /// A sidecar CPU's own pages, through its window.
    pub fn window(vmcb_pa: u64) -> Self {
        Self {
            vmcb: window::address(window::VMCB) as *mut Vmcb,
            vmcb_pa,
            command: window::address(window::COMMAND_PAGE) as *mut CommandPage,
            registers: window::address(window::REGISTER_PAGE) as *mut RegisterPage,
        }
    }

    /// The pages at these physical addresses, through the identity map (a
    /// main kernel CPU).
    pub fn physical(vmcb: u64, command: u64, registers: u64) -> Self {
        Self {
            vmcb: vmcb as *mut Vmcb,
            vmcb_pa: vmcb,
            command: command as *mut CommandPage,
            registers: registers as *mut RegisterPage,
        }
    }

    /// The VMCB, the command page and the register page.
    ///
    /// # Safety
    ///
    /// Only while this CPU owns its command page (status RUN or STOP), with
    /// no other reference to these pages alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> (&mut Vmcb, &mut CommandPage, &mut RegisterPage) {
        // SAFETY: the window maps this CPU's VMCB, command and register pages
        // at these addresses (page aligned, zero-initialized by the BSP,
        // valid for these plain-data types); the caller guarantees exclusive
        // use for the reference's life.
        unsafe { (&mut *self.vmcb, &mut *self.command, &mut *self.registers) }
    }
}

fn to_guest(context: &CpuContextX64) -> GuestRegisters {
    let g = &context.gps;
    GuestRegisters {
        rbx: g[CpuContextX64::RBX],
        rcx: g[CpuContextX64::RCX],
        rdx: g[CpuContextX64::RDX],
        rsi: g[CpuContextX64::RSI],
        rdi: g[CpuContextX64::RDI],
        rbp: g[CpuContextX64::RBP],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
    }
}

fn from_guest(registers: &GuestRegisters, context: &mut CpuContextX64) {
    let g = &mut context.gps;
    g[CpuContextX64::RBX] = registers.rbx;
    g[CpuContextX64::RCX] = registers.rcx;
    g[CpuContextX64::RDX] = registers.rdx;
    g[CpuContextX64::RSI] = registers.rsi;
    g[CpuContextX64::RDI] = registers.rdi;
    g[CpuContextX64::RBP] = registers.rbp;
    let high = [
        registers.r8,
        registers.r9,
        registers.r10,
        registers.r11,
        registers.r12,
        registers.r13,
        registers.r14,
        registers.r15,
    ];
    g[8..16].copy_from_slice(&high);
}

/// Prepares the VMCB from the VP-state block and `cpu_context`.
fn load(pages: &VpPages) {
    let guest = startup::plan().guest;
    // SAFETY: called from RUN_VP, while this CPU owns its pages.
    let (vmcb, page, registers) = unsafe { pages.get() };
    vmcb.init_control(ASID, guest.npt, guest.iopm, guest.msrpm);
    vmcb.load_state(&registers.state);
    vmcb.load_context(&page.cpu_context);
}

/// One VMRUN, with the guest's general and x87/SSE registers switched in
/// and out, and the state saved back to the shared pages.
fn enter(pages: &VpPages) {
    // SAFETY: called from RUN_VP, while this CPU owns its pages.
    let (vmcb, page, registers) = unsafe { pages.get() };
    let mut guest = to_guest(&page.cpu_context);
    let fx = fx_image(&mut page.cpu_context);
    // SAFETY: SVM and FXSAVE are enabled on this CPU (`enable_svm` ran at
    // start-up), the VMCB is this CPU's (its physical address is
    // `pages.vmcb_pa`), its nested tables map only the guest's memory, and the
    // FXSAVE image is 16-byte aligned inside the 16-byte-aligned context.
    unsafe {
        svm::fxrstor(fx);
        svm::enter_guest(pages.vmcb_pa, &mut guest);
        svm::fxsave(fx);
    }
    vmcb.control.tlb_control = TLB_CONTROL_DO_NOTHING;
    // An injected event was delivered (or came back in EXITINTINFO, which
    // the requeue puts back): either way EVENTINJ must not fire again.
    vmcb.control.event_inj = 0;
    if vmcb.exit_code().0 != crate::svm::exit_code::VMEXIT_SHUTDOWN {
        // A triple fault ends the VP: nothing it was delivering can be.
        vmcb.requeue_interrupted_event();
    }
    from_guest(&guest, &mut page.cpu_context);
    vmcb.save_context(&mut page.cpu_context);
    vmcb.save_state(&mut registers.state);
}

/// The FXSAVE image inside the context, as the 512 bytes FXSAVE works on.
fn fx_image(context: &mut CpuContextX64) -> &mut [u8; 512] {
    const _: () = assert!(core::mem::size_of::<crate::abi::Fxsave>() == 512);
    let pointer = (&raw mut context.fx_state).cast::<[u8; 512]>();
    // SAFETY: `fx_state` is a 512-byte plain-data field; viewing it as bytes
    // is valid for reads and writes for the borrow's life.
    unsafe { &mut *pointer }
}

/// Injects a requested interrupt if there is one; `false` if none was
/// pending.
fn inject_requested(pages: &VpPages) -> bool {
    // SAFETY: called from RUN_VP, while this CPU owns its pages.
    let (vmcb, _, registers) = unsafe { pages.get() };
    let request = registers.interrupt_request.swap(0, Ordering::Acquire);
    if request & INTERRUPT_REQUEST_VALID == 0 {
        return false;
    }
    vmcb.control.event_inj = event::VALID | event::TYPE_INTR | u64::from(request as u8);
    true
}

/// Whether the main kernel asked for an interrupt.
fn interrupt_requested(pages: &VpPages) -> bool {
    // SAFETY: only the atomic field is read, which both sides share.
    let registers = unsafe { &*pages.registers };
    registers.interrupt_request.load(Ordering::Acquire) & INTERRUPT_REQUEST_VALID != 0
}

/// Runs the VP until an intercept for the main kernel, or until VMRUN
/// refuses the state. A STOP cancels the future at one of its `await`s,
/// where the VP's state has always just been saved.
pub async fn run_vp(cpu: LocalCpu, spawner: Spawner<SIDECAR_TASK_BYTES>) -> RunEnd {
    run(&VpPages::window(cpu.vmcb), cpu.vp, Some(spawner)).await
}

/// The run loop, on whichever CPU runs the VP. With a spawner, a halted VP
/// waits here for an interrupt request; without one (a main kernel CPU,
/// whose VMM is local), the run ends with [`RunEnd::Halted`].
pub async fn run(pages: &VpPages, vp: u32, spawner: Option<Spawner<SIDECAR_TASK_BYTES>>) -> RunEnd {
    let running_cpu = crate::percpu::current_vp() as usize;
    if !SVM_ON
        .get(running_cpu)
        .is_some_and(|on| on.load(Ordering::Relaxed))
    {
        return RunEnd::NoSvm;
    }
    load(pages);
    // A VP that halted in an earlier run (with interrupts enabled) takes a
    // request that arrived in between at once.
    {
        // SAFETY: as above; the reference ends here.
        let (_, _, registers) = unsafe { pages.get() };
        if registers.state.rflags & RFLAGS_IF != 0 {
            inject_requested(pages);
        }
    }
    loop {
        enter(pages);
        // SAFETY: as above; the reference ends before any `await`.
        let (vmcb, page, registers) = unsafe { pages.get() };
        let code = vmcb.exit_code();
        if code.is_invalid() {
            // The CPU says only "invalid"; name the check if we know it.
            let reason = vmcb
                .vmrun_problem()
                .unwrap_or("a VMCB consistency check failed");
            return RunEnd::Refused(reason);
        }
        if code.0 == VMEXIT_HLT {
            // Resume after the HLT once an interrupt is requested; save the
            // advanced RIP first, so that a STOP leaves it in the VP state.
            vmcb.save.rip += 1;
            vmcb.save_state(&mut registers.state);
            if inject_requested(pages) {
                continue;
            }
            let Some(spawner) = spawner else {
                return RunEnd::Halted;
            };
            spawner.wait_flag(|| interrupt_requested(pages)).await;
            inject_requested(pages);
            continue;
        }
        if handled_by_sidecar(code) {
            YieldNow(false).await;
            continue;
        }
        match intercept_message(vmcb, &page.cpu_context, vp) {
            Some(message) => {
                page.intercept_message = message;
                return RunEnd::Intercept;
            }
            None => continue,
        }
    }
}

/// Returns `Pending` once (waking itself), so the executor runs other
/// tasks, and the dispatch task sees a STOP, before the VP re-enters.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
