//! The BSP's one-time preparation of the sidecar CPUs, done before the first
//! AP starts: where the nodes' memory and the guest's memory are, the
//! control pages, the shared page tables and the fan-out window, and the
//! trampoline. Each CPU's own pages are built later, by the CPU that starts
//! it ([`crate::boot::cpu_setup`]), and what no CPU reads during the start-up
//! (the guest's memory and tables, the base VPs' memory) is filled once the
//! CPUs are up ([`finish`]). What it decides goes into the machine plan
//! ([`crate::plan`]).

use core::sync::atomic::Ordering;

use crate::abi::{ControlPage, CpuStatus};
use crate::acpi::PhysMemory;
use crate::arch::x86_64::apic::XAPIC_BASE;
use crate::arch::x86_64::entry::{ap_trampoline, map_in_boot_tables};
use crate::arch::x86_64::vectors::REQUEST_VECTOR;
use crate::boot::cpu_setup::{self, Setup};
use crate::boot::fanout::TRAMPOLINE_PAGE;
use crate::boot::memory::{self, OutOfMemory};
use crate::boot::page_tables::{KernelImage, SharedPdpts, SharedTables, FANOUT_PML4_SLOT};
use crate::boot::phys::{IdentityMapped, IDENTITY_MAPPED_END};
use crate::boot::pvh::MemmapEntry;
use crate::layout::{FanoutWindow, NodeRegion, PAGE_SIZE};
use crate::paging::LARGE_PAGE_SIZE;
use crate::percpu;
use crate::plan::{BaseVpArea, GuestRegion, GUEST_MEMORY_BYTES};
use crate::runtime::hooks::RuntimeHooks;
use crate::svm::npt;
use crate::topology::{Role, Topology, MAX_NODES};

/// The tables every sidecar CPU shares (kernel image and local APIC).
static mut SHARED_TABLES: SharedTables = SharedTables::new();

/// Node regions start at the first 2 MiB boundary above the kernel image's
/// end (2 MiB while the image ends below it): a 2 MiB page of the fan-out
/// window never maps the image, and a gap is left between the two, which a
/// Linux main kernel needs (docs/linux.md, "Memory map").
fn region_floor() -> u64 {
    (kernel_image().data.end + 1).next_multiple_of(LARGE_PAGE_SIZE)
}

/// Pages of the VM's tables after its memory: NPT 3, IOPM 3, MSRPM 2.
const VM_TABLE_PAGES: u64 = 8;

/// What the preparation decided, for the plan and the report.
pub struct Prepared {
    /// Each node's region, `None` for nodes without sidecar CPUs.
    pub regions: heapless::Vec<Option<NodeRegion>, MAX_NODES>,
    /// Pages of all regions together.
    pub total_pages: u64,
    /// The guest's memory.
    pub guest: GuestRegion,
    /// The base VPs' main-kernel memory (after the guest's).
    pub base_vps: BaseVpArea,
}

/// Why the preparation failed.
pub enum PrepareError {
    /// Not enough RAM for the regions.
    OutOfMemory(OutOfMemory),
    /// The trampoline page is not usable RAM.
    TrampolinePage(u64),
    /// The kernel image is larger than the shared tables map.
    ImageTooLarge(u64),
    /// The guest memory cannot be mapped by nested page tables.
    GuestMemory,
    /// The node regions span more than the fan-out window maps.
    RegionsTooLarge(u64),
}

impl core::fmt::Display for PrepareError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PrepareError::OutOfMemory(err) => write!(f, "{err}"),
            PrepareError::TrampolinePage(page) => {
                write!(f, "the AP trampoline page {page:#x} is not usable RAM")
            }
            PrepareError::GuestMemory => f.write_str("the guest memory cannot be nested-mapped"),
            PrepareError::RegionsTooLarge(bytes) => write!(
                f,
                "the node regions take {bytes} bytes, more than the 1 GiB the fan-out window maps"
            ),
            PrepareError::ImageTooLarge(end) => {
                write!(
                    f,
                    "the kernel image ends at {end:#x}, past the 4 MiB its tables map"
                )
            }
        }
    }
}

fn kernel_image() -> KernelImage {
    unsafe extern "C" {
        static __kernel_start: u8;
        static __rodata_start: u8;
        static __data_start: u8;
        static __kernel_end: u8;
    }
    let address = |symbol: *const u8| symbol as u64;
    KernelImage {
        text: address(&raw const __kernel_start)..address(&raw const __rodata_start),
        rodata: address(&raw const __rodata_start)..address(&raw const __data_start),
        data: address(&raw const __data_start)..address(&raw const __kernel_end),
    }
}

/// Zeroes `pages` pages at physical address `phys`.
///
/// # Safety
///
/// The range must be RAM inside the identity map that nothing else uses.
unsafe fn zero_pages(phys: u64, pages: u64) {
    // SAFETY: the caller guarantees the range is unused, identity-mapped RAM.
    unsafe { core::ptr::write_bytes(phys as *mut u8, 0, (pages * PAGE_SIZE) as usize) };
}

/// Lays out and allocates every node's region (not zeroed: each CPU's
/// starter zeroes its pages, the BSP the control pages).
fn allocate_regions(
    topology: &Topology,
    map: &[MemmapEntry],
) -> Result<(heapless::Vec<Option<NodeRegion>, MAX_NODES>, u64), PrepareError> {
    let total_pages: u64 = topology
        .nodes
        .iter()
        .filter(|n| n.sidecar_count > 0)
        .map(|n| NodeRegion::pages_required(u64::from(n.vp_count)))
        .sum();
    let base = memory::find_ram(
        map,
        region_floor(),
        IDENTITY_MAPPED_END,
        total_pages * PAGE_SIZE,
    )
    .map_err(PrepareError::OutOfMemory)?;

    let mut regions = heapless::Vec::new();
    let mut next = base;
    for node in &topology.nodes {
        let region = (node.sidecar_count > 0).then(|| NodeRegion {
            base: next,
            cpu_count: u64::from(node.vp_count),
        });
        if let Some(region) = region {
            next = region.end();
        }
        // Capacity: one entry per node, at most MAX_CPUS nodes.
        let _ = regions.push(region);
    }
    Ok((regions, total_pages))
}

/// Zeroes and writes the node's control page: header, base VP and removed
/// CPUs REMOVED, the rest RUN.
fn init_control_page(topology: &Topology, node_index: usize, region: &NodeRegion) {
    let node = topology.nodes[node_index];
    // SAFETY: the control page is RAM in this node's region, identity mapped,
    // that nothing uses before the first start.
    unsafe { zero_pages(region.control_page(), 1) };
    // SAFETY: the control page is zeroed RAM in this node's region, identity
    // mapped; all-zero is a valid `ControlPage` and its fields are atomic.
    let page = unsafe { &*(region.control_page() as *const ControlPage) };
    // The node has at most 32 CPUs, far below the page's limit.
    let _ = page.init_node(
        node.index,
        node.base_vp,
        node.vp_count,
        u32::from(REQUEST_VECTOR),
    );
    for cpu in &topology.cpus[node.base_vp as usize..(node.base_vp + node.vp_count) as usize] {
        if cpu.role == Role::Removed {
            if let Some(status) = page.status((cpu.vp - node.base_vp) as usize) {
                status.store(CpuStatus::REMOVED, Ordering::Release);
            }
        }
    }
}

/// Copies the trampoline to its page below 1 MiB.
fn install_trampoline(map: &[MemmapEntry]) -> Result<(), PrepareError> {
    let page = u64::from(TRAMPOLINE_PAGE) * PAGE_SIZE;
    if !memory::is_ram(map, page) {
        return Err(PrepareError::TrampolinePage(page));
    }
    let code = ap_trampoline();
    // SAFETY: the page is usable RAM (checked above) in the identity map that
    // nothing else uses after boot, and the trampoline is far smaller than a
    // page.
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), page as *mut u8, code.len()) };
    Ok(())
}

/// Allocates the guest's memory, 2 MiB aligned, above `floor`, and room
/// for its SVM tables after it. Nothing is written: [`finish`] zeroes the
/// memory and builds the tables once the CPUs are up.
fn allocate_guest_memory(map: &[MemmapEntry], floor: u64) -> Result<GuestRegion, PrepareError> {
    const LARGE: u64 = 2 << 20;
    let size = GUEST_MEMORY_BYTES;
    let tables = VM_TABLE_PAGES * PAGE_SIZE;
    // Ask for one large page more so that the start can be aligned.
    let start = memory::find_ram(map, floor, IDENTITY_MAPPED_END, size + tables + LARGE)
        .map_err(PrepareError::OutOfMemory)?;
    let host_base = start.next_multiple_of(LARGE);
    // Checked now, so that building the tables in `finish` cannot fail.
    npt::validate(host_base, size).map_err(|_| PrepareError::GuestMemory)?;
    let npt = host_base + size;
    Ok(GuestRegion {
        host_base,
        size,
        npt,
        iopm: npt + 3 * PAGE_SIZE,
        msrpm: npt + 6 * PAGE_SIZE,
    })
}

/// Zeroes the guest's memory and builds its SVM tables: the nested page
/// tables and the I/O and MSR permission maps, all ones (every port and
/// every MSR intercepted).
fn fill_guest_memory(guest: &GuestRegion) -> Result<(), PrepareError> {
    // SAFETY: the guest memory and its tables are usable RAM in the
    // identity map that `allocate_guest_memory` set aside, and nothing uses
    // them yet.
    unsafe {
        zero_pages(guest.host_base, guest.size / PAGE_SIZE);
        zero_pages(guest.npt, VM_TABLE_PAGES);
        core::ptr::write_bytes(guest.iopm as *mut u8, 0xFF, 5 * PAGE_SIZE as usize);
    }
    // SAFETY: the three NPT pages follow guest memory, zeroed, the VM's own.
    let npt_tables = unsafe { &mut *(guest.npt as *mut npt::NestedTables) };
    npt_tables
        .build(guest.npt, guest.host_base, guest.size)
        .map_err(|_| PrepareError::GuestMemory)?;
    Ok(())
}

/// What the preparation leaves until the CPUs are up, because no CPU reads
/// it before the main kernel runs: the guest's memory and its SVM tables
/// (read once the VMM runs a guest) and the base VPs' main-kernel memory
/// (used once the main kernel starts them), all zeroed or filled here. BSP,
/// after [`crate::boot::fanout::wait_for_all`]: before its first INIT this
/// work would only delay every start (see docs/boot.md, §1).
pub fn finish(prepared: &Prepared) -> Result<(), PrepareError> {
    fill_guest_memory(&prepared.guest)?;
    let base_vps = &prepared.base_vps;
    // SAFETY: `allocate_base_vp_area` set the blocks aside in usable RAM
    // below the identity map's end; nothing uses them before the main
    // kernel starts the base VPs, after this.
    unsafe {
        zero_pages(
            base_vps.base,
            BaseVpArea::bytes_required(base_vps.blocks + 1) / PAGE_SIZE,
        )
    };
    Ok(())
}

/// Allocates the main-kernel memory of the base VPs of nodes 1 and up, at
/// or above `floor` ([`finish`] zeroes it).
fn allocate_base_vp_area(
    map: &[MemmapEntry],
    floor: u64,
    topology: &Topology,
) -> Result<BaseVpArea, PrepareError> {
    let nodes = topology.nodes.len() as u32;
    let bytes = BaseVpArea::bytes_required(nodes);
    let base = memory::find_ram(map, floor, IDENTITY_MAPPED_END, bytes.max(PAGE_SIZE))
        .map_err(PrepareError::OutOfMemory)?;
    Ok(BaseVpArea {
        base,
        blocks: nodes.saturating_sub(1),
    })
}

/// Does the whole preparation; every sidecar CPU gets `hooks` (the
/// production run's do nothing).
pub fn prepare(
    topology: &Topology,
    map: &[MemmapEntry],
    hooks: &'static dyn RuntimeHooks,
) -> Result<Prepared, PrepareError> {
    for cpu in &topology.cpus {
        percpu::set_vp(cpu.apic_id, cpu.vp);
    }
    let (regions, total_pages) = allocate_regions(topology, map)?;
    let regions_end = regions
        .iter()
        .flatten()
        .map(|r| r.end())
        .max()
        .unwrap_or_else(region_floor);
    let guest = allocate_guest_memory(map, regions_end.max(region_floor()))?;
    let base_vps = allocate_base_vp_area(map, guest.msrpm + 2 * PAGE_SIZE, topology)?;

    let regions_start = regions_end - total_pages * PAGE_SIZE;
    let window = FanoutWindow::covering(regions_start..regions_end)
        .ok_or(PrepareError::RegionsTooLarge(total_pages * PAGE_SIZE))?;

    let shared_ptr = &raw mut SHARED_TABLES;
    // SAFETY: only the BSP touches the shared tables, once, before any AP
    // runs on them.
    let shared = unsafe { &mut *shared_ptr };
    let shared_phys = shared_ptr as u64;
    shared
        .build(shared_phys, &kernel_image(), XAPIC_BASE)
        .map_err(|err| PrepareError::ImageTooLarge(err.end))?;
    shared.map_guest_memory(shared_phys, guest.host_base, guest.size);
    shared.map_fanout_window(shared_phys, &window);
    map_in_boot_tables(
        FANOUT_PML4_SLOT,
        SharedTables::fanout_pdpt_address(shared_phys),
    );
    cpu_setup::publish(Setup {
        shared: SharedPdpts::of(shared_phys),
        window,
        hooks,
    });

    for (node_index, region) in regions.iter().enumerate() {
        if let Some(region) = region {
            init_control_page(topology, node_index, region);
        }
    }
    install_trampoline(map)?;
    Ok(Prepared {
        regions,
        total_pages,
        guest,
        base_vps,
    })
}

/// Reads the firmware's memory map from the PVH start info.
pub fn read_memmap(paddr: u64, entries: u32) -> heapless::Vec<MemmapEntry, 128> {
    let size = core::mem::size_of::<MemmapEntry>();
    let mut map = heapless::Vec::new();
    for i in 0..u64::from(entries).min(128) {
        let Some(bytes) = IdentityMapped.bytes(paddr + i * size as u64, size) else {
            break;
        };
        // SAFETY: `bytes` holds `size_of::<MemmapEntry>()` readable bytes and
        // the entry is plain integers, valid for any bit pattern.
        let entry = unsafe { bytes.as_ptr().cast::<MemmapEntry>().read_unaligned() };
        let _ = map.push(entry);
    }
    map
}
