//! ACPI table discovery and parsing, without allocation.
//!
//! Sidecar needs three facts from the firmware before it can start any CPU:
//! which CPUs exist (their APIC IDs), where the local APIC lives, and which
//! NUMA node (proximity domain) each CPU and each range of memory belongs to.
//! All three come from ACPI tables that the firmware (QEMU, a VMM, or a BIOS)
//! left in memory:
//!
//! 1. The **RSDP** (Root System Description Pointer) is found either through a
//!    boot-protocol hint (the PVH start info's `rsdp_paddr`) or by scanning the
//!    legacy BIOS areas ([`find_rsdp`]).
//! 2. The RSDP points at the **XSDT** (64-bit pointers, ACPI 2.0+) or the
//!    **RSDT** (32-bit pointers, ACPI 1.0), a list of every other table.
//! 3. The **MADT** (signature `APIC`) lists the interrupt controllers: one
//!    entry per CPU's local APIC or x2APIC, the I/O APICs, and the local APIC
//!    address.
//! 4. The optional **SRAT** maps APIC IDs and memory ranges to proximity
//!    domains. Without one, the machine is a single NUMA node.
//!
//! [`parse`] follows that chain and produces an [`AcpiInfo`]; [`discover`] does
//! both steps at once.
//!
//! # Trust
//!
//! The tables are input from outside the kernel, so nothing here trusts them:
//! every table's signature, length and checksum is checked before it is used,
//! every read is bounds-checked, and a malformed table produces an
//! [`AcpiError`] whose `Display` names the table and the problem. No input
//! makes this module panic (a fuzz test in `tests.rs` checks that).
//!
//! # Memory access
//!
//! The parser never dereferences a physical address itself. It asks a
//! [`PhysMemory`] for byte slices, so the same code runs over identity-mapped
//! RAM in the kernel and over a byte buffer ([`BufferMemory`]) in host tests.
//!
//! Only the tables the parser uses (the root table, the MADT and the SRAT) are
//! checksummed; of every other table listed in the root table only the 4-byte
//! signature is read.
//!
//! Specification: ACPI 6.5, §5.2.5 (RSDP), §5.2.7–8 (RSDT/XSDT), §5.2.12
//! (MADT), §5.2.16 (SRAT).

mod madt;
mod rsdp;
mod srat;
#[cfg(test)]
mod tests;

use core::fmt;

use heapless::Vec;

use crate::MAX_CPUS;

pub use rsdp::{find_rsdp, Rsdp};

/// The most I/O APICs [`AcpiInfo::io_apics`] holds.
pub const MAX_IO_APICS: usize = 32;

/// The most SRAT memory affinity entries [`AcpiInfo::memory_ranges`] holds.
pub const MAX_MEMORY_RANGES: usize = 160;

/// Tables longer than this are rejected as corrupt rather than read: a bad
/// length field must not make the kernel checksum gigabytes of memory (or
/// touch device memory). A MADT listing 4096 x2APICs is 64 KiB.
pub const MAX_TABLE_LEN: u32 = 1 << 20;

/// Length of the header every system description table starts with.
const SDT_HEADER_LEN: usize = 36;

/// Read access to physical memory, so the parser can run on the host.
///
/// The kernel implements this over identity-mapped memory; tests implement it
/// over a byte buffer ([`BufferMemory`]).
pub trait PhysMemory {
    /// The `len` bytes starting at physical address `paddr`, or `None` when
    /// any part of that range is not readable.
    ///
    /// The parser only relies on the first `len` bytes of the returned slice
    /// and treats a shorter slice as unreadable.
    fn bytes(&self, paddr: u64, len: usize) -> Option<&[u8]>;
}

impl<T: PhysMemory + ?Sized> PhysMemory for &T {
    fn bytes(&self, paddr: u64, len: usize) -> Option<&[u8]> {
        (**self).bytes(paddr, len)
    }
}

/// A [`PhysMemory`] over a byte buffer that holds physical memory starting at
/// `base`. Addresses outside the buffer are unreadable.
#[derive(Clone, Copy, Debug)]
pub struct BufferMemory<'a> {
    base: u64,
    data: &'a [u8],
}

impl<'a> BufferMemory<'a> {
    /// Memory whose byte at physical address `base` is `data[0]`.
    pub const fn new(base: u64, data: &'a [u8]) -> Self {
        Self { base, data }
    }
}

impl PhysMemory for BufferMemory<'_> {
    fn bytes(&self, paddr: u64, len: usize) -> Option<&[u8]> {
        let offset = usize::try_from(paddr.checked_sub(self.base)?).ok()?;
        let end = offset.checked_add(len)?;
        self.data.get(offset..end)
    }
}

/// Reads exactly `len` bytes at `paddr`, or reports the range unreadable.
fn read<M: PhysMemory + ?Sized>(mem: &M, paddr: u64, len: usize) -> Result<&[u8], AcpiError> {
    mem.bytes(paddr, len)
        .and_then(|bytes| bytes.get(..len))
        .ok_or(AcpiError::Unreadable { paddr, len })
}

/// A 4-byte ACPI table signature such as `APIC` or `SRAT`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 4]);

impl Signature {
    /// The MADT (Multiple APIC Description Table).
    pub const MADT: Self = Self(*b"APIC");
    /// The SRAT (System Resource Affinity Table).
    pub const SRAT: Self = Self(*b"SRAT");
    /// The XSDT (Extended System Description Table).
    pub const XSDT: Self = Self(*b"XSDT");
    /// The RSDT (Root System Description Table).
    pub const RSDT: Self = Self(*b"RSDT");
    /// Not a table signature: names the RSDP in errors (its real signature is
    /// the 8 bytes `"RSD PTR "`).
    pub const RSDP: Self = Self(*b"RSDP");

    /// The name people use for the table: `MADT` for `APIC`, otherwise the
    /// signature itself.
    fn name(self) -> TableName {
        TableName(self)
    }
}

impl fmt::Display for Signature {
    /// The four bytes as text, with anything but printable ASCII shown as `?`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in &self.0 {
            let c = if byte.is_ascii_graphic() || byte == b' ' {
                char::from(byte)
            } else {
                '?'
            };
            fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(\"{self}\")")
    }
}

/// Displays a table's everyday name (see [`Signature::name`]).
struct TableName(Signature);

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == Signature::MADT {
            f.write_str("MADT")
        } else {
            fmt::Display::fmt(&self.0, f)
        }
    }
}

/// Why the ACPI tables could not be used.
///
/// Every variant's `Display` is one line that names the table and the problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// Neither the boot hint nor the BIOS areas hold a valid RSDP.
    NoRsdp,
    /// The RSDP address does not hold the `"RSD PTR "` signature.
    RsdpSignature {
        /// Where the RSDP was expected.
        paddr: u64,
    },
    /// The RSDP's checksum (over its first 20 bytes) or, for revision 2 and
    /// later, its extended checksum (over its whole length) is wrong.
    RsdpChecksum {
        /// Where the RSDP is.
        paddr: u64,
        /// Whether the extended checksum failed (the first one passed).
        extended: bool,
    },
    /// A table (or the RSDP) lies, at least partly, outside readable memory.
    Unreadable {
        /// The start of the unreadable range.
        paddr: u64,
        /// The number of bytes that were to be read.
        len: usize,
    },
    /// A table pointer leads to a table of another kind.
    WrongSignature {
        /// Where the table is.
        paddr: u64,
        /// The signature the pointer promised.
        expected: Signature,
        /// The signature found there.
        found: Signature,
    },
    /// A table's bytes do not sum to zero.
    ChecksumMismatch {
        /// The table's signature.
        signature: Signature,
        /// Where the table is.
        paddr: u64,
    },
    /// A table's length field is too small for its fixed fields, or leaves a
    /// partial entry at the end of the root table.
    Truncated {
        /// The table's signature.
        signature: Signature,
        /// Where the table is.
        paddr: u64,
        /// The table's length field.
        length: u32,
    },
    /// A table's length field exceeds [`MAX_TABLE_LEN`].
    TooLong {
        /// The table's signature.
        signature: Signature,
        /// Where the table is.
        paddr: u64,
        /// The table's length field.
        length: u32,
    },
    /// The root table lists no MADT.
    MadtMissing,
    /// The MADT lists CPUs, but none with the enabled flag.
    NoEnabledCpu,
    /// The MADT lists more CPUs (enabled or not) than [`MAX_CPUS`].
    TooManyCpus,
    /// The MADT lists more I/O APICs than [`MAX_IO_APICS`].
    TooManyIoApics,
    /// The SRAT lists more memory ranges than [`MAX_MEMORY_RANGES`].
    TooManyMemoryRanges,
    /// An entry of the MADT or SRAT runs past the end of its table, has a
    /// length below 2, or is too short for its type.
    MalformedEntry {
        /// The table's signature.
        signature: Signature,
        /// The entry's offset from the start of the table.
        offset: usize,
        /// The entry's type byte.
        entry_type: u8,
        /// The entry's length byte (0 when the table ends before it).
        length: u8,
    },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoRsdp => f.write_str(
                "no ACPI RSDP found (searched the boot hint, the EBDA and 0xe0000..0x100000)",
            ),
            Self::RsdpSignature { paddr } => {
                write!(f, "no ACPI RSDP signature at {paddr:#x}")
            }
            Self::RsdpChecksum { paddr, extended } => {
                let which = if extended {
                    "extended checksum"
                } else {
                    "checksum"
                };
                write!(f, "bad ACPI RSDP {which} at {paddr:#x}")
            }
            Self::Unreadable { paddr, len } => {
                write!(f, "ACPI table at {paddr:#x} unreadable ({len} bytes)")
            }
            Self::WrongSignature {
                paddr,
                expected,
                found,
            } => write!(
                f,
                "ACPI table at {paddr:#x} has signature \"{found}\", expected \"{expected}\""
            ),
            Self::ChecksumMismatch { signature, paddr } => write!(
                f,
                "{} checksum mismatch (table at {paddr:#x})",
                signature.name()
            ),
            Self::Truncated {
                signature,
                paddr,
                length,
            } => write!(
                f,
                "{} truncated (length {length}, table at {paddr:#x})",
                signature.name()
            ),
            Self::TooLong {
                signature,
                paddr,
                length,
            } => write!(
                f,
                "{} implausibly long (length {length}, table at {paddr:#x})",
                signature.name()
            ),
            Self::MadtMissing => f.write_str("MADT missing (the RSDT/XSDT lists no APIC table)"),
            Self::NoEnabledCpu => f.write_str("MADT lists no enabled CPU"),
            Self::TooManyCpus => write!(f, "MADT lists more CPUs than MAX_CPUS ({MAX_CPUS})"),
            Self::TooManyIoApics => {
                write!(f, "MADT lists more I/O APICs than {MAX_IO_APICS}")
            }
            Self::TooManyMemoryRanges => {
                write!(f, "SRAT lists more memory ranges than {MAX_MEMORY_RANGES}")
            }
            Self::MalformedEntry {
                signature,
                offset,
                entry_type,
                length,
            } => write!(
                f,
                "malformed {} entry at offset {offset} (type {entry_type}, length {length})",
                signature.name()
            ),
        }
    }
}

impl core::error::Error for AcpiError {}

/// One CPU as the MADT lists it, with its proximity domain from the SRAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuEntry {
    /// The local APIC ID (8 bits from a Processor Local APIC entry, 32 bits
    /// from a Processor Local x2APIC entry).
    pub apic_id: u32,
    /// The ACPI processor UID, which names the CPU in the DSDT.
    pub processor_uid: u32,
    /// The CPU is present and usable now (flags bit 0).
    pub enabled: bool,
    /// A disabled CPU that can be brought online later (flags bit 1).
    pub online_capable: bool,
    /// The CPU's proximity domain, when an enabled SRAT entry names its APIC
    /// ID; `None` without an SRAT.
    pub proximity_domain: Option<u32>,
}

/// One I/O APIC from the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    /// The I/O APIC's ID.
    pub id: u8,
    /// The physical address of its registers.
    pub address: u32,
    /// The first global system interrupt it handles.
    pub gsi_base: u32,
}

/// One SRAT memory affinity entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryAffinity {
    /// The proximity domain the range belongs to.
    pub proximity_domain: u32,
    /// The physical start address.
    pub base: u64,
    /// The length in bytes.
    pub length: u64,
    /// The entry is valid; OSPM ignores entries without this flag (bit 0).
    pub enabled: bool,
    /// The range may be hot-plugged or removed (bit 1).
    pub hot_pluggable: bool,
    /// The range is non-volatile memory (bit 2).
    pub non_volatile: bool,
}

/// What sidecar needs from the ACPI tables.
///
/// About 7 KiB: keep it in a static or a long-lived frame, not on a small
/// stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcpiInfo {
    /// The RSDP revision (0 for ACPI 1.0, 2 and later for an XSDT).
    pub rsdp_revision: u8,
    /// Which root table was followed: [`Signature::XSDT`] or
    /// [`Signature::RSDT`].
    pub root_table: Option<Signature>,
    /// The local APIC's physical address, from the MADT header or its Local
    /// APIC Address Override entry (type 5).
    pub local_apic_address: u64,
    /// The MADT's PCAT_COMPAT flag: legacy 8259 PICs are present and must be
    /// masked before using the APICs.
    pub pcat_compat: bool,
    /// Every CPU the MADT lists (types 0 and 9), in MADT order, disabled ones
    /// included (see [`CpuEntry::enabled`]).
    pub cpus: Vec<CpuEntry, MAX_CPUS>,
    /// Every I/O APIC the MADT lists (type 1), in MADT order.
    pub io_apics: Vec<IoApic, MAX_IO_APICS>,
    /// Every SRAT memory affinity entry (type 1), in SRAT order, disabled ones
    /// included (see [`MemoryAffinity::enabled`]).
    pub memory_ranges: Vec<MemoryAffinity, MAX_MEMORY_RANGES>,
    /// The firmware provides an SRAT. Without one the machine is one NUMA
    /// node and every `proximity_domain` is `None`.
    pub has_srat: bool,
}

impl AcpiInfo {
    /// An empty result, filled in by [`parse`].
    pub const fn new() -> Self {
        Self {
            rsdp_revision: 0,
            root_table: None,
            local_apic_address: 0,
            pcat_compat: false,
            cpus: Vec::new(),
            io_apics: Vec::new(),
            memory_ranges: Vec::new(),
            has_srat: false,
        }
    }

    /// The enabled CPUs, in MADT order.
    pub fn enabled_cpus(&self) -> impl Iterator<Item = &CpuEntry> + '_ {
        self.cpus.iter().filter(|cpu| cpu.enabled)
    }

    /// The CPU with this APIC ID, if the MADT lists one.
    pub fn cpu_by_apic_id(&self, apic_id: u32) -> Option<&CpuEntry> {
        self.cpus.iter().find(|cpu| cpu.apic_id == apic_id)
    }
}

/// Finds the RSDP ([`find_rsdp`]) and parses the tables behind it ([`parse`]).
pub fn discover<M: PhysMemory + ?Sized>(mem: &M, hint: Option<u64>) -> Result<AcpiInfo, AcpiError> {
    let rsdp_paddr = find_rsdp(mem, hint)?;
    parse(mem, rsdp_paddr)
}

/// Parses the ACPI tables reached from the RSDP at `rsdp_paddr`.
///
/// Follows the XSDT when the RSDP revision is 2 or later and its XSDT address
/// is non-zero, the RSDT otherwise. Requires a MADT with at least one enabled
/// CPU; reads the SRAT when there is one. When a table is listed twice, the
/// first copy is used.
pub fn parse<M: PhysMemory + ?Sized>(mem: &M, rsdp_paddr: u64) -> Result<AcpiInfo, AcpiError> {
    let rsdp = Rsdp::read(mem, rsdp_paddr)?;
    let (root_paddr, root_signature, pointer_len) = if rsdp.revision >= 2 && rsdp.xsdt_address != 0
    {
        (rsdp.xsdt_address, Signature::XSDT, 8)
    } else {
        (u64::from(rsdp.rsdt_address), Signature::RSDT, 4)
    };
    let root = Table::read(mem, root_paddr, root_signature)?;
    let pointers = root.body(SDT_HEADER_LEN);
    if pointers.len() % pointer_len != 0 {
        return Err(root.truncated());
    }

    let mut madt_paddr = None;
    let mut srat_paddr = None;
    for pointer in pointers.chunks_exact(pointer_len) {
        let paddr = match *pointer {
            [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
            [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
            _ => continue,
        };
        if paddr == 0 {
            // Some firmware leaves null slots in the root table.
            continue;
        }
        let signature = Signature(le::array(read(mem, paddr, 4)?, 0).unwrap_or_default());
        if signature == Signature::MADT && madt_paddr.is_none() {
            madt_paddr = Some(paddr);
        } else if signature == Signature::SRAT && srat_paddr.is_none() {
            srat_paddr = Some(paddr);
        }
    }

    let mut info = AcpiInfo::new();
    info.rsdp_revision = rsdp.revision;
    info.root_table = Some(root_signature);
    let madt_paddr = madt_paddr.ok_or(AcpiError::MadtMissing)?;
    madt::parse(&Table::read(mem, madt_paddr, Signature::MADT)?, &mut info)?;
    if let Some(srat_paddr) = srat_paddr {
        srat::parse(&Table::read(mem, srat_paddr, Signature::SRAT)?, &mut info)?;
    }
    Ok(info)
}

/// Whether `bytes` sum to zero modulo 256, as every ACPI checksum requires.
fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
}

/// A system description table whose signature, length and checksum have been
/// checked.
struct Table<'a> {
    paddr: u64,
    signature: Signature,
    /// The whole table, header included; exactly `length` bytes.
    bytes: &'a [u8],
}

impl<'a> Table<'a> {
    /// Reads and validates the table at `paddr`, which must carry `expected`.
    fn read<M: PhysMemory + ?Sized>(
        mem: &'a M,
        paddr: u64,
        expected: Signature,
    ) -> Result<Self, AcpiError> {
        let header = read(mem, paddr, SDT_HEADER_LEN)?;
        let signature = Signature(le::array(header, 0).unwrap_or_default());
        if signature != expected {
            return Err(AcpiError::WrongSignature {
                paddr,
                expected,
                found: signature,
            });
        }
        let length = le::u32(header, 4).unwrap_or_default();
        if length > MAX_TABLE_LEN {
            return Err(AcpiError::TooLong {
                signature,
                paddr,
                length,
            });
        }
        // `length` is at most `MAX_TABLE_LEN`, so it fits in a usize.
        let len = length as usize;
        if len < SDT_HEADER_LEN {
            return Err(AcpiError::Truncated {
                signature,
                paddr,
                length,
            });
        }
        let bytes = read(mem, paddr, len)?;
        if !checksum_ok(bytes) {
            return Err(AcpiError::ChecksumMismatch { signature, paddr });
        }
        Ok(Self {
            paddr,
            signature,
            bytes,
        })
    }

    /// The table from `offset` on (empty if the table is shorter).
    fn body(&self, offset: usize) -> &'a [u8] {
        self.bytes.get(offset..).unwrap_or_default()
    }

    /// The error for a table too short for its fixed fields.
    fn truncated(&self) -> AcpiError {
        AcpiError::Truncated {
            signature: self.signature,
            paddr: self.paddr,
            // `Table::read` checked that the length fits in a u32.
            length: u32::try_from(self.bytes.len()).unwrap_or(u32::MAX),
        }
    }

    /// Checks that the table has at least `len` bytes of fixed fields.
    fn require(&self, len: usize) -> Result<(), AcpiError> {
        if self.bytes.len() < len {
            Err(self.truncated())
        } else {
            Ok(())
        }
    }

    /// The variable-length entries (interrupt controller structures, affinity
    /// structures) that follow the fixed fields ending at `start`.
    fn entries(&self, start: usize) -> Entries<'a> {
        Entries {
            table: self.bytes,
            signature: self.signature,
            offset: start,
        }
    }
}

/// One `{type, length, ...}` entry of a MADT or SRAT.
struct Entry<'a> {
    /// Offset from the start of the table.
    offset: usize,
    entry_type: u8,
    /// The whole entry, type and length bytes included.
    bytes: &'a [u8],
}

impl Entry<'_> {
    /// Checks that the entry is at least `len` bytes long.
    fn require(&self, signature: Signature, len: usize) -> Result<(), AcpiError> {
        if self.bytes.len() < len {
            Err(AcpiError::MalformedEntry {
                signature,
                offset: self.offset,
                entry_type: self.entry_type,
                // An entry is at most 255 bytes long: its length is one byte.
                length: u8::try_from(self.bytes.len()).unwrap_or(u8::MAX),
            })
        } else {
            Ok(())
        }
    }
}

/// Iterates over a table's entries; stops after the first malformed one.
struct Entries<'a> {
    table: &'a [u8],
    signature: Signature,
    offset: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, AcpiError>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.offset;
        if offset >= self.table.len() {
            return None;
        }
        let entry_type = le::u8(self.table, offset).unwrap_or_default();
        let length = offset
            .checked_add(1)
            .and_then(|at| le::u8(self.table, at))
            .unwrap_or_default();
        let bytes = offset
            .checked_add(usize::from(length))
            .filter(|_| length >= 2)
            .and_then(|end| self.table.get(offset..end));
        match bytes {
            Some(bytes) => {
                self.offset = offset + bytes.len();
                Some(Ok(Entry {
                    offset,
                    entry_type,
                    bytes,
                }))
            }
            None => {
                self.offset = self.table.len();
                Some(Err(AcpiError::MalformedEntry {
                    signature: self.signature,
                    offset,
                    entry_type,
                    length,
                }))
            }
        }
    }
}

/// Bounds-checked little-endian reads from byte slices.
mod le {
    /// `N` bytes at `offset`, or `None` past the end.
    pub(super) fn array<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        bytes.get(offset..end)?.try_into().ok()
    }

    /// The byte at `offset`.
    pub(super) fn u8(bytes: &[u8], offset: usize) -> Option<u8> {
        bytes.get(offset).copied()
    }

    /// The little-endian u16 at `offset`.
    pub(super) fn u16(bytes: &[u8], offset: usize) -> Option<u16> {
        array(bytes, offset).map(u16::from_le_bytes)
    }

    /// The little-endian u32 at `offset`.
    pub(super) fn u32(bytes: &[u8], offset: usize) -> Option<u32> {
        array(bytes, offset).map(u32::from_le_bytes)
    }

    /// The little-endian u64 at `offset`.
    pub(super) fn u64(bytes: &[u8], offset: usize) -> Option<u64> {
        array(bytes, offset).map(u64::from_le_bytes)
    }
}
