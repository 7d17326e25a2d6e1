//! Where things are: the per-CPU virtual window and each node's physical
//! memory region.
//!
//! Every sidecar CPU runs on its own page tables, which map the kernel image
//! (shared tables) and, in one fixed virtual window, only that CPU's own
//! pages. The window is at the same virtual address on every CPU, so code
//! reaches "my command page" or "my stack" through a constant and can never
//! name another CPU's page: it is simply not mapped.
//!
//! Each node gets one physically contiguous region: its control page, then
//! the pages its CPUs share with the main kernel, then their private pages.
//! [`NodeRegion`] computes that layout; it is pure arithmetic, tested on the
//! host.

pub use crate::paging::PAGE_SIZE;
use crate::paging::{ENTRIES_PER_TABLE, LARGE_PAGE_SIZE};

/// Base of the per-CPU window: the start of the second PML4 slot (512 GiB),
/// far from the identity-mapped low memory the kernel image lives in.
pub const WINDOW_BASE: u64 = 512 << 30;

/// Where every sidecar CPU sees the guest's memory: guest physical address
/// `gpa` is at `GUEST_WINDOW_BASE + gpa` (the third PML4 slot, 1 TiB). The
/// same shared tables map it on every CPU, as all VPs share one VM.
pub const GUEST_WINDOW_BASE: u64 = 1 << 40;

/// Where the node regions appear while CPUs are being started: the start of
/// the fourth PML4 slot (1.5 TiB). See [`FanoutWindow`].
pub const FANOUT_WINDOW_BASE: u64 = 3 << 39;

/// The most guest memory a VM has: what one page directory of 2 MiB pages
/// maps (1 GiB), both in the guest window and in the nested page tables.
pub const MAX_GUEST_MEMORY: u64 = ENTRIES_PER_TABLE as u64 * LARGE_PAGE_SIZE;

/// The pages of the per-CPU window, by page index from [`WINDOW_BASE`].
/// Unlisted indexes are unmapped: they are the guard pages, and index 0.
///
/// Index 0 stays unmapped because of the local APIC: under QEMU's TCG the
/// software TLB is direct-mapped by virtual page number, and up to 512
/// entries the APIC's page (`0xFEE0_0000`, its page number ending in nine
/// zero bits) falls into the same entry as the window's first page. Every
/// command touches both (the EOI and the response IPI, the status byte);
/// with the control page at index 0, the command's service time was ~9%
/// longer for either loop (docs/protocol.md).
pub mod window {
    use super::{PAGE_SIZE, WINDOW_BASE};

    /// The node's control page (the same physical page on every CPU of the
    /// node).
    pub const CONTROL_PAGE: u64 = 1;
    /// This CPU's command page.
    pub const COMMAND_PAGE: u64 = 2;
    /// This CPU's register page.
    pub const REGISTER_PAGE: u64 = 3;
    /// This CPU's globals (descriptor tables, executor, per-CPU state).
    pub const GLOBALS: u64 = 4;
    /// The double-fault stack (one page, a guard page below it at index 5).
    pub const FAULT_STACK: u64 = 6;
    /// The first page of the kernel stack (a guard page below it at index 7).
    pub const STACK: u64 = 8;
    /// The VMCB of the CPU's VP (after the stack and a guard page).
    pub const VMCB: u64 = STACK + super::STACK_PAGES + 1;

    /// The virtual address of window page `index`.
    pub const fn address(index: u64) -> u64 {
        WINDOW_BASE + index * PAGE_SIZE
    }

    /// The top of the kernel stack (where RSP starts).
    pub const fn stack_top() -> u64 {
        address(STACK + super::STACK_PAGES)
    }

    /// The top of the double-fault stack.
    pub const fn fault_stack_top() -> u64 {
        address(FAULT_STACK + 1)
    }
}

/// Pages of kernel stack per sidecar CPU.
pub const STACK_PAGES: u64 = 4;

// The whole window fits in one page table (2 MiB).
const _: () = assert!(window::STACK + STACK_PAGES <= ENTRIES_PER_TABLE as u64);

/// Pages per CPU shared with the main kernel: the command page and the
/// register page.
pub const SHARED_PAGES_PER_CPU: u64 = 2;

/// Private pages per CPU: four page-table pages (PML4, PDPT, PD, PT), the
/// globals page, the double-fault stack, the kernel stack, and the VP's
/// VMCB and the host save area VMRUN uses.
pub const PRIVATE_PAGES_PER_CPU: u64 = 4 + 1 + 1 + STACK_PAGES + 2;

/// Every page one CPU costs in its node's region.
pub const PAGES_PER_CPU: u64 = SHARED_PAGES_PER_CPU + PRIVATE_PAGES_PER_CPU;

/// The private pages of one CPU, by offset within its private block.
pub mod private {
    /// The PML4.
    pub const PML4: u64 = 0;
    /// The PDPT that holds the window.
    pub const PDPT: u64 = 1;
    /// The page directory that holds the window.
    pub const PD: u64 = 2;
    /// The page table of the window.
    pub const PT: u64 = 3;
    /// The globals page.
    pub const GLOBALS: u64 = 4;
    /// The double-fault stack.
    pub const FAULT_STACK: u64 = 5;
    /// The first kernel stack page.
    pub const STACK: u64 = 6;
    /// The VMCB.
    pub const VMCB: u64 = STACK + super::STACK_PAGES;
    /// The host save area (never mapped: only VMRUN touches it, by physical
    /// address).
    pub const HOST_SAVE: u64 = VMCB + 1;
}

/// The layout of one node's physical region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeRegion {
    /// Physical address of the region (page aligned).
    pub base: u64,
    /// CPUs in the node (its base VP included: pages are indexed by the
    /// CPU's index within the node).
    pub cpu_count: u64,
}

impl NodeRegion {
    /// Pages a node of `cpu_count` CPUs needs: the control page plus
    /// [`PAGES_PER_CPU`] per CPU.
    pub const fn pages_required(cpu_count: u64) -> u64 {
        1 + PAGES_PER_CPU * cpu_count
    }

    /// Bytes a node of `cpu_count` CPUs needs.
    pub const fn bytes_required(cpu_count: u64) -> u64 {
        Self::pages_required(cpu_count) * PAGE_SIZE
    }

    /// The control page.
    pub const fn control_page(&self) -> u64 {
        self.base
    }

    /// The command page of the CPU with index `cpu` within the node.
    pub const fn command_page(&self, cpu: u64) -> u64 {
        self.base + (1 + SHARED_PAGES_PER_CPU * cpu) * PAGE_SIZE
    }

    /// The register page of CPU `cpu`.
    pub const fn register_page(&self, cpu: u64) -> u64 {
        self.command_page(cpu) + PAGE_SIZE
    }

    /// Private page `page` (one of [`private`]) of CPU `cpu`.
    pub const fn private_page(&self, cpu: u64, page: u64) -> u64 {
        let private_base = self.base + (1 + SHARED_PAGES_PER_CPU * self.cpu_count) * PAGE_SIZE;
        private_base + (PRIVATE_PAGES_PER_CPU * cpu + page) * PAGE_SIZE
    }

    /// One past the region's last byte.
    pub const fn end(&self) -> u64 {
        self.base + Self::bytes_required(self.cpu_count)
    }
}

/// The node regions as every starter sees them during the fan-out.
///
/// A CPU's pages are built by the CPU that starts it, which may be a
/// sidecar CPU whose own tables map nothing else of the regions. So every
/// CPU's tables, and the BSP's, map all node regions (which lie together,
/// one allocation) at [`FANOUT_WINDOW_BASE`] with 2 MiB pages for as long
/// as the CPU helps start others; a sidecar CPU unmaps the window from its
/// own tables before it reports ready, and from then on maps only its own
/// pages. The window is the regions rounded out to 2 MiB, at most 1 GiB
/// (one page directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanoutWindow {
    /// The physical address at [`FANOUT_WINDOW_BASE`] (2 MiB aligned).
    pub phys_base: u64,
    /// Bytes mapped (a multiple of 2 MiB).
    pub size: u64,
}

impl FanoutWindow {
    /// The window covering the physical range `regions`, or `None` when it
    /// needs more than one page directory.
    pub fn covering(regions: core::ops::Range<u64>) -> Option<Self> {
        let phys_base = regions.start - regions.start % LARGE_PAGE_SIZE;
        let size = regions.end.next_multiple_of(LARGE_PAGE_SIZE) - phys_base;
        (size <= ENTRIES_PER_TABLE as u64 * LARGE_PAGE_SIZE).then_some(Self { phys_base, size })
    }

    /// The window's virtual address for physical address `phys`, if the
    /// window covers it.
    pub fn virt(&self, phys: u64) -> Option<u64> {
        let offset = phys.checked_sub(self.phys_base)?;
        (offset < self.size).then_some(FANOUT_WINDOW_BASE + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_pages_are_distinct_and_guarded() {
        assert_eq!(window::address(0), WINDOW_BASE);
        assert_eq!(
            window::stack_top() - window::address(window::STACK),
            STACK_PAGES * PAGE_SIZE
        );
        // Guard pages: nothing is mapped just below either stack.
        for guard in [window::FAULT_STACK - 1, window::STACK - 1] {
            assert!(![
                window::CONTROL_PAGE,
                window::COMMAND_PAGE,
                window::REGISTER_PAGE,
                window::GLOBALS,
                window::FAULT_STACK
            ]
            .contains(&guard));
        }
    }

    #[test]
    fn node_region_pages_do_not_overlap() {
        let region = NodeRegion {
            base: 0x100_0000,
            cpu_count: 5,
        };
        let mut pages = std::vec![region.control_page()];
        for cpu in 0..5 {
            pages.push(region.command_page(cpu));
            pages.push(region.register_page(cpu));
            for page in 0..PRIVATE_PAGES_PER_CPU {
                pages.push(region.private_page(cpu, page));
            }
        }
        let count = pages.len() as u64;
        assert_eq!(count, NodeRegion::pages_required(5));
        pages.sort_unstable();
        pages.dedup();
        assert_eq!(pages.len() as u64, count, "two uses of one page");
        assert!(pages.iter().all(|p| p % PAGE_SIZE == 0));
        assert_eq!(*pages.first().unwrap(), region.base);
        assert_eq!(*pages.last().unwrap() + PAGE_SIZE, region.end());
    }

    #[test]
    fn fanout_window_covers_the_regions_in_large_pages() {
        let window = FanoutWindow::covering(0x30_1000..0x70_5000).unwrap();
        assert_eq!(window.phys_base, 0x20_0000);
        assert_eq!(window.size, 0x60_0000);
        assert_eq!(window.virt(0x30_1000), Some(FANOUT_WINDOW_BASE + 0x10_1000));
        assert_eq!(window.virt(0x1F_F000), None);
        assert_eq!(window.virt(0x80_0000), None);
        assert_eq!(window.virt(0x7F_F000), Some(FANOUT_WINDOW_BASE + 0x5F_F000));
        // More than one page directory maps.
        assert_eq!(FanoutWindow::covering(0x20_0000..0x4020_0001), None);
        assert!(FanoutWindow::covering(0x20_0000..0x4020_0000).is_some());
    }

    #[test]
    fn per_cpu_cost() {
        // OpenHCL's sidecar spends 13 pages per CPU; see docs/boot.md.
        assert_eq!(PAGES_PER_CPU, 14);
        assert_eq!(NodeRegion::bytes_required(32), (1 + 14 * 32) * 4096);
    }
}
