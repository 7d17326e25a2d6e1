//! Moving a VP's state between the protocol's places (the VP-state block
//! [`VpState`] and `cpu_context`) and the VMCB.
//!
//! While sidecar runs a VP with SVM, the VMCB is the authoritative copy of
//! everything it has a field for; the VP-state block is brought up to date
//! with [`Vmcb::save_state`] when the VP stops, and the VMCB from it with
//! [`Vmcb::load_state`] when the main kernel may have changed it. RAX and CR2
//! are special: the protocol carries them in `cpu_context` (CR2 in RSP's
//! slot), but VMRUN keeps them in the VMCB; [`Vmcb::load_context`] and
//! [`Vmcb::save_context`] move them.
//!
//! Some registers have no VMCB field and stay in the VP-state block: XCR0
//! (`Xfem`), `PendingEvent0`, and the NMI-masked bit of `InterruptState`
//! (sidecar does not virtualise NMI masking). XCR0 is not switched at all:
//! VMRUN does not, sidecar does not, and QEMU 7.2's TCG does not deliver
//! the XSETBV intercept (a guest's XSETBV ran with it set). So `Xfem` is
//! kept but not applied, and a guest's XSETBV stays in the CPU: the host
//! never uses XSAVE state (soft-float, CR4.OSXSAVE clear), but the next VP
//! on that CPU starts with that XCR0, and the AVX state beyond FXSAVE's is
//! shared between the VPs a CPU runs. Not done (docs/vmm.md).
//!
//! EFER: VMRUN refuses a guest whose EFER.SVME is clear (APM 15.5.1, and
//! QEMU checks it), yet sidecar's guests do not see SVM. So the VMCB's EFER
//! always has SVME set, and the guest-visible EFER (in [`VpState`] and in
//! GET_VP_REGISTERS) never does: the bit is added on the way in and removed
//! on the way out.
//!
//! Pending interruption: Hyper-V's `HvRegisterPendingInterruption` and SVM's
//! EVENTINJ describe the same thing (an event to deliver at the next entry)
//! in different bit layouts; [`eventinj_from_pending`] and
//! [`pending_from_eventinj`] convert. After an exit,
//! [`Vmcb::requeue_interrupted_event`] moves an event whose delivery was cut
//! short from EXITINTINFO back to EVENTINJ, so EVENTINJ is the one place to
//! look.

use crate::abi::{CpuContextX64, HvX64InterruptStateRegister, HvX64PendingInterruptionRegister};
use crate::vp::VpState;

use super::vmcb::{EventInjection, EventType, Vmcb, VmcbSegment, EFER_SVME};

// === Pending interruption ↔ EVENTINJ ===

/// The EVENTINJ value for a Hyper-V pending interruption (0 if none is
/// pending).
///
/// Types 0 (interrupt), 2 (NMI), 3 (exception) and 4 (software interrupt)
/// have the same numbers in both formats. Hyper-V's software exceptions
/// (INT3, INTO: type 6) and privileged software exception (ICEBP: type 5)
/// become SVM exceptions (type 3), as do the undefined types 1 and 7. The
/// instruction length and "nested event" bits have no EVENTINJ field and are
/// dropped, and only the low 8 bits of the vector are kept.
pub const fn eventinj_from_pending(pending: u64) -> u64 {
    let pending = HvX64PendingInterruptionRegister::from_bits(pending);
    if !pending.interruption_pending() {
        return 0;
    }
    let event_type = match pending.interruption_type() {
        0 => EventType::INTR,
        2 => EventType::NMI,
        4 => EventType::SOFTWARE_INT,
        _ => EventType::EXCEPTION,
    };
    let deliver_error_code = pending.deliver_error_code();
    EventInjection::new()
        .with_valid(true)
        .with_event_type(event_type)
        .with_vector(pending.interruption_vector() as u8)
        .with_error_code_valid(deliver_error_code)
        .with_error_code(if deliver_error_code {
            pending.error_code()
        } else {
            0
        })
        .into_bits()
}

/// The Hyper-V pending interruption for an EVENTINJ or EXITINTINFO value
/// (0 if its valid bit is clear).
pub const fn pending_from_eventinj(eventinj: u64) -> u64 {
    let event = EventInjection::from_bits(eventinj);
    if !event.valid() {
        return 0;
    }
    let error_code_valid = event.error_code_valid();
    HvX64PendingInterruptionRegister::new()
        .with_interruption_pending(true)
        .with_interruption_type(event.event_type().into_bits())
        .with_interruption_vector(event.vector() as u16)
        .with_deliver_error_code(error_code_valid)
        .with_error_code(if error_code_valid {
            event.error_code()
        } else {
            0
        })
        .into_bits()
}

// === impl Vmcb: state ===

impl Vmcb {
    /// Loads the guest state of the VP-state block into the state save area
    /// (and CR8, the interrupt shadow and the pending interruption into the
    /// control area). EFER gets SVME set; CPL is derived from the mode and
    /// SS ([`super::VmcbSave::implied_cpl`]). Intercepts, ASID and nested
    /// paging are left alone. XCR0 and `PendingEvent0` have no VMCB field.
    pub fn load_state(&mut self, state: &VpState) {
        let save = &mut self.save;
        save.rip = state.rip;
        save.rflags = state.rflags;
        save.rsp = state.rsp;
        save.cr0 = state.cr0;
        save.cr3 = state.cr3;
        save.cr4 = state.cr4;
        save.dr7 = state.dr7;
        save.efer = state.efer | EFER_SVME;
        save.g_pat = state.pat;
        save.kernel_gs_base = state.kernel_gs_base;
        save.sysenter_cs = state.sysenter_cs;
        save.sysenter_eip = state.sysenter_eip;
        save.sysenter_esp = state.sysenter_esp;
        save.star = state.star;
        save.lstar = state.lstar;
        save.cstar = state.cstar;
        save.sfmask = state.sfmask;
        save.es = VmcbSegment::from_hv(state.es);
        save.cs = VmcbSegment::from_hv(state.cs);
        save.ss = VmcbSegment::from_hv(state.ss);
        save.ds = VmcbSegment::from_hv(state.ds);
        save.fs = VmcbSegment::from_hv(state.fs);
        save.gs = VmcbSegment::from_hv(state.gs);
        save.ldtr = VmcbSegment::from_hv(state.ldtr);
        save.tr = VmcbSegment::from_hv(state.tr);
        save.gdtr = VmcbSegment::from_table(state.gdtr);
        save.idtr = VmcbSegment::from_table(state.idtr);
        save.cpl = save.implied_cpl();
        self.set_cr8(state.cr8);
        self.set_interrupt_shadow(
            HvX64InterruptStateRegister::from_bits(state.interrupt_state).interrupt_shadow(),
        );
        self.control.event_inj = eventinj_from_pending(state.pending_interruption);
    }

    /// Stores the guest state of the VMCB into the VP-state block: the
    /// inverse of [`Vmcb::load_state`] (EFER without SVME). The block's XCR0,
    /// `PendingEvent0` and the interrupt state's other bits are kept. Call
    /// [`Vmcb::requeue_interrupted_event`] first after an exit.
    pub fn save_state(&self, state: &mut VpState) {
        let save = &self.save;
        state.rip = save.rip;
        state.rflags = save.rflags;
        state.rsp = save.rsp;
        state.cr0 = save.cr0;
        state.cr3 = save.cr3;
        state.cr4 = save.cr4;
        state.dr7 = save.dr7;
        state.efer = save.efer & !EFER_SVME;
        state.pat = save.g_pat;
        state.kernel_gs_base = save.kernel_gs_base;
        state.sysenter_cs = save.sysenter_cs;
        state.sysenter_eip = save.sysenter_eip;
        state.sysenter_esp = save.sysenter_esp;
        state.star = save.star;
        state.lstar = save.lstar;
        state.cstar = save.cstar;
        state.sfmask = save.sfmask;
        state.es = save.es.to_hv();
        state.cs = save.cs.to_hv();
        state.ss = save.ss.to_hv();
        state.ds = save.ds.to_hv();
        state.fs = save.fs.to_hv();
        state.gs = save.gs.to_hv();
        state.ldtr = save.ldtr.to_hv();
        state.tr = save.tr.to_hv();
        state.gdtr = save.gdtr.to_table();
        state.idtr = save.idtr.to_table();
        state.cr8 = self.cr8();
        state.interrupt_state = HvX64InterruptStateRegister::from_bits(state.interrupt_state)
            .with_interrupt_shadow(self.interrupt_shadow())
            .into_bits();
        state.pending_interruption = pending_from_eventinj(self.control.event_inj);
    }

    /// Loads RAX and CR2 from `cpu_context` (CR2 is in RSP's slot) into the
    /// VMCB, where VMRUN takes them from.
    pub fn load_context(&mut self, context: &CpuContextX64) {
        self.save.rax = context.gps[CpuContextX64::RAX];
        self.save.cr2 = context.gps[CpuContextX64::CR2];
    }

    /// Stores RAX and CR2 from the VMCB into `cpu_context`: the inverse of
    /// [`Vmcb::load_context`].
    pub fn save_context(&self, context: &mut CpuContextX64) {
        context.gps[CpuContextX64::RAX] = self.save.rax;
        context.gps[CpuContextX64::CR2] = self.save.cr2;
    }

    /// Whether the guest is in an interrupt shadow.
    pub const fn interrupt_shadow(&self) -> bool {
        self.control.interrupt_shadow.interrupt_shadow()
    }

    /// Sets or clears the guest's interrupt shadow.
    pub fn set_interrupt_shadow(&mut self, shadow: bool) {
        self.control.interrupt_shadow.set_interrupt_shadow(shadow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{HvX64SegmentRegister, HvX64TableRegister};
    use crate::svm::vmcb::VirtualInterruptControl;
    use x86_64::registers::control::Cr0Flags;
    use zerocopy::FromZeros;

    fn segment(selector: u16, attributes: u16) -> HvX64SegmentRegister {
        HvX64SegmentRegister {
            base: 0x1000 * u64::from(selector),
            limit: 0xFFFF_FFFF,
            selector,
            attributes,
        }
    }

    /// A protected-mode, 64-bit VP state with every field distinct.
    fn sample_state() -> VpState {
        VpState {
            rip: 0x1000,
            rflags: 0x202,
            rsp: 0x8000,
            cr0: 0x8000_0011,
            cr3: 0x20_0000,
            cr4: 0x20,
            cr8: 0x7,
            xfem: 0x3,
            dr7: 0x400,
            efer: 0x500,
            pat: 0x0007_0406_0007_0406,
            kernel_gs_base: 0x11,
            sysenter_cs: 0x12,
            sysenter_eip: 0x13,
            sysenter_esp: 0x14,
            star: 0x15,
            lstar: 0x16,
            cstar: 0x17,
            sfmask: 0x18,
            es: segment(0x10, 0xC093),
            cs: segment(0x08, 0xA09B),
            ss: segment(0x13, 0xC0F3),
            ds: segment(0x10, 0xC093),
            fs: segment(0x10, 0xC093),
            gs: segment(0x10, 0xC093),
            ldtr: segment(0, 0x0082),
            tr: segment(0x28, 0x008B),
            idtr: HvX64TableRegister {
                pad: [0; 3],
                limit: 0xFFF,
                base: 0x3000,
            },
            gdtr: HvX64TableRegister {
                pad: [0; 3],
                limit: 0x37,
                base: 0x4000,
            },
            // A #PF (type 3, vector 14) with error code 6.
            pending_interruption: 0x6_000E_0017,
            interrupt_state: 0x3,
            ..VpState::reset()
        }
    }

    #[test]
    fn state_round_trips_through_the_vmcb() {
        let state = sample_state();
        let mut vmcb = Vmcb::new_zeroed();
        vmcb.control.v_intr = VirtualInterruptControl::new().with_v_intr_masking(true);
        vmcb.load_state(&state);
        assert_eq!(vmcb.save.efer, 0x500 | EFER_SVME);
        assert_eq!(vmcb.save.cs.attrib.into_bits(), 0x0A9B);
        assert_eq!(vmcb.save.cpl, 3);
        assert_eq!(vmcb.cr8(), 7);
        assert!(vmcb.control.v_intr.v_intr_masking());
        assert!(vmcb.interrupt_shadow());
        assert_eq!(vmcb.control.event_inj, 0x6_8000_0B0E);

        let mut back = VpState {
            xfem: state.xfem,
            pending_event0: state.pending_event0,
            ..VpState::default()
        };
        back.magic = state.magic;
        back.interrupt_state = 0x2; // the NMI-masked bit stays in the block
        vmcb.save_state(&mut back);
        assert_eq!(back, state);
    }

    #[test]
    fn real_mode_reset_state_loads() {
        let mut vmcb = Vmcb::new_zeroed();
        vmcb.load_state(&VpState::reset());
        assert_eq!(vmcb.save.cpl, 0);
        assert_eq!(vmcb.save.cs.base, 0xFFFF_0000);
        assert_eq!(vmcb.save.cs.attrib.into_bits(), 0x9B);
        assert_eq!(vmcb.save.efer, EFER_SVME);
        assert_eq!(vmcb.control.event_inj, 0);
        assert_eq!(vmcb.save.cr0 & Cr0Flags::PROTECTED_MODE_ENABLE.bits(), 0);
    }

    #[test]
    fn context_carries_rax_and_cr2() {
        let mut context = CpuContextX64::default();
        context.gps[CpuContextX64::RAX] = 0xAA;
        context.gps[CpuContextX64::CR2] = 0xC2;
        let mut vmcb = Vmcb::new_zeroed();
        vmcb.load_context(&context);
        assert_eq!((vmcb.save.rax, vmcb.save.cr2), (0xAA, 0xC2));
        let mut out = CpuContextX64::default();
        vmcb.save_context(&mut out);
        assert_eq!(out, context);
    }

    #[test]
    fn pending_interruption_converts_both_ways() {
        let pending = |typ: u8, vector: u16, error: Option<u32>| {
            HvX64PendingInterruptionRegister::new()
                .with_interruption_pending(true)
                .with_interruption_type(typ)
                .with_interruption_vector(vector)
                .with_deliver_error_code(error.is_some())
                .with_error_code(error.unwrap_or(0))
                .into_bits()
        };
        // EVENTINJ: valid (bit 31), error code valid (bit 11), type (bits
        // 8–10), vector (bits 0–7), error code (bits 32–63).
        const VALID: u64 = 1 << 31;
        const ERROR_CODE_VALID: u64 = 1 << 11;
        assert_eq!(pending(3, 14, Some(6)), 0x6_000E_0017);
        // (Hyper-V, EVENTINJ) pairs that convert exactly.
        let cases = [
            (pending(0, 0x30, None), VALID | 0x30),
            (pending(2, 2, None), VALID | (2 << 8) | 2),
            (
                pending(3, 13, Some(0x18)),
                VALID | ERROR_CODE_VALID | (3 << 8) | 13 | (0x18 << 32),
            ),
            (pending(4, 0x80, None), VALID | (4 << 8) | 0x80),
            (0, 0),
        ];
        for (hv, svm) in cases {
            assert_eq!(eventinj_from_pending(hv), svm, "{hv:#x}");
            assert_eq!(pending_from_eventinj(svm), hv, "{svm:#x}");
        }
        // A software exception (INT3) is injected as an exception.
        assert_eq!(
            eventinj_from_pending(pending(6, 3, None)),
            VALID | (3 << 8) | 3
        );
        // Not pending: nothing, whatever the other bits say.
        assert_eq!(eventinj_from_pending(pending(3, 14, Some(1)) & !1), 0);
        assert_eq!(pending_from_eventinj((3 << 8) | 14), 0);
    }
}
