//! The x86 64-bit boot protocol (Linux's `Documentation/arch/x86/boot.rst`),
//! pure: reading a bzImage's setup header, placing the kernel and the
//! initramfs, the E820 map with every page sidecar uses reserved, the zero
//! page (`boot_params`) and Linux's command line with the sidecar record.
//! Tested on the host; the bare-metal side is `linux::handoff`.

use core::fmt::{self, Write};
use core::ops::Range;

use crate::boot::memory;
use crate::boot::pvh::{MemmapEntry, MEMMAP_RAM};
use crate::layout::PAGE_SIZE;

/// Size of the zero page.
pub const ZERO_PAGE_BYTES: usize = 4096;
/// Bytes of the bzImage that hold the whole setup header (it ends at
/// `0x202 + byte 0x201`, below 0x300 for every version so far).
pub const HEADER_BYTES: usize = 1024;
/// Most E820 entries the zero page holds.
pub const E820_MAX: usize = 128;
/// E820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;
/// Offset of the 64-bit entry point in the protected-mode part.
pub const ENTRY_64_OFFSET: u64 = 0x200;

const SETUP_HEADER_START: usize = 0x1F1;
const BOOT_FLAG: usize = 0x1FE;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const JUMP_LENGTH: usize = 0x201;
const TYPE_OF_LOADER: usize = 0x210;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21C;
const CMD_LINE_PTR: usize = 0x228;
const INITRD_ADDR_MAX: usize = 0x22C;
const KERNEL_ALIGNMENT: usize = 0x230;
const RELOCATABLE: usize = 0x234;
const XLOADFLAGS: usize = 0x236;
const CMDLINE_SIZE: usize = 0x238;
const PREF_ADDRESS: usize = 0x258;
const INIT_SIZE: usize = 0x260;
// Zero-page fields outside the setup header.
const ACPI_RSDP_ADDR: usize = 0x070;
const EXT_RAMDISK_IMAGE: usize = 0x0C0;
const EXT_RAMDISK_SIZE: usize = 0x0C4;
const EXT_CMD_LINE_PTR: usize = 0x0C8;
const E820_ENTRIES: usize = 0x1E8;
const E820_TABLE: usize = 0x2D0;
const E820_ENTRY_BYTES: usize = 20;
/// `xloadflags`: the kernel has a 64-bit entry at load address + 0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
/// `type_of_loader` for a boot loader without an assigned ID.
const LOADER_UNDEFINED: u8 = 0xFF;

/// What sidecar needs from a bzImage's setup header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    /// 512-byte sectors of real-mode setup code after the boot sector.
    pub setup_sects: u8,
    /// Boot protocol version (`0x20f` is 2.15).
    pub version: u16,
    /// Where the header ends in the image (exclusive).
    pub end: usize,
    /// Alignment the kernel must be loaded at.
    pub kernel_alignment: u64,
    /// The kernel's preferred load address.
    pub pref_address: u64,
    /// Bytes of memory the kernel needs from its load address to boot.
    pub init_size: u64,
    /// Highest address the initramfs may end at.
    pub initrd_addr_max: u64,
    /// Longest command line, without its NUL.
    pub cmdline_size: u32,
}

impl SetupHeader {
    /// How many bytes of a `file`-byte image follow the setup code (the
    /// part that is loaded): checked against the header, so that a
    /// truncated or corrupt image is refused before anything is copied.
    pub fn payload_bytes(&self, file: u64) -> Result<u64, ImageError> {
        let setup = self.setup_bytes();
        let payload = file
            .checked_sub(setup)
            .filter(|&payload| payload > 0)
            .ok_or(ImageError::Truncated { file, setup })?;
        if payload > self.init_size {
            return Err(ImageError::PayloadTooLarge {
                payload,
                init_size: self.init_size,
            });
        }
        Ok(payload)
    }

    /// Bytes of the image before the protected-mode part.
    pub fn setup_bytes(&self) -> u64 {
        // A setup_sects of 0 means 4 (boot.rst).
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects
        };
        (u64::from(sects) + 1) * 512
    }
}

/// Why an image cannot be booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than a setup header.
    TooShort,
    /// No `0xAA55` boot flag or no `HdrS` magic: not a bzImage.
    NotBzImage,
    /// Boot protocol before 2.12 (no 64-bit entry flag).
    TooOld(u16),
    /// The kernel has no 64-bit entry point.
    No64BitEntry,
    /// The kernel is not relocatable.
    NotRelocatable,
    /// The file ends inside or right after its setup code: no kernel.
    Truncated {
        /// The file's size.
        file: u64,
        /// The setup code's size, from the header.
        setup: u64,
    },
    /// The kernel after the setup code is larger than the memory the
    /// header asks for (`init_size`): loading it would run past it.
    PayloadTooLarge {
        /// The kernel's size in the file.
        payload: u64,
        /// The header's `init_size`.
        init_size: u64,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::TooShort => f.write_str("the Linux image is shorter than its setup header"),
            ImageError::NotBzImage => {
                f.write_str("the Linux image is no bzImage (no 0xAA55 boot flag or HdrS magic)")
            }
            ImageError::TooOld(v) => write!(
                f,
                "the Linux image speaks boot protocol {}.{}, sidecar needs 2.12 or later",
                v >> 8,
                v & 0xFF
            ),
            ImageError::No64BitEntry => f.write_str("the Linux image has no 64-bit entry point"),
            ImageError::NotRelocatable => f.write_str("the Linux image is not relocatable"),
            ImageError::Truncated { file, setup } => write!(
                f,
                "the Linux image is truncated: {file} bytes, but its setup code alone is {setup}"
            ),
            ImageError::PayloadTooLarge { payload, init_size } => write!(
                f,
                "the Linux image's kernel is {payload} bytes, more than the {init_size} its \
                 header asks to load it into (a corrupt image?)"
            ),
        }
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from(u32_at(bytes, at)) | u64::from(u32_at(bytes, at + 4)) << 32
}

/// Reads the setup header from the first bytes of a bzImage.
pub fn parse_header(image: &[u8]) -> Result<SetupHeader, ImageError> {
    if image.len() < INIT_SIZE + 4 {
        return Err(ImageError::TooShort);
    }
    if u16_at(image, BOOT_FLAG) != 0xAA55 || &image[HEADER_MAGIC..HEADER_MAGIC + 4] != b"HdrS" {
        return Err(ImageError::NotBzImage);
    }
    let version = u16_at(image, VERSION);
    if version < 0x20C {
        return Err(ImageError::TooOld(version));
    }
    if u16_at(image, XLOADFLAGS) & XLF_KERNEL_64 == 0 {
        return Err(ImageError::No64BitEntry);
    }
    if image[RELOCATABLE] == 0 {
        return Err(ImageError::NotRelocatable);
    }
    let end = HEADER_MAGIC + usize::from(image[JUMP_LENGTH]);
    if end > image.len() || end > HEADER_BYTES {
        return Err(ImageError::TooShort);
    }
    Ok(SetupHeader {
        setup_sects: image[SETUP_HEADER_START],
        version,
        end,
        kernel_alignment: u64::from(u32_at(image, KERNEL_ALIGNMENT)).max(PAGE_SIZE),
        pref_address: u64_at(image, PREF_ADDRESS),
        init_size: u64::from(u32_at(image, INIT_SIZE)),
        initrd_addr_max: u64::from(u32_at(image, INITRD_ADDR_MAX)),
        cmdline_size: u32_at(image, CMDLINE_SIZE),
    })
}

/// Where the kernel's protected-mode part and the initramfs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Load address of the protected-mode part (aligned to the kernel's
    /// alignment, `init_size` bytes of RAM from here).
    pub kernel: u64,
    /// Where the initramfs starts (page aligned, after `kernel + init_size`).
    pub initrd: u64,
}

/// No RAM block holds the kernel and the initramfs above sidecar's pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoRoom {
    /// Bytes needed.
    pub required: u64,
    /// The lowest address they may start at.
    pub floor: u64,
}

impl fmt::Display for NoRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Linux needs {} MiB of contiguous RAM above {:#x} (its init_size and the \
             initramfs): give the VM more memory",
            self.required >> 20,
            self.floor
        )
    }
}

/// Places the kernel at or above its preferred address and above `floor`
/// (the end of everything sidecar uses), with `init_size` bytes for it and
/// the initramfs after them, all in one usable RAM block of `map` below
/// `ceiling` (the identity map's end) and the initramfs below its limit.
pub fn place(
    header: &SetupHeader,
    initrd_bytes: u64,
    map: &[MemmapEntry],
    floor: u64,
    ceiling: u64,
) -> Result<Placement, NoRoom> {
    let align = header.kernel_alignment;
    // Checked throughout: the header's fields are the image's to choose
    // (a `pref_address` near 2^64 would wrap the floor to 0, over sidecar).
    let kernel_bytes = header.init_size.next_multiple_of(PAGE_SIZE);
    let required = initrd_bytes
        .checked_next_multiple_of(PAGE_SIZE)
        .and_then(|initrd| initrd.checked_add(kernel_bytes));
    let start_floor = floor
        .max(header.pref_address)
        .checked_next_multiple_of(align);
    let (Some(required), Some(start_floor)) = (required, start_floor) else {
        return Err(NoRoom {
            required: required.unwrap_or(u64::MAX),
            floor: start_floor.unwrap_or(u64::MAX),
        });
    };
    for entry in map.iter().filter(|e| e.kind == MEMMAP_RAM) {
        let end = entry.addr.saturating_add(entry.size).min(ceiling);
        let mut from = entry.addr.max(start_floor);
        // Candidates in the entry: after each firmware range inside it that
        // the kernel and initramfs would overlap.
        while let Some(kernel) = from.checked_next_multiple_of(align) {
            let Some(top) = kernel.checked_add(required).filter(|&top| top <= end) else {
                break;
            };
            if let Some(other) = memory::first_overlap(map, kernel, top) {
                from = other.addr.saturating_add(other.size);
                continue;
            }
            let initrd = kernel + kernel_bytes;
            if initrd.saturating_add(initrd_bytes) > header.initrd_addr_max.saturating_add(1) {
                break;
            }
            debug_assert!(kernel >= floor);
            return Ok(Placement { kernel, initrd });
        }
    }
    Err(NoRoom {
        required,
        floor: start_floor,
    })
}

/// One E820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// 1 usable RAM, 2 reserved, 3 ACPI tables, 4 ACPI NVS...
    pub kind: u32,
}

/// The E820 map does not fit the zero page's 128 entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyEntries;

/// The firmware's map with every range of `reserved` taken out of the
/// usable RAM and listed as reserved, sorted by address. Ranges are page
/// aligned outwards; reserved ranges may overlap each other.
pub fn e820_map(
    firmware: &[MemmapEntry],
    reserved: &[Range<u64>],
) -> Result<heapless::Vec<E820Entry, E820_MAX>, TooManyEntries> {
    let mut out: heapless::Vec<E820Entry, E820_MAX> = heapless::Vec::new();
    let aligned =
        |r: &Range<u64>| (r.start / PAGE_SIZE * PAGE_SIZE)..r.end.next_multiple_of(PAGE_SIZE);
    for entry in firmware {
        let entry_end = entry.addr.saturating_add(entry.size);
        if entry.kind != MEMMAP_RAM {
            push(&mut out, entry.addr..entry_end, entry.kind)?;
            continue;
        }
        // Walk the RAM entry, cutting out each range that meets it, in
        // address order: sidecar's (page-aligned outward, reserved here)
        // and the firmware's own non-RAM entries inside it (exactly, and
        // pushed above or below as they are: firmware may list one inside
        // a RAM entry, and reserved wins).
        let firmware_cuts = firmware
            .iter()
            .filter(|e| e.kind != MEMMAP_RAM)
            .map(|e| (e.addr..e.addr.saturating_add(e.size), None));
        let sidecar_cuts = reserved.iter().map(|r| (aligned(r), Some(E820_RESERVED)));
        let mut cursor = entry.addr;
        while cursor < entry_end {
            let next_cut = sidecar_cuts
                .clone()
                .chain(firmware_cuts.clone())
                .filter(|(r, _)| r.end > cursor && r.start < entry_end)
                .min_by_key(|(r, _)| r.start);
            match next_cut {
                Some((cut, kind)) if cut.start <= cursor => {
                    let end = cut.end.min(entry_end);
                    if let Some(kind) = kind {
                        push(&mut out, cursor..end, kind)?;
                    }
                    cursor = end;
                }
                Some((cut, _)) => {
                    push(&mut out, cursor..cut.start, MEMMAP_RAM)?;
                    cursor = cut.start;
                }
                None => {
                    push(&mut out, cursor..entry_end, MEMMAP_RAM)?;
                    cursor = entry_end;
                }
            }
        }
    }
    out.sort_unstable_by_key(|e| e.addr);
    Ok(out)
}

/// Appends `range` as `kind`, merged with the previous entry when they
/// touch and agree.
fn push(
    out: &mut heapless::Vec<E820Entry, E820_MAX>,
    range: Range<u64>,
    kind: u32,
) -> Result<(), TooManyEntries> {
    if range.is_empty() {
        return Ok(());
    }
    if let Some(last) = out.last_mut() {
        if last.kind == kind && last.addr + last.size == range.start {
            last.size += range.end - range.start;
            return Ok(());
        }
    }
    out.push(E820Entry {
        addr: range.start,
        size: range.end - range.start,
        kind,
    })
    .map_err(|_| TooManyEntries)
}

/// What the zero page tells Linux besides its own setup header.
#[derive(Clone, Copy, Debug)]
pub struct ZeroPageFacts<'a> {
    /// Physical address of the NUL-terminated command line.
    pub cmdline: u64,
    /// The initramfs: physical address and size.
    pub initrd: (u64, u64),
    /// The ACPI RSDP's physical address, or 0 to let Linux search.
    pub rsdp: u64,
    /// The memory map.
    pub e820: &'a [E820Entry],
}

fn put_u32(page: &mut [u8], at: usize, value: u32) {
    page[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Fills a zeroed zero page: the image's setup header, the loader type,
/// the command line, the initramfs, the RSDP and the E820 map.
pub fn fill_zero_page(
    page: &mut [u8; ZERO_PAGE_BYTES],
    image_header: &[u8],
    header: &SetupHeader,
    facts: &ZeroPageFacts<'_>,
) {
    page[SETUP_HEADER_START..header.end]
        .copy_from_slice(&image_header[SETUP_HEADER_START..header.end]);
    page[TYPE_OF_LOADER] = LOADER_UNDEFINED;
    put_u32(page, CMD_LINE_PTR, facts.cmdline as u32);
    put_u32(page, EXT_CMD_LINE_PTR, (facts.cmdline >> 32) as u32);
    put_u32(page, RAMDISK_IMAGE, facts.initrd.0 as u32);
    put_u32(page, EXT_RAMDISK_IMAGE, (facts.initrd.0 >> 32) as u32);
    put_u32(page, RAMDISK_SIZE, facts.initrd.1 as u32);
    put_u32(page, EXT_RAMDISK_SIZE, (facts.initrd.1 >> 32) as u32);
    page[ACPI_RSDP_ADDR..ACPI_RSDP_ADDR + 8].copy_from_slice(&facts.rsdp.to_le_bytes());
    let entries = facts.e820.len().min(E820_MAX);
    page[E820_ENTRIES] = entries as u8;
    for (i, entry) in facts.e820[..entries].iter().enumerate() {
        let at = E820_TABLE + i * E820_ENTRY_BYTES;
        page[at..at + 8].copy_from_slice(&entry.addr.to_le_bytes());
        page[at + 8..at + 16].copy_from_slice(&entry.size.to_le_bytes());
        put_u32(page, at + 16, entry.kind);
    }
}

/// A node as the sidecar record names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordNode {
    /// Physical address of the node's control page, 0 when the node has
    /// no sidecar CPU (and so no control page).
    pub control_page: u64,
    /// VP index of the node's first CPU.
    pub base_vp: u32,
    /// CPUs in the node.
    pub vp_count: u32,
    /// Bit i set: the node's CPU i runs sidecar (the others are the main
    /// kernel's: the base VP and removed CPUs). Nodes have at most 32 CPUs.
    pub sidecar_mask: u32,
}

/// What Linux's command line carries besides the console options.
#[derive(Clone, Copy, Debug)]
pub struct LinuxCmdline<'a> {
    /// The vector the driver IPIs to wake a sidecar CPU.
    pub request_vector: u8,
    /// Every node, in VP order.
    pub nodes: &'a [RecordNode],
    /// The TSC at the BSP's entry.
    pub entry_tsc: u64,
    /// The TSC's frequency.
    pub tsc_hz: u64,
    /// Guest memory: its host physical base and size (the user-mode VMM
    /// maps it through the driver).
    pub guest: (u64, u64),
}

impl fmt::Display for LinuxCmdline<'_> {
    /// `console=ttyS0 earlyprintk=serial panic=-1 maxcpus=1 sidecar=V,N,N...
    /// sidecar_guest=BASE:SIZE sidecar_entry_tsc=T sidecar_tsc_hz=H`, where each node `N` is
    /// `CONTROL:BASE_VP:COUNT:SIDECAR_MASK` (`docs/linux.md`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // maxcpus=1: Linux boots on the BSP alone and brings up no other
        // CPU by itself; init onlines the main-kernel CPUs by number.
        f.write_str("console=ttyS0 earlyprintk=serial panic=-1 maxcpus=1 sidecar=")?;
        write!(f, "{}", self.request_vector)?;
        for node in self.nodes {
            write!(
                f,
                ",{:#x}:{}:{}:{:#x}",
                node.control_page, node.base_vp, node.vp_count, node.sidecar_mask
            )?;
        }
        write!(
            f,
            " sidecar_guest={:#x}:{:#x} sidecar_entry_tsc={} sidecar_tsc_hz={}",
            self.guest.0, self.guest.1, self.entry_tsc, self.tsc_hz
        )
    }
}

/// A `fmt::Write` into a byte buffer that keeps the last byte for a NUL.
pub struct CmdlineBuffer<'a> {
    bytes: &'a mut [u8],
    len: usize,
}

impl<'a> CmdlineBuffer<'a> {
    /// An empty buffer over `bytes` (zeroed by the caller).
    pub fn new(bytes: &'a mut [u8]) -> Self {
        CmdlineBuffer { bytes, len: 0 }
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Write for CmdlineBuffer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end >= self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    fn ram(addr: u64, size: u64) -> MemmapEntry {
        MemmapEntry {
            addr,
            size,
            kind: MEMMAP_RAM,
            reserved: 0,
        }
    }

    /// The first KiB of Debian's 6.1 cloud kernel, as far as the header goes.
    fn image() -> Vec<u8> {
        let mut bytes = std::vec![0u8; HEADER_BYTES];
        bytes[SETUP_HEADER_START] = 39;
        bytes[BOOT_FLAG..BOOT_FLAG + 2].copy_from_slice(&0xAA55u16.to_le_bytes());
        bytes[JUMP_LENGTH] = 0x6A;
        bytes[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        bytes[VERSION..VERSION + 2].copy_from_slice(&0x20Fu16.to_le_bytes());
        bytes[KERNEL_ALIGNMENT..KERNEL_ALIGNMENT + 4].copy_from_slice(&0x20_0000u32.to_le_bytes());
        bytes[RELOCATABLE] = 1;
        bytes[XLOADFLAGS..XLOADFLAGS + 2].copy_from_slice(&0x7Fu16.to_le_bytes());
        bytes[CMDLINE_SIZE..CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        bytes[INITRD_ADDR_MAX..INITRD_ADDR_MAX + 4].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        bytes[PREF_ADDRESS..PREF_ADDRESS + 8].copy_from_slice(&0x100_0000u64.to_le_bytes());
        bytes[INIT_SIZE..INIT_SIZE + 4].copy_from_slice(&0x337_8000u32.to_le_bytes());
        bytes
    }

    #[test]
    fn reads_the_setup_header() {
        let header = parse_header(&image()).unwrap();
        assert_eq!(header.setup_sects, 39);
        assert_eq!(header.setup_bytes(), 40 * 512);
        assert_eq!(header.version, 0x20F);
        assert_eq!(header.end, 0x26C);
        assert_eq!(header.kernel_alignment, 2 << 20);
        assert_eq!(header.pref_address, 16 << 20);
        assert_eq!(header.init_size, 0x337_8000);
        assert_eq!(header.cmdline_size, 2047);
    }

    #[test]
    fn rejects_what_it_cannot_boot() {
        assert_eq!(parse_header(&[0; 16]), Err(ImageError::TooShort));
        let mut bad = image();
        bad[HEADER_MAGIC] = b'X';
        assert_eq!(parse_header(&bad), Err(ImageError::NotBzImage));
        let mut old = image();
        old[VERSION] = 0x0B;
        assert_eq!(parse_header(&old), Err(ImageError::TooOld(0x20B)));
        assert!(ImageError::TooOld(0x20B).to_string().contains("2.11"));
        let mut no64 = image();
        no64[XLOADFLAGS] = 0x7E;
        assert_eq!(parse_header(&no64), Err(ImageError::No64BitEntry));
        let mut fixed = image();
        fixed[RELOCATABLE] = 0;
        assert_eq!(parse_header(&fixed), Err(ImageError::NotRelocatable));
    }

    #[test]
    fn places_the_kernel_above_sidecar_and_its_preference() {
        let header = parse_header(&image()).unwrap();
        let map = [ram(0, 0x9_FC00), ram(0x10_0000, 0xFF0_0000)];
        // Sidecar ends low: the preferred 16 MiB wins.
        let low = place(&header, 0x12_3456, &map, 0xA0_0000, 1 << 32).unwrap();
        assert_eq!(low.kernel, 16 << 20);
        assert_eq!(low.initrd, (16 << 20) + 0x337_8000);
        // Sidecar ends above it: the next 2 MiB boundary.
        let high = place(&header, 0x1000, &map, 0x110_0001, 1 << 32).unwrap();
        assert_eq!(high.kernel, 0x120_0000);
        // Not enough RAM.
        let err = place(&header, 0x1000, &[ram(0x10_0000, 0x300_0000)], 0, 1 << 32).unwrap_err();
        assert_eq!(err.floor, 16 << 20);
        assert!(err.to_string().contains("give the VM more memory"));
    }

    #[test]
    fn a_firmware_range_inside_ram_stays_out_of_it() {
        let firmware = [
            ram(0x10_0000, 0x1FF0_0000),
            MemmapEntry {
                addr: 0x100_0000,
                size: 0x1_0000,
                kind: E820_RESERVED,
                reserved: 0,
            },
        ];
        let map = e820_map(&firmware, &[]).unwrap();
        let entry = |addr, size, kind| E820Entry { addr, size, kind };
        assert_eq!(
            map.as_slice(),
            [
                entry(0x10_0000, 0xF0_0000, 1),
                entry(0x100_0000, 0x1_0000, 2),
                entry(0x101_0000, 0x2000_0000 - 0x101_0000, 1),
            ]
        );
        // And the kernel is not placed on it.
        let header = parse_header(&image()).unwrap();
        let placed = place(&header, 0x1000, &firmware, 0x80_0000, 1 << 32).unwrap();
        assert!(placed.kernel >= 0x101_0000, "{placed:?}");
    }

    #[test]
    fn a_preferred_address_near_the_top_does_not_wrap_below_the_floor() {
        let mut header = parse_header(&image()).unwrap();
        header.pref_address = u64::MAX - 0x1000;
        let map = [ram(0x10_0000, 0x1FF0_0000)];
        assert!(place(&header, 0x1000, &map, 0x80_0000, 1 << 32).is_err());
    }

    #[test]
    fn a_truncated_or_oversized_payload_is_refused() {
        let header = parse_header(&image()).unwrap();
        let setup = header.setup_bytes();
        assert_eq!(
            header.payload_bytes(4096),
            Err(ImageError::Truncated { file: 4096, setup })
        );
        assert_eq!(
            header.payload_bytes(setup),
            Err(ImageError::Truncated { file: setup, setup })
        );
        assert_eq!(header.payload_bytes(setup + 0x1000), Ok(0x1000));
        let too_big = setup + header.init_size + 1;
        assert_eq!(
            header.payload_bytes(too_big),
            Err(ImageError::PayloadTooLarge {
                payload: header.init_size + 1,
                init_size: header.init_size
            })
        );
        assert!(ImageError::Truncated { file: 4096, setup }
            .to_string()
            .contains("truncated: 4096 bytes"));
    }

    #[test]
    fn reserved_ranges_leave_the_usable_ram() {
        let firmware = [
            ram(0, 0x9_FC00),
            MemmapEntry {
                addr: 0x9_FC00,
                size: 0x400,
                kind: E820_RESERVED,
                reserved: 0,
            },
            ram(0x10_0000, 0x3FF0_0000),
        ];
        let reserved = [
            0x8000..0x9000,
            0x10_0000..0x20_0000,
            0x20_0000..0x2E_1234, // a node region, rounded up
            0x40_0000..0xA0_8000, // guest memory and its tables
        ];
        let map = e820_map(&firmware, &reserved).unwrap();
        let entry = |addr, size, kind| E820Entry { addr, size, kind };
        assert_eq!(
            map.as_slice(),
            [
                entry(0, 0x8000, 1),
                entry(0x8000, 0x1000, 2),
                entry(0x9000, 0x9_FC00 - 0x9000, 1),
                entry(0x9_FC00, 0x400, 2),
                entry(0x10_0000, 0x1E_2000, 2),
                entry(0x2E_2000, 0x40_0000 - 0x2E_2000, 1),
                entry(0x40_0000, 0x60_8000, 2),
                entry(0xA0_8000, 0x4000_0000 - 0xA0_8000, 1),
            ]
        );
        // Every reserved byte is outside the usable RAM.
        for range in &reserved {
            for e in map.iter().filter(|e| e.kind == MEMMAP_RAM) {
                assert!(range.end <= e.addr || e.addr + e.size <= range.start);
            }
        }
    }

    #[test]
    fn zero_page_carries_header_loader_cmdline_initrd_and_map() {
        let bytes = image();
        let header = parse_header(&bytes).unwrap();
        let e820 = [
            E820Entry {
                addr: 0,
                size: 0x9_F000,
                kind: 1,
            },
            E820Entry {
                addr: 0x10_0000,
                size: 0x1000,
                kind: 2,
            },
        ];
        let mut page = [0u8; ZERO_PAGE_BYTES];
        let facts = ZeroPageFacts {
            cmdline: 0x1_2345_6000,
            initrd: (0x400_0000, 0x11_2233),
            rsdp: 0xF_5A30,
            e820: &e820,
        };
        fill_zero_page(&mut page, &bytes, &header, &facts);
        assert_eq!(&page[HEADER_MAGIC..HEADER_MAGIC + 4], b"HdrS");
        assert_eq!(page[SETUP_HEADER_START], 39);
        assert_eq!(page[TYPE_OF_LOADER], 0xFF);
        assert_eq!(u32_at(&page, CMD_LINE_PTR), 0x2345_6000);
        assert_eq!(u32_at(&page, EXT_CMD_LINE_PTR), 1);
        assert_eq!(u32_at(&page, RAMDISK_IMAGE), 0x400_0000);
        assert_eq!(u32_at(&page, RAMDISK_SIZE), 0x11_2233);
        assert_eq!(u64_at(&page, ACPI_RSDP_ADDR), 0xF_5A30);
        assert_eq!(page[E820_ENTRIES], 2);
        let second = E820_TABLE + E820_ENTRY_BYTES;
        assert_eq!(u64_at(&page, second), 0x10_0000);
        assert_eq!(u64_at(&page, second + 8), 0x1000);
        assert_eq!(u32_at(&page, second + 16), 2);
        // Nothing before the header but the fields set above.
        assert_eq!(page[0x1EF], 0, "the sentinel stays zero");
    }

    #[test]
    fn the_command_line_carries_the_record() {
        let nodes = [
            RecordNode {
                control_page: 0x20_1000,
                base_vp: 0,
                vp_count: 8,
                sidecar_mask: 0xF6,
            },
            RecordNode {
                control_page: 0,
                base_vp: 8,
                vp_count: 1,
                sidecar_mask: 0,
            },
        ];
        let line = LinuxCmdline {
            request_vector: 0xF1,
            nodes: &nodes,
            entry_tsc: 123,
            tsc_hz: 2_000_000_000,
            guest: (0x600000, 0x600000),
        };
        let mut bytes = [0u8; 256];
        let mut buffer = CmdlineBuffer::new(&mut bytes);
        write!(buffer, "{line}").unwrap();
        assert_eq!(
            buffer.as_str(),
            "console=ttyS0 earlyprintk=serial panic=-1 maxcpus=1 \
             sidecar=241,0x201000:0:8:0xf6,0x0:8:1:0x0 sidecar_guest=0x600000:0x600000 \
             sidecar_entry_tsc=123 sidecar_tsc_hz=2000000000"
        );
        let mut small = [0u8; 8];
        assert!(write!(CmdlineBuffer::new(&mut small), "{line}").is_err());
    }
}
