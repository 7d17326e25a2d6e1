//! Waiting for a flag in shared memory.
//!
//! Sidecar's CPUs share pages with the main kernel: a control page whose
//! status byte says "stop", a command page whose sequence number says "new
//! command". The writer stores the byte, then sends an IPI; the IPI handler
//! calls [`Executor::wake_flag_waiters`](crate::Executor::wake_flag_waiters).
//! A task waits with [`Spawner::wait_flag`](crate::Spawner::wait_flag):
//!
//! 1. poll: read the flag (the predicate); set → done;
//! 2. not set: put the task's bit into the executor's flag-waiter mask;
//! 3. fence, then read the flag again; set → done, otherwise `Pending`.
//!
//! The IPI handler does the mirror image: fence, swap the mask to zero,
//! mark those tasks ready. Step 3 closes the race with a write that lands
//! between steps 1 and 2: with a `SeqCst` fence on both sides, either the
//! re-read sees the write or the handler's swap sees the bit. A waiter woken
//! for someone else's flag re-reads its predicate and registers again.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::raw::Local;
use crate::sync::{fence, Ordering::SeqCst};

/// The future of [`Spawner::wait_flag`](crate::Spawner::wait_flag).
#[must_use = "futures do nothing unless awaited"]
pub struct WaitFlag<P> {
    local: &'static Local,
    predicate: P,
}

impl<P> WaitFlag<P> {
    pub(crate) fn new(local: &'static Local, predicate: P) -> Self {
        Self { local, predicate }
    }
}

impl<P: FnMut() -> bool + Unpin> Future for WaitFlag<P> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if (this.predicate)() {
            return Poll::Ready(());
        }
        if !this.local.add_flag_waiter(cx.waker()) {
            // Not one of our tasks' wakers: poll again soon instead.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        fence(SeqCst);
        if (this.predicate)() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
