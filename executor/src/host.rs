//! Host stand-ins for a CPU's interrupt machinery, for tests and tools
//! (feature `std`).
//!
//! * [`ThreadSignal`] is the IPI and the `hlt`: its [`Notifier`] side sets
//!   a pending flag under a mutex and signals a condition variable; its
//!   [`Parker`] side waits for the flag. The flag is the host's version of
//!   the local APIC's pending-interrupt latch: a notification that arrives
//!   before the owner blocks is not lost, it makes the wait return at once.
//! * [`StdClock`] is the APIC timer: a monotonic nanosecond clock whose
//!   [`TimerQueue`] a dedicated thread expires ([`StdClock::run`]), in the
//!   role of the timer interrupt.

use std::sync::atomic::AtomicBool;
use std::sync::{OnceLock, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::sync::{maybe_const_fn, Condvar, Mutex};
use crate::time::{Clock, TimerQueue};
use crate::{Notifier, Parker, ReadySet};

// === impl ThreadSignal ===

/// Notifier and parker for an executor run by a host thread.
#[derive(Debug)]
pub struct ThreadSignal {
    pending: Mutex<bool>,
    wakeup: Condvar,
}

impl ThreadSignal {
    maybe_const_fn! {
        /// A signal with no notification pending.
        pub fn new() -> Self {
            Self { pending: Mutex::new(false), wakeup: Condvar::new() }
        }
    }
}

impl Default for ThreadSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier for ThreadSignal {
    fn notify(&self) {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wakeup.notify_one();
    }
}

impl Parker for ThreadSignal {
    fn park(&self, ready: &ReadySet) {
        // A wake already arrived: skip the lock. Its notification stays
        // pending and makes the next park return once, for nothing.
        if !ready.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        while !*pending {
            pending = self
                .wakeup
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *pending = false;
    }
}

// === impl StdClock ===

/// A nanosecond clock for the host, with room for `K` sleepers; a thread
/// running [`StdClock::run`] plays the timer interrupt.
///
/// ```
/// use executor::{host::{StdClock, ThreadSignal}, time, Executor};
///
/// static CLOCK: StdClock<4> = StdClock::new();
/// static EXECUTOR: Executor<2, 128, ThreadSignal> = Executor::new(ThreadSignal::new());
///
/// std::thread::scope(|s| {
///     s.spawn(|| CLOCK.run());
///     let runner = EXECUTOR.claim().unwrap();
///     runner.block_on(EXECUTOR.notifier(), time::sleep(&CLOCK, 1_000_000)).ok().unwrap();
///     CLOCK.stop();
/// });
/// ```
#[derive(Default)]
pub struct StdClock<const K: usize> {
    epoch: OnceLock<Instant>,
    queue: TimerQueue<K>,
    /// The timer thread should look again: a new earliest deadline, or stop.
    kick: std::sync::Mutex<bool>,
    kicked: std::sync::Condvar,
    stopped: AtomicBool,
}

impl<const K: usize> StdClock<K> {
    /// A clock whose time 0 is its first use.
    pub const fn new() -> Self {
        Self {
            epoch: OnceLock::new(),
            queue: TimerQueue::new(),
            kick: std::sync::Mutex::new(false),
            kicked: std::sync::Condvar::new(),
            stopped: AtomicBool::new(false),
        }
    }

    /// The timer "interrupt": expires sleepers at their deadlines until
    /// [`StdClock::stop`]. Run it on a thread of its own.
    pub fn run(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        while !self.stopped.load(Relaxed) {
            let next = self.queue.expire(self.now());
            let mut kick = self.kick.lock().unwrap_or_else(PoisonError::into_inner);
            if !*kick {
                let wait = next.map_or(Duration::from_millis(50), |at| {
                    Duration::from_nanos(at.saturating_sub(self.now()))
                });
                kick = self
                    .kicked
                    .wait_timeout(kick, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            *kick = false;
        }
    }

    /// Makes [`StdClock::run`] return.
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.kick_timer();
    }

    fn kick_timer(&self) {
        *self.kick.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.kicked.notify_one();
    }
}

impl<const K: usize> Clock for StdClock<K> {
    fn now(&self) -> u64 {
        let epoch = self.epoch.get_or_init(Instant::now);
        u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn wake_at(&self, deadline: u64, waker: &Waker) {
        match self.queue.register(deadline, waker) {
            Ok(_) => self.kick_timer(),
            // Full: poll again soon rather than never.
            Err(_) => waker.wake_by_ref(),
        }
    }
}
