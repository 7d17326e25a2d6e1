//! The guest's shape beyond a CPU count: NUMA nodes, removed CPUs, and the
//! rules that make a topology possible.
//!
//! QEMU 7.2 on q35 wants a memory backend per NUMA node, so a layout of `K`
//! nodes becomes, for node `i`, `-object memory-backend-ram,id=mem{i},size={M}M
//! -numa node,nodeid={i},cpus={first}-{last},memdev=mem{i}`. The guest memory
//! is split evenly and the last node gets the remainder. QEMU builds the ACPI
//! SRAT from these options, and the kernel groups CPUs into sidecar nodes
//! along it. Without a layout there are no `-numa` options at all: one node
//! and no SRAT.
//!
//! Everything here is pure and checked before QEMU starts: an impossible
//! topology is a configuration error naming both numbers that disagree.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::ops::RangeInclusive;

/// Most NUMA nodes QEMU 7.2 accepts (`MAX_NODES`; the 129th is refused).
pub const MAX_NUMA_NODES: u16 = 128;

/// Least memory, in MiB, each NUMA node is given.
pub const MIN_NODE_MEMORY_MIB: u32 = 2;

/// How the guest's CPUs are grouped into NUMA nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Numa {
    /// No `-numa` options: one node and no SRAT (the default).
    #[default]
    Off,
    /// This many nodes of equal size (`--nodes K`); K must divide the CPU count.
    Equal(u16),
    /// Nodes of these CPU counts, in VP order (`--node-sizes a,b,c`); they
    /// must add up to the CPU count.
    Sizes(Vec<u16>),
}

/// One NUMA node as QEMU is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaNode {
    /// The CPU indexes (`-numa node,cpus=`), consecutive.
    pub cpus: RangeInclusive<u16>,
    /// The node's memory in MiB (its `memory-backend-ram` size).
    pub memory_mib: u32,
}

impl Numa {
    /// The CPU count of each node, or an empty list for [`Numa::Off`]; an
    /// error when the nodes cannot split `cpus` CPUs.
    pub fn node_sizes(&self, cpus: u16) -> Result<Vec<u16>, String> {
        let sizes = match self {
            Numa::Off => return Ok(Vec::new()),
            Numa::Equal(0) => return Err("--nodes must be at least 1".to_owned()),
            Numa::Equal(k) if *k > cpus => {
                return Err(format!(
                    "--nodes {k} is more than --cpus {cpus}: every node needs a CPU"
                ))
            }
            Numa::Equal(k) if !cpus.is_multiple_of(*k) => {
                return Err(format!(
                    "--nodes {k} does not divide --cpus {cpus} into equal nodes \
                     (use --node-sizes for uneven ones)"
                ))
            }
            Numa::Equal(k) => vec![cpus / k; usize::from(*k)],
            Numa::Sizes(sizes) => {
                if sizes.is_empty() {
                    return Err("--node-sizes needs at least one size".to_owned());
                }
                if let Some(index) = sizes.iter().position(|&size| size == 0) {
                    return Err(format!(
                        "node {index} has size 0: every node needs at least 1 CPU"
                    ));
                }
                let sum: u32 = sizes.iter().map(|&size| u32::from(size)).sum();
                if sum != u32::from(cpus) {
                    return Err(format!("node sizes add up to {sum}, but --cpus is {cpus}"));
                }
                sizes.clone()
            }
        };
        if sizes.len() > usize::from(MAX_NUMA_NODES) {
            return Err(format!(
                "{} NUMA nodes asked for, but QEMU allows at most {MAX_NUMA_NODES}",
                sizes.len()
            ));
        }
        Ok(sizes)
    }

    /// The nodes QEMU is given for `cpus` CPUs and `memory_mib` MiB: the CPU
    /// ranges and each node's share of the memory. Empty for [`Numa::Off`].
    pub fn layout(&self, cpus: u16, memory_mib: u32) -> Result<Vec<NumaNode>, String> {
        let sizes = self.node_sizes(cpus)?;
        if sizes.is_empty() {
            return Ok(Vec::new());
        }
        let memory = split_memory(memory_mib, sizes.len())?;
        let mut first = 0u16;
        let nodes = sizes
            .iter()
            .zip(memory)
            .map(|(&size, memory_mib)| {
                let cpus = first..=first + size - 1;
                first += size;
                NumaNode { cpus, memory_mib }
            })
            .collect();
        Ok(nodes)
    }
}

/// Splits `total_mib` over `nodes` nodes: equal shares, the remainder to
/// the last node; an error when a share would be under
/// [`MIN_NODE_MEMORY_MIB`].
pub fn split_memory(total_mib: u32, nodes: usize) -> Result<Vec<u32>, String> {
    let count = u32::try_from(nodes).unwrap_or(u32::MAX).max(1);
    let share = total_mib / count;
    if share < MIN_NODE_MEMORY_MIB {
        return Err(format!(
            "--memory {total_mib} MiB over {nodes} NUMA nodes leaves {share} MiB per node; \
             each needs at least {MIN_NODE_MEMORY_MIB} MiB: raise --memory to {}",
            MIN_NODE_MEMORY_MIB * count
        ));
    }
    let mut shares = vec![share; nodes];
    if let Some(last) = shares.last_mut() {
        *last += total_mib - share * count;
    }
    Ok(shares)
}

/// QEMU's arguments for `nodes`: per node, its memory backend then its
/// `-numa node` option.
pub(crate) fn numa_args(nodes: &[NumaNode]) -> Vec<String> {
    let mut args = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let (first, last) = (node.cpus.start(), node.cpus.end());
        args.push("-object".to_owned());
        args.push(format!(
            "memory-backend-ram,id=mem{i},size={}M",
            node.memory_mib
        ));
        args.push("-numa".to_owned());
        args.push(format!("node,nodeid={i},cpus={first}-{last},memdev=mem{i}"));
    }
    args
}

/// Checks the CPUs to remove against a machine of `cpus` CPUs: none is the
/// BSP, none is listed twice, each exists.
pub fn check_removed(removed: &[u16], cpus: u16) -> Result<(), String> {
    check_removed_list(removed)?;
    match removed.iter().find(|&&vp| vp >= cpus) {
        Some(vp) => Err(format!(
            "cannot remove CPU {vp}: --cpus {cpus} gives CPUs 0 to {}",
            cpus.saturating_sub(1)
        )),
        None => Ok(()),
    }
}

/// Why a machine of `cpus` CPUs in NUMA nodes of `node_sizes` (empty for
/// one node) with `removed` taken away leaves no CPU to run sidecar, or
/// `None` when one is left. The nodes are split by the kernel's own rule
/// ([`sidecar::topology::Topology`]): the BSP and each node's first CPU
/// (its base VP) are the main kernel's.
pub(crate) fn no_sidecar_cpu_left(
    cpus: u16,
    node_sizes: &[u16],
    removed: &[u16],
) -> Option<String> {
    use sidecar::topology::{CpuSet, FirmwareCpu, Role, Topology};
    let domains = node_sizes
        .iter()
        .enumerate()
        .flat_map(|(domain, &size)| std::iter::repeat_n(domain as u32, usize::from(size)));
    let firmware: Vec<FirmwareCpu> = (0..u32::from(cpus))
        .zip(domains.chain(std::iter::repeat(0)))
        .map(|(vp, domain)| FirmwareCpu {
            apic_id: vp,
            domain,
        })
        .collect();
    let mut removed_set = CpuSet::new();
    for &vp in removed {
        removed_set.insert(usize::from(vp));
    }
    // An impossible topology is reported by the checks before this one.
    let topology = Topology::new(&firmware, 0, &removed_set).ok()?;
    if topology.sidecar_count() > 0 {
        return None;
    }
    let main: Vec<u32> = topology
        .cpus
        .iter()
        .filter(|cpu| cpu.role == Role::MainKernel)
        .map(|cpu| cpu.vp)
        .collect();
    let main = match main.as_slice() {
        [0] => "CPU 0 is the BSP".to_owned(),
        _ => format!(
            "{} the main kernel's (the BSP and each node's first CPU)",
            cpu_list(&main, "is", "are")
        ),
    };
    let rest = match removed {
        [] if cpus == 1 => " (use --cpus 2 or more)".to_owned(),
        [] => " (use fewer, larger NUMA nodes)".to_owned(),
        _ => {
            let mut sorted: Vec<u32> = removed.iter().map(|&vp| u32::from(vp)).collect();
            sorted.sort_unstable();
            format!(
                " and --removed takes {} (remove fewer)",
                cpu_list(&sorted, "", "")
            )
        }
    };
    Some(format!("no sidecar CPU is left: {main}{rest}"))
}

/// The CPUs to remove from a machine of `cpus` CPUs in the kernel's default
/// nodes (no NUMA layout) so that `keep` sidecar CPUs are left, taken in
/// turn from each node (its first sidecar CPU, then each node's second…), so
/// that every node's VMM serves some of them. Fewer are left when the
/// machine has fewer.
pub(crate) fn removed_leaving(cpus: u16, keep: usize) -> Vec<u16> {
    use sidecar::topology::{CpuSet, FirmwareCpu, Role, Topology};
    let firmware: Vec<FirmwareCpu> = (0..u32::from(cpus))
        .map(|vp| FirmwareCpu {
            apic_id: vp,
            domain: 0,
        })
        .collect();
    let Ok(topology) = Topology::new(&firmware, 0, &CpuSet::new()) else {
        return Vec::new();
    };
    let per_node: Vec<Vec<u32>> = topology
        .nodes
        .iter()
        .map(|node| {
            topology
                .cpus
                .iter()
                .filter(|cpu| cpu.node == node.index && cpu.role == Role::Sidecar)
                .map(|cpu| cpu.vp)
                .collect()
        })
        .collect();
    let deepest = per_node.iter().map(Vec::len).max().unwrap_or(0);
    let kept: BTreeSet<u32> = (0..deepest)
        .flat_map(|rank| {
            per_node
                .iter()
                .filter_map(move |vps| vps.get(rank).copied())
        })
        .take(keep)
        .collect();
    topology
        .cpus
        .iter()
        .filter(|cpu| cpu.role == Role::Sidecar && !kept.contains(&cpu.vp))
        .filter_map(|cpu| u16::try_from(cpu.vp).ok())
        .collect()
}

/// `CPU 3` or `CPUs 1, 2, 3`, followed by `one` or `many` when not empty.
fn cpu_list(vps: &[u32], one: &str, many: &str) -> String {
    let numbers: Vec<String> = vps.iter().map(u32::to_string).collect();
    let (noun, verb) = match vps.len() {
        1 => ("CPU", one),
        _ => ("CPUs", many),
    };
    let verb = if verb.is_empty() {
        String::new()
    } else {
        format!(" {verb}")
    };
    format!("{noun} {}{verb}", numbers.join(", "))
}

/// The checks that need no CPU count: not the BSP, not twice.
fn check_removed_list(removed: &[u16]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for &vp in removed {
        if vp == 0 {
            return Err("CPU 0 is the BSP and cannot be removed".to_owned());
        }
        if !seen.insert(vp) {
            return Err(format!("CPU {vp} is listed twice in --removed"));
        }
    }
    Ok(())
}

/// The kernel's `removed=` value: the VP indexes joined by commas.
pub(crate) fn removed_word(removed: &[u16]) -> String {
    let mut word = format!("{}=", sidecar::vocabulary::option_key::REMOVED);
    for (i, vp) in removed.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(word, "{comma}{vp}");
    }
    word
}

/// Parses a comma-separated list of numbers (`3,9`), as `--removed` and
/// `--node-sizes` take them; `what` names one item in messages.
pub fn parse_list(text: &str, what: &str) -> Result<Vec<u16>, String> {
    if text.trim().is_empty() {
        return Err(format!("expected a comma-separated list of {what}s"));
    }
    text.split(',')
        .map(|item| {
            let item = item.trim();
            item.parse::<u16>().map_err(|_| match item {
                "" => format!("an empty item in {text:?}: expected {what}s separated by commas"),
                _ => format!("{item:?} is not a {what} (0 to {})", u16::MAX),
            })
        })
        .collect()
}

/// Parses `--removed`: a list of CPU numbers, none the BSP, none twice.
/// The upper bound depends on `--cpus` and is checked with the rest of the
/// configuration ([`check_removed`]).
pub fn parse_removed(text: &str) -> Result<Vec<u16>, String> {
    let removed = parse_list(text, "CPU number")?;
    check_removed_list(&removed)?;
    Ok(removed)
}

/// Parses `--node-sizes`: a list of CPU counts, each at least 1.
pub fn parse_node_sizes(text: &str) -> Result<Vec<u16>, String> {
    let sizes = parse_list(text, "node size")?;
    if sizes.contains(&0) {
        return Err("a node size is 0: every node needs at least 1 CPU".to_owned());
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_nodes_divide_the_cpus() {
        assert_eq!(Numa::Equal(2).node_sizes(8), Ok(vec![4, 4]));
        assert_eq!(Numa::Equal(1).node_sizes(7), Ok(vec![7]));
        assert_eq!(Numa::Equal(8).node_sizes(8), Ok(vec![1; 8]));
        assert_eq!(Numa::Off.node_sizes(8), Ok(vec![]));
        let err = Numa::Equal(3).node_sizes(8).unwrap_err();
        assert!(err.contains("--nodes 3 does not divide --cpus 8"), "{err}");
        let err = Numa::Equal(9).node_sizes(8).unwrap_err();
        assert!(err.contains("--nodes 9 is more than --cpus 8"), "{err}");
        assert_eq!(
            Numa::Equal(0).node_sizes(8).unwrap_err(),
            "--nodes must be at least 1"
        );
    }

    #[test]
    fn uneven_sizes_must_add_up() {
        assert_eq!(Numa::Sizes(vec![3, 4]).node_sizes(7), Ok(vec![3, 4]));
        assert_eq!(
            Numa::Sizes(vec![3, 4]).node_sizes(8).unwrap_err(),
            "node sizes add up to 7, but --cpus is 8"
        );
        let err = Numa::Sizes(vec![3, 0, 5]).node_sizes(8).unwrap_err();
        assert!(err.contains("node 1 has size 0"), "{err}");
        assert!(Numa::Sizes(vec![]).node_sizes(8).is_err());
        // The sum cannot overflow into agreement.
        assert!(Numa::Sizes(vec![u16::MAX, 9]).node_sizes(8).is_err());
    }

    #[test]
    fn qemu_caps_the_node_count() {
        assert_eq!(Numa::Equal(128).node_sizes(128).unwrap().len(), 128);
        let err = Numa::Sizes(vec![1; 129]).node_sizes(129).unwrap_err();
        assert!(err.contains("QEMU allows at most 128"), "{err}");
        assert!(Numa::Equal(255).node_sizes(255).is_err());
    }

    #[test]
    fn memory_split_gives_the_remainder_to_the_last_node() {
        assert_eq!(split_memory(256, 2), Ok(vec![128, 128]));
        assert_eq!(split_memory(256, 3), Ok(vec![85, 85, 86]));
        assert_eq!(split_memory(256, 128), Ok(vec![2; 128]));
        let err = split_memory(256, 129).unwrap_err();
        assert!(err.contains("leaves 1 MiB per node"), "{err}");
        assert!(err.contains("raise --memory to 258"), "{err}");
    }

    #[test]
    fn layout_ranges_are_consecutive() {
        let layout = Numa::Sizes(vec![3, 4]).layout(7, 100).unwrap();
        assert_eq!(
            layout,
            [
                NumaNode {
                    cpus: 0..=2,
                    memory_mib: 50
                },
                NumaNode {
                    cpus: 3..=6,
                    memory_mib: 50
                },
            ]
        );
        assert!(Numa::Off.layout(7, 100).unwrap().is_empty());
        assert!(Numa::Equal(2).layout(8, 3).is_err());
    }

    #[test]
    fn qemu_options_per_node() {
        let layout = Numa::Equal(2).layout(8, 256).unwrap();
        assert_eq!(
            numa_args(&layout).join(" "),
            "-object memory-backend-ram,id=mem0,size=128M \
             -numa node,nodeid=0,cpus=0-3,memdev=mem0 \
             -object memory-backend-ram,id=mem1,size=128M \
             -numa node,nodeid=1,cpus=4-7,memdev=mem1"
        );
    }

    #[test]
    fn removed_cpus() {
        assert_eq!(check_removed(&[3, 9], 10), Ok(()));
        assert_eq!(check_removed(&[], 1), Ok(()));
        assert_eq!(
            check_removed(&[3, 0], 10).unwrap_err(),
            "CPU 0 is the BSP and cannot be removed"
        );
        assert_eq!(
            check_removed(&[10], 10).unwrap_err(),
            "cannot remove CPU 10: --cpus 10 gives CPUs 0 to 9"
        );
        assert_eq!(
            check_removed(&[3, 4, 3], 10).unwrap_err(),
            "CPU 3 is listed twice in --removed"
        );
        assert_eq!(removed_word(&[3, 9]), "removed=3,9");
    }

    #[test]
    fn a_machine_with_no_sidecar_cpu_left_names_who_holds_each() {
        assert_eq!(
            no_sidecar_cpu_left(4, &[], &[1, 2, 3]).unwrap(),
            "no sidecar CPU is left: CPU 0 is the BSP and --removed takes CPUs 1, 2, 3 \
             (remove fewer)"
        );
        assert_eq!(
            no_sidecar_cpu_left(1, &[], &[]).unwrap(),
            "no sidecar CPU is left: CPU 0 is the BSP (use --cpus 2 or more)"
        );
        assert_eq!(
            no_sidecar_cpu_left(4, &[2, 2], &[3, 1]).unwrap(),
            "no sidecar CPU is left: CPUs 0, 2 are the main kernel's (the BSP and each \
             node's first CPU) and --removed takes CPUs 1, 3 (remove fewer)"
        );
        assert_eq!(
            no_sidecar_cpu_left(2, &[1, 1], &[]).unwrap(),
            "no sidecar CPU is left: CPUs 0, 1 are the main kernel's (the BSP and each \
             node's first CPU) (use fewer, larger NUMA nodes)"
        );
        assert_eq!(no_sidecar_cpu_left(4, &[], &[1, 2]), None);
        assert_eq!(no_sidecar_cpu_left(2, &[], &[]), None);
        assert_eq!(no_sidecar_cpu_left(4, &[2, 2], &[1]), None);
        // 70 CPUs in one node are split as 24, 24, 22: CPUs 0, 24 and 48
        // are base VPs, so removing every other CPU leaves none.
        let others: Vec<u16> = (1..70).filter(|vp| ![24, 48].contains(vp)).collect();
        let reason = no_sidecar_cpu_left(70, &[], &others).unwrap();
        assert!(
            reason.contains("CPUs 0, 24, 48 are the main kernel's"),
            "{reason}"
        );
    }

    #[test]
    fn list_parsing() {
        assert_eq!(parse_list("3,9", "CPU number"), Ok(vec![3, 9]));
        assert_eq!(parse_list(" 3, 9 ", "CPU number"), Ok(vec![3, 9]));
        for bad in ["", "x", "3,,4", "3,", "-1", "70000", "3;4"] {
            assert!(parse_list(bad, "CPU number").is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            parse_list("3,x", "CPU number").unwrap_err(),
            "\"x\" is not a CPU number (0 to 65535)"
        );
        assert_eq!(
            parse_removed("0").unwrap_err(),
            "CPU 0 is the BSP and cannot be removed"
        );
        assert!(parse_removed("2,2").unwrap_err().contains("twice"));
        assert_eq!(parse_node_sizes("3,4"), Ok(vec![3, 4]));
        assert!(parse_node_sizes("3,0").is_err());
    }

    #[test]
    fn removed_leaving_keeps_sidecar_cpus_from_every_node_in_turn() {
        // 64 CPUs are two nodes of 32 (base VPs 0 and 32).
        let removed = removed_leaving(64, 3);
        let kept: Vec<u16> = (1..64)
            .filter(|vp| *vp != 32 && !removed.contains(vp))
            .collect();
        assert_eq!(kept, vec![1, 2, 33]);
        assert_eq!(removed.len(), 59);
        assert!(!removed.contains(&0) && !removed.contains(&32));
        assert!(check_removed(&removed, 64).is_ok());
        // One node: the first three sidecar CPUs.
        assert_eq!(removed_leaving(8, 3), vec![4, 5, 6, 7]);
        // Asking for more than there are removes nothing.
        assert_eq!(removed_leaving(4, 3), Vec::<u16>::new());
        assert_eq!(removed_leaving(4, 9), Vec::<u16>::new());
    }
}
