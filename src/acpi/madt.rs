//! The MADT, signature `APIC` (ACPI 6.5 §5.2.12).
//!
//! After the 36-byte table header: the local interrupt controller address
//! (u32 @36) and flags (u32 @40, bit 0 PCAT_COMPAT), then entries from @44,
//! each `type u8, length u8, ...`. The entries read here:
//!
//! | type | name                          | length | fields                                                   |
//! |------|-------------------------------|--------|----------------------------------------------------------|
//! | 0    | Processor Local APIC          | 8      | processor UID u8 @2, APIC ID u8 @3, flags u32 @4         |
//! | 1    | I/O APIC                      | 12     | ID u8 @2, address u32 @4, GSI base u32 @8                |
//! | 5    | Local APIC Address Override   | 12     | address u64 @4                                           |
//! | 9    | Processor Local x2APIC        | 16     | x2APIC ID u32 @4, flags u32 @8, processor UID u32 @12    |
//!
//! Processor flags: bit 0 enabled, bit 1 online capable. Other entry types are
//! skipped; entries longer than listed are accepted (later spec revisions may
//! extend them), shorter ones are malformed.

use super::{le, AcpiError, AcpiInfo, CpuEntry, IoApic, Signature, Table};

/// Where the entries start.
const ENTRIES_OFFSET: usize = 44;

const TYPE_LOCAL_APIC: u8 = 0;
const TYPE_IO_APIC: u8 = 1;
const TYPE_LOCAL_APIC_OVERRIDE: u8 = 5;
const TYPE_LOCAL_X2APIC: u8 = 9;

const FLAG_ENABLED: u32 = 1 << 0;
const FLAG_ONLINE_CAPABLE: u32 = 1 << 1;
const FLAG_PCAT_COMPAT: u32 = 1 << 0;

/// Fills in the local APIC address, the CPUs and the I/O APICs of `info`.
pub(super) fn parse(table: &Table<'_>, info: &mut AcpiInfo) -> Result<(), AcpiError> {
    table.require(ENTRIES_OFFSET)?;
    let header = table.bytes;
    info.local_apic_address = u64::from(le::u32(header, 36).unwrap_or_default());
    info.pcat_compat = le::u32(header, 40).unwrap_or_default() & FLAG_PCAT_COMPAT != 0;

    let sig = Signature::MADT;
    for entry in table.entries(ENTRIES_OFFSET) {
        let entry = entry?;
        let b = entry.bytes;
        match entry.entry_type {
            TYPE_LOCAL_APIC => {
                entry.require(sig, 8)?;
                let flags = le::u32(b, 4).unwrap_or_default();
                push_cpu(
                    info,
                    u32::from(le::u8(b, 3).unwrap_or_default()),
                    u32::from(le::u8(b, 2).unwrap_or_default()),
                    flags,
                )?;
            }
            TYPE_LOCAL_X2APIC => {
                entry.require(sig, 16)?;
                let flags = le::u32(b, 8).unwrap_or_default();
                push_cpu(
                    info,
                    le::u32(b, 4).unwrap_or_default(),
                    le::u32(b, 12).unwrap_or_default(),
                    flags,
                )?;
            }
            TYPE_IO_APIC => {
                entry.require(sig, 12)?;
                let io_apic = IoApic {
                    id: le::u8(b, 2).unwrap_or_default(),
                    address: le::u32(b, 4).unwrap_or_default(),
                    gsi_base: le::u32(b, 8).unwrap_or_default(),
                };
                info.io_apics
                    .push(io_apic)
                    .map_err(|_| AcpiError::TooManyIoApics)?;
            }
            TYPE_LOCAL_APIC_OVERRIDE => {
                entry.require(sig, 12)?;
                info.local_apic_address = le::u64(b, 4).unwrap_or_default();
            }
            _ => {}
        }
    }

    if !info.cpus.iter().any(|cpu| cpu.enabled) {
        return Err(AcpiError::NoEnabledCpu);
    }
    Ok(())
}

/// Appends one CPU, with no proximity domain yet.
fn push_cpu(
    info: &mut AcpiInfo,
    apic_id: u32,
    processor_uid: u32,
    flags: u32,
) -> Result<(), AcpiError> {
    let cpu = CpuEntry {
        apic_id,
        processor_uid,
        enabled: flags & FLAG_ENABLED != 0,
        online_capable: flags & FLAG_ONLINE_CAPABLE != 0,
        proximity_domain: None,
    };
    info.cpus.push(cpu).map_err(|_| AcpiError::TooManyCpus)
}
