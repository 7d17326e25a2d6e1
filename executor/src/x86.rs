//! The x86 halt parker: the idle protocol that cannot lose a wake-up.
//!
//! Compiled only for the bare-metal kernel (`x86_64-unknown-none`).
//!
//! The executor announces that it parks (its ready word goes from "awake,
//! nothing ready" to `0`); from then on, the first wake of any task sends
//! the owner an IPI. [`HaltParker::park`] then runs:
//!
//! ```text
//! cli                      ; maskable interrupts held pending from here
//! if ready word == 0 {     ; nothing woken since the announcement
//!     sti; hlt             ; one sequence: no interrupt between them
//! } else {
//!     sti                  ; something was woken: go back and poll it
//! }
//! ```
//!
//! Why no wake-up is lost. Take the wake that ends the sleep: its `fetch_or`
//! made the word non-zero, then it sent the IPI.
//!
//! * IPI delivered **before `cli`**: the handler ran and returned; the wake's
//!   `fetch_or` was globally visible before the IPI was sent, and `iret` is
//!   serializing, so the check after `cli` reads non-zero: no halt.
//! * IPI arriving **after `cli`**: `IF = 0` keeps it pending in the local
//!   APIC. If the check read non-zero, the CPU does not halt and takes the
//!   IPI after `sti` (harmless). If the check read zero, `sti` sets `IF`, but
//!   interrupts are recognized only after the *next* instruction (the `sti`
//!   interrupt shadow); the next instruction is `hlt`, and a pending interrupt
//!   ends a halt at once. So the CPU wakes, runs the handler, and returns
//!   after the `hlt` into the executor, which takes the bit.
//!
//! There is no third case: the check comes after `cli`, and the `asm!`
//! blocks (without `nomem`) keep the compiler from moving the load across
//! either of them. The kernel's half of the contract: its notifier sends a
//! fixed interrupt (not NMI) to the owner, orders the `fetch_or` before the
//! IPI (an xAPIC ICR write is uncached and ordered; for x2APIC's `WRMSR`, put
//! `mfence; lfence` before it, as the SDM asks), and its IPI handler returns
//! to where it interrupted, after the EOI.

use core::arch::asm;

use crate::{Parker, ReadySet};

/// Parks the CPU with `hlt` until an interrupt, without losing a wake that
/// races with the decision to sleep. Must be called with interrupts enabled
/// (it returns with them enabled).
#[derive(Clone, Copy, Debug, Default)]
pub struct HaltParker;

impl Parker for HaltParker {
    fn park(&self, ready: &ReadySet) {
        // SAFETY: `cli` only holds maskable interrupts pending on this CPU
        // until the `sti` below; it touches no memory Rust knows about. No
        // `nomem`: the asm is a compiler barrier, so the check stays after it.
        unsafe { asm!("cli", options(nostack)) };
        if ready.is_empty() {
            // SAFETY: `sti; hlt` in one block, so nothing can be placed
            // between them: the interrupt shadow of `sti` covers `hlt`, and
            // a pending interrupt wakes it (module docs). The halt ends at
            // the next interrupt, with interrupts enabled, as on entry.
            unsafe { asm!("sti", "hlt", options(nostack)) };
        } else {
            // SAFETY: re-enables interrupts, as they were on entry.
            unsafe { asm!("sti", options(nostack)) };
        }
    }
}
