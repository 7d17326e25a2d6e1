//! Finding and validating the RSDP (ACPI 6.5 §5.2.5).
//!
//! The RSDP is 20 bytes in ACPI 1.0 (revision 0) and 36 bytes from ACPI 2.0 on
//! (revision 2):
//!
//! | offset | size | field                                   |
//! |--------|------|-----------------------------------------|
//! | 0      | 8    | signature `"RSD PTR "`                  |
//! | 8      | 1    | checksum of bytes 0..20                 |
//! | 9      | 6    | OEM ID                                  |
//! | 15     | 1    | revision                                |
//! | 16     | 4    | RSDT address                            |
//! | 20     | 4    | length of the whole RSDP (revision ≥ 2) |
//! | 24     | 8    | XSDT address                            |
//! | 32     | 1    | extended checksum of all `length` bytes |
//! | 33     | 3    | reserved                                |

use super::{checksum_ok, le, read, AcpiError, PhysMemory, Signature};

/// The RSDP's 8-byte signature.
const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Size of an ACPI 1.0 RSDP, covered by the first checksum.
const RSDP_V1_LEN: usize = 20;
/// Size of an ACPI 2.0+ RSDP.
const RSDP_V2_LEN: usize = 36;
/// Longest RSDP length field accepted; the structure is 36 bytes today.
const RSDP_MAX_LEN: u32 = 4096;

/// Where the BIOS data area stores the EBDA's real-mode segment.
const EBDA_SEGMENT_PTR: u64 = 0x40E;
/// How much of the EBDA is searched.
const EBDA_SEARCH_LEN: u64 = 1024;
/// The BIOS read-only area searched after the EBDA.
const BIOS_AREA: core::ops::Range<u64> = 0xE_0000..0x10_0000;
/// The RSDP sits on a 16-byte boundary.
const RSDP_ALIGN: u64 = 16;

/// A validated RSDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    /// 0 for ACPI 1.0; 2 or later when the XSDT fields are present.
    pub revision: u8,
    /// The RSDT's physical address.
    pub rsdt_address: u32,
    /// The XSDT's physical address (0 before revision 2).
    pub xsdt_address: u64,
}

impl Rsdp {
    /// Reads the RSDP at `paddr` and checks its signature and checksums.
    pub fn read<M: PhysMemory + ?Sized>(mem: &M, paddr: u64) -> Result<Self, AcpiError> {
        let v1 = read(mem, paddr, RSDP_V1_LEN)?;
        if v1.get(..RSDP_SIGNATURE.len()) != Some(RSDP_SIGNATURE.as_slice()) {
            return Err(AcpiError::RsdpSignature { paddr });
        }
        if !checksum_ok(v1) {
            return Err(AcpiError::RsdpChecksum {
                paddr,
                extended: false,
            });
        }
        let revision = le::u8(v1, 15).unwrap_or_default();
        let rsdt_address = le::u32(v1, 16).unwrap_or_default();
        if revision < 2 {
            return Ok(Self {
                revision,
                rsdt_address,
                xsdt_address: 0,
            });
        }

        let v2 = read(mem, paddr, RSDP_V2_LEN)?;
        let length = le::u32(v2, 20).unwrap_or_default();
        if length < RSDP_V2_LEN as u32 {
            return Err(AcpiError::Truncated {
                signature: Signature::RSDP,
                paddr,
                length,
            });
        }
        if length > RSDP_MAX_LEN {
            return Err(AcpiError::TooLong {
                signature: Signature::RSDP,
                paddr,
                length,
            });
        }
        // At most `RSDP_MAX_LEN`, so the cast is lossless.
        if !checksum_ok(read(mem, paddr, length as usize)?) {
            return Err(AcpiError::RsdpChecksum {
                paddr,
                extended: true,
            });
        }
        Ok(Self {
            revision,
            rsdt_address,
            xsdt_address: le::u64(v2, 24).unwrap_or_default(),
        })
    }
}

/// Finds the RSDP and returns its physical address.
///
/// Tries `hint` first (the PVH start info's `rsdp_paddr`; `None` or 0 means no
/// hint), then the first KiB of the EBDA (whose segment the BIOS data area
/// holds at 0x40E), then 0xE0000..0x100000, on 16-byte boundaries. A
/// candidate counts only with a valid checksum (and extended checksum from
/// revision 2 on).
///
/// When nothing valid is found, reports why the hint, or else the first
/// candidate carrying the signature, was rejected; [`AcpiError::NoRsdp`] when
/// there was neither.
pub fn find_rsdp<M: PhysMemory + ?Sized>(mem: &M, hint: Option<u64>) -> Result<u64, AcpiError> {
    let mut first_error = None;
    if let Some(paddr) = hint.filter(|&paddr| paddr != 0) {
        match Rsdp::read(mem, paddr) {
            Ok(_) => return Ok(paddr),
            Err(err) => first_error = Some(err),
        }
    }

    let ebda = mem
        .bytes(EBDA_SEGMENT_PTR, 2)
        .and_then(|bytes| le::u16(bytes, 0))
        .map_or(0, |segment| u64::from(segment) << 4);
    if ebda != 0 {
        if let Some(paddr) = scan(mem, ebda..ebda + EBDA_SEARCH_LEN, &mut first_error) {
            return Ok(paddr);
        }
    }
    if let Some(paddr) = scan(mem, BIOS_AREA, &mut first_error) {
        return Ok(paddr);
    }
    Err(first_error.unwrap_or(AcpiError::NoRsdp))
}

/// Searches `range` on 16-byte boundaries for a valid RSDP, remembering in
/// `first_error` why the first candidate with the signature was rejected.
fn scan<M: PhysMemory + ?Sized>(
    mem: &M,
    range: core::ops::Range<u64>,
    first_error: &mut Option<AcpiError>,
) -> Option<u64> {
    let start = range.start.checked_next_multiple_of(RSDP_ALIGN)?;
    let mut paddr = start;
    while paddr < range.end {
        let signature = mem.bytes(paddr, RSDP_SIGNATURE.len());
        if signature.and_then(|s| s.get(..RSDP_SIGNATURE.len())) == Some(RSDP_SIGNATURE.as_slice())
        {
            match Rsdp::read(mem, paddr) {
                Ok(_) => return Some(paddr),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        paddr = paddr.checked_add(RSDP_ALIGN)?;
    }
    None
}
