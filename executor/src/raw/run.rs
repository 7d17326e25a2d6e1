//! The poll loop: take the ready word, poll each task at its boundary,
//! drop cancelled ones, record completions; and what happens when user
//! code panics in the middle of a batch.

use core::mem;

use super::local::{Local, View};
use super::state::{Phase, GEN_MASK, LIVE, RUN};
use crate::sync::Ordering::*;

impl Local {
    /// Polls ready tasks, batch after batch (each batch in slot order),
    /// until none is ready ([`Batch::Idle`]) or one completed
    /// ([`Batch::Completed`]). `B` is the slot size: with it, the slot
    /// stride is a constant in the hot loop.
    ///
    /// # Safety
    /// Owner only, inside [`Local::enter`]; `B` is this executor's slot size.
    #[inline]
    pub(crate) unsafe fn run_ready<const B: usize>(&self, view: &View) -> Batch {
        // SAFETY: `head` points into the `'static` executor (`init`).
        let ready = &unsafe { &*view.head }.ready;
        loop {
            let mut batch = ready.take();
            if batch == 0 {
                return Batch::Idle;
            }
            while batch != 0 {
                let bit = batch.trailing_zeros() as usize;
                batch &= !(1 << bit);
                // SAFETY: owner, inside `enter` (caller); `bit - 1` is a
                // slot index because every task bit in the ready word comes
                // from a `WakeRecord` that `init` made for a slot of this
                // executor.
                if unsafe { self.poll_slot::<B>(view, bit) } {
                    // SAFETY: as above.
                    return unsafe { self.completed(view, batch) };
                }
            }
        }
    }

    /// The poll boundary of the task whose ready bit is `bit` (slot
    /// `bit - 1`): poll it if it is live, or drop it if it was cancelled, or
    /// ignore a stale wake. `true` if the task completed.
    ///
    /// # Safety
    /// Owner only, inside [`Local::enter`]; `bit - 1` is a slot index.
    #[inline(always)]
    unsafe fn poll_slot<const B: usize>(&self, view: &View, bit: usize) -> bool {
        let header = view.header_of_bit::<B>(bit);
        if header.state.load(Relaxed) & RUN == 0 {
            // SAFETY: owner, slot index (caller).
            return unsafe { self.boundary(bit - 1) };
        }
        let unwind = Unwind { local: self, bit };
        // SAFETY: `RUN` means the storage holds the future that `poll` was
        // set for, pinned in place; no run loop is active above this one
        // (`enter`), so nothing else references it.
        let finished = unsafe { (header.poll.get())(view.slot_of_bit::<B>(bit), header.waker()) };
        mem::forget(unwind);
        if finished {
            // SAFETY: owner, slot index (caller); the output is in place.
            unsafe { self.complete(bit - 1) };
        }
        finished
    }

    /// A task completed in the middle of a batch: put the rest of the batch
    /// back (the owner is awake, so this never notifies) and let the run
    /// loop look at its `done` condition.
    #[cold]
    #[inline(never)]
    unsafe fn completed(&self, view: &View, rest: u64) -> Batch {
        if rest != 0 {
            // SAFETY: `head` points into the `'static` executor (`init`).
            unsafe { &*view.head }.ready.mark(rest);
        }
        Batch::Completed
    }

    /// The cold side of a poll boundary: a cancelled task is dropped here
    /// (`true`); a wake for a free or completed slot is ignored.
    #[cold]
    #[inline(never)]
    unsafe fn boundary(&self, i: usize) -> bool {
        let view = self.view();
        let header = view.header(i);
        let state = header.state.load(Relaxed);
        if state & LIVE == 0 {
            return false;
        }
        // Clear `LIVE` first: from here on, tokens find the task complete.
        // Mark the slot poisoned while user code (the future's drop) runs.
        header.state.store(state & GEN_MASK, Relaxed);
        header.phase.set(Phase::Poisoned);
        // SAFETY: the storage holds the live future (`LIVE`), which nothing
        // references between polls; it is dropped exactly once, here.
        unsafe { (header.drop.get())(view.slot(i), Phase::Live) };
        // SAFETY: owner, slot index (caller).
        unsafe { self.finish(i, Phase::Cancelled) };
        true
    }

    /// A poll returned `Ready`: the output is in the storage.
    #[cold]
    #[inline(never)]
    unsafe fn complete(&self, i: usize) {
        let header = self.view().header(i);
        // Not live any more; a cancel that raced with this last poll goes
        // with the cleared `RUN` bit: the task finished.
        let state = header.state.load(Relaxed);
        header.state.store(state & GEN_MASK, Relaxed);
        // SAFETY: owner, slot index (caller).
        unsafe { self.finish(i, Phase::Finished) };
    }

    /// Records the outcome, wakes the joiner, and frees a detached slot.
    unsafe fn finish(&self, i: usize, outcome: Phase) {
        let header = self.view().header(i);
        header.phase.set(outcome);
        if let Some(waker) = header.join.take() {
            waker.wake();
        }
        if header.detached.get() {
            // SAFETY: owner, slot index (caller); no handle refers to it.
            unsafe { self.release(i) };
        }
    }
}

/// Why [`Local::run_ready`] returned: the run loop calls `done()` only
/// then.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batch {
    /// Nothing is ready.
    Idle,
    /// A task finished or was cancelled (the rest of its batch was put back
    /// into the ready word).
    Completed,
}

/// Armed around a poll: if the future panics, its slot is poisoned (never
/// polled, dropped or reused again) and every other live task is marked
/// ready, so that the unpolled rest of the batch is not lost. With
/// `panic = "abort"` (the kernel) it compiles to nothing.
struct Unwind<'a> {
    local: &'a Local,
    bit: usize,
}

impl Drop for Unwind<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        poison(self.local, self.bit - 1);
    }
}

/// A poll of slot `i` panicked.
#[cold]
#[inline(never)]
fn poison(local: &Local, i: usize) {
    let view = local.view();
    let header = view.header(i);
    header.phase.set(Phase::Poisoned);
    let state = header.state.load(Relaxed);
    header.state.store(state & GEN_MASK, Relaxed);
    if let Some(waker) = header.join.take() {
        waker.wake();
    }
    let live = view.all & !local.free.get() & !(1 << i);
    if live != 0 {
        // The owner is awake (it is polling), so this never notifies.
        local.head().ready.mark(live << 1);
    }
}
