//! The owner's side of an executor: [`Local`], its view of the slots, and
//! the slot life cycle outside the poll loop (spawn, `spawn_now` and its
//! first poll, join, detach, release, cancel tokens, flag waiters). Only
//! the owner's `!Send` handles reach a `Local`, so its `Cell`s need no
//! synchronisation.

use core::cell::{Cell, UnsafeCell};
use core::future::Future;
use core::mem;
use core::ptr::{self, NonNull};
use core::task::{RawWakerVTable, Waker};

use super::cancel::RawCancel;
use super::ready::task_bit;
use super::shared::{Core, Head};
use super::state::{Phase, GEN_MASK, GEN_ONE, LIVE, RUN};
use super::task::{drop_contents, poll_future, Header, Task, STORAGE_OFFSET};
use super::waker::{WakeRecord, NOOP_VTABLE};
use super::MAX_TASKS;
use crate::sync::{maybe_const_fn, Ordering::*};
use crate::Notifier;

// === impl Local ===

/// The owner's view of its executor, with the types erased: where the
/// slots are and how far apart. Written once by `init`, then read by the
/// owner's handles only.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub(super) head: *const Head,
    tasks: *const u8,
    stride: usize,
    /// One bit per slot.
    all: u64,
    waker_vtable: &'static RawWakerVTable,
}

/// What only the owner of an executor touches. `Cell`s: the safe handles
/// that reach it are `!Send`, and they exist only on the owner.
pub(crate) struct Local {
    /// Written once by `init`, before any handle exists; read-only after.
    view: UnsafeCell<View>,
    /// One bit per free slot.
    free: Cell<u64>,
    /// A run loop is on the stack (guards against re-entrant polls).
    running: Cell<bool>,
}

impl Local {
    maybe_const_fn! {
        pub(crate) fn new() -> Self {
            Self {
                view: UnsafeCell::new(View {
                    head: ptr::null(),
                    tasks: ptr::null(),
                    stride: 0,
                    all: 0,
                    waker_vtable: &NOOP_VTABLE,
                }),
                free: Cell::new(0),
                running: Cell::new(false),
            }
        }
    }

    /// Makes this the view of `core` and `tasks`, and gives every slot its
    /// waker.
    ///
    /// # Safety
    /// Called once, by the caller that won the claim, before any handle to
    /// this `Local` exists; both live in the same `'static` executor.
    pub(crate) unsafe fn init<N: Notifier, const B: usize>(
        &self,
        core: &'static Core<N>,
        tasks: &'static [Task<B>],
    ) {
        assert!(tasks.len() <= MAX_TASKS);
        let vtable: &'static RawWakerVTable = &Core::<N>::VTABLE;
        core.head
            .vtable
            .store(ptr::from_ref(vtable).cast_mut(), Relaxed);
        for (i, task) in tasks.iter().enumerate() {
            let header = &task.header;
            let record = header.record.get();
            // SAFETY: no handle exists yet (caller), so nothing else reads
            // or writes these cells; afterwards they are only read. The
            // waker's data is the record of this `'static` slot, pointing at
            // this executor's `Core<N>`: what `Core::<N>::wake` decodes; its
            // functions are thread-safe (atomics and a `Sync` notifier), as
            // `Waker` requires.
            unsafe {
                *record = WakeRecord {
                    mask: task_bit(i),
                    core: ptr::from_ref(core).cast(),
                };
                *header.waker.get() = Waker::new(record.cast_const().cast(), vtable);
            }
        }
        let all = (1u64 << tasks.len()) - 1;
        // SAFETY: no handle exists yet (caller): nothing borrows the view.
        unsafe {
            *self.view.get() = View {
                head: &core.head,
                tasks: tasks.as_ptr().cast(),
                stride: mem::size_of::<Task<B>>(),
                all,
                waker_vtable: vtable,
            }
        };
        self.free.set(all);
    }

    /// The ready word, counters and flag waiters.
    pub(crate) fn head(&self) -> &Head {
        // SAFETY: `init` pointed `head` into the `'static` executor before
        // any handle that can call this existed.
        unsafe { &*self.view().head }
    }

    /// Marks a run loop active; panics if one already is (a task that runs
    /// its own executor would alias the future being polled).
    pub(crate) fn enter(&self) -> Running<'_> {
        // A test and a store: `replace` would load into a register and
        // compare there, one instruction more.
        assert!(
            !self.running.get(),
            "executor run re-entered from inside a task"
        );
        self.running.set(true);
        Running(self)
    }

    /// The view of the slots.
    #[inline(always)]
    pub(crate) fn view(&self) -> &View {
        // SAFETY: `init` wrote it before any handle (any caller of this)
        // existed, and nothing writes it again.
        unsafe { &*self.view.get() }
    }

    /// Drops a finished task's output (if any) and frees the slot, unless it
    /// is poisoned.
    ///
    /// # Safety
    /// Owner only; `slot` is complete and no join handle will read it.
    pub(crate) unsafe fn release(&self, slot: Slot) {
        let header = slot.header();
        // Poisoned while the output's drop (user code) runs: if it panics,
        // the slot is never touched again.
        match header.phase.replace(Phase::Poisoned) {
            Phase::Poisoned => return,
            Phase::Finished => {
                // SAFETY: the storage holds the output (`Finished`), read by
                // nobody (caller); dropped once, here. The drop function is
                // this task's own: a finished slot comes here only from the
                // run loop's detached path, and only a task published to the
                // run loop (`publish`, which writes it) can be detached
                // (join handles release finished outputs themselves, with
                // `release_output`).
                unsafe { (header.drop.get())(slot.storage(), Phase::Finished) };
            }
            _ => {}
        }
        header.phase.set(Phase::Free);
        self.free.set(self.free.get() | header.mask());
    }

    /// Moves `future` into a free slot and marks it ready; gives the future
    /// back if every slot is taken.
    ///
    /// # Safety
    /// Owner only; `F` and `F::Output` fit the slot storage ([`fits`](super::fits)).
    pub(crate) unsafe fn spawn<F: Future + 'static>(&self, future: F) -> Result<Slot, F> {
        let Some((i, bit)) = self.take_free() else {
            return Err(future);
        };
        let slot = self.view().slot_ref(i);
        // SAFETY: the slot was free, so its storage holds nothing and
        // nothing refers to it; `F` fits it (caller).
        unsafe { slot.storage().cast::<F>().write(future) };
        publish::<F>(slot.header());
        // The owner is awake whenever it spawns (the word has `AWAKE`
        // outside `park`), so this mark never needs to notify anyone.
        self.head().ready.mark(bit);
        Ok(slot)
    }

    /// Moves `future` into a free slot and polls it once, here, before it is
    /// published to the run loop: a future that is ready at its first poll
    /// never touches the ready word, its poll and drop functions or its
    /// state word. Gives the future back if every slot is taken.
    ///
    /// The first poll is a poll like the run loop's: it counts as a run
    /// loop (`running`), so a run loop started from inside it panics, as
    /// from any task; and if it panics (host only) the slot is poisoned.
    ///
    /// # Safety
    /// Owner only; `F` and `F::Output` fit the slot storage ([`fits`](super::fits)).
    #[inline(always)]
    pub(crate) unsafe fn spawn_now<F: Future + 'static>(&self, future: F) -> Result<Slot, F> {
        let Some((i, _)) = self.take_free() else {
            return Err(future);
        };
        // Computed once, before the stores below (which the compiler cannot
        // tell apart from the view), and kept for the handle.
        let slot = self.view().slot_ref(i);
        // SAFETY: the slot was free, so its storage holds nothing and
        // nothing refers to it; `F` fits it (caller).
        unsafe { slot.storage().cast::<F>().write(future) };
        let first = FirstPoll {
            local: self,
            i,
            outer: self.running.replace(true),
        };
        // SAFETY: `slot` is slot `i`'s address, from the slot array's
        // pointer; its storage holds the `F` just written, pinned there from
        // now on; `F::Output` fits it (caller). Nothing else refers to the
        // slot: no handle exists yet, its state word is not `LIVE` (so a
        // stale wake of an earlier occupant is ignored), and `running` keeps
        // any run loop from starting while this poll runs.
        let finished = unsafe { poll_future::<F>(slot.0.as_ptr()) }.is_some();
        let outer = first.outer;
        mem::forget(first);
        self.running.set(outer);
        let header = slot.header();
        if finished {
            // The output is in place. Nothing ever polls or drops this slot
            // through its type-erased functions (its state word never had
            // `RUN`, and the join handle drops the output with its type), so
            // they and the state word stay as they were; tokens made from
            // the handle find the task complete (no `LIVE`).
            header.phase.set(Phase::Finished);
        } else {
            // Pending: the future left its waker where it wanted to be woken
            // (a wake during the poll set the ready bit, which the run loop
            // takes once `publish` set `RUN`), so the slot only needs
            // what the run loop reads.
            publish::<F>(header);
        }
        Ok(slot)
    }

    /// Takes the lowest free slot out of the free mask: its index and its
    /// bit (the free mask's bits are the ready word's task bits).
    #[inline(always)]
    fn take_free(&self) -> Option<(usize, u64)> {
        let free = self.free.get();
        if free == 0 {
            return None;
        }
        let rest = free & (free - 1);
        self.free.set(rest);
        Some((free.trailing_zeros() as usize, free ^ rest))
    }

    /// Drops a finished task's output, a `T` (so the slot's drop function
    /// is not needed: [`Local::spawn_now`] does not set it), and frees the
    /// slot.
    ///
    /// # Safety
    /// Owner only; `slot` is `Finished` with an output of type `T`, and no
    /// join handle will read it.
    pub(crate) unsafe fn release_output<T>(&self, slot: Slot) {
        let header = slot.header();
        // Poisoned while the output's drop (user code) runs, as in `release`.
        header.phase.set(Phase::Poisoned);
        // SAFETY: the storage holds a `T` (caller), read by nobody; dropped
        // once, here.
        unsafe { ptr::drop_in_place(slot.storage().cast::<T>()) };
        header.phase.set(Phase::Free);
        self.free.set(self.free.get() | header.mask());
    }

    /// `slot`'s phase (owner only).
    #[inline(always)]
    pub(crate) fn phase(&self, slot: Slot) -> Phase {
        slot.header().phase.get()
    }

    /// Reads a finished task's output and frees its slot.
    ///
    /// # Safety
    /// Owner only; `slot` is `Finished` with an output of type `T`.
    #[inline(always)]
    pub(crate) unsafe fn take_output<T>(&self, slot: Slot) -> T {
        // SAFETY: the storage holds a `T` (caller), read once: the slot is
        // freed right after without dropping it.
        let output = unsafe { slot.storage().cast::<T>().read() };
        let header = slot.header();
        header.phase.set(Phase::Free);
        // The record's mask is the slot's bit in the free mask too: one load
        // where `1 << i` is three instructions.
        self.free.set(self.free.get() | header.mask());
        output
    }

    /// Registers who awaits `slot`'s completion.
    pub(crate) fn set_join_waker(&self, slot: Slot, waker: &Waker) {
        let join = &slot.header().join;
        match join.take() {
            Some(old) if old.will_wake(waker) => join.set(Some(old)),
            _ => join.set(Some(waker.clone())),
        }
    }

    /// The join handle of live `slot` is gone.
    pub(crate) fn detach(&self, slot: Slot) {
        let header = slot.header();
        header.detached.set(true);
        drop(header.join.take());
    }

    /// A token that cancels the task now in `slot`, and no later occupant.
    pub(crate) fn cancel_token(&self, slot: Slot) -> RawCancel {
        let header = slot.header();
        RawCancel::new(&header.state, header.waker().clone())
    }

    /// Registers the task whose waker this is as a flag waiter; `false` if
    /// it is not a task of this executor.
    pub(crate) fn add_flag_waiter(&self, waker: &Waker) -> bool {
        let view = self.view();
        let first_record = view.tasks.addr() + mem::offset_of!(Header, record);
        let offset = waker.data().addr().wrapping_sub(first_record);
        let ours = ptr::eq(waker.vtable(), view.waker_vtable)
            && offset < view.all.count_ones() as usize * view.stride
            && offset.is_multiple_of(view.stride);
        if ours {
            let mask = task_bit(offset / view.stride);
            self.head().flag_waiters.fetch_or(mask, Relaxed);
        }
        ours
    }

    /// The free-slot mask (owner only).
    pub(crate) fn free_mask(&self) -> u64 {
        self.free.get()
    }
}

impl View {
    /// Slot `i`'s header.
    #[inline(always)]
    pub(super) fn header(&self, i: usize) -> &'static Header {
        // SAFETY: every caller passes a slot index (`i < len`), and `init`
        // pointed `tasks` at the `'static` slot array of `stride`-sized
        // `Task`s, each starting with its header.
        unsafe { &*self.tasks.add(i * self.stride).cast::<Header>() }
    }

    /// The header of the task whose ready bit is `bit` (slot `bit - 1`):
    /// indexed from one slot before the first, which saves the hot loop a
    /// subtraction.
    #[inline(always)]
    pub(super) fn header_of_bit<const B: usize>(&self, bit: usize) -> &'static Header {
        const { assert!(B > 0) };
        debug_assert_eq!(mem::size_of::<Task<B>>(), self.stride);
        let header = self.task_of_bit::<B>(bit);
        // SAFETY: `bit - 1` is a slot index and `B` the slot size (callers),
        // so `header` is that slot's header, in the `'static` slot array.
        unsafe { &*header.cast::<Header>() }
    }

    /// The slot (header, then storage) of the task whose ready bit is
    /// `bit`, derived (like every slot pointer) from the whole array's
    /// pointer, whose provenance covers the storage, not from the header's
    /// reference.
    #[inline(always)]
    pub(super) fn task_of_bit<const B: usize>(&self, bit: usize) -> *mut u8 {
        let stride = mem::size_of::<Task<B>>();
        let before = self.tasks.wrapping_sub(stride);
        before.wrapping_add(bit * stride).cast_mut()
    }

    /// Slot `i` (header, then storage), derived from the slot array's
    /// pointer, whose provenance covers the storage.
    #[inline(always)]
    pub(super) fn task(&self, i: usize) -> *mut u8 {
        self.tasks.wrapping_add(i * self.stride).cast_mut()
    }

    /// Slot `i`'s storage.
    #[inline(always)]
    pub(super) fn slot(&self, i: usize) -> *mut u8 {
        // SAFETY: as in `header`; the storage is `STORAGE_OFFSET` further,
        // inside the same `Task`, and in an `UnsafeCell`, so writing
        // through a pointer derived from the shared slot array is allowed.
        unsafe { self.tasks.add(i * self.stride + STORAGE_OFFSET).cast_mut() }
    }

    /// Slot `i` as join handles keep it.
    #[inline(always)]
    pub(super) fn slot_ref(&self, i: usize) -> Slot {
        // SAFETY: `tasks` is the slot array's pointer (`init`), not null, and
        // slot `i` (every caller passes a slot index) is inside the array,
        // so its address is not null either.
        Slot(unsafe { NonNull::new_unchecked(self.task(i)) })
    }
}

// === impl Slot ===

/// A slot's address, as a join handle keeps it: derived from the slot
/// array's pointer, so that its provenance covers the storage. Made only by
/// [`View::slot_ref`], for a slot of a claimed executor (in its `'static`
/// slot array); only the owner's handles hold one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(NonNull<u8>);

impl Slot {
    /// The slot's header.
    #[inline(always)]
    fn header(self) -> &'static Header {
        // SAFETY: a `Slot` is the address of a slot (`slot_ref`), which
        // starts with its header, in the `'static` slot array.
        unsafe { self.0.cast::<Header>().as_ref() }
    }

    /// The slot's storage.
    #[inline(always)]
    fn storage(self) -> *mut u8 {
        self.0.as_ptr().wrapping_add(STORAGE_OFFSET)
    }

    /// The slot's index in its executor.
    pub(crate) fn index(self) -> usize {
        self.header().mask().trailing_zeros() as usize
    }
}

/// Clears [`Local::running`] when a run loop ends, even by a panic.
pub(crate) struct Running<'a>(&'a Local);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.set(false);
    }
}

/// Makes a slot that holds a fresh `F` live for the run loop: its poll and
/// drop functions, its phase, and the next generation in its state word,
/// live and runnable.
#[inline(always)]
fn publish<F: Future + 'static>(header: &Header) {
    header.poll.set(poll_future::<F>);
    header.drop.set(drop_contents::<F>);
    header.phase.set(Phase::Live);
    header.detached.set(false);
    // A slot that is not live has `LIVE` and `RUN` clear (every path that
    // ends a task stores the bare generation), so one addition starts the
    // next generation, live and runnable.
    let state = header.state.load(Relaxed);
    debug_assert_eq!(state & !GEN_MASK, 0);
    header
        .state
        .store(state.wrapping_add(GEN_ONE | LIVE | RUN), Relaxed);
}

/// Armed around [`Local::spawn_now`]'s first poll, disarmed with
/// `mem::forget`; if the poll panics (host only), it poisons the slot (its
/// storage is in flux, and `Pin` forbids reusing it) and gives `running`
/// back its value. With `panic = "abort"` it compiles to nothing.
struct FirstPoll<'a> {
    local: &'a Local,
    i: usize,
    /// `running` before the poll: `true` when the caller is itself a task.
    outer: bool,
}

impl Drop for FirstPoll<'_> {
    #[cold]
    fn drop(&mut self) {
        // Out of the free mask (`take_free`), never `LIVE`, no handle: the
        // slot is never polled, dropped or reused again.
        self.local.view().header(self.i).phase.set(Phase::Poisoned);
        self.local.running.set(self.outer);
    }
}
