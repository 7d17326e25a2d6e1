//! What both VMMs do with an intercept, and how they check an answer: the
//! device emulation ([`devices`]), the turning of an intercept message into
//! an emulated access ([`emulate`]), and the guest memory a program run
//! needs and the answers it must give ([`answers`]).
//!
//! Pure and built for every target: the kernel's VMM (`vmm`, on the BSP)
//! and the user-mode VMM under Linux (`linux-vmm/`) run the same code, each
//! with its own way of sending the registers back (protocol commands from
//! an async task, or the driver's ioctls from a thread) and of logging a
//! guest's UART line. It names only `abi`, `guests` and `vp`'s [`GuestRam`]
//! (`tests/layering.rs` checks it): no log, no `arch/`, no side of the
//! kernel.
//!
//! [`GuestRam`]: crate::vp::GuestRam

pub mod answers;
pub mod devices;

use crate::abi::{
    HvInterceptAccessType, HvMessage, HvMessageType, HvRegisterAssoc, HvX64IoPortInterceptMessage,
    HvX64MemoryInterceptMessage, HvX64RegisterName as Name,
};

use devices::{Devices, Effect, Line};

/// Why a VP's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VpEnd {
    /// The guest wrote the exit port.
    Exited,
    /// A STOP ended the run.
    Stopped,
    /// The guest touched guest physical memory nobody emulates.
    UnmappedAccess {
        /// The address.
        gpa: u64,
        /// Whether it was a write.
        write: bool,
    },
    /// The guest triple-faulted (an unrecoverable exception).
    TripleFault,
    /// An intercept the VMM cannot emulate.
    Unhandled(HvMessageType),
}

/// Counts of the exits a VP took, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    /// Port I/O.
    pub io: u32,
    /// Nested page faults (MMIO and unmapped accesses).
    pub memory: u32,
    /// Everything else.
    pub other: u32,
}

impl ExitCounts {
    /// Every exit, of all kinds.
    pub fn total(&self) -> u32 {
        self.io + self.memory + self.other
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ExitCounts) {
        self.io += other.io;
        self.memory += other.memory;
        self.other += other.other;
    }
}

/// What the VMM must do after one intercept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Emulation {
    /// Registers to set before the VP runs again (RIP past the emulated
    /// instruction, and RAX for a read); empty when nothing was emulated.
    pub registers: heapless::Vec<HvRegisterAssoc, 2>,
    /// `Some` when the VP's run is over (set the registers all the same).
    pub end: Option<VpEnd>,
    /// A UART line the guest finished with this access, for the VMM's log.
    pub line: Option<Line>,
}

/// The registers that apply `effect` to an instruction at `rip` of `len`
/// bytes: RIP past it, EAX if asked.
fn registers_for(rip: u64, len: u64, effect: Effect) -> heapless::Vec<HvRegisterAssoc, 2> {
    let mut registers = heapless::Vec::new();
    // Wrapping, as the CPU's own RIP does: a guest controls both.
    let _ = registers.push(HvRegisterAssoc::new(Name::Rip, rip.wrapping_add(len)));
    if let Effect::SetEax(value) = effect {
        let _ = registers.push(HvRegisterAssoc::new(Name::Rax, u64::from(value)));
    }
    registers
}

/// Emulates the access `message` reports for `devices`' VP and counts the
/// exit in `counts`. `instruction` reads the 16 bytes of guest memory at a
/// guest physical address (the faulting instruction of an MMIO access; the
/// programs run with paging off, so RIP is one).
pub fn emulate(
    devices: &mut Devices,
    counts: &mut ExitCounts,
    message: &HvMessage,
    instruction: impl FnOnce(u64) -> [u8; 16],
) -> Emulation {
    let mut emulation = Emulation::default();
    match message.header.typ {
        HvMessageType::HvMessageTypeX64IoPortIntercept => {
            counts.io += 1;
            let io: HvX64IoPortInterceptMessage = *message.payload_as();
            let effect = devices.port_access(&io);
            let len = u64::from(io.header.instruction_len());
            emulation.registers = registers_for(io.header.rip, len, effect);
            emulation.end = (effect == Effect::Exit).then_some(VpEnd::Exited);
            emulation.line = devices.take_line();
        }
        HvMessageType::HvMessageTypeUnmappedGpa | HvMessageType::HvMessageTypeGpaIntercept => {
            counts.memory += 1;
            let memory: HvX64MemoryInterceptMessage = *message.payload_as();
            let bytes = instruction(memory.header.rip);
            match devices.mmio(memory.guest_physical_address, &bytes) {
                Ok((effect, len)) => {
                    emulation.registers = registers_for(memory.header.rip, len, effect);
                }
                Err(_) => {
                    let write = memory.header.intercept_access_type == HvInterceptAccessType::WRITE;
                    emulation.end = Some(VpEnd::UnmappedAccess {
                        gpa: memory.guest_physical_address,
                        write,
                    });
                }
            }
        }
        HvMessageType::HvMessageTypeUnrecoverableException => {
            counts.other += 1;
            emulation.end = Some(VpEnd::TripleFault);
        }
        other => {
            counts.other += 1;
            emulation.end = Some(VpEnd::Unhandled(other));
        }
    }
    emulation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{HvX64InstructionLengthAndCr8, HvX64InterceptMessageHeader};
    use crate::guests::{MMIO_GPA, PORT_EXIT, PORT_UART};

    fn header(rip: u64, len: u8, access: HvInterceptAccessType) -> HvX64InterceptMessageHeader {
        HvX64InterceptMessageHeader {
            rip,
            instruction_length_and_cr8: HvX64InstructionLengthAndCr8::new()
                .with_instruction_length(len),
            intercept_access_type: access,
            ..Default::default()
        }
    }

    fn io(port: u16, rax: u64, access: HvInterceptAccessType) -> HvMessage {
        let payload = HvX64IoPortInterceptMessage {
            header: header(0x8100, 1, access),
            port_number: port,
            rax,
            ..Default::default()
        };
        HvMessage::new(HvMessageType::HvMessageTypeX64IoPortIntercept, 0, &payload)
    }

    fn memory(gpa: u64) -> HvMessage {
        let payload = HvX64MemoryInterceptMessage {
            header: header(0x8200, 0, HvInterceptAccessType::READ),
            guest_physical_address: gpa,
            ..Default::default()
        };
        HvMessage::new(HvMessageType::HvMessageTypeUnmappedGpa, 0, &payload)
    }

    fn no_memory(_: u64) -> [u8; 16] {
        panic!("an I/O exit reads no instruction")
    }

    fn rip(value: u64) -> HvRegisterAssoc {
        HvRegisterAssoc::new(Name::Rip, value)
    }

    #[test]
    fn an_out_moves_rip_and_a_newline_hands_out_the_line() {
        let (mut devices, mut counts) = (Devices::new(2), ExitCounts::default());
        let write = HvInterceptAccessType::WRITE;
        let first = emulate(
            &mut devices,
            &mut counts,
            &io(PORT_UART, 0x41, write),
            no_memory,
        );
        assert_eq!(first.registers.as_slice(), [rip(0x8101)]);
        assert_eq!((first.end, first.line), (None, None));
        let newline = emulate(
            &mut devices,
            &mut counts,
            &io(PORT_UART, 10, write),
            no_memory,
        );
        assert_eq!(newline.line.as_deref(), Some("A"));
        let exit = emulate(
            &mut devices,
            &mut counts,
            &io(PORT_EXIT, 0, write),
            no_memory,
        );
        assert_eq!(exit.end, Some(VpEnd::Exited));
        assert_eq!(exit.registers.as_slice(), [rip(0x8101)]);
        assert_eq!(
            counts,
            ExitCounts {
                io: 3,
                memory: 0,
                other: 0
            }
        );
    }

    #[test]
    fn an_in_reads_all_ones() {
        let (mut devices, mut counts) = (Devices::new(2), ExitCounts::default());
        let read = io(0x61, 0, HvInterceptAccessType::READ);
        let emulation = emulate(&mut devices, &mut counts, &read, no_memory);
        let eax = HvRegisterAssoc::new(Name::Rax, u64::from(u32::MAX));
        assert_eq!(emulation.registers.as_slice(), [rip(0x8101), eax]);
    }

    #[test]
    fn an_mmio_read_decodes_the_instruction_at_rip() {
        let (mut devices, mut counts) = (Devices::new(7), ExitCounts::default());
        let mut asked = 0;
        let instruction = |gpa| {
            asked = gpa;
            let mut bytes = [0; 16];
            bytes[0] = 0xA1;
            bytes
        };
        let emulation = emulate(&mut devices, &mut counts, &memory(MMIO_GPA), instruction);
        assert_eq!(asked, 0x8200);
        let eax = HvRegisterAssoc::new(Name::Rax, u64::from(devices::mmio_value(7)));
        assert_eq!(emulation.registers.as_slice(), [rip(0x8205), eax]);
        assert_eq!(emulation.end, None);
        let outside = emulate(&mut devices, &mut counts, &memory(0x4000_0000), |_| {
            [0xA1; 16]
        });
        assert!(outside.registers.is_empty());
        let end = VpEnd::UnmappedAccess {
            gpa: 0x4000_0000,
            write: false,
        };
        assert_eq!(outside.end, Some(end));
        assert_eq!(counts.memory, 2);
    }

    #[test]
    fn a_triple_fault_and_an_unknown_intercept_end_the_run() {
        let (mut devices, mut counts) = (Devices::new(0), ExitCounts::default());
        let fault = HvMessage::new(HvMessageType::HvMessageTypeUnrecoverableException, 0, &0u64);
        let emulation = emulate(&mut devices, &mut counts, &fault, no_memory);
        assert_eq!(emulation.end, Some(VpEnd::TripleFault));
        let msr = HvMessage::new(HvMessageType::HvMessageTypeMsrIntercept, 0, &0u64);
        let emulation = emulate(&mut devices, &mut counts, &msr, no_memory);
        assert_eq!(
            emulation.end,
            Some(VpEnd::Unhandled(HvMessageType::HvMessageTypeMsrIntercept))
        );
        assert_eq!(counts.total(), 2);
    }
}
