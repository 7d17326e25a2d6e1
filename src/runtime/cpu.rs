//! A sidecar CPU after boot: its executor, its request-IPI handler, and the
//! guest memory it reaches.
//!
//! The CPU's state sits in its own window (see [`crate::layout::window`]):
//! the node's control page, its command page, its register page (the
//! [`VpState`] block) and its globals page with the executor. Everything here
//! runs on that CPU only; the main kernel talks to it through the control
//! page and the request IPI.

use core::sync::atomic::{AtomicU64, Ordering};

use executor::x86::HaltParker;
use executor::Executor;

use crate::abi::{CommandPage, ControlPage, CpuStatus};
use crate::arch::x86_64::interrupts::{self, TrapFrame};
use crate::arch::x86_64::{apic, cpu, vectors::REQUEST_VECTOR};
use crate::layout::{window, GUEST_WINDOW_BASE};
use crate::percpu::{self, CpuGlobals};
use crate::vp::{GuestMemory, VpState};
use crate::MAX_CPUS;

/// Task slots of a sidecar CPU's executor: the dispatch task and the
/// command it runs.
pub const SIDECAR_TASKS: usize = 2;
/// Bytes per task slot.
pub const SIDECAR_TASK_BYTES: usize = 512;

/// A sidecar CPU's executor.
pub type SidecarExecutor = Executor<SIDECAR_TASKS, SIDECAR_TASK_BYTES, OwnCpuOnly>;

/// The notifier of a sidecar CPU's executor: it never needs to send
/// anything. Every wake of a sidecar task happens on the CPU itself, in its
/// tasks or in its request-IPI handler (whose interrupt already ended the
/// halt): the executor and its wakers live in the CPU's window, an address
/// no other CPU maps, so no other CPU can even call them. The main kernel
/// reaches a sidecar CPU only through its status byte and the request IPI.
pub struct OwnCpuOnly;

impl executor::Notifier for OwnCpuOnly {
    fn notify(&self) {}
}

/// Which dispatch loop a sidecar CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// The executor with its dispatch task (the design).
    Async,
    /// A plain halt-and-match loop without the executor (the baseline the
    /// protocol benchmark compares against, as OpenHCL's sidecar does it).
    Plain,
}

/// This CPU's view of its own pages.
#[derive(Clone, Copy)]
pub struct LocalCpu {
    /// The VP index.
    pub vp: u32,
    /// The CPU's index within its node (its slot in the control page).
    pub index: usize,
    /// Physical address of the VMCB (mapped at `window::VMCB`).
    pub vmcb: u64,
    /// The guest memory size, in bytes.
    pub guest_size: u64,
}

impl LocalCpu {
    /// The node's control page.
    pub fn control(&self) -> &'static ControlPage {
        // SAFETY: the window maps the node's control page here on every
        // sidecar CPU; it lives for the whole run and is all atomics.
        unsafe { &*(window::address(window::CONTROL_PAGE) as *const ControlPage) }
    }

    /// This CPU's status byte.
    pub fn status(&self) -> CpuStatus {
        self.control()
            .status(self.index)
            .map_or(CpuStatus::REMOVED, |s| s.load(Ordering::Acquire))
    }

    /// The command page and the VP-state block, for the duration of one
    /// command.
    ///
    /// # Safety
    ///
    /// Only while this CPU owns the command page (its status is RUN or STOP)
    /// and no other reference from this function is alive.
    pub unsafe fn pages(&self) -> (&'static mut CommandPage, &'static mut VpState) {
        let page = window::address(window::COMMAND_PAGE) as *mut CommandPage;
        let state = window::address(window::REGISTER_PAGE) as *mut VpState;
        // SAFETY: the window maps this CPU's command and register pages at
        // these addresses, both page aligned and page sized, zero-initialized
        // by the BSP (valid for these plain-data types). The main kernel does
        // not touch them while the status is RUN or STOP, and the caller
        // holds no other reference.
        unsafe { (&mut *page, &mut *state) }
    }

    /// Ends a command: status IDLE (release: the results are visible first),
    /// attention raised, the response IPI sent if the driver asked for one.
    pub fn complete(&self) {
        let start = request_tsc().load(Ordering::Relaxed);
        if let Some(service) = SERVICE_CYCLES.get(self.vp as usize) {
            service.store(cpu::rdtsc().saturating_sub(start), Ordering::Relaxed);
        }
        let control = self.control();
        if let Some(status) = control.status(self.index) {
            status.store(CpuStatus::IDLE, Ordering::Release);
        }
        control.raise_attention();
        let vector = control.response_vector.load(Ordering::Acquire);
        if vector != 0 {
            apic::send_ipi(control.response_cpu.load(Ordering::Relaxed), vector as u8);
        }
    }

    /// Leaves sidecar for good (REMOVE): the VP's state is already in the
    /// register page and `cpu_context` (saved after every exit), so the CPU
    /// only stores REMOVED, tells the driver, and parks with interrupts off
    /// until the main kernel's INIT takes it. From the REMOVED store on, it
    /// writes no shared page.
    pub fn leave(&self) -> ! {
        debug!("leaving sidecar");
        let control = self.control();
        if let Some(status) = control.status(self.index) {
            status.store(CpuStatus::REMOVED, Ordering::Release);
        }
        control.raise_attention();
        let vector = control.response_vector.load(Ordering::Acquire);
        if vector != 0 {
            apic::send_ipi(control.response_cpu.load(Ordering::Relaxed), vector as u8);
        }
        cpu::halt_forever()
    }

    /// The guest's memory, through the guest window.
    pub fn guest_memory(&self) -> WindowGuestMemory {
        WindowGuestMemory {
            size: self.guest_size,
        }
    }
}

/// Guest memory as a sidecar CPU sees it: through the guest window.
pub struct WindowGuestMemory {
    size: u64,
}

impl WindowGuestMemory {
    fn pointer(&self, gpa: u64) -> Option<*mut u64> {
        let in_range =
            gpa.is_multiple_of(8) && gpa.checked_add(8).is_some_and(|end| end <= self.size);
        in_range.then(|| (GUEST_WINDOW_BASE + gpa) as *mut u64)
    }
}

impl GuestMemory for WindowGuestMemory {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let pointer = self.pointer(gpa)?;
        // SAFETY: `pointer` is 8-aligned inside the guest window, which the
        // shared tables map to guest RAM on every sidecar CPU; the guest may
        // change it concurrently, which a volatile read tolerates.
        Some(unsafe { pointer.read_volatile() })
    }

    fn write_u64(&mut self, gpa: u64, value: u64) -> Option<()> {
        let pointer = self.pointer(gpa)?;
        // SAFETY: as in `read_u64`; writing guest RAM is what the command
        // asked for (accessed and dirty bits).
        unsafe { pointer.write_volatile(value) };
        Some(())
    }
}

/// The running sidecar CPU's executor, through its window.
fn current_executor() -> &'static SidecarExecutor {
    let address =
        window::address(window::GLOBALS) + core::mem::offset_of!(CpuGlobals, executor) as u64;
    // SAFETY: on a sidecar CPU the globals page is mapped here and holds a
    // `CpuGlobals` whose `executor` the BSP initialized; only shared
    // references to the executor are ever made, and it lives forever.
    unsafe { &*(address as *const SidecarExecutor) }
}

/// The running sidecar CPU's `request_tsc`, through its window (no CPUID on
/// the request path to find out which CPU this is).
fn request_tsc() -> &'static AtomicU64 {
    let address =
        window::address(window::GLOBALS) + core::mem::offset_of!(CpuGlobals, request_tsc) as u64;
    // SAFETY: as in `current_executor`: the globals page is this CPU's,
    // mapped here for the CPU's life; the field is atomic and only shared
    // references to it are made.
    unsafe { &*(address as *const AtomicU64) }
}

/// Per CPU (by VP index): the cycles from its last request IPI (the TSC in
/// its globals' `request_tsc`) to its last completion. Kernel data, written
/// by each CPU for itself and read by the benchmark on the BSP; it measures
/// the dispatch path without the host's thread wake-ups that dominate a
/// round trip under software emulation.
pub static SERVICE_CYCLES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Per VP: the CPU runs its runtime (faults are contained from then on).
static IN_RUNTIME: [core::sync::atomic::AtomicBool; MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; MAX_CPUS];

/// Whether the running CPU is a sidecar CPU inside its runtime, whose
/// faults are contained.
pub fn in_runtime() -> bool {
    let vp = percpu::current_vp() as usize;
    IN_RUNTIME
        .get(vp)
        .is_some_and(|f| f.load(Ordering::Relaxed))
        && !crate::main_kernel::convert::is_converted(cpu::apic_id())
}

/// Marks the running sidecar CPU as inside its runtime.
pub fn enter_runtime(vp: u32) {
    if let Some(flag) = IN_RUNTIME.get(vp as usize) {
        flag.store(true, Ordering::Relaxed);
    }
}

/// After a fault on this sidecar CPU: the reason goes into the command
/// page's error (`has_error`), the status becomes REMOVED, and the driver is
/// told; then the CPU parks. Whatever command was in flight completes with
/// that error.
pub fn report_fault(reason: core::fmt::Arguments<'_>) -> ! {
    let vp = percpu::current_vp();
    let globals = window::address(window::GLOBALS) as *const CpuGlobals;
    // SAFETY: a CPU in its runtime maps its globals here; only the plain
    // `node_cpu_index` field is read.
    let index = unsafe { (*globals).node_cpu_index } as usize;
    let page = window::address(window::COMMAND_PAGE) as *mut CommandPage;
    // SAFETY: the command page is this CPU's, mapped here. The fault may
    // have interrupted a command that held a reference to it; that code
    // never runs again (the CPU parks below), so this write cannot race
    // with it.
    unsafe { (*page).set_error_fmt(reason) };
    let local = LocalCpu {
        vp,
        index,
        vmcb: 0,
        guest_size: 0,
    };
    local.leave()
}
fn request_interrupt(_frame: &mut TrapFrame) {
    request_tsc().store(cpu::rdtsc(), Ordering::Relaxed);
    apic::end_of_interrupt();
    current_executor().wake_flag_waiters();
}

/// Installs the request-IPI handler (BSP, once, before starting APs).
pub fn install_request_handler() {
    interrupts::set_handler(REQUEST_VECTOR, request_interrupt);
}

/// Runs the CPU's dispatch loop forever.
pub fn run(cpu: LocalCpu, kind: RuntimeKind, executor: &'static SidecarExecutor) -> ! {
    enter_runtime(cpu.vp);
    match kind {
        RuntimeKind::Plain => super::plain::run(cpu),
        RuntimeKind::Async => {
            let runner = executor.claim().expect("only this CPU claims its executor");
            let spawner = runner.spawner();
            if runner
                .spawn(super::dispatch::dispatch(cpu, spawner))
                .is_err()
            {
                panic!("a fresh executor has room for the dispatch task");
            }
            x86_64::instructions::interrupts::enable();
            runner.run(&HaltParker)
        }
    }
}
