//! A per-CPU async executor for sidecar: no allocation, IPI and flag
//! wakers, cancellation, and an idle protocol that cannot lose a wake-up.
//!
//! # The story
//!
//! Every sidecar CPU runs one [`Executor`], declared in a `static` with a
//! fixed number of task slots of a fixed size. The CPU [claims](Executor::claim)
//! its executor once and gets the only [`Runner`]; it spawns tasks
//! (commands from the main kernel, say) into the slots and runs them
//! forever ([`Spawner::spawn_now`] gives a new task its first poll at once,
//! so one that is done then never goes through the run loop). Nothing is
//! allocated: spawning into a full executor returns a [`SpawnError`]
//! holding the future.
//!
//! A task waits for something by returning `Pending`, having left its
//! [`Waker`](core::task::Waker) with whoever will make progress: a channel,
//! a timer, another CPU. A waker points at its task's record in the
//! executor (which executor, which bit); it has no reference count. Waking
//! sets the task's bit in the executor's **ready word** with one atomic
//! `fetch_or`, callable from any CPU or interrupt handler. The owner takes the whole word with one `swap` and
//! polls the tasks whose bits were set: a task woken a thousand times before
//! it runs is polled once.
//!
//! When nothing is ready, the owner **parks**: it announces it by clearing
//! the ready word's `AWAKE` bit (only if no task bit is set), and sleeps
//! through a [`Parker`] (on x86: interrupts off, check the word, `sti;
//! hlt`: `x86::HaltParker`). A wake that then finds `AWAKE` clear claims
//! it back, and the one waker whose claim sets it calls the executor's
//! [`Notifier`] (the kernel's: an IPI to the owner); every other wake finds
//! the owner awake, or already notified, and sends nothing. So a sleeping
//! CPU gets at most one IPI per sleep, and a busy one none.
//!
//! A task can also wait for a **flag in shared memory** (a control page's
//! status byte) with [`Spawner::wait_flag`]; the IPI that follows the flag's
//! write calls [`Executor::wake_flag_waiters`]. It can be **cancelled** from
//! anywhere with a [`CancelToken`]: its future is dropped at its next poll
//! boundary and its [`JoinHandle`] reports [`Completion::Cancelled`],
//! exactly once. **Timers** are [`time::Deadline`] futures over a
//! [`time::Clock`] (the local APIC timer in the kernel, `host::StdClock` on
//! the host).
//!
//! # Map
//!
//! * `raw`: the unsafe core, one file per concern: the ready word, the
//!   shared core, the waker, a slot's state, the slot itself, the owner's
//!   view of its slots, the poll loop, cancel tokens (private; read it
//!   beside `docs/executor.md`).
//! * this module's re-exports from `runtime`: the safe API.
//! * [`flag`], [`time`]: the shared-memory flag and deadline futures.
//! * `x86`: the halt parker (bare-metal x86_64 only).
//! * `host`: thread parker, notifier and clock (feature `std`).
//!
//! `docs/executor.md` explains the design, proves the park protocol, gives
//! the measured cost and compares the executor with its peers.
//!
//! # What the kernel implements
//!
//! * [`Notifier`] for the executor's owner CPU: send a fixed IPI, unless
//!   called on the owner CPU itself.
//! * [`time::Clock`] over the local APIC timer, with a [`time::TimerQueue`].
//! * `critical_section::set_impl!` with interrupts disabled (nesting-safe:
//!   restore the previous `IF`), used by [`time::TimerQueue`] and by
//!   `embassy-sync`.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

mod sync;

pub mod flag;
mod raw;
mod runtime;
pub mod time;

#[cfg(feature = "std")]
pub mod host;

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub mod x86;

pub use flag::WaitFlag;
pub use raw::{ReadySet, ALIGN, MAX_TASKS, SLOT_OVERHEAD};
pub use runtime::{
    CancelToken, Completion, Executor, JoinHandle, Runner, SpawnError, Spawner, Stats,
};

/// How a wake reaches an executor's owner when the owner may be asleep.
///
/// The executor calls [`Notifier::notify`] only for the first wake after
/// its owner announced that it parks, from whatever CPU or interrupt
/// handler performed that wake; all other wakes call
/// [`Notifier::skipped`]. The kernel's notifier sends the owner an IPI,
/// unless it runs on the owner CPU itself (an interrupt handler there
/// already ended the `hlt`), and counts both cases in `notify`, which runs
/// at most once per park.
pub trait Notifier: Sync {
    /// The owner may be parked: make it run its loop again. Called from any
    /// CPU and any context (interrupt handlers too); must not block.
    fn notify(&self);

    /// A wake that needed no notification (the owner was awake, or another
    /// wake already notified it). On every wake's path, from any CPU: an
    /// atomic read-modify-write here (a shared counter's `lock xadd`) would
    /// be a third per wake→poll, so count without one, or not at all. By
    /// default it does nothing, and the kernel's notifier leaves it so (it
    /// counts in `notify`, off the wake path); the host tests count here.
    #[inline]
    fn skipped(&self) {}
}

/// How an idle owner sleeps until notified.
///
/// Called by the run loop after it announced that it parks. The parker must
/// return once a notification arrives after that announcement (it may
/// return earlier, spuriously). To close the race with a wake that arrives
/// between the announcement and the sleep, it either latches notifications
/// (the host's `host::ThreadSignal`) or checks [`ReadySet::is_empty`] with
/// notifications held back and sleeps in the same breath (x86's
/// `x86::HaltParker`: `cli`, check, `sti; hlt`).
pub trait Parker {
    /// Sleeps until notified (or returns at once if `ready` is not empty).
    fn park(&self, ready: &ReadySet);
}

impl<P: Parker + ?Sized> Parker for &P {
    fn park(&self, ready: &ReadySet) {
        (**self).park(ready);
    }
}
