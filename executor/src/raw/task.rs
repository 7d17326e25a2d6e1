//! A task slot: its [`Header`] and its storage, and the type-erased
//! functions that poll and drop whatever future the storage holds.
//!
//! A slot ([`Task`]) is a [`Header`] and then `BYTES` bytes of storage
//! aligned to [`ALIGN`]. The storage holds the task's future while it runs,
//! then its output until the [`JoinHandle`](crate::JoinHandle) takes it. The
//! header's `state` word is the only part of a slot other CPUs write (a
//! [`CancelToken`](crate::CancelToken) clears its `RUN` bit); the rest is
//! owner-only and lives in `Cell`s.

use core::cell::{Cell, UnsafeCell};
use core::future::Future;
use core::mem::{self, MaybeUninit};
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll, Waker};

use super::state::Phase;
use super::waker::{WakeRecord, NOOP_WAKER};
use super::ALIGN;
use crate::sync::{maybe_const_fn, AtomicU32};

type PollFn = unsafe fn(*mut u8) -> Option<NonNull<Header>>;
type DropFn = unsafe fn(*mut u8, Phase);

/// One task slot's bookkeeping; the storage follows it in its [`Task`].
///
/// `repr(C)` with the waker first. The poll function gets only the slot's
/// address, and finds the waker (at offset 0) and the storage (at
/// [`STORAGE_OFFSET`]) from it in its addressing modes: the hot loop
/// computes one pointer per poll.
#[repr(C)]
pub(crate) struct Header {
    /// This slot's waker and its data: made once by `init`, read-only
    /// afterwards. No `Context` is kept: a future may overwrite the one it
    /// is lent (safe code can), so each poll gets a new one.
    pub(super) waker: UnsafeCell<Waker>,
    pub(super) record: UnsafeCell<WakeRecord>,
    /// Who awaits the join handle.
    pub(super) join: Cell<Option<Waker>>,
    /// Polls the future in the storage of the slot whose address it is
    /// given; once it finished (the storage then holds the output), returns
    /// the slot's header, so that the run loop need not keep it across the
    /// call.
    pub(super) poll: Cell<PollFn>,
    /// Drops the future (`Phase::Live`) or the output (`Phase::Finished`).
    pub(super) drop: Cell<DropFn>,
    /// `generation | LIVE | RUN`. The owner stores it; a cancel token
    /// clears `RUN` with a compare-exchange that checks the generation.
    pub(super) state: AtomicU32,
    pub(super) phase: Cell<Phase>,
    /// The join handle is gone: free the slot as soon as the task completes.
    pub(super) detached: Cell<bool>,
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
            }
        }
    }

    /// Whether someone awaits the join handle, without taking the waker.
    #[inline(always)]
    pub(super) fn has_join_waker(&self) -> bool {
        // SAFETY: `join` is an owner-only `Cell` (only the owner reaches a
        // header's cells), and a `Cell` never lends references to its
        // contents, so nothing writes or borrows it during this read.
        unsafe { (*self.join.as_ptr()).is_some() }
    }

    /// This slot's bit in the ready word (and in the owner's free mask).
    #[inline(always)]
    pub(super) fn mask(&self) -> u64 {
        // SAFETY: as in `waker`: written by `init` only, read-only after.
        unsafe { (*self.record.get()).mask }
    }

    /// This slot's waker.
    #[inline(always)]
    pub(super) fn waker(&self) -> &Waker {
        // SAFETY: only `init` writes the cell, before any owner handle (and
        // so any caller that reaches this header) exists; nothing writes it
        // afterwards.
        unsafe { &*self.waker.get() }
    }
}

unsafe fn poll_nothing(_: *mut u8) -> Option<NonNull<Header>> {
    None
}

unsafe fn drop_nothing(_: *mut u8, _: Phase) {}

/// Polls the `F` in the storage of the slot at `task` with a `Context`
/// made for this poll from the slot's waker; on `Ready` drops the future and
/// moves the output into the same storage.
///
/// The `Context` lives and dies in this call, so whatever the future writes
/// over it (`*cx = Context::from_waker(Waker::noop())` is safe code) cannot
/// reach a later poll. Building it here, where the future's type is known,
/// lets the compiler drop it altogether when the future's `poll` inlines.
///
/// # Safety
/// `task` is the address of a slot ([`Task`]) of a claimed executor,
/// derived from the slot array's pointer (so that it may reach the
/// storage); the storage holds a live, pinned `F` and has room and
/// alignment for `F::Output`; only the owner calls this, never re-entrantly
/// for a slot.
pub(super) unsafe fn poll_future<F: Future>(task: *mut u8) -> Option<NonNull<Header>> {
    // SAFETY: `task` is a slot, which starts with its header (caller); its
    // waker was written by `init` and is only read afterwards.
    let waker = unsafe { (*task.cast::<Header>()).waker() };
    // SAFETY: the storage is `STORAGE_OFFSET` into the slot, and `task`'s
    // provenance covers it (caller).
    let slot = unsafe { task.add(STORAGE_OFFSET) };
    // SAFETY: the storage holds a live `F` (caller); it never moves until it
    // is dropped in place, so pinning it is sound; no other reference to it
    // exists while the owner polls it.
    let future = unsafe { Pin::new_unchecked(&mut *slot.cast::<F>()) };
    match future.poll(&mut Context::from_waker(waker)) {
        Poll::Pending => None,
        Poll::Ready(output) => {
            // SAFETY: the future is done and no reference to it remains;
            // dropping it in place keeps `Pin`'s drop guarantee. The storage
            // then has room and alignment for the output (caller).
            unsafe {
                ptr::drop_in_place(slot.cast::<F>());
                slot.cast::<F::Output>().write(output);
            }
            // SAFETY: `task` is a slot's address (caller), never null.
            Some(unsafe { NonNull::new_unchecked(task.cast()) })
        }
    }
}

/// Drops what a slot's storage holds in `phase`.
///
/// # Safety
/// In `Phase::Live` the storage holds a live `F`, in `Phase::Finished` an
/// `F::Output`; it is not used again until rewritten.
pub(super) unsafe fn drop_contents<F: Future>(slot: *mut u8, phase: Phase) {
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
    pub(super) header: Header,
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
pub(super) const STORAGE_OFFSET: usize = mem::offset_of!(Task<1>, storage);

const _: () = assert!(mem::align_of::<Block<1>>() == ALIGN);
const _: () = assert!(STORAGE_OFFSET == mem::offset_of!(Task<4096>, storage));

/// Whether a `T` fits a slot of `bytes` bytes.
pub(crate) const fn fits<T>(bytes: usize) -> bool {
    mem::size_of::<T>() <= bytes && mem::align_of::<T>() <= ALIGN
}

/// The per-slot overhead in bytes: a slot of `B` bytes takes
/// `SLOT_OVERHEAD + B` rounded up to [`ALIGN`].
pub const SLOT_OVERHEAD: usize = STORAGE_OFFSET;
