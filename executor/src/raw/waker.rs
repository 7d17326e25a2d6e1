//! The waker: its vtable and the record its data pointer points at.
//!
//! A waker's data pointer is its slot's [`WakeRecord`]: the address of the
//! executor's core and the task's bit. Clone and drop do nothing; wake is
//! `Core::wake_mask`. So a waker costs no reference count, stays valid for
//! ever (executors are `'static`), and waking a task that has finished, or
//! whose slot now holds another task, costs at worst one spurious poll. The
//! owner never builds a waker to poll: `claim` builds one per slot, and
//! each poll lends it through a `Context` of its own (see
//! `task::poll_future`).

use core::ptr;
use core::task::{RawWaker, RawWakerVTable, Waker};

use super::shared::Core;
use crate::sync::Ordering::*;
use crate::Notifier;

impl<N: Notifier> Core<N> {
    /// The vtable of this executor type's wakers.
    pub(crate) const VTABLE: RawWakerVTable =
        RawWakerVTable::new(Self::clone_waker, Self::wake, Self::wake, drop_waker);

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
pub(super) struct WakeRecord {
    /// The task's bit in the ready word.
    pub(super) mask: u64,
    /// The executor's `Core<N>`.
    pub(super) core: *const (),
}

/// Placeholder until `init` writes the real wakers.
// SAFETY: `NOOP_VTABLE`'s functions ignore the data pointer.
pub(super) const NOOP_WAKER: Waker = unsafe { Waker::new(ptr::null(), &NOOP_VTABLE) };

/// The vtable of [`NOOP_WAKER`].
pub(super) const NOOP_VTABLE: RawWakerVTable = RawWakerVTable::new(
    |d| RawWaker::new(d, &NOOP_VTABLE),
    drop_waker,
    drop_waker,
    drop_waker,
);
