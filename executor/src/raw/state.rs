//! A slot's `state` word and its [`Phase`]: whether the task is live,
//! whether someone asked to cancel it, and which occupant of the slot it
//! is (the generation). The owner stores the word; a cancel token on any
//! CPU clears its `RUN` bit; the phase is the owner's alone.

/// `Header::state` bits: poll this task at its next boundary (it is live
/// and nobody asked to cancel it). One bit, so the hot check is one `test`.
pub(super) const RUN: u32 = 1;
/// The task's future is in the slot. `LIVE` without `RUN`: cancel
/// requested. The rest of the word is a generation number.
pub(super) const LIVE: u32 = 2;
pub(super) const GEN_ONE: u32 = 4;
pub(super) const GEN_MASK: u32 = !(RUN | LIVE);

/// Where a slot is in its life (owner-only).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Phase {
    /// No task: the slot is in the free mask.
    Free,
    /// The storage holds the future.
    Live,
    /// A cancelled future's drop is running: the task is not finished yet
    /// (its join handle, if the drop reaches it, finds it so), and if the
    /// drop panics the slot is poisoned.
    Dropping,
    /// The storage holds the output, waiting for the join handle.
    Finished,
    /// The future was dropped by a cancel; the storage is empty.
    Cancelled,
    /// User code panicked while the storage was in flux: the slot is never
    /// touched again (not polled, not dropped, not reused, as `Pin` asks).
    Poisoned,
}
