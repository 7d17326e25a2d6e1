//! [`RawCancel`], the thread-safe data of a
//! [`CancelToken`](crate::CancelToken): it clears the task's `RUN` bit if the
//! slot still holds the same task (same generation), then wakes the task so
//! that the owner drops it at the next poll boundary.

use core::task::Waker;

use super::state::{GEN_MASK, LIVE, RUN};
use crate::sync::{AtomicU32, Ordering::*};

// === impl RawCancel ===

/// The data of a [`CancelToken`](crate::CancelToken): thread-safe.
pub(crate) struct RawCancel {
    state: &'static AtomicU32,
    generation: u32,
    waker: Waker,
}

impl RawCancel {
    /// A token for the task that slot `state` holds now, woken by `waker`.
    pub(super) fn new(state: &'static AtomicU32, waker: Waker) -> Self {
        let generation = state.load(Relaxed) & GEN_MASK;
        Self {
            state,
            generation,
            waker,
        }
    }

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
