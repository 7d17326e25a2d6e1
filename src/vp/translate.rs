//! Translating a guest virtual address the way the guest's own MMU would:
//! a walk of its page tables through guest memory, with the access checks
//! TRANSLATE_GVA asks for (Intel SDM vol. 3, 4.5 and 4.6; AMD APM vol. 2,
//! 5.3 and 5.6).
//!
//! Supported: paging disabled (the GVA is the GPA) and 4-level long-mode
//! paging with 2 MiB and 1 GiB pages. 32-bit and PAE paging outside long
//! mode are reported as unsupported rather than guessed at.

use core::fmt;

use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;
use x86_64::structures::idt::PageFaultErrorCode;

use crate::abi::{TranslateGvaControlFlagsX64 as Flags, TranslateGvaResultCode as Code};
use crate::paging::{
    entry_address, entry_flags, PageTableFlags as Entry, ENTRIES_PER_TABLE, PAGE_SIZE,
};

use super::VpState;

/// Guest physical memory as the translation sees it.
pub trait GuestMemory {
    /// Reads the 8 bytes at `gpa` (8-aligned), or `None` if unmapped.
    fn read_u64(&self, gpa: u64) -> Option<u64>;
    /// Sets `bits` in the 8 bytes at `gpa` (8-aligned) if they still hold
    /// `seen`, in one atomic compare-exchange (the guest may rewrite the
    /// entry meanwhile): `Some(true)` if it set them, `Some(false)` if the
    /// entry had changed, `None` if unmapped.
    fn set_bits_if_unchanged(&mut self, gpa: u64, seen: u64, bits: u64) -> Option<bool>;
}

/// The result of a walk that reached a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The guest physical page number the GVA maps to.
    pub gpa_page: u64,
}

/// Why a GVA has no translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslateError {
    /// The GVN names no canonical address (or overflows 64 bits): there is
    /// nothing to walk. TRANSLATE_GVA answers INVALID_PARAMETER.
    NotCanonical,
    /// The guest pages in a mode sidecar does not walk (32-bit or PAE paging
    /// outside long mode): sidecar's limit, not the guest's fault.
    UnsupportedMode,
    /// The walk failed: a result for the caller, not an error.
    Walk(WalkFailure),
}

/// A walk that failed: the result code TRANSLATE_GVA reports, what the
/// guest's own access would have raised, and a reason for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkFailure {
    /// The result code for the response.
    pub code: Code,
    /// The page fault the access would raise, with its error code; `None`
    /// when the walk failed on the physical side (a table or the page
    /// outside guest memory), which raises nothing in the guest.
    pub page_fault: Option<PageFaultErrorCode>,
    /// What the walk found.
    pub reason: &'static str,
    /// The level (4 = PML4 … 1 = PT; 0 = the final GPA) where it failed.
    pub level: u8,
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotCanonical => f.write_str("the GVA is not canonical"),
            Self::UnsupportedMode => f.write_str("only long-mode paging is supported"),
            Self::Walk(failure) => fmt::Display::fmt(failure, f),
        }
    }
}

impl fmt::Display for WalkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = [
            "the final page",
            "the PT entry",
            "the PD entry",
            "the PDPT entry",
            "the PML4 entry",
        ];
        write!(
            f,
            "{} at {}",
            self.reason,
            level[usize::from(self.level.min(4))]
        )
    }
}

/// A walk failure on the physical side: no page fault.
fn unmapped(reason: &'static str, level: u8) -> TranslateError {
    TranslateError::Walk(WalkFailure {
        code: Code::GPA_UNMAPPED,
        page_fault: None,
        reason,
        level,
    })
}

/// The page-fault error code of the access `flags` describe, with
/// `cause` (not-present: none; a protection violation; reserved bits).
fn fault_code(state: &PagingState, flags: Flags, cause: PageFaultErrorCode) -> PageFaultErrorCode {
    let mut code = cause;
    if flags.contains(Flags::VALIDATE_WRITE) {
        code |= PageFaultErrorCode::CAUSED_BY_WRITE;
    }
    if flags.contains(Flags::USER_ACCESS) {
        code |= PageFaultErrorCode::USER_MODE;
    }
    // The I/D bit is reported only with NX enabled (SDM vol. 3, 4.7).
    if flags.contains(Flags::VALIDATE_EXECUTE) && state.efer.contains(EferFlags::NO_EXECUTE_ENABLE)
    {
        code |= PageFaultErrorCode::INSTRUCTION_FETCH;
    }
    code
}

/// A walk failure the guest would see as a page fault.
fn faulted(
    state: &PagingState,
    flags: Flags,
    code: Code,
    reason: &'static str,
    level: u8,
) -> TranslateError {
    let cause = match code {
        Code::PAGE_NOT_PRESENT => PageFaultErrorCode::empty(),
        Code::INVALID_PAGE_TABLE_FLAGS => {
            PageFaultErrorCode::PROTECTION_VIOLATION | PageFaultErrorCode::MALFORMED_TABLE
        }
        _ => PageFaultErrorCode::PROTECTION_VIOLATION,
    };
    TranslateError::Walk(WalkFailure {
        code,
        page_fault: Some(fault_code(state, flags, cause)),
        reason,
        level,
    })
}

/// The registers that decide how a GVA translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagingState {
    /// CR0 (PG, WP).
    pub cr0: Cr0Flags,
    /// CR3 (the root table).
    pub cr3: u64,
    /// CR4 (PAE).
    pub cr4: Cr4Flags,
    /// EFER (LMA, NXE).
    pub efer: EferFlags,
}

impl PagingState {
    /// The paging state of raw register values (every bit kept, even ones
    /// the `x86_64` crate does not name).
    pub const fn from_raw(cr0: u64, cr3: u64, cr4: u64, efer: u64) -> Self {
        Self {
            cr0: Cr0Flags::from_bits_retain(cr0),
            cr3,
            cr4: Cr4Flags::from_bits_retain(cr4),
            efer: EferFlags::from_bits_retain(efer),
        }
    }
}

impl From<&VpState> for PagingState {
    fn from(state: &VpState) -> Self {
        Self::from_raw(state.cr0, state.cr3, state.cr4, state.efer)
    }
}

/// Translates guest virtual page `gvn` for the access `flags` describe.
pub fn translate_gva(
    state: &PagingState,
    memory: &mut impl GuestMemory,
    gvn: u64,
    flags: Flags,
) -> Result<Translation, TranslateError> {
    let gva = gvn.checked_mul(PAGE_SIZE).filter(|gva| is_canonical(*gva));
    let Some(gva) = gva else {
        return Err(TranslateError::NotCanonical);
    };
    if !state.cr0.contains(Cr0Flags::PAGING) {
        return memory
            .read_u64(gva)
            .map(|_| Translation { gpa_page: gvn })
            .ok_or(unmapped("paging is off and the GPA is unmapped", 0));
    }
    if !state.efer.contains(EferFlags::LONG_MODE_ACTIVE)
        || !state.cr4.contains(Cr4Flags::PHYSICAL_ADDRESS_EXTENSION)
    {
        return Err(TranslateError::UnsupportedMode);
    }
    walk_long_mode(state, memory, gva, flags)
}

fn is_canonical(gva: u64) -> bool {
    let high = gva >> 47;
    high == 0 || high == (1 << 17) - 1
}

/// The four-level walk, accumulating permissions across levels.
fn walk_long_mode(
    state: &PagingState,
    memory: &mut impl GuestMemory,
    gva: u64,
    flags: Flags,
) -> Result<Translation, TranslateError> {
    let nx_enabled = state.efer.contains(EferFlags::NO_EXECUTE_ENABLE);
    let mut table = entry_address(state.cr3);
    let (mut writable, mut user, mut executable) = (true, true, true);
    for level in (1..=4u8).rev() {
        // The bytes one entry of this level maps: 4 KiB, 2 MiB, 1 GiB, 512 GiB.
        let entry_span = PAGE_SIZE << (9 * (u32::from(level) - 1));
        let index = (gva / entry_span) % ENTRIES_PER_TABLE as u64;
        let entry_gpa = table + index * 8;
        let raw = memory
            .read_u64(entry_gpa)
            .ok_or(unmapped("a page table is outside guest memory", level))?;
        let entry = entry_flags(raw);
        if !entry.contains(Entry::PRESENT) {
            return Err(faulted(
                state,
                flags,
                Code::PAGE_NOT_PRESENT,
                "not present",
                level,
            ));
        }
        let huge = entry.contains(Entry::HUGE_PAGE);
        if (entry.contains(Entry::NO_EXECUTE) && !nx_enabled) || (huge && level == 4) {
            return Err(faulted(
                state,
                flags,
                Code::INVALID_PAGE_TABLE_FLAGS,
                "reserved bits set",
                level,
            ));
        }
        writable &= entry.contains(Entry::WRITABLE);
        user &= entry.contains(Entry::USER_ACCESSIBLE);
        executable &= !(nx_enabled && entry.contains(Entry::NO_EXECUTE));
        let leaf = huge || level == 1;
        if flags.contains(Flags::SET_PAGE_TABLE_BITS) {
            let mut set = Entry::ACCESSED;
            if leaf && flags.contains(Flags::VALIDATE_WRITE) {
                set |= Entry::DIRTY;
            }
            // Only when a bit is missing (an entry is not rewritten for
            // nothing), and only in the entry as read: one the guest
            // rewrote since (not present now, say) is left alone.
            if raw & set.bits() != set.bits() {
                let _ = memory.set_bits_if_unchanged(entry_gpa, raw, set.bits());
            }
        }
        if leaf {
            let page_mask = entry_span - 1;
            let gpa = (entry_address(raw) & !page_mask) | (gva & page_mask);
            check_access(state, flags, writable, user, executable, level)?;
            memory
                .read_u64(gpa & !(PAGE_SIZE - 1))
                .ok_or(unmapped("the page is outside guest memory", 0))?;
            return Ok(Translation {
                gpa_page: gpa / PAGE_SIZE,
            });
        }
        table = entry_address(raw);
    }
    unreachable!("level 1 always returns")
}

fn check_access(
    state: &PagingState,
    flags: Flags,
    writable: bool,
    user: bool,
    executable: bool,
    level: u8,
) -> Result<(), TranslateError> {
    let user_access = flags.contains(Flags::USER_ACCESS);
    let exempt = flags.contains(Flags::PRIVILEGE_EXEMPT);
    let violation = |reason| {
        Err(faulted(
            state,
            flags,
            Code::PRIVILEGE_VIOLATION,
            reason,
            level,
        ))
    };
    if user_access && !user && !exempt {
        return violation("a user access to a supervisor page");
    }
    let write_protected = user_access || state.cr0.contains(Cr0Flags::WRITE_PROTECT);
    if flags.contains(Flags::VALIDATE_WRITE) && !writable && write_protected {
        return violation("a write to a read-only page");
    }
    if flags.contains(Flags::VALIDATE_EXECUTE) && !executable {
        return violation("an instruction fetch from a no-execute page");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::string::ToString;

    /// Guest memory of `size` bytes, sparse.
    struct Memory {
        size: u64,
        words: HashMap<u64, u64>,
        /// How many times the walk set bits in an entry.
        sets: usize,
    }

    impl GuestMemory for Memory {
        fn read_u64(&self, gpa: u64) -> Option<u64> {
            (gpa < self.size).then(|| self.words.get(&gpa).copied().unwrap_or(0))
        }
        fn set_bits_if_unchanged(&mut self, gpa: u64, seen: u64, bits: u64) -> Option<bool> {
            (gpa < self.size).then(|| {
                let word = self.words.entry(gpa).or_default();
                let unchanged = *word == seen;
                if unchanged {
                    self.sets += 1;
                    *word |= bits;
                }
                unchanged
            })
        }
    }

    const PML4: u64 = 0x1000;
    const PDPT: u64 = 0x2000;
    const PD: u64 = 0x3000;
    const PT: u64 = 0x4000;
    const PRESENT: u64 = Entry::PRESENT.bits();
    const WRITABLE: u64 = Entry::WRITABLE.bits();
    const USER: u64 = Entry::USER_ACCESSIBLE.bits();
    const HUGE_PAGE: u64 = Entry::HUGE_PAGE.bits();
    const NO_EXECUTE: u64 = Entry::NO_EXECUTE.bits();
    const ACCESSED: u64 = Entry::ACCESSED.bits();
    const DIRTY: u64 = Entry::DIRTY.bits();
    const TABLE: u64 = PRESENT | WRITABLE | USER;

    /// Maps GVA 0x40_0000 → GPA 0x8000 (4 KiB, user, writable), GVA 0x20_0000
    /// as a 2 MiB page at GPA 0x60_0000 (read-only, no-execute), and GVA
    /// 0x4000_0000 as a 1 GiB page that lies outside guest memory.
    fn long_mode() -> (VpState, Memory) {
        let mut memory = Memory {
            size: 16 << 20,
            words: HashMap::new(),
            sets: 0,
        };
        let mut put = |gpa, value| memory.words.insert(gpa, value);
        put(PML4, PDPT | TABLE);
        put(PDPT, PD | TABLE);
        put(PDPT + 8, 0x4000_0000 | PRESENT | HUGE_PAGE);
        put(PD + 2 * 8, PT | TABLE);
        put(PD + 8, 0x60_0000 | PRESENT | USER | HUGE_PAGE | NO_EXECUTE);
        put(PT, 0x8000 | TABLE);
        let state = VpState {
            cr0: (Cr0Flags::PAGING | Cr0Flags::WRITE_PROTECT | Cr0Flags::PROTECTED_MODE_ENABLE)
                .bits(),
            cr3: PML4,
            cr4: Cr4Flags::PHYSICAL_ADDRESS_EXTENSION.bits(),
            efer: (EferFlags::LONG_MODE_ACTIVE
                | EferFlags::LONG_MODE_ENABLE
                | EferFlags::NO_EXECUTE_ENABLE)
                .bits(),
            ..VpState::default()
        };
        (state, memory)
    }

    /// The GPA, or the result code of a failed walk.
    fn translate(state: &VpState, memory: &mut Memory, gva: u64, flags: u64) -> Result<u64, Code> {
        translate_gva(&state.into(), memory, gva >> 12, Flags(flags))
            .map(|t| t.gpa_page << 12)
            .map_err(|e| match e {
                TranslateError::Walk(failure) => failure.code,
                other => panic!("GVA {gva:#x}: {other:?}, not a walk"),
            })
    }

    /// The page-fault error code of a failed walk.
    fn fault(state: &VpState, memory: &mut Memory, gva: u64, flags: u64) -> Option<u64> {
        match translate_gva(&state.into(), memory, gva >> 12, Flags(flags)) {
            Err(TranslateError::Walk(failure)) => failure.page_fault.map(|code| code.bits()),
            other => panic!("GVA {gva:#x}: {other:?}, not a failed walk"),
        }
    }

    #[test]
    fn four_level_and_large_pages() {
        let (state, mut memory) = long_mode();
        assert_eq!(translate(&state, &mut memory, 0x40_0000, 0x3), Ok(0x8000));
        assert_eq!(
            translate(&state, &mut memory, 0x2F_F000, 0x1),
            Ok(0x6F_F000)
        );
        assert_eq!(
            translate(&state, &mut memory, 0x4000_0000, 0x1),
            Err(Code::GPA_UNMAPPED)
        );
    }

    #[test]
    fn missing_entries_and_access_checks() {
        let (state, mut memory) = long_mode();
        assert_eq!(
            translate(&state, &mut memory, 0x40_1000, 0x1),
            Err(Code::PAGE_NOT_PRESENT)
        );
        assert_eq!(
            translate_gva(
                &(&state).into(),
                &mut memory,
                0x8000_0000_0000 >> 12,
                Flags(0)
            ),
            Err(TranslateError::NotCanonical)
        );
        assert_eq!(
            translate_gva(&(&state).into(), &mut memory, u64::MAX, Flags(0)),
            Err(TranslateError::NotCanonical)
        );
        // Read-only 2 MiB page: writes fail (CR0.WP), execution fails (NX).
        assert_eq!(
            translate(&state, &mut memory, 0x20_0000, 0x2),
            Err(Code::PRIVILEGE_VIOLATION)
        );
        assert_eq!(
            translate(&state, &mut memory, 0x20_0000, 0x4),
            Err(Code::PRIVILEGE_VIOLATION)
        );
        // Without CR0.WP a supervisor may write it, a user may not.
        let no_wp = VpState {
            cr0: state.cr0 & !Cr0Flags::WRITE_PROTECT.bits(),
            ..state
        };
        assert_eq!(
            translate(&no_wp, &mut memory, 0x20_0000, 0x2),
            Ok(0x60_0000)
        );
        assert_eq!(
            translate(&no_wp, &mut memory, 0x20_0000, 0x2 | 0x80),
            Err(Code::PRIVILEGE_VIOLATION)
        );
    }

    #[test]
    fn user_access_needs_user_bit_unless_exempt() {
        let (state, mut memory) = long_mode();
        memory.words.insert(PT, 0x8000 | PRESENT | WRITABLE);
        assert_eq!(
            translate(&state, &mut memory, 0x40_0000, 0x81),
            Err(Code::PRIVILEGE_VIOLATION)
        );
        assert_eq!(translate(&state, &mut memory, 0x40_0000, 0x89), Ok(0x8000));
        assert_eq!(translate(&state, &mut memory, 0x40_0000, 0x41), Ok(0x8000));
    }

    #[test]
    fn reserved_bits_and_modes() {
        let (state, mut memory) = long_mode();
        memory.words.insert(PML4, PDPT | TABLE | HUGE_PAGE);
        assert_eq!(
            translate(&state, &mut memory, 0x40_0000, 0x1),
            Err(Code::INVALID_PAGE_TABLE_FLAGS)
        );
        let protected = VpState { efer: 0, ..state };
        let err = translate_gva(&(&protected).into(), &mut memory, 0x400, Flags(1)).unwrap_err();
        assert_eq!(err, TranslateError::UnsupportedMode);
        assert_eq!(err.to_string(), "only long-mode paging is supported");
        let off = VpState::default();
        assert_eq!(translate(&off, &mut memory, 0x9000, 0x1), Ok(0x9000));
        assert_eq!(
            translate(&off, &mut memory, 32 << 20, 0x1),
            Err(Code::GPA_UNMAPPED)
        );
    }

    #[test]
    fn failed_walks_carry_the_page_fault_the_access_would_raise() {
        let (state, mut memory) = long_mode();
        // Not present, a supervisor read: error code 0.
        assert_eq!(fault(&state, &mut memory, 0x40_1000, 0x1), Some(0));
        // Not present, a user write: W | U.
        assert_eq!(fault(&state, &mut memory, 0x40_1000, 0x2 | 0x80), Some(0x6));
        // A write to a read-only page: P | W.
        assert_eq!(fault(&state, &mut memory, 0x20_0000, 0x2), Some(0x3));
        // A fetch from a no-execute page (NX on): P | I/D.
        assert_eq!(fault(&state, &mut memory, 0x20_0000, 0x4), Some(0x11));
        // The final page outside guest memory: no fault for the guest.
        assert_eq!(fault(&state, &mut memory, 0x4000_0000, 0x1), None);
        // Reserved bits: P | RSVD.
        memory.words.insert(PML4, PDPT | TABLE | HUGE_PAGE);
        assert_eq!(fault(&state, &mut memory, 0x40_0000, 0x1), Some(0x9));
    }

    #[test]
    fn sets_accessed_and_dirty_bits_when_asked() {
        let (state, mut memory) = long_mode();
        translate(&state, &mut memory, 0x40_0000, 0x1).unwrap();
        assert_eq!(memory.words[&PT] & (ACCESSED | DIRTY), 0);
        translate(&state, &mut memory, 0x40_0000, 0x2 | 0x10).unwrap();
        assert_eq!(memory.words[&PT] & (ACCESSED | DIRTY), ACCESSED | DIRTY);
        assert_eq!(memory.words[&PML4] & (ACCESSED | DIRTY), ACCESSED);
        assert_eq!(memory.sets, 4, "one OR per level");
        translate(&state, &mut memory, 0x40_0000, 0x2 | 0x10).unwrap();
        assert_eq!(memory.sets, 4, "entries that have the bits are not written");
    }

    #[test]
    fn any_tables_any_gvn_never_panic() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let (mut state, mut memory) = long_mode();
            for _ in 0..8 {
                let slot = [PML4, PDPT, PD, PT][(next() % 4) as usize] + (next() % 512) * 8;
                memory.words.insert(slot, next());
            }
            state.cr3 = next();
            let _ = translate_gva(&(&state).into(), &mut memory, next(), Flags(next()));
            state.cr3 = PML4;
            let _ = translate_gva(
                &(&state).into(),
                &mut memory,
                next() % (1 << 36),
                Flags(next()),
            );
        }
    }
}
