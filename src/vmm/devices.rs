//! The devices the VMM emulates for its guests, and how an intercept turns
//! into an emulated access.
//!
//! - a UART at 0x3F8 (output only): each OUT appends a byte to the VP's
//!   line; a `\n` logs the line prefixed with the VP;
//! - test ports 0x604..=0x607 the guest programs report through;
//! - an MMIO device at [`MMIO_GPA`]: one read-only register whose value
//!   depends on the VP, reached through nested page faults. The VMM decodes
//!   the faulting instruction itself (only `mov eax, [moffs32]`, `A1`, and
//!   `mov [moffs32], eax`, `A3`, which is all the programs use).

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::MAX_CPUS;

use super::guests::{MMIO_GPA, PORT_EXIT, PORT_IRQS, PORT_MMIO, PORT_RESULT, PORT_UART};

/// UART lines each VP printed, by VP index (for tasks that wait for a
/// guest's output while another task runs the VP).
pub static UART_LINES: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// The MMIO register's value for VP `vp`.
pub fn mmio_value(vp: u32) -> u32 {
    0x5EC0_0000 | vp
}

/// What a VP's guest reported through the test ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reports {
    /// PORT_RESULT.
    pub result: Option<u32>,
    /// PORT_IRQS.
    pub irqs: Option<u32>,
    /// PORT_MMIO.
    pub mmio: Option<u32>,
    /// PORT_EXIT was written.
    pub exited: bool,
}

/// One VP's device state.
#[derive(Default)]
pub struct Devices {
    /// The VP.
    pub vp: u32,
    line: heapless::String<120>,
    /// What the guest reported.
    pub reports: Reports,
    /// UART lines the guest printed.
    pub lines: u32,
}

/// What an emulated access asks of the VP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing but advancing RIP.
    Continue,
    /// Advance RIP and set EAX (an IN, or an MMIO read).
    SetEax(u32),
    /// The guest wrote the exit port: it is done.
    Exit,
}

/// An access the VMM cannot emulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unemulated {
    /// An access to a guest physical address no device owns.
    Gpa(u64),
    /// An MMIO instruction the decoder does not know.
    Instruction(u8),
}

impl Devices {
    /// Device state for VP `vp`.
    pub fn new(vp: u32) -> Self {
        Self {
            vp,
            ..Self::default()
        }
    }

    /// An OUT of `value` to `port`.
    pub fn port_write(&mut self, port: u16, value: u32) -> Effect {
        match port {
            PORT_UART => self.uart_byte(value as u8),
            PORT_RESULT => self.reports.result = Some(value),
            PORT_IRQS => self.reports.irqs = Some(value),
            PORT_MMIO => self.reports.mmio = Some(value),
            PORT_EXIT => {
                self.reports.exited = true;
                return Effect::Exit;
            }
            _ => {}
        }
        Effect::Continue
    }

    /// The port access an I/O intercept describes: an OUT of the guest's
    /// EAX, or an IN.
    pub fn port_access(&mut self, message: &crate::abi::HvX64IoPortInterceptMessage) -> Effect {
        let write = message.header.intercept_access_type != crate::abi::HvInterceptAccessType::READ;
        if write {
            self.port_write(message.port_number, message.rax as u32)
        } else {
            self.port_read(message.port_number)
        }
    }

    /// An IN from `port`: no device answers, so all ones.
    pub fn port_read(&mut self, _port: u16) -> Effect {
        Effect::SetEax(u32::MAX)
    }

    fn uart_byte(&mut self, byte: u8) {
        if byte == b'\n' {
            info!("[vp {}] {}", self.vp, self.line);
            self.line.clear();
            self.lines += 1;
            UART_LINES[self.vp as usize % MAX_CPUS].fetch_add(1, Ordering::Release);
        } else if self.line.push(byte as char).is_err() {
            // An over-long line is logged in pieces.
            info!("[vp {}] {}", self.vp, self.line);
            self.line.clear();
            let _ = self.line.write_char(byte as char);
        }
    }

    /// A nested page fault at `gpa`, caused by the instruction whose first
    /// bytes are `instruction`. Returns the effect and the instruction's
    /// length.
    pub fn mmio(&mut self, gpa: u64, instruction: &[u8]) -> Result<(Effect, u64), Unemulated> {
        if gpa & !0xFFF != MMIO_GPA {
            return Err(Unemulated::Gpa(gpa));
        }
        match instruction.first() {
            Some(0xA1) => Ok((Effect::SetEax(mmio_value(self.vp)), 5)),
            Some(0xA3) => Ok((Effect::Continue, 5)),
            other => Err(Unemulated::Instruction(other.copied().unwrap_or(0))),
        }
    }
}
