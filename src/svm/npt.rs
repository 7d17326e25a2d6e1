//! Nested page tables: the host's map from the guest's physical addresses
//! (GPAs) to host physical addresses (HPAs).
//!
//! With nested paging (NP_ENABLE in the VMCB), every guest physical access
//! goes through a second, host-owned set of x86_64 page tables whose root is
//! the VMCB's N_CR3 (APM 15.25). An access to a GPA these tables do not map
//! stops the guest with a nested page fault (exit code `VMEXIT_NPF`), which
//! is how sidecar sees the guest touch an MMIO device: the device's GPA is
//! simply left unmapped.
//!
//! Sidecar's guests are small, so their map is too: guest memory is GPA
//! `0..size`, backed by the contiguous host range `host_base..host_base +
//! size`, mapped with 2 MiB pages. That takes three tables (PML4, PDPT, one
//! PD) and covers at most 1 GiB. Every GPA from `size` up is unmapped, so an
//! MMIO device must sit at a GPA at or above `size` (for example just above
//! guest memory, or at 0xFEE0_0000-style high addresses); there is no hole
//! inside guest memory.
//!
//! Nested table walks are treated as *user* accesses (APM 15.25, nested
//! paging), so every entry, at every level, needs the User bit, or the walk
//! faults on the guest's first access (under QEMU: EXITINFO1 0x1_0000_0005,
//! a user access to a present page, at the final translation). The entries
//! are also writable and executable: the guest's own page tables decide what
//! it may do.

use core::fmt;

use crate::layout::MAX_GUEST_MEMORY;
use crate::paging::{
    entry, entry_address, entry_flags, table_indexes, PageTable, PageTableFlags, ADDRESS_MASK,
    LARGE_PAGE_SIZE, PAGE_SIZE,
};

/// The flags of every non-leaf entry: present, writable, user.
pub const TABLE_FLAGS: PageTableFlags = PageTableFlags::PRESENT
    .union(PageTableFlags::WRITABLE)
    .union(PageTableFlags::USER_ACCESSIBLE);
/// The flags of every 2 MiB leaf entry: present, writable, user, large;
/// executable (no NX) and write-back (PAT index 0).
pub const LEAF_FLAGS: PageTableFlags = TABLE_FLAGS.union(PageTableFlags::HUGE_PAGE);

/// Why the nested page tables could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NptError {
    /// The guest has no memory.
    Empty,
    /// The memory size is not a multiple of 2 MiB.
    SizeNotMultiple(u64),
    /// The memory is larger than [`MAX_GUEST_MEMORY`].
    TooLarge(u64),
    /// The host base is not 2 MiB aligned.
    HostBaseMisaligned(u64),
    /// The host range does not fit in 52-bit physical addresses.
    HostRangeTooHigh(u64),
    /// The tables' physical address is not 4 KiB aligned, or too high.
    TablesMisaligned(u64),
}

impl fmt::Display for NptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NptError::Empty => f.write_str("guest memory is empty"),
            NptError::SizeNotMultiple(size) => {
                write!(f, "guest memory size {size:#x} is not a multiple of 2 MiB")
            }
            NptError::TooLarge(size) => {
                write!(f, "guest memory size {size:#x} is larger than 1 GiB")
            }
            NptError::HostBaseMisaligned(base) => {
                write!(f, "guest memory host base {base:#x} is not 2 MiB aligned")
            }
            NptError::HostRangeTooHigh(base) => {
                write!(f, "guest memory at host {base:#x} exceeds 52-bit addresses")
            }
            NptError::TablesMisaligned(pa) => {
                write!(f, "nested page tables at {pa:#x} are not page aligned")
            }
        }
    }
}

/// Checks the constraints on a guest memory of `size` bytes at host
/// physical `host_base`.
pub fn validate(host_base: u64, size: u64) -> Result<(), NptError> {
    if size == 0 {
        Err(NptError::Empty)
    } else if !size.is_multiple_of(LARGE_PAGE_SIZE) {
        Err(NptError::SizeNotMultiple(size))
    } else if size > MAX_GUEST_MEMORY {
        Err(NptError::TooLarge(size))
    } else if !host_base.is_multiple_of(LARGE_PAGE_SIZE) {
        Err(NptError::HostBaseMisaligned(host_base))
    } else if host_base
        .checked_add(size)
        .is_none_or(|end| end > ADDRESS_MASK + PAGE_SIZE)
    {
        Err(NptError::HostRangeTooHigh(host_base))
    } else {
        Ok(())
    }
}

/// The three nested page tables of one guest, in three consecutive pages:
/// PML4, PDPT, PD. Their physical address is the guest's N_CR3.
#[repr(C, align(4096))]
#[derive(Clone)]
pub struct NestedTables {
    /// The root: entry 0 points at `pdpt`.
    pub pml4: PageTable,
    /// Entry 0 points at `pd`.
    pub pdpt: PageTable,
    /// Entry `i` maps GPA `i × 2 MiB` while that is below the memory size.
    pub pd: PageTable,
}

impl Default for NestedTables {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl NestedTables {
    /// Tables that map nothing.
    pub const fn zeroed() -> Self {
        Self {
            pml4: PageTable::zeroed(),
            pdpt: PageTable::zeroed(),
            pd: PageTable::zeroed(),
        }
    }

    /// Fills the tables, which are at host physical address `tables_pa`, to
    /// map GPA `0..size` to HPA `host_base..host_base + size`, and returns
    /// the N_CR3 value for the VMCB (`tables_pa`). `host_base` must be 2 MiB
    /// aligned, `size` a non-zero multiple of 2 MiB of at most 1 GiB. Every
    /// entry not needed is cleared, so the tables may be reused.
    pub fn build(&mut self, tables_pa: u64, host_base: u64, size: u64) -> Result<u64, NptError> {
        validate(host_base, size)?;
        if !tables_pa.is_multiple_of(PAGE_SIZE) || tables_pa > ADDRESS_MASK - 2 * PAGE_SIZE {
            return Err(NptError::TablesMisaligned(tables_pa));
        }
        *self = Self::zeroed();
        self.pml4.entries[0] = entry(tables_pa + PAGE_SIZE, TABLE_FLAGS);
        self.pdpt.entries[0] = entry(tables_pa + 2 * PAGE_SIZE, TABLE_FLAGS);
        let pages = (size / LARGE_PAGE_SIZE) as usize;
        for (i, pd_entry) in self.pd.entries[..pages].iter_mut().enumerate() {
            *pd_entry = entry(host_base + i as u64 * LARGE_PAGE_SIZE, LEAF_FLAGS);
        }
        Ok(tables_pa)
    }

    /// Walks the tables (at host physical `tables_pa`) as the processor
    /// would for a user-mode write, and returns the HPA of `gpa`, or `None`
    /// for a nested page fault. Only follows pointers into these three
    /// tables; for checks and debugging.
    pub fn translate(&self, tables_pa: u64, gpa: u64) -> Option<u64> {
        let table_at = |pa: u64| -> Option<&PageTable> {
            let offset = pa.checked_sub(tables_pa)?;
            if !offset.is_multiple_of(PAGE_SIZE) {
                return None;
            }
            [&self.pml4, &self.pdpt, &self.pd]
                .get(usize::try_from(offset / PAGE_SIZE).ok()?)
                .copied()
        };
        let usable = |entry: u64| entry_flags(entry).contains(TABLE_FLAGS);
        let huge = |entry: u64| entry_flags(entry).contains(PageTableFlags::HUGE_PAGE);
        if gpa >> 48 != 0 {
            return None;
        }
        let [l4, l3, l2, _] = table_indexes(gpa);
        let mut table = table_at(tables_pa)?;
        for index in [l4, l3] {
            let next = table.entries[index];
            if !usable(next) || huge(next) {
                return None;
            }
            table = table_at(entry_address(next))?;
        }
        let leaf = table.entries[l2];
        if !usable(leaf) || !huge(leaf) {
            return None;
        }
        Some((entry_address(leaf) & !(LARGE_PAGE_SIZE - 1)) + (gpa & (LARGE_PAGE_SIZE - 1)))
    }
}

const _: () = assert!(size_of::<NestedTables>() as u64 == 3 * PAGE_SIZE);

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    const TABLES_PA: u64 = 0x7_0000;

    fn build(host_base: u64, size: u64) -> Box<NestedTables> {
        let mut tables = Box::new(NestedTables::zeroed());
        let n_cr3 = tables.build(TABLES_PA, host_base, size).unwrap();
        assert_eq!(n_cr3, TABLES_PA);
        tables
    }

    #[test]
    fn guest_memory_maps_to_the_host_range() {
        let host_base = 0x4000_0000;
        let size = 6 * LARGE_PAGE_SIZE;
        let tables = build(host_base, size);
        for gpa in [0, 0xFFF, 0x1000, 0x20_0000, 0x3F_FFFF, 0x12_3456, size - 1] {
            assert_eq!(
                tables.translate(TABLES_PA, gpa),
                Some(host_base + gpa),
                "{gpa:#x}"
            );
        }
    }

    #[test]
    fn everything_above_the_memory_is_unmapped() {
        let size = 4 * LARGE_PAGE_SIZE;
        let tables = build(0x20_0000, size);
        for gpa in [
            size,
            size + 0x1000,
            0x3FFF_FFFF,
            0x4000_0000,
            0xFEE0_0000,
            1 << 39,
            1 << 47,
        ] {
            assert_eq!(tables.translate(TABLES_PA, gpa), None, "{gpa:#x}");
        }
        assert_eq!(tables.pd.entries[4], 0);
        assert!(tables.pdpt.entries[1..].iter().all(|&e| e == 0));
        assert!(tables.pml4.entries[1..].iter().all(|&e| e == 0));
    }

    #[test]
    fn every_level_has_the_user_bit() {
        let tables = build(0, MAX_GUEST_MEMORY);
        assert_eq!(
            tables.pml4.entries[0],
            (TABLES_PA + 0x1000) | 0b111 // present, writable, user
        );
        assert_eq!(tables.pdpt.entries[0], (TABLES_PA + 0x2000) | 0b111);
        for (i, &entry) in tables.pd.entries.iter().enumerate() {
            assert!(entry_flags(entry).contains(LEAF_FLAGS), "PD entry {i}");
            assert_eq!(entry & (1 << 63), 0, "PD entry {i} is executable");
            assert_eq!(entry & ADDRESS_MASK, i as u64 * LARGE_PAGE_SIZE);
        }
        assert_eq!(
            tables.translate(TABLES_PA, MAX_GUEST_MEMORY - 1),
            Some(MAX_GUEST_MEMORY - 1)
        );
    }

    #[test]
    fn rebuilding_clears_old_entries() {
        let mut tables = build(0, 8 * LARGE_PAGE_SIZE);
        tables
            .build(TABLES_PA, 0x8000_0000, 2 * LARGE_PAGE_SIZE)
            .unwrap();
        assert_eq!(tables.translate(TABLES_PA, 0x10), Some(0x8000_0010));
        assert_eq!(tables.translate(TABLES_PA, 2 * LARGE_PAGE_SIZE), None);
        assert_eq!(
            tables.pd.entries[2..].iter().filter(|&&e| e != 0).count(),
            0
        );
    }

    #[test]
    fn bad_maps_are_refused() {
        let mut tables = Box::new(NestedTables::zeroed());
        let mut try_build = |tables_pa, host_base, size| tables.build(tables_pa, host_base, size);
        assert_eq!(try_build(0x1000, 0, 0), Err(NptError::Empty));
        assert_eq!(
            try_build(0x1000, 0, 0x1000),
            Err(NptError::SizeNotMultiple(0x1000))
        );
        assert_eq!(
            try_build(0x1000, 0, MAX_GUEST_MEMORY + LARGE_PAGE_SIZE),
            Err(NptError::TooLarge(MAX_GUEST_MEMORY + LARGE_PAGE_SIZE))
        );
        assert_eq!(
            try_build(0x1000, 0x1000, LARGE_PAGE_SIZE),
            Err(NptError::HostBaseMisaligned(0x1000))
        );
        assert_eq!(
            try_build(0x1000, 1 << 52, LARGE_PAGE_SIZE),
            Err(NptError::HostRangeTooHigh(1 << 52))
        );
        assert_eq!(
            try_build(0x1800, 0, LARGE_PAGE_SIZE),
            Err(NptError::TablesMisaligned(0x1800))
        );
        // The highest 2 MiB page below 2^52 is fine.
        assert!(try_build(0x1000, (1 << 52) - LARGE_PAGE_SIZE, LARGE_PAGE_SIZE).is_ok());
    }
}
