//! Reading physical memory through the boot identity map.

use crate::acpi::PhysMemory;

/// How far the boot page tables identity-map physical memory.
pub const IDENTITY_MAPPED_END: u64 = 4 << 30;

/// Physical memory below [`IDENTITY_MAPPED_END`], read through the identity
/// map. Only for memory nobody writes while it is read: firmware tables and
/// the boot hand-off block.
pub struct IdentityMapped;

impl PhysMemory for IdentityMapped {
    fn bytes(&self, paddr: u64, len: usize) -> Option<&[u8]> {
        let end = paddr.checked_add(len as u64)?;
        if paddr == 0 || end > IDENTITY_MAPPED_END {
            return None;
        }
        // SAFETY: the range is non-null and lies inside the identity map, so
        // every byte is mapped and readable at its physical address. The
        // callers only read firmware-owned, read-only data (ACPI tables, the
        // PVH start info and command line), which nothing writes while the
        // returned slice lives.
        Some(unsafe { core::slice::from_raw_parts(paddr as *const u8, len) })
    }
}
