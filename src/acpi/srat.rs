//! The SRAT, signature `SRAT` (ACPI 6.5 §5.2.16).
//!
//! After the 36-byte table header: 12 reserved bytes (u32 @36 that must be 1,
//! u64 @40), then entries from @48, each `type u8, length u8, ...`. The entries
//! read here:
//!
//! | type | name                               | length | fields                                                                                 |
//! |------|------------------------------------|--------|----------------------------------------------------------------------------------------|
//! | 0    | Processor Local APIC/SAPIC Affinity| 16     | domain bits 0–7 u8 @2, APIC ID u8 @3, flags u32 @4, domain bits 8–31 as 3 bytes @9     |
//! | 1    | Memory Affinity                    | 40     | domain u32 @2, base u64 @8, length u64 @16, flags u32 @28                              |
//! | 2    | Processor Local x2APIC Affinity    | 24     | domain u32 @4, x2APIC ID u32 @8, flags u32 @12                                         |
//!
//! Processor flags: bit 0 enabled (entries without it are ignored). Memory
//! flags: bit 0 enabled, bit 1 hot pluggable, bit 2 non-volatile. Other entry
//! types (GICC, ITS, generic initiators, …) are skipped.

use super::{le, AcpiError, AcpiInfo, MemoryAffinity, Signature, Table};

/// Where the entries start.
const ENTRIES_OFFSET: usize = 48;

const TYPE_LOCAL_APIC_AFFINITY: u8 = 0;
const TYPE_MEMORY_AFFINITY: u8 = 1;
const TYPE_LOCAL_X2APIC_AFFINITY: u8 = 2;

const FLAG_ENABLED: u32 = 1 << 0;
const FLAG_HOT_PLUGGABLE: u32 = 1 << 1;
const FLAG_NON_VOLATILE: u32 = 1 << 2;

/// Fills in the CPUs' proximity domains and the memory ranges of `info`,
/// whose CPUs the MADT has already listed.
pub(super) fn parse(table: &Table<'_>, info: &mut AcpiInfo) -> Result<(), AcpiError> {
    table.require(ENTRIES_OFFSET)?;
    info.has_srat = true;

    let sig = Signature::SRAT;
    for entry in table.entries(ENTRIES_OFFSET) {
        let entry = entry?;
        let b = entry.bytes;
        match entry.entry_type {
            TYPE_LOCAL_APIC_AFFINITY => {
                entry.require(sig, 16)?;
                let [low, apic_id] = le::array(b, 2).unwrap_or_default();
                let [d1, d2, d3] = le::array(b, 9).unwrap_or_default();
                let domain = u32::from_le_bytes([low, d1, d2, d3]);
                let flags = le::u32(b, 4).unwrap_or_default();
                assign_domain(info, u32::from(apic_id), domain, flags);
            }
            TYPE_LOCAL_X2APIC_AFFINITY => {
                entry.require(sig, 24)?;
                let domain = le::u32(b, 4).unwrap_or_default();
                let apic_id = le::u32(b, 8).unwrap_or_default();
                let flags = le::u32(b, 12).unwrap_or_default();
                assign_domain(info, apic_id, domain, flags);
            }
            TYPE_MEMORY_AFFINITY => {
                entry.require(sig, 40)?;
                let flags = le::u32(b, 28).unwrap_or_default();
                let range = MemoryAffinity {
                    proximity_domain: le::u32(b, 2).unwrap_or_default(),
                    base: le::u64(b, 8).unwrap_or_default(),
                    length: le::u64(b, 16).unwrap_or_default(),
                    enabled: flags & FLAG_ENABLED != 0,
                    hot_pluggable: flags & FLAG_HOT_PLUGGABLE != 0,
                    non_volatile: flags & FLAG_NON_VOLATILE != 0,
                };
                info.memory_ranges
                    .push(range)
                    .map_err(|_| AcpiError::TooManyMemoryRanges)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Records `domain` for every CPU with `apic_id`, when the entry is enabled.
/// SRAT entries for APIC IDs the MADT does not list are ignored.
fn assign_domain(info: &mut AcpiInfo, apic_id: u32, domain: u32, flags: u32) {
    if flags & FLAG_ENABLED == 0 {
        return;
    }
    for cpu in info.cpus.iter_mut().filter(|cpu| cpu.apic_id == apic_id) {
        cpu.proximity_domain = Some(domain);
    }
}
