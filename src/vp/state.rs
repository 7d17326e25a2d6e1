//! The VP-state block: the part of a VP's architectural state that is not in
//! `cpu_context`, in one `repr(C)` page-sized-or-less structure.

use core::sync::atomic::AtomicU32;

use x86_64::registers::control::Cr0Flags;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::abi::{HvX64SegmentRegister, HvX64TableRegister};
use crate::layout::PAGE_SIZE;

/// `VpState::magic`: the bytes "SC", 0, 0 and then layout version 1 (a u32).
///
/// Byte 2 is zero on purpose. The register page is sidecar's own, not the
/// hypervisor's `HvX64RegisterPage` that OpenHCL's client may map at the
/// same place; that client trusts the page only when byte 2 (`is_valid`) is
/// non-zero, so this block reads to it as "no register page" and it falls
/// back to GET_VP_REGISTERS.
pub const VP_STATE_MAGIC: u64 = 0x0000_0001_0000_4353;

/// Everything about a VP that `cpu_context` does not hold: the instruction
/// pointer, flags and stack pointer, control registers, segment and table
/// registers, the system MSRs, and a pending event.
///
/// The sidecar CPU that runs the VP owns the block; the main kernel reads it
/// only when the CPU's status is not `RUN` (and takes it over for good when
/// the CPU is removed).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[allow(missing_docs)]
pub struct VpState {
    /// [`VP_STATE_MAGIC`] once initialised.
    pub magic: u64,
    pub rip: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub xfem: u64,
    pub dr7: u64,
    pub efer: u64,
    pub pat: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_eip: u64,
    pub sysenter_esp: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub es: HvX64SegmentRegister,
    pub cs: HvX64SegmentRegister,
    pub ss: HvX64SegmentRegister,
    pub ds: HvX64SegmentRegister,
    pub fs: HvX64SegmentRegister,
    pub gs: HvX64SegmentRegister,
    pub ldtr: HvX64SegmentRegister,
    pub tr: HvX64SegmentRegister,
    pub idtr: HvX64TableRegister,
    pub gdtr: HvX64TableRegister,
    /// `HvRegisterPendingInterruption`: an event to inject at the next entry.
    pub pending_interruption: u64,
    /// `HvRegisterInterruptState`: the interrupt shadow.
    pub interrupt_state: u64,
    /// `HvRegisterPendingEvent0`.
    pub pending_event0: u128,
}

const _: () = assert!(core::mem::size_of::<VpState>() == 20 * 8 + 10 * 16 + 2 * 8 + 16);
const _: () = assert!(core::mem::size_of::<VpState>() as u64 <= PAGE_SIZE);

/// 32-bit flat code segment attributes (the packed format: type, S, DPL, P,
/// then AVL, L, D/B, G in bits 12..16).
pub const CODE32_ATTRIBUTES: u16 = 0xC09B;
/// 32-bit flat data segment attributes.
pub const DATA32_ATTRIBUTES: u16 = 0xC093;

impl VpState {
    /// The state of an x86 CPU after INIT, as a guest starts: real mode at
    /// `F000:FFF0`, except that sidecar's guests start wherever their loader
    /// puts them, so the VMM sets RIP and the segments it needs.
    pub fn reset() -> Self {
        let segment = |selector: u16, attributes: u16| HvX64SegmentRegister {
            base: u64::from(selector) << 4,
            limit: 0xFFFF,
            selector,
            attributes,
        };
        Self {
            magic: VP_STATE_MAGIC,
            rip: 0xFFF0,
            rflags: 0x2,
            // CD, NW and ET: caches off, as after RESET (0x6000_0010).
            cr0: (Cr0Flags::CACHE_DISABLE | Cr0Flags::NOT_WRITE_THROUGH | Cr0Flags::EXTENSION_TYPE)
                .bits(),
            pat: 0x0007_0406_0007_0406,
            xfem: 1,
            dr7: 0x400,
            cs: HvX64SegmentRegister {
                base: 0xFFFF_0000,
                ..segment(0xF000, 0x9B)
            },
            es: segment(0, 0x93),
            ss: segment(0, 0x93),
            ds: segment(0, 0x93),
            fs: segment(0, 0x93),
            gs: segment(0, 0x93),
            ldtr: segment(0, 0x82),
            tr: segment(0, 0x8B),
            idtr: HvX64TableRegister {
                pad: [0; 3],
                limit: 0xFFFF,
                base: 0,
            },
            gdtr: HvX64TableRegister {
                pad: [0; 3],
                limit: 0xFFFF,
                base: 0,
            },
            ..Self::default()
        }
    }
}

/// The register page: one per sidecar CPU, shared with the main kernel.
///
/// Sidecar's own layout, not OpenHCL's (see [`VP_STATE_MAGIC`]): the
/// VP-state block, then the one field the main kernel may write while
/// the VP runs: a request to inject an interrupt.
#[repr(C)]
pub struct RegisterPage {
    /// The VP's state (owned by the sidecar CPU while its status is RUN).
    pub state: VpState,
    /// An interrupt to inject: the vector with [`INTERRUPT_REQUEST_VALID`],
    /// or 0. The main kernel stores it (then sends the request IPI); the
    /// sidecar CPU swaps it back to 0 when it injects.
    pub interrupt_request: AtomicU32,
}

/// [`RegisterPage::interrupt_request`]: a request is present.
pub const INTERRUPT_REQUEST_VALID: u32 = 1 << 8;

const _: () = assert!(core::mem::size_of::<RegisterPage>() as u64 <= PAGE_SIZE);
// Where `HvX64RegisterPage::is_valid` is, an initialised block holds zero.
const _: () = assert!(VP_STATE_MAGIC.to_le_bytes()[2] == 0);
const _: () = assert!(core::mem::offset_of!(RegisterPage, state) == 0);
const _: () = assert!(core::mem::offset_of!(VpState, magic) == 0);

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenHCL's client reads byte 2 of the register page as the
    /// hypervisor's `is_valid`: sidecar's block must read as "not valid".
    #[test]
    fn byte_two_reads_as_no_hypervisor_register_page() {
        let state = VpState::reset();
        assert_eq!(state.as_bytes()[2], 0);
        assert_eq!(&state.as_bytes()[..2], b"SC");
    }
}
