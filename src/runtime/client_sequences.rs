//! The command sequences OpenHCL's `sidecar_client` sends, run on the host
//! through both halves sidecar has: the driver's request and response code
//! (`abi::client`, which the main kernel's typed client uses) and the
//! command code a sidecar CPU runs ([`execute`]). Each answer is checked as
//! that client reads it: `has_error` first, then the Hyper-V status, then
//! the values.
//!
//! The sequences: the liveness test (NONE), a register SET and GET of more
//! than 31 registers (sent in chunks), a GET whose status failed, a
//! translation whose walk fails, RUN_VP, and RUN_VP ended by a STOP.

// The failures carry the CPU's error string by value, as `abi::client`'s do.
#![allow(clippy::result_large_err)]

use std::boxed::Box;
use std::collections::HashMap;
use std::vec::Vec;

use super::commands::{execute, Outcome};
use crate::abi::client::{self as requests, CommandFailure, RunVpExit};
use crate::abi::{
    CommandPage, GetSetVpRegisterRequest, HvInputVtl, HvMessage, HvMessageType, HvRegisterAssoc,
    HvStatus, HvX64RegisterName as Name, RunVpResponse, SidecarCommand,
    TranslateGvaControlFlagsX64 as Flags, TranslateGvaResultCode as Code, MAX_GET_SET_VP_REGISTERS,
};
use crate::paging::PageTableFlags as Entry;
use crate::vp::{GuestMemory, VpState};

/// Guest memory of 1 MiB, sparse.
#[derive(Default)]
struct Memory(HashMap<u64, u64>);

impl GuestMemory for Memory {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        (gpa < 1 << 20).then(|| self.0.get(&gpa).copied().unwrap_or(0))
    }
    fn set_bits_if_unchanged(&mut self, gpa: u64, seen: u64, bits: u64) -> Option<bool> {
        (gpa < 1 << 20).then(|| {
            let word = self.0.entry(gpa).or_default();
            let unchanged = *word == seen;
            if unchanged {
                *word |= bits;
            }
            unchanged
        })
    }
}

/// One sidecar CPU, driven the way the client drives it.
struct Cpu {
    page: Box<CommandPage>,
    state: VpState,
    memory: Memory,
    /// Commands executed so far.
    commands: usize,
}

impl Cpu {
    fn new() -> Self {
        Self {
            page: Box::default(),
            state: VpState::reset(),
            memory: Memory::default(),
            commands: 0,
        }
    }

    /// The CPU's side of one round trip. A stale error from the command
    /// before is left in the page, as the driver leaves it.
    fn run(&mut self) -> Outcome {
        self.commands += 1;
        execute(&mut self.page, &mut self.state, &mut self.memory)
    }

    /// `sidecar_client::set_vp_registers`: one command per chunk, each
    /// read for its error and status before the next is sent.
    fn set_registers(&mut self, registers: &[HvRegisterAssoc]) -> Result<(), CommandFailure> {
        for chunk in requests::register_chunks(registers) {
            requests::write_registers(
                &mut self.page,
                SidecarCommand::SET_VP_REGISTERS,
                HvInputVtl::CURRENT_VTL,
                chunk,
            )
            .expect("a chunk fits");
            assert_eq!(self.run(), Outcome::Done);
            requests::read_set_registers(&self.page)?;
        }
        Ok(())
    }

    /// `sidecar_client::get_vp_registers`: as `set_registers`, each chunk
    /// filled in place.
    fn get_registers(&mut self, registers: &mut [HvRegisterAssoc]) -> Result<(), CommandFailure> {
        for chunk in requests::register_chunks_mut(registers) {
            requests::write_registers(
                &mut self.page,
                SidecarCommand::GET_VP_REGISTERS,
                HvInputVtl::CURRENT_VTL,
                chunk,
            )
            .expect("a chunk fits");
            assert_eq!(self.run(), Outcome::Done);
            requests::read_get_registers(&self.page, chunk)?;
        }
        Ok(())
    }
}

/// The general registers and RIP: 17 names whose values read back as set.
const NAMES: [Name; 17] = [
    Name::Rax,
    Name::Rcx,
    Name::Rdx,
    Name::Rbx,
    Name::Rsp,
    Name::Rbp,
    Name::Rsi,
    Name::Rdi,
    Name::R8,
    Name::R9,
    Name::R10,
    Name::R11,
    Name::R12,
    Name::R13,
    Name::R14,
    Name::R15,
    Name::Rip,
];

#[test]
fn test_is_a_no_op_that_succeeds() {
    let mut cpu = Cpu::new();
    cpu.page.has_error = 1;
    cpu.page.error.set("stale");
    let before = cpu.state;
    requests::write_test(&mut cpu.page);
    assert_eq!(cpu.run(), Outcome::Done);
    assert_eq!(requests::read_test(&cpu.page), Ok(()));
    assert_eq!(cpu.state, before);
}

#[test]
fn registers_beyond_31_go_in_chunks() {
    let mut cpu = Cpu::new();
    // 40 writes over 17 names: the last write of each name wins.
    let set: Vec<HvRegisterAssoc> = (0..40u64)
        .map(|i| HvRegisterAssoc::new(NAMES[i as usize % NAMES.len()], 0x1000 + i))
        .collect();
    cpu.set_registers(&set).unwrap();
    assert_eq!(cpu.commands, 2, "40 registers are 31 + 9");

    let mut get: Vec<HvRegisterAssoc> = (0..70usize)
        .map(|i| HvRegisterAssoc::new(NAMES[i % NAMES.len()], 0u64))
        .collect();
    cpu.get_registers(&mut get).unwrap();
    assert_eq!(cpu.commands, 2 + 3, "70 registers are 31 + 31 + 8");
    for register in &get {
        let last = set.iter().rev().find(|r| r.name == register.name).unwrap();
        assert_eq!(register.value, last.value, "{:?}", register.name);
    }
    assert_eq!(MAX_GET_SET_VP_REGISTERS, 31);
}

#[test]
fn a_failed_chunk_stops_the_request_and_reports_its_failure() {
    let mut cpu = Cpu::new();
    // The unknown name is in the second chunk: the first is read, the
    // second fails with the CPU's error, and no third is sent.
    let mut get: Vec<HvRegisterAssoc> = (0..70usize)
        .map(|i| HvRegisterAssoc::new(NAMES[i % NAMES.len()], 0u64))
        .collect();
    get[40].name = Name(0xDEAD);
    let failure = cpu.get_registers(&mut get).unwrap_err();
    assert!(
        matches!(failure, CommandFailure::Sidecar(message) if message.as_str().contains("0xdead")),
        "{failure:?}"
    );
    assert_eq!(cpu.commands, 2);
    // The status alone fails too: a response whose status is not SUCCESS is
    // never read as values (the page's stale values are not taken for
    // zeros or anything else).
    let mut one = [HvRegisterAssoc::new(Name::Rax, 0x77u64)];
    requests::write_registers(
        &mut cpu.page,
        SidecarCommand::GET_VP_REGISTERS,
        HvInputVtl::CURRENT_VTL,
        &one,
    )
    .unwrap();
    // The answer of a CPU whose hypercall failed (as OpenHCL's sidecar
    // reports one): no error, the status only.
    cpu.page.has_error = 0;
    cpu.page.request_mut::<GetSetVpRegisterRequest>().status = HvStatus::ACCESS_DENIED;
    assert_eq!(
        requests::read_get_registers(&cpu.page, &mut one),
        Err(CommandFailure::Hypervisor(HvStatus::ACCESS_DENIED))
    );
    assert_eq!(
        one[0].value.as_u64(),
        0x77,
        "the caller's slot is untouched"
    );
    assert_eq!(
        requests::read_set_registers(&cpu.page),
        Err(CommandFailure::Hypervisor(HvStatus::ACCESS_DENIED))
    );
}

#[test]
fn a_bad_vtl_fails_with_an_error_and_the_status() {
    let mut cpu = Cpu::new();
    let one = [HvRegisterAssoc::new(Name::Rax, 0u64)];
    requests::write_registers(
        &mut cpu.page,
        SidecarCommand::GET_VP_REGISTERS,
        HvInputVtl::target(2),
        &one,
    )
    .unwrap();
    cpu.run();
    let header = *cpu.page.request::<GetSetVpRegisterRequest>();
    assert_eq!(header.status, HvStatus::INVALID_PARAMETER);
    assert!(matches!(
        requests::read_get_registers(&cpu.page, &mut [one[0]]),
        Err(CommandFailure::Sidecar(_))
    ));
}

/// Long-mode paging with GVA 0x40_0000 → GPA 0x8000 (user, writable) and
/// nothing else mapped.
fn with_page_tables(cpu: &mut Cpu) {
    let table = (Entry::PRESENT | Entry::WRITABLE | Entry::USER_ACCESSIBLE).bits();
    for (gpa, entry) in [
        (0x1000, 0x2000 | table),
        (0x2000, 0x3000 | table),
        (0x3000 + 2 * 8, 0x4000 | table),
        (0x4000, 0x8000 | table),
    ] {
        cpu.memory.0.insert(gpa, entry);
    }
    let paging = [
        HvRegisterAssoc::new(Name::Cr0, 0x8001_0011u64),
        HvRegisterAssoc::new(Name::Cr3, 0x1000u64),
        HvRegisterAssoc::new(Name::Cr4, 0x20u64),
        HvRegisterAssoc::new(Name::Efer, 0xD00u64),
    ];
    cpu.set_registers(&paging).unwrap();
}

#[test]
fn a_failed_walk_is_a_result_with_the_guests_page_fault() {
    let mut cpu = Cpu::new();
    with_page_tables(&mut cpu);

    requests::write_translate(&mut cpu.page, 0x400, Flags::VALIDATE_READ);
    cpu.run();
    let output = requests::read_translate(&cpu.page).unwrap();
    assert_eq!(
        output.translation_result.result.result_code(),
        Code::SUCCESS
    );
    assert_eq!(output.gpa_page, 0x8);
    assert_eq!(output.translation_result.event_info.as_exception(), None);

    // A user write to an unmapped page: not a failure of the command.
    let gva = 0x40_1000u64;
    requests::write_translate(
        &mut cpu.page,
        gva >> 12,
        Flags::VALIDATE_WRITE | Flags::USER_ACCESS,
    );
    cpu.run();
    assert_eq!(cpu.page.has_error, 0);
    let output = requests::read_translate(&cpu.page).unwrap();
    let result = output.translation_result;
    assert_eq!(result.result.result_code(), Code::PAGE_NOT_PRESENT);
    let fault = result.event_info.as_exception().expect("a pending #PF");
    assert_eq!(
        (
            fault.vector(),
            fault.deliver_error_code(),
            fault.error_code(),
            fault.exception_parameter()
        ),
        (14, true, 0x6, gva),
        "#PF, error code W | U, CR2 the address"
    );
    assert_eq!(result.event_info.reg_1, 0);
    assert_eq!(
        (output.gpa_page, output.reserved, result.reserved),
        (0, 0, 0)
    );

    // A GVN that names no canonical address: the status says so.
    requests::write_translate(&mut cpu.page, 0x8000_0000_0000 >> 12, Flags::VALIDATE_READ);
    cpu.run();
    assert_eq!(cpu.page.has_error, 0);
    assert_eq!(
        requests::read_translate(&cpu.page),
        Err(CommandFailure::Hypervisor(HvStatus::INVALID_PARAMETER))
    );
}

#[test]
fn run_and_stop_read_as_the_client_reads_them() {
    let mut cpu = Cpu::new();
    // RUN_VP is handed to the VP loop; what it writes is read back.
    requests::write_run_vp(&mut cpu.page);
    assert_eq!(cpu.run(), Outcome::RunVp);
    let message = HvMessage::new(HvMessageType::HvMessageTypeX64Halt, 0, &[0u8; 40]);
    cpu.page.intercept_message = message;
    *cpu.page.request_mut() = RunVpResponse { intercept: 1 };
    assert_eq!(
        requests::read_run_vp(&cpu.page),
        Ok(RunVpExit::Intercept(message))
    );

    // Stopped: the response says no intercept.
    requests::write_run_vp(&mut cpu.page);
    assert_eq!(cpu.run(), Outcome::RunVp);
    *cpu.page.request_mut() = RunVpResponse { intercept: 0 };
    assert_eq!(requests::read_run_vp(&cpu.page), Ok(RunVpExit::Stopped));

    // A RUN_VP that failed is the error, whatever the response byte says.
    cpu.page.set_error("VMRUN failed");
    *cpu.page.request_mut() = RunVpResponse { intercept: 1 };
    assert!(matches!(
        requests::read_run_vp(&cpu.page),
        Err(CommandFailure::Sidecar(message)) if message.as_str() == "VMRUN failed"
    ));

    // And the CPU answers the liveness test after all of it.
    requests::write_test(&mut cpu.page);
    cpu.run();
    assert_eq!(requests::read_test(&cpu.page), Ok(()));
}
