//! The ready word: which tasks want a poll, and whether the owner is awake.
//! Any CPU sets task bits (a wake); only the owner takes them and announces
//! that it parks. This file owns the word's whole protocol: nothing else
//! touches it except through [`ReadySet`]'s methods.
//!
//! One `AtomicU64` per executor ([`ReadySet`]). Bit `i` says "task `i`
//! wants a poll"; bit 63, `AWAKE`, says "the owner is running, or has been
//! notified, and will read this word again before it sleeps". `AWAKE` is the
//! sign bit so that the wake needs no second look at the word: `lock or`
//! sets the sign flag from the word it wrote, and a task mask never has bit
//! 63, so the flag is `AWAKE` as it was just before the wake. Who touches
//! it, and how:
//!
//! | who | operation | why |
//! |---|---|---|
//! | waker (any CPU, any context) | `fetch_or(bit)`: was `AWAKE` set? (`lock or`, then the sign flag) | mark ready; nothing else to do if the owner is up |
//! | waker, only if `AWAKE` was clear | `fetch_or(AWAKE)`: was it clear? | claim the one notification of this sleep |
//! | owner, each batch | `swap(AWAKE)` | take every ready bit, stay awake |
//! | owner, idle | `compare_exchange(AWAKE, 0)` | announce "parking", only if nothing is ready |
//! | parker, notifications held back | `load() == 0` | still nothing: really sleep |
//!
//! The owner can fall asleep only from a word equal to `AWAKE` (the
//! announcement), so a task bit set while the word has `AWAKE` is always
//! taken before the owner sleeps. A task bit set on a word without `AWAKE`
//! means the owner announced that it parks: the waker claims `AWAKE` back,
//! and the one waker whose claim flips it notifies the owner. So no wake is
//! lost, and a sleep costs at most one notification however many CPUs wake
//! how often. The argument uses nothing but the modification order of this
//! one word; `docs/executor.md` writes it out and `tests/loom.rs` checks it.

use crate::sync::{maybe_const_fn, AtomicU64, Ordering::*};

/// Ready-word marker: the owner is awake (or notified) and will read the
/// word again before it sleeps. The sign bit (see the module doc).
const AWAKE: u64 = 1 << 63;

/// Task `i`'s bit in the ready word (`i < 63`).
pub(super) const fn task_bit(i: usize) -> u64 {
    1 << i
}

// === impl ReadySet ===

/// An executor's ready word: which tasks want a poll, and whether the
/// owner is awake. Parkers see it through [`ReadySet::is_empty`].
pub struct ReadySet {
    word: AtomicU64,
}

impl ReadySet {
    maybe_const_fn! {
        /// A ready set whose owner counts as awake: wakes before the first
        /// park never notify (the owner looks before it sleeps).
        pub(crate) fn new() -> Self {
            Self { word: AtomicU64::new(AWAKE) }
        }
    }

    /// Marks the tasks in `mask` ready. Returns `true` when the owner had
    /// announced that it parks and this call claimed the notification: the
    /// caller must notify it.
    ///
    /// `Release`: whatever the waker wrote before waking (a message, a flag)
    /// is visible to the owner after its `Acquire` in [`ReadySet::take`].
    /// The claim needs no ordering: it is about this word alone.
    ///
    /// `mask` has no bit 63, so `old | mask` has `AWAKE` exactly when `old`
    /// had it, and testing its sign compiles to the `lock or`'s own sign
    /// flag: the wake is `lock or; jns` with no load of the word.
    #[inline]
    pub(crate) fn mark(&self, mask: u64) -> bool {
        debug_assert_eq!(mask & AWAKE, 0);
        let old = self.word.fetch_or(mask, Release);
        ((old | mask) as i64) >= 0 && self.claim()
    }

    /// The owner announced that it parks: claim the notification.
    #[cold]
    fn claim(&self) -> bool {
        self.word.fetch_or(AWAKE, Relaxed) & AWAKE == 0
    }

    /// Owner: takes every ready task bit and marks the owner awake.
    ///
    /// The batch is the word shifted left by one: task `i` is bit `i + 1`,
    /// `AWAKE` falls off the top, and the shift's zero flag is the "nothing
    /// ready" test (one instruction where a mask and a test would be two).
    /// Bit 0 of a batch is never set.
    #[inline]
    pub(crate) fn take(&self) -> u64 {
        self.word.swap(AWAKE, Acquire) << 1
    }

    /// Owner: puts the bits of a batch (as [`ReadySet::take`] returned
    /// them) back. The owner is awake, so this never needs to notify; and it
    /// acquired whatever the bits' wakers wrote when it took them, so
    /// `Relaxed` is enough.
    #[inline]
    pub(crate) fn put_back(&self, batch: u64) {
        self.word.fetch_or(batch >> 1, Relaxed);
    }

    /// Owner: announces that it parks, if and only if nothing is ready.
    /// Afterwards the first [`ReadySet::mark`] returns `true`.
    ///
    /// `Relaxed`: the decision rests on this word's modification order
    /// alone; data is acquired later by [`ReadySet::take`].
    #[inline]
    pub(crate) fn try_sleep(&self) -> bool {
        self.word
            .compare_exchange(AWAKE, 0, Relaxed, Relaxed)
            .is_ok()
    }

    /// Owner: whether some task is ready.
    pub(crate) fn any_ready(&self) -> bool {
        self.word.load(Relaxed) << 1 != 0
    }

    /// `true` while no task has been woken since the owner announced that
    /// it parks. A [`Parker`](crate::Parker) calls it with notifications
    /// held back (x86: interrupts off) and sleeps only if it is `true`.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.word.load(Relaxed) == 0
    }
}
