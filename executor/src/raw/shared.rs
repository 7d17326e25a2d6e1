//! The part of an executor that any CPU may touch: [`Core`], whose
//! [`Head`] holds the ready word, the flag-waiter mask and the counters,
//! followed by the notifier. Everything in it is atomic or `Sync`.

use core::ptr;
use core::task::RawWakerVTable;

use super::ready::ReadySet;
use crate::sync::{maybe_const_fn, AtomicBool, AtomicPtr, AtomicU64, Ordering::*};
use crate::Notifier;

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
    pub(super) vtable: AtomicPtr<RawWakerVTable>,
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
}
