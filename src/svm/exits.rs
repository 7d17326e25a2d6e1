//! Turning a #VMEXIT into the Hyper-V intercept message that RUN_VP hands to
//! the main kernel.
//!
//! The protocol speaks Hyper-V: when a VP stops for something its VMM must
//! handle, the command page's `intercept_message` holds the message a
//! Hyper-V hypervisor would have sent (an I/O port intercept, an unmapped
//! GPA, an MSR access, a halt, a triple fault). On SVM the same facts are
//! spread over the VMCB: the exit code says what happened, EXITINFO1 and
//! EXITINFO2 the details (APM 15.9–15.12 and 15.25), the state save area the
//! guest's CS, RIP, RFLAGS, CPL, RAX; the other general registers are in
//! `cpu_context`. [`intercept_message`] gathers them.
//!
//! The intercepted instruction's length comes from the exit itself where it
//! can: for IOIO, EXITINFO2 is the next RIP (QEMU has no NRIP-save, but it
//! fills this); RDMSR, WRMSR (0F 32, 0F 30) are 2 bytes and HLT (F4) is 1.
//! RIP still points at the instruction: the VMM advances it by the length
//! after emulating, as with Hyper-V.
//!
//! Exits the sidecar CPU handles on its own ([`handled_by_sidecar`]: a
//! physical interrupt, NMI, SMI or INIT, the virtual-interrupt window,
//! PAUSE) have no message, and neither do the SVM instructions, which the
//! VMRUN loop answers with #UD. Any other exit without a message here ends
//! RUN_VP with an error (see `crate::vmrun`): none is re-entered at the same
//! RIP.

use bitfield_struct::bitfield;
use x86_64::registers::control::Cr0Flags;
use x86_64::registers::model_specific::EferFlags;

use crate::abi::{
    CpuContextX64, HvCacheType, HvInterceptAccessType, HvMessage, HvMessageType, HvX64HaltMessage,
    HvX64InstructionLengthAndCr8, HvX64InterceptMessageHeader, HvX64IoPortAccessInfo,
    HvX64IoPortInterceptMessage, HvX64MemoryAccessInfo, HvX64MemoryInterceptMessage,
    HvX64MsrInterceptMessage, HvX64UnrecoverableExceptionMessage, HvX64VpExecutionState,
};

use super::exit_code::{
    VMEXIT_HLT, VMEXIT_INIT, VMEXIT_INTR, VMEXIT_IOIO, VMEXIT_MSR, VMEXIT_NMI, VMEXIT_NPF,
    VMEXIT_PAUSE, VMEXIT_SHUTDOWN, VMEXIT_SMI, VMEXIT_VINTR,
};
use super::vmcb::{EventInjection, Vmcb};
use super::ExitCode;

// === EXITINFO1 layouts ===

/// IOIO EXITINFO1 (APM 15.10.2): what the intercepted IN/OUT did.
#[bitfield(u64)]
pub struct IoioExitInfo {
    /// Bit 0: the access is IN (else OUT).
    pub type_in: bool,
    __: bool,
    /// Bit 2: a string instruction (INS/OUTS).
    pub string: bool,
    /// Bit 3: with a REP prefix.
    pub rep: bool,
    /// Bit 4: 8-bit operand.
    pub size8: bool,
    /// Bit 5: 16-bit operand.
    pub size16: bool,
    /// Bit 6: 32-bit operand.
    pub size32: bool,
    /// Bit 7: 16-bit address size.
    pub address16: bool,
    /// Bit 8: 32-bit address size.
    pub address32: bool,
    /// Bit 9: 64-bit address size.
    pub address64: bool,
    /// Bits 10–12: the segment of a string instruction (0 ES … 5 GS).
    #[bits(3)]
    pub segment: u8,
    #[bits(3)]
    __: u8,
    /// Bits 16–31: the port.
    pub port: u16,
    #[bits(32)]
    __: u32,
}

/// MSR EXITINFO1 (APM 15.11): 1 for WRMSR, 0 for RDMSR.
pub const MSR_WRITE: u64 = 1;

/// NPF EXITINFO1 (APM 15.25.6): the page-fault error code of a nested page
/// fault.
#[bitfield(u64)]
pub struct NpfExitInfo {
    /// Bit 0: the page was present.
    pub present: bool,
    /// Bit 1: a write.
    pub write: bool,
    /// Bit 2: a user access (always, for nested walks).
    pub user: bool,
    /// Bit 3: a reserved bit was set.
    pub reserved_bit: bool,
    /// Bit 4: an instruction fetch.
    pub execute: bool,
    #[bits(27)]
    __: u32,
    /// Bit 32: the fault was on the final GPA translation.
    pub final_translation: bool,
    /// Bit 33: the fault was on a guest page table access.
    pub guest_page_table: bool,
    #[bits(30)]
    __: u32,
}

/// The length of RDMSR and WRMSR.
const MSR_INSTRUCTION_LEN: u8 = 2;
/// The length of HLT.
const HLT_INSTRUCTION_LEN: u8 = 1;

// === Decoding ===

/// Whether the sidecar CPU handles exits with this code itself, without
/// stopping the VP: a physical interrupt, NMI, SMI or INIT (taken by the
/// host after the exit), the virtual-interrupt window, PAUSE.
pub fn handled_by_sidecar(code: ExitCode) -> bool {
    matches!(
        code.0,
        VMEXIT_INTR | VMEXIT_NMI | VMEXIT_SMI | VMEXIT_INIT | VMEXIT_VINTR | VMEXIT_PAUSE
    )
}

/// The Hyper-V intercept message for the VMCB's last exit, or `None` for an
/// exit with no message (see the module docs). `context` holds the general
/// registers other than RAX (which is in the VMCB); `vp_index` is the VP's
/// index for the header.
pub fn intercept_message(vmcb: &Vmcb, context: &CpuContextX64, vp_index: u32) -> Option<HvMessage> {
    let code = vmcb.exit_code();
    let header = |access: HvInterceptAccessType, instruction_len: u8| {
        intercept_header(vmcb, vp_index, access, instruction_len)
    };
    Some(match code.0 {
        VMEXIT_IOIO => io_port_message(vmcb, context, header),
        VMEXIT_NPF => memory_message(vmcb, header),
        VMEXIT_MSR => {
            let write = vmcb.control.exit_info1 & MSR_WRITE != 0;
            let access = if write {
                HvInterceptAccessType::WRITE
            } else {
                HvInterceptAccessType::READ
            };
            let message = HvX64MsrInterceptMessage {
                header: header(access, MSR_INSTRUCTION_LEN),
                msr_number: context.gps[CpuContextX64::RCX] as u32,
                reserved: 0,
                rdx: context.gps[CpuContextX64::RDX],
                rax: vmcb.save.rax,
            };
            HvMessage::new(HvMessageType::HvMessageTypeMsrIntercept, 0, &message)
        }
        VMEXIT_HLT => {
            let message = HvX64HaltMessage {
                // No memory access: the type is 0 (read), as for a
                // zeroed header.
                header: header(HvInterceptAccessType::READ, HLT_INSTRUCTION_LEN),
            };
            HvMessage::new(HvMessageType::HvMessageTypeX64Halt, 0, &message)
        }
        VMEXIT_SHUTDOWN => {
            let message = HvX64UnrecoverableExceptionMessage {
                header: header(HvInterceptAccessType::READ, 0),
            };
            HvMessage::new(
                HvMessageType::HvMessageTypeUnrecoverableException,
                0,
                &message,
            )
        }
        _ => return None,
    })
}

/// The header every x64 intercept message starts with.
fn intercept_header(
    vmcb: &Vmcb,
    vp_index: u32,
    access: HvInterceptAccessType,
    instruction_len: u8,
) -> HvX64InterceptMessageHeader {
    let save = &vmcb.save;
    // An event was being delivered when the exit came (or is queued again
    // for the next entry).
    let interrupted = EventInjection::from_bits(vmcb.control.exit_int_info).valid()
        || EventInjection::from_bits(vmcb.control.event_inj).valid();
    let state = HvX64VpExecutionState::new()
        .with_cpl(save.cpl & 0x3)
        .with_cr0_pe(Cr0Flags::from_bits_retain(save.cr0).contains(Cr0Flags::PROTECTED_MODE_ENABLE))
        .with_efer_lma(EferFlags::from_bits_retain(save.efer).contains(EferFlags::LONG_MODE_ACTIVE))
        .with_interruption_pending(interrupted);
    HvX64InterceptMessageHeader {
        vp_index,
        instruction_length_and_cr8: HvX64InstructionLengthAndCr8::new()
            .with_instruction_length(instruction_len & 0xF)
            .with_cr8(vmcb.cr8() as u8),
        intercept_access_type: access,
        execution_state: state,
        cs_segment: save.cs.to_hv(),
        rip: save.rip,
        rflags: save.rflags,
    }
}

fn io_port_message(
    vmcb: &Vmcb,
    context: &CpuContextX64,
    header: impl Fn(HvInterceptAccessType, u8) -> HvX64InterceptMessageHeader,
) -> HvMessage {
    let info = IoioExitInfo::from_bits(vmcb.control.exit_info1);
    let access = if info.type_in() {
        HvInterceptAccessType::READ
    } else {
        HvInterceptAccessType::WRITE
    };
    let size = if info.size32() {
        4
    } else if info.size16() {
        2
    } else {
        1
    };
    let access_info = HvX64IoPortAccessInfo::new()
        .with_access_size(size)
        .with_string_op(info.string())
        .with_rep_prefix(info.rep());
    // EXITINFO2 is the RIP of the next instruction. An I/O instruction is
    // 1 to 15 bytes long; anything else means the field was not filled.
    let len = vmcb.control.exit_info2.wrapping_sub(vmcb.save.rip);
    let len = if (1..=15).contains(&len) {
        len as u8
    } else {
        0
    };
    let message = HvX64IoPortInterceptMessage {
        header: header(access, len),
        port_number: info.port(),
        access_info,
        instruction_byte_count: 0,
        reserved: 0,
        rax: vmcb.save.rax,
        instruction_bytes: [0; 16],
        ds_segment: vmcb.save.ds.to_hv(),
        es_segment: vmcb.save.es.to_hv(),
        rcx: context.gps[CpuContextX64::RCX],
        rsi: context.gps[CpuContextX64::RSI],
        rdi: context.gps[CpuContextX64::RDI],
    };
    HvMessage::new(HvMessageType::HvMessageTypeX64IoPortIntercept, 0, &message)
}

fn memory_message(
    vmcb: &Vmcb,
    header: impl Fn(HvInterceptAccessType, u8) -> HvX64InterceptMessageHeader,
) -> HvMessage {
    let error = NpfExitInfo::from_bits(vmcb.control.exit_info1);
    let access = if error.execute() {
        HvInterceptAccessType::EXECUTE
    } else if error.write() {
        HvInterceptAccessType::WRITE
    } else {
        HvInterceptAccessType::READ
    };
    // With decode assists the processor saves the bytes it fetched; QEMU
    // does not, and the count stays 0.
    let count = (vmcb.control.insn_len & 0xF).min(15);
    let mut instruction_bytes = [0; 16];
    instruction_bytes[..usize::from(count)]
        .copy_from_slice(&vmcb.control.insn_bytes[..usize::from(count)]);
    let message = HvX64MemoryInterceptMessage {
        // The instruction's length is not known without decoding it.
        header: header(access, 0),
        // An unmapped GPA has no memory type of its own; report uncached,
        // as for MMIO.
        cache_type: HvCacheType::HvCacheTypeUncached,
        instruction_byte_count: count,
        // The exit does not give the GVA.
        memory_access_info: HvX64MemoryAccessInfo::new(),
        tpr_priority: vmcb.cr8() as u8,
        reserved: 0,
        guest_virtual_address: 0,
        guest_physical_address: vmcb.control.exit_info2,
        instruction_bytes,
    };
    HvMessage::new(HvMessageType::HvMessageTypeUnmappedGpa, 0, &message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::HvX64SegmentRegister;
    use crate::svm::exit_code::{VMEXIT_CPUID, VMEXIT_INVALID, VMEXIT_VMRUN};
    use crate::svm::vmcb::{
        event, VirtualInterruptControl, VmcbSegment, VmcbSegmentAttributes, EFER_SVME,
    };

    // EXITINFO1 bits as the APM gives them (15.10.2 for IOIO, 15.25.6 for
    // NPF), written out so that the decoding is checked against the spec.
    const IOIO_TYPE_IN: u64 = 1 << 0;
    const IOIO_STRING: u64 = 1 << 2;
    const IOIO_REP: u64 = 1 << 3;
    const IOIO_SIZE8: u64 = 1 << 4;
    const IOIO_SIZE16: u64 = 1 << 5;
    const IOIO_SIZE32: u64 = 1 << 6;
    const IOIO_PORT_SHIFT: u32 = 16;
    const NPF_WRITE: u64 = 1 << 1;
    const NPF_USER: u64 = 1 << 2;
    const NPF_EXECUTE: u64 = 1 << 4;
    const NPF_FINAL_TRANSLATION: u64 = 1 << 32;
    use zerocopy::{FromZeros, IntoBytes};

    /// A 64-bit guest at CPL 0 stopped at RIP 0x1000.
    fn vmcb(exit_code: u64, info1: u64, info2: u64) -> Vmcb {
        let mut vmcb = Vmcb::new_zeroed();
        vmcb.control.exit_code = exit_code;
        vmcb.control.exit_info1 = info1;
        vmcb.control.exit_info2 = info2;
        vmcb.control.v_intr = VirtualInterruptControl::new()
            .with_v_intr_masking(true)
            .with_v_tpr(2); // CR8 = 2
        vmcb.save.cs = VmcbSegment {
            selector: 0x8,
            attrib: VmcbSegmentAttributes::from_bits(0x0A9B),
            limit: 0xFFFF_FFFF,
            base: 0,
        };
        vmcb.save.ds = VmcbSegment {
            selector: 0x10,
            attrib: VmcbSegmentAttributes::from_bits(0x0C93),
            limit: 0xFFFF_FFFF,
            base: 0x100,
        };
        vmcb.save.es = VmcbSegment {
            base: 0x200,
            ..vmcb.save.ds
        };
        vmcb.save.cr0 = 0x8000_0011;
        vmcb.save.efer = (EferFlags::SECURE_VIRTUAL_MACHINE_ENABLE
            | EferFlags::LONG_MODE_ACTIVE
            | EferFlags::LONG_MODE_ENABLE)
            .bits();
        vmcb.save.rip = 0x1000;
        vmcb.save.rflags = 0x202;
        vmcb.save.rax = 0xAB;
        vmcb
    }

    fn context() -> CpuContextX64 {
        let mut context = CpuContextX64::default();
        context.gps[CpuContextX64::RCX] = 0xC000_0080;
        context.gps[CpuContextX64::RDX] = 0xDD;
        context.gps[CpuContextX64::RSI] = 0x51;
        context.gps[CpuContextX64::RDI] = 0xD1;
        context
    }

    fn check_header(header: &HvX64InterceptMessageHeader, access: HvInterceptAccessType, len: u8) {
        assert_eq!(header.vp_index, 7);
        assert_eq!(header.instruction_len(), len);
        assert_eq!(header.cr8(), 2);
        assert_eq!(header.intercept_access_type, access);
        assert_eq!(header.execution_state.cpl(), 0);
        assert!(header.execution_state.cr0_pe());
        assert!(header.execution_state.efer_lma());
        assert!(!header.execution_state.interruption_pending());
        assert_eq!(
            header.cs_segment,
            HvX64SegmentRegister {
                base: 0,
                limit: 0xFFFF_FFFF,
                selector: 0x8,
                attributes: 0xA09B,
            }
        );
        assert_eq!(header.rip, 0x1000);
        assert_eq!(header.rflags, 0x202);
    }

    #[test]
    fn out_to_the_debug_exit_port() {
        // `out 0xf4, al`: E6 F4, two bytes.
        let info1 = (0xF4 << IOIO_PORT_SHIFT) | IOIO_SIZE8;
        let message = intercept_message(&vmcb(0x7B, info1, 0x1002), &context(), 7).unwrap();
        assert_eq!(
            message.header.typ,
            HvMessageType::HvMessageTypeX64IoPortIntercept
        );
        assert_eq!(usize::from(message.header.len), 128);
        let io = message.payload_as::<HvX64IoPortInterceptMessage>();
        check_header(&io.header, HvInterceptAccessType::WRITE, 2);
        assert_eq!(io.port_number, 0xF4);
        assert_eq!(io.access_info.access_size(), 1);
        assert!(!io.access_info.string_op());
        assert_eq!(io.rax, 0xAB);
        assert_eq!(io.ds_segment.base, 0x100);
        assert_eq!(io.es_segment.base, 0x200);
        assert_eq!((io.rcx, io.rsi, io.rdi), (0xC000_0080, 0x51, 0xD1));
        // The raw bytes, at the offsets of the ABI notes.
        let bytes = message.payload();
        assert_eq!(&bytes[0..4], &7u32.to_le_bytes());
        assert_eq!(bytes[4], 0x22); // length 2, CR8 2
        assert_eq!(bytes[5], 1); // write
        assert_eq!(&bytes[6..8], &0x14u16.to_le_bytes()); // CR0.PE | EFER.LMA
        assert_eq!(&bytes[24..32], &0x1000u64.to_le_bytes());
        assert_eq!(&bytes[40..42], &0xF4u16.to_le_bytes());
        assert_eq!(bytes[42], 1);
        assert_eq!(&bytes[48..56], &0xABu64.to_le_bytes());
    }

    #[test]
    fn rep_insw_and_in_dword() {
        // `rep insw` from port 0x1F0: F3 66 6D, three bytes.
        let info1 = (0x1F0 << IOIO_PORT_SHIFT) | IOIO_SIZE16 | IOIO_REP | IOIO_STRING | 1;
        let message = intercept_message(&vmcb(0x7B, info1, 0x1003), &context(), 7).unwrap();
        let io = message.payload_as::<HvX64IoPortInterceptMessage>();
        check_header(&io.header, HvInterceptAccessType::READ, 3);
        assert_eq!(io.port_number, 0x1F0);
        assert_eq!(io.access_info.access_size(), 2);
        assert!(io.access_info.string_op() && io.access_info.rep_prefix());

        // `in eax, dx`: ED, one byte.
        let info1 = (0xCFC << IOIO_PORT_SHIFT) | IOIO_SIZE32 | IOIO_TYPE_IN;
        let message = intercept_message(&vmcb(0x7B, info1, 0x1001), &context(), 7).unwrap();
        let io = message.payload_as::<HvX64IoPortInterceptMessage>();
        check_header(&io.header, HvInterceptAccessType::READ, 1);
        assert_eq!(io.port_number, 0xCFC);
        assert_eq!(io.access_info.into_bits(), 4);
    }

    #[test]
    fn io_without_a_next_rip_has_no_length() {
        let info1 = (0x80 << IOIO_PORT_SHIFT) | IOIO_SIZE8;
        let message = intercept_message(&vmcb(0x7B, info1, 0), &context(), 7).unwrap();
        let io = message.payload_as::<HvX64IoPortInterceptMessage>();
        assert_eq!(io.header.instruction_len(), 0);
    }

    #[test]
    fn nested_page_fault_is_an_unmapped_gpa() {
        let cases = [
            (
                NPF_FINAL_TRANSLATION | NPF_USER | NPF_WRITE,
                HvInterceptAccessType::WRITE,
            ),
            (
                NPF_FINAL_TRANSLATION | NPF_USER,
                HvInterceptAccessType::READ,
            ),
            (
                NPF_FINAL_TRANSLATION | NPF_USER | NPF_EXECUTE,
                HvInterceptAccessType::EXECUTE,
            ),
        ];
        for (info1, access) in cases {
            let vmcb = vmcb(0x400, info1, 0xFEC0_0010);
            let message = intercept_message(&vmcb, &context(), 7).unwrap();
            assert_eq!(message.header.typ, HvMessageType::HvMessageTypeUnmappedGpa);
            assert_eq!(usize::from(message.header.len), 80);
            let memory = message.payload_as::<HvX64MemoryInterceptMessage>();
            check_header(&memory.header, access, 0);
            assert_eq!(memory.guest_physical_address, 0xFEC0_0010);
            assert!(!memory.memory_access_info.gva_valid());
            assert_eq!(memory.instruction_byte_count, 0);
            assert_eq!(&message.payload()[56..64], &0xFEC0_0010u64.to_le_bytes());
        }
    }

    #[test]
    fn nested_page_fault_carries_fetched_bytes() {
        let mut vmcb = vmcb(0x400, NPF_FINAL_TRANSLATION | NPF_WRITE, 0xFEE0_0300);
        vmcb.control.insn_len = 3;
        vmcb.control.insn_bytes[..3].copy_from_slice(&[0x89, 0x07, 0x90]);
        let message = intercept_message(&vmcb, &context(), 7).unwrap();
        let memory = message.payload_as::<HvX64MemoryInterceptMessage>();
        assert_eq!(memory.instruction_byte_count, 3);
        assert_eq!(&memory.instruction_bytes[..4], &[0x89, 0x07, 0x90, 0]);
    }

    #[test]
    fn rdmsr_and_wrmsr() {
        let message = intercept_message(&vmcb(0x7C, 0, 0), &context(), 7).unwrap();
        assert_eq!(message.header.typ, HvMessageType::HvMessageTypeMsrIntercept);
        assert_eq!(usize::from(message.header.len), 64);
        let msr = message.payload_as::<HvX64MsrInterceptMessage>();
        check_header(&msr.header, HvInterceptAccessType::READ, 2);
        assert_eq!(msr.msr_number, 0xC000_0080);
        assert_eq!((msr.rdx, msr.rax), (0xDD, 0xAB));

        let message = intercept_message(&vmcb(0x7C, MSR_WRITE, 0), &context(), 7).unwrap();
        let msr = message.payload_as::<HvX64MsrInterceptMessage>();
        check_header(&msr.header, HvInterceptAccessType::WRITE, 2);
        assert_eq!(&message.payload()[40..44], &0xC000_0080u32.to_le_bytes());
        assert_eq!(&message.payload()[48..56], &0xDDu64.to_le_bytes());
        assert_eq!(&message.payload()[56..64], &0xABu64.to_le_bytes());
    }

    #[test]
    fn halt_and_shutdown() {
        let message = intercept_message(&vmcb(0x78, 0, 0), &context(), 7).unwrap();
        assert_eq!(message.header.typ, HvMessageType::HvMessageTypeX64Halt);
        assert_eq!(usize::from(message.header.len), 40);
        check_header(
            &message.payload_as::<HvX64HaltMessage>().header,
            HvInterceptAccessType::READ,
            1,
        );

        let message = intercept_message(&vmcb(0x7F, 0, 0), &context(), 7).unwrap();
        assert_eq!(
            message.header.typ,
            HvMessageType::HvMessageTypeUnrecoverableException
        );
        assert_eq!(usize::from(message.header.len), 40);
        check_header(
            &message
                .payload_as::<HvX64UnrecoverableExceptionMessage>()
                .header,
            HvInterceptAccessType::READ,
            0,
        );
    }

    #[test]
    fn execution_state_reports_cpl_mode_and_pending_events() {
        let mut vmcb = vmcb(0x78, 0, 0);
        vmcb.save.cpl = 3;
        vmcb.save.efer = EFER_SVME;
        vmcb.save.cr0 = 0x11;
        vmcb.control.exit_int_info = event::VALID | 0x30;
        let message = intercept_message(&vmcb, &context(), 1).unwrap();
        let state = message
            .payload_as::<HvX64HaltMessage>()
            .header
            .execution_state;
        assert_eq!(state.cpl(), 3);
        assert!(state.cr0_pe());
        assert!(!state.efer_lma());
        assert!(state.interruption_pending());
        assert_eq!(state.into_bits(), 0x3 | 0x4 | 0x40);
    }

    #[test]
    fn exits_without_messages() {
        for code in [0x60, 0x61, 0x64, 0x77] {
            assert!(handled_by_sidecar(ExitCode(code)), "{code:#x}");
            assert!(intercept_message(&vmcb(code, 0, 0), &context(), 7).is_none());
        }
        for code in [
            VMEXIT_CPUID,
            VMEXIT_VMRUN,
            0x4E,
            VMEXIT_INVALID,
            0xFFFF_FFFF,
        ] {
            assert!(!handled_by_sidecar(ExitCode::from_raw(code)), "{code:#x}");
            assert!(intercept_message(&vmcb(code, 0, 0), &context(), 7).is_none());
        }
    }

    #[test]
    fn message_is_a_whole_hv_message() {
        let message = intercept_message(&vmcb(0x78, 0, 0), &context(), 7).unwrap();
        let bytes = message.as_bytes();
        assert_eq!(bytes.len(), 256);
        assert_eq!(&bytes[0..4], &0x8001_0007u32.to_le_bytes());
        assert_eq!(bytes[4], 40);
        assert!(bytes[16 + 40..].iter().all(|&b| b == 0));
    }
}
