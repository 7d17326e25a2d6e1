//! The unsafe core: the ready set, the task slots, the waker and the poll
//! loop. Every `unsafe` block of the executor proper is in this file; the
//! safe types in [`crate::runtime`] are thin wrappers that uphold the one
//! rule the core relies on: *only the owner touches the slots*.
//!
//! # The ready word
//!
//! One `AtomicU64` per executor. Bit `i < 63` says "task `i` wants a poll";
//! bit 63, [`AWAKE`], says "the owner is running and will look at this word
//! again before it sleeps". Four operations touch it, all read-modify-writes
//! except the parker's check:
//!
//! | who | operation | effect |
//! |---|---|---|
//! | waker (any CPU, any context) | `fetch_or(bit)` | mark ready; the old value says whether to notify |
//! | owner, each batch | `swap(AWAKE)` | take every ready bit, stay awake |
//! | owner, idle | `compare_exchange(AWAKE, 0)` | announce "parking": only if nothing is ready |
//! | parker, interrupts off | `load() == 0` | still nothing: really sleep |
//!
//! A waker notifies the owner exactly when its `fetch_or` found the word `0`:
//! the owner had announced that it parks and nobody has told it otherwise
//! since. Every other wake found the owner awake (it will take the bit before
//! it can announce again, because the announcement only succeeds on a word
//! equal to `AWAKE`) or found another waker's bit already there (that waker
//! notifies). All of this is about one memory location, so the argument needs
//! nothing but the total order of read-modify-writes on it; `docs/executor.md`
//! writes it out, and `tests/loom.rs` checks it.
//!
//! # Slots
//!
//! A slot is a [`Header`] plus `BYTES` bytes of storage aligned to [`ALIGN`].
//! The storage holds the task's future while it runs, then its output until
//! the [`JoinHandle`](crate::JoinHandle) takes it. The header's `state` word is
//! the only part other CPUs touch (a [`CancelToken`](crate::CancelToken) sets
//! its `CANCEL` bit); everything else is owner-only and lives in `Cell`s.
//!
//! # The waker
//!
//! A waker's data pointer is the address of the executor's [`Core`] (aligned
//! to 64 bytes) with the task index in its low six bits. Clone and drop do
//! nothing; wake is `Core::wake_mask`. So a waker is two words, costs no
//! reference count, stays valid forever (executors are `'static`), and waking
//! a task that has finished, or whose slot now holds another task, is at
//! worst one spurious poll.

use core::cell::{Cell, UnsafeCell};
use core::future::Future;
use core::mem::{self, ManuallyDrop, MaybeUninit};
use core::pin::Pin;
use core::ptr;
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::sync::{maybe_const_fn, AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use crate::Notifier;

/// The most tasks one executor holds: one bit each in the ready word, whose
/// last bit is the owner's [`AWAKE`] marker.
pub const MAX_TASKS: usize = 63;

/// The alignment of every slot's storage: futures and outputs aligned more
/// strictly than this are refused at compile time.
pub const ALIGN: usize = 16;

/// Ready-word marker: the owner is awake and will read the word again.
const AWAKE: u64 = 1 << 63;

/// The low bits of a waker's data pointer that hold the task index.
const INDEX_MASK: usize = 63;

// === impl ReadySet ===

/// An executor's ready set: which tasks want a poll, and whether the owner
/// is awake. Parkers see it through [`ReadySet::is_empty`].
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

    /// Marks the tasks in `mask` (non-zero) ready. Returns `true` when the
    /// owner announced that it parks and this is the first mark since: the
    /// caller must notify it.
    ///
    /// `Release`: whatever the waker wrote before waking (a message, a flag)
    /// is visible to the owner after its `Acquire` in [`ReadySet::take`].
    #[inline]
    pub(crate) fn mark(&self, mask: u64) -> bool {
        self.word.fetch_or(mask, Release) == 0
    }

    /// Owner: takes every ready bit and marks the owner awake.
    #[inline]
    pub(crate) fn take(&self) -> u64 {
        self.word.swap(AWAKE, Acquire) & !AWAKE
    }

    /// Owner: announces that it parks, if and only if nothing is ready.
    /// After `true`, the next [`ReadySet::mark`] returns `true`.
    ///
    /// `Relaxed`: the decision rests on the modification order of this one
    /// word alone; data is acquired later by [`ReadySet::take`].
    #[inline]
    pub(crate) fn try_sleep(&self) -> bool {
        self.word
            .compare_exchange(AWAKE, 0, Relaxed, Relaxed)
            .is_ok()
    }

    /// `true` while no task has been woken since the owner announced that it
    /// parks. A [`Parker`](crate::Parker) calls it with notifications held
    /// back (x86: interrupts off) and sleeps only if it is still `true`.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.word.load(Relaxed) == 0
    }
}

// === impl Core ===

/// The part of an executor that other CPUs touch: the ready set, the flag
/// waiters, the counters, and the notifier. Aligned to 64 bytes so that a
/// waker can carry the task index in the low bits of its address, and so
/// that the hot ready word has a cache line of its own neighbours.
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
    /// Wakes that found the owner parked and called the notifier.
    pub(crate) notified: AtomicU64,
    /// Times the owner announced that it parks (written by the owner only).
    pub(crate) parks: AtomicU64,
    /// Set by the one successful [`crate::Executor::claim`].
    pub(crate) claimed: AtomicBool,
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
                },
                notifier,
            }
        }
    }

    /// The vtable of this executor type's wakers.
    pub(crate) const VTABLE: RawWakerVTable =
        RawWakerVTable::new(Self::clone_waker, Self::wake, Self::wake, drop_waker);

    /// The wake path: one `fetch_or`, and a notification only if the owner
    /// may be asleep.
    #[inline]
    pub(crate) fn wake_mask(&self, mask: u64) {
        if self.head.ready.mark(mask) {
            self.head.notified.fetch_add(1, Relaxed);
            self.notifier.notify();
        } else {
            self.notifier.skipped();
        }
    }

    unsafe fn clone_waker(data: *const ()) -> RawWaker {
        RawWaker::new(data, &Self::VTABLE)
    }

    unsafe fn wake(data: *const ()) {
        let core = data.map_addr(|a| a & !INDEX_MASK).cast::<Self>();
        // SAFETY: `data` was made by `View::waker` from a pointer to this
        // `Core<N>` (the vtable is `Core::<N>::VTABLE`, so the type is right)
        // with the index in bits the 64-byte alignment leaves zero. The core
        // lives in a `'static` executor and is only ever shared, so a shared
        // reference is valid here on any CPU.
        let core = unsafe { &*core };
        core.wake_mask(1 << (data.addr() & INDEX_MASK));
    }
}

unsafe fn drop_waker(_: *const ()) {}

// === impl Header ===

/// `Header::state` bits: the task's future is in the slot...
const LIVE: u32 = 1;
/// ...and someone asked to cancel it. The rest is a generation number.
const CANCEL: u32 = 2;
const GEN_ONE: u32 = 4;
const GEN_MASK: u32 = !(LIVE | CANCEL);

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

/// One task slot's bookkeeping; the storage is beside it in the executor.
pub(crate) struct Header {
    /// `generation | CANCEL | LIVE`. The owner stores it; a cancel token
    /// sets `CANCEL` with a compare-exchange that checks the generation.
    state: AtomicU32,
    phase: Cell<Phase>,
    /// Polls the future in the storage; `true` when it finished (the
    /// storage then holds the output).
    poll: Cell<PollFn>,
    /// Drops the future (`Phase::Live`) or the output (`Phase::Finished`).
    drop: Cell<DropFn>,
    /// Who awaits the join handle.
    join: Cell<Option<Waker>>,
    /// The join handle is gone: free the slot as soon as the task completes.
    detached: Cell<bool>,
}

impl Header {
    maybe_const_fn! {
        pub(crate) fn new() -> Self {
            Self {
                state: AtomicU32::new(0),
                phase: Cell::new(Phase::Free),
                poll: Cell::new(poll_nothing),
                drop: Cell::new(drop_nothing),
                join: Cell::new(None),
                detached: Cell::new(false),
            }
        }
    }
}

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
pub(crate) struct Block<const B: usize>(MaybeUninit<[u8; B]>);

impl<const B: usize> Block<B> {
    pub(crate) const EMPTY: Self = Self(MaybeUninit::uninit());
}

const _: () = assert!(mem::align_of::<Block<1>>() == ALIGN);

/// Whether a `T` fits a slot of `bytes` bytes.
pub(crate) const fn fits<T>(bytes: usize) -> bool {
    mem::size_of::<T>() <= bytes && mem::align_of::<T>() <= ALIGN
}

// === impl Local ===

/// The owner's view of its executor, with the types erased: where the
/// headers and the storage are, and how to make a task's waker. Written once
/// by `claim`, then read by the owner's handles only.
#[derive(Clone, Copy)]
pub(crate) struct View {
    head: *const Head,
    headers: *const Header,
    slots: *mut u8,
    stride: usize,
    /// The address of the `Core<N>`, with room for an index in bits 0..6.
    waker_data: *const (),
    waker_vtable: &'static RawWakerVTable,
}

/// What only the owner of an executor touches. `Cell`s: the safe handles
/// that reach it are `!Send`, and they exist only on the owner.
pub(crate) struct Local {
    view: Cell<View>,
    /// One bit per free slot.
    free: Cell<u64>,
    /// A run loop is on the stack (guards against re-entrant polls).
    running: Cell<bool>,
}

/// Placeholder until `claim` writes the real view.
const NO_VTABLE: RawWakerVTable = RawWakerVTable::new(
    |d| RawWaker::new(d, &NO_VTABLE),
    drop_waker,
    drop_waker,
    drop_waker,
);

impl Local {
    maybe_const_fn! {
        pub(crate) fn new() -> Self {
            Self {
                view: Cell::new(View {
                    head: ptr::null(),
                    headers: ptr::null(),
                    slots: ptr::null_mut(),
                    stride: 0,
                    waker_data: ptr::null(),
                    waker_vtable: &NO_VTABLE,
                }),
                free: Cell::new(0),
                running: Cell::new(false),
            }
        }
    }

    /// Makes this the view of `core`, `headers` and `slots`.
    ///
    /// # Safety
    /// Called once, by the caller that won the claim, before any handle to
    /// this `Local` exists; all three live in the same `'static` executor.
    pub(crate) unsafe fn init<N: Notifier, const B: usize>(
        &self,
        core: &'static Core<N>,
        headers: &'static [Header],
        slots: &'static UnsafeCell<[Block<B>]>,
    ) {
        assert!(headers.len() <= MAX_TASKS);
        self.view.set(View {
            head: &core.head,
            headers: headers.as_ptr(),
            slots: slots.get().cast(),
            stride: mem::size_of::<Block<B>>(),
            waker_data: ptr::from_ref(core).cast(),
            waker_vtable: &Core::<N>::VTABLE,
        });
        self.free.set((1u64 << headers.len()) - 1);
    }

    /// The ready set, counters and flag waiters.
    pub(crate) fn head(&self) -> &Head {
        // SAFETY: `init` pointed `head` into the `'static` executor before
        // any handle that can call this existed.
        unsafe { &*self.view.get().head }
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

    /// Polls every task of one batch; `false` if none was ready.
    ///
    /// # Safety
    /// Owner only, inside [`Local::enter`].
    #[inline]
    pub(crate) unsafe fn run_batch(&self, view: &View) -> bool {
        // SAFETY: `head` points into the `'static` executor (`init`).
        let mut batch = unsafe { &*view.head }.ready.take();
        if batch == 0 {
            return false;
        }
        while batch != 0 {
            let i = batch.trailing_zeros() as usize;
            batch &= batch - 1;
            // SAFETY: owner, inside `enter` (caller); `i` is a slot index
            // because every bit in the ready word comes from a waker made by
            // `View::waker` for a slot of this executor.
            unsafe { self.poll_slot(view, i, batch) };
        }
        true
    }

    /// The poll boundary of slot `i`: poll it if it is live, or drop it if
    /// it was cancelled, or ignore a stale wake.
    ///
    /// # Safety
    /// Owner only, inside [`Local::enter`]; `i` is a slot index.
    #[inline(always)]
    unsafe fn poll_slot(&self, view: &View, i: usize, rest: u64) {
        let header = view.header(i);
        let state = header.state.load(Relaxed);
        if state & (LIVE | CANCEL) != LIVE {
            // SAFETY: owner, slot index (caller).
            return unsafe { self.boundary(i, state) };
        }
        let waker = view.waker(i);
        let mut cx = Context::from_waker(&waker);
        let unwind = Unwind {
            local: self,
            i,
            rest,
        };
        // SAFETY: `LIVE` means the storage holds the future that `poll`
        // was set for, pinned in place; no run loop is active above this
        // one (`enter`), so nothing else references it.
        let finished = unsafe { (header.poll.get())(view.slot(i), &mut cx) };
        mem::forget(unwind);
        if finished {
            // SAFETY: owner, slot index (caller); the output is in place.
            unsafe { self.complete(i, Phase::Finished) };
        }
    }

    /// The cold side of a poll boundary: a cancelled task is dropped here;
    /// a wake for a free or completed slot is ignored.
    #[cold]
    unsafe fn boundary(&self, i: usize, state: u32) {
        if state & LIVE == 0 {
            return;
        }
        let view = self.view.get();
        let header = view.header(i);
        // Clear `LIVE` (and `CANCEL`) first: from here on, tokens find the
        // task complete. Mark the slot poisoned while user code runs.
        header.state.store(state & GEN_MASK, Relaxed);
        header.phase.set(Phase::Poisoned);
        // SAFETY: the storage holds the live future (`LIVE`), which nothing
        // references between polls; it is dropped exactly once, here.
        unsafe { (header.drop.get())(view.slot(i), Phase::Live) };
        // SAFETY: owner, slot index (caller).
        unsafe { self.finish(i, Phase::Cancelled) };
    }

    /// A poll returned `Ready`: the output is in the storage.
    #[cold]
    unsafe fn complete(&self, i: usize, outcome: Phase) {
        let header = self.view.get().header(i);
        // Not live any more; a cancel that raced with this last poll is
        // dropped with the `CANCEL` bit: the task finished.
        let state = header.state.load(Relaxed);
        header.state.store(state & GEN_MASK, Relaxed);
        // SAFETY: owner, slot index (caller).
        unsafe { self.finish(i, outcome) };
    }

    /// Records the outcome, wakes the joiner, and frees a detached slot.
    unsafe fn finish(&self, i: usize, outcome: Phase) {
        let header = self.view.get().header(i);
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
        let view = self.view.get();
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
        let view = self.view.get();
        let header = view.header(i);
        // SAFETY: the slot was free, so its storage holds nothing and
        // nothing refers to it; `F` fits it (caller).
        unsafe { view.slot(i).cast::<F>().write(future) };
        header.poll.set(poll_future::<F>);
        header.drop.set(drop_contents::<F>);
        header.phase.set(Phase::Live);
        header.detached.set(false);
        let generation = (header.state.load(Relaxed) & GEN_MASK).wrapping_add(GEN_ONE);
        header.state.store(generation | LIVE, Relaxed);
        view.waker(i).wake_by_ref();
        Ok(i)
    }

    /// The view, for the handles' slot accessors.
    pub(crate) fn view(&self) -> View {
        self.view.get()
    }

    /// Slot `i`'s phase (owner only).
    pub(crate) fn phase(&self, i: usize) -> Phase {
        self.view.get().header(i).phase.get()
    }

    /// Reads a finished task's output and frees its slot.
    ///
    /// # Safety
    /// Owner only; slot `i` is `Finished` with an output of type `T`.
    pub(crate) unsafe fn take_output<T>(&self, i: usize) -> T {
        let view = self.view.get();
        // SAFETY: the storage holds a `T` (caller), read once: the slot is
        // freed right after without dropping it.
        let output = unsafe { view.slot(i).cast::<T>().read() };
        view.header(i).phase.set(Phase::Free);
        self.free.set(self.free.get() | 1 << i);
        output
    }

    /// Registers who awaits slot `i`'s completion.
    pub(crate) fn set_join_waker(&self, i: usize, waker: &Waker) {
        let join = &self.view.get().header(i).join;
        match join.take() {
            Some(old) if old.will_wake(waker) => join.set(Some(old)),
            _ => join.set(Some(waker.clone())),
        }
    }

    /// The join handle of live slot `i` is gone.
    pub(crate) fn detach(&self, i: usize) {
        let header = self.view.get().header(i);
        header.detached.set(true);
        drop(header.join.take());
    }

    /// A token that cancels the task now in slot `i`, and no later occupant.
    pub(crate) fn cancel_token(&'static self, i: usize) -> RawCancel {
        let view = self.view.get();
        let state = &view.header(i).state;
        RawCancel {
            state,
            generation: state.load(Relaxed) & GEN_MASK,
            waker: ManuallyDrop::into_inner(view.waker(i)),
        }
    }

    /// Registers the task whose waker this is as a flag waiter; `false` if
    /// it is not a task of this executor.
    pub(crate) fn add_flag_waiter(&self, waker: &Waker) -> bool {
        let view = self.view.get();
        let data = waker.data();
        let ours = data.map_addr(|a| a & !INDEX_MASK) == view.waker_data
            && ptr::eq(waker.vtable(), view.waker_vtable);
        if ours {
            let bit = 1u64 << (data.addr() & INDEX_MASK);
            self.head().flag_waiters.fetch_or(bit, Relaxed);
        }
        ours
    }

    /// The free-slot mask (owner only).
    pub(crate) fn free_mask(&self) -> u64 {
        self.free.get()
    }
}

impl View {
    /// Header `i`.
    #[inline(always)]
    fn header(&self, i: usize) -> &'static Header {
        // SAFETY: every caller passes a slot index (`i < len`), and `init`
        // pointed `headers` at the `'static` header array.
        unsafe { &*self.headers.add(i) }
    }

    /// Slot `i`'s storage.
    #[inline(always)]
    fn slot(&self, i: usize) -> *mut u8 {
        // SAFETY: `i` is a slot index (callers) and `slots` points at the
        // storage array with `stride`-sized elements (`init`).
        unsafe { self.slots.add(i * self.stride) }
    }

    /// Task `i`'s waker (`ManuallyDrop`: dropping it would be a no-op call).
    #[inline(always)]
    fn waker(&self, i: usize) -> ManuallyDrop<Waker> {
        let data = self.waker_data.map_addr(|a| a | i);
        // SAFETY: `waker_vtable` is `Core::<N>::VTABLE` and `waker_data`
        // that `Core<N>`'s address (`init`), with `i < 64` in bits the
        // alignment keeps free: exactly what `Core::wake` decodes. The
        // functions are thread-safe (atomics and a `Sync` notifier).
        ManuallyDrop::new(unsafe { Waker::new(data, self.waker_vtable) })
    }
}

/// Clears [`Local::running`] when a run loop ends, even by a panic.
pub(crate) struct Running<'a>(&'a Local);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.set(false);
    }
}

/// Armed around a poll: if the future panics, its slot is poisoned (never
/// polled, dropped or reused again) and the rest of the batch is put back.
struct Unwind<'a> {
    local: &'a Local,
    i: usize,
    rest: u64,
}

impl Drop for Unwind<'_> {
    #[cold]
    fn drop(&mut self) {
        let header = self.local.view.get().header(self.i);
        header.phase.set(Phase::Poisoned);
        let state = header.state.load(Relaxed);
        header.state.store(state & GEN_MASK, Relaxed);
        if let Some(waker) = header.join.take() {
            waker.wake();
        }
        if self.rest != 0 {
            // The owner is awake (it is polling), so this never notifies.
            self.local.head().ready.mark(self.rest);
        }
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
            if state & CANCEL != 0 {
                return true;
            }
            match self
                .state
                .compare_exchange_weak(state, state | CANCEL, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        // The owner drops the future at the poll boundary this wake causes;
        // `Release` in the wake orders the `CANCEL` bit before it.
        self.waker.wake_by_ref();
        true
    }

    /// `true` while the task is live and not yet asked to cancel.
    pub(crate) fn is_live(&self) -> bool {
        let state = self.state.load(Relaxed);
        state & GEN_MASK == self.generation && state & (LIVE | CANCEL) == LIVE
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
