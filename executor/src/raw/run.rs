//! The poll loop: take the ready word, poll each task at its boundary,
//! drop cancelled ones, record completions; and what happens when user
//! code panics in the middle of a batch.
//!
//! User code runs at four places here: the future's `poll`, a cancelled
//! future's `Drop`, a detached task's output's `Drop`, and the join
//! waker's `wake`. One guard ([`Unwind`]) is armed around the first three.
//! If any panics (host only: with `panic = "abort"`, the kernel's, the
//! guard compiles to nothing), the guard puts the unhandled rest of the
//! batch back into the ready word, poisons a slot whose storage was in
//! flux, and wakes the joiner of a poisoned slot; then the panic goes on to
//! the run loop's caller, and the next run loop polls the rest.
//!
//! The join waker runs last, once the slot's outcome is recorded and a
//! detached slot released, and nothing here reads the slot after it: it
//! may reach the owner's handles (through a thread-local, say), read the
//! output, which frees the slot, and spawn a new task into it. So it runs
//! under a smaller guard ([`PutBack`]) that only puts the rest of the batch
//! back, and never touches the slot's new occupant.

use core::mem;

use super::local::{Local, View};
use super::state::{Phase, GEN_MASK, LIVE, RUN};
use super::task::Header;
use crate::sync::Ordering::*;

impl Local {
    /// Polls ready tasks, batch after batch (each batch in slot order),
    /// until none is ready ([`Batch::Idle`] if none was to begin with,
    /// [`Batch::Drained`] otherwise) or one completed ([`Batch::Completed`]).
    /// `B` is the slot size: with it, the slot stride is a constant in the
    /// hot loop.
    ///
    /// # Safety
    /// Owner only, inside [`Local::enter`]; `B` is this executor's slot size.
    #[inline]
    pub(crate) unsafe fn run_ready<const B: usize>(&self, view: &View) -> Batch {
        // SAFETY: `head` points into the `'static` executor (`init`).
        let ready = &unsafe { &*view.head }.ready;
        let mut batch = ready.take();
        if batch == 0 {
            return Batch::Idle;
        }
        // `batch` is never empty at the top of this loop: one test per poll
        // says whether to take the next batch.
        loop {
            let bit = batch.trailing_zeros() as usize;
            batch &= !(1 << bit);
            // SAFETY: owner, inside `enter` (caller); `bit - 1` is a slot
            // index because every task bit in the ready word comes from a
            // `WakeRecord` that `init` made for a slot of this executor.
            if unsafe { self.poll_slot::<B>(view, bit, batch) } {
                // A task completed: put the rest of the batch back (the
                // owner is awake, so this never notifies) and let the run
                // loop look at its `done` condition.
                if batch != 0 {
                    ready.put_back(batch);
                }
                return Batch::Completed;
            }
            if batch == 0 {
                batch = ready.take();
                if batch == 0 {
                    return Batch::Drained;
                }
            }
        }
    }

    /// The poll boundary of the task whose ready bit is `bit` (slot
    /// `bit - 1`): poll it if it is live, or drop it if it was cancelled, or
    /// ignore a stale wake. `true` if the task completed. `rest` is what is
    /// left of the batch, put back if user code panics here.
    ///
    /// # Safety
    /// Owner only, inside [`Local::enter`]; `bit - 1` is a slot index.
    #[inline(always)]
    unsafe fn poll_slot<const B: usize>(&self, view: &View, bit: usize, rest: u64) -> bool {
        let header = view.header_of_bit::<B>(bit);
        let unwind = Unwind {
            local: self,
            bit,
            rest,
        };
        let completed = if header.state.load(Relaxed) & RUN == 0 {
            // SAFETY: owner, slot index (caller).
            unsafe { self.boundary(bit - 1) }
        } else {
            // SAFETY: `RUN` means the storage holds the future that `poll`
            // was set for, pinned in place; no run loop is active above this
            // one (`enter`), so nothing else references it. The slot pointer
            // comes from the slot array's (`task_of_bit`).
            let finished = unsafe { (header.poll.get())(view.task_of_bit::<B>(bit)) };
            match finished {
                None => None,
                Some(header) => {
                    // SAFETY: the poll function returns its slot's header,
                    // in the `'static` slot array.
                    let header = unsafe { header.as_ref() };
                    // SAFETY: owner, slot index (caller); the output is in
                    // place.
                    unsafe { self.complete(header, bit - 1) };
                    Some(header)
                }
            }
        };
        mem::forget(unwind);
        match completed {
            None => false,
            Some(header) => {
                // Last: see the module doc. A detached slot has no join
                // waker (`detach` took it), so a released slot is not read.
                if header.has_join_waker() {
                    wake_joiner(self, header, rest);
                }
                true
            }
        }
    }

    /// The cold side of a poll boundary: a cancelled task is dropped here
    /// (its header returned); a wake for a free or completed slot is
    /// ignored.
    #[cold]
    #[inline(never)]
    unsafe fn boundary(&self, i: usize) -> Option<&'static Header> {
        let view = self.view();
        let header = view.header(i);
        let state = header.state.load(Relaxed);
        if state & LIVE == 0 {
            return None;
        }
        // Clear `LIVE` first: from here on, tokens find the task complete.
        // `Dropping` while user code (the future's drop) runs: its own join
        // handle, if the drop reaches it, still finds the task unfinished.
        header.state.store(state & GEN_MASK, Relaxed);
        header.phase.set(Phase::Dropping);
        // SAFETY: the storage holds the live future (`LIVE`), which nothing
        // references between polls; it is dropped exactly once, here.
        unsafe { (header.drop.get())(view.slot(i), Phase::Live) };
        // SAFETY: owner, slot index (caller).
        unsafe { self.finish(header, i, Phase::Cancelled) };
        Some(header)
    }

    /// A poll of slot `i` (whose header is `header`) returned `Ready`: the
    /// output is in the storage. Inline: every spawned task ends here.
    #[inline(always)]
    unsafe fn complete(&self, header: &Header, i: usize) {
        // Not live any more; a cancel that raced with this last poll goes
        // with the cleared `RUN` bit: the task finished.
        let state = header.state.load(Relaxed);
        header.state.store(state & GEN_MASK, Relaxed);
        // SAFETY: owner, slot index (caller).
        unsafe { self.finish(header, i, Phase::Finished) };
    }

    /// Records the outcome of slot `i` (whose header is `header`) and frees
    /// a detached slot; the caller wakes the joiner after this. The common
    /// case (a join handle that has not been awaited yet) is a store and two
    /// tests.
    #[inline(always)]
    unsafe fn finish(&self, header: &Header, i: usize, outcome: Phase) {
        header.phase.set(outcome);
        if header.detached.get() {
            // SAFETY: owner, slot index (caller); no handle refers to it.
            unsafe { self.release_detached(i) };
        }
    }

    /// [`Local::release`], out of the hot loop.
    #[cold]
    #[inline(never)]
    unsafe fn release_detached(&self, i: usize) {
        // SAFETY: as the caller's.
        unsafe { self.release(self.view().slot_ref(i)) };
    }
}

/// Takes the join waker of a completed slot and wakes it, the last thing
/// done with the slot; if the wake panics, `rest` of the batch goes back
/// into the ready word.
#[cold]
#[inline(never)]
fn wake_joiner(local: &Local, header: &Header, rest: u64) {
    if let Some(waker) = header.join.take() {
        let put_back = PutBack { local, rest };
        waker.wake();
        mem::forget(put_back);
    }
}

/// Armed around the join waker's wake: if it panics, puts the rest of the
/// batch back, and nothing else (the slot may hold another task by then).
struct PutBack<'a> {
    local: &'a Local,
    rest: u64,
}

impl Drop for PutBack<'_> {
    #[cold]
    fn drop(&mut self) {
        // The owner is awake (it is polling), so this never notifies.
        if self.rest != 0 {
            self.local.head().ready.put_back(self.rest);
        }
    }
}

/// Why [`Local::run_ready`] returned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batch {
    /// Nothing was ready when it was called.
    Idle,
    /// It polled tasks until nothing was ready any more; none completed.
    Drained,
    /// A task finished or was cancelled (the rest of its batch was put back
    /// into the ready word).
    Completed,
}

/// Armed while the run loop handles one slot, around every call into user
/// code (see the module doc); disarmed with `mem::forget`. With
/// `panic = "abort"` (the kernel) nothing unwinds, and it compiles to
/// nothing.
struct Unwind<'a> {
    local: &'a Local,
    /// The slot's ready bit (slot `bit - 1`).
    bit: usize,
    /// The batch's bits not handled yet.
    rest: u64,
}

impl Drop for Unwind<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        unwound(self.local, self.bit - 1, self.rest);
    }
}

/// User code panicked while the run loop handled slot `i`, with `rest` of
/// its batch still to go.
#[cold]
#[inline(never)]
fn unwound(local: &Local, i: usize, rest: u64) {
    // First the rest of the batch, so that nothing below can lose it. The
    // owner is awake (it is polling), so this never notifies.
    if rest != 0 {
        local.head().ready.put_back(rest);
    }
    let header = local.view().header(i);
    match header.phase.get() {
        // The poll panicked (or the future's drop after `Ready`): the
        // storage is in flux. Never poll, drop or reuse it again.
        Phase::Live => {
            header.phase.set(Phase::Poisoned);
            let state = header.state.load(Relaxed);
            header.state.store(state & GEN_MASK, Relaxed);
        }
        // A cancelled future's drop panicked (`LIVE` is clear already).
        Phase::Dropping => header.phase.set(Phase::Poisoned),
        // A detached output's drop panicked: `release` poisoned the slot
        // before it ran.
        Phase::Poisoned => {}
        // Nothing else runs user code under this guard.
        Phase::Finished | Phase::Cancelled | Phase::Free => return,
    }
    // The joiner learns of the panic from its handle. (A join waker that
    // panics too, while this panic unwinds, aborts the process.)
    if let Some(waker) = header.join.take() {
        waker.wake();
    }
}
