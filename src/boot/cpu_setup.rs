//! Building one sidecar CPU's pages, by the CPU that starts it, right before
//! its INIT: zeroing the pages that must start zeroed, its page tables, its globals, and its entry
//! in the trampoline's CR3 table. The BSP publishes what every starter needs
//! ([`publish`]) and builds only the CPUs it starts itself; an AP builds the
//! ones it claims during the fan-out.
//!
//! A starter writes the pages through the fan-out window
//! ([`crate::layout::FanoutWindow`]), which maps every node region into the
//! BSP's tables and into every sidecar CPU's while it helps; a sidecar CPU
//! drops the window from its own tables ([`close_fanout_window`]) before it
//! reports ready, so that from then on it maps only its own pages.

use core::sync::atomic::Ordering;

use spin::Once;

use crate::arch::x86_64::entry::AP_CR3_BY_APIC_ID;
use crate::boot::page_tables::{CpuPageTables, SharedPdpts, WindowPages, FANOUT_PML4_SLOT};
use crate::layout::{private, FanoutWindow, NodeRegion, PAGE_SIZE, SHARED_PAGES_PER_CPU};
use crate::plan::{self, CpuPages};
use crate::runtime::hooks::RuntimeHooks;
use crate::runtime::this_cpu::{CpuGlobals, CpuIdentity};

/// What every starter needs besides the plan.
pub struct Setup {
    /// The PDPTs of the shared tables.
    pub shared: SharedPdpts,
    /// Where the node regions are mapped during the fan-out.
    pub window: FanoutWindow,
    /// The hooks every sidecar CPU gets (the production run's do nothing).
    pub hooks: &'static dyn RuntimeHooks,
}

static SETUP: Once<Setup> = Once::new();

/// Publishes the set-up (BSP, once, before the first start).
pub fn publish(setup: Setup) {
    SETUP.call_once(|| setup);
}

fn setup() -> &'static Setup {
    SETUP
        .get()
        .expect("the BSP publishes the CPU set-up before starting any CPU")
}

/// The fan-out window's address of `pages` pages at physical `phys`, as a
/// pointer.
fn window_ptr<T>(phys: u64, pages: u64) -> *mut T {
    let window = setup().window;
    let start = window.virt(phys);
    let last = window.virt(phys + pages * PAGE_SIZE - 1);
    match (start, last) {
        (Some(start), Some(_)) => start as *mut T,
        _ => panic!("{phys:#x} is outside the node regions"),
    }
}

/// Zeroes `pages` pages at physical `phys`, inside the node regions.
///
/// # Safety
///
/// The pages belong to a CPU that is not running and that only the caller
/// builds.
unsafe fn zero(phys: u64, pages: u64) {
    let ptr = window_ptr::<u8>(phys, pages);
    // SAFETY: the range is mapped (checked by `window_ptr`) and, as the
    // caller guarantees, nobody else uses it.
    unsafe { core::ptr::write_bytes(ptr, 0, (pages * PAGE_SIZE) as usize) };
}

/// Builds sidecar CPU `vp`'s pages and publishes its CR3. Called by its
/// starter, which claimed it ([`crate::boot::fanout`] hands each CPU to one
/// starter), before the INIT.
pub fn build(vp: u32) {
    let plan = plan::get();
    let cpu = plan.topology.cpus[vp as usize];
    let CpuPages { region, index } = plan
        .cpu_pages(vp)
        .expect("a sidecar CPU's node has a region");
    // Only the pages whose first reader expects zeroes are zeroed: the
    // command and register pages (the protocol's initial state), the
    // globals and the VMCB. The page tables are written whole below, and
    // the stacks and the host save area are written before they are read;
    // skipping them saves 9 of 14 pages a start (a page costs about 0.2 ms
    // under this machine's KVM).
    // SAFETY: the pages are the CPU's own, and it has not started: its
    // starter, the caller, is the only one to touch them.
    unsafe {
        zero(region.command_page(index), SHARED_PAGES_PER_CPU);
        zero(region.private_page(index, private::GLOBALS), 1);
        zero(region.private_page(index, private::VMCB), 1);
    }
    let identity = CpuIdentity {
        vp,
        apic_id: cpu.apic_id,
        node: cpu.node,
        node_cpu_index: index as u32,
        guest_size: plan.guest.size,
        vmcb: region.private_page(index, private::VMCB),
        host_save_area: region.private_page(index, private::HOST_SAVE),
    };
    let pml4 = build_tables(&region, index);
    let globals = CpuGlobals::new(identity, setup().hooks);
    let globals_ptr = window_ptr::<CpuGlobals>(region.private_page(index, private::GLOBALS), 1);
    // SAFETY: the globals page was just zeroed, is page aligned and large
    // enough for `CpuGlobals`, and is the unstarted CPU's.
    unsafe { globals_ptr.write(globals) };
    // The INIT that follows is sent after a fence (see `apic`), so the CPU
    // sees everything above when it reads this.
    AP_CR3_BY_APIC_ID[cpu.apic_id as usize].store(pml4 as u32, Ordering::Release);
}

/// Writes the page tables of CPU `index` of `region`; returns its PML4's
/// physical address.
fn build_tables(region: &NodeRegion, index: u64) -> u64 {
    let pages = WindowPages {
        control: region.control_page(),
        command: region.command_page(index),
        register: region.register_page(index),
        globals: region.private_page(index, private::GLOBALS),
        fault_stack: region.private_page(index, private::FAULT_STACK),
        stack: region.private_page(index, private::STACK),
        vmcb: region.private_page(index, private::VMCB),
    };
    let pml4 = region.private_page(index, private::PML4);
    let tables_ptr = window_ptr::<CpuPageTables>(pml4, 4);
    // SAFETY: the four table pages at `pml4` are the unstarted CPU's,
    // zeroed, mapped (checked by `window_ptr`); nobody else uses them.
    let tables = unsafe { &mut *tables_ptr };
    tables.build(pml4, setup().shared, &pages);
    pml4
}

/// Drops the fan-out window from the running sidecar CPU's own page tables
/// and flushes its TLB: from here on it maps only its own pages.
pub fn close_fanout_window() {
    let (frame, _) = x86_64::registers::control::Cr3::read();
    let pml4 = window_ptr::<u64>(frame.start_address().as_u64(), 1);
    // SAFETY: the PML4 is this CPU's own (CR3 names it), mapped through the
    // window until the flush below; only this CPU writes it after its start,
    // and slot FANOUT_PML4_SLOT is inside the table. The CPU uses no address
    // in the window after this.
    unsafe { pml4.add(FANOUT_PML4_SLOT).write_volatile(0) };
    x86_64::instructions::tlb::flush_all();
}
