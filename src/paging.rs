//! x86_64 4-level page tables: the page sizes, the entry format and the
//! tables themselves.
//!
//! Pure data: building page tables is plain memory writes, so it is unit
//! tested on the host. Loading them into CR3 is the caller's business.
//!
//! The entry bits are the `x86_64` crate's [`PageTableFlags`]; an entry is
//! kept as its raw `u64` (page tables live in memory the kernel, the
//! processor and guests all read as integers), built with [`entry`] and taken
//! apart with [`entry_flags`] and [`entry_address`]. Nested page tables
//! (AMD NPT) use the same format.

pub use ::x86_64::structures::paging::PageTableFlags;
use ::x86_64::structures::paging::{PageSize, Size2MiB, Size4KiB};

/// The size of a page (and of a page table).
pub const PAGE_SIZE: u64 = Size4KiB::SIZE;
/// The size of a large page, mapped by a page-directory entry with
/// [`PageTableFlags::HUGE_PAGE`].
pub const LARGE_PAGE_SIZE: u64 = Size2MiB::SIZE;
/// The entries in one table, at every level.
pub const ENTRIES_PER_TABLE: usize = 512;

/// Bits 12..52 of an entry: the physical address it points at.
pub const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// [`PageTableFlags::PRESENT`] as raw bits, for code that builds entries as
/// integers in constant expressions.
pub const PRESENT: u64 = PageTableFlags::PRESENT.bits();
/// [`PageTableFlags::WRITABLE`] as raw bits.
pub const WRITABLE: u64 = PageTableFlags::WRITABLE.bits();
/// [`PageTableFlags::USER_ACCESSIBLE`] as raw bits (needed at every level of
/// nested page tables for guests).
pub const USER: u64 = PageTableFlags::USER_ACCESSIBLE.bits();

/// An entry that points at `address` (a table or a page, aligned to 4 KiB
/// at least; its low bits are dropped) with `flags`.
pub const fn entry(address: u64, flags: PageTableFlags) -> u64 {
    (address & ADDRESS_MASK) | flags.bits()
}

/// The flags of a raw entry (every bit outside the address, including
/// reserved and available ones).
pub const fn entry_flags(entry: u64) -> PageTableFlags {
    PageTableFlags::from_bits_retain(entry & !ADDRESS_MASK)
}

/// The physical address a raw entry points at.
pub const fn entry_address(entry: u64) -> u64 {
    entry & ADDRESS_MASK
}

/// One 4 KiB page table of 512 entries, at any of the four levels.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct PageTable {
    /// The raw entries.
    pub entries: [u64; ENTRIES_PER_TABLE],
}

impl PageTable {
    /// A table with every entry not present.
    pub const fn zeroed() -> Self {
        Self {
            entries: [0; ENTRIES_PER_TABLE],
        }
    }
}

const _: () = assert!(size_of::<PageTable>() as u64 == PAGE_SIZE);

/// The four table indexes (PML4, PDPT, PD, PT) of a virtual address.
pub const fn table_indexes(virt: u64) -> [usize; 4] {
    [
        ((virt >> 39) & 0x1ff) as usize,
        ((virt >> 30) & 0x1ff) as usize,
        ((virt >> 21) & 0x1ff) as usize,
        ((virt >> 12) & 0x1ff) as usize,
    ]
}

/// Fills `table` with the 512 4 KiB pages that `large`, the entry of a
/// 2 MiB page, maps, with its flags: the same translation, at a grain
/// where single pages can then be unmapped (a guard page). The PAT bit
/// moves from bit 12, its place in a large entry, to bit 7.
pub fn split_large_page(large: u64, table: &mut PageTable) {
    const LARGE_PAT: u64 = 1 << 12;
    debug_assert!(entry_flags(large).contains(PageTableFlags::HUGE_PAGE));
    let base = entry_address(large) & !(LARGE_PAGE_SIZE - 1);
    let mut flags = entry_flags(large) - PageTableFlags::HUGE_PAGE;
    if large & LARGE_PAT != 0 {
        // Bit 7 of a 4 KiB entry is its PAT bit.
        flags |= PageTableFlags::HUGE_PAGE;
    }
    for (i, slot) in table.entries.iter_mut().enumerate() {
        *slot = entry(base + i as u64 * PAGE_SIZE, flags);
    }
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

    #[test]
    fn entries_split_into_address_and_flags() {
        let flags = PageTableFlags::PRESENT | PageTableFlags::NO_EXECUTE;
        let raw = entry(0x1234_5000, flags);
        assert_eq!(raw, 0x8000_0000_1234_5001);
        assert_eq!(entry_address(raw), 0x1234_5000);
        assert_eq!(entry_flags(raw), flags);
        // Reserved and available bits survive as flags.
        assert_eq!(entry_flags(raw | 0x200).bits(), 0x8000_0000_0000_0201);
        assert_eq!(PAGE_SIZE, 0x1000);
        assert_eq!(LARGE_PAGE_SIZE, 0x20_0000);
    }

    #[test]
    fn a_split_large_page_maps_the_same_bytes_with_its_flags() {
        let flags = PageTableFlags::PRESENT
            | PageTableFlags::WRITABLE
            | PageTableFlags::NO_CACHE
            | PageTableFlags::NO_EXECUTE;
        let large = entry(0x40_0000, flags | PageTableFlags::HUGE_PAGE);
        let mut table = PageTable::zeroed();
        split_large_page(large, &mut table);
        assert_eq!(table.entries[0], entry(0x40_0000, flags));
        assert_eq!(table.entries[511], entry(0x5F_F000, flags));
        assert!(table.entries.iter().all(
            |&e| entry_flags(e) == flags && !entry_flags(e).contains(PageTableFlags::HUGE_PAGE)
        ));
        // The PAT bit of a large entry (bit 12) becomes bit 7.
        split_large_page(large | (1 << 12), &mut table);
        assert_eq!(
            table.entries[3],
            entry(0x40_3000, flags | PageTableFlags::HUGE_PAGE)
        );
    }
}
