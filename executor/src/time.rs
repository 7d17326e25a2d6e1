//! Timers: a deadline future over a pluggable [`Clock`], and the fixed-size
//! [`TimerQueue`] a clock keeps its sleepers in.
//!
//! In the kernel the clock is the local APIC timer: `now` reads the TSC (or
//! the APIC's current count), `wake_at` registers the waker in a per-CPU
//! `TimerQueue` and programs the one-shot timer for the earliest deadline,
//! and the timer interrupt calls [`TimerQueue::expire`] and reprograms. On
//! the host, `host::StdClock` does the same with a
//! thread in the role of the timer interrupt.

use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

/// A monotonic clock that can wake a task at a deadline.
pub trait Clock {
    /// The current time, in the clock's ticks; never decreases.
    fn now(&self) -> u64;

    /// Wakes `waker` once `now() >= deadline` (soon, if that is already
    /// so). Waking early is allowed (the deadline future checks again);
    /// not waking is not.
    fn wake_at(&self, deadline: u64, waker: &Waker);
}

/// Completes once `clock.now() >= deadline`.
pub fn sleep_until<C: Clock + ?Sized>(clock: &C, deadline: u64) -> Deadline<'_, C> {
    Deadline { clock, deadline }
}

/// Completes `ticks` after now.
pub fn sleep<C: Clock + ?Sized>(clock: &C, ticks: u64) -> Deadline<'_, C> {
    sleep_until(clock, clock.now().saturating_add(ticks))
}

/// The future of [`sleep_until`] and [`sleep`].
///
/// Cancel safety: dropping it loses nothing; at worst the clock wakes the
/// task once more, for nothing.
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct Deadline<'c, C: ?Sized> {
    clock: &'c C,
    deadline: u64,
}

impl<C: ?Sized> Deadline<'_, C> {
    /// The deadline, in the clock's ticks.
    pub fn deadline(&self) -> u64 {
        self.deadline
    }
}

impl<C: Clock + ?Sized> Future for Deadline<'_, C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now() >= self.deadline {
            return Poll::Ready(());
        }
        // A deadline that passes between the check and the registration is
        // the clock's to handle: `wake_at` wakes at once for a past one.
        self.clock.wake_at(self.deadline, cx.waker());
        Poll::Pending
    }
}

// === impl TimerQueue ===

/// Up to `K` sleepers of one clock: deadlines with their wakers, shared
/// between the tasks that register (inside polls) and the timer interrupt
/// that expires them, under a `critical-section` lock (the kernel's turns
/// interrupts off; the host's is a mutex).
pub struct TimerQueue<const K: usize> {
    entries: critical_section::Mutex<RefCell<[Option<Sleeper>; K]>>,
}

/// A deadline and the waker to wake at it.
type Sleeper = (u64, Waker);

/// [`TimerQueue::register`] failed: `K` other wakers are waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerQueueFull;

impl<const K: usize> TimerQueue<K> {
    /// An empty queue; `const`, for a `static`.
    pub const fn new() -> Self {
        Self {
            entries: critical_section::Mutex::new(RefCell::new([const { None }; K])),
        }
    }

    /// Registers `waker` for `deadline`, and returns the earliest deadline
    /// now queued (to program the timer with). A waker already queued keeps
    /// one entry with the earlier of its deadlines.
    pub fn register(&self, deadline: u64, waker: &Waker) -> Result<u64, TimerQueueFull> {
        critical_section::with(|cs| {
            let mut entries = self.entries.borrow_ref_mut(cs);
            let slot = match entries
                .iter()
                .position(|e| e.as_ref().is_some_and(|(_, w)| w.will_wake(waker)))
            {
                Some(i) => i,
                None => entries
                    .iter()
                    .position(Option::is_none)
                    .ok_or(TimerQueueFull)?,
            };
            let at = match &entries[slot] {
                Some((old, _)) => deadline.min(*old),
                None => deadline,
            };
            entries[slot] = Some((at, waker.clone()));
            Ok(earliest(&entries[..]).unwrap_or(at))
        })
    }

    /// Wakes (and removes) every sleeper whose deadline is `<= now`;
    /// returns the earliest deadline still queued. Wakers run outside the
    /// lock.
    pub fn expire(&self, now: u64) -> Option<u64> {
        loop {
            let due = critical_section::with(|cs| {
                let mut entries = self.entries.borrow_ref_mut(cs);
                let i = entries
                    .iter()
                    .position(|e| e.as_ref().is_some_and(|(at, _)| *at <= now))?;
                entries[i].take().map(|(_, waker)| waker)
            });
            match due {
                Some(waker) => waker.wake(),
                None => break,
            }
        }
        self.next_deadline()
    }

    /// The earliest deadline queued.
    pub fn next_deadline(&self) -> Option<u64> {
        critical_section::with(|cs| earliest(&self.entries.borrow_ref(cs)[..]))
    }
}

impl<const K: usize> Default for TimerQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

fn earliest(entries: &[Option<Sleeper>]) -> Option<u64> {
    entries.iter().flatten().map(|(at, _)| *at).min()
}
