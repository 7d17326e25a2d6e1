//! The unsafe core: the ready word, the task slots, the waker and the poll
//! loop. Every `unsafe` block of the executor proper is in this file; the
//! safe types in `runtime` are thin wrappers that uphold the one rule the
//! core relies on: *only the owner touches the slots*.
//!
//! # The ready word
//!
//! One `AtomicU64` per executor ([`ReadySet`]). Bit `i + 1` says "task `i`
//! wants a poll"; bit 0, `AWAKE`, says "the owner is running, or has been
//! notified, and will read this word again before it sleeps". Who touches
//! it, and how:
//!
//! | who | operation | why |
//! |---|---|---|
//! | waker (any CPU, any context) | `fetch_or(bit)`, then load: `AWAKE` set? | mark ready; nothing else to do if the owner is up |
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
//!
//! # Slots
//!
//! A slot ([`Task`]) is a [`Header`] and then `BYTES` bytes of storage
//! aligned to [`ALIGN`]. The storage holds the task's future while it runs,
//! then its output until the [`JoinHandle`](crate::JoinHandle) takes it. The
//! header's `state` word is the only part of a slot other CPUs write (a
//! [`CancelToken`](crate::CancelToken) clears its `RUN` bit); the rest is
//! owner-only and lives in `Cell`s.
//!
//! # The waker
//!
//! A waker's data pointer is its slot's [`WakeRecord`]: the address of the
//! executor's core and the task's bit. Clone and drop do nothing; wake is
//! `Core::wake_mask`. So a waker costs no reference count, stays valid for
//! ever (executors are `'static`), and waking a task that has finished, or
//! whose slot now holds another task, costs at worst one spurious poll. The
//! owner never builds a waker or a `Context` to poll: `claim` builds both
//! once per slot.

use core::cell::{Cell, UnsafeCell};
use core::future::Future;
use core::mem::{self, MaybeUninit};
use core::pin::Pin;
use core::ptr;
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::sync::{maybe_const_fn, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering::*};
use crate::Notifier;

/// The most tasks one executor holds: one bit each in the ready word, whose
/// bit 0 is the owner's `AWAKE` marker.
pub const MAX_TASKS: usize = 63;

/// The alignment of every slot's storage: futures and outputs aligned more
/// strictly than this are refused at compile time.
pub const ALIGN: usize = 16;

/// Ready-word marker: the owner is awake (or notified) and will read the
/// word again before it sleeps.
const AWAKE: u64 = 1;

/// Task `i`'s bit in the ready word.
const fn task_bit(i: usize) -> u64 {
    2 << i
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
    /// The load and the claim need no ordering: they are about this word
    /// alone, and coherence gives the load a value at or after the `or`.
    #[inline]
    pub(crate) fn mark(&self, mask: u64) -> bool {
        self.word.fetch_or(mask, Release);
        self.word.load(Relaxed) & AWAKE == 0 && self.claim()
    }

    /// The owner announced that it parks: claim the notification.
    #[cold]
    fn claim(&self) -> bool {
        self.word.fetch_or(AWAKE, Relaxed) & AWAKE == 0
    }

    /// Owner: takes every ready task bit and marks the owner awake.
    #[inline]
    pub(crate) fn take(&self) -> u64 {
        self.word.swap(AWAKE, Acquire) & !AWAKE
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
        self.word.load(Relaxed) & !AWAKE != 0
    }

    /// `true` while no task has been woken since the owner announced that
    /// it parks. A [`Parker`](crate::Parker) calls it with notifications
    /// held back (x86: interrupts off) and sleeps only if it is `true`.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.word.load(Relaxed) == 0
    }
}

// === impl Core ===

/// The part of an executor that other CPUs touch: the ready word, the flag
/// waiters, the counters and the notifier. The ready word comes first: the
/// wake path reaches it by the core's address alone.
#[repr(C, align(64))]
pub(crate) struct Core<N> {
    pub(crate) head: Head,
    pub(crate) notifier: N,
}

/// The notifier-independent prefix of [`Core`].
#[repr(C)]
pub(crate) struct Head {
    pub(crate) ready: ReadySet,
    /// Tasks waiting for a shared-memory flag (see [`crate::WaitFlag`]).
    pub(crate) flag_waiters: AtomicU64,
    /// Wakes that claimed the notification and called the notifier.
    pub(crate) notified: AtomicU64,
    /// Times the owner announced that it parks (written by the owner only).
    pub(crate) parks: AtomicU64,
    /// Set by the one successful [`crate::Executor::claim`].
    pub(crate) claimed: AtomicBool,
    /// The one `&Core::<N>::VTABLE` every waker of this executor carries,
    /// chosen by `init`. Clones copy it, so that a waker and its clones
    /// compare equal (`will_wake`) even where two evaluations of the same
    /// constant could yield two addresses (Miri does that).
    vtable: AtomicPtr<RawWakerVTable>,
}

impl<N: Notifier> Core<N> {
    maybe_const_fn! {
        pub(crate) fn new(notifier: N) -> Self {
            Self {
                head: Head {
                    ready: ReadySet::new(),
                    flag_waiters: AtomicU64::new(0),
                    notified: AtomicU64::new(0),
                    parks: AtomicU64::new(0),
                    claimed: AtomicBool::new(false),
                    vtable: AtomicPtr::new(ptr::null_mut()),
                },
                notifier,
            }
        }
    }

    /// The vtable of this executor type's wakers.
    pub(crate) const VTABLE: RawWakerVTable =
        RawWakerVTable::new(Self::clone_waker, Self::wake, Self::wake, drop_waker);

    /// The wake path: `lock or`, a test of `AWAKE`, and a notification
    /// only if the owner parked.
    #[inline]
    pub(crate) fn wake_mask(&self, mask: u64) {
        if self.head.ready.mark(mask) {
            self.notify();
        } else {
            self.notifier.skipped();
        }
    }

    /// The owner may be asleep: out of line, so that the common path stays
    /// a leaf function.
    #[cold]
    #[inline(never)]
    fn notify(&self) {
        self.head.notified.fetch_add(1, Relaxed);
        self.notifier.notify();
    }

    unsafe fn clone_waker(data: *const ()) -> RawWaker {
        // SAFETY: as in `wake`: `data` is a `WakeRecord` of a `'static`
        // executor whose core is a `Core<N>`.
        let core = unsafe { &*(*data.cast::<WakeRecord>()).core.cast::<Self>() };
        let vtable = core.head.vtable.load(Relaxed);
        // SAFETY: `init` stored `&Core::<N>::VTABLE` there before making
        // the first waker, and the waker being cloned came after that.
        RawWaker::new(data, unsafe { &*vtable })
    }

    unsafe fn wake(data: *const ()) {
        // SAFETY: wakers with this vtable are made only by `Local::init`,
        // from a slot's `WakeRecord` in a `'static` executor whose record
        // points at this `Core<N>` (the vtable fixes `N`). Both are only
        // ever shared after `init`, so shared references are valid here,
        // on any CPU.
        let record = unsafe { &*data.cast::<WakeRecord>() };
        let mask = record.mask;
        // SAFETY: as above.
        let core = unsafe { &*record.core.cast::<Self>() };
        core.wake_mask(mask);
    }
}

unsafe fn drop_waker(_: *const ()) {}

/// What a waker's data pointer points at: which executor, which task.
#[repr(C)]
struct WakeRecord {
    mask: u64,
    core: *const (),
}

// === impl Header ===

/// `Header::state` bits: poll this task at its next boundary (it is live
/// and nobody asked to cancel it). One bit, so the hot check is one `test`.
const RUN: u32 = 1;
/// The task's future is in the slot. `LIVE` without `RUN`: cancel
/// requested. The rest of the word is a generation number.
const LIVE: u32 = 2;
const GEN_ONE: u32 = 4;
const GEN_MASK: u32 = !(RUN | LIVE);

/// Where a slot is in its life (owner-only).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Phase {
    /// No task: the slot is in the free mask.
    Free,
    /// The storage holds the future.
    Live,
    /// The storage holds the output, waiting for the join handle.
    Finished,
    /// The future was dropped by a cancel; the storage is empty.
    Cancelled,
    /// User code panicked while the storage was in flux: the slot is never
    /// touched again (not polled, not dropped, not reused, as `Pin` asks).
    Poisoned,
}

type PollFn = unsafe fn(*mut u8, &mut Context<'_>) -> bool;
type DropFn = unsafe fn(*mut u8, Phase);

/// One task slot's bookkeeping; the storage follows it in its [`Task`].
pub(crate) struct Header {
    /// `generation | LIVE | RUN`. The owner stores it; a cancel token
    /// clears `RUN` with a compare-exchange that checks the generation.
    state: AtomicU32,
    phase: Cell<Phase>,
    /// The join handle is gone: free the slot as soon as the task completes.
    detached: Cell<bool>,
    /// Polls the future in the storage; `true` when it finished (the
    /// storage then holds the output).
    poll: Cell<PollFn>,
    /// Drops the future (`Phase::Live`) or the output (`Phase::Finished`).
    drop: Cell<DropFn>,
    /// Who awaits the join handle.
    join: Cell<Option<Waker>>,
    /// This slot's waker, its data and the `Context` that lends it to the
    /// future: made once by `init`, read-only afterwards.
    record: UnsafeCell<WakeRecord>,
    waker: UnsafeCell<Waker>,
    context: UnsafeCell<Context<'static>>,
}

impl Header {
    maybe_const_fn! {
        pub(crate) fn new() -> Self {
            Self {
                state: AtomicU32::new(0),
                phase: Cell::new(Phase::Free),
                detached: Cell::new(false),
                poll: Cell::new(poll_nothing),
                drop: Cell::new(drop_nothing),
                join: Cell::new(None),
                record: UnsafeCell::new(WakeRecord { mask: 0, core: ptr::null() }),
                waker: UnsafeCell::new(NOOP_WAKER),
                context: UnsafeCell::new(Context::from_waker(Waker::noop())),
            }
        }
    }
}

/// Placeholder until `init` writes the real wakers.
// SAFETY: `NOOP_VTABLE`'s functions ignore the data pointer.
const NOOP_WAKER: Waker = unsafe { Waker::new(ptr::null(), &NOOP_VTABLE) };

/// The vtable of [`NOOP_WAKER`].
const NOOP_VTABLE: RawWakerVTable = RawWakerVTable::new(
    |d| RawWaker::new(d, &NOOP_VTABLE),
    drop_waker,
    drop_waker,
    drop_waker,
);

unsafe fn poll_nothing(_: *mut u8, _: &mut Context<'_>) -> bool {
    false
}

unsafe fn drop_nothing(_: *mut u8, _: Phase) {}

/// Polls the `F` in a slot's storage; on `Ready` drops it and moves the
/// output into the same storage.
///
/// # Safety
/// `slot` holds a live, pinned `F` and has room and alignment for
/// `F::Output`; only the owner calls this, never re-entrantly for a slot.
unsafe fn poll_future<F: Future>(slot: *mut u8, cx: &mut Context<'_>) -> bool {
    // SAFETY: the storage holds a live `F` (caller); it never moves until it
    // is dropped in place, so pinning it is sound; no other reference to it
    // exists while the owner polls it.
    let future = unsafe { Pin::new_unchecked(&mut *slot.cast::<F>()) };
    match future.poll(cx) {
        Poll::Pending => false,
        Poll::Ready(output) => {
            // SAFETY: the future is done and no reference to it remains;
            // dropping it in place keeps `Pin`'s drop guarantee. The storage
            // then has room and alignment for the output (caller).
            unsafe {
                ptr::drop_in_place(slot.cast::<F>());
                slot.cast::<F::Output>().write(output);
            }
            true
        }
    }
}

/// Drops what a slot's storage holds in `phase`.
///
/// # Safety
/// In `Phase::Live` the storage holds a live `F`, in `Phase::Finished` an
/// `F::Output`; it is not used again until rewritten.
unsafe fn drop_contents<F: Future>(slot: *mut u8, phase: Phase) {
    match phase {
        // SAFETY: the storage holds a live `F` (caller), dropped in place.
        Phase::Live => unsafe { ptr::drop_in_place(slot.cast::<F>()) },
        // SAFETY: the storage holds an `F::Output` (caller).
        Phase::Finished => unsafe { ptr::drop_in_place(slot.cast::<F::Output>()) },
        _ => {}
    }
}

/// A slot's storage: `B` bytes aligned to [`ALIGN`].
#[repr(C, align(16))]
struct Block<const B: usize>(MaybeUninit<[u8; B]>);

/// A task slot: its header, then its storage at a fixed offset
/// ([`STORAGE_OFFSET`]) whatever `B` is, so that the owner's code needs only
/// the slot stride to find both.
#[repr(C)]
pub(crate) struct Task<const B: usize> {
    header: Header,
    storage: UnsafeCell<Block<B>>,
}

impl<const B: usize> Task<B> {
    maybe_const_fn! {
        pub(crate) fn new() -> Self {
            Self { header: Header::new(), storage: UnsafeCell::new(Block(MaybeUninit::uninit())) }
        }
    }
}

/// Where a slot's storage starts, from the start of its header.
const STORAGE_OFFSET: usize = mem::offset_of!(Task<1>, storage);

const _: () = assert!(mem::align_of::<Block<1>>() == ALIGN);
const _: () = assert!(STORAGE_OFFSET == mem::offset_of!(Task<4096>, storage));

/// Whether a `T` fits a slot of `bytes` bytes.
pub(crate) const fn fits<T>(bytes: usize) -> bool {
    mem::size_of::<T>() <= bytes && mem::align_of::<T>() <= ALIGN
}

/// The per-slot overhead in bytes: a slot of `B` bytes takes
/// `SLOT_OVERHEAD + B` rounded up to [`ALIGN`].
pub const SLOT_OVERHEAD: usize = STORAGE_OFFSET;

// === impl Local ===

/// The owner's view of its executor, with the types erased: where the
/// slots are and how far apart. Written once by `init`, then read by the
/// owner's handles only.
#[derive(Clone, Copy)]
pub(crate) struct View {
    head: *const Head,
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
    /// waker and `Context`.
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
            // `Waker` requires. The context borrows the waker for `'static`:
            // both sit in the `'static` executor and never move.
            unsafe {
                *record = WakeRecord {
                    mask: task_bit(i),
                    core: ptr::from_ref(core).cast(),
                };
                *header.waker.get() = Waker::new(record.cast_const().cast(), vtable);
                *header.context.get() = Context::from_waker(&*header.waker.get());
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
        assert!(
            !self.running.replace(true),
            "executor run re-entered from inside a task"
        );
        Running(self)
    }

    /// The view of the slots.
    #[inline(always)]
    pub(crate) fn view(&self) -> &View {
        // SAFETY: `init` wrote it before any handle (any caller of this)
        // existed, and nothing writes it again.
        unsafe { &*self.view.get() }
    }

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
        // (`enter`), so nothing else references it, nor the context, which
        // only this call borrows mutably.
        let finished =
            unsafe { (header.poll.get())(view.slot_of_bit::<B>(bit), &mut *header.context.get()) };
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

    /// Drops a finished task's output (if any) and frees the slot, unless it
    /// is poisoned.
    ///
    /// # Safety
    /// Owner only; slot `i` is complete and no join handle will read it.
    pub(crate) unsafe fn release(&self, i: usize) {
        let view = self.view();
        let header = view.header(i);
        match header.phase.replace(Phase::Poisoned) {
            Phase::Poisoned => return,
            Phase::Finished => {
                // SAFETY: the storage holds the output (`Finished`), read by
                // nobody (caller); dropped once, here.
                unsafe { (header.drop.get())(view.slot(i), Phase::Finished) };
            }
            _ => {}
        }
        header.phase.set(Phase::Free);
        self.free.set(self.free.get() | 1 << i);
    }

    /// Moves `future` into a free slot and marks it ready; gives the future
    /// back if every slot is taken.
    ///
    /// # Safety
    /// Owner only; `F` and `F::Output` fit the slot storage ([`fits`]).
    pub(crate) unsafe fn spawn<F: Future + 'static>(&self, future: F) -> Result<usize, F> {
        let free = self.free.get();
        if free == 0 {
            return Err(future);
        }
        let i = free.trailing_zeros() as usize;
        self.free.set(free & (free - 1));
        let view = self.view();
        let header = view.header(i);
        // SAFETY: the slot was free, so its storage holds nothing and
        // nothing refers to it; `F` fits it (caller).
        unsafe { view.slot(i).cast::<F>().write(future) };
        header.poll.set(poll_future::<F>);
        header.drop.set(drop_contents::<F>);
        header.phase.set(Phase::Live);
        header.detached.set(false);
        let generation = (header.state.load(Relaxed) & GEN_MASK).wrapping_add(GEN_ONE);
        header.state.store(generation | LIVE | RUN, Relaxed);
        // The owner is awake whenever it spawns (the word has `AWAKE`
        // outside `park`), so this mark never needs to notify anyone.
        self.head().ready.mark(task_bit(i));
        Ok(i)
    }

    /// Slot `i`'s phase (owner only).
    pub(crate) fn phase(&self, i: usize) -> Phase {
        self.view().header(i).phase.get()
    }

    /// Reads a finished task's output and frees its slot.
    ///
    /// # Safety
    /// Owner only; slot `i` is `Finished` with an output of type `T`.
    pub(crate) unsafe fn take_output<T>(&self, i: usize) -> T {
        let view = self.view();
        // SAFETY: the storage holds a `T` (caller), read once: the slot is
        // freed right after without dropping it.
        let output = unsafe { view.slot(i).cast::<T>().read() };
        view.header(i).phase.set(Phase::Free);
        self.free.set(self.free.get() | 1 << i);
        output
    }

    /// Registers who awaits slot `i`'s completion.
    pub(crate) fn set_join_waker(&self, i: usize, waker: &Waker) {
        let join = &self.view().header(i).join;
        match join.take() {
            Some(old) if old.will_wake(waker) => join.set(Some(old)),
            _ => join.set(Some(waker.clone())),
        }
    }

    /// The join handle of live slot `i` is gone.
    pub(crate) fn detach(&self, i: usize) {
        let header = self.view().header(i);
        header.detached.set(true);
        drop(header.join.take());
    }

    /// A token that cancels the task now in slot `i`, and no later occupant.
    pub(crate) fn cancel_token(&self, i: usize) -> RawCancel {
        let view = self.view();
        let state = &view.header(i).state;
        RawCancel {
            state,
            generation: state.load(Relaxed) & GEN_MASK,
            waker: view.waker(i).clone(),
        }
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
    fn header(&self, i: usize) -> &'static Header {
        // SAFETY: every caller passes a slot index (`i < len`), and `init`
        // pointed `tasks` at the `'static` slot array of `stride`-sized
        // `Task`s, each starting with its header.
        unsafe { &*self.tasks.add(i * self.stride).cast::<Header>() }
    }

    /// The header of the task whose ready bit is `bit` (slot `bit - 1`):
    /// indexed from one slot before the first, which saves the hot loop a
    /// subtraction.
    #[inline(always)]
    fn header_of_bit<const B: usize>(&self, bit: usize) -> &'static Header {
        const { assert!(B > 0) };
        let stride = mem::size_of::<Task<B>>();
        debug_assert_eq!(stride, self.stride);
        let header = self.tasks.wrapping_sub(stride).wrapping_add(bit * stride);
        // SAFETY: `bit - 1` is a slot index and `B` the slot size (callers),
        // so `header` is that slot's header, in the `'static` slot array.
        unsafe { &*header.cast::<Header>() }
    }

    /// The storage of the task whose ready bit is `bit`, derived (like
    /// every slot pointer) from the whole array's pointer, whose provenance
    /// covers the storage, not from the header's reference.
    #[inline(always)]
    fn slot_of_bit<const B: usize>(&self, bit: usize) -> *mut u8 {
        let stride = mem::size_of::<Task<B>>();
        let before = self.tasks.wrapping_sub(stride);
        before
            .wrapping_add(bit * stride + STORAGE_OFFSET)
            .cast_mut()
    }

    /// Slot `i`'s storage.
    #[inline(always)]
    fn slot(&self, i: usize) -> *mut u8 {
        // SAFETY: as in `header`; the storage is `STORAGE_OFFSET` further,
        // inside the same `Task`, and in an `UnsafeCell`, so writing
        // through a pointer derived from the shared slot array is allowed.
        unsafe { self.tasks.add(i * self.stride + STORAGE_OFFSET).cast_mut() }
    }

    /// Task `i`'s waker.
    #[inline(always)]
    fn waker(&self, i: usize) -> &'static Waker {
        // SAFETY: written by `init` before any handle existed, never again.
        unsafe { &*self.header(i).waker.get() }
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

/// Clears [`Local::running`] when a run loop ends, even by a panic.
pub(crate) struct Running<'a>(&'a Local);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.set(false);
    }
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

// === impl RawCancel ===

/// The data of a [`CancelToken`](crate::CancelToken): thread-safe.
pub(crate) struct RawCancel {
    state: &'static AtomicU32,
    generation: u32,
    waker: Waker,
}

impl RawCancel {
    /// Asks for the cancel; `true` if the task was still live.
    pub(crate) fn cancel(&self) -> bool {
        let mut state = self.state.load(Relaxed);
        loop {
            if state & GEN_MASK != self.generation || state & LIVE == 0 {
                return false;
            }
            if state & RUN == 0 {
                return true;
            }
            match self
                .state
                .compare_exchange_weak(state, state & !RUN, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        // The owner drops the future at the poll boundary this wake causes;
        // `Release` in the wake orders the cleared `RUN` bit before it.
        self.waker.wake_by_ref();
        true
    }

    /// `true` while the task is live and not yet asked to cancel.
    pub(crate) fn is_live(&self) -> bool {
        let state = self.state.load(Relaxed);
        state & GEN_MASK == self.generation && state & RUN != 0
    }
}

impl Clone for RawCancel {
    fn clone(&self) -> Self {
        Self {
            state: self.state,
            generation: self.generation,
            waker: self.waker.clone(),
        }
    }
}
