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
/// at or above `floor` and end at or below `ceiling`, overlapping no entry
/// of another kind (firmware may list a reserved range inside a RAM one:
/// reserved wins).
pub fn find_ram(
    map: &[MemmapEntry],
    floor: u64,
    ceiling: u64,
    bytes: u64,
) -> Result<u64, OutOfMemory> {
    let mut largest = 0;
    for entry in map.iter().filter(|e| e.kind == MEMMAP_RAM) {
        let end = entry.addr.saturating_add(entry.size).min(ceiling);
        // An entry that starts at the top of the address space has no page
        // start to round up to (the rounding would wrap to 0).
        let Some(mut start) = entry.addr.max(floor).checked_next_multiple_of(PAGE_SIZE) else {
            continue;
        };
        // Candidates within the entry: after each overlapping reserved range.
        while start < end {
            match first_overlap(map, start, end) {
                None => {
                    let usable = end - start;
                    if usable >= bytes {
                        return Ok(start);
                    }
                    largest = largest.max(usable);
                    break;
                }
                Some(other) => {
                    let usable = other.addr.saturating_sub(start);
                    if usable >= bytes {
                        return Ok(start);
                    }
                    largest = largest.max(usable);
                    match other
                        .addr
                        .saturating_add(other.size)
                        .checked_next_multiple_of(PAGE_SIZE)
                    {
                        Some(next) if next > start => start = next,
                        _ => break,
                    }
                }
            }
        }
    }
    Err(OutOfMemory {
        required: bytes,
        available: largest,
    })
}

/// The lowest-starting entry that is not RAM and overlaps `start..end`.
pub fn first_overlap(map: &[MemmapEntry], start: u64, end: u64) -> Option<&MemmapEntry> {
    map.iter()
        .filter(|e| e.kind != MEMMAP_RAM && e.size > 0)
        .filter(|e| e.addr < end && e.addr.saturating_add(e.size) > start)
        .min_by_key(|e| e.addr)
}

/// Whether the whole page at `page` is usable RAM (and in no other entry).
pub fn is_ram(map: &[MemmapEntry], page: u64) -> bool {
    map.iter().any(|e| {
        e.kind == MEMMAP_RAM && e.addr <= page && page + PAGE_SIZE <= e.addr.saturating_add(e.size)
    }) && first_overlap(map, page, page + PAGE_SIZE).is_none()
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
    fn an_entry_at_the_top_of_the_address_space_is_skipped() {
        let map = [entry(0xFFFF_FFFF_FFFF_F001, 1 << 20, MEMMAP_RAM)];
        assert!(find_ram(&map, 0, 1 << 32, 0x1000).is_err());
        assert!(find_ram(&map, 0, u64::MAX, 0x1000).is_err());
    }

    #[test]
    fn reserved_ranges_inside_ram_are_avoided() {
        let mut map = qemu_map().to_vec();
        map.push(entry(0x40_0000, 0x10_0000, 2)); // 4..5 MiB reserved
                                                  // Below it: 2..4 MiB fits 1 MiB.
        assert_eq!(find_ram(&map, 0x20_0000, 1 << 32, 0x10_0000), Ok(0x20_0000));
        // 3 MiB does not fit below it: after it.
        assert_eq!(find_ram(&map, 0x20_0000, 1 << 32, 0x30_0000), Ok(0x50_0000));
        // A reserved range ending mid-page: the next page.
        map.push(entry(0x60_0000, 0x800, 2));
        assert_eq!(find_ram(&map, 0x50_0000, 1 << 32, 0x20_0000), Ok(0x60_1000));
        // The largest usable piece is reported.
        let err = find_ram(&map, 0x20_0000, 0x70_0000, 0x30_0000).unwrap_err();
        assert_eq!(err.available, 0x20_0000);
    }

    #[test]
    fn page_usability() {
        let map = qemu_map();
        assert!(is_ram(&map, 0x8000));
        assert!(!is_ram(&map, 0x9_F000)); // runs into the reserved EBDA
        assert!(!is_ram(&map, 0xF_0000));
    }
}
