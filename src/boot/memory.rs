//! Finding physical memory for the nodes' regions in the firmware's memory
//! map. Pure logic, tested on the host.

use core::fmt;

use super::pvh::{MemmapEntry, MEMMAP_RAM};
use crate::layout::PAGE_SIZE;

/// Not enough usable RAM for the nodes' regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfMemory {
    /// Bytes the regions need.
    pub required: u64,
    /// The largest usable block that was offered.
    pub available: u64,
}

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sidecar needs {} bytes ({} KiB) of contiguous RAM for its nodes, \
             but the largest usable block has {} bytes ({} KiB): give the VM more memory",
            self.required,
            self.required / 1024,
            self.available,
            self.available / 1024
        )
    }
}

/// Returns a page-aligned physical address where `bytes` of usable RAM start
/// at or above `floor` and end at or below `ceiling`.
pub fn find_ram(
    map: &[MemmapEntry],
    floor: u64,
    ceiling: u64,
    bytes: u64,
) -> Result<u64, OutOfMemory> {
    let mut largest = 0;
    for entry in map.iter().filter(|e| e.kind == MEMMAP_RAM) {
        let start = entry.addr.max(floor).next_multiple_of(PAGE_SIZE);
        let end = entry.addr.saturating_add(entry.size).min(ceiling);
        let usable = end.saturating_sub(start);
        if usable >= bytes {
            return Ok(start);
        }
        largest = largest.max(usable);
    }
    Err(OutOfMemory {
        required: bytes,
        available: largest,
    })
}

/// Whether the whole page at `page` is usable RAM.
pub fn is_ram(map: &[MemmapEntry], page: u64) -> bool {
    map.iter().any(|e| {
        e.kind == MEMMAP_RAM && e.addr <= page && page + PAGE_SIZE <= e.addr.saturating_add(e.size)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn entry(addr: u64, size: u64, kind: u32) -> MemmapEntry {
        MemmapEntry {
            addr,
            size,
            kind,
            reserved: 0,
        }
    }

    fn qemu_map() -> [MemmapEntry; 4] {
        [
            entry(0, 0x9_FC00, MEMMAP_RAM),
            entry(0x9_FC00, 0x400, 2),
            entry(0xF_0000, 0x1_0000, 2),
            entry(0x10_0000, 0xFF0_0000, MEMMAP_RAM), // 1 MiB .. 256 MiB
        ]
    }

    #[test]
    fn finds_ram_above_the_floor() {
        let map = qemu_map();
        assert_eq!(find_ram(&map, 0x20_0000, 1 << 32, 0x10_0000), Ok(0x20_0000));
        assert_eq!(find_ram(&map, 0x20_0123, 1 << 32, 0x1000), Ok(0x20_1000));
    }

    #[test]
    fn reports_required_and_available() {
        let map = qemu_map();
        let err = find_ram(&map, 0x20_0000, 1 << 32, 1 << 30).unwrap_err();
        assert_eq!(err.required, 1 << 30);
        assert_eq!(err.available, 0x1000_0000 - 0x20_0000);
        assert!(err.to_string().contains("needs 1073741824 bytes"));
        // The ceiling bounds what is usable.
        assert!(find_ram(&map, 0x20_0000, 0x30_0000, 0x20_0000).is_err());
    }

    #[test]
    fn page_usability() {
        let map = qemu_map();
        assert!(is_ram(&map, 0x8000));
        assert!(!is_ram(&map, 0x9_F000)); // runs into the reserved EBDA
        assert!(!is_ram(&map, 0xF_0000));
    }
}
