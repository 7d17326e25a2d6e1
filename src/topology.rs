//! From the firmware's CPU list to sidecar's nodes.
//!
//! A CPU's *VP index* is its position among the enabled CPUs of the MADT (the
//! BSP must be VP 0). A *node* is a run of consecutive VP indexes in one NUMA
//! proximity domain, at most [`MAX_NODE_CPUS`] long. A domain's run of n
//! CPUs is split as OpenHCL's boot shim splits it: into ⌈n/32⌉ nodes of
//! ⌈n/⌈n/32⌉⌉ CPUs each, the last one taking the rest (70 CPUs make nodes
//! of 24, 24 and 22, not 32, 32 and 6), so that no node is left tiny. The first CPU of every node (its *base VP*)
//! belongs to the main kernel, as do CPUs the command line marks removed; the
//! rest are sidecar CPUs. Pure logic, unit-tested on the host.

use core::fmt;

use crate::MAX_CPUS;

/// The most CPUs in one node: one control page serves at most this many, and
/// the node's CPUs are tracked in 32-bit masks.
pub const MAX_NODE_CPUS: usize = 32;

/// The most nodes: QEMU makes at most 128 NUMA nodes, and a node never
/// spans two of them (a machine with more NUMA nodes than this is refused).
pub const MAX_NODES: usize = 128;

/// A set of VP indexes, as a fixed-size bitmap.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSet {
    bits: [u64; MAX_CPUS / 64],
}

impl CpuSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self {
            bits: [0; MAX_CPUS / 64],
        }
    }

    /// Adds `vp`; returns false if it is out of range.
    pub fn insert(&mut self, vp: usize) -> bool {
        if vp >= MAX_CPUS {
            return false;
        }
        self.bits[vp / 64] |= 1 << (vp % 64);
        true
    }

    /// Whether `vp` is in the set.
    pub fn contains(&self, vp: usize) -> bool {
        vp < MAX_CPUS && self.bits[vp / 64] & (1 << (vp % 64)) != 0
    }

    /// The members, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_CPUS).filter(|&vp| self.contains(vp))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&word| word == 0)
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// One CPU as the firmware describes it, in MADT order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareCpu {
    /// The local APIC ID.
    pub apic_id: u32,
    /// The NUMA proximity domain (0 when there is no SRAT).
    pub domain: u32,
}

/// Who runs a CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The BSP or a node's base VP: the main kernel's.
    MainKernel,
    /// Marked removed on the command line: the main kernel keeps it.
    Removed,
    /// Runs sidecar.
    Sidecar,
}

/// One CPU of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// The VP index.
    pub vp: u32,
    /// The local APIC ID.
    pub apic_id: u32,
    /// The node (index into [`Topology::nodes`]).
    pub node: u32,
    /// Who runs it.
    pub role: Role,
}

/// A contiguous run of CPUs that share one control page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// Index of this node.
    pub index: u32,
    /// The NUMA proximity domain.
    pub domain: u32,
    /// The first VP index; the main kernel's.
    pub base_vp: u32,
    /// Number of CPUs, base VP included.
    pub vp_count: u32,
    /// Number of CPUs that run sidecar.
    pub sidecar_count: u32,
}

impl Node {
    /// Whether `vp` belongs to this node.
    pub fn contains(&self, vp: u32) -> bool {
        (self.base_vp..self.base_vp + self.vp_count).contains(&vp)
    }
}

/// The machine's CPUs and nodes.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// Every enabled CPU, indexed by VP index.
    pub cpus: heapless::Vec<Cpu, MAX_CPUS>,
    /// The nodes, in VP order.
    pub nodes: heapless::Vec<Node, MAX_NODES>,
}

/// Why the CPU list cannot be turned into nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyError {
    /// The firmware lists no CPU.
    NoCpus,
    /// More CPUs than [`MAX_CPUS`].
    TooManyCpus(usize),
    /// The CPUs make more nodes than [`MAX_NODES`].
    TooManyNodes,
    /// The BSP is not the first CPU listed.
    BspNotFirst {
        /// The BSP's APIC ID.
        bsp_apic_id: u32,
        /// The first listed APIC ID.
        first_apic_id: u32,
    },
    /// The BSP's APIC ID is not listed at all.
    BspMissing(u32),
    /// A removed VP index does not exist.
    RemovedOutOfRange {
        /// The VP index.
        vp: usize,
        /// The number of CPUs.
        cpus: usize,
    },
    /// The BSP (VP 0) cannot be removed: it runs the main kernel.
    RemovedBsp,
    /// Two enabled CPUs have the same APIC ID (a broken MADT): starting
    /// the second would reset the first (or the BSP).
    DuplicateApicId {
        /// The APIC ID.
        apic_id: u32,
        /// The VP index of its first entry.
        first: usize,
        /// The VP index of the second.
        second: usize,
    },
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TopologyError::NoCpus => f.write_str("the firmware lists no enabled CPU"),
            TopologyError::TooManyCpus(n) => {
                write!(f, "{n} CPUs listed, sidecar supports at most {MAX_CPUS}")
            }
            TopologyError::TooManyNodes => write!(
                f,
                "the CPUs' NUMA domains make more than {MAX_NODES} nodes, the most sidecar supports"
            ),
            TopologyError::BspNotFirst {
                bsp_apic_id,
                first_apic_id,
            } => write!(
                f,
                "the BSP (APIC ID {bsp_apic_id}) must be the first CPU listed, \
                 but APIC ID {first_apic_id} is"
            ),
            TopologyError::BspMissing(id) => {
                write!(f, "the BSP's APIC ID {id} is not among the listed CPUs")
            }
            TopologyError::RemovedOutOfRange { vp, cpus } => write!(
                f,
                "removed CPU {vp} does not exist (VP indexes are 0..{cpus})"
            ),
            TopologyError::RemovedBsp => {
                f.write_str("CPU 0 (the BSP) cannot be removed: it runs the main kernel")
            }
            TopologyError::DuplicateApicId {
                apic_id,
                first,
                second,
            } => write!(
                f,
                "the firmware lists APIC ID {apic_id} twice (CPUs {first} and {second}): \
                 starting the second would reset the first"
            ),
        }
    }
}

impl Topology {
    /// Groups `cpus` (enabled CPUs in MADT order) into nodes. `bsp_apic_id`
    /// is the running CPU's; `removed` are VP indexes sidecar must not start.
    pub fn new(
        cpus: &[FirmwareCpu],
        bsp_apic_id: u32,
        removed: &CpuSet,
    ) -> Result<Self, TopologyError> {
        let count = cpus.len();
        let first = cpus.first().ok_or(TopologyError::NoCpus)?;
        if count > MAX_CPUS {
            return Err(TopologyError::TooManyCpus(count));
        }
        if first.apic_id != bsp_apic_id {
            return Err(if cpus.iter().any(|c| c.apic_id == bsp_apic_id) {
                TopologyError::BspNotFirst {
                    bsp_apic_id,
                    first_apic_id: first.apic_id,
                }
            } else {
                TopologyError::BspMissing(bsp_apic_id)
            });
        }
        if removed.contains(0) {
            return Err(TopologyError::RemovedBsp);
        }
        if let Some(vp) = removed.iter().find(|&vp| vp >= count) {
            return Err(TopologyError::RemovedOutOfRange { vp, cpus: count });
        }
        // Quadratic, but once at boot over at most MAX_CPUS entries, with no
        // allocator for a set of 32-bit IDs.
        for (second, cpu) in cpus.iter().enumerate() {
            if let Some(first) = cpus[..second].iter().position(|c| c.apic_id == cpu.apic_id) {
                return Err(TopologyError::DuplicateApicId {
                    apic_id: cpu.apic_id,
                    first,
                    second,
                });
            }
        }

        let mut topology = Topology::default();
        let mut node_size = 0;
        for (vp, cpu) in cpus.iter().enumerate() {
            let run_starts = vp == 0 || cpus[vp - 1].domain != cpu.domain;
            if run_starts {
                node_size = node_size_of_run(domain_run_length(&cpus[vp..]));
            }
            let starts_node = match topology.nodes.last() {
                None => true,
                Some(node) => run_starts || node.vp_count as usize == node_size,
            };
            if starts_node {
                let index = topology.nodes.len() as u32;
                let node = Node {
                    index,
                    domain: cpu.domain,
                    base_vp: vp as u32,
                    vp_count: 0,
                    sidecar_count: 0,
                };
                topology
                    .nodes
                    .push(node)
                    .map_err(|_| TopologyError::TooManyNodes)?;
            }
            let node = topology.nodes.last_mut().expect("a node was just pushed");
            let role = if starts_node {
                Role::MainKernel
            } else if removed.contains(vp) {
                Role::Removed
            } else {
                node.sidecar_count += 1;
                Role::Sidecar
            };
            node.vp_count += 1;
            let _ = topology.cpus.push(Cpu {
                vp: vp as u32,
                apic_id: cpu.apic_id,
                node: node.index,
                role,
            });
        }
        Ok(topology)
    }

    /// The number of CPUs that run sidecar.
    pub fn sidecar_count(&self) -> usize {
        self.nodes.iter().map(|n| n.sidecar_count as usize).sum()
    }
}

/// How many CPUs at the start of `cpus` share the first one's domain.
fn domain_run_length(cpus: &[FirmwareCpu]) -> usize {
    let domain = cpus.first().map(|c| c.domain);
    cpus.iter().take_while(|c| Some(c.domain) == domain).count()
}

/// The size of the nodes a domain's run of `cpus` CPUs is split into:
/// ⌈cpus / ⌈cpus / 32⌉⌉ (the last node takes what is left).
fn node_size_of_run(cpus: usize) -> usize {
    let nodes = cpus.div_ceil(MAX_NODE_CPUS).max(1);
    cpus.div_ceil(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    fn firmware(domains: &[u32]) -> Vec<FirmwareCpu> {
        domains
            .iter()
            .enumerate()
            .map(|(i, &domain)| FirmwareCpu {
                apic_id: i as u32 * 2,
                domain,
            })
            .collect()
    }

    fn build(domains: &[u32], removed: &[usize]) -> Result<Topology, TopologyError> {
        let mut set = CpuSet::new();
        for &vp in removed {
            assert!(set.insert(vp));
        }
        Topology::new(&firmware(domains), 0, &set)
    }

    fn shape(topology: &Topology) -> Vec<(u32, u32, u32)> {
        topology
            .nodes
            .iter()
            .map(|n| (n.base_vp, n.vp_count, n.sidecar_count))
            .collect()
    }

    #[test]
    fn a_duplicate_apic_id_is_refused() {
        let mut cpus = firmware(&[0; 4]);
        cpus[3].apic_id = cpus[1].apic_id;
        let err = Topology::new(&cpus, 0, &CpuSet::new()).unwrap_err();
        assert_eq!(
            err,
            TopologyError::DuplicateApicId {
                apic_id: 2,
                first: 1,
                second: 3
            }
        );
        assert!(err.to_string().contains("APIC ID 2 twice (CPUs 1 and 3)"));
        // The BSP's own ID listed again.
        cpus[3].apic_id = 0;
        assert!(matches!(
            Topology::new(&cpus, 0, &CpuSet::new()),
            Err(TopologyError::DuplicateApicId {
                first: 0,
                second: 3,
                ..
            })
        ));
    }

    #[test]
    fn one_domain_is_one_node() {
        let topology = build(&[0; 4], &[]).unwrap();
        assert_eq!(shape(&topology), [(0, 4, 3)]);
        assert_eq!(topology.cpus[0].role, Role::MainKernel);
        assert!(topology.cpus[1..].iter().all(|c| c.role == Role::Sidecar));
        assert_eq!(topology.cpus[3].apic_id, 6);
    }

    #[test]
    fn single_cpu_has_no_sidecar() {
        let topology = build(&[0], &[]).unwrap();
        assert_eq!(shape(&topology), [(0, 1, 0)]);
        assert_eq!(topology.sidecar_count(), 0);
    }

    #[test]
    fn domains_split_nodes_and_base_vps_belong_to_main_kernel() {
        let topology = build(&[0, 0, 0, 1, 1, 1, 1, 2], &[]).unwrap();
        assert_eq!(shape(&topology), [(0, 3, 2), (3, 4, 3), (7, 1, 0)]);
        let main: Vec<u32> = topology
            .cpus
            .iter()
            .filter(|c| c.role == Role::MainKernel)
            .map(|c| c.vp)
            .collect();
        assert_eq!(main, [0, 3, 7]);
        assert_eq!(topology.cpus[5].node, 1);
        assert!(topology.nodes[1].contains(6) && !topology.nodes[1].contains(7));
    }

    #[test]
    fn large_domains_split_evenly_as_openhcl_does() {
        let topology = build(&[0; 70], &[]).unwrap();
        assert_eq!(shape(&topology), [(0, 24, 23), (24, 24, 23), (48, 22, 21)]);
        let exactly = build(&[0; 64], &[]).unwrap();
        assert_eq!(shape(&exactly), [(0, 32, 31), (32, 32, 31)]);
        let one_more = build(&[0; 33], &[]).unwrap();
        assert_eq!(shape(&one_more), [(0, 17, 16), (17, 16, 15)]);
        let most = build(&[0; 255], &[]).unwrap();
        assert_eq!(most.nodes.len(), 8);
        assert!(most.nodes.iter().all(|n| n.vp_count <= 32));
        // Each domain's run is split on its own.
        let mixed: Vec<u32> = [0; 40].into_iter().chain([1; 10]).collect();
        let topology = build(&mixed, &[]).unwrap();
        assert_eq!(shape(&topology), [(0, 20, 19), (20, 20, 19), (40, 10, 9)]);
    }

    #[test]
    fn removed_cpus_are_not_sidecar() {
        let topology = build(&[0, 0, 0, 0, 1, 1], &[2, 5]).unwrap();
        assert_eq!(topology.cpus[2].role, Role::Removed);
        assert_eq!(topology.cpus[5].role, Role::Removed);
        assert_eq!(shape(&topology), [(0, 4, 2), (4, 2, 0)]);
        assert_eq!(topology.sidecar_count(), 2);
    }

    #[test]
    fn errors() {
        assert_eq!(build(&[], &[]).unwrap_err(), TopologyError::NoCpus);
        assert_eq!(build(&[0, 0], &[0]).unwrap_err(), TopologyError::RemovedBsp);
        assert_eq!(
            build(&[0, 0], &[9]).unwrap_err().to_string(),
            "removed CPU 9 does not exist (VP indexes are 0..2)"
        );
        let cpus = firmware(&[0, 0]);
        assert!(matches!(
            Topology::new(&cpus, 2, &CpuSet::new()),
            Err(TopologyError::BspNotFirst { .. })
        ));
        assert_eq!(
            Topology::new(&cpus, 7, &CpuSet::new()).unwrap_err(),
            TopologyError::BspMissing(7)
        );
        let many = firmware(&[0; MAX_CPUS + 1]);
        assert_eq!(
            Topology::new(&many, 0, &CpuSet::new()).unwrap_err(),
            TopologyError::TooManyCpus(MAX_CPUS + 1)
        );
    }

    #[test]
    fn cpu_set_basics() {
        let mut set = CpuSet::new();
        assert!(set.is_empty());
        let last = MAX_CPUS - 1;
        assert!(set.insert(0) && set.insert(63) && set.insert(64) && set.insert(last));
        assert!(!set.insert(MAX_CPUS));
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 63, 64, last]);
        assert!(!set.contains(1) && !set.contains(1000));
    }
}
