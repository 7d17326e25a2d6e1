//! The devices the VMMs emulate for their guests, as pure state machines:
//!
//! - a UART at 0x3F8 (output only): each OUT appends a byte to the VP's
//!   line; a `\n` (or a full line) finishes it, and the VMM takes it with
//!   [`Devices::take_line`] to log it its own way;
//! - test ports 0x604..=0x607 the guest programs report through;
//! - an MMIO device at [`MMIO_GPA`]: one read-only register whose value
//!   depends on the VP, reached through nested page faults. The VMM decodes
//!   the faulting instruction itself (only `mov eax, [moffs32]`, `A1`, and
//!   `mov [moffs32], eax`, `A3`, which is all the programs use).

use crate::abi::{HvInterceptAccessType, HvX64IoPortInterceptMessage};
use crate::guests::{MMIO_GPA, PORT_EXIT, PORT_IRQS, PORT_MMIO, PORT_RESULT, PORT_UART};

/// The longest UART line kept whole; a longer one comes out in pieces.
pub const LINE_BYTES: usize = 120;

/// One line a guest printed on the UART.
pub type Line = heapless::String<LINE_BYTES>;

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
    line: Line,
    finished: Option<Line>,
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
    pub fn port_access(&mut self, message: &HvX64IoPortInterceptMessage) -> Effect {
        let write = message.header.intercept_access_type != HvInterceptAccessType::READ;
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

    /// The UART line the guest finished with its last OUT, if it did.
    pub fn take_line(&mut self) -> Option<Line> {
        self.finished.take()
    }

    fn uart_byte(&mut self, byte: u8) {
        if byte == b'\n' {
            self.finished = Some(core::mem::take(&mut self.line));
            self.lines += 1;
        } else if self.line.push(byte as char).is_err() {
            // An over-long line comes out in pieces.
            self.finished = Some(core::mem::take(&mut self.line));
            let _ = self.line.push(byte as char);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn print(devices: &mut Devices, text: &str) -> heapless::Vec<Line, 4> {
        let mut lines = heapless::Vec::new();
        for byte in text.bytes() {
            assert_eq!(
                devices.port_write(PORT_UART, u32::from(byte)),
                Effect::Continue
            );
            if let Some(line) = devices.take_line() {
                lines.push(line).unwrap();
            }
        }
        lines
    }

    #[test]
    fn the_uart_hands_out_each_line_once() {
        let mut devices = Devices::new(3);
        let lines = print(&mut devices, "vp 3 sum 1\nhalf");
        assert_eq!(lines.as_slice(), ["vp 3 sum 1"]);
        assert_eq!(devices.take_line(), None);
        assert_eq!(print(&mut devices, "\n").as_slice(), ["half"]);
        assert_eq!(devices.lines, 2);
    }

    #[test]
    fn an_over_long_line_comes_out_in_pieces() {
        let mut devices = Devices::new(0);
        let long: heapless::String<300> = core::iter::repeat_n('x', LINE_BYTES + 5).collect();
        let lines = print(&mut devices, &long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), LINE_BYTES);
        assert_eq!(print(&mut devices, "\n")[0].len(), 5);
    }

    #[test]
    fn the_test_ports_record_and_the_exit_port_ends() {
        let mut devices = Devices::new(1);
        assert_eq!(devices.port_write(PORT_RESULT, 7), Effect::Continue);
        assert_eq!(devices.port_write(PORT_IRQS, 1), Effect::Continue);
        assert_eq!(devices.port_write(PORT_MMIO, 9), Effect::Continue);
        assert_eq!(devices.port_write(PORT_EXIT, 0), Effect::Exit);
        let expected = Reports {
            result: Some(7),
            irqs: Some(1),
            mmio: Some(9),
            exited: true,
        };
        assert_eq!(devices.reports, expected);
        assert_eq!(devices.port_read(0x60), Effect::SetEax(u32::MAX));
    }

    #[test]
    fn mmio_decodes_only_the_moffs_forms_at_the_device() {
        let mut devices = Devices::new(5);
        let read = [0xA1, 0, 0, 0, 0x10];
        assert_eq!(
            devices.mmio(MMIO_GPA, &read),
            Ok((Effect::SetEax(mmio_value(5)), 5))
        );
        assert_eq!(
            devices.mmio(MMIO_GPA + 4, &[0xA3]),
            Ok((Effect::Continue, 5))
        );
        assert_eq!(
            devices.mmio(MMIO_GPA, &[0x8B]),
            Err(Unemulated::Instruction(0x8B))
        );
        assert_eq!(devices.mmio(MMIO_GPA, &[]), Err(Unemulated::Instruction(0)));
        assert_eq!(
            devices.mmio(0x4000_0000, &read),
            Err(Unemulated::Gpa(0x4000_0000))
        );
    }
}
