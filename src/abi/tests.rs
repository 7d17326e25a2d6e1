//! Host tests for the page layouts and their helpers.

use core::fmt::Write as _;
use core::sync::atomic::Ordering;
use std::boxed::Box;
use std::format;
use std::string::{String, ToString};

use super::*;
use zerocopy::{FromBytes, IntoBytes};

#[test]
fn status_and_command_names() {
    assert_eq!(format!("{:?}", CpuStatus::REMOVED), "REMOVED");
    assert_eq!(format!("{:?}", CpuStatus::IDLE), "IDLE");
    assert_eq!(format!("{:?}", CpuStatus::RUN), "RUN");
    assert_eq!(format!("{:?}", CpuStatus::STOP), "STOP");
    assert_eq!(format!("{:?}", CpuStatus::REMOVE), "REMOVE");
    assert_eq!(format!("{:?}", CpuStatus(9)), "CpuStatus(0x9)");
    assert_eq!(CpuStatus(9).name(), None);
    assert_eq!(CpuStatus(4).name(), Some("REMOVE"));

    assert_eq!(format!("{:?}", SidecarCommand::NONE), "NONE");
    assert_eq!(format!("{:?}", SidecarCommand::RUN_VP), "RUN_VP");
    assert_eq!(
        format!("{:?}", SidecarCommand::GET_VP_REGISTERS),
        "GET_VP_REGISTERS"
    );
    assert_eq!(
        format!("{:?}", SidecarCommand::SET_VP_REGISTERS),
        "SET_VP_REGISTERS"
    );
    assert_eq!(
        format!("{:?}", SidecarCommand::TRANSLATE_GVA),
        "TRANSLATE_GVA"
    );
    assert_eq!(
        format!("{:?}", SidecarCommand(0xDEAD)),
        "SidecarCommand(0xdead)"
    );
    assert_eq!(CpuStatus::default(), CpuStatus::REMOVED);
    assert_eq!(SidecarCommand::default(), SidecarCommand::NONE);
}

#[test]
fn reference_values() {
    assert_eq!(
        [
            CpuStatus::REMOVED.0,
            CpuStatus::IDLE.0,
            CpuStatus::RUN.0,
            CpuStatus::STOP.0,
            CpuStatus::REMOVE.0
        ],
        [0, 1, 2, 3, 4]
    );
    assert_eq!(SidecarCommand::TRANSLATE_GVA.0, 4);
    assert_eq!(HvX64RegisterName::Rax.0, 0x20000);
    assert_eq!(HvX64RegisterName::R15.0, 0x2000F);
    assert_eq!(HvX64RegisterName::Rflags.0, 0x20011);
    assert_eq!(HvX64RegisterName::Xfem.0, 0x40005);
    assert_eq!(HvX64RegisterName::Dr7.0, 0x50005);
    assert_eq!(HvX64RegisterName::Tr.0, 0x60007);
    assert_eq!(HvX64RegisterName::Gdtr.0, 0x70001);
    assert_eq!(HvX64RegisterName::Sfmask.0, 0x8000B);
    assert_eq!(HvX64RegisterName::PendingEvent0.0, 0x10004);
    assert_eq!(
        format!("{:?}", HvX64RegisterName::KernelGsBase),
        "KernelGsBase"
    );
    assert_eq!(
        format!("{:?}", HvX64RegisterName(0x1234)),
        "HvX64RegisterName(0x1234)"
    );
    assert_eq!(
        HvMessageType::HvMessageTypeX64IoPortIntercept.0,
        0x8001_0000
    );
    assert_eq!(HvMessageType::HvMessageTypeX64Halt.0, 0x8001_0007);
    assert_eq!(
        HvMessageType::HvMessageTypeUnrecoverableException.0,
        0x8000_0021
    );
    assert_eq!(TranslateGvaControlFlagsX64::USER_ACCESS.0, 0x80);
    assert_eq!(TranslateGvaResultCode::GPA_UNMAPPED.0, 4);
    assert_eq!(MAX_GET_SET_VP_REGISTERS, 31);
    assert_eq!(CpuContextX64::CR2, 4);
}

#[test]
fn control_page_init_and_status() {
    let page = Box::new(ControlPage::new());
    page.init_node(2, 64, 4, 0xF0).unwrap();
    assert_eq!(page.index.load(Ordering::Relaxed), 2);
    assert_eq!(page.base_cpu.load(Ordering::Relaxed), 64);
    assert_eq!(page.cpu_count.load(Ordering::Relaxed), 4);
    assert_eq!(page.request_vector.load(Ordering::Relaxed), 0xF0);
    let statuses: std::vec::Vec<CpuStatus> = (0..6)
        .map(|i| page.status(i).unwrap().load(Ordering::Acquire))
        .collect();
    assert_eq!(
        statuses,
        [
            CpuStatus::REMOVED,
            CpuStatus::RUN,
            CpuStatus::RUN,
            CpuStatus::RUN,
            CpuStatus::REMOVED,
            CpuStatus::REMOVED
        ]
    );
    assert!(page.status(MAX_CPUS_PER_NODE - 1).is_some());
    assert!(page.status(MAX_CPUS_PER_NODE).is_none());

    // A CPU comes up; the driver submits, stops, removes.
    let cpu1 = page.status(1).unwrap();
    assert_eq!(
        cpu1.swap(CpuStatus::IDLE, Ordering::Release),
        CpuStatus::RUN
    );
    cpu1.store(CpuStatus::RUN, Ordering::Release);
    assert_eq!(
        cpu1.compare_exchange(
            CpuStatus::RUN,
            CpuStatus::STOP,
            Ordering::AcqRel,
            Ordering::Acquire
        ),
        Ok(CpuStatus::RUN)
    );
    assert_eq!(
        cpu1.compare_exchange(
            CpuStatus::RUN,
            CpuStatus::STOP,
            Ordering::AcqRel,
            Ordering::Acquire
        ),
        Err(CpuStatus::STOP)
    );
    assert_eq!(format!("{cpu1:?}"), "STOP");
    cpu1.as_atomic().store(77, Ordering::Relaxed);
    assert_eq!(cpu1.load(Ordering::Relaxed), CpuStatus(77));

    assert!(!page.take_attention());
    page.raise_attention();
    assert!(page.take_attention());
    assert!(!page.take_attention());

    assert_eq!(
        page.init_node(0, 0, 4033, 0xF0),
        Err(AbiError::NodeTooLarge { cpu_count: 4033 })
    );
    assert!(page.init_node(0, 0, 4032, 0xF0).is_ok());
    assert_eq!(
        page.status(4031).unwrap().load(Ordering::Relaxed),
        CpuStatus::RUN
    );
}

#[test]
fn command_error_truncation() {
    let mut error = CommandError::default();
    assert_eq!(error.as_str(), "");
    error.set("vp 3: hypercall failed");
    assert_eq!(error.as_str(), "vp 3: hypercall failed");
    assert_eq!(error.len, 22);

    // 300 ASCII bytes keep 255.
    let long: String = "x".repeat(300);
    error.set(&long);
    assert_eq!(error.len, 255);
    assert_eq!(error.as_str(), &long[..255]);

    // A 3-byte character straddling byte 255 is dropped whole.
    let mut text: String = "a".repeat(253);
    text.push('€');
    error.set(&text);
    assert_eq!(error.len, 253);
    assert_eq!(error.as_str(), &text[..253]);
    // A 2-byte character that ends exactly at 255 is kept.
    let mut text: String = "a".repeat(253);
    text.push('é');
    error.set(&text);
    assert_eq!(error.len, 255);
    assert_eq!(error.as_str(), text);

    // Formatted appends truncate too, never fail.
    error.clear();
    for i in 0..100 {
        write!(error, "{i},").unwrap();
    }
    assert_eq!(error.len, 255);
    assert!(error.as_str().starts_with("0,1,2,"));

    // Whatever the other side wrote: an invalid byte and a too-large length.
    error.set("ok\u{e9}");
    error.buf[3] = 0xFF;
    assert_eq!(error.as_str(), "ok");
    error.len = 255;
    error.buf.fill(b'z');
    assert_eq!(error.as_str().len(), 255);
    assert_eq!(error.to_string().len(), 255);
}

#[test]
fn command_page_errors() {
    let mut page = Box::<CommandPage>::default();
    assert_eq!(page.error(), None);
    page.set_error("unknown command SidecarCommand(0x9)");
    assert_eq!(page.has_error, 1);
    assert_eq!(page.error(), Some("unknown command SidecarCommand(0x9)"));
    page.set_error_fmt(format_args!("unknown command {:?}", SidecarCommand(7)));
    assert_eq!(page.error(), Some("unknown command SidecarCommand(0x7)"));
    assert_eq!(
        format!("{:?}", page.error),
        "CommandError(\"unknown command SidecarCommand(0x7)\")"
    );
}

#[test]
fn register_request_round_trip() {
    let mut page = Box::<CommandPage>::default();
    let segment = HvX64SegmentRegister {
        base: 0x1000,
        limit: 0xFFFF_FFFF,
        selector: 0x10,
        attributes: 0xA09B,
    };
    let table = HvX64TableRegister {
        pad: [0; 3],
        limit: 0x7F,
        base: 0xFFFF_8000_0000_1000,
    };
    let registers = [
        HvRegisterAssoc::new(HvX64RegisterName::Rip, 0xFFFF_FFFF_8100_0000u64),
        HvRegisterAssoc::new(HvX64RegisterName::Cs, segment),
        HvRegisterAssoc::new(HvX64RegisterName::Gdtr, table),
    ];
    page.set_registers_request(
        SidecarCommand::SET_VP_REGISTERS,
        HvInputVtl::target(2),
        &registers,
    )
    .unwrap();
    assert_eq!(page.command, SidecarCommand::SET_VP_REGISTERS);

    // The bytes land where the reference says.
    let bytes = page.request_data.as_bytes();
    assert_eq!(&bytes[0..2], &3u16.to_le_bytes());
    assert_eq!(bytes[2], 0x12);
    assert_eq!(&bytes[16..20], &0x2_0010u32.to_le_bytes());
    assert_eq!(&bytes[32..40], &0xFFFF_FFFF_8100_0000u64.to_le_bytes());
    assert_eq!(&bytes[48..52], &0x6_0001u32.to_le_bytes());
    assert_eq!(&bytes[64..72], &0x1000u64.to_le_bytes());
    assert_eq!(&bytes[76..78], &0x10u16.to_le_bytes());
    assert_eq!(&bytes[102..104], &0x7Fu16.to_le_bytes());

    // The sidecar side reads them back and fills in results.
    let (header, regs) = page.registers().unwrap();
    assert_eq!(header.count, 3);
    assert_eq!(header.target_vtl.target_vtl(), Some(2));
    assert_eq!(regs, registers);
    assert_eq!(regs[1].value.as_segment(), segment);
    assert_eq!(regs[2].value.as_table(), table);
    let (header, regs) = page.registers_mut().unwrap();
    header.status = HvStatus::INVALID_REGISTER_VALUE;
    regs[0].value = 5u64.into();
    let (header, regs) = page.registers().unwrap();
    assert_eq!(format!("{:?}", header.status), "INVALID_REGISTER_VALUE");
    assert_eq!(regs[0].value.as_u64(), 5);

    // The most that fit, and one more.
    let full = [HvRegisterAssoc::new(HvX64RegisterName::Rax, 0u64); MAX_GET_SET_VP_REGISTERS];
    page.set_registers_request(
        SidecarCommand::GET_VP_REGISTERS,
        HvInputVtl::CURRENT_VTL,
        &full,
    )
    .unwrap();
    assert_eq!(page.registers().unwrap().1.len(), 31);
    let too_many = [HvRegisterAssoc::default(); MAX_GET_SET_VP_REGISTERS + 1];
    let err = page
        .set_registers_request(
            SidecarCommand::GET_VP_REGISTERS,
            HvInputVtl::CURRENT_VTL,
            &too_many,
        )
        .unwrap_err();
    assert_eq!(err, AbiError::TooManyRegisters { count: 32 });
    assert_eq!(
        err.to_string(),
        "register request lists 32 registers, at most 31 fit"
    );

    // A hostile count in the page is refused, not trusted.
    page.request_mut::<GetSetVpRegisterRequest>().count = 0xFFFF;
    assert_eq!(
        page.registers().unwrap_err(),
        AbiError::TooManyRegisters { count: 0xFFFF }
    );
    assert!(page.registers_mut().is_err());
}

#[test]
fn translate_gva_round_trip() {
    let mut page = Box::<CommandPage>::default();
    *page.request_mut() = TranslateGvaRequest {
        gvn: 0x000F_FFF8_0000_0123,
        control_flags: TranslateGvaControlFlagsX64::VALIDATE_READ
            | TranslateGvaControlFlagsX64::VALIDATE_WRITE
            | TranslateGvaControlFlagsX64::USER_ACCESS,
    };
    let request = *page.request::<TranslateGvaRequest>();
    assert!(request
        .control_flags
        .contains(TranslateGvaControlFlagsX64::VALIDATE_WRITE));
    assert!(!request
        .control_flags
        .contains(TranslateGvaControlFlagsX64::VALIDATE_EXECUTE));
    assert_eq!(&page.request_data.as_bytes()[8..16], &0x83u64.to_le_bytes());

    let response = page.request_mut::<TranslateGvaResponse>();
    response.status = HvStatus::SUCCESS;
    response.output.translation_result.result = TranslateGvaResult::from_bits(
        u64::from(TranslateGvaResultCode::PAGE_NOT_PRESENT.0) | 6 << 32 | 1 << 40,
    );
    response.output.gpa_page = 0xABCDE;
    let bytes = page.request_data.as_bytes();
    assert_eq!(&bytes[16..20], &1u32.to_le_bytes());
    assert_eq!(&bytes[64..72], &0xABCDEu64.to_le_bytes());
    let result = page
        .request::<TranslateGvaResponse>()
        .output
        .translation_result
        .result;
    assert_eq!(
        result.result_code(),
        TranslateGvaResultCode::PAGE_NOT_PRESENT
    );
    assert_eq!(result.cache_type(), 6);
    assert!(result.overlay_page());
    assert_eq!(format!("{:?}", result.result_code()), "PAGE_NOT_PRESENT");
}

#[test]
fn run_vp_response_is_byte_zero() {
    let mut page = Box::<CommandPage>::default();
    page.request_mut::<RunVpResponse>().intercept = 1;
    assert_eq!(page.request_data[0], 1);
    assert_eq!(page.request::<RunVpResponse>().intercept, 1);
}

#[test]
fn message_round_trip() {
    let io = HvX64IoPortInterceptMessage {
        header: HvX64InterceptMessageHeader {
            vp_index: 7,
            instruction_length_and_cr8: HvX64InstructionLengthAndCr8::from_bits(0x21),
            intercept_access_type: HvInterceptAccessType::WRITE,
            // CR0.PE (bit 2) and EFER.LMA (bit 4).
            execution_state: HvX64VpExecutionState::from_bits(0x4 | 0x10),
            cs_segment: HvX64SegmentRegister {
                base: 0,
                limit: 0xFFFF_FFFF,
                selector: 8,
                attributes: 0xA09B,
            },
            rip: 0x1000,
            rflags: 0x2,
        },
        port_number: 0x3F8,
        // One byte (bits 0–2), REP (bit 4).
        access_info: HvX64IoPortAccessInfo::from_bits(0x11),
        instruction_byte_count: 1,
        rax: u64::from(b'A'),
        rcx: 3,
        ..Default::default()
    };
    let message = HvMessage::new(HvMessageType::HvMessageTypeX64IoPortIntercept, 0, &io);
    assert_eq!(message.header.len, 128);
    assert_eq!(message.payload().len(), 128);
    assert_eq!(
        format!("{:?}", message.header.typ),
        "HvMessageTypeX64IoPortIntercept"
    );
    let back = message.payload_as::<HvX64IoPortInterceptMessage>();
    assert_eq!(*back, io);
    assert_eq!(back.header.instruction_len(), 1);
    assert_eq!(back.header.cr8(), 2);
    assert_eq!(back.header.execution_state.cpl(), 0);
    assert!(back.header.execution_state.efer_lma());
    assert!(back.header.execution_state.cr0_pe());
    assert!(!back.header.execution_state.interruption_pending());
    assert_eq!(back.access_info.access_size(), 1);
    assert!(back.access_info.rep_prefix() && !back.access_info.string_op());

    // Byte positions from the reference, relative to the message.
    let bytes = message.as_bytes();
    assert_eq!(&bytes[0..4], &0x8001_0000u32.to_le_bytes());
    assert_eq!(bytes[4], 128);
    assert_eq!(&bytes[16..20], &7u32.to_le_bytes());
    assert_eq!(bytes[16 + 5], 1);
    assert_eq!(&bytes[16 + 40..16 + 42], &0x3F8u16.to_le_bytes());
    assert_eq!(bytes[16 + 42], 0x11);
    assert_eq!(&bytes[16 + 48..16 + 56], &0x41u64.to_le_bytes());
    assert_eq!(&bytes[16 + 104..16 + 112], &3u64.to_le_bytes());

    // Through raw bytes and back.
    let (copy, _) = HvMessage::read_from_prefix(bytes).unwrap();
    assert_eq!(copy, message);
    assert!(HvMessage::read_from_prefix(&bytes[..255]).is_err());

    let mut message = HvMessage::default();
    message.header.typ = HvMessageType::HvMessageTypeMsrIntercept;
    let msr = message.payload_as_mut::<HvX64MsrInterceptMessage>();
    msr.msr_number = 0xC000_0080;
    msr.rax = 0xD01;
    assert_eq!(
        &message.payload_buffer[40..44],
        &0xC000_0080u32.to_le_bytes()
    );
    assert_eq!(&message.payload_buffer[56..64], &0xD01u64.to_le_bytes());

    let mut message = HvMessage::default();
    let mem = message.payload_as_mut::<HvX64MemoryInterceptMessage>();
    mem.guest_physical_address = 0xFEE0_0000;
    mem.memory_access_info = HvX64MemoryAccessInfo::from_bits(0x1); // GVA valid
    assert_eq!(
        &message.payload_buffer[56..64],
        &0xFEE0_0000u64.to_le_bytes()
    );
    assert!(message
        .payload_as::<HvX64MemoryInterceptMessage>()
        .memory_access_info
        .gva_valid());
    // A hostile length is clamped.
    message.header.len = 0xFF;
    assert_eq!(message.payload().len(), 240);
}

#[test]
fn register_value_conversions() {
    let segment = HvX64SegmentRegister {
        base: 0x1122_3344_5566_7788,
        limit: 0x99AA_BBCC,
        selector: 0xDDEE,
        attributes: 0xFF00,
    };
    assert_eq!(
        segment.to_u128().to_le_bytes().as_slice(),
        segment.as_bytes()
    );
    assert_eq!(HvX64SegmentRegister::from_u128(segment.to_u128()), segment);
    let table = HvX64TableRegister {
        pad: [1, 2, 3],
        limit: 0x4455,
        base: 0x6677_8899_AABB_CCDD,
    };
    assert_eq!(table.to_u128().to_le_bytes().as_slice(), table.as_bytes());
    assert_eq!(HvX64TableRegister::from_u128(table.to_u128()), table);
    assert_eq!(HvRegisterValue::from(7u64).as_u64(), 7);
    assert_eq!(HvInputVtl::CURRENT_VTL.target_vtl(), None);
    assert_eq!(HvInputVtl::target(0x12).target_vtl(), Some(2));
    assert_eq!(format!("{:?}", HvInputVtl::target(2)), "HvInputVtl(VTL2)");
}

#[test]
fn cpu_context_layout() {
    let mut page = Box::<CommandPage>::default();
    page.cpu_context.gps[CpuContextX64::CR2] = 0xDEAD_B000;
    page.cpu_context.gps[CpuContextX64::R15] = 15;
    page.cpu_context.fx_state.mxcsr = 0x1F80;
    page.cpu_context.fx_state.xmm[15] = [0xAB; 16];
    let bytes = page.as_bytes();
    assert_eq!(&bytes[0x10 + 32..0x10 + 40], &0xDEAD_B000u64.to_le_bytes());
    assert_eq!(&bytes[0x10 + 120..0x10 + 128], &15u64.to_le_bytes());
    assert_eq!(
        &bytes[0x10 + 128 + 24..0x10 + 128 + 28],
        &0x1F80u32.to_le_bytes()
    );
    assert_eq!(bytes[0x10 + 128 + 160 + 15 * 16], 0xAB);

    let mut page = Box::<CommandPage>::default();
    page.as_mut_bytes()[0x610] = 1;
    assert_eq!(page.request::<RunVpResponse>().intercept, 1);
    page.as_mut_bytes()[0] = 4;
    assert_eq!(page.command, SidecarCommand::TRANSLATE_GVA);
}
