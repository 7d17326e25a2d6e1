//! The machine plan: what the BSP decided about the machine before the
//! first AP started, fixed for the rest of the run.
//!
//! It holds the CPUs and nodes ([`Topology`]), each node's physical region
//! ([`NodeRegion`]), where the guest's memory and its SVM tables are
//! ([`GuestRegion`]), and how the APs are started ([`StartOptions`]). The
//! BSP builds it in `boot::prepare`, publishes it once with [`publish`], and
//! from then on every CPU reads it through the one accessor, [`get`]. Nothing
//! in it changes after publication, so shared references are all anyone
//! needs.

use spin::Once;

use crate::cmdline::{ApDelay, BootStrategy};
use crate::layout::NodeRegion;
use crate::topology::Topology;
use crate::topology::MAX_NODES;

/// Guest memory every VP of the VM shares: the guest programs below 1 MiB,
/// then a checksum page and a stack page for each of up to `MAX_CPUS` VPs
/// (see `vmm`), in whole 2 MiB pages.
pub const GUEST_MEMORY_BYTES: u64 = 6 << 20;

/// Where the VM's guest memory and its SVM tables live in host physical
/// memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRegion {
    /// Host physical address of guest physical address 0 (2 MiB aligned).
    pub host_base: u64,
    /// Size in bytes.
    pub size: u64,
    /// The nested page tables' three pages (PML4, PDPT, PD), contiguous.
    pub npt: u64,
    /// The I/O permission map (3 pages, every port intercepted).
    pub iopm: u64,
    /// The MSR permission map (2 pages, every MSR intercepted).
    pub msrpm: u64,
}

/// How the APs are started (from the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartOptions {
    /// Who starts the APs.
    pub strategy: BootStrategy,
    /// INIT-SIPI-SIPI waits.
    pub delay: ApDelay,
    /// A VP that gets INIT but no SIPI (a self-test of the boot timeout,
    /// or of a base VP that does not start).
    pub unresponsive: Option<u32>,
    /// A VP whose startup IPIs come only after its boot timeout (a
    /// self-test of a late arrival).
    pub late: Option<u32>,
}

/// Pages of main-kernel memory each base VP other than the BSP gets (its
/// stack, descriptor tables and executor: see `main_kernel::node`).
pub const BASE_VP_PAGES: u64 = 48;

/// Where the base VPs of nodes 1 and up find their main-kernel memory: one
/// block of [`BASE_VP_PAGES`] pages per node after node 0, in node order.
/// Not sidecar's: no sidecar CPU maps it, and `--main linux` leaves it to
/// Linux.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseVpArea {
    /// Physical address of node 1's block (page aligned, identity mapped).
    pub base: u64,
    /// Blocks: the node count minus one.
    pub blocks: u32,
}

impl BaseVpArea {
    /// Bytes the blocks of `nodes` nodes take.
    pub const fn bytes_required(nodes: u32) -> u64 {
        nodes.saturating_sub(1) as u64 * BASE_VP_PAGES * crate::layout::PAGE_SIZE
    }

    /// The physical address of `node`'s block (`None` for node 0, the
    /// BSP's, and past the last node).
    pub fn block(&self, node: u32) -> Option<u64> {
        let index = node.checked_sub(1).filter(|&i| i < self.blocks)?;
        Some(self.base + u64::from(index) * BASE_VP_PAGES * crate::layout::PAGE_SIZE)
    }
}

/// Everything the BSP decided about the machine.
pub struct MachinePlan {
    /// The CPUs and nodes.
    pub topology: Topology,
    /// Each node's region (`None` for a node without sidecar CPUs).
    pub regions: heapless::Vec<Option<NodeRegion>, MAX_NODES>,
    /// How the APs are started.
    pub start: StartOptions,
    /// The VM's guest memory.
    pub guest: GuestRegion,
    /// The base VPs' main-kernel memory.
    pub base_vps: BaseVpArea,
}

/// Where one CPU's pages are: its node's region and its index in the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPages {
    /// The node's region.
    pub region: NodeRegion,
    /// The CPU's index within its node (its slot in the control page).
    pub index: u64,
}

impl MachinePlan {
    /// Where VP `vp`'s pages are, if its node has a region.
    pub fn cpu_pages(&self, vp: u32) -> Option<CpuPages> {
        let cpu = self.topology.cpus.get(vp as usize)?;
        let node = self.topology.nodes.get(cpu.node as usize)?;
        let region = (*self.regions.get(cpu.node as usize)?)?;
        Some(CpuPages {
            region,
            index: u64::from(vp - node.base_vp),
        })
    }

    /// The control page of `node`, read through the identity map (main
    /// kernel CPUs only; a sidecar CPU reaches its own through its window).
    #[cfg(target_os = "none")]
    pub fn control_page(&self, node: usize) -> Option<&'static crate::abi::ControlPage> {
        let region = (*self.regions.get(node)?)?;
        // SAFETY: the region was allocated from usable RAM below 4 GiB, which
        // the BSP's identity map covers; the control page is a page-aligned,
        // zero-initialized `ControlPage` that lives for the rest of the run,
        // and every field is atomic, so shared references are sound.
        Some(unsafe { &*(region.control_page() as *const crate::abi::ControlPage) })
    }
}

static PLAN: Once<MachinePlan> = Once::new();

/// Publishes the plan (BSP, once, before the first AP starts).
pub fn publish(plan: MachinePlan) -> &'static MachinePlan {
    PLAN.call_once(|| plan)
}

/// The plan, on any CPU after the BSP published it.
pub fn get() -> &'static MachinePlan {
    PLAN.get()
        .expect("the BSP publishes the machine plan before starting any CPU")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::FirmwareCpu;

    #[test]
    fn cpu_pages_index_cpus_within_their_node() {
        let cpus: heapless::Vec<FirmwareCpu, { crate::MAX_CPUS }> = (0..40)
            .map(|apic_id| FirmwareCpu { apic_id, domain: 0 })
            .collect();
        let topology = Topology::new(&cpus, 0, &crate::topology::CpuSet::new()).unwrap();
        let mut regions = heapless::Vec::new();
        for (i, _) in topology.nodes.iter().enumerate() {
            let _ = regions.push(Some(NodeRegion {
                base: 0x100_0000 * (i as u64 + 1),
                cpu_count: 32,
            }));
        }
        let second_node_base = topology.nodes[1].base_vp;
        let plan = MachinePlan {
            topology,
            regions,
            start: StartOptions {
                strategy: BootStrategy::Fanout,
                delay: ApDelay::None,
                unresponsive: None,
                late: None,
            },
            guest: GuestRegion {
                host_base: 0,
                size: GUEST_MEMORY_BYTES,
                npt: 0,
                iopm: 0,
                msrpm: 0,
            },
            base_vps: BaseVpArea {
                base: 0x800_0000,
                blocks: 1,
            },
        };
        let first = plan.cpu_pages(3).unwrap();
        assert_eq!((first.region.base, first.index), (0x100_0000, 3));
        let second = plan.cpu_pages(second_node_base + 2).unwrap();
        assert_eq!((second.region.base, second.index), (0x200_0000, 2));
        assert_eq!(plan.cpu_pages(40), None);
    }

    #[test]
    fn base_vp_blocks_follow_each_other_from_node_one() {
        let area = BaseVpArea {
            base: 0x800_0000,
            blocks: 2,
        };
        let block = BASE_VP_PAGES * crate::layout::PAGE_SIZE;
        assert_eq!(area.block(0), None);
        assert_eq!(area.block(1), Some(0x800_0000));
        assert_eq!(area.block(2), Some(0x800_0000 + block));
        assert_eq!(area.block(3), None);
        assert_eq!(BaseVpArea::bytes_required(3), 2 * block);
        assert_eq!(BaseVpArea::bytes_required(1), 0);
    }
}
