//! Running a VP with AMD SVM: `loop { VMRUN; handle the exit }`, the loop
//! both sides run.
//!
//! A sidecar CPU runs it for RUN_VP (`runtime::run_vp`, through its window);
//! a CPU converted to the main kernel runs it to carry its VP on
//! (`main_kernel::convert`, through the identity map). It is neutral ground:
//! it imports neither side, and each side hands it the VP's pages as
//! [`VpPages`], whose constructor is where that side proves it owns them.
//!
//! The VP's state lives in the VP-state block of the register page between
//! runs (so GET/SET_VP_REGISTERS and the main kernel see it); a run loads it
//! into the CPU's VMCB, and every exit saves it back before the future can
//! be suspended, so a STOP that drops the future at a poll boundary leaves a
//! consistent VP behind.
//!
//! Every exit either is handled here with a defined result, or ends the run;
//! none re-enters the guest at the same RIP without progress:
//! - INTR and the like (a physical interrupt, such as the request IPI), and
//!   VINTR (the guest can now take an interrupt): yield to the executor, so
//!   a STOP gets its chance to cancel the run, then re-enter;
//! - HLT with interrupts enabled: the VP waits, without spinning, for an
//!   interrupt the VMM requests through the register page (or for a STOP);
//!   then it is injected and the guest resumes after the HLT;
//! - HLT with interrupts disabled (`cli; hlt`): nothing sidecar delivers can
//!   wake it, so the VP stays halted until a STOP; RIP stays on the HLT, so
//!   a later run halts again, as the CPU would;
//! - the SVM instructions (VMRUN, VMLOAD, VMSAVE, STGI, CLGI, SKINIT,
//!   INVLPGA): #UD is injected, as a CPU without nested virtualisation
//!   raises it;
//! - what [`crate::svm::intercept_message`] describes (port I/O, nested page
//!   faults, MSRs, a triple fault) ends the run as an intercept for the VMM;
//! - anything else ends the run with an error naming the exit, as does a
//!   VMRUN the CPU refuses.
//!
//! An interrupt the VMM requests is injected at the next entry at which the
//! guest can take it (RFLAGS.IF set, no interrupt shadow, no other event
//! being injected); until then a virtual interrupt (V_IRQ) with the VINTR
//! intercept asks the CPU for an exit the moment it can.

use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::task::{Context, Poll};

use executor::Spawner;
use x86_64::registers::rflags::RFlags;

use crate::abi::{CommandPage, CpuContextX64};
use crate::arch::x86_64::svm::{self, GuestRegisters};
use crate::svm::exit_code::{
    VMEXIT_CLGI, VMEXIT_HLT, VMEXIT_INVLPGA, VMEXIT_SHUTDOWN, VMEXIT_SKINIT, VMEXIT_STGI,
    VMEXIT_VINTR, VMEXIT_VMLOAD, VMEXIT_VMRUN, VMEXIT_VMSAVE,
};
use crate::svm::vmcb::{EventInjection, EventType, TLB_CONTROL_DO_NOTHING};
use crate::svm::{handled_by_sidecar, intercept_message, ExitCode, Vmcb};
use crate::vp::{RegisterPage, VpState, INTERRUPT_REQUEST_VALID};
use crate::{percpu, plan, MAX_CPUS};

/// Per VP: SVM is on for the CPU that runs it.
static SVM_ON: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Turns SVM on for the running CPU if the CPU model has it.
///
/// # Safety
///
/// `host_save_area` is the physical address of a page that belongs to the
/// running CPU alone, for as long as SVM stays on.
pub unsafe fn enable_svm(host_save_area: u64) {
    if svm::available() {
        // SAFETY: SVM is available, and the caller hands over the host save
        // area for this CPU's use alone.
        unsafe { svm::enable(host_save_area) };
        if let Some(on) = SVM_ON.get(percpu::current_vp() as usize) {
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
    /// The x87/SSE state in `cpu_context` would fault FXRSTOR: MXCSR has
    /// reserved bits set (their value).
    BadMxcsr(u32),
    /// The VP halted with interrupts disabled and the caller handles it (a
    /// main kernel CPU): only a STOP, NMI or INIT would end that halt.
    HaltedForGood,
    /// An exit the loop has no answer for (no intercept message, not handled
    /// here): the run ends rather than re-enter at the same RIP.
    Unhandled(ExitCode),
}

/// The ASID every VP uses (any non-zero value: each CPU has its own TLB,
/// and runs one VP).
const ASID: u32 = 1;

/// The MXCSR bits an FXRSTOR accepts: flags, masks, rounding, FZ and DAZ.
/// QEMU reports the same mask in the FXSAVE image's MXCSR_MASK field; a set
/// bit outside it makes FXRSTOR raise #GP (Intel SDM vol. 1, 11.6.6).
const MXCSR_VALID_BITS: u32 = 0xFFFF;

/// A VP's pages, owned by the running CPU for the value's lifetime: its
/// VMCB, its command page (for `cpu_context` and the intercept message) and
/// its VP-state block, each reached through a short-lived exclusive
/// reference; and the register page's interrupt request, which the main
/// kernel may store at any time, only ever as an atomic.
pub struct VpPages<'a> {
    vmcb: *mut Vmcb,
    vmcb_pa: u64,
    host_save_pa: u64,
    command: *mut CommandPage,
    state: *mut VpState,
    interrupt_request: &'a AtomicU32,
    _owned: PhantomData<&'a mut ()>,
}

impl VpPages<'_> {
    /// The pages at these addresses: `vmcb` virtual (its physical address
    /// is `vmcb_pa`), `command` and `registers` virtual; `host_save_pa` is
    /// the physical address of the running CPU's host save area (the page
    /// `enable_svm` was given).
    ///
    /// # Safety
    ///
    /// For the value's lifetime, the running CPU owns the three pages: the
    /// VMCB is this CPU's, the command page's status is RUN or STOP (or the
    /// CPU left sidecar and the pages are its own), nothing else makes a
    /// reference to them, and each address maps a page-aligned,
    /// initialised page of its type (all three are plain data, valid for
    /// any bytes) for the whole lifetime. Only `interrupt_request` may be
    /// written by another CPU meanwhile, atomically.
    pub unsafe fn new(
        vmcb: u64,
        vmcb_pa: u64,
        host_save_pa: u64,
        command: u64,
        registers: u64,
    ) -> Self {
        let registers = registers as *mut RegisterPage;
        Self {
            vmcb: vmcb as *mut Vmcb,
            vmcb_pa,
            host_save_pa,
            command: command as *mut CommandPage,
            // SAFETY: `registers` maps a register page (caller); taking a
            // field's address makes no reference.
            state: unsafe { &raw mut (*registers).state },
            // SAFETY: as above; the atomic field is shared by design, so a
            // shared reference to it is sound for the lifetime.
            interrupt_request: unsafe { &(*registers).interrupt_request },
            _owned: PhantomData,
        }
    }

    /// The VMCB, the command page and the VP-state block.
    pub fn get(&mut self) -> (&mut Vmcb, &mut CommandPage, &mut VpState) {
        // SAFETY: `new`'s caller made this value the pages' only owner, and
        // `&mut self` makes these the only references for their life.
        unsafe { (&mut *self.vmcb, &mut *self.command, &mut *self.state) }
    }

    /// The register page's interrupt request (shared with the main kernel).
    pub fn interrupt_request(&self) -> &AtomicU32 {
        self.interrupt_request
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
fn load(pages: &mut VpPages) {
    let guest = plan::get().guest;
    let (vmcb, page, state) = pages.get();
    vmcb.init_control(ASID, guest.npt, guest.iopm, guest.msrpm);
    vmcb.load_state(state);
    vmcb.load_context(&page.cpu_context);
}

/// One VMRUN, with the guest's general and x87/SSE registers switched in
/// and out, and the state saved back to the shared pages.
fn enter(pages: &mut VpPages) {
    let (vmcb_pa, host_save_pa) = (pages.vmcb_pa, pages.host_save_pa);
    let (vmcb, page, state) = pages.get();
    let mut guest = to_guest(&page.cpu_context);
    let fx = fx_image(&mut page.cpu_context);
    // SAFETY: SVM and FXSAVE are enabled on this CPU (`enable_svm` ran at
    // start-up with the host save area at `host_save_pa`, and `run` checked
    // it), GIF is clear (`run`), the VMCB is this CPU's (its physical
    // address is `vmcb_pa`), its nested tables map only the guest's memory,
    // the FXSAVE image is 16-byte aligned inside the 16-byte-aligned
    // context, and `run` checked its MXCSR, so FXRSTOR cannot fault.
    unsafe {
        svm::fxrstor(fx);
        svm::enter_guest(vmcb_pa, &mut guest, host_save_pa);
        svm::fxsave(fx);
    }
    vmcb.control.tlb_control = TLB_CONTROL_DO_NOTHING;
    // An injected event was delivered (or came back in EXITINTINFO, which
    // the requeue puts back): either way EVENTINJ must not fire again.
    vmcb.control.event_inj = 0;
    if vmcb.exit_code().0 != VMEXIT_SHUTDOWN {
        // A triple fault ends the VP: nothing it was delivering can be.
        vmcb.requeue_interrupted_event();
    }
    from_guest(&guest, &mut page.cpu_context);
    vmcb.save_context(&mut page.cpu_context);
    vmcb.save_state(state);
}

/// The FXSAVE image inside the context, as the 512 bytes FXSAVE works on.
fn fx_image(context: &mut CpuContextX64) -> &mut [u8; 512] {
    const _: () = assert!(core::mem::size_of::<crate::abi::Fxsave>() == 512);
    let pointer = (&raw mut context.fx_state).cast::<[u8; 512]>();
    // SAFETY: `fx_state` is a 512-byte plain-data field; viewing it as bytes
    // is valid for reads and writes for the borrow's life.
    unsafe { &mut *pointer }
}

/// Whether the guest can take an external interrupt at the next entry:
/// RFLAGS.IF set, no interrupt shadow, and no event already being injected.
fn can_take_interrupt(vmcb: &Vmcb) -> bool {
    let enabled = RFlags::from_bits_retain(vmcb.save.rflags).contains(RFlags::INTERRUPT_FLAG);
    let shadow = vmcb.control.interrupt_shadow.interrupt_shadow();
    let injecting = EventInjection::from_bits(vmcb.control.event_inj).valid();
    enabled && !shadow && !injecting
}

/// Before an entry: injects a requested interrupt if the guest can take it
/// (`true` if it did); otherwise, with a request pending, asks for an exit
/// as soon as the guest can (V_IRQ with the VINTR intercept). Right after a
/// VINTR exit it arms nothing for one entry: QEMU 7.2 takes that exit one
/// instruction early, inside the STI shadow (traced: INTR exit at a
/// guest's `sti`, VINTR exit at the `hlt` after it with the shadow bit
/// clear), and an interrupt injected there runs the guest's handler before
/// its HLT, which then waits for ever. With nothing armed the shadowed
/// instruction runs first (a HLT exits at once, and the interrupt goes in
/// after it); the request waits for the next exit.
fn inject_requested(pages: &mut VpPages, after_vintr: bool) -> bool {
    let request = pages.interrupt_request();
    let pending = request.load(Ordering::Acquire) & INTERRUPT_REQUEST_VALID != 0;
    let (vmcb, _, _) = pages.get();
    let can_take = can_take_interrupt(vmcb);
    let control = &mut vmcb.control;
    if pending && after_vintr {
        control.v_intr.set_v_irq(false);
        control.intercept_misc1.set_vintr(false);
        return false;
    }
    if pending && !can_take {
        control.v_intr.set_v_irq(true);
        control.v_intr.set_v_ign_tpr(true);
        control.intercept_misc1.set_vintr(true);
        return false;
    }
    control.v_intr.set_v_irq(false);
    control.intercept_misc1.set_vintr(false);
    if !pending {
        return false;
    }
    let request = pages.interrupt_request().swap(0, Ordering::Acquire);
    if request & INTERRUPT_REQUEST_VALID == 0 {
        return false;
    }
    let (vmcb, _, _) = pages.get();
    vmcb.control.event_inj = EventInjection::external_interrupt(request as u8).into_bits();
    true
}

/// Whether the exit is one of the SVM instructions, which sidecar's guests
/// get as #UD: they run without nested virtualisation.
fn is_svm_instruction(code: ExitCode) -> bool {
    matches!(
        code.0,
        VMEXIT_VMRUN
            | VMEXIT_VMLOAD
            | VMEXIT_VMSAVE
            | VMEXIT_STGI
            | VMEXIT_CLGI
            | VMEXIT_SKINIT
            | VMEXIT_INVLPGA
    )
}

/// Makes the next entry raise #UD (no error code) at the guest's RIP.
fn inject_invalid_opcode(vmcb: &mut Vmcb) {
    vmcb.control.event_inj = EventInjection::new()
        .with_valid(true)
        .with_event_type(EventType::EXCEPTION)
        .with_vector(6)
        .into_bits();
}

/// Whether the running CPU turned SVM on.
fn svm_on() -> bool {
    SVM_ON
        .get(percpu::current_vp() as usize)
        .is_some_and(|on| on.load(Ordering::Relaxed))
}

/// Runs the VP until an intercept for the main kernel, or until VMRUN
/// refuses the state. With a spawner (a sidecar CPU), a halted VP waits
/// here for an interrupt request; without one (a main kernel CPU, whose VMM
/// is local), the run ends with [`RunEnd::Halted`].
///
/// `stop_requested` says whether the owner wants the run to end (a STOP).
/// It is checked just before each VMRUN with interrupts held, and the run
/// then yields instead of entering, so that the owner's task gets to cancel
/// it: the request IPI of a STOP ends only a VMRUN it finds running, and
/// one taken just before the VMRUN, while the owner's task was not yet
/// waiting for it (the VP's first poll runs inside the owner's), woke no
/// one.
///
/// Cancel safety: the future may be dropped at any `await`, where the VP's
/// state has always just been saved to the pages; a STOP does exactly that.
pub async fn run<const BYTES: usize>(
    pages: &mut VpPages<'_>,
    vp: u32,
    spawner: Option<Spawner<BYTES>>,
    stop_requested: impl Fn() -> bool,
) -> RunEnd {
    if !svm_on() {
        return RunEnd::NoSvm;
    }
    let mxcsr = pages.get().1.cpu_context.fx_state.mxcsr;
    if mxcsr & !MXCSR_VALID_BITS != 0 {
        return RunEnd::BadMxcsr(mxcsr);
    }
    load(pages);
    let interrupt_request = pages.interrupt_request;
    let requested = || interrupt_request.load(Ordering::Acquire) & INTERRUPT_REQUEST_VALID != 0;
    let mut after_vintr = false;
    loop {
        // From here to the VMRUN no interrupt is taken: a request IPI that
        // arrives after the check below stays pending and ends the VMRUN at
        // once. One taken before it ended no VMRUN: without the check, the
        // guest would run on with no exit to come (a STOP never seen while
        // it spins).
        svm::hold_interrupts();
        if stop_requested() {
            // Let the owner's task see the STOP and cancel this run.
            svm::release_interrupts();
            YieldNow(false).await;
            continue;
        }
        // A request that arrived while the VP ran (or before this run) goes
        // in now if the guest can take it.
        inject_requested(pages, after_vintr);
        enter(pages);
        let (vmcb, page, state) = pages.get();
        let code = vmcb.exit_code();
        after_vintr = code.0 == VMEXIT_VINTR;
        if code.is_invalid() {
            // The CPU says only "invalid"; name the check if we know it.
            let reason = vmcb
                .vmrun_problem()
                .unwrap_or("a VMCB consistency check failed");
            return RunEnd::Refused(reason);
        }
        if code.0 == VMEXIT_HLT {
            let enabled =
                RFlags::from_bits_retain(vmcb.save.rflags).contains(RFlags::INTERRUPT_FLAG);
            if !enabled {
                // `cli; hlt`: RIP stays on the HLT (a later run halts
                // again), and only a STOP ends this run.
                vmcb.save_state(state);
                let Some(_) = spawner else {
                    return RunEnd::HaltedForGood;
                };
                core::future::pending::<()>().await;
            }
            // Resume after the HLT once an interrupt is requested; save the
            // advanced RIP first, so that a STOP leaves it in the VP state.
            // An STI shadow covered the HLT, not what follows it.
            vmcb.save.rip += 1;
            vmcb.control.interrupt_shadow.set_interrupt_shadow(false);
            vmcb.save_state(state);
            if requested() {
                continue;
            }
            let Some(spawner) = spawner else {
                return RunEnd::Halted;
            };
            spawner.wait_flag(requested).await;
            continue;
        }
        if handled_by_sidecar(code) {
            YieldNow(false).await;
            continue;
        }
        if is_svm_instruction(code) {
            inject_invalid_opcode(vmcb);
            continue;
        }
        match intercept_message(vmcb, &page.cpu_context, vp) {
            Some(message) => {
                page.intercept_message = message;
                return RunEnd::Intercept;
            }
            None => return RunEnd::Unhandled(code),
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
