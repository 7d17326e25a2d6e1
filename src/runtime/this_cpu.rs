//! This sidecar CPU: every page of its window as a typed reference, under
//! one contract, and the handshake with the main kernel.
//!
//! A sidecar CPU reaches its own pages at fixed virtual addresses
//! ([`crate::layout::window`]); this module is the only place that turns
//! those addresses into references. The contract:
//!
//! - **Shared, for the CPU's life**: the node's control page (all atomics),
//!   the globals page ([`CpuGlobals`]: fixed after boot, or atomic, or an
//!   executor made for sharing), and the register page's interrupt request
//!   (an atomic the main kernel stores). [`ThisCpu`] hands these out.
//! - **Exclusive, while the status says so**: the command page, the
//!   VP-state block and the VMCB belong to this CPU only while its status is
//!   RUN or STOP. [`ThisCpu::own_pages`] checks that and hands out at most
//!   one [`OwnedPages`] at a time; [`ThisCpu::complete`], which gives the
//!   pages back to the main kernel, refuses to run while one is alive.
//! - **Once**: the descriptor tables, taken by the CPU's entry code.
//!
//! The fault path is the one exception: it writes the command page's error
//! while code it interrupted may hold an [`OwnedPages`], which is sound only
//! because that code never runs again ([`ThisCpu::fail_command`]).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use executor::Executor;

use super::hooks::RuntimeHooks;
use crate::abi::{CommandPage, ControlPage, CpuStatus};
use crate::arch::x86_64::gdt::CpuTables;
use crate::arch::x86_64::{apic, cpu, svm};
use crate::layout::{window, GUEST_WINDOW_BASE};
use crate::vmrun::VpPages;
use crate::vp::{GuestRam, VpState};
use crate::MAX_CPUS;

/// Task slots of a sidecar CPU's executor: the dispatch task and the
/// command it runs.
pub const SIDECAR_TASKS: usize = 2;
/// Bytes per task slot.
pub const SIDECAR_TASK_BYTES: usize = 512;

/// A sidecar CPU's executor.
pub type SidecarExecutor = Executor<SIDECAR_TASKS, SIDECAR_TASK_BYTES, OwnCpuOnly>;

/// The notifier of a sidecar CPU's executor: it never needs to send
/// anything, and is never called (the CPU's loop, `enter::run`, never
/// announces that it parks). Every wake of a sidecar task happens on the
/// CPU itself, in its tasks or in its request-IPI handler (whose interrupt
/// already ended the halt): the executor and its wakers live in the CPU's
/// window, an address no other CPU maps, so no other CPU can even call
/// them. The main kernel reaches a sidecar CPU only through its status byte
/// and the request IPI.
pub struct OwnCpuOnly;

impl executor::Notifier for OwnCpuOnly {
    fn notify(&self) {}
}

/// Who a sidecar CPU is and where its things are; fixed by the BSP.
#[derive(Clone, Copy, Debug)]
pub struct CpuIdentity {
    /// The VP index.
    pub vp: u32,
    /// The local APIC ID.
    pub apic_id: u32,
    /// The node index.
    pub node: u32,
    /// The CPU's index within its node (its slot in the control page).
    pub node_cpu_index: u32,
    /// Bytes of guest memory in the guest window.
    pub guest_size: u64,
    /// Physical address of the VP's VMCB (mapped at `window::VMCB`).
    pub vmcb: u64,
    /// Physical address of the host save area for VMRUN.
    pub host_save_area: u64,
}

/// A value that hands out one `&'static mut` to itself, once.
pub struct TakeOnce<T> {
    taken: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the only access to `value` is the one `&mut` that `take` hands
// out, once (the atomic swap decides who gets it), so sharing the cell
// between threads shares no access to `T`; `T: Send` lets that one
// `&mut` go to whichever CPU wins.
unsafe impl<T: Send> Sync for TakeOnce<T> {}

impl<T> TakeOnce<T> {
    /// A cell holding `value`, not taken.
    pub const fn new(value: T) -> Self {
        Self {
            taken: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, exclusively, to the first caller; `None` after that.
    #[allow(clippy::mut_from_ref)] // the atomic swap makes the `&mut` unique
    pub fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::Acquire) {
            return None;
        }
        // SAFETY: the swap returned `false` to this caller alone, so no
        // other reference to the value was or will ever be made.
        Some(unsafe { &mut *self.value.get() })
    }
}

/// What a sidecar CPU keeps in its globals page. Its starter writes it before
/// starting the CPU; after that it is only shared (see the module docs).
#[repr(C)]
pub struct CpuGlobals {
    /// Who the CPU is.
    pub identity: CpuIdentity,
    /// The self-test and benchmark hooks the BSP chose.
    pub hooks: &'static dyn RuntimeHooks,
    /// The TSC when the CPU's last request IPI arrived (for the protocol's
    /// service-time figure).
    pub request_tsc: AtomicU64,
    /// An [`OwnedPages`] is alive.
    pages_owned: AtomicBool,
    /// The CPU's GDT and TSS, taken by its entry code.
    pub tables: TakeOnce<CpuTables>,
    /// The CPU's executor (used only by this CPU, and by its IPI handler).
    pub executor: SidecarExecutor,
}

const _: () = assert!(core::mem::size_of::<CpuGlobals>() <= crate::layout::PAGE_SIZE as usize);

impl CpuGlobals {
    /// The globals of a CPU about to start.
    pub fn new(identity: CpuIdentity, hooks: &'static dyn RuntimeHooks) -> Self {
        Self {
            identity,
            hooks,
            request_tsc: AtomicU64::new(0),
            pages_owned: AtomicBool::new(false),
            tables: TakeOnce::new(CpuTables::new()),
            executor: SidecarExecutor::new(OwnCpuOnly),
        }
    }
}

/// A CPU's TSC stamps of its last command: when its request IPI entered it,
/// and when it completed (just before the response IPI).
pub struct CommandStamps {
    /// The request IPI's handler ran.
    pub request: AtomicU64,
    /// The command completed.
    pub complete: AtomicU64,
}

/// Per CPU (by VP index): the stamps of its last command. Kernel data,
/// written by each CPU for itself and read by the protocol benchmark on the
/// BSP, which splits a round trip into its segments with them (the TSC is
/// one clock for every CPU). `complete - request` is the service time: the
/// dispatch path without the host's thread wake-ups that dominate a round
/// trip under software emulation.
pub static COMMAND_STAMPS: [CommandStamps; MAX_CPUS] = [const {
    CommandStamps {
        request: AtomicU64::new(0),
        complete: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// The running sidecar CPU, through its window. Cheap to copy; every copy
/// stands for the same CPU.
#[derive(Clone, Copy)]
pub struct ThisCpu {
    globals: &'static CpuGlobals,
}

impl ThisCpu {
    /// The running CPU.
    ///
    /// # Safety
    ///
    /// Only on a sidecar CPU, whose page tables map its window (the BSP
    /// wrote the globals page before starting it).
    pub unsafe fn get() -> Self {
        let globals = window::address(window::GLOBALS) as *const CpuGlobals;
        // SAFETY: the caller runs on a sidecar CPU, whose globals page is
        // mapped here and was initialised by the BSP before the CPU started;
        // after that the page is only shared (module contract).
        let globals = unsafe { &*globals };
        Self { globals }
    }

    /// Who the CPU is.
    pub fn identity(&self) -> &'static CpuIdentity {
        &self.globals.identity
    }

    /// The whole globals page.
    pub fn globals(&self) -> &'static CpuGlobals {
        self.globals
    }

    /// The node's control page.
    pub fn control(&self) -> &'static ControlPage {
        // SAFETY: the window maps the node's control page here on every
        // sidecar CPU (which `get`'s caller vouched this is); it lives for
        // the whole run and is all atomics.
        unsafe { &*(window::address(window::CONTROL_PAGE) as *const ControlPage) }
    }

    /// This CPU's status byte.
    pub fn status(&self) -> CpuStatus {
        self.control()
            .status(self.identity().node_cpu_index as usize)
            .map_or(CpuStatus::REMOVED, |s| s.load(Ordering::Acquire))
    }

    /// The command page, VP-state block and VMCB, if the status says this
    /// CPU owns them (RUN or STOP) and no other [`OwnedPages`] is alive.
    pub fn own_pages(&self) -> Option<OwnedPages> {
        if !matches!(self.status(), CpuStatus::RUN | CpuStatus::STOP) {
            return None;
        }
        // Only this CPU's own code touches the flag (interrupt handlers never
        // claim pages), so a plain load and store suffice: no locked
        // instruction on the command path.
        let owned = &self.globals.pages_owned;
        if owned.load(Ordering::Relaxed) {
            return None;
        }
        owned.store(true, Ordering::Relaxed);
        Some(OwnedPages {
            owned: &self.globals.pages_owned,
            vmcb_pa: self.identity().vmcb,
            host_save_pa: self.identity().host_save_area,
        })
    }

    /// The guest's memory, through the guest window.
    pub fn guest_ram(&self) -> GuestRam {
        // SAFETY: the shared tables map the guest window to the VM's guest
        // RAM on every sidecar CPU for the whole run, `guest_size` bytes
        // from its base; nothing in the kernel makes references into it.
        unsafe { GuestRam::new(GUEST_WINDOW_BASE, self.identity().guest_size) }
    }

    /// Ends a command: status IDLE (release: the results are visible first),
    /// attention raised, the response IPI sent if the driver asked for one.
    ///
    /// Panics if an [`OwnedPages`] is alive: the main kernel would take the
    /// pages while this CPU still writes them.
    pub fn complete(&self) {
        assert!(
            !self.globals.pages_owned.load(Ordering::Relaxed),
            "a command completed while its pages were still in use"
        );
        if let Some(stamps) = COMMAND_STAMPS.get(self.identity().vp as usize) {
            let request = self.globals.request_tsc.load(Ordering::Relaxed);
            stamps.request.store(request, Ordering::Relaxed);
            stamps.complete.store(cpu::rdtsc(), Ordering::Relaxed);
        }
        self.hand_back(CpuStatus::IDLE);
    }

    /// Leaves sidecar for good (REMOVE): the VP's state is already in the
    /// register page and `cpu_context` (saved after every exit), so the CPU
    /// only stores REMOVED, tells the driver, and parks with interrupts off
    /// until the main kernel's INIT takes it. From the REMOVED store on, it
    /// writes no shared page.
    pub fn leave(&self) -> ! {
        debug!("leaving sidecar");
        x86_64::instructions::interrupts::disable();
        // IF stays clear; GIF set again in case a fault struck with it
        // clear (before a VMRUN), so that INIT can still restart this CPU.
        svm::release_interrupts_if_on();
        crate::percpu::set_phase(crate::percpu::Phase::Left);
        self.hand_back(CpuStatus::REMOVED);
        cpu::halt_forever()
    }

    /// Stores `status`, raises attention and sends the response IPI.
    fn hand_back(&self, status: CpuStatus) {
        let control = self.control();
        if let Some(byte) = control.status(self.identity().node_cpu_index as usize) {
            byte.store(status, Ordering::Release);
        }
        control.raise_attention();
        let vector = control.response_vector.load(Ordering::Acquire);
        if vector != 0 {
            apic::send_ipi(control.response_cpu.load(Ordering::Relaxed), vector as u8);
        }
    }

    /// After a fault: writes `reason` as the command page's error, then
    /// leaves sidecar. Whatever command was in flight completes with it.
    ///
    /// # Safety
    ///
    /// Only from the fault path: code that held an [`OwnedPages`] was
    /// interrupted and never runs again, so this write races with nothing.
    pub unsafe fn fail_command(&self, reason: core::fmt::Arguments<'_>) -> ! {
        // Only a page the CPU holds: while it is IDLE the main kernel may be
        // writing its next request there. (A request that goes in now finds
        // REMOVED and no answer: the client fails it.)
        if matches!(self.status(), CpuStatus::RUN | CpuStatus::STOP) {
            let page = window::address(window::COMMAND_PAGE) as *mut CommandPage;
            // SAFETY: the command page is this CPU's, mapped here; the status
            // (RUN or STOP) keeps the main kernel off it; the caller
            // guarantees that no live code uses a reference to it.
            unsafe { (*page).set_error_fmt(reason) };
        }
        self.leave()
    }
}

/// This CPU's command page, VP-state block and VMCB, exclusively (see the
/// module's contract). Dropping it gives up the claim.
pub struct OwnedPages {
    owned: &'static AtomicBool,
    vmcb_pa: u64,
    host_save_pa: u64,
}

impl OwnedPages {
    /// The command page.
    pub fn command(&mut self) -> &mut CommandPage {
        self.command_and_state().0
    }

    /// The command page and the VP-state block.
    pub fn command_and_state(&mut self) -> (&mut CommandPage, &mut VpState) {
        let page = window::address(window::COMMAND_PAGE) as *mut CommandPage;
        let registers = window::address(window::REGISTER_PAGE) as *mut crate::vp::RegisterPage;
        // SAFETY: the window maps this CPU's command and register pages
        // here, page aligned, initialised by the BSP, valid for these
        // plain-data types. `own_pages` saw RUN or STOP, so the main kernel
        // keeps off them, and made this the only `OwnedPages`; `&mut self`
        // makes these the only references for their life. The state is
        // reached by field address: the register page's atomic field is
        // shared and gets no `&mut`.
        unsafe { (&mut *page, &mut (*registers).state) }
    }

    /// The VP's pages, for the VMRUN loop.
    pub fn vp_pages(&mut self) -> VpPages<'_> {
        // SAFETY: as in `command_and_state`, and the VMCB page is this
        // CPU's own (private, mapped only here); the `VpPages` borrows
        // `self`, so it lives no longer than this ownership.
        unsafe {
            VpPages::new(
                window::address(window::VMCB),
                self.vmcb_pa,
                self.host_save_pa,
                window::address(window::COMMAND_PAGE),
                window::address(window::REGISTER_PAGE),
            )
        }
    }
}

impl Drop for OwnedPages {
    fn drop(&mut self) {
        self.owned.store(false, Ordering::Relaxed);
    }
}
