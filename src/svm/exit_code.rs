//! #VMEXIT codes (APM vol. 2, appendix C): why a guest stopped running.
//!
//! The processor writes the code into the VMCB's EXITCODE field at every
//! #VMEXIT. Most codes name the intercept that fired (`VMEXIT_HLT`,
//! `VMEXIT_IOIO`…); some are ranges (reads and writes of each control and
//! debug register, one code per exception vector); a few negative codes
//! report that VMRUN itself failed ([`VMEXIT_INVALID`] = −1: the VMCB's
//! guest state is not valid).
//!
//! EXITCODE is 64 bits wide, but QEMU writes the negative codes as 32-bit
//! values without sign extension (0x0000_0000_FFFF_FFFF for −1).
//! [`ExitCode::from_raw`] sign-extends them, so comparing an [`ExitCode`]
//! with [`VMEXIT_INVALID`] works on both.

use core::fmt;

macro_rules! exit_codes {
    ($( $(#[$meta:meta])* $name:ident = $value:expr, )*) => {
        $( $(#[$meta])* pub const $name: u64 = $value; )*

        /// The single (not range) exit codes and their names.
        const NAMES: &[(u64, &str)] = &[ $( ($value, stringify!($name)), )* ];
    };
}

/// The first CR read exit: `VMEXIT_CR0_READ + n` for CR`n` (0x00–0x0F).
pub const VMEXIT_CR0_READ: u64 = 0x00;
/// The first CR write exit: `VMEXIT_CR0_WRITE + n` for CR`n` (0x10–0x1F).
pub const VMEXIT_CR0_WRITE: u64 = 0x10;
/// The first DR read exit: `VMEXIT_DR0_READ + n` for DR`n` (0x20–0x2F).
pub const VMEXIT_DR0_READ: u64 = 0x20;
/// The first DR write exit: `VMEXIT_DR0_WRITE + n` for DR`n` (0x30–0x3F).
pub const VMEXIT_DR0_WRITE: u64 = 0x30;
/// The first exception exit: `VMEXIT_EXCP0 + vector` (0x40–0x5F).
pub const VMEXIT_EXCP0: u64 = 0x40;
/// The first CR write trap exit (after the write completed):
/// `VMEXIT_CR0_WRITE_TRAP + n` (0x90–0x9F).
pub const VMEXIT_CR0_WRITE_TRAP: u64 = 0x90;

exit_codes! {
    /// A physical maskable interrupt arrived.
    VMEXIT_INTR = 0x60,
    /// A physical NMI arrived.
    VMEXIT_NMI = 0x61,
    /// A physical SMI arrived.
    VMEXIT_SMI = 0x62,
    /// A physical INIT arrived.
    VMEXIT_INIT = 0x63,
    /// The guest can take the pending virtual interrupt.
    VMEXIT_VINTR = 0x64,
    /// A CR0 write that changes bits other than TS and MP.
    VMEXIT_CR0_SEL_WRITE = 0x65,
    /// SIDT.
    VMEXIT_IDTR_READ = 0x66,
    /// SGDT.
    VMEXIT_GDTR_READ = 0x67,
    /// SLDT.
    VMEXIT_LDTR_READ = 0x68,
    /// STR.
    VMEXIT_TR_READ = 0x69,
    /// LIDT.
    VMEXIT_IDTR_WRITE = 0x6A,
    /// LGDT.
    VMEXIT_GDTR_WRITE = 0x6B,
    /// LLDT.
    VMEXIT_LDTR_WRITE = 0x6C,
    /// LTR.
    VMEXIT_TR_WRITE = 0x6D,
    /// RDTSC.
    VMEXIT_RDTSC = 0x6E,
    /// RDPMC.
    VMEXIT_RDPMC = 0x6F,
    /// PUSHF.
    VMEXIT_PUSHF = 0x70,
    /// POPF.
    VMEXIT_POPF = 0x71,
    /// CPUID.
    VMEXIT_CPUID = 0x72,
    /// RSM.
    VMEXIT_RSM = 0x73,
    /// IRET.
    VMEXIT_IRET = 0x74,
    /// A software interrupt (INTn).
    VMEXIT_SWINT = 0x75,
    /// INVD.
    VMEXIT_INVD = 0x76,
    /// PAUSE.
    VMEXIT_PAUSE = 0x77,
    /// HLT: RIP points at the HLT.
    VMEXIT_HLT = 0x78,
    /// INVLPG.
    VMEXIT_INVLPG = 0x79,
    /// INVLPGA.
    VMEXIT_INVLPGA = 0x7A,
    /// An I/O instruction: EXITINFO1 describes it, EXITINFO2 is the next RIP.
    VMEXIT_IOIO = 0x7B,
    /// RDMSR (EXITINFO1 = 0) or WRMSR (EXITINFO1 = 1).
    VMEXIT_MSR = 0x7C,
    /// A task switch.
    VMEXIT_TASK_SWITCH = 0x7D,
    /// FERR_FREEZE.
    VMEXIT_FERR_FREEZE = 0x7E,
    /// Shutdown: the guest triple-faulted.
    VMEXIT_SHUTDOWN = 0x7F,
    /// VMRUN in the guest.
    VMEXIT_VMRUN = 0x80,
    /// VMMCALL.
    VMEXIT_VMMCALL = 0x81,
    /// VMLOAD.
    VMEXIT_VMLOAD = 0x82,
    /// VMSAVE.
    VMEXIT_VMSAVE = 0x83,
    /// STGI.
    VMEXIT_STGI = 0x84,
    /// CLGI.
    VMEXIT_CLGI = 0x85,
    /// SKINIT.
    VMEXIT_SKINIT = 0x86,
    /// RDTSCP.
    VMEXIT_RDTSCP = 0x87,
    /// ICEBP.
    VMEXIT_ICEBP = 0x88,
    /// WBINVD or WBNOINVD.
    VMEXIT_WBINVD = 0x89,
    /// MONITOR or MONITORX.
    VMEXIT_MONITOR = 0x8A,
    /// MWAIT or MWAITX.
    VMEXIT_MWAIT = 0x8B,
    /// MWAIT or MWAITX with the monitor armed.
    VMEXIT_MWAIT_CONDITIONAL = 0x8C,
    /// XSETBV.
    VMEXIT_XSETBV = 0x8D,
    /// RDPRU.
    VMEXIT_RDPRU = 0x8E,
    /// A write of EFER, after it completed.
    VMEXIT_EFER_WRITE_TRAP = 0x8F,
    /// A nested page fault: EXITINFO1 is the error code, EXITINFO2 the GPA.
    VMEXIT_NPF = 0x400,
    /// AVIC: an IPI the hardware could not complete.
    VMEXIT_AVIC_INCOMPLETE_IPI = 0x401,
    /// AVIC: an APIC access the hardware does not accelerate.
    VMEXIT_AVIC_NOACCEL = 0x402,
    /// VMGEXIT (SEV-ES).
    VMEXIT_VMGEXIT = 0x403,
    /// VMRUN failed: the guest state in the VMCB is invalid (−1).
    VMEXIT_INVALID = -1i64 as u64,
    /// VMRUN failed: the VMSA is busy (SEV-ES, −2).
    VMEXIT_BUSY = -2i64 as u64,
    /// VMRUN failed: the sibling thread is not idle (−3).
    VMEXIT_IDLE_REQUIRED = -3i64 as u64,
    /// VMRUN failed: invalid performance counter state (−4).
    VMEXIT_INVALID_PMC = -4i64 as u64,
}

/// A #VMEXIT code. `Debug` prints its name (`VMEXIT_IOIO`,
/// `VMEXIT_CR3_WRITE`, `VMEXIT_EXCP(14)`) or the number.
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ExitCode(pub u64);

impl ExitCode {
    /// The exit code in a raw EXITCODE value, with a 32-bit negative code
    /// (as QEMU writes them) sign-extended to 64 bits.
    pub const fn from_raw(raw: u64) -> Self {
        // The negative codes are −1…−4; anything in 0xFFFF_F000..=0xFFFF_FFFF
        // with the upper half clear is one written without sign extension.
        if raw >> 32 == 0 && raw >= 0xFFFF_F000 {
            Self(raw as u32 as i32 as i64 as u64)
        } else {
            Self(raw)
        }
    }

    /// Whether VMRUN failed because the guest state is invalid.
    pub const fn is_invalid(self) -> bool {
        self.0 == VMEXIT_INVALID || self.0 == VMEXIT_INVALID & 0xFFFF_FFFF
    }

    /// The exception vector, for an exception intercept (0x40–0x5F).
    pub const fn exception_vector(self) -> Option<u8> {
        if self.0 >= VMEXIT_EXCP0 && self.0 < VMEXIT_EXCP0 + 32 {
            Some((self.0 - VMEXIT_EXCP0) as u8)
        } else {
            None
        }
    }

    /// The name of a single (not range) exit code.
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|&&(value, _)| value == self.0)
            .map(|&(_, name)| name)
    }
}

impl From<u64> for ExitCode {
    fn from(raw: u64) -> Self {
        Self::from_raw(raw)
    }
}

impl fmt::Debug for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.0;
        let ranges = [
            (VMEXIT_CR0_READ, "CR", "_READ"),
            (VMEXIT_CR0_WRITE, "CR", "_WRITE"),
            (VMEXIT_DR0_READ, "DR", "_READ"),
            (VMEXIT_DR0_WRITE, "DR", "_WRITE"),
            (VMEXIT_CR0_WRITE_TRAP, "CR", "_WRITE_TRAP"),
        ];
        for (base, register, suffix) in ranges {
            if (base..base + 16).contains(&code) {
                return write!(f, "VMEXIT_{register}{}{suffix}", code - base);
            }
        }
        if let Some(vector) = self.exception_vector() {
            return write!(f, "VMEXIT_EXCP({vector})");
        }
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ExitCode({code:#x})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn the_brief_values() {
        assert_eq!(VMEXIT_INTR, 0x60);
        assert_eq!(VMEXIT_NMI, 0x61);
        assert_eq!(VMEXIT_CPUID, 0x72);
        assert_eq!(VMEXIT_HLT, 0x78);
        assert_eq!(VMEXIT_IOIO, 0x7B);
        assert_eq!(VMEXIT_MSR, 0x7C);
        assert_eq!(VMEXIT_SHUTDOWN, 0x7F);
        assert_eq!(VMEXIT_VMRUN, 0x80);
        assert_eq!(VMEXIT_NPF, 0x400);
        assert_eq!(VMEXIT_INVALID, u64::MAX);
    }

    #[test]
    fn qemu_invalid_is_sign_extended() {
        let qemu = ExitCode::from_raw(0xFFFF_FFFF);
        assert_eq!(qemu, ExitCode(VMEXIT_INVALID));
        assert!(qemu.is_invalid());
        assert!(ExitCode(0xFFFF_FFFF).is_invalid());
        assert!(ExitCode::from_raw(u64::MAX).is_invalid());
        assert_eq!(ExitCode::from_raw(0xFFFF_FFFE), ExitCode(VMEXIT_BUSY));
        assert_eq!(ExitCode::from_raw(0x7B), ExitCode(VMEXIT_IOIO));
        assert!(!ExitCode::from_raw(0x7B).is_invalid());
    }

    #[test]
    fn debug_names() {
        let name = |code: u64| format!("{:?}", ExitCode::from_raw(code));
        assert_eq!(name(0x7B), "VMEXIT_IOIO");
        assert_eq!(name(0x400), "VMEXIT_NPF");
        assert_eq!(name(0xFFFF_FFFF), "VMEXIT_INVALID");
        assert_eq!(name(0x03), "VMEXIT_CR3_READ");
        assert_eq!(name(0x18), "VMEXIT_CR8_WRITE");
        assert_eq!(name(0x27), "VMEXIT_DR7_READ");
        assert_eq!(name(0x3F), "VMEXIT_DR15_WRITE");
        assert_eq!(name(0x4E), "VMEXIT_EXCP(14)");
        assert_eq!(name(0x94), "VMEXIT_CR4_WRITE_TRAP");
        assert_eq!(name(0x1234), "ExitCode(0x1234)");
    }

    #[test]
    fn exception_vectors() {
        assert_eq!(ExitCode(0x40).exception_vector(), Some(0));
        assert_eq!(ExitCode(0x5F).exception_vector(), Some(31));
        assert_eq!(ExitCode(0x60).exception_vector(), None);
        assert_eq!(ExitCode(0x3F).exception_vector(), None);
    }
}
