//! Decoding, validating and executing the commands of a command page, as
//! pure logic: the sidecar CPU runs exactly this code, and the host tests
//! and fuzzes it.
//!
//! The answers are the ones OpenHCL's `sidecar_client` reads: `has_error`
//! first, then the Hyper-V status in the response. Every invalid page ends
//! with `has_error = 1` and a readable message, and changes nothing else: a
//! SET_VP_REGISTERS with one bad name sets no register at all (its status is
//! INVALID_PARAMETER too, for a client that reads only the status). What is
//! not an error: NONE, a no-op that succeeds (the client's liveness test),
//! and a TRANSLATE_GVA whose walk fails, which answers the result code and
//! the guest's page fault in the response. Only RUN_VP needs the CPU itself;
//! [`execute`] hands it back as [`Outcome::RunVp`].

use x86_64::structures::idt::{ExceptionVector, PageFaultErrorCode};

use crate::abi::{
    CommandPage, HvInputVtl, HvStatus, HvX64PendingEvent, HvX64PendingExceptionEvent,
    HvX64RegisterName, SidecarCommand, TranslateGvaRequest, TranslateGvaResponse,
    TranslateGvaResult, TranslateGvaResultCode, HV_X64_PENDING_EVENT_EXCEPTION,
};
use crate::layout::PAGE_SIZE;
use crate::vp::registers::SoftVp;
use crate::vp::{translate_gva, GuestMemory, PagingState, TranslateError, VpRegisters, VpState};

/// What the caller has left to do after [`execute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The command is complete (successfully or with `has_error` set).
    Done,
    /// The command is RUN_VP, which the caller runs.
    RunVp,
}

/// Takes the command out of `page` (leaving `NONE` and no error) and runs
/// it against the VP (`page.cpu_context` and `state`) and the guest's
/// `memory`.
pub fn execute(
    page: &mut CommandPage,
    state: &mut VpState,
    memory: &mut impl GuestMemory,
) -> Outcome {
    let command = core::mem::replace(&mut page.command, SidecarCommand::NONE);
    page.has_error = 0;
    page.error.clear();
    // The request and the VP's general registers share the page: work on a
    // copy of the registers so that both can be borrowed.
    let mut context = page.cpu_context;
    let outcome = execute_on(
        page,
        command,
        &mut SoftVp {
            context: &mut context,
            state,
        },
        memory,
    );
    page.cpu_context = context;
    outcome
}

/// Runs `command` with its request in `page` against `vp`.
pub fn execute_on(
    page: &mut CommandPage,
    command: SidecarCommand,
    vp: &mut impl VpRegisters,
    memory: &mut impl GuestMemory,
) -> Outcome {
    match command {
        SidecarCommand::GET_VP_REGISTERS => get_registers(page, vp),
        SidecarCommand::SET_VP_REGISTERS => set_registers(page, vp),
        SidecarCommand::TRANSLATE_GVA => translate(page, vp, memory),
        SidecarCommand::RUN_VP => return Outcome::RunVp,
        // A no-op: `sidecar_client::test()` sends it to see the CPU answer.
        SidecarCommand::NONE => {}
        unknown => page.set_error_fmt(format_args!("unknown command {}", unknown.0)),
    }
    Outcome::Done
}

/// Whether `vtl` names VTL 0 (the current one, or VTL 0 explicitly) with no
/// reserved bits set: sidecar runs guests in VTL 0 only.
fn vtl_supported(vtl: HvInputVtl) -> bool {
    vtl.reserved() == 0 && matches!(vtl.target_vtl(), None | Some(0))
}

/// Sets the error for an unsupported VTL; `false` if it is one.
fn check_vtl(page: &mut CommandPage, vtl: HvInputVtl) -> bool {
    match vtl_supported(vtl) {
        true => true,
        false => {
            page.set_error_fmt(format_args!(
                "unsupported target VTL {:#x} (sidecar runs VTL 0 only)",
                vtl.into_bits()
            ));
            false
        }
    }
}

fn get_registers(page: &mut CommandPage, vp: &impl VpRegisters) {
    let (header, registers) = match page.registers_mut() {
        Ok(request) => request,
        Err(err) => return page.set_error_fmt(format_args!("{err}")),
    };
    let vtl = header.target_vtl;
    let mut unknown = None;
    for register in registers.iter_mut() {
        match vp.get(register.name) {
            Ok(value) => register.value = value,
            Err(_) => {
                unknown = Some(register.name);
                break;
            }
        }
    }
    header.status = if unknown.is_some() || !vtl_supported(vtl) {
        HvStatus::INVALID_PARAMETER
    } else {
        HvStatus::SUCCESS
    };
    if !check_vtl(page, vtl) {
        return;
    }
    if let Some(name) = unknown {
        page.set_error_fmt(format_args!("unknown register name {:#x}", name.0));
    }
}

fn set_registers(page: &mut CommandPage, vp: &mut impl VpRegisters) {
    let (header, registers) = match page.registers_mut() {
        Ok(request) => request,
        Err(err) => return page.set_error_fmt(format_args!("{err}")),
    };
    let vtl = header.target_vtl;
    // Validate every name first, so that a bad request changes nothing.
    let unknown = registers
        .iter()
        .map(|r| r.name)
        .find(|&name| vp.get(name).is_err());
    let ok = unknown.is_none() && vtl_supported(vtl);
    if ok {
        for register in registers.iter() {
            // Every name was just checked, so `set` cannot fail.
            let _ = vp.set(register.name, register.value);
        }
    }
    header.status = if ok {
        HvStatus::SUCCESS
    } else {
        HvStatus::INVALID_PARAMETER
    };
    if !check_vtl(page, vtl) {
        return;
    }
    if let Some(name) = unknown {
        page.set_error_fmt(format_args!(
            "unknown register name {:#x}: no register was set",
            name.0
        ));
    }
}

fn paging_state(vp: &impl VpRegisters) -> PagingState {
    let read = |name| vp.get(name).map_or(0, |value| value.as_u64());
    PagingState::from_raw(
        read(HvX64RegisterName::Cr0),
        read(HvX64RegisterName::Cr3),
        read(HvX64RegisterName::Cr4),
        read(HvX64RegisterName::Efer),
    )
}

/// TRANSLATE_GVA. Every field of the response is written: a walk that
/// fails is a result (its code, and the #PF the guest's own access would
/// raise in `event_info`), a GVN that names no canonical address fails the
/// "hypercall" (INVALID_PARAMETER, output zero), and only a paging mode
/// sidecar cannot walk is an error.
fn translate(page: &mut CommandPage, vp: &impl VpRegisters, memory: &mut impl GuestMemory) {
    let request: TranslateGvaRequest = *page.request();
    let gva = request.gvn.wrapping_mul(PAGE_SIZE);
    let result = translate_gva(
        &paging_state(vp),
        memory,
        request.gvn,
        request.control_flags,
    );
    let mut response = TranslateGvaResponse::default();
    let output = &mut response.output;
    match result {
        Ok(translation) => {
            output.translation_result.result =
                TranslateGvaResult::with_code(TranslateGvaResultCode::SUCCESS);
            output.gpa_page = translation.gpa_page;
        }
        Err(TranslateError::Walk(failure)) => {
            output.translation_result.result = TranslateGvaResult::with_code(failure.code);
            if let Some(code) = failure.page_fault {
                output.translation_result.event_info = page_fault_event(code, gva);
            }
        }
        Err(TranslateError::NotCanonical) => response.status = HvStatus::INVALID_PARAMETER,
        Err(err @ TranslateError::UnsupportedMode) => {
            return page.set_error_fmt(format_args!("translating GVA {gva:#x}: {err}"));
        }
    }
    *page.request_mut() = response;
}

/// The pending #PF for an access to `gva` that faulted with `code`.
fn page_fault_event(code: PageFaultErrorCode, gva: u64) -> HvX64PendingEvent {
    HvX64PendingEvent::exception(
        HvX64PendingExceptionEvent::new()
            .with_event_pending(true)
            .with_event_type(HV_X64_PENDING_EVENT_EXCEPTION)
            .with_deliver_error_code(true)
            .with_vector(ExceptionVector::Page as u16)
            // The error code's defined bits are the low 16.
            .with_error_code(code.bits() as u32)
            .with_exception_parameter(gva),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{HvRegisterAssoc, HvX64RegisterName as Name, TranslateGvaControlFlagsX64};
    use std::boxed::Box;

    struct NoMemory;

    impl GuestMemory for NoMemory {
        fn read_u64(&self, gpa: u64) -> Option<u64> {
            (gpa < 0x10_0000).then_some(0)
        }
        fn set_bits_if_unchanged(&mut self, _gpa: u64, _seen: u64, _bits: u64) -> Option<bool> {
            None
        }
    }

    struct Fixture {
        page: Box<CommandPage>,
        state: VpState,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                page: Box::default(),
                state: VpState::default(),
            }
        }

        fn run(&mut self) -> Outcome {
            let outcome = execute(&mut self.page, &mut self.state, &mut NoMemory);
            assert_eq!(
                self.page.command,
                SidecarCommand::NONE,
                "the command is taken"
            );
            outcome
        }

        fn request(
            &mut self,
            command: SidecarCommand,
            vtl: HvInputVtl,
            registers: &[HvRegisterAssoc],
        ) {
            self.page
                .set_registers_request(command, vtl, registers)
                .unwrap();
        }
    }

    #[test]
    fn set_then_get() {
        let mut f = Fixture::new();
        let set = [
            HvRegisterAssoc::new(Name::Rip, 0x1234u64),
            HvRegisterAssoc::new(Name::R9, 0x99u64),
        ];
        f.request(
            SidecarCommand::SET_VP_REGISTERS,
            HvInputVtl::CURRENT_VTL,
            &set,
        );
        assert_eq!(f.run(), Outcome::Done);
        assert_eq!(f.page.error(), None);
        assert_eq!((f.state.rip, f.page.cpu_context.gps[9]), (0x1234, 0x99));

        let get = [
            HvRegisterAssoc::new(Name::R9, 0u64),
            HvRegisterAssoc::new(Name::Rip, 0u64),
        ];
        f.request(
            SidecarCommand::GET_VP_REGISTERS,
            HvInputVtl::target(0),
            &get,
        );
        f.run();
        let (header, registers) = f.page.registers().unwrap();
        assert_eq!(header.status, HvStatus::SUCCESS);
        assert_eq!(registers[0].value.as_u64(), 0x99);
        assert_eq!(registers[1].value.as_u64(), 0x1234);
    }

    #[test]
    fn bad_set_changes_nothing() {
        let mut f = Fixture::new();
        let set = [
            HvRegisterAssoc::new(Name::Rip, 0x1234u64),
            HvRegisterAssoc::new(Name(0xDEAD), 1u64),
        ];
        f.request(
            SidecarCommand::SET_VP_REGISTERS,
            HvInputVtl::CURRENT_VTL,
            &set,
        );
        f.run();
        assert_eq!(
            f.page.error(),
            Some("unknown register name 0xdead: no register was set")
        );
        assert_eq!(f.state.rip, 0);
    }

    #[test]
    fn errors_are_readable() {
        let mut f = Fixture::new();
        f.page.command = SidecarCommand(77);
        f.run();
        assert_eq!(f.page.error(), Some("unknown command 77"));

        f.request(
            SidecarCommand::GET_VP_REGISTERS,
            HvInputVtl::target(2),
            &[HvRegisterAssoc::new(Name::Rax, 0u64)],
        );
        f.run();
        assert_eq!(
            f.page.error(),
            Some("unsupported target VTL 0x12 (sidecar runs VTL 0 only)")
        );

        f.page.command = SidecarCommand::GET_VP_REGISTERS;
        f.page
            .request_mut::<crate::abi::GetSetVpRegisterRequest>()
            .count = 40;
        f.run();
        assert!(
            f.page.error().unwrap().contains("40"),
            "{:?}",
            f.page.error()
        );
    }

    #[test]
    fn translate_answers_a_failed_walk_with_a_result() {
        let mut f = Fixture::new();
        f.page.command = SidecarCommand::TRANSLATE_GVA;
        *f.page.request_mut() = TranslateGvaRequest {
            gvn: 0x20,
            control_flags: TranslateGvaControlFlagsX64::VALIDATE_READ,
        };
        f.run();
        assert_eq!(f.page.error(), None);
        let response: TranslateGvaResponse = *f.page.request();
        assert_eq!(response.output.gpa_page, 0x20);

        // Paging off, the GPA outside memory: a result, with no event (the
        // guest's own access would not fault).
        f.page.command = SidecarCommand::TRANSLATE_GVA;
        *f.page.request_mut() = TranslateGvaRequest {
            gvn: 0x200,
            control_flags: TranslateGvaControlFlagsX64::VALIDATE_READ,
        };
        f.run();
        assert_eq!(f.page.error(), None);
        let response: TranslateGvaResponse = *f.page.request();
        assert_eq!(response.status, HvStatus::SUCCESS);
        assert_eq!(
            response.output.translation_result.result.result_code(),
            TranslateGvaResultCode::GPA_UNMAPPED
        );
        assert_eq!(
            response.output.translation_result.event_info.as_exception(),
            None
        );

        // Paging outside long mode: sidecar's limit, an error.
        f.state.cr0 = 0x8000_0011;
        f.page.command = SidecarCommand::TRANSLATE_GVA;
        *f.page.request_mut() = TranslateGvaRequest {
            gvn: 0x200,
            control_flags: TranslateGvaControlFlagsX64::VALIDATE_READ,
        };
        f.run();
        assert_eq!(
            f.page.error(),
            Some("translating GVA 0x200000: only long-mode paging is supported")
        );
    }

    #[test]
    fn none_is_a_no_op() {
        let mut f = Fixture::new();
        f.page.has_error = 1;
        f.page.command = SidecarCommand::NONE;
        assert_eq!(f.run(), Outcome::Done);
        assert_eq!(f.page.error(), None);
    }

    #[test]
    fn run_vp_is_handed_back() {
        let mut f = Fixture::new();
        f.page.command = SidecarCommand::RUN_VP;
        assert_eq!(f.run(), Outcome::RunVp);
    }
}
