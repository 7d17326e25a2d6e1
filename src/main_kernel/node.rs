//! The nodes' base VPs as main-kernel CPUs: each node after node 0 has its
//! first CPU (its base VP) started into main-kernel code, where it takes its
//! node's response IPIs and runs its node's share of the VMM, so that the
//! nodes' exits are handled in parallel, as the seed's design has it.
//!
//! What this module owns and may touch:
//!
//! - starting the base VPs ([`start_all`], on the BSP before its executor
//!   runs): INIT-SIPI-SIPI through the same trampoline as a converted CPU
//!   (`boot::ap::redirect`), onto the main kernel's identity map and a stack
//!   in the node's block of [`plan::BaseVpArea`];
//! - each base VP's block: its stack (with an unmapped guard page below it),
//!   descriptor tables, clock and executor ([`BaseVpMemory`]), its alone
//!   once it runs;
//! - handing work to a base VP ([`post`]) and telling the BSP it is done
//!   ([`Done`]).
//!
//! A base VP that does not come up within [`BASE_VP_TIMEOUT_US`] is
//! reported (a warning naming it) and its node stays with the BSP, which
//! then serves it as it serves node 0; should it come up later, it parks.

use core::future::poll_fn;
use core::mem::{offset_of, MaybeUninit};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use core::task::Poll;

use executor::x86::HaltParker;
use executor::{Executor, Spawner};
use futures_util::task::AtomicWaker;

use crate::arch::x86_64::entry::{
    boot_pml4_address, unmap_in_boot_tables, AP_CR3_BY_APIC_ID, AP_STACK_BY_APIC_ID,
};
use crate::arch::x86_64::gdt::CpuTables;
use crate::arch::x86_64::ipi_notifier::IpiNotifier;
use crate::arch::x86_64::vectors::WAKE_VECTOR;
use crate::arch::x86_64::{apic, cpu, interrupts, time};
use crate::boot::{ap, fanout};
use crate::cmdline::ApDelay;
use crate::layout::PAGE_SIZE;
use crate::paging::PageTable;
use crate::percpu;
use crate::plan::{self, BASE_VP_PAGES};
use crate::topology::{Node, MAX_NODES};

use super::clock::{self, ApicClock};
use super::driver;

/// Task slots of a base VP's executor: a VMM task for each sidecar CPU of
/// its node (at most 31), the task that runs them, the watchdog, the job
/// server, and one spare (a wave spawns while more than one slot is free).
pub const NODE_TASKS: usize = 35;
/// Bytes per task slot of a base VP's executor.
pub const NODE_TASK_BYTES: usize = 4096;

/// A base VP's executor.
pub type NodeExecutor = Executor<NODE_TASKS, NODE_TASK_BYTES, IpiNotifier>;

/// Spawns tasks on a base VP's executor.
pub type NodeSpawner = Spawner<NODE_TASK_BYTES>;

/// Work for a node's base VP: called there with the node's index and a
/// spawner, it spawns the tasks that do the work (a plain `fn`: there is no
/// allocator to box a closure or a future in).
pub type NodeJob = fn(u32, NodeSpawner);

/// A base VP's stack.
const STACK_BYTES: usize = 8 * PAGE_SIZE as usize;

/// A base VP's main-kernel memory: one block of the plan's
/// [`plan::BaseVpArea`], laid out by this struct.
#[repr(C, align(4096))]
struct BaseVpMemory {
    /// The table that splits the 2 MiB page holding `guard` into 4 KiB
    /// pages, if no other block's did that already. Below the guard, not
    /// between it and the stack: a live page table there would be the first
    /// thing an overflow wrote.
    split_table: PageTable,
    /// Unmapped before the base VP starts: an overflow of the stack right
    /// above is a reported double fault, not a write into anything else.
    guard: [u8; PAGE_SIZE as usize],
    stack: [u8; STACK_BYTES],
    fault_stack: [u8; PAGE_SIZE as usize],
    tables: CpuTables,
    clock: ApicClock,
    executor: NodeExecutor,
}

const _: () = assert!(core::mem::size_of::<BaseVpMemory>() as u64 <= BASE_VP_PAGES * PAGE_SIZE);
// The guard adjoins the stack's lowest page: the stack grows down into it.
const _: () = assert!(
    offset_of!(BaseVpMemory, stack) == offset_of!(BaseVpMemory, guard) + PAGE_SIZE as usize
);

/// How long a base VP may take from INIT to running before the BSP gives
/// up on it and serves its node itself.
pub const BASE_VP_TIMEOUT_US: u64 = 2_000_000;

/// A base VP's state (the values of [`BaseVp::state`]).
mod state {
    /// Not started: node 0, a node without sidecar CPUs, or before
    /// [`super::start_all`].
    pub const PARKED: u8 = 0;
    /// INIT-SIPI-SIPI sent; not running yet.
    pub const STARTING: u8 = 1;
    /// Running its executor and serving its node.
    pub const SERVING: u8 = 2;
    /// Missed its timeout: the BSP serves its node.
    pub const FAILED: u8 = 3;
}

/// One node's base VP, as the BSP and the base VP share it.
struct BaseVp {
    state: AtomicU8,
    /// The job posted for it, if it has not taken it yet.
    job: spin::Mutex<Option<NodeJob>>,
    /// Its job server's waker.
    job_posted: AtomicWaker,
}

static BASE_VPS: [BaseVp; MAX_NODES] = [const {
    BaseVp {
        state: AtomicU8::new(state::PARKED),
        job: spin::Mutex::new(None),
        job_posted: AtomicWaker::new(),
    }
}; MAX_NODES];

/// The nodes whose base VP is started: every node after node 0 that has
/// sidecar CPUs (a node without has no driver to serve).
fn startable_nodes() -> impl Iterator<Item = Node> {
    let plan = plan::get();
    plan.topology
        .nodes
        .iter()
        .copied()
        .filter(|node| node.index > 0)
        .filter(|node| {
            plan.regions
                .get(node.index as usize)
                .is_some_and(Option::is_some)
        })
        .filter(|node| plan.base_vps.block(node.index).is_some())
}

/// The block of `node`'s base VP.
fn memory_of(node: u32) -> *mut BaseVpMemory {
    let block = plan::get()
        .base_vps
        .block(node)
        .expect("a started base VP's node has a block");
    block as *mut BaseVpMemory
}

/// Unmaps the guard page below the stack of the base VP whose block is at
/// `memory` (BSP, before the base VP starts).
fn guard_stack(memory: *mut BaseVpMemory) {
    // SAFETY: the BSP alone runs on the boot tables until the base VPs
    // start; the guard page and the split table are the block's, which
    // only this base VP will use, and it uses neither.
    unsafe {
        unmap_in_boot_tables(
            field_address(memory, offset_of!(BaseVpMemory, guard)),
            field_address(memory, offset_of!(BaseVpMemory, split_table)),
        )
    };
}

/// The lowest address of `node`'s base VP's stack (the guard page is the
/// page below it), if the node has a base VP block.
pub fn stack_bottom(node: u32) -> Option<u64> {
    let block = plan::get().base_vps.block(node)?;
    Some(block + offset_of!(BaseVpMemory, stack) as u64)
}

/// The physical (identity-mapped) address of the field at `offset` of the
/// block at `memory`.
fn field_address(memory: *mut BaseVpMemory, offset: usize) -> u64 {
    memory as u64 + offset as u64
}

/// Starts every node's base VP (BSP, once, after the drivers exist and
/// before its executor runs), waits until each runs or misses
/// [`BASE_VP_TIMEOUT_US`], and moves each running one's node to it.
/// Returns how many serve their node.
pub fn start_all() -> usize {
    let plan = plan::get();
    let apic_id_of = |node: Node| plan.topology.cpus[node.base_vp as usize].apic_id;
    for node in startable_nodes() {
        let apic_id = apic_id_of(node);
        let memory = memory_of(node.index);
        guard_stack(memory);
        let stack_top = field_address(memory, offset_of!(BaseVpMemory, stack)) + STACK_BYTES as u64;
        AP_STACK_BY_APIC_ID[apic_id as usize].store(stack_top, Ordering::Relaxed);
        AP_CR3_BY_APIC_ID[apic_id as usize].store(boot_pml4_address() as u32, Ordering::Relaxed);
        ap::redirect(apic_id, base_vp_main);
        BASE_VPS[node.index as usize]
            .state
            .store(state::STARTING, Ordering::Release);
    }
    let began = cpu::rdtsc();
    send_init_sipi_sipi();
    let mut serving = 0;
    for node in startable_nodes() {
        if wait_for(node.index, began) {
            driver::serve(node.index, apic_id_of(node));
            info!(
                "node {}: served by its base VP {}",
                node.index, node.base_vp
            );
            serving += 1;
        } else {
            warn!(
                "node {}: base VP {} did not come up within {} ms: the BSP serves the node",
                node.index,
                node.base_vp,
                BASE_VP_TIMEOUT_US / 1000
            );
        }
    }
    serving
}

/// INIT-SIPI-SIPI to every startable base VP at once, with the boot's
/// waits (once for all), leaving out the startup IPIs of an
/// `unresponsive=` one.
fn send_init_sipi_sipi() {
    let plan = plan::get();
    let apic_id_of = |node: Node| plan.topology.cpus[node.base_vp as usize].apic_id;
    let spec = plan.start.delay == ApDelay::Spec;
    for node in startable_nodes() {
        apic::send_init(apic_id_of(node));
    }
    if spec {
        time::sleep_us(fanout::INIT_WAIT_US);
    }
    if let Some(vp) = plan.start.unresponsive {
        if startable_nodes().any(|node| node.base_vp == vp) {
            warn!("base VP {vp}: sending no startup IPI (unresponsive={vp} self-test)");
        }
    }
    for _ in 0..2 {
        for node in startable_nodes() {
            if plan.start.unresponsive != Some(node.base_vp) {
                apic::send_startup(apic_id_of(node), fanout::TRAMPOLINE_PAGE);
            }
        }
        if spec {
            time::sleep_us(fanout::SIPI_WAIT_US);
        }
    }
}

/// Waits until `node`'s base VP runs (`true`) or, past the timeout counted
/// from `began`, gives up on it (`false`).
fn wait_for(node: u32, began: u64) -> bool {
    let base_vp = &BASE_VPS[node as usize];
    let timeout = time::us_to_ticks(BASE_VP_TIMEOUT_US);
    loop {
        if base_vp.state.load(Ordering::Acquire) == state::SERVING {
            return true;
        }
        if cpu::rdtsc() - began > timeout {
            // It may make it in the same breath: the exchange decides.
            return base_vp
                .state
                .compare_exchange(
                    state::STARTING,
                    state::FAILED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err();
        }
        time::sleep_us(50);
    }
}

/// Whether `node`'s base VP serves it (else the BSP does).
pub fn serving(node: u32) -> bool {
    BASE_VPS
        .get(node as usize)
        .is_some_and(|b| b.state.load(Ordering::Acquire) == state::SERVING)
}

/// Hands `job` to `node`'s base VP, which calls it with a spawner on its
/// executor. `false` if the base VP does not serve the node, or has a job
/// it has not taken yet: the caller does the work itself.
pub fn post(node: u32, job: NodeJob) -> bool {
    if !serving(node) {
        return false;
    }
    let base_vp = &BASE_VPS[node as usize];
    {
        let mut slot = base_vp.job.lock();
        if slot.is_some() {
            return false;
        }
        *slot = Some(job);
    }
    base_vp.job_posted.wake();
    true
}

/// A base VP's first Rust code (from `ap_main`, on the boot page tables and
/// its stack in its block).
fn base_vp_main(apic_id: u32) -> ! {
    let vp = percpu::current_vp();
    let node = plan::get().topology.cpus[vp as usize].node;
    let memory = memory_of(node);
    // SAFETY: the block is identity-mapped RAM the BSP allocated for this
    // base VP alone and zeroed; nothing else touches it once the base VP
    // runs, and this runs once (a base VP is started once). The tables and the clock are
    // written whole before the one reference to each is made; the executor
    // is built in place (`new_in`), larger than this CPU's stack.
    let (tables, clock, executor) = unsafe {
        let tables = &raw mut (*memory).tables;
        tables.write(CpuTables::new());
        let clock = &raw mut (*memory).clock;
        clock.write(ApicClock::new());
        let executor = &mut *(&raw mut (*memory).executor).cast::<MaybeUninit<NodeExecutor>>();
        (
            &mut *tables,
            &*clock,
            Executor::new_in(executor, IpiNotifier::new(apic_id, WAKE_VECTOR)),
        )
    };
    let fault_stack_top = field_address(memory, offset_of!(BaseVpMemory, fault_stack)) + PAGE_SIZE;
    tables.load(x86_64::VirtAddr::new(fault_stack_top));
    interrupts::load_idt();
    apic::enable();
    let claimed = BASE_VPS[node as usize].state.compare_exchange(
        state::STARTING,
        state::SERVING,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    if claimed.is_err() {
        warn!("base VP {vp} came up after the BSP gave up on it: parking");
        cpu::halt_forever();
    }
    clock::init_base_vp(clock, node);
    debug!("base VP {vp} (APIC ID {apic_id}) runs node {node}'s main kernel");
    let runner = executor.claim().expect("a fresh executor");
    if runner.spawn(driver::watchdog()).is_err() {
        panic!("a fresh executor has room for the driver's watchdog");
    }
    if runner.spawn(job_server(node, runner.spawner())).is_err() {
        panic!("a fresh executor has room for the job server");
    }
    x86_64::instructions::interrupts::enable();
    runner.run(&HaltParker)
}

/// Runs the jobs the BSP posts for `node`, one after another.
async fn job_server(node: u32, spawner: NodeSpawner) {
    let base_vp = &BASE_VPS[node as usize];
    loop {
        let job = poll_fn(|cx| {
            base_vp.job_posted.register(cx.waker());
            match base_vp.job.lock().take() {
                Some(job) => Poll::Ready(job),
                None => Poll::Pending,
            }
        })
        .await;
        job(node, spawner);
    }
}

/// A one-shot "done" that a task on one main-kernel CPU sets and a task on
/// another awaits (a node's work finished, say). The kernel's
/// `critical-section` only masks the local CPU's interrupts, so
/// `embassy-sync`'s signals do not reach across CPUs; an atomic flag and an
/// [`AtomicWaker`] do.
pub struct Done {
    done: AtomicBool,
    waker: AtomicWaker,
}

impl Done {
    /// Not done.
    pub const fn new() -> Self {
        Self {
            done: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// Marks it done and wakes the waiter.
    pub fn set(&self) {
        self.done.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Not done again (before the work is handed out once more).
    pub fn reset(&self) {
        self.done.store(false, Ordering::Release);
    }

    /// Waits until it is done.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.done.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

impl Default for Done {
    fn default() -> Self {
        Self::new()
    }
}
