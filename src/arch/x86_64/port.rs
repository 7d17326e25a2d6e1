//! Port I/O devices the kernel drives directly: the 16550 UARTs and QEMU's
//! `isa-debug-exit` device.

use x86_64::instructions::port::Port;

/// I/O base of COM1, the human-readable log.
pub const COM1: u16 = 0x3F8;
/// I/O base of COM2, the machine-readable report channel.
pub const COM2: u16 = 0x2F8;
/// I/O port of QEMU's `isa-debug-exit` device.
const DEBUG_EXIT_PORT: u16 = 0xF4;

/// A 16550-compatible UART, polled, 115200 8N1, no interrupts.
pub struct Uart {
    base: u16,
}

impl Uart {
    /// A UART at I/O base `base`; call [`Uart::init`] before writing.
    pub const fn new(base: u16) -> Self {
        Self { base }
    }

    fn write_register(&self, offset: u16, value: u8) {
        // SAFETY: the UART's registers are plain I/O ports with no effect on
        // memory; only the serial code (under its lock) drives this UART.
        unsafe { Port::new(self.base + offset).write(value) }
    }

    fn read_register(&self, offset: u16) -> u8 {
        // SAFETY: as in `write_register`; reading LSR has no side effects.
        unsafe { Port::new(self.base + offset).read() }
    }

    /// Programs 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on.
    pub fn init(&self) {
        self.write_register(1, 0x00); // no UART interrupts
        self.write_register(3, 0x80); // DLAB: the divisor follows
        self.write_register(0, 0x01); // divisor 1 = 115200 baud
        self.write_register(1, 0x00);
        self.write_register(3, 0x03); // 8N1, DLAB off
        self.write_register(2, 0xC7); // FIFOs on and cleared
        self.write_register(4, 0x03); // DTR | RTS
    }

    /// Writes one byte, waiting (boundedly) for room in the transmitter.
    pub fn write_byte(&self, byte: u8) {
        const TRANSMIT_EMPTY: u8 = 0x20;
        // QEMU's UART is always ready; real hardware drains within far fewer
        // polls than this, and a stuck UART must not hang the kernel.
        for _ in 0..100_000 {
            if self.read_register(5) & TRANSMIT_EMPTY != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.write_register(0, byte);
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for byte in s.bytes() {
            self.write_byte(byte);
        }
        Ok(())
    }
}

/// The verdict the kernel hands QEMU when it ends the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// The scenario passed: QEMU exits with status 33.
    Pass = 0x10,
    /// The scenario failed: QEMU exits with status 35.
    Fail = 0x11,
}

/// Ends the QEMU run with `code`. On a machine without the exit device the
/// CPU halts forever with interrupts off.
pub fn exit_qemu(code: ExitCode) -> ! {
    // SAFETY: writing to the debug-exit port has no memory effects; QEMU stops
    // the whole machine, so no other CPU observes a half-finished state.
    unsafe { Port::<u32>::new(DEBUG_EXIT_PORT).write(code as u32) };
    super::cpu::halt_forever()
}
