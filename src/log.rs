//! The kernel log on COM1: one line per message, `[cpu N] LEVEL message`.
//!
//! Lines from different CPUs never interleave: a line is written whole under
//! one lock. The fatal path must still be able to print when the CPU that
//! faulted was holding that lock, so it uses [`write_fatal`], which takes the
//! lock over after a bounded wait.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

use spin::Mutex;

use crate::arch::x86_64::port::{Uart, COM1};
use crate::cmdline::LogLevel;

static COM1_UART: Mutex<Uart> = Mutex::new(Uart::new(COM1));
static MAX_LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// Programs the UART; the BSP calls this first thing.
pub fn init() {
    COM1_UART.lock().init();
}

/// Sets the most verbose level that is still written.
pub fn set_level(level: LogLevel) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages of `level` are written.
pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

fn write_line(uart: &mut Uart, level: &str, args: fmt::Arguments<'_>) {
    // A UART write never fails, so the results carry nothing.
    let _ = write!(uart, "[cpu {}] {level:<5} ", crate::percpu::current_vp());
    let _ = uart.write_fmt(args);
    let _ = uart.write_str("\n");
}

/// Writes one line at `level` if that level is enabled.
pub fn write(level: LogLevel, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let name = match level {
        LogLevel::Error => "ERROR",
        LogLevel::Warn => "WARN",
        LogLevel::Info => "INFO",
        LogLevel::Debug => "DEBUG",
        LogLevel::Trace => "TRACE",
    };
    // Interrupt handlers may log: keep them out while the lock is held.
    x86_64::instructions::interrupts::without_interrupts(|| {
        write_line(&mut COM1_UART.lock(), name, args);
    });
}

/// Writes one `FATAL` line even if this CPU died holding the log lock.
pub fn write_fatal(args: fmt::Arguments<'_>) {
    write_line(&mut lock_for_fatal(&COM1_UART), "FATAL", args);
}

/// Takes `lock`, or takes it over after a bounded wait: the holder may be the
/// very CPU that is now failing, and a fatal report must never hang.
pub fn lock_for_fatal<T>(lock: &Mutex<T>) -> spin::MutexGuard<'_, T> {
    for _ in 0..10_000_000 {
        if let Some(guard) = lock.try_lock() {
            return guard;
        }
        core::hint::spin_loop();
    }
    // SAFETY: the holder has not released the lock for a long time and is
    // most likely this CPU, interrupted mid-line; the worst outcome of
    // breaking the lock is a garbled log line, which a fatal report accepts.
    unsafe { lock.force_unlock() };
    lock.lock()
}

/// Logs at error level.
#[allow(unused_macros)]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::cmdline::LogLevel::Error, format_args!($($arg)*)) };
}
/// Logs at warn level.
#[allow(unused_macros)]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::cmdline::LogLevel::Warn, format_args!($($arg)*)) };
}
/// Logs at info level.
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::cmdline::LogLevel::Info, format_args!($($arg)*)) };
}
/// Logs at debug level.
#[allow(unused_macros)]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::cmdline::LogLevel::Debug, format_args!($($arg)*)) };
}
/// Logs at trace level.
#[allow(unused_macros)]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::write($crate::cmdline::LogLevel::Trace, format_args!($($arg)*)) };
}
