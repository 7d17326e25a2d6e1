//! The safe API over [`crate::raw`]: the executor a kernel declares in a
//! `static`, the owner's [`Runner`] and [`Spawner`], and the handles a task
//! leaves behind ([`JoinHandle`], [`CancelToken`]).
//!
//! Ownership is the whole safety story. [`Executor::claim`] succeeds once and
//! hands out the only [`Runner`]; it, the [`Spawner`]s made from it and the
//! [`JoinHandle`]s they return are `!Send`, so they stay on the claiming CPU
//! (thread, on the host), and only they touch task slots. What may cross
//! CPUs is atomic: wakers, [`CancelToken`]s, [`Executor::wake_flag_waiters`]
//! and [`Executor::stats`].

use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::raw::{self, Batch, Core, Local, Phase, RawCancel, Slot, Task};
use crate::sync::{array, fence, maybe_const_fn, Ordering::*};
use crate::{Notifier, Parker, WaitFlag};

/// `!Send` and `!Sync` marker for owner-only handles.
type OwnerOnly = PhantomData<*const ()>;

// === impl Executor ===

/// A per-CPU executor with room for `TASKS` tasks (at most
/// [`MAX_TASKS`](crate::MAX_TASKS)) of at most `BYTES` bytes each, whose
/// sleeping owner is woken through the notifier `N`.
///
/// It lives in a `static` (or anything else `'static`): its storage is fixed
/// at compile time and never allocated. Any CPU may wake its tasks; only the
/// CPU that [claimed](Executor::claim) it runs them.
///
/// ```
/// use executor::{host::ThreadSignal, Completion, Executor};
///
/// static EXECUTOR: Executor<4, 256, ThreadSignal> = Executor::new(ThreadSignal::new());
///
/// let runner = EXECUTOR.claim().expect("claimed once");
/// let handle = runner.spawn(async { 6 * 7 }).ok().unwrap();
/// runner.run_until_idle();
/// let mut handle = handle;
/// assert_eq!(handle.try_take(), Some(Completion::Finished(42)));
/// ```
#[repr(C)]
pub struct Executor<const TASKS: usize, const BYTES: usize, N: Notifier> {
    core: Core<N>,
    local: Local,
    tasks: [Task<BYTES>; TASKS],
}

// SAFETY: what other CPUs reach through `&Executor` is atomic (`core`: the
// ready set, counters, flag waiters; a slot header's `state`) or `Sync` (the
// notifier). The rest of `local` and `tasks` is `Cell`s and futures that need not be `Send`,
// but they are only touched through the handles `claim` gives out once,
// which are `!Send`: every such access happens on the claiming CPU.
unsafe impl<const TASKS: usize, const BYTES: usize, N: Notifier> Sync
    for Executor<TASKS, BYTES, N>
{
}

impl<const TASKS: usize, const BYTES: usize, N: Notifier> Executor<TASKS, BYTES, N> {
    maybe_const_fn! {
        /// An empty executor that notifies its owner through `notifier`.
        ///
        /// `const`, so that a kernel declares one per CPU in a `static`.
        /// Refuses (at compile time, in a `static`) more than
        /// [`MAX_TASKS`](crate::MAX_TASKS) tasks.
        pub fn new(notifier: N) -> Self {
            assert!(TASKS <= raw::MAX_TASKS, "an executor holds at most 63 tasks");
            Self {
                core: Core::new(notifier),
                local: Local::new(),
                tasks: array![Task::new(); TASKS],
            }
        }
    }

    /// Builds an empty executor in `place` and returns it, as [`new`](Self::new)
    /// would make it: for an executor in memory found at run time (a
    /// kernel CPU's own pages) that may be larger than the stack building
    /// it, since it is written field by field and slot by slot rather than
    /// made by value and moved.
    pub fn new_in(place: &'static mut MaybeUninit<Self>, notifier: N) -> &'static Self {
        assert!(
            TASKS <= raw::MAX_TASKS,
            "an executor holds at most 63 tasks"
        );
        let this = place.as_mut_ptr();
        // SAFETY: `this` is `place`, valid for writes of a whole `Self` and
        // ours alone for `'static`; every field (each slot of `tasks` in
        // turn) is written once through raw pointers, so no reference to
        // uninitialized memory is made, and the one reference is made after
        // the last write.
        unsafe {
            (&raw mut (*this).core).write(Core::new(notifier));
            (&raw mut (*this).local).write(Local::new());
            let tasks = (&raw mut (*this).tasks).cast::<Task<BYTES>>();
            for index in 0..TASKS {
                tasks.add(index).write(Task::new());
            }
            &*this
        }
    }

    /// Makes the calling CPU this executor's owner, once: the first call
    /// returns the only [`Runner`], later calls `None`.
    pub fn claim(&'static self) -> Option<Runner<BYTES>> {
        if self.core.head.claimed.swap(true, Acquire) {
            return None;
        }
        // SAFETY: we won the claim, so this runs once and no handle to
        // `local` exists yet; all parts belong to this `'static` executor.
        unsafe { self.local.init::<N, BYTES>(&self.core, &self.tasks) };
        Some(Runner {
            local: &self.local,
            _owner: PhantomData,
        })
    }

    /// The notifier (on the host, the same object is the parker).
    pub fn notifier(&self) -> &N {
        &self.core.notifier
    }

    /// Wakes every task that awaits a shared-memory flag (see
    /// [`Spawner::wait_flag`]). Call it from any CPU or interrupt handler
    /// after writing the flag; the kernel calls it from its IPI handler.
    pub fn wake_flag_waiters(&self) {
        // Pairs with the fence in `WaitFlag::poll`: either the waiter's
        // re-check sees the flag written before this call, or this swap
        // sees the waiter's bit.
        fence(SeqCst);
        let waiters = self.core.head.flag_waiters.swap(0, Relaxed);
        if waiters != 0 {
            self.core.wake_mask(waiters);
        }
    }

    /// Counters, readable from any CPU.
    pub fn stats(&self) -> Stats {
        Stats {
            notified: self.core.head.notified.load(Relaxed),
            parks: self.core.head.parks.load(Relaxed),
        }
    }
}

/// What an executor counted.
///
/// A wake notifies only if it claimed the ready word's `AWAKE` bit back
/// after the owner announced that it parks (cleared it), and only the
/// announcement clears it, so `notified <= parks` always: at most one IPI
/// per sleep, however many CPUs wake how often. The wakes that needed no
/// IPI go to [`Notifier::skipped`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Wakes that found the owner parked (or parking) and called
    /// [`Notifier::notify`].
    pub notified: u64,
    /// Times the owner found nothing ready and announced that it parks.
    pub parks: u64,
}

// === impl Runner ===

/// The owner's handle: spawns tasks and runs them. One per executor,
/// `!Send`: it stays on the CPU that claimed the executor.
pub struct Runner<const BYTES: usize> {
    local: &'static Local,
    _owner: OwnerOnly,
}

impl<const BYTES: usize> Runner<BYTES> {
    /// A copyable spawner for tasks of this executor.
    pub fn spawner(&self) -> Spawner<BYTES> {
        Spawner {
            local: self.local,
            _owner: PhantomData,
        }
    }

    /// Spawns a task; see [`Spawner::spawn`].
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + 'static,
    {
        self.spawner().spawn(future)
    }

    /// Spawns a task and polls it once at once; see [`Spawner::spawn_now`].
    pub fn spawn_now<F>(&self, future: F) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + 'static,
    {
        self.spawner().spawn_now(future)
    }

    /// Polls ready tasks, batch after batch, until none is ready; never
    /// parks. Returns `false` if no task was ready when it was called.
    ///
    /// `#[inline]`: a caller that spawns and runs in a loop (a command
    /// loop, the benchmark) keeps its registers instead of paying a call's
    /// saves and restores for every task.
    #[inline(always)]
    pub fn run_until_idle(&self) -> bool {
        let _running = self.local.enter();
        let view = self.local.view();
        let ready = &self.local.head().ready;
        // SAFETY: owner (`Runner` is `!Send`), inside `enter`.
        let mut why = unsafe { self.local.run_ready::<BYTES>(view) };
        let any = why != Batch::Idle;
        // After a completion, one load says whether to go on: no `swap` (an
        // atomic read-modify-write) to find the word empty.
        while why == Batch::Completed && ready.any_ready() {
            // SAFETY: as above.
            why = unsafe { self.local.run_ready::<BYTES>(view) };
        }
        any
    }

    /// Whether a task was woken since [`Runner::run_until_idle`] last found
    /// none ready: one load. For an owner that halts in a loop of its own
    /// around `run_until_idle` instead of parking through a [`Parker`],
    /// because every wake of its tasks happens on its own CPU (in its tasks
    /// or its interrupt handlers): with interrupts off, check this, then
    /// halt in the same breath (x86: `sti; hlt`) only if it is `false`.
    /// Such an owner never announces that it parks, so its wakes never
    /// notify.
    #[inline]
    pub fn has_ready(&self) -> bool {
        self.local.head().ready.any_ready()
    }

    /// Runs tasks until `done()` returns `true`, parking through `parker`
    /// whenever nothing is ready.
    ///
    /// `done` is called when the loop starts, after every batch in which a
    /// task completed (finished or was cancelled), and whenever nothing is
    /// ready, before parking: so a condition on tasks' completions (the
    /// usual one) is seen at once, and any other condition at the latest
    /// when the executor runs out of work.
    pub fn run_until<P, D>(&self, parker: &P, mut done: D)
    where
        P: Parker + ?Sized,
        D: FnMut() -> bool,
    {
        let _running = self.local.enter();
        let view = self.local.view();
        let head = self.local.head();
        if done() {
            return;
        }
        loop {
            // SAFETY: owner (`Runner` is `!Send`), inside `enter`.
            let why = unsafe { self.local.run_ready::<BYTES>(view) };
            if done() {
                return;
            }
            if why == Batch::Completed {
                continue;
            }
            if head.ready.try_sleep() {
                head.parks.store(head.parks.load(Relaxed) + 1, Relaxed);
                parker.park(&head.ready);
            }
        }
    }

    /// Runs tasks forever: the per-CPU main loop.
    pub fn run<P: Parker + ?Sized>(&self, parker: &P) -> ! {
        self.run_until(parker, || false);
        unreachable!("run_until returned without being done")
    }

    /// Spawns `future` and runs the executor (all its tasks) until it
    /// completes; returns its output. Fails only if the executor is full.
    pub fn block_on<P, F>(&self, parker: &P, future: F) -> Result<F::Output, SpawnError<F>>
    where
        P: Parker + ?Sized,
        F: Future + 'static,
    {
        let mut handle = self.spawn(future)?;
        self.run_until(parker, || handle.is_finished());
        match handle.try_take() {
            Some(Completion::Finished(output)) => Ok(output),
            // Only this function holds the handle, so no token exists.
            _ => unreachable!("a task nobody can cancel was cancelled"),
        }
    }
}

// === impl Spawner ===

/// Spawns tasks onto its executor. `Copy`, so that tasks can keep one;
/// `!Send`, so that it stays on the owner.
pub struct Spawner<const BYTES: usize> {
    local: &'static Local,
    _owner: OwnerOnly,
}

impl<const BYTES: usize> Clone for Spawner<BYTES> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<const BYTES: usize> Copy for Spawner<BYTES> {}

impl<const BYTES: usize> Spawner<BYTES> {
    /// Moves `future` into a free slot and schedules its first poll.
    ///
    /// A future (or output) larger than `BYTES` or aligned to more than
    /// [`ALIGN`](crate::ALIGN) is a compile-time error. A full executor is
    /// [`SpawnError`], which gives the future back: spawning never panics
    /// and never allocates.
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + 'static,
    {
        Self::check_fits::<F>();
        // SAFETY: owner (`Spawner` is `!Send`); both types fit (checked above).
        self.handle(unsafe { self.local.spawn(future) })
    }

    /// Moves `future` into a free slot and polls it for the first time
    /// right here, before returning; it joins the run loop only if that poll
    /// returns `Pending`. A task that is done at its first poll (a short
    /// command, a check) never goes through the ready word or the run loop:
    /// [`JoinHandle::try_take`] reads its output at once.
    ///
    /// The first poll runs on the caller's stack, inside the caller's own
    /// poll when a task spawns: it counts as a poll of a task (running the
    /// executor from inside it panics), and if it panics (host only) the
    /// panic goes on to the caller, the new slot is poisoned, and the
    /// caller's task is poisoned too if the panic leaves its poll. A
    /// [`CancelToken`] can only be made once this returns, so there is no
    /// "cancelled before the first poll" for such a task. Otherwise as
    /// [`Spawner::spawn`]: a full executor is [`SpawnError`], sizes are
    /// checked at compile time.
    pub fn spawn_now<F>(&self, future: F) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + 'static,
    {
        Self::check_fits::<F>();
        // SAFETY: owner (`Spawner` is `!Send`); both types fit (checked above).
        self.handle(unsafe { self.local.spawn_now(future) })
    }

    /// Refuses, at compile time, a future or output that does not fit a slot.
    #[inline(always)]
    fn check_fits<F: Future>() {
        const {
            assert!(
                raw::fits::<F>(BYTES),
                "the future does not fit the executor's task slots"
            );
            assert!(
                raw::fits::<F::Output>(BYTES),
                "the output does not fit the executor's task slots"
            );
        }
    }

    /// The join handle of a spawned slot, or the future back.
    #[inline(always)]
    fn handle<F: Future>(
        &self,
        spawned: Result<Slot, F>,
    ) -> Result<JoinHandle<F::Output>, SpawnError<F>> {
        match spawned {
            Ok(slot) => Ok(JoinHandle {
                local: self.local,
                slot: Some(slot),
                _marker: PhantomData,
            }),
            Err(future) => Err(SpawnError { future }),
        }
    }

    /// How many more tasks fit right now.
    pub fn free_slots(&self) -> usize {
        self.local.free_mask().count_ones() as usize
    }

    /// A future that completes once `predicate()` is `true`: a wait for a
    /// flag in shared memory (a control page's status byte, say) that the
    /// writer announces with [`Executor::wake_flag_waiters`], usually from
    /// the IPI it sends after writing.
    ///
    /// Must be awaited by a task of this executor (directly or inside
    /// `select`, `join` or `poll_fn`, which pass the task's waker down);
    /// with any other waker it still works, by polling again at once.
    ///
    /// Cancel safety: dropping it loses nothing; the predicate is re-read
    /// on every poll.
    pub fn wait_flag<P: FnMut() -> bool + Unpin>(&self, predicate: P) -> WaitFlag<P> {
        WaitFlag::new(self.local, predicate)
    }
}

/// Spawning failed: every slot of the executor is taken.
pub struct SpawnError<F> {
    future: F,
}

impl<F> SpawnError<F> {
    /// The future that was not spawned.
    pub fn into_future(self) -> F {
        self.future
    }
}

impl<F> fmt::Debug for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpawnError(executor full)")
    }
}

impl<F> fmt::Display for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("every task slot of the executor is taken")
    }
}

// === impl JoinHandle ===

/// How a task ended, reported exactly once by its [`JoinHandle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion<T> {
    /// The future returned this output.
    Finished(T),
    /// The future was dropped by a cancel before it finished.
    Cancelled,
}

/// The owner's handle on a spawned task: awaits its [`Completion`], or
/// cancels it. `!Send`.
///
/// The task's slot stays taken until the completion is read (by awaiting
/// or [`JoinHandle::try_take`]) or the handle is dropped; dropping it
/// before completion detaches the task, which then frees its slot itself.
pub struct JoinHandle<T> {
    local: &'static Local,
    /// The task's slot, or `None` once the completion was read (spent).
    slot: Option<Slot>,
    _marker: PhantomData<(T, *const ())>,
}

impl<T> JoinHandle<T> {
    /// `true` once the task has finished or was cancelled (and until the
    /// completion is read).
    pub fn is_finished(&self) -> bool {
        self.slot
            .is_some_and(|slot| !matches!(self.local.phase(slot), Phase::Live | Phase::Dropping))
    }

    /// Reads the completion if the task has completed; the handle is spent
    /// afterwards (further calls return `None`).
    ///
    /// # Panics
    /// If the task panicked (host only: the kernel aborts on panics).
    pub fn try_take(&mut self) -> Option<Completion<T>> {
        let slot = self.slot?;
        // A finished task is the common case: tested first, on its own, and
        // the rest out of line (by value, so that the handle stays in
        // registers).
        let completion = if self.local.phase(slot) == Phase::Finished {
            // SAFETY: owner (`JoinHandle` is `!Send`); the slot is
            // `Finished` and holds this handle's task's output, a `T`, read
            // once: the handle is spent below.
            Completion::Finished(unsafe { self.local.take_output::<T>(slot) })
        } else {
            match take_unfinished(self.local, slot) {
                Unfinished::Live => return None,
                Unfinished::Cancelled => Completion::Cancelled,
                Unfinished::Poisoned => {
                    self.slot = None;
                    panic!("the task panicked");
                }
            }
        };
        self.slot = None;
        Some(completion)
    }

    /// Cancels the task; see [`CancelToken::cancel`].
    pub fn cancel(&self) -> bool {
        self.slot.is_some() && self.cancel_token().cancel()
    }

    /// A token that cancels this task from any CPU or interrupt handler.
    ///
    /// # Panics
    /// If the completion was already read.
    pub fn cancel_token(&self) -> CancelToken {
        let slot = self.slot.expect("the completion was already read");
        CancelToken(self.local.cancel_token(slot))
    }
}

/// What [`JoinHandle::try_take`] finds in a slot that is not `Finished`.
enum Unfinished {
    Live,
    /// Cancelled, and the slot released: the handle must be spent.
    Cancelled,
    Poisoned,
}

/// The cold side of [`JoinHandle::try_take`], for `slot`.
#[cold]
#[inline(never)]
fn take_unfinished(local: &Local, slot: Slot) -> Unfinished {
    match local.phase(slot) {
        Phase::Live | Phase::Dropping => Unfinished::Live,
        Phase::Cancelled => {
            // SAFETY: owner (only a `JoinHandle`, `!Send`, calls this); the
            // slot is complete, and its only reader, the handle, is spent by
            // the caller.
            unsafe { local.release(slot) };
            Unfinished::Cancelled
        }
        Phase::Poisoned => Unfinished::Poisoned,
        Phase::Finished | Phase::Free => {
            unreachable!("finished slots are taken by the caller; a join handle's slot is never freed under it")
        }
    }
}

impl<T> Unpin for JoinHandle<T> {}

impl<T> Future for JoinHandle<T> {
    type Output = Completion<T>;

    /// Cancel safety: dropping the awaiting future loses nothing as long as
    /// the handle itself is kept; dropping the handle detaches the task.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion<T>> {
        let slot = self
            .slot
            .expect("JoinHandle polled after its completion was read");
        match self.try_take() {
            Some(completion) => Poll::Ready(completion),
            None => {
                self.local.set_join_waker(slot, cx.waker());
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let Some(slot) = self.slot else {
            return;
        };
        match self.local.phase(slot) {
            // `Dropping`: the drop of the cancelled future holds this
            // handle; the run loop frees the slot once that drop is done.
            Phase::Live | Phase::Dropping => self.local.detach(slot),
            // SAFETY: owner; the slot is `Finished` and holds this handle's
            // task's output, a `T`, whose only reader, this handle, is going
            // away. Dropped with its type: a task finished by its first poll
            // in `spawn_now` has no drop function in its slot.
            Phase::Finished => unsafe { self.local.release_output::<T>(slot) },
            // SAFETY: owner; the task is complete (cancelled: its storage
            // holds nothing; poisoned: `release` leaves it alone), and its
            // only reader, this handle, is going away.
            _ => unsafe { self.local.release(slot) },
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("slot", &self.slot.map(Slot::index))
            .finish()
    }
}

// === impl CancelToken ===

/// Cancels one task from anywhere: another CPU, an interrupt handler, the
/// handler of a control page's STOP. `Send + Sync + Clone`.
///
/// Semantics, by when the cancel arrives:
///
/// * **before the first poll**: the future is dropped without ever being
///   polled; the completion is `Cancelled`.
/// * **while the task is pending**: the task is woken, and at its next poll
///   boundary the executor drops the future instead of polling it (its
///   `Drop` runs there, on the owner CPU); the completion is `Cancelled`.
/// * **during a poll**: the poll goes on. If it returns `Pending`, the
///   previous case applies; if it returns `Ready`, the task finished and the
///   completion is `Finished`: a cancel never discards a computed output.
/// * **after completion**, or for a slot that now holds another task: it
///   does nothing and returns `false`. The slot's occupants are told apart
///   by a 30-bit generation: a token kept while 2^30 more tasks go through
///   its slot (a billion spawns) could meet the same number again and
///   cancel that task. Drop tokens with their task.
#[derive(Clone)]
pub struct CancelToken(RawCancel);

impl CancelToken {
    /// Asks for the cancel. `true` if the task was live (not yet complete):
    /// it will complete as `Cancelled`, unless a poll already under way
    /// returns `Ready`. Idempotent.
    pub fn cancel(&self) -> bool {
        self.0.cancel()
    }

    /// `true` while the task is live and no cancel was asked for.
    pub fn is_live(&self) -> bool {
        self.0.is_live()
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("live", &self.is_live())
            .finish()
    }
}
