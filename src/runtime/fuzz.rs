//! A model-based fuzz test of [`execute`]: random, mostly malformed command
//! pages against a model of what the command code must do with them.
//!
//! A deterministic xorshift generator builds each page from raw bytes (never
//! through the ABI helpers under test): command numbers (mostly valid, some
//! garbage), register counts (0..=31, 32, up to `u16::MAX`), register names
//! (supported, near misses, garbage), target-VTL bytes, TRANSLATE_GVA
//! requests over random guest page tables in a small [`GuestMemory`] (loops,
//! tables and pages outside memory, reserved bits), random bytes in the whole
//! request area, and random junk everywhere the CPU must ignore or reset.
//!
//! The model keeps a shadow of every register. Each VP *session* starts from
//! a random [`VpState`] and `cpu_context`, then sets every supported register
//! to a random value, so that the shadow knows each one. The properties,
//! checked after every case:
//!
//! - nothing panics; `command` is always reset to `NONE`;
//! - an invalid page ends with `has_error == 1` and a non-empty, valid UTF-8
//!   message saying what was wrong; a valid one with `has_error == 0`;
//! - a valid GET returns exactly what the shadow holds (the values earlier
//!   SETs stored), and writes nothing but the values and the status;
//! - every GET or SET with a readable count ends with status SUCCESS, or
//!   INVALID_PARAMETER for a bad VTL or an unknown name;
//! - a SET with any fault (too many registers, a bad VTL, one unknown name)
//!   changes no register: `VpState` and `cpu_context` compare equal before
//!   and after; a valid SET changes the registers it names and nothing
//!   else (full GETs of every register, every few cases, compare the whole
//!   VP with the shadow);
//! - TRANSLATE_GVA gives the result a reference walk gives, in every field
//!   of the response: a failed walk is no error (`has_error == 0`), its
//!   result code and the #PF the access would raise are in the response; a
//!   non-canonical GVN gets status INVALID_PARAMETER and a zero output;
//!   paging outside long mode is an error. It writes only the response, and
//!   touches guest memory only to set accessed/dirty bits, and only when
//!   asked to;
//! - NONE changes nothing and is no error (OpenHCL's liveness test);
//! - RUN_VP is handed back ([`Outcome::RunVp`]) with nothing changed but
//!   the command and error fields;
//! - the intercept message, padding and reserved bytes never change.
//!
//! `cargo test` runs 20 000 cases (a fraction of a second in debug). The
//! long run:
//!
//! ```text
//! cargo test -p sidecar --release --lib fuzz_commands_million -- --ignored --nocapture
//! ```

use std::boxed::Box;
use std::format;
use std::string::String;
use std::vec::Vec;

use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;

use zerocopy::IntoBytes;

use super::commands::{execute, Outcome};
use crate::abi::{
    CommandPage, HvX64RegisterName as Name, SidecarCommand, TranslateGvaResultCode as Code,
    REQUEST_DATA_SIZE,
};
use crate::paging::{PageTableFlags as Entry, ADDRESS_MASK, PAGE_SIZE};
use crate::vp::registers::SUPPORTED;
use crate::vp::{GuestMemory, VpState};

// === The generator ===

/// xorshift64* (Vigna): small, fast, deterministic, good enough to fuzz.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // Any non-zero state works; mix the seed so that 0, 1, 2 … differ.
        Self((seed ^ 0x5EED_F00D_CAFE_D00D).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `p` percent of the time.
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn wide(&mut self) -> u128 {
        u128::from(self.next()) << 64 | u128::from(self.next())
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

// === Guest memory ===

// The model computes with raw register and entry bits; their values come from
// the `x86_64` crate like everywhere else.
const CR0_PE: u64 = Cr0Flags::PROTECTED_MODE_ENABLE.bits();
const CR0_WP: u64 = Cr0Flags::WRITE_PROTECT.bits();
const CR0_PG: u64 = Cr0Flags::PAGING.bits();
const CR4_PAE: u64 = Cr4Flags::PHYSICAL_ADDRESS_EXTENSION.bits();
const EFER_LME: u64 = EferFlags::LONG_MODE_ENABLE.bits();
const EFER_LMA: u64 = EferFlags::LONG_MODE_ACTIVE.bits();
const EFER_NXE: u64 = EferFlags::NO_EXECUTE_ENABLE.bits();

const PRESENT: u64 = Entry::PRESENT.bits();
const WRITABLE: u64 = Entry::WRITABLE.bits();
const USER: u64 = Entry::USER_ACCESSIBLE.bits();
const ACCESSED: u64 = Entry::ACCESSED.bits();
const DIRTY: u64 = Entry::DIRTY.bits();
const LARGE: u64 = Entry::HUGE_PAGE.bits();
const NO_EXECUTE: u64 = Entry::NO_EXECUTE.bits();
const FRAME: u64 = ADDRESS_MASK;

/// Pages of guest memory: small, so that random frames often land in it.
const PAGES: u64 = 8;
const MEMORY_SIZE: u64 = PAGES * PAGE_SIZE;

/// Guest memory of [`PAGES`] pages that logs every write.
struct Memory {
    words: Vec<u64>,
    /// (GPA, old, new) of each write of the current case.
    writes: Vec<(u64, u64, u64)>,
}

impl Memory {
    fn new() -> Self {
        Self {
            words: std::vec![0; (MEMORY_SIZE / 8) as usize],
            writes: Vec::new(),
        }
    }

    fn word(&self, gpa: u64) -> Option<u64> {
        if gpa >= MEMORY_SIZE {
            return None;
        }
        Some(self.words[(gpa / 8) as usize])
    }

    fn put(&mut self, gpa: u64, value: u64) {
        if gpa < MEMORY_SIZE {
            self.words[(gpa / 8) as usize] = value;
        }
    }
}

impl GuestMemory for Memory {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        assert_eq!(
            gpa % 8,
            0,
            "GuestMemory::read_u64 of unaligned GPA {gpa:#x}"
        );
        self.word(gpa)
    }

    fn set_bits_if_unchanged(&mut self, gpa: u64, seen: u64, bits: u64) -> Option<bool> {
        assert_eq!(
            gpa % 8,
            0,
            "GuestMemory::set_bits_if_unchanged of unaligned GPA {gpa:#x}"
        );
        let old = self.word(gpa)?;
        if old != seen {
            return Some(false);
        }
        let value = old | bits;
        self.writes.push((gpa, old, value));
        self.words[(gpa / 8) as usize] = value;
        Some(true)
    }
}

/// The registers a translation depends on, from the shadow.
#[derive(Clone, Copy)]
struct Paging {
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
}

fn is_canonical(gva: u64) -> bool {
    let top = gva >> 47;
    top == 0 || top == 0x1_FFFF
}

/// The reference page walk, written from the rules `vp::translate`
/// documents (and the SDM): paging off means GVA = GPA; only long-mode
/// paging; reserved bits are NX without EFER.NXE and PS in a PML4 entry;
/// permissions accumulate over the levels and are checked at the leaf;
/// tables and the final page must lie in guest memory. Returns the GPA page,
/// and whether the walk visited a table twice (a loop).
fn reference_translate(paging: Paging, memory: &Memory, gvn: u64, flags: u64) -> (Walk, bool) {
    let Some(gva) = gvn.checked_mul(PAGE_SIZE).filter(|&gva| is_canonical(gva)) else {
        return (Walk::NotCanonical, false);
    };
    if paging.cr0 & CR0_PG == 0 {
        let result = if gva < MEMORY_SIZE {
            Ok(gvn)
        } else {
            Err(Code::GPA_UNMAPPED)
        };
        return (Walk::Done(result), false);
    }
    if paging.efer & EFER_LMA == 0 || paging.cr4 & CR4_PAE == 0 {
        return (Walk::Unsupported, false);
    }
    let (result, looped) = reference_walk(paging, memory, gva, flags);
    (Walk::Done(result), looped)
}

/// What the reference makes of a TRANSLATE_GVA request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    /// The GVN names no canonical address: status INVALID_PARAMETER.
    NotCanonical,
    /// Paging outside long mode: an error.
    Unsupported,
    /// The walk's result: the GPA page, or the result code.
    Done(Result<u64, Code>),
}

/// The four-level walk of canonical `gva` (long mode).
fn reference_walk(
    paging: Paging,
    memory: &Memory,
    gva: u64,
    flags: u64,
) -> (Result<u64, Code>, bool) {
    let nxe = paging.efer & EFER_NXE != 0;
    let mut tables = [u64::MAX; 4];
    let mut table = paging.cr3 & FRAME;
    let (mut writable, mut user, mut executable) = (true, true, true);
    for level in [4u64, 3, 2, 1] {
        let looped = tables.contains(&table);
        tables[(4 - level) as usize] = table;
        let shift = 12 + 9 * (level - 1);
        let Some(entry) = memory.word(table + ((gva >> shift) & 0x1FF) * 8) else {
            return (Err(Code::GPA_UNMAPPED), looped);
        };
        if entry & PRESENT == 0 {
            return (Err(Code::PAGE_NOT_PRESENT), looped);
        }
        let large = entry & LARGE != 0;
        if (entry & NO_EXECUTE != 0 && !nxe) || (large && level == 4) {
            return (Err(Code::INVALID_PAGE_TABLE_FLAGS), looped);
        }
        writable = writable && entry & WRITABLE != 0;
        user = user && entry & USER != 0;
        executable = executable && !(nxe && entry & NO_EXECUTE != 0);
        if large || level == 1 {
            let offset_mask = (1u64 << shift) - 1;
            let gpa = (entry & FRAME & !offset_mask) | (gva & offset_mask);
            let user_access = flags & 0x80 != 0;
            let denied = (user_access && !user && flags & 0x8 == 0)
                || (flags & 0x2 != 0 && !writable && (user_access || paging.cr0 & CR0_WP != 0))
                || (flags & 0x4 != 0 && !executable);
            if denied {
                return (Err(Code::PRIVILEGE_VIOLATION), looped);
            }
            if gpa >= MEMORY_SIZE {
                return (Err(Code::GPA_UNMAPPED), looped);
            }
            return (Ok(gpa >> 12), looped);
        }
        table = entry & FRAME;
    }
    unreachable!("level 1 is always a leaf")
}

/// The 32 bytes of `event_info` a failed walk must carry: a #PF (event
/// type 0, pending, with its error code, CR2 = the page's address) unless
/// the walk failed on the physical side (GPA unmapped: no event). Error
/// code: P unless not present, W for a write, U for a user access, RSVD for
/// reserved bits, I/D for an execute with EFER.NXE (SDM vol. 3, 4.7).
fn reference_event(paging: Paging, gvn: u64, flags: u64, code: Code) -> [u8; 32] {
    let mut event = [0u8; 32];
    if code == Code::GPA_UNMAPPED {
        return event;
    }
    let mut error_code = 0u64;
    if code != Code::PAGE_NOT_PRESENT {
        error_code |= 0x1;
    }
    if flags & 0x2 != 0 {
        error_code |= 0x2;
    }
    if flags & 0x80 != 0 {
        error_code |= 0x4;
    }
    if code == Code::INVALID_PAGE_TABLE_FLAGS {
        error_code |= 0x8;
    }
    if flags & 0x4 != 0 && paging.efer & EFER_NXE != 0 {
        error_code |= 0x10;
    }
    let head = 1 | 1 << 8 | 14 << 16 | error_code << 32;
    event[..8].copy_from_slice(&head.to_le_bytes());
    event[8..16].copy_from_slice(&(gvn << 12).to_le_bytes());
    event
}

// === The request area, in bytes ===

/// Byte offsets in `request_data` (the ABI's layout, restated here so that
/// the test does not build its pages with the code it tests).
const COUNT: usize = 0;
const VTL: usize = 2;
const STATUS: usize = 4;
const SLOTS: usize = 16;
const SLOT_SIZE: usize = 32;
const SLOT_VALUE: usize = 16;
const MAX_REGISTERS: usize = 31;
const GVN: usize = 0;
const CONTROL_FLAGS: usize = 8;
const RESPONSE_SIZE: usize = 80;
const RESPONSE_RESULT: usize = 16;
const RESPONSE_EVENT: usize = 32;
const RESPONSE_GPA_PAGE: usize = 64;

const HV_STATUS_SUCCESS: u16 = 0;
const HV_STATUS_INVALID_PARAMETER: u16 = 5;

type Request = [u8; REQUEST_DATA_SIZE];

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn u128_at(bytes: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(bytes[at..at + 16].try_into().unwrap())
}

fn slot(index: usize) -> usize {
    SLOTS + index * SLOT_SIZE
}

// === The model ===

/// Registers stored as 128 bits; the others keep their low 64.
const WIDE: &[Name] = &[
    Name::Es,
    Name::Cs,
    Name::Ss,
    Name::Ds,
    Name::Fs,
    Name::Gs,
    Name::Ldtr,
    Name::Tr,
    Name::Idtr,
    Name::Gdtr,
    Name::PendingEvent0,
];

/// What each supported register must read back as.
struct Shadow {
    values: Vec<(Name, u128)>,
}

impl Shadow {
    fn get(&self, name: Name) -> u128 {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
            .expect("the shadow holds every supported register")
    }

    fn set(&mut self, name: Name, value: u128) {
        let value = if WIDE.contains(&name) {
            value
        } else {
            u128::from(value as u64)
        };
        let entry = self
            .values
            .iter_mut()
            .find(|(n, _)| *n == name)
            .expect("the shadow holds every supported register");
        entry.1 = value;
    }

    fn paging(&self) -> Paging {
        Paging {
            cr0: self.get(Name::Cr0) as u64,
            cr3: self.get(Name::Cr3) as u64,
            cr4: self.get(Name::Cr4) as u64,
            efer: self.get(Name::Efer) as u64,
        }
    }
}

fn is_supported(name: Name) -> bool {
    SUPPORTED.contains(&name)
}

/// A VTL byte sidecar accepts: no reserved bit (5–7), and VTL 0 if
/// `USE_TARGET_VTL` (bit 4) is set.
fn vtl_is_valid(vtl: u8) -> bool {
    vtl & 0xE0 == 0 && (vtl & 0x10 == 0 || vtl & 0x0F == 0)
}

/// What the command code must do with one page.
#[derive(Debug)]
enum Expect {
    /// An error whose message contains this text; for GET/SET with a
    /// readable count, how many leading slots a GET fills in and the status
    /// to expect (if the model pins it).
    Error {
        contains: String,
        registers: Option<RegisterEffect>,
    },
    /// A GET or SET that succeeds.
    Registers(RegisterEffect),
    /// TRANSLATE_GVA whose walk ran (it may have failed: a result, not an
    /// error): the result code and, on success, the GPA page.
    Translate(Result<u64, Code>),
    /// TRANSLATE_GVA of a GVN that names no canonical address: status
    /// INVALID_PARAMETER and nothing else in the response.
    TranslateRejected,
    /// NONE: nothing changes, no error.
    Nothing,
    /// RUN_VP, handed back.
    RunVp,
}

/// What a GET/SET with a count ≤ 31 does to the request and the VP.
#[derive(Debug)]
struct RegisterEffect {
    get: bool,
    count: usize,
    /// GET: slots `..filled` get their value.
    filled: usize,
    /// The status the header must end with.
    status: u16,
}

/// Per-kind counters, to show the generator reaches every path.
#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    sessions: u64,
    get_ok: u64,
    set_ok: u64,
    translate_ok: u64,
    translate_failed: [u64; 5],
    translate_loops: u64,
    translate_set_bits: u64,
    translate_rejected: u64,
    translate_unsupported: u64,
    run_vp: u64,
    none: u64,
    unknown_command: u64,
    too_many: u64,
    bad_vtl: u64,
    unknown_name: u64,
    random_request_area: u64,
    full_checks: u64,
}

fn expect(request: &Request, command: SidecarCommand, shadow: &Shadow, memory: &Memory) -> Expect {
    match command {
        SidecarCommand::GET_VP_REGISTERS | SidecarCommand::SET_VP_REGISTERS => {
            let get = command == SidecarCommand::GET_VP_REGISTERS;
            let count = u16_at(request, COUNT);
            if usize::from(count) > MAX_REGISTERS {
                return Expect::Error {
                    contains: format!("{count} registers"),
                    registers: None,
                };
            }
            let count = usize::from(count);
            let vtl = request[VTL];
            let unknown = (0..count).find(|&i| !is_supported(Name(u32_at(request, slot(i)))));
            let vtl_ok = vtl_is_valid(vtl);
            // A bad VTL or an unknown name fails the request, GET or SET.
            let status = if unknown.is_none() && vtl_ok {
                HV_STATUS_SUCCESS
            } else {
                HV_STATUS_INVALID_PARAMETER
            };
            let effect = RegisterEffect {
                get,
                count,
                filled: if get { unknown.unwrap_or(count) } else { 0 },
                status,
            };
            if !vtl_ok {
                Expect::Error {
                    contains: format!("unsupported target VTL {vtl:#x}"),
                    registers: Some(effect),
                }
            } else if let Some(i) = unknown {
                Expect::Error {
                    contains: format!("unknown register name {:#x}", u32_at(request, slot(i))),
                    registers: Some(effect),
                }
            } else {
                Expect::Registers(effect)
            }
        }
        SidecarCommand::TRANSLATE_GVA => {
            let gvn = u64_at(request, GVN);
            let flags = u64_at(request, CONTROL_FLAGS);
            match reference_translate(shadow.paging(), memory, gvn, flags).0 {
                Walk::NotCanonical => Expect::TranslateRejected,
                Walk::Unsupported => Expect::Error {
                    contains: "only long-mode paging is supported".into(),
                    registers: None,
                },
                Walk::Done(result) => Expect::Translate(result),
            }
        }
        SidecarCommand::RUN_VP => Expect::RunVp,
        SidecarCommand::NONE => Expect::Nothing,
        unknown => Expect::Error {
            contains: format!("unknown command {}", unknown.0),
            registers: None,
        },
    }
}

// === Generating pages ===

/// A near miss of a supported name: one bit off, one off, the next index of
/// a register class, or a high bit.
fn near_name(rng: &mut Rng) -> u32 {
    let base = rng.pick(SUPPORTED).0;
    match rng.below(6) {
        0 => base.wrapping_add(1),
        1 => base.wrapping_sub(1),
        2 => base ^ (1 << rng.below(32)),
        3 => base | 0x8000_0000,
        4 => rng.pick(&[
            0x0002_0012,
            0x0004_0006,
            0x0005_0000,
            0x0006_0008,
            0x0007_0002,
            0x0008_0000,
            0x0008_0003,
            0x0008_000C,
            0x0001_0005,
            0x0001_0001,
        ]),
        _ => base & 0xFFFF,
    }
}

/// A register name; `valid` percent of them supported.
fn register_name(rng: &mut Rng, valid: u64) -> u32 {
    if rng.percent(valid) {
        return rng.pick(SUPPORTED).0;
    }
    match rng.below(100) {
        0..=59 => near_name(rng),
        60..=89 => rng.next() as u32,
        90..=94 => 0,
        _ => u32::MAX,
    }
}

fn vtl_byte(rng: &mut Rng) -> u8 {
    match rng.below(100) {
        0..=59 => 0,
        60..=74 => 0x10,
        75..=79 => rng.below(16) as u8,
        80..=84 => 0x10 | (1 + rng.below(15)) as u8,
        85..=89 => rng.pick(&[0x20, 0x30, 0x40, 0x50, 0x80, 0xF0, 0xFF, 0x2F]),
        _ => rng.next() as u8,
    }
}

fn register_count(rng: &mut Rng) -> u16 {
    match rng.below(100) {
        0..=74 => rng.below(MAX_REGISTERS as u64 + 1) as u16,
        75..=79 => 32,
        80..=89 => (32 + rng.below(u64::from(u16::MAX) - 31)) as u16,
        90..=94 => u16::MAX,
        _ => 0x8000 | rng.next() as u16,
    }
}

/// A value for `name`: for the paging registers, mostly the session's own
/// (`cr3`, long mode), so that translations stay meaningful.
fn register_value(rng: &mut Rng, name: Name, cr3: u64) -> u128 {
    let sane = rng.percent(92);
    let junk = rng.next();
    let (sane_value, odd) = match name {
        // Without CR0.WP only user writes are checked: keep it common.
        Name::Cr0 if junk.is_multiple_of(4) => (CR0_PG | CR0_PE, [CR0_PE, 0, junk]),
        Name::Cr0 => (CR0_PG | CR0_WP | CR0_PE, [CR0_PG | CR0_PE, CR0_PE, junk]),
        Name::Cr4 => (CR4_PAE, [CR4_PAE | 0x80, 0, junk]),
        Name::Efer => (
            EFER_LMA | EFER_LME | EFER_NXE,
            [EFER_LMA | EFER_LME, EFER_LME, junk],
        ),
        Name::Cr3 => (cr3, [cr3 | (junk & 0xFFF), junk & (MEMORY_SIZE - 1), junk]),
        _ => return rng.wide(),
    };
    u128::from(if sane { sane_value } else { rng.pick(&odd) })
}

/// A canonical GVA.
fn canonical(rng: &mut Rng) -> u64 {
    let low = rng.next() & ((1 << 47) - 1);
    if rng.percent(50) {
        low
    } else {
        low | 0xFFFF_8000_0000_0000
    }
}

/// A page-table entry pointing at `frame`, with mostly sane flags.
fn entry(rng: &mut Rng, frame: u64, level: u64) -> u64 {
    let mut entry = frame & FRAME;
    for (flag, percent) in [
        (PRESENT, 95),
        (WRITABLE, 85),
        (USER, 80),
        (ACCESSED, 30),
        (DIRTY, 20),
        (NO_EXECUTE, 12),
    ] {
        if rng.percent(percent) {
            entry |= flag;
        }
    }
    let large = match level {
        4 => 3,
        3 | 2 => 15,
        _ => 5,
    };
    if rng.percent(large) {
        entry |= LARGE;
    }
    if rng.percent(8) {
        // Software-available and protection-key bits (52..63).
        entry |= (rng.next() & 0x7FF) << 52;
    }
    entry
}

/// A frame for the next table or the final page: mostly in memory, some
/// outside it, some looping back.
fn frame(rng: &mut Rng, current: u64, cr3: u64) -> u64 {
    match rng.below(100) {
        0..=84 => rng.below(PAGES) * PAGE_SIZE,
        85..=90 => (PAGES + rng.below(1 << 30)) * PAGE_SIZE,
        91..=94 => current,
        _ => cr3 & FRAME,
    }
}

/// Fresh guest page tables: a walk planted for each of `gvas`, then junk.
fn build_page_tables(rng: &mut Rng, memory: &mut Memory, cr3: u64, gvas: &[u64]) {
    memory.words.fill(0);
    for &gva in gvas {
        let mut table = cr3 & FRAME;
        for level in [4u64, 3, 2, 1] {
            let index = (gva >> (12 + 9 * (level - 1))) & 0x1FF;
            let next = frame(rng, table, cr3);
            memory.put(table + index * 8, entry(rng, next, level));
            table = next;
        }
    }
    for _ in 0..rng.below(12) {
        let gpa = rng.below(MEMORY_SIZE / 8) * 8;
        memory.put(gpa, rng.next());
    }
}

/// One VP session's fixed parts.
struct Session {
    /// The GVAs with a planted walk.
    gvas: Vec<u64>,
    /// The root the tables were planted under.
    cr3: u64,
}

/// Builds `request` and returns the command for one case.
fn generate(
    rng: &mut Rng,
    request: &mut Request,
    session: &Session,
    memory: &mut Memory,
    stats: &mut Stats,
) -> SidecarCommand {
    let command = match rng.below(100) {
        0..=34 => SidecarCommand::GET_VP_REGISTERS,
        35..=69 => SidecarCommand::SET_VP_REGISTERS,
        70..=84 => SidecarCommand::TRANSLATE_GVA,
        85..=87 => SidecarCommand::RUN_VP,
        88..=90 => SidecarCommand::NONE,
        _ => SidecarCommand(match rng.below(5) {
            0 => 5 + rng.below(12) as u32,
            1 => 0xFA17,
            2 => u32::MAX,
            _ => rng.next() as u32,
        }),
    };
    // The request area always starts out as junk: whatever the driver, or
    // the previous response, left there.
    rng.fill(request);
    if rng.percent(8) {
        stats.random_request_area += 1;
        if rng.percent(50) && matches!(command.0, 2 | 3) {
            // Mostly a count ≤ 31 so that garbage names get decoded too.
            request[COUNT + 1] = 0;
            request[COUNT] %= 32;
        }
        return command;
    }
    match command {
        SidecarCommand::GET_VP_REGISTERS | SidecarCommand::SET_VP_REGISTERS => {
            let count = register_count(rng);
            request[COUNT..COUNT + 2].copy_from_slice(&count.to_le_bytes());
            request[VTL] = vtl_byte(rng);
            if rng.percent(70) {
                // Reserved header bytes: zero, as a well-behaved driver
                // writes them (the CPU ignores them either way).
                request[VTL + 1] = 0;
                request[STATUS..SLOTS].fill(0);
            }
            let filled = usize::from(count).min(MAX_REGISTERS);
            // Mostly all names supported, so that valid requests are common;
            // otherwise a few or many bad ones.
            let valid = match rng.below(100) {
                0..=64 => 100,
                65..=84 => 95,
                _ => 60,
            };
            for i in 0..filled {
                let at = slot(i);
                let name = register_name(rng, valid);
                request[at..at + 4].copy_from_slice(&name.to_le_bytes());
                if rng.percent(70) {
                    request[at + 4..at + SLOT_VALUE].fill(0);
                }
                let value = register_value(rng, Name(name), session.cr3);
                request[at + SLOT_VALUE..at + SLOT_SIZE].copy_from_slice(&value.to_le_bytes());
            }
        }
        SidecarCommand::TRANSLATE_GVA => {
            let gvn = match rng.below(100) {
                0..=59 if !session.gvas.is_empty() => {
                    let gva = rng.pick(&session.gvas);
                    // Anywhere in the 2 MiB around the planted page.
                    let span = if rng.percent(70) { 1 } else { 512 };
                    (gva >> 12) ^ rng.below(span)
                }
                0..=79 => canonical(rng) >> 12,
                80..=84 => rng.pick(&[0, u64::MAX, 1 << 52, (1 << 35) - 1, 1 << 35]),
                _ => rng.next(),
            };
            let flags = match rng.below(10) {
                0..=3 => rng.pick(&[0, 1, 0x11, 0x13, 0x81, 0x89]),
                4..=8 => rng.next() & 0xDF,
                _ => rng.next(),
            };
            request[GVN..GVN + 8].copy_from_slice(&gvn.to_le_bytes());
            request[CONTROL_FLAGS..CONTROL_FLAGS + 8].copy_from_slice(&flags.to_le_bytes());
            // Mutate the page tables a little, between translations.
            for _ in 0..rng.below(3) {
                let gpa = rng.below(MEMORY_SIZE / 8) * 8;
                let value = if rng.percent(50) {
                    let target = frame(rng, gpa & FRAME, 0);
                    entry(rng, target, 2)
                } else {
                    rng.next()
                };
                memory.put(gpa, value);
            }
        }
        _ => {}
    }
    command
}

// === Running and checking ===

/// Where a property failed: enough to rebuild the page.
fn describe(seed: u64, case: u64, command: SidecarCommand, request: &Request) -> String {
    let count = u16_at(request, COUNT);
    let names: Vec<String> = (0..usize::from(count).min(MAX_REGISTERS).min(6))
        .map(|i| format!("{:#x}", u32_at(request, slot(i))))
        .collect();
    format!(
        "seed {seed:#x} case {case}: command {command:?}, request head {:02x?}, count {count}, \
         vtl {:#x}, names {names:?}, gvn {:#x}, flags {:#x}",
        &request[..16],
        request[VTL],
        u64_at(request, GVN),
        u64_at(request, CONTROL_FLAGS),
    )
}

/// Fills the page's fields the CPU must reset or ignore with junk.
fn scramble(rng: &mut Rng, page: &mut CommandPage) {
    if rng.percent(30) {
        page.has_error = rng.next() as u8;
        rng.fill(&mut page.error.buf);
        page.error.len = rng.next() as u8;
    }
    if rng.percent(5) {
        rng.fill(&mut page.padding);
        rng.fill(&mut page.reserved);
        rng.fill(page.intercept_message.as_mut_bytes());
    }
}

/// The page's bytes that no command may touch: padding, the intercept
/// message and the reserved tail.
fn untouchable(page: &CommandPage) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        page.padding.to_vec(),
        page.intercept_message.as_bytes().to_vec(),
        page.reserved.to_vec(),
    )
}

struct Fuzzer {
    seed: u64,
    rng: Rng,
    page: Box<CommandPage>,
    state: VpState,
    memory: Memory,
    shadow: Shadow,
    session: Session,
    stats: Stats,
}

impl Fuzzer {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            rng: Rng::new(seed),
            page: Box::default(),
            state: VpState::default(),
            memory: Memory::new(),
            shadow: Shadow {
                values: SUPPORTED.iter().map(|&n| (n, 0)).collect(),
            },
            session: Session {
                gvas: Vec::new(),
                cr3: 0,
            },
            stats: Stats::default(),
        }
    }

    /// Runs one page through `execute` and checks it against the model.
    fn case(&mut self, command: SidecarCommand, request: &Request) {
        self.stats.cases += 1;
        let case = self.stats.cases;
        let expected = expect(request, command, &self.shadow, &self.memory);

        let page = &mut *self.page;
        page.command = command;
        page.request_data.as_mut_bytes().copy_from_slice(request);
        scramble(&mut self.rng, page);
        let state_before = self.state;
        let context_before = page.cpu_context;
        let fixed_before = untouchable(page);
        self.memory.writes.clear();

        let outcome = execute(page, &mut self.state, &mut self.memory);

        let seed = self.seed;
        let where_ = || describe(seed, case, command, request);
        let page = &*self.page;
        let after: Request = page.request_data.as_bytes().try_into().unwrap();
        let after = &after;
        assert_eq!(
            page.command,
            SidecarCommand::NONE,
            "command not reset: {}",
            where_()
        );
        assert_eq!(
            untouchable(page),
            fixed_before,
            "padding, intercept message or reserved bytes changed: {}",
            where_()
        );
        assert_eq!(
            outcome == Outcome::RunVp,
            matches!(expected, Expect::RunVp),
            "outcome {outcome:?}: {}",
            where_()
        );
        assert_eq!(
            self.state.magic,
            state_before.magic,
            "magic changed: {}",
            where_()
        );
        assert_eq!(
            (page.cpu_context.fx_state, page.cpu_context.reserved),
            (context_before.fx_state, context_before.reserved),
            "FXSAVE image changed: {}",
            where_()
        );

        // The error fields.
        let should_fail = match &expected {
            Expect::Error { .. } => true,
            Expect::Translate(_) | Expect::TranslateRejected | Expect::Nothing => false,
            Expect::Registers(_) | Expect::RunVp => false,
        };
        let message = if should_fail {
            assert_eq!(
                page.has_error,
                1,
                "no error for an invalid page: {}",
                where_()
            );
            let message = core::str::from_utf8(page.error.as_bytes())
                .unwrap_or_else(|e| panic!("error is not UTF-8 ({e}): {}", where_()));
            assert!(!message.is_empty(), "empty error message: {}", where_());
            String::from(message)
        } else {
            assert_eq!(
                (page.has_error, page.error.len),
                (0, 0),
                "error {:?} for a valid page: {}",
                page.error,
                where_()
            );
            String::new()
        };

        let registers_changed = self.state != state_before || page.cpu_context != context_before;
        let translate_writes = core::mem::take(&mut self.memory.writes);
        if !matches!(expected, Expect::Translate(_) | Expect::TranslateRejected) {
            assert!(
                translate_writes.is_empty(),
                "guest memory written: {}",
                where_()
            );
        }
        match expected {
            Expect::Error {
                contains,
                registers,
            } => {
                assert!(
                    message.contains(contains.as_str()),
                    "error {message:?} does not say {contains:?}: {}",
                    where_()
                );
                match registers {
                    Some(effect) => {
                        self.check_register_effect(&effect, request, after, &where_);
                        assert!(
                            !registers_changed,
                            "a failed command changed the VP: {}",
                            where_()
                        );
                        self.count_error(&message);
                    }
                    None => {
                        assert!(
                            !registers_changed,
                            "a failed command changed the VP: {}",
                            where_()
                        );
                        assert_eq!(
                            after,
                            request,
                            "a failed command changed the request: {}",
                            where_()
                        );
                        self.count_error(&message);
                    }
                }
            }
            Expect::Registers(effect) => {
                self.check_register_effect(&effect, request, after, &where_);
                if effect.get {
                    self.stats.get_ok += 1;
                    assert!(!registers_changed, "a GET changed the VP: {}", where_());
                } else {
                    self.stats.set_ok += 1;
                    self.apply_set(request, effect.count);
                }
            }
            Expect::Translate(result) => {
                assert!(
                    !registers_changed,
                    "TRANSLATE_GVA changed the VP: {}",
                    where_()
                );
                // Every field of the response, from the reference: status
                // SUCCESS, the result code, the event, the GPA page, and
                // zero in each reserved field.
                let mut response = [0u8; RESPONSE_SIZE];
                match result {
                    Ok(page_number) => {
                        self.stats.translate_ok += 1;
                        response[RESPONSE_GPA_PAGE..RESPONSE_GPA_PAGE + 8]
                            .copy_from_slice(&page_number.to_le_bytes());
                    }
                    Err(code) => {
                        self.stats.translate_failed[(code.0 as usize).min(4)] += 1;
                        let flags = u64_at(request, CONTROL_FLAGS);
                        let gvn = u64_at(request, GVN);
                        let event = reference_event(self.shadow.paging(), gvn, flags, code);
                        response[RESPONSE_RESULT..RESPONSE_RESULT + 8]
                            .copy_from_slice(&u64::from(code.0).to_le_bytes());
                        response[RESPONSE_EVENT..RESPONSE_EVENT + 32].copy_from_slice(&event);
                    }
                }
                assert_eq!(
                    &after[..RESPONSE_SIZE],
                    &response[..],
                    "the response differs from the reference's: {}",
                    where_()
                );
                assert_eq!(
                    &after[RESPONSE_SIZE..],
                    &request[RESPONSE_SIZE..],
                    "TRANSLATE_GVA wrote past its response: {}",
                    where_()
                );
                let flags = u64_at(request, CONTROL_FLAGS);
                let gvn = u64_at(request, GVN);
                let (_, looped) =
                    reference_translate(self.shadow.paging(), &self.memory, gvn, flags);
                self.stats.translate_loops += u64::from(looped);
                if flags & 0x10 == 0 {
                    assert!(
                        translate_writes.is_empty(),
                        "memory written without SET_PAGE_TABLE_BITS: {}",
                        where_()
                    );
                }
                self.stats.translate_set_bits += u64::from(!translate_writes.is_empty());
                for (gpa, old, new) in translate_writes {
                    assert_eq!(
                        new & !(ACCESSED | DIRTY),
                        old & !(ACCESSED | DIRTY),
                        "write of {new:#x} over {old:#x} at {gpa:#x} is not an A/D update: {}",
                        where_()
                    );
                    assert!(
                        new & DIRTY == old & DIRTY || flags & 0x2 != 0,
                        "dirty bit set at {gpa:#x} for a non-write: {}",
                        where_()
                    );
                }
            }
            Expect::TranslateRejected => {
                self.stats.translate_rejected += 1;
                assert!(
                    !registers_changed && translate_writes.is_empty(),
                    "a rejected TRANSLATE_GVA changed the VP or memory: {}",
                    where_()
                );
                let mut response = [0u8; RESPONSE_SIZE];
                response[..2].copy_from_slice(&HV_STATUS_INVALID_PARAMETER.to_le_bytes());
                assert_eq!(
                    &after[..RESPONSE_SIZE],
                    &response[..],
                    "a rejected TRANSLATE_GVA's response: {}",
                    where_()
                );
                assert_eq!(
                    &after[RESPONSE_SIZE..],
                    &request[RESPONSE_SIZE..],
                    "TRANSLATE_GVA wrote past its response: {}",
                    where_()
                );
            }
            Expect::Nothing => {
                self.stats.none += 1;
                assert!(!registers_changed, "NONE changed the VP: {}", where_());
                assert_eq!(after, request, "NONE changed the request: {}", where_());
            }
            Expect::RunVp => {
                self.stats.run_vp += 1;
                assert!(
                    !registers_changed,
                    "RUN_VP (handed back) changed the VP: {}",
                    where_()
                );
                assert_eq!(
                    after,
                    request,
                    "RUN_VP (handed back) changed the request: {}",
                    where_()
                );
            }
        }
    }

    /// The request bytes a GET/SET with a readable count may change: the
    /// status and, for a GET, the values of the slots it filled, which must
    /// be the shadow's.
    fn check_register_effect(
        &self,
        effect: &RegisterEffect,
        request: &Request,
        after: &Request,
        where_: &dyn Fn() -> String,
    ) {
        assert_eq!(
            u16_at(after, STATUS),
            effect.status,
            "header status: {}",
            where_()
        );
        let mut expected = *request;
        expected[STATUS..STATUS + 2].copy_from_slice(&after[STATUS..STATUS + 2]);
        if effect.get {
            for i in 0..effect.filled {
                let at = slot(i);
                let name = Name(u32_at(request, at));
                let value = self.shadow.get(name);
                assert_eq!(
                    u128_at(after, at + SLOT_VALUE),
                    value,
                    "GET of {name:?} (slot {i}) differs from the last SET: {}",
                    where_()
                );
                expected[at + SLOT_VALUE..at + SLOT_SIZE].copy_from_slice(&value.to_le_bytes());
            }
        }
        assert_eq!(
            &after[..],
            &expected[..],
            "stray writes in the request: {}",
            where_()
        );
    }

    fn apply_set(&mut self, request: &Request, count: usize) {
        for i in 0..count {
            let at = slot(i);
            self.shadow
                .set(Name(u32_at(request, at)), u128_at(request, at + SLOT_VALUE));
        }
    }

    fn count_error(&mut self, message: &str) {
        let counter = if message.contains("registers, at most") {
            &mut self.stats.too_many
        } else if message.contains("VTL") {
            &mut self.stats.bad_vtl
        } else if message.contains("register name") {
            &mut self.stats.unknown_name
        } else if message.contains("only long-mode paging") {
            &mut self.stats.translate_unsupported
        } else {
            &mut self.stats.unknown_command
        };
        *counter += 1;
    }

    /// A well-formed GET or SET of `registers`, as a request.
    fn well_formed(&mut self, registers: &[(Name, u128)]) -> Request {
        let mut request = [0u8; REQUEST_DATA_SIZE];
        self.rng.fill(&mut request[SLOTS..]);
        request[COUNT..COUNT + 2].copy_from_slice(&(registers.len() as u16).to_le_bytes());
        for (i, &(name, value)) in registers.iter().enumerate() {
            let at = slot(i);
            request[at..at + SLOT_VALUE].fill(0);
            request[at..at + 4].copy_from_slice(&name.0.to_le_bytes());
            request[at + SLOT_VALUE..at + SLOT_SIZE].copy_from_slice(&value.to_le_bytes());
        }
        request
    }

    /// Reads every register with GETs and compares with the shadow (the
    /// case checks do the comparing).
    fn full_check(&mut self) {
        self.stats.full_checks += 1;
        for chunk in SUPPORTED.chunks(MAX_REGISTERS) {
            let registers: Vec<(Name, u128)> =
                chunk.iter().map(|&n| (n, self.rng.wide())).collect();
            let request = self.well_formed(&registers);
            self.case(SidecarCommand::GET_VP_REGISTERS, &request);
        }
    }

    /// A new VP: random state, random context, then every register set to
    /// a random value, and fresh page tables.
    fn new_session(&mut self) {
        self.stats.sessions += 1;
        self.rng.fill(self.state.as_mut_bytes());
        self.rng.fill(self.page.cpu_context.as_mut_bytes());
        let cr3 = self.rng.below(PAGES) * PAGE_SIZE;
        let mut values: Vec<(Name, u128)> = SUPPORTED
            .iter()
            .map(|&name| (name, register_value(&mut self.rng, name, cr3)))
            .collect();
        // Mostly a sane paging setup, so that translations get deep.
        if self.rng.percent(85) {
            let wp = if self.rng.percent(75) { CR0_WP } else { 0 };
            for (name, value) in &mut values {
                match *name {
                    Name::Cr0 => *value = u128::from(CR0_PG | wp | CR0_PE),
                    Name::Cr4 => *value = u128::from(CR4_PAE),
                    Name::Efer => *value = u128::from(EFER_LMA | EFER_LME | EFER_NXE),
                    Name::Cr3 => *value = u128::from(cr3),
                    _ => {}
                }
            }
        }
        for chunk in values.chunks(MAX_REGISTERS) {
            let request = self.well_formed(chunk);
            // Through the model too: this SET must succeed and set them.
            self.case(SidecarCommand::SET_VP_REGISTERS, &request);
        }
        let gvas: Vec<u64> = (0..1 + self.rng.below(4))
            .map(|_| match self.rng.below(3) {
                0 => self.rng.below(1 << 22) << 12,
                _ => canonical(&mut self.rng) & !0xFFF,
            })
            .collect();
        build_page_tables(&mut self.rng, &mut self.memory, cr3, &gvas);
        self.session = Session { gvas, cr3 };
        self.full_check();
    }

    fn run(&mut self, cases: u64) {
        let mut request = [0u8; REQUEST_DATA_SIZE];
        let mut left_in_session = 0;
        while self.stats.cases < cases {
            if left_in_session == 0 {
                self.new_session();
                left_in_session = 50 + self.rng.below(350);
            }
            left_in_session -= 1;
            let command = generate(
                &mut self.rng,
                &mut request,
                &self.session,
                &mut self.memory,
                &mut self.stats,
            );
            self.case(command, &request);
            if self.rng.percent(2) {
                self.full_check();
            }
        }
        self.full_check();
    }
}

/// Runs `cases` cases from each of `seeds`; returns each seed's counters.
fn fuzz(seeds: &[u64], cases: u64) -> Vec<Stats> {
    seeds
        .iter()
        .map(|&seed| {
            let mut fuzzer = Fuzzer::new(seed);
            fuzzer.run(cases);
            fuzzer.stats
        })
        .collect()
}

/// Every path the generator is meant to reach was reached.
fn assert_coverage(stats: &Stats) {
    let reached = [
        ("valid GET", stats.get_ok),
        ("valid SET", stats.set_ok),
        ("translation", stats.translate_ok),
        ("not present", stats.translate_failed[1]),
        ("privilege violation", stats.translate_failed[2]),
        ("reserved bits", stats.translate_failed[3]),
        ("GPA unmapped", stats.translate_failed[4]),
        ("page-table loop", stats.translate_loops),
        ("accessed/dirty update", stats.translate_set_bits),
        ("RUN_VP", stats.run_vp),
        ("NONE", stats.none),
        ("non-canonical GVN", stats.translate_rejected),
        ("paging outside long mode", stats.translate_unsupported),
        ("unknown command", stats.unknown_command),
        ("more than 31 registers", stats.too_many),
        ("bad VTL", stats.bad_vtl),
        ("unknown name", stats.unknown_name),
        ("random request area", stats.random_request_area),
    ];
    for (what, count) in reached {
        assert!(
            count > 0,
            "the generator never produced: {what} ({stats:#?})"
        );
    }
}

#[test]
fn fuzz_commands() {
    let stats = fuzz(&[1, 2], 10_000);
    for stats in &stats {
        assert_coverage(stats);
    }
}

/// The long run: `cargo test -p sidecar --release --lib
/// fuzz_commands_million -- --ignored --nocapture`.
#[test]
#[ignore = "long: about a million cases; run with --release --ignored"]
fn fuzz_commands_million() {
    const SEEDS: [u64; 4] = [0x5EED, 0xC0FFEE, 0xBAD_F00D, 0x1234_5678];
    let start = std::time::Instant::now();
    let stats = fuzz(&SEEDS, 250_000);
    let elapsed = start.elapsed();
    let cases: u64 = stats.iter().map(|s| s.cases).sum();
    for stats in &stats {
        assert_coverage(stats);
    }
    std::println!(
        "fuzz_commands_million: {cases} cases in {:.3} s, {:.0} cases/s",
        elapsed.as_secs_f64(),
        cases as f64 / elapsed.as_secs_f64()
    );
    std::println!("{:#?}", stats[0]);
}

/// A SET whose target-VTL byte has a reserved bit (5–7) set but still means
/// VTL 0 (here `0x20`) is refused and changes nothing: the validation once
/// checked only the VTL number, answering with an error *and* setting the
/// registers.
#[test]
fn set_with_reserved_vtl_bits_changes_nothing() {
    let mut page: Box<CommandPage> = Box::default();
    let mut state = VpState::default();
    page.command = SidecarCommand::SET_VP_REGISTERS;
    let request = page.request_data.as_mut_bytes();
    request[COUNT] = 1;
    request[VTL] = 0x20;
    request[slot(0)..slot(0) + 4].copy_from_slice(&Name::Rip.0.to_le_bytes());
    request[slot(0) + SLOT_VALUE..slot(0) + SLOT_VALUE + 8]
        .copy_from_slice(&0x1234u64.to_le_bytes());
    execute(&mut page, &mut state, &mut Memory::new());
    assert_eq!(
        page.error(),
        Some("unsupported target VTL 0x20 (sidecar runs VTL 0 only)")
    );
    assert_eq!(state.rip, 0, "the failed SET set RIP");
}
