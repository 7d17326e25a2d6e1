//! What happens when the kernel cannot go on: CPU exceptions, unexpected
//! interrupts, panics and boot errors.
//!
//! Each ends the run as a failure, never a hang and never a pass: a `FATAL`
//! line on the log (CPU, vector, error code, RIP and CR2, or the panic
//! message), the reason on the report channel, then QEMU's fail exit code.
//! A second fault while reporting the first exits at once.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use x86_64::registers::control::Cr2;

use crate::arch::x86_64::cpu;
use crate::arch::x86_64::interrupts::TrapFrame;
use crate::arch::x86_64::port::{exit_qemu, ExitCode};
use crate::arch::x86_64::vectors::exception_name;
use crate::vocabulary::report_key;

const NO_CPU: u32 = u32::MAX;

/// The APIC ID of the CPU that is reporting a fatal error, if any.
static REPORTING_CPU: AtomicU32 = AtomicU32::new(NO_CPU);

/// Claims the right to report. A CPU that faults again while reporting exits
/// at once; a second CPU waits for the first one's exit.
fn begin_fatal_report() {
    x86_64::instructions::interrupts::disable();
    let me = cpu::apic_id();
    match REPORTING_CPU.compare_exchange(NO_CPU, me, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(owner) if owner == me => exit_qemu(ExitCode::Fail),
        Err(_) => cpu::halt_forever(),
    }
}

fn fail(log_line: fmt::Arguments<'_>, reason: fmt::Arguments<'_>) -> ! {
    crate::log::write_fatal(log_line);
    crate::report::finish(Some(reason))
}

/// Reports a CPU exception taken in the kernel. On a sidecar CPU that is
/// running its runtime, the fault is contained: the CPU reports it to the
/// main kernel through its pages and parks, and the run goes on. Anywhere
/// else (the BSP, a CPU still booting) it ends the run.
pub fn exception(frame: &TrapFrame) -> ! {
    if crate::runtime::fault::in_runtime() {
        contain(frame);
    }
    begin_fatal_report();
    let cpu = crate::percpu::current_vp();
    let vector = frame.vector as u8;
    let (mnemonic, name) = exception_name(vector);
    let cr2 = Cr2::read_raw();
    let (rip, error) = (frame.rip, frame.error_code);
    fail(
        format_args!(
            "exception {mnemonic} ({name}, vector {vector}) on cpu {cpu}: error code {error:#x}, \
             rip {rip:#x}, cr2 {cr2:#x}, rsp {:#x}",
            frame.rsp
        ),
        format_args!(
            "cpu {cpu}: {mnemonic} {name} (vector {vector}), error code {error:#x}, \
             rip {rip:#x}, cr2 {cr2:#x}"
        ),
    )
}

/// A sidecar CPU's fault: log it, put it on the report channel, hand it to
/// the main kernel (CPU, vector, RIP in the command page's error, status
/// REMOVED, attention, response IPI), then park for good.
fn contain(frame: &TrapFrame) -> ! {
    x86_64::instructions::interrupts::disable();
    let cpu = crate::percpu::current_vp();
    let vector = frame.vector as u8;
    let (mnemonic, name) = exception_name(vector);
    let cr2 = Cr2::read_raw();
    let rip = frame.rip;
    crate::log::write_fatal(format_args!(
        "exception {mnemonic} ({name}, vector {vector}) on sidecar cpu {cpu}: rip {rip:#x}, \
         cr2 {cr2:#x}; contained: the CPU leaves sidecar, the run goes on"
    ));
    crate::report::append(
        report_key::FAULTS,
        format_args!("{{\"cpu\":{cpu},\"vector\":{vector},\"rip\":{rip},\"cr2\":{cr2}}}"),
    );
    // SAFETY: this is the fault handler, on a CPU in its runtime (checked
    // by `exception`); the code the fault interrupted never runs again.
    unsafe {
        crate::runtime::fault::contain(format_args!(
            "cpu {cpu}: {mnemonic} {name} (vector {vector}) at rip {rip:#x}, cr2 {cr2:#x}"
        ))
    }
}

/// Reports an interrupt on a vector nobody registered and ends the run.
pub fn unexpected_interrupt(frame: &TrapFrame) -> ! {
    begin_fatal_report();
    let cpu = crate::percpu::current_vp();
    let (vector, rip) = (frame.vector, frame.rip);
    fail(
        format_args!("unexpected interrupt vector {vector} on cpu {cpu} at rip {rip:#x}"),
        format_args!("cpu {cpu}: unexpected interrupt vector {vector} at rip {rip:#x}"),
    )
}

/// Reports an error that makes booting impossible (bad command line, missing
/// ACPI tables, ...) and ends the run.
pub fn boot_error(args: fmt::Arguments<'_>) -> ! {
    begin_fatal_report();
    fail(
        format_args!("boot error: {args}"),
        format_args!("boot error: {args}"),
    )
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let cpu = crate::percpu::current_vp();
    let message = info.message();
    if crate::runtime::fault::in_runtime() {
        // Contained like an exception: this CPU leaves sidecar, the run
        // goes on.
        x86_64::instructions::interrupts::disable();
        crate::log::write_fatal(format_args!(
            "panic on sidecar cpu {cpu}: {message}; contained: the CPU leaves sidecar, the run goes on"
        ));
        crate::report::append(
            report_key::FAULTS,
            format_args!("{{\"cpu\":{cpu},\"panic\":true}}"),
        );
        // SAFETY: the panic handler, on a CPU in its runtime (checked
        // above); the code that panicked never runs again.
        unsafe { crate::runtime::fault::contain(format_args!("cpu {cpu}: panic: {message}")) };
    }
    begin_fatal_report();
    match info.location() {
        Some(at) => fail(
            format_args!("panic on cpu {cpu} at {at}: {message}"),
            format_args!("cpu {cpu}: panic: {message} (at {at})"),
        ),
        None => fail(
            format_args!("panic on cpu {cpu}: {message}"),
            format_args!("cpu {cpu}: panic: {message}"),
        ),
    }
}
