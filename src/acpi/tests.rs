//! Host tests: synthetic ACPI tables built in a buffer.

use std::format;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

use super::*;

// === Table builder ===

/// Physical memory for a test: `data[0]` is at `base`.
struct Image {
    base: u64,
    data: Vec<u8>,
}

impl Image {
    fn new(base: u64, size: usize) -> Self {
        Self {
            base,
            data: vec![0; size],
        }
    }

    fn write(&mut self, paddr: u64, bytes: &[u8]) {
        let at = usize::try_from(paddr - self.base).unwrap();
        self.data[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn mem(&self) -> BufferMemory<'_> {
        BufferMemory::new(self.base, &self.data)
    }
}

/// Sets `bytes[at]` so that `bytes` sums to zero.
fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    bytes[at] = sum.wrapping_neg();
}

/// A table: header (length and checksum filled in) followed by `body`.
fn sdt(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(signature);
    t.extend_from_slice(&u32::try_from(36 + body.len()).unwrap().to_le_bytes());
    t.push(1); // revision
    t.push(0); // checksum
    t.extend_from_slice(b"SIDECR"); // OEM ID
    t.extend_from_slice(b"TESTTABL"); // OEM table ID
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(b"TEST"); // creator ID
    t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    t.extend_from_slice(body);
    fix_checksum(&mut t, 9);
    t
}

/// An RSDP: 20 bytes for revision 0-1, 36 bytes from revision 2 on.
fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"SIDECR");
    r.push(revision);
    r.extend_from_slice(&rsdt.to_le_bytes());
    if revision >= 2 {
        r.extend_from_slice(&36u32.to_le_bytes());
        r.extend_from_slice(&xsdt.to_le_bytes());
        r.extend_from_slice(&[0; 4]);
    }
    fix_checksum(&mut r[..20], 8);
    if revision >= 2 {
        fix_checksum(&mut r, 32);
    }
    r
}

fn xsdt(pointers: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = pointers.iter().flat_map(|p| p.to_le_bytes()).collect();
    sdt(b"XSDT", &body)
}

fn rsdt(pointers: &[u32]) -> Vec<u8> {
    let body: Vec<u8> = pointers.iter().flat_map(|p| p.to_le_bytes()).collect();
    sdt(b"RSDT", &body)
}

const ENABLED: u32 = 1;
const ONLINE_CAPABLE: u32 = 2;

/// Builds a MADT entry by entry.
struct Madt {
    local_apic_address: u32,
    flags: u32,
    entries: Vec<u8>,
}

impl Madt {
    fn new() -> Self {
        Self {
            local_apic_address: 0xFEE0_0000,
            flags: 1,
            entries: Vec::new(),
        }
    }

    fn local_apic(mut self, uid: u8, apic_id: u8, flags: u32) -> Self {
        self.entries.extend_from_slice(&[0, 8, uid, apic_id]);
        self.entries.extend_from_slice(&flags.to_le_bytes());
        self
    }

    fn x2apic(mut self, x2apic_id: u32, flags: u32, uid: u32) -> Self {
        self.entries.extend_from_slice(&[9, 16, 0, 0]);
        self.entries.extend_from_slice(&x2apic_id.to_le_bytes());
        self.entries.extend_from_slice(&flags.to_le_bytes());
        self.entries.extend_from_slice(&uid.to_le_bytes());
        self
    }

    fn io_apic(mut self, id: u8, address: u32, gsi_base: u32) -> Self {
        self.entries.extend_from_slice(&[1, 12, id, 0]);
        self.entries.extend_from_slice(&address.to_le_bytes());
        self.entries.extend_from_slice(&gsi_base.to_le_bytes());
        self
    }

    fn lapic_override(mut self, address: u64) -> Self {
        self.entries.extend_from_slice(&[5, 12, 0, 0]);
        self.entries.extend_from_slice(&address.to_le_bytes());
        self
    }

    /// An interrupt source override (type 2), which the parser skips.
    fn source_override(mut self) -> Self {
        self.entries
            .extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
        self
    }

    fn raw(mut self, bytes: &[u8]) -> Self {
        self.entries.extend_from_slice(bytes);
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.local_apic_address.to_le_bytes());
        body.extend_from_slice(&self.flags.to_le_bytes());
        body.extend_from_slice(&self.entries);
        sdt(b"APIC", &body)
    }
}

/// Builds an SRAT entry by entry.
struct Srat {
    entries: Vec<u8>,
}

impl Srat {
    fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    fn cpu(mut self, apic_id: u8, domain: u32, flags: u32) -> Self {
        let d = domain.to_le_bytes();
        self.entries.extend_from_slice(&[0, 16, d[0], apic_id]);
        self.entries.extend_from_slice(&flags.to_le_bytes());
        self.entries.extend_from_slice(&[0, d[1], d[2], d[3]]);
        self.entries.extend_from_slice(&0u32.to_le_bytes()); // clock domain
        self
    }

    fn x2apic(mut self, x2apic_id: u32, domain: u32, flags: u32) -> Self {
        self.entries.extend_from_slice(&[2, 24, 0, 0]);
        self.entries.extend_from_slice(&domain.to_le_bytes());
        self.entries.extend_from_slice(&x2apic_id.to_le_bytes());
        self.entries.extend_from_slice(&flags.to_le_bytes());
        self.entries.extend_from_slice(&[0; 8]);
        self
    }

    fn memory(mut self, domain: u32, base: u64, length: u64, flags: u32) -> Self {
        self.entries.extend_from_slice(&[1, 40]);
        self.entries.extend_from_slice(&domain.to_le_bytes());
        self.entries.extend_from_slice(&[0; 2]);
        self.entries
            .extend_from_slice(&u32::try_from(base & 0xFFFF_FFFF).unwrap().to_le_bytes());
        self.entries
            .extend_from_slice(&u32::try_from(base >> 32).unwrap().to_le_bytes());
        self.entries
            .extend_from_slice(&u32::try_from(length & 0xFFFF_FFFF).unwrap().to_le_bytes());
        self.entries
            .extend_from_slice(&u32::try_from(length >> 32).unwrap().to_le_bytes());
        self.entries.extend_from_slice(&[0; 4]);
        self.entries.extend_from_slice(&flags.to_le_bytes());
        self.entries.extend_from_slice(&[0; 8]);
        self
    }

    fn raw(mut self, bytes: &[u8]) -> Self {
        self.entries.extend_from_slice(bytes);
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&self.entries);
        sdt(b"SRAT", &body)
    }
}

// Layout of the compact test image (no BIOS areas).
const BASE: u64 = 0x7FF0_0000;
const RSDP_AT: u64 = BASE;
const ROOT_AT: u64 = BASE + 0x100;
const FACP_AT: u64 = BASE + 0x200;
const MADT_AT: u64 = BASE + 0x400;
const SRAT_AT: u64 = BASE + 0x3000;
const IMAGE_LEN: usize = 0x6000;

#[derive(Clone, Copy, PartialEq)]
enum Root {
    Xsdt,
    Rsdt,
}

/// An image with an RSDP at `RSDP_AT`, a root table listing a dummy FACP, the
/// MADT and (when given) the SRAT.
fn image(root: Root, madt: &[u8], srat: Option<&[u8]>) -> Image {
    let mut img = Image::new(BASE, IMAGE_LEN);
    let mut pointers = vec![FACP_AT, MADT_AT];
    if let Some(srat) = srat {
        img.write(SRAT_AT, srat);
        pointers.push(SRAT_AT);
    }
    match root {
        Root::Xsdt => {
            img.write(RSDP_AT, &rsdp(2, 0, ROOT_AT));
            img.write(ROOT_AT, &xsdt(&pointers));
        }
        Root::Rsdt => {
            img.write(RSDP_AT, &rsdp(0, u32::try_from(ROOT_AT).unwrap(), 0));
            let pointers: Vec<u32> = pointers
                .iter()
                .map(|&p| u32::try_from(p).unwrap())
                .collect();
            img.write(ROOT_AT, &rsdt(&pointers));
        }
    }
    img.write(FACP_AT, &sdt(b"FACP", &[0; 8]));
    img.write(MADT_AT, madt);
    img
}

/// Four CPUs (APIC IDs 0..4) with UIDs 1..5, all enabled.
fn four_cpus() -> Madt {
    Madt::new()
        .local_apic(1, 0, ENABLED)
        .local_apic(2, 1, ENABLED)
        .local_apic(3, 2, ENABLED)
        .local_apic(4, 3, ENABLED)
}

fn parse_image(img: &Image) -> Result<AcpiInfo, AcpiError> {
    parse(&img.mem(), RSDP_AT)
}

// === Root table paths ===

#[test]
fn xsdt_path() {
    let madt = four_cpus()
        .io_apic(0, 0xFEC0_0000, 0)
        .source_override()
        .build();
    let info = parse_image(&image(Root::Xsdt, &madt, None)).unwrap();
    assert_eq!(info.rsdp_revision, 2);
    assert_eq!(info.root_table, Some(Signature::XSDT));
    assert_eq!(info.local_apic_address, 0xFEE0_0000);
    assert!(info.pcat_compat);
    assert!(!info.has_srat);
    let ids: Vec<(u32, u32)> = info
        .cpus
        .iter()
        .map(|c| (c.apic_id, c.processor_uid))
        .collect();
    assert_eq!(ids, [(0, 1), (1, 2), (2, 3), (3, 4)]);
    assert!(info
        .cpus
        .iter()
        .all(|c| c.enabled && !c.online_capable && c.proximity_domain.is_none()));
    assert_eq!(
        info.io_apics.as_slice(),
        [IoApic {
            id: 0,
            address: 0xFEC0_0000,
            gsi_base: 0
        }]
    );
    assert!(info.memory_ranges.is_empty());
}

#[test]
fn rsdt_path() {
    let madt = four_cpus().build();
    let info = parse_image(&image(Root::Rsdt, &madt, None)).unwrap();
    assert_eq!(info.rsdp_revision, 0);
    assert_eq!(info.root_table, Some(Signature::RSDT));
    assert_eq!(info.cpus.len(), 4);
}

#[test]
fn revision_2_with_zero_xsdt_uses_rsdt() {
    let madt = four_cpus().build();
    let mut img = image(Root::Rsdt, &madt, None);
    img.write(RSDP_AT, &rsdp(2, u32::try_from(ROOT_AT).unwrap(), 0));
    let info = parse_image(&img).unwrap();
    assert_eq!(info.rsdp_revision, 2);
    assert_eq!(info.root_table, Some(Signature::RSDT));
}

#[test]
fn xsdt_preferred_over_rsdt() {
    // The XSDT lists the four-CPU MADT; the RSDT lists a one-CPU MADT.
    let mut img = image(Root::Xsdt, &four_cpus().build(), None);
    let other_madt_at = BASE + 0x2000;
    let rsdt_at = BASE + 0x1F00;
    img.write(
        other_madt_at,
        &Madt::new().local_apic(9, 9, ENABLED).build(),
    );
    img.write(rsdt_at, &rsdt(&[u32::try_from(other_madt_at).unwrap()]));
    img.write(RSDP_AT, &rsdp(2, u32::try_from(rsdt_at).unwrap(), ROOT_AT));
    assert_eq!(parse_image(&img).unwrap().cpus.len(), 4);
}

#[test]
fn null_root_pointers_are_skipped_and_first_madt_wins() {
    let mut img = image(Root::Xsdt, &four_cpus().build(), None);
    let second_madt_at = BASE + 0x2000;
    img.write(
        second_madt_at,
        &Madt::new().local_apic(9, 9, ENABLED).build(),
    );
    img.write(ROOT_AT, &xsdt(&[0, MADT_AT, second_madt_at]));
    assert_eq!(parse_image(&img).unwrap().cpus.len(), 4);
}

// === MADT contents ===

#[test]
fn x2apic_entries() {
    let madt = Madt::new()
        .local_apic(0, 0, ENABLED)
        .x2apic(300, ENABLED, 1000)
        .x2apic(0x1_0000, ONLINE_CAPABLE, 1001)
        .build();
    let info = parse_image(&image(Root::Xsdt, &madt, None)).unwrap();
    assert_eq!(
        info.cpus.as_slice(),
        [
            CpuEntry {
                apic_id: 0,
                processor_uid: 0,
                enabled: true,
                online_capable: false,
                proximity_domain: None
            },
            CpuEntry {
                apic_id: 300,
                processor_uid: 1000,
                enabled: true,
                online_capable: false,
                proximity_domain: None
            },
            CpuEntry {
                apic_id: 0x1_0000,
                processor_uid: 1001,
                enabled: false,
                online_capable: true,
                proximity_domain: None
            },
        ]
    );
    assert_eq!(info.cpu_by_apic_id(300).unwrap().processor_uid, 1000);
    assert!(info.cpu_by_apic_id(301).is_none());
}

#[test]
fn local_apic_address_override() {
    let madt = four_cpus().lapic_override(0x1_2345_6000).build();
    let info = parse_image(&image(Root::Xsdt, &madt, None)).unwrap();
    assert_eq!(info.local_apic_address, 0x1_2345_6000);
}

#[test]
fn disabled_cpus_are_kept_and_flagged() {
    // What QEMU's `-smp 4,maxcpus=8` describes: 8 entries, 4 enabled.
    let mut madt = Madt::new();
    for id in 0..8u8 {
        let flags = if id < 4 { ENABLED } else { ONLINE_CAPABLE };
        madt = madt.local_apic(id, id, flags);
    }
    let info = parse_image(&image(Root::Xsdt, &madt.build(), None)).unwrap();
    assert_eq!(info.cpus.len(), 8);
    let enabled: Vec<u32> = info.enabled_cpus().map(|c| c.apic_id).collect();
    assert_eq!(enabled, [0, 1, 2, 3]);
    assert!(info.cpus[4..]
        .iter()
        .all(|c| !c.enabled && c.online_capable));
}

#[test]
fn longer_entries_and_unknown_types_are_accepted() {
    // A type 0 entry with 4 extra bytes, then an unknown type 0x7f.
    let madt = Madt::new()
        .raw(&[0, 12, 1, 5, 1, 0, 0, 0, 0xAA, 0xBB, 0xCC, 0xDD])
        .raw(&[0x7F, 3, 0])
        .build();
    let info = parse_image(&image(Root::Xsdt, &madt, None)).unwrap();
    assert_eq!(info.cpus.len(), 1);
    assert_eq!(info.cpus[0].apic_id, 5);
}

#[test]
fn max_cpus_fit() {
    let mut madt = Madt::new();
    for id in 0..u32::try_from(MAX_CPUS).unwrap() {
        madt = madt.x2apic(id, ENABLED, id);
    }
    let info = parse_image(&image(Root::Xsdt, &madt.build(), None)).unwrap();
    assert_eq!(info.cpus.len(), MAX_CPUS);
}

// === SRAT ===

#[test]
fn srat_domains_assigned() {
    let madt = four_cpus().x2apic(300, ENABLED, 300).build();
    let srat = Srat::new()
        .cpu(0, 0, ENABLED)
        .cpu(1, 0, ENABLED)
        // A domain that needs the three high bytes.
        .cpu(2, 0x0102_0304, ENABLED)
        // Disabled: CPU 3 gets no domain.
        .cpu(3, 7, 0)
        .x2apic(300, 5, ENABLED)
        // An APIC ID the MADT does not list.
        .x2apic(999, 6, ENABLED)
        .memory(0, 0, 0xA_0000, ENABLED)
        .memory(1, 0x1_0000_0000, 0x4000_0000, ENABLED | 2 | 4)
        .memory(1, 0, 0, 0)
        .build();
    let info = parse_image(&image(Root::Xsdt, &madt, Some(&srat))).unwrap();
    assert!(info.has_srat);
    let domains: Vec<Option<u32>> = info.cpus.iter().map(|c| c.proximity_domain).collect();
    assert_eq!(
        domains,
        [Some(0), Some(0), Some(0x0102_0304), None, Some(5)]
    );
    assert_eq!(
        info.memory_ranges.as_slice(),
        [
            MemoryAffinity {
                proximity_domain: 0,
                base: 0,
                length: 0xA_0000,
                enabled: true,
                hot_pluggable: false,
                non_volatile: false
            },
            MemoryAffinity {
                proximity_domain: 1,
                base: 0x1_0000_0000,
                length: 0x4000_0000,
                enabled: true,
                hot_pluggable: true,
                non_volatile: true
            },
            MemoryAffinity {
                proximity_domain: 1,
                base: 0,
                length: 0,
                enabled: false,
                hot_pluggable: false,
                non_volatile: false
            },
        ]
    );
}

#[test]
fn srat_through_rsdt() {
    let srat = Srat::new().cpu(0, 3, ENABLED).build();
    let info = parse_image(&image(Root::Rsdt, &four_cpus().build(), Some(&srat))).unwrap();
    assert_eq!(info.cpus[0].proximity_domain, Some(3));
    assert_eq!(info.cpus[1].proximity_domain, None);
}

#[test]
fn missing_srat_is_one_node() {
    let info = parse_image(&image(Root::Xsdt, &four_cpus().build(), None)).unwrap();
    assert!(!info.has_srat);
    assert!(info.cpus.iter().all(|c| c.proximity_domain.is_none()));
}

#[test]
fn malformed_srat_is_an_error() {
    // A memory affinity entry cut to 20 bytes, at offset 48.
    let mut short_memory = vec![1, 20];
    short_memory.resize(20, 0);
    let srat = Srat::new().raw(&short_memory).build();
    let err = parse_image(&image(Root::Xsdt, &four_cpus().build(), Some(&srat))).unwrap_err();
    assert_eq!(
        err,
        AcpiError::MalformedEntry {
            signature: Signature::SRAT,
            offset: 48,
            entry_type: 1,
            length: 20
        }
    );
    assert_eq!(
        err.to_string(),
        "malformed SRAT entry at offset 48 (type 1, length 20)"
    );
}

#[test]
fn srat_checksum_and_truncation() {
    let mut srat = Srat::new().cpu(0, 0, ENABLED).build();
    srat[40] ^= 1;
    let err = parse_image(&image(Root::Xsdt, &four_cpus().build(), Some(&srat))).unwrap_err();
    assert_eq!(
        err,
        AcpiError::ChecksumMismatch {
            signature: Signature::SRAT,
            paddr: SRAT_AT
        }
    );
    // An SRAT without its 12 reserved bytes.
    let srat = sdt(b"SRAT", &[1, 0, 0, 0]);
    let err = parse_image(&image(Root::Xsdt, &four_cpus().build(), Some(&srat))).unwrap_err();
    assert_eq!(
        err,
        AcpiError::Truncated {
            signature: Signature::SRAT,
            paddr: SRAT_AT,
            length: 40
        }
    );
}

#[test]
fn too_many_memory_ranges() {
    let mut srat = Srat::new();
    for i in 0..=u64::try_from(MAX_MEMORY_RANGES).unwrap() {
        srat = srat.memory(0, i << 20, 1 << 20, ENABLED);
    }
    let err = parse_image(&image(
        Root::Xsdt,
        &four_cpus().build(),
        Some(&srat.build()),
    ))
    .unwrap_err();
    assert_eq!(err, AcpiError::TooManyMemoryRanges);
    assert_eq!(err.to_string(), "SRAT lists more memory ranges than 160");
}

// === Finding the RSDP ===

/// An image of the first 1 MiB + 64 KiB, for the BIOS-area scans; the tables
/// live at 0x10_0000.
fn low_image() -> Image {
    let mut img = Image::new(0, 0x11_0000);
    let madt_at = 0x10_0800;
    img.write(0x10_0000, &xsdt(&[madt_at]));
    img.write(madt_at, &four_cpus().build());
    img
}

#[test]
fn hint_is_used_when_valid() {
    let img = image(Root::Xsdt, &four_cpus().build(), None);
    assert_eq!(find_rsdp(&img.mem(), Some(RSDP_AT)), Ok(RSDP_AT));
    let info = discover(&img.mem(), Some(RSDP_AT)).unwrap();
    assert_eq!(info.cpus.len(), 4);
}

#[test]
fn scan_finds_rsdp_in_bios_area() {
    let mut img = low_image();
    img.write(0xF_5A30, &rsdp(2, 0, 0x10_0000));
    let mem = img.mem();
    assert_eq!(find_rsdp(&mem, None), Ok(0xF_5A30));
    // A zero hint means no hint.
    assert_eq!(find_rsdp(&mem, Some(0)), Ok(0xF_5A30));
    // An invalid hint falls back to the scan.
    assert_eq!(find_rsdp(&mem, Some(0x5000)), Ok(0xF_5A30));
    assert_eq!(discover(&mem, None).unwrap().cpus.len(), 4);
}

#[test]
fn scan_finds_rsdp_in_ebda() {
    let mut img = low_image();
    img.write(0x40E, &0x9FC0u16.to_le_bytes());
    img.write(0x9_FC00 + 0x40, &rsdp(2, 0, 0x10_0000));
    // Also one in the BIOS area: the EBDA comes first.
    img.write(0xE_0000, &rsdp(2, 0, 0x10_0000));
    assert_eq!(find_rsdp(&img.mem(), None), Ok(0x9_FC40));
}

#[test]
fn scan_ignores_ebda_past_first_kib_and_unaligned() {
    let mut img = low_image();
    img.write(0x40E, &0x9FC0u16.to_le_bytes());
    img.write(0x9_FC00 + 0x400, &rsdp(2, 0, 0x10_0000));
    img.write(0xE_0008, &rsdp(2, 0, 0x10_0000));
    assert_eq!(find_rsdp(&img.mem(), None), Err(AcpiError::NoRsdp));
}

#[test]
fn no_rsdp_found() {
    let img = low_image();
    let err = find_rsdp(&img.mem(), None).unwrap_err();
    assert_eq!(err, AcpiError::NoRsdp);
    assert_eq!(
        err.to_string(),
        "no ACPI RSDP found (searched the boot hint, the EBDA and 0xe0000..0x100000)"
    );
    // Memory without the BIOS areas at all.
    let img = Image::new(BASE, 0x100);
    assert_eq!(find_rsdp(&img.mem(), None), Err(AcpiError::NoRsdp));
}

#[test]
fn bad_rsdp_checksums() {
    let mut img = low_image();
    let mut bad = rsdp(2, 0, 0x10_0000);
    bad[8] ^= 0xFF;
    img.write(0xE_1000, &bad);
    let err = find_rsdp(&img.mem(), None).unwrap_err();
    assert_eq!(
        err,
        AcpiError::RsdpChecksum {
            paddr: 0xE_1000,
            extended: false
        }
    );
    assert_eq!(err.to_string(), "bad ACPI RSDP checksum at 0xe1000");

    let mut bad = rsdp(2, 0, 0x10_0000);
    bad[32] ^= 0xFF;
    img.write(0xE_1000, &bad);
    let err = find_rsdp(&img.mem(), None).unwrap_err();
    assert_eq!(
        err,
        AcpiError::RsdpChecksum {
            paddr: 0xE_1000,
            extended: true
        }
    );
    assert_eq!(
        err.to_string(),
        "bad ACPI RSDP extended checksum at 0xe1000"
    );

    // A later valid copy still wins.
    img.write(0xE_2000, &rsdp(2, 0, 0x10_0000));
    assert_eq!(find_rsdp(&img.mem(), None), Ok(0xE_2000));
}

#[test]
fn bad_hint_is_reported_when_scan_finds_nothing() {
    let img = low_image();
    assert_eq!(
        find_rsdp(&img.mem(), Some(0x5000)),
        Err(AcpiError::RsdpSignature { paddr: 0x5000 })
    );
    assert_eq!(
        find_rsdp(&img.mem(), Some(0x1_0000_0000)),
        Err(AcpiError::Unreadable {
            paddr: 0x1_0000_0000,
            len: 20
        })
    );
    assert_eq!(
        AcpiError::RsdpSignature { paddr: 0x5000 }.to_string(),
        "no ACPI RSDP signature at 0x5000"
    );
}

#[test]
fn rsdp_length_field_checked() {
    let mut img = image(Root::Xsdt, &four_cpus().build(), None);
    let mut r = rsdp(2, 0, ROOT_AT);
    r[20..24].copy_from_slice(&20u32.to_le_bytes());
    fix_checksum(&mut r, 32);
    img.write(RSDP_AT, &r);
    let err = parse_image(&img).unwrap_err();
    assert_eq!(
        err,
        AcpiError::Truncated {
            signature: Signature::RSDP,
            paddr: RSDP_AT,
            length: 20
        }
    );
    r[20..24].copy_from_slice(&0x10_0000u32.to_le_bytes());
    fix_checksum(&mut r, 32);
    img.write(RSDP_AT, &r);
    assert!(matches!(
        parse_image(&img),
        Err(AcpiError::TooLong {
            signature: Signature::RSDP,
            ..
        })
    ));
}

// === Table errors ===

#[test]
fn unreadable_table() {
    let mut img = image(Root::Xsdt, &four_cpus().build(), None);
    img.write(ROOT_AT, &xsdt(&[0x1_0000_0000]));
    let err = parse_image(&img).unwrap_err();
    assert_eq!(
        err,
        AcpiError::Unreadable {
            paddr: 0x1_0000_0000,
            len: 4
        }
    );
    assert_eq!(
        err.to_string(),
        "ACPI table at 0x100000000 unreadable (4 bytes)"
    );
    // A MADT whose length runs off the end of memory.
    let mut madt = four_cpus().build();
    let at = BASE + u64::try_from(IMAGE_LEN).unwrap() - 40;
    madt.truncate(40);
    img.write(at, &madt);
    img.write(ROOT_AT, &xsdt(&[at]));
    assert_eq!(
        parse_image(&img),
        Err(AcpiError::Unreadable {
            paddr: at,
            len: 44 + 4 * 8
        })
    );
}

#[test]
fn checksum_mismatch() {
    let mut madt = four_cpus().build();
    madt[50] ^= 0x10;
    let err = parse_image(&image(Root::Xsdt, &madt, None)).unwrap_err();
    assert_eq!(
        err,
        AcpiError::ChecksumMismatch {
            signature: Signature::MADT,
            paddr: MADT_AT
        }
    );
    assert_eq!(
        err.to_string(),
        format!("MADT checksum mismatch (table at {MADT_AT:#x})")
    );

    let mut img = image(Root::Xsdt, &four_cpus().build(), None);
    let mut root = xsdt(&[MADT_AT]);
    root[9] ^= 1;
    img.write(ROOT_AT, &root);
    assert_eq!(
        parse_image(&img),
        Err(AcpiError::ChecksumMismatch {
            signature: Signature::XSDT,
            paddr: ROOT_AT
        })
    );
}

#[test]
fn truncated_tables() {
    // A MADT header without the local APIC address and flags.
    let madt = sdt(b"APIC", &[0; 4]);
    let err = parse_image(&image(Root::Xsdt, &madt, None)).unwrap_err();
    assert_eq!(
        err,
        AcpiError::Truncated {
            signature: Signature::MADT,
            paddr: MADT_AT,
            length: 40
        }
    );
    assert_eq!(
        err.to_string(),
        format!("MADT truncated (length 40, table at {MADT_AT:#x})")
    );

    // A length field below the header size.
    let mut madt = four_cpus().build();
    madt[4..8].copy_from_slice(&20u32.to_le_bytes());
    assert_eq!(
        parse_image(&image(Root::Xsdt, &madt, None)),
        Err(AcpiError::Truncated {
            signature: Signature::MADT,
            paddr: MADT_AT,
            length: 20
        })
    );

    // An XSDT whose last pointer is cut in half.
    let mut img = image(Root::Xsdt, &four_cpus().build(), None);
    let mut root = xsdt(&[MADT_AT]);
    root.extend_from_slice(&[0; 4]);
    let len = u32::try_from(root.len()).unwrap();
    root[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(&mut root, 9);
    img.write(ROOT_AT, &root);
    assert_eq!(
        parse_image(&img),
        Err(AcpiError::Truncated {
            signature: Signature::XSDT,
            paddr: ROOT_AT,
            length: 48
        })
    );
}

#[test]
fn implausibly_long_table() {
    let mut madt = four_cpus().build();
    madt[4..8].copy_from_slice(&0x8000_0000u32.to_le_bytes());
    let err = parse_image(&image(Root::Xsdt, &madt, None)).unwrap_err();
    assert_eq!(
        err,
        AcpiError::TooLong {
            signature: Signature::MADT,
            paddr: MADT_AT,
            length: 0x8000_0000
        }
    );
    assert_eq!(
        err.to_string(),
        format!("MADT implausibly long (length 2147483648, table at {MADT_AT:#x})")
    );
}

#[test]
fn wrong_root_signature() {
    let mut img = image(Root::Xsdt, &four_cpus().build(), None);
    img.write(ROOT_AT, &rsdt(&[u32::try_from(MADT_AT).unwrap()]));
    let err = parse_image(&img).unwrap_err();
    assert_eq!(
        err,
        AcpiError::WrongSignature {
            paddr: ROOT_AT,
            expected: Signature::XSDT,
            found: Signature::RSDT
        }
    );
    assert_eq!(
        err.to_string(),
        format!("ACPI table at {ROOT_AT:#x} has signature \"RSDT\", expected \"XSDT\"")
    );
}

#[test]
fn madt_missing() {
    let mut img = image(Root::Xsdt, &four_cpus().build(), None);
    img.write(ROOT_AT, &xsdt(&[FACP_AT]));
    let err = parse_image(&img).unwrap_err();
    assert_eq!(err, AcpiError::MadtMissing);
    assert_eq!(
        err.to_string(),
        "MADT missing (the RSDT/XSDT lists no APIC table)"
    );
}

#[test]
fn no_enabled_cpu() {
    let madt = Madt::new()
        .local_apic(0, 0, ONLINE_CAPABLE)
        .local_apic(1, 1, 0)
        .build();
    let err = parse_image(&image(Root::Xsdt, &madt, None)).unwrap_err();
    assert_eq!(err, AcpiError::NoEnabledCpu);
    assert_eq!(err.to_string(), "MADT lists no enabled CPU");
    let empty = Madt::new().io_apic(0, 0xFEC0_0000, 0).build();
    assert_eq!(
        parse_image(&image(Root::Xsdt, &empty, None)),
        Err(AcpiError::NoEnabledCpu)
    );
}

#[test]
fn too_many_cpus() {
    let mut madt = Madt::new();
    for id in 0..=u32::try_from(MAX_CPUS).unwrap() {
        madt = madt.x2apic(id, ENABLED, id);
    }
    let err = parse_image(&image(Root::Xsdt, &madt.build(), None)).unwrap_err();
    assert_eq!(err, AcpiError::TooManyCpus);
    assert_eq!(
        err.to_string(),
        format!("MADT lists more CPUs than MAX_CPUS ({MAX_CPUS})")
    );
}

#[test]
fn too_many_io_apics() {
    let mut madt = four_cpus();
    for id in 0..=u8::try_from(MAX_IO_APICS).unwrap() {
        madt = madt.io_apic(id, 0xFEC0_0000 + u32::from(id) * 0x1000, u32::from(id) * 24);
    }
    let err = parse_image(&image(Root::Xsdt, &madt.build(), None)).unwrap_err();
    assert_eq!(err, AcpiError::TooManyIoApics);
    assert_eq!(err.to_string(), "MADT lists more I/O APICs than 32");
}

#[test]
fn malformed_madt_entries() {
    let malformed = |raw: &[u8]| {
        let madt = Madt::new().local_apic(0, 0, ENABLED).raw(raw).build();
        parse_image(&image(Root::Xsdt, &madt, None)).unwrap_err()
    };
    let at = |entry_type, length| AcpiError::MalformedEntry {
        signature: Signature::MADT,
        offset: 52,
        entry_type,
        length,
    };
    // Length 0 would loop forever if accepted.
    assert_eq!(malformed(&[0, 0]), at(0, 0));
    // Length 1.
    assert_eq!(malformed(&[4, 1]), at(4, 1));
    // Runs past the end of the table.
    assert_eq!(malformed(&[0, 8, 1, 1]), at(0, 8));
    // Only the type byte is left.
    assert_eq!(malformed(&[0]), at(0, 0));
    // Too short for its type.
    assert_eq!(malformed(&[0, 6, 1, 1, 1, 0]), at(0, 6));
    assert_eq!(malformed(&[9, 12, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]), at(9, 12));
    assert_eq!(malformed(&[1, 8, 0, 0, 0, 0, 0xC0, 0xFE]), at(1, 8));
    assert_eq!(malformed(&[5, 8, 0, 0, 0, 0, 0, 0]), at(5, 8));
    assert_eq!(
        malformed(&[0, 6, 1, 1, 1, 0]).to_string(),
        "malformed MADT entry at offset 52 (type 0, length 6)"
    );
}

#[test]
fn signature_display_escapes() {
    assert_eq!(Signature(*b"AB\0\xff").to_string(), "AB??");
    assert_eq!(std::format!("{:?}", Signature::MADT), "Signature(\"APIC\")");
}

// === Robustness ===

/// xorshift64*: a small deterministic generator for the fuzz test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

/// Re-checksums the RSDP and every table at the image's fixed offsets, from
/// their (possibly mutated) length fields, so that mutations reach the
/// parsers behind the checksum checks.
fn fix_all_checksums(data: &mut [u8]) {
    let rsdp_at = usize::try_from(RSDP_AT - BASE).unwrap();
    if data.len() >= rsdp_at + 36 {
        fix_checksum(&mut data[rsdp_at..rsdp_at + 20], 8);
        fix_checksum(&mut data[rsdp_at..rsdp_at + 36], 32);
    }
    for at in [ROOT_AT, FACP_AT, MADT_AT, SRAT_AT] {
        let at = usize::try_from(at - BASE).unwrap();
        let Some(header) = data.get(at..at + 8) else {
            continue;
        };
        let len = u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize;
        let end = (at + len.max(10)).min(data.len());
        if end > at + 9 {
            fix_checksum(&mut data[at..end], 9);
        }
    }
}

#[test]
fn mutated_images_never_panic() {
    let madt = Madt::new()
        .local_apic(0, 0, ENABLED)
        .local_apic(1, 1, ENABLED)
        .x2apic(300, ENABLED, 300)
        .x2apic(301, ONLINE_CAPABLE, 301)
        .io_apic(0, 0xFEC0_0000, 0)
        .lapic_override(0xFEE0_0000)
        .source_override()
        .build();
    let srat = Srat::new()
        .cpu(0, 0, ENABLED)
        .cpu(1, 0x100, ENABLED)
        .x2apic(300, 1, ENABLED)
        .memory(0, 0, 0x8000_0000, ENABLED)
        .memory(1, 0x1_0000_0000, 0x8000_0000, ENABLED | 2)
        .build();
    let pristine = image(Root::Xsdt, &madt, Some(&srat));
    assert!(parse_image(&pristine).is_ok());

    // Offsets worth hitting: the header fields and the entries of each table.
    let hot: Vec<(u64, usize)> = vec![
        (RSDP_AT, 36),
        (ROOT_AT, 36 + 3 * 8),
        (MADT_AT, madt.len()),
        (SRAT_AT, srat.len()),
    ];

    let mut rng = Rng(0x5EED_CAFE_F00D_D00D);
    let mut outcomes = [0usize; 2];
    for _ in 0..4000 {
        let mut data = pristine.data.clone();
        for _ in 0..1 + rng.below(4) {
            let (table, len) = hot[rng.below(hot.len())];
            let at = usize::try_from(table - BASE).unwrap() + rng.below(len);
            match rng.below(4) {
                0 => data[at] ^= 1 << rng.below(8),
                1 => data[at] = u8::try_from(rng.next() & 0xFF).unwrap(),
                2 => data[at] = [0, 1, 2, 0x7F, 0x80, 0xFF][rng.below(6)],
                _ => data.truncate(at),
            }
            if data.len() <= at {
                break;
            }
        }
        if rng.below(4) != 0 {
            fix_all_checksums(&mut data);
        }
        let mem = BufferMemory::new(BASE, &data);
        let hint = Some(RSDP_AT);
        let result = find_rsdp(&mem, hint).and_then(|paddr| parse(&mem, paddr));
        if let Err(err) = &result {
            // Formatting must not panic either.
            assert!(!err.to_string().is_empty());
        }
        outcomes[usize::from(result.is_ok())] += 1;
    }
    // Both outcomes occur, so the mutations reach past the checksums.
    assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
}
