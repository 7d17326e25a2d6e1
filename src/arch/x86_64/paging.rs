//! x86_64 4-level page-table entries and tables.
//!
//! Pure data: building page tables is plain memory writes, so it is unit
//! tested on the host. Loading them into CR3 is the caller's business.

/// Entry flag: the entry maps something.
pub const PRESENT: u64 = 1 << 0;
/// Entry flag: writes allowed.
pub const WRITABLE: u64 = 1 << 1;
/// Entry flag: user-mode access allowed (needed at every level of nested
/// page tables for guests).
pub const USER: u64 = 1 << 2;
/// Entry flag: write-through caching.
pub const WRITE_THROUGH: u64 = 1 << 3;
/// Entry flag: caching disabled (device registers).
pub const CACHE_DISABLE: u64 = 1 << 4;
/// Entry flag in a PD or PDPT entry: it maps a large page.
pub const HUGE_PAGE: u64 = 1 << 7;
/// Entry flag: instruction fetches fault (needs EFER.NXE).
pub const NO_EXECUTE: u64 = 1 << 63;
/// Bits 12..52 of an entry: the physical address it points at.
pub const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// One 4 KiB page table of 512 entries, at any of the four levels.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct PageTable {
    /// The raw entries.
    pub entries: [u64; 512],
}

impl PageTable {
    /// A table with every entry not present.
    pub const fn zeroed() -> Self {
        Self { entries: [0; 512] }
    }
}

/// The four table indexes (PML4, PDPT, PD, PT) of a virtual address.
pub const fn table_indexes(virt: u64) -> [usize; 4] {
    [
        ((virt >> 39) & 0x1ff) as usize,
        ((virt >> 30) & 0x1ff) as usize,
        ((virt >> 21) & 0x1ff) as usize,
        ((virt >> 12) & 0x1ff) as usize,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_split_the_address() {
        assert_eq!(table_indexes(0), [0, 0, 0, 0]);
        assert_eq!(table_indexes(0xFEE0_0000), [0, 3, 503, 0]);
        let virt = (5 << 39) | (6 << 30) | (7 << 21) | (8 << 12) | 0x123;
        assert_eq!(table_indexes(virt), [5, 6, 7, 8]);
    }

    #[test]
    fn table_is_one_page() {
        assert_eq!(core::mem::size_of::<PageTable>(), 4096);
        assert_eq!(core::mem::align_of::<PageTable>(), 4096);
    }
}
