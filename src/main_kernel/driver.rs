//! The sidecar driver: one per node, on the main kernel's side of the
//! control page.
//!
//! A command's handshake, and who owns the command page at each step:
//!
//! ```text
//! driver                                   sidecar CPU
//! claim the CPU's slot (FREE → IN_FLIGHT)
//! write the command page                   (page: driver's, status IDLE)
//! status = RUN (release)                   ─┐
//! request IPI ───────────────────────────▶  │ status RUN seen (acquire): page is the CPU's
//!                                           │ run the command, write the results
//!                                          ─┘ status = IDLE (release), needs_attention = 1
//! response IPI ◀─────────────────────────── IPI response_cpu on response_vector
//! handler: take needs_attention, wake the
//! waiters of CPUs no longer RUN/STOP
//! waiter: status IDLE seen (acquire):
//! read the results, slot FREE
//! ```
//!
//! The release/acquire pairs on the status byte order the page's contents:
//! whatever one side wrote before storing the status, the other side sees
//! after loading it.

use core::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};

use futures_util::task::AtomicWaker;
use spin::Once;

use crate::abi::{CommandPage, ControlPage, CpuStatus};
use crate::arch::x86_64::interrupts::{self, TrapFrame};
use crate::arch::x86_64::vectors::RESPONSE_VECTOR;
use crate::arch::x86_64::{apic, cpu};
use crate::plan;
use crate::topology::MAX_NODES;
use crate::MAX_CPUS;

/// A slot's state: who may use the CPU's command page.
pub mod slot {
    /// No command in flight.
    pub const FREE: u8 = 0;
    /// A client sent a command and awaits it.
    pub const IN_FLIGHT: u8 = 1;
    /// The client went away before the command finished; the response
    /// handler frees the slot when the CPU is done.
    pub const ABANDONED: u8 = 2;
}

/// The driver's per-CPU bookkeeping.
pub struct CpuSlot {
    /// One of [`slot`]'s states.
    pub state: AtomicU8,
    /// The waiting client's waker.
    pub waker: AtomicWaker,
    /// The TSC by which the command in flight must be answered
    /// ([`NO_DEADLINE`] for a RUN_VP nobody stopped yet). Written only by
    /// the client that holds the slot: a RUN_VP's client sets it when it
    /// first sees STOP.
    pub deadline: AtomicU64,
}

/// [`CpuSlot::deadline`] of a command that may run for ever (RUN_VP, until
/// a STOP sets one).
pub const NO_DEADLINE: u64 = u64::MAX;

/// How often the [`watchdog`] looks for overdue commands.
const WATCHDOG_PERIOD_US: u64 = 100_000;

/// Wakes the client of every command past its deadline, so that a sidecar
/// CPU that never answers (a dispatch that ignores STOP, a response IPI that
/// never comes) fails its command within the bound plus one period, naming
/// the CPU, instead of hanging the run. One task per main-kernel executor,
/// over the nodes whose `response_cpu` its CPU is: a timer per command would
/// not fit the clock's queue.
pub async fn watchdog() {
    loop {
        super::clock::sleep_us(WATCHDOG_PERIOD_US).await;
        let now = cpu::rdtsc();
        let me = apic::id();
        for driver in drivers().iter().filter(|d| d.served_by(me)) {
            for index in 0..driver.cpu_count as usize {
                let slot = driver.slot(index);
                let overdue = slot.deadline.load(Ordering::Relaxed) <= now;
                if overdue && slot.state.load(Ordering::Acquire) == slot::IN_FLIGHT {
                    slot.waker.wake();
                }
            }
        }
    }
}

/// One node's driver.
pub struct NodeDriver {
    /// The node's index.
    pub node: u32,
    /// Its first VP.
    pub base_vp: u32,
    /// Its CPU count.
    pub cpu_count: u32,
    /// Its control page.
    pub control: &'static ControlPage,
}

/// Every CPU's slot, by VP index (a static: the drivers are built on the
/// BSP's stack, which must not hold 32 wakers per node). A client on any
/// main-kernel CPU may hold a slot; the waker it leaves wakes its own
/// executor, from whichever CPU takes the response.
static SLOTS: [CpuSlot; MAX_CPUS] = [const {
    CpuSlot {
        state: AtomicU8::new(slot::FREE),
        waker: AtomicWaker::new(),
        deadline: AtomicU64::new(NO_DEADLINE),
    }
}; MAX_CPUS];

impl NodeDriver {
    /// The slot of the node's CPU `index`.
    pub fn slot(&self, index: usize) -> &'static CpuSlot {
        &SLOTS[self.base_vp as usize + index]
    }

    /// The status of the node's CPU `index`.
    pub fn status(&self, index: usize) -> CpuStatus {
        self.control
            .status(index)
            .map_or(CpuStatus::REMOVED, |s| s.load(Ordering::Acquire))
    }

    /// The command page of the node's CPU `index`.
    ///
    /// # Safety
    ///
    /// Only while the caller holds the CPU's slot and the CPU's status is
    /// IDLE (the driver owns the page), with no other reference alive.
    pub unsafe fn command_page(&self, index: usize) -> &'static mut CommandPage {
        let region =
            plan::get().regions[self.node as usize].expect("a node with a driver has a region");
        let page = region.command_page(index as u64) as *mut CommandPage;
        // SAFETY: the page is this CPU's command page in the node's region,
        // identity mapped on the BSP, page aligned and zero-initialized; the
        // caller guarantees exclusive ownership for now.
        unsafe { &mut *page }
    }

    /// Whether the main-kernel CPU with `apic_id` takes this node's
    /// responses (its control page's `response_cpu`).
    pub fn served_by(&self, apic_id: u32) -> bool {
        self.control.response_cpu.load(Ordering::Relaxed) == apic_id
    }

    /// Wakes the clients whose CPUs finished.
    fn on_response(&self) {
        if !self.control.take_attention() {
            return;
        }
        // Pairs with the fence in the client's `InFlight::drop`: either this
        // handler sees the slot ABANDONED, or that drop sees the CPU done.
        fence(Ordering::SeqCst);
        for index in 0..self.cpu_count as usize {
            let slot = self.slot(index);
            let done = !matches!(self.status(index), CpuStatus::RUN | CpuStatus::STOP);
            match slot.state.load(Ordering::Acquire) {
                slot::IN_FLIGHT if done => slot.waker.wake(),
                // A compare-exchange: the abandoning client may free the
                // slot itself (`InFlight::drop`), and a new command take it,
                // between the load above and this.
                slot::ABANDONED if done => {
                    let _ = slot.state.compare_exchange(
                        slot::ABANDONED,
                        slot::FREE,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                }
                _ => {}
            }
        }
    }
}

static DRIVERS: Once<heapless::Vec<NodeDriver, MAX_NODES>> = Once::new();

/// Requests sent to sidecar CPUs.
pub static REQUESTS_SENT: AtomicU64 = AtomicU64::new(0);
/// Response IPIs taken.
pub static RESPONSES_TAKEN: AtomicU64 = AtomicU64::new(0);

/// The TSC when the last response IPI entered its handler (for the
/// protocol benchmark's split of a round trip).
pub static RESPONSE_TSC: AtomicU64 = AtomicU64::new(0);

/// The response IPI, on any main-kernel CPU: only the nodes whose
/// `response_cpu` it is (the BSP for node 0, a node's base VP for its own
/// node once it serves it), so that nodes served by different CPUs are
/// handled in parallel.
fn response_interrupt(_frame: &mut TrapFrame) {
    RESPONSE_TSC.store(cpu::rdtsc(), Ordering::Relaxed);
    apic::end_of_interrupt();
    RESPONSES_TAKEN.fetch_add(1, Ordering::Relaxed);
    let me = apic::id();
    for driver in drivers().iter().filter(|d| d.served_by(me)) {
        driver.on_response();
    }
}

/// The drivers, one per node that has sidecar CPUs.
pub fn drivers() -> &'static [NodeDriver] {
    DRIVERS.get().map_or(&[], |d| d.as_slice())
}

/// The driver of the node holding `vp`.
pub fn driver_of(vp: u32) -> Option<&'static NodeDriver> {
    drivers()
        .iter()
        .find(|d| (d.base_vp..d.base_vp + d.cpu_count).contains(&vp))
}

/// Points `node`'s responses at the main-kernel CPU with `apic_id` (the BSP
/// moves a node to its base VP once that runs, before any command is in
/// flight: a response IPI sent before the store would go to the old CPU,
/// which no longer looks at the node).
pub fn serve(node: u32, apic_id: u32) {
    if let Some(driver) = drivers().iter().find(|d| d.node == node) {
        driver
            .control
            .response_cpu
            .store(apic_id, Ordering::Release);
    }
}

/// Creates the drivers and points every control page's response at the BSP
/// (the BSP moves nodes to their base VPs with [`serve`]).
pub fn init() {
    let plan = plan::get();
    let me = cpu::apic_id();
    DRIVERS.call_once(|| {
        let mut drivers = heapless::Vec::new();
        for node in &plan.topology.nodes {
            let Some(control) = plan.control_page(node.index as usize) else {
                continue;
            };
            control.response_cpu.store(me, Ordering::Relaxed);
            control
                .response_vector
                .store(u32::from(RESPONSE_VECTOR), Ordering::Release);
            let _ = drivers.push(NodeDriver {
                node: node.index,
                base_vp: node.base_vp,
                cpu_count: node.vp_count,
                control,
            });
        }
        drivers
    });
    interrupts::set_handler(RESPONSE_VECTOR, response_interrupt);
}
