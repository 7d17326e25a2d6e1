//! The machine-readable report on COM2, which the runner turns into JSON.
//!
//! One line per fact: `KEY=JSON`, where `KEY` is a dotted path
//! (`boot.ready_ms=12.5`) and `KEY[]=JSON` appends to an array. The schema is
//! in `docs/report.md`; every key is a constant of
//! [`crate::vocabulary::report_key`], the list the runner reads the report
//! back with. Every run ends with `result="pass"` or `result="fail"` (with
//! `failure="reason"`), written by [`finish`].

use core::fmt::{self, Write};

use spin::Mutex;

use crate::arch::x86_64::port::{exit_qemu, ExitCode, Uart, COM2};
use crate::json;
use crate::vocabulary::report_key;

static COM2_UART: Mutex<Uart> = Mutex::new(Uart::new(COM2));

/// Programs the report UART.
pub fn init() {
    COM2_UART.lock().init();
}

fn line(uart: &mut Uart, key: &str, value: impl FnOnce(&mut Uart) -> fmt::Result) {
    let _ = uart.write_str(key);
    let _ = uart.write_char('=');
    let _ = value(uart);
    let _ = uart.write_char('\n');
}

/// Writes `key=value`, where `args` already formats a JSON value.
pub fn json(key: &str, args: fmt::Arguments<'_>) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        line(&mut COM2_UART.lock(), key, |uart| uart.write_fmt(args));
    });
}

/// Appends the JSON value `args` to the array at `key` (`key[]=value`).
pub fn append(key: &str, args: fmt::Arguments<'_>) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut uart = COM2_UART.lock();
        let _ = uart.write_str(key);
        line(&mut uart, "[]", |uart| uart.write_fmt(args));
    });
}

/// Writes `key="text"`, escaping `args` as a JSON string.
pub fn string(key: &str, args: fmt::Arguments<'_>) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        line(&mut COM2_UART.lock(), key, |uart| {
            json::write_string(uart, args)
        });
    });
}

/// Writes `key=number`.
pub fn number(key: &str, value: u64) {
    json(key, format_args!("{value}"));
}

/// Ends the run: writes the verdict (and the reason of a failure) and exits
/// QEMU with the matching code.
pub fn finish(failure: Option<fmt::Arguments<'_>>) -> ! {
    let mut uart = crate::log::lock_for_fatal(&COM2_UART);
    match failure {
        None => {
            line(&mut uart, report_key::RESULT, |u| u.write_str("\"pass\""));
            drop(uart);
            exit_qemu(ExitCode::Pass)
        }
        Some(reason) => {
            line(&mut uart, report_key::FAILURE, |u| {
                json::write_string(u, reason)
            });
            line(&mut uart, report_key::RESULT, |u| u.write_str("\"fail\""));
            drop(uart);
            exit_qemu(ExitCode::Fail)
        }
    }
}
