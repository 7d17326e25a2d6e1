//! Host tests of the executor's behaviour: spawn, wake, cancel, full
//! storage, coalesced wakes, flags, timers, the ecosystem crates, a future
//! that overwrites its `Context`, and panics in user code inside and
//! outside a poll.
//!
//! Each test declares its own `static` executor, as the kernel does.
#![cfg(not(loom))]

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering::*};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use executor::host::{StdClock, ThreadSignal};
use executor::time::{self, Clock, TimerQueue};
use executor::{Completion, Executor, JoinHandle, Notifier, Parker, ReadySet};

/// A test executor: `T` slots of 256 bytes, woken through a thread signal.
type Exec<const T: usize> = Executor<T, 256, ThreadSignal>;

/// A future that stays pending until `open`, keeping its last waker.
struct Gate {
    open: AtomicBool,
    waker: Mutex<Option<Waker>>,
    polls: AtomicU32,
}

impl Gate {
    const fn new() -> Self {
        Self {
            open: AtomicBool::new(false),
            waker: Mutex::new(None),
            polls: AtomicU32::new(0),
        }
    }

    fn wait(&'static self) -> impl Future<Output = ()> + 'static {
        std::future::poll_fn(move |cx| {
            self.polls.fetch_add(1, Relaxed);
            if self.open.load(Acquire) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    fn waker(&self) -> Waker {
        self.waker.lock().unwrap().clone().expect("the task waited")
    }

    fn open(&self) {
        self.open.store(true, Release);
        self.waker().wake();
    }

    fn polls(&self) -> u32 {
        self.polls.load(Relaxed)
    }
}

/// Counts its drops, so tests see when a future is dropped.
struct DropFlag(&'static AtomicU32);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Relaxed);
    }
}

#[test]
fn spawn_runs_to_completion() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    let runner = EX.claim().unwrap();
    assert!(EX.claim().is_none(), "claimed once only");
    let mut handle = runner.spawn(async { 6 * 7 }).unwrap();
    assert!(!handle.is_finished());
    assert!(runner.run_until_idle());
    assert!(handle.is_finished());
    assert_eq!(handle.try_take(), Some(Completion::Finished(42)));
    assert_eq!(handle.try_take(), None, "reported exactly once");
    assert_eq!(runner.spawner().free_slots(), 4);
    assert!(!runner.run_until_idle(), "nothing left to run");
}

#[test]
fn an_executor_built_in_place_runs_tasks() {
    // A static, not a leaked box: Miri reports a leak, not what a static holds.
    static mut PLACE: std::mem::MaybeUninit<Exec<4>> = std::mem::MaybeUninit::uninit();
    // SAFETY: this test is the only code that names PLACE, and it takes the
    // one reference once; the pointer is a static's, so not null.
    let place = unsafe { (&raw mut PLACE).as_mut() }.expect("a static's address");
    let executor: &'static Exec<4> = Executor::new_in(place, ThreadSignal::new());
    let runner = executor.claim().unwrap();
    assert!(executor.claim().is_none(), "claimed once only");
    assert_eq!(runner.spawner().free_slots(), 4);
    let mut handle = runner.spawn(async { 6 * 7 }).unwrap();
    assert!(runner.run_until_idle());
    assert_eq!(handle.try_take(), Some(Completion::Finished(42)));
    assert_eq!(runner.spawner().free_slots(), 4);
}

#[test]
fn a_wake_schedules_one_poll() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let mut handle = runner.spawn(GATE.wait()).unwrap();
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 1);
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 1, "not woken, not polled");
    GATE.waker().wake_by_ref();
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 2);
    GATE.open();
    runner.run_until_idle();
    assert_eq!(handle.try_take(), Some(Completion::Finished(())));
}

#[test]
fn has_ready_tells_an_own_loop_whether_to_halt() {
    // An owner that halts in its own loop around `run_until_idle` (a
    // sidecar CPU) never announces that it parks: its wakes never notify.
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let mut handle = runner.spawn(GATE.wait()).unwrap();
    assert!(runner.has_ready(), "a new task is ready");
    runner.run_until_idle();
    assert!(!runner.has_ready(), "the task waits: halt");
    GATE.waker().wake_by_ref();
    assert!(runner.has_ready(), "woken: do not halt");
    runner.run_until_idle();
    assert!(!runner.has_ready());
    GATE.open();
    assert!(runner.has_ready());
    runner.run_until_idle();
    assert!(!runner.has_ready());
    assert_eq!(handle.try_take(), Some(Completion::Finished(())));
    assert_eq!(EX.stats().notified, 0, "never parked, never notified");
}

#[test]
fn woken_many_times_before_it_runs_polls_once() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let _handle = runner.spawn(GATE.wait()).unwrap();
    runner.run_until_idle();
    let waker = GATE.waker();
    for _ in 0..10_000 {
        waker.wake_by_ref();
        let clone = waker.clone();
        assert!(clone.will_wake(&waker), "clones are the same waker");
        clone.wake();
    }
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 2, "twenty thousand wakes, one poll");
}

#[test]
fn full_executor_gives_the_future_back() {
    static EX: Exec<2> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let a = runner.spawn(GATE.wait()).unwrap();
    let b = runner.spawn(async { 1 }).unwrap();
    let error = runner.spawn(async { 2 }).unwrap_err();
    assert_eq!(
        error.to_string(),
        "every task slot of the executor is taken"
    );
    let future = error.into_future();
    assert_eq!(runner.spawner().free_slots(), 0);
    runner.run_until_idle();
    drop(b); // finished: its slot is free again
    let mut c = runner.spawn(future).expect("a slot was freed");
    runner.run_until_idle();
    assert_eq!(c.try_take(), Some(Completion::Finished(2)));
    drop(a); // detached while pending
    assert_eq!(runner.spawner().free_slots(), 1);
    GATE.open();
    runner.run_until_idle();
    assert_eq!(
        runner.spawner().free_slots(),
        2,
        "a detached task frees its slot when done"
    );
}

#[test]
fn cancel_before_first_poll_drops_without_polling() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static DROPS: AtomicU32 = AtomicU32::new(0);
    static POLLS: AtomicU32 = AtomicU32::new(0);
    let runner = EX.claim().unwrap();
    let guard = DropFlag(&DROPS);
    let mut handle = runner
        .spawn(async move {
            POLLS.fetch_add(1, Relaxed);
            let _guard = guard;
        })
        .unwrap();
    let token = handle.cancel_token();
    assert!(token.is_live());
    assert!(token.cancel());
    assert!(token.cancel(), "idempotent while the request is pending");
    assert_eq!(
        DROPS.load(Relaxed),
        0,
        "dropped at the poll boundary, not by cancel()"
    );
    runner.run_until_idle();
    assert_eq!(POLLS.load(Relaxed), 0, "never polled");
    assert_eq!(DROPS.load(Relaxed), 1, "the captured state was dropped");
    assert_eq!(handle.try_take(), Some(Completion::Cancelled));
    assert_eq!(handle.try_take(), None);
    assert!(!token.cancel(), "nothing left to cancel");
}

#[test]
fn cancel_while_pending_runs_drop_at_the_next_boundary() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    static DROPS: AtomicU32 = AtomicU32::new(0);
    let runner = EX.claim().unwrap();
    let mut handle = runner
        .spawn(async {
            let _guard = DropFlag(&DROPS);
            GATE.wait().await;
            unreachable!("cancelled while waiting");
        })
        .unwrap();
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 1);
    // From another thread, as a remote CPU (or a STOP handler) would.
    let token = handle.cancel_token();
    std::thread::spawn(move || assert!(token.cancel()))
        .join()
        .unwrap();
    assert!(!handle.is_finished(), "not before the boundary");
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 1, "dropped instead of polled");
    assert_eq!(DROPS.load(Relaxed), 1);
    assert_eq!(handle.try_take(), Some(Completion::Cancelled));
    // The stale waker the gate kept is harmless.
    GATE.waker().wake();
    assert!(runner.run_until_idle());
}

#[test]
fn cancel_after_completion_does_nothing() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    let runner = EX.claim().unwrap();
    let mut handle = runner.spawn(async { "done" }).unwrap();
    let token = handle.cancel_token();
    runner.run_until_idle();
    assert!(!token.is_live());
    assert!(!token.cancel());
    assert!(!handle.cancel());
    assert_eq!(handle.try_take(), Some(Completion::Finished("done")));
    // A token never reaches a later task in the same slot.
    let mut next = runner.spawn(async { "next" }).unwrap();
    assert!(!token.cancel());
    runner.run_until_idle();
    assert_eq!(next.try_take(), Some(Completion::Finished("next")));
}

#[test]
fn cancel_during_the_last_poll_keeps_the_output() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static TOKEN: Mutex<Option<executor::CancelToken>> = Mutex::new(None);
    let runner = EX.claim().unwrap();
    let mut handle = runner
        .spawn(std::future::poll_fn(|_| {
            let cancelled = TOKEN.lock().unwrap().as_ref().unwrap().cancel();
            Poll::Ready(cancelled)
        }))
        .unwrap();
    *TOKEN.lock().unwrap() = Some(handle.cancel_token());
    runner.run_until_idle();
    assert_eq!(handle.try_take(), Some(Completion::Finished(true)));
}

#[test]
fn self_cancel_then_pending_is_cancelled() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static TOKEN: Mutex<Option<executor::CancelToken>> = Mutex::new(None);
    static POLLS: AtomicU32 = AtomicU32::new(0);
    let runner = EX.claim().unwrap();
    let mut handle = runner
        .spawn(std::future::poll_fn(|_| {
            POLLS.fetch_add(1, Relaxed);
            TOKEN.lock().unwrap().as_ref().unwrap().cancel();
            Poll::<()>::Pending
        }))
        .unwrap();
    *TOKEN.lock().unwrap() = Some(handle.cancel_token());
    runner.run_until_idle();
    assert_eq!(POLLS.load(Relaxed), 1);
    assert_eq!(handle.try_take(), Some(Completion::Cancelled));
}

#[test]
fn waking_finished_tasks_and_reused_slots_is_harmless() {
    static EX: Exec<1> = Executor::new(ThreadSignal::new());
    static KEPT: Mutex<Option<Waker>> = Mutex::new(None);
    let runner = EX.claim().unwrap();
    let mut first = runner
        .spawn(std::future::poll_fn(|cx| {
            *KEPT.lock().unwrap() = Some(cx.waker().clone());
            Poll::Ready(1)
        }))
        .unwrap();
    runner.run_until_idle();
    let stale = KEPT.lock().unwrap().take().unwrap();
    stale.wake_by_ref(); // the slot holds a finished output
    runner.run_until_idle();
    assert_eq!(first.try_take(), Some(Completion::Finished(1)));
    stale.wake_by_ref(); // the slot is free
    runner.run_until_idle();
    let polls = Rc::new(Cell::new(0));
    let counted = polls.clone();
    let mut second = runner
        .spawn(std::future::poll_fn(move |_| {
            counted.set(counted.get() + 1);
            Poll::Ready(())
        }))
        .unwrap();
    stale.wake(); // the slot holds another task: one extra poll at most
    runner.run_until_idle();
    assert_eq!(polls.get(), 1);
    assert_eq!(second.try_take(), Some(Completion::Finished(())));
}

#[test]
fn replacing_the_context_inside_a_poll_loses_no_wake_up() {
    static EX: Exec<1> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    // Safe code may overwrite the `Context` it is lent. The first task of
    // the only slot does, and then looks at what its next poll is given.
    let mut own = None;
    let mut vandal = runner
        .spawn(std::future::poll_fn(move |cx| match own.take() {
            None => {
                own = Some(cx.waker().clone());
                cx.waker().wake_by_ref();
                *cx = Context::from_waker(Waker::noop());
                Poll::Pending
            }
            Some(first) => Poll::Ready((cx.waker().will_wake(&first), first)),
        }))
        .unwrap();
    runner.run_until_idle();
    let Some(Completion::Finished((same_next_poll, slot_waker))) = vandal.try_take() else {
        panic!("the task finished in its second poll");
    };
    assert!(same_next_poll, "its next poll gets its own waker again");
    // The next task in the same slot gets the slot's waker, and is woken.
    let mut next = runner.spawn(GATE.wait()).unwrap();
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 1);
    assert!(GATE.waker().will_wake(&slot_waker), "not the no-op waker");
    GATE.open();
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 2, "the wake reached the next task");
    assert_eq!(next.try_take(), Some(Completion::Finished(())));
}

#[test]
fn tasks_await_join_handles_and_spawn_tasks() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    let runner = EX.claim().unwrap();
    let spawner = runner.spawner();
    let output = runner
        .block_on(EX.notifier(), async move {
            let child: JoinHandle<u32> = spawner.spawn(async { 20 }).unwrap();
            let grandchild = spawner
                .spawn(async move {
                    let inner = spawner.spawn(async { 1 }).unwrap();
                    matches!(inner.await, Completion::Finished(1))
                })
                .unwrap();
            match (child.await, grandchild.await) {
                (Completion::Finished(a), Completion::Finished(true)) => a + 22,
                _ => 0,
            }
        })
        .unwrap();
    assert_eq!(output, 42);
    assert_eq!(runner.spawner().free_slots(), 4);
}

#[test]
fn futures_util_select_join_and_poll_fn() {
    use futures_util::future::{self, Either};
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let mut handle = runner
        .spawn(async {
            let mut yielded = false;
            let yield_once = future::poll_fn(move |cx| {
                if yielded {
                    Poll::Ready(7)
                } else {
                    yielded = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            });
            let (a, b) = future::join(yield_once, async { 3 }).await;
            let gate = std::pin::pin!(GATE.wait());
            let never = std::pin::pin!(future::pending::<()>());
            match future::select(gate, never).await {
                Either::Left(((), _)) => a * b,
                Either::Right(_) => 0,
            }
        })
        .unwrap();
    runner.run_until_idle();
    assert!(!handle.is_finished());
    GATE.open();
    runner.run_until_idle();
    assert_eq!(handle.try_take(), Some(Completion::Finished(21)));
}

#[test]
fn embassy_sync_signal_and_channel() {
    use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
    use embassy_sync::channel::Channel;
    use embassy_sync::signal::Signal;
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static SIGNAL: Signal<CriticalSectionRawMutex, u32> = Signal::new();
    static CHANNEL: Channel<CriticalSectionRawMutex, u32, 2> = Channel::new();
    let runner = EX.claim().unwrap();
    runner
        .spawn(async {
            for i in 0..100 {
                CHANNEL.send(i).await; // blocks on the 2-slot channel
            }
        })
        .unwrap();
    let consumer = runner
        .spawn(async {
            let mut sum = 0;
            for _ in 0..100 {
                sum += CHANNEL.receive().await;
            }
            sum + SIGNAL.wait().await
        })
        .unwrap();
    std::thread::scope(|s| {
        // Signalled from another thread, as from another CPU.
        s.spawn(|| SIGNAL.signal(1000));
        let mut consumer = consumer;
        runner.run_until(EX.notifier(), || consumer.is_finished());
        assert_eq!(consumer.try_take(), Some(Completion::Finished(4950 + 1000)));
    });
}

#[test]
fn wait_flag_is_woken_by_the_flag_waiter_ipi() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static STATUS: AtomicU8 = AtomicU8::new(0);
    let runner = EX.claim().unwrap();
    let spawner = runner.spawner();
    let mut waiter = runner
        .spawn(async move {
            // `>= 1`: the writer may have moved on to 2 before this task
            // ran (its pause is no promise), and a wait for exactly 1 would
            // then wait for ever.
            spawner.wait_flag(|| STATUS.load(Acquire) >= 1).await;
            spawner.wait_flag(|| STATUS.load(Acquire) == 2).await;
            "stopped"
        })
        .unwrap();
    runner.run_until_idle();
    assert!(!waiter.is_finished());
    EX.wake_flag_waiters(); // a spurious "IPI": re-checks, waits again
    runner.run_until_idle();
    assert!(!waiter.is_finished());
    std::thread::scope(|s| {
        s.spawn(|| {
            // The remote writer: store the flag, then "send the IPI".
            for status in [1, 2] {
                STATUS.store(status, Release);
                EX.wake_flag_waiters();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        runner.run_until(EX.notifier(), || waiter.is_finished());
    });
    assert_eq!(waiter.try_take(), Some(Completion::Finished("stopped")));
}

#[test]
fn wait_flag_under_a_foreign_waker_polls_again() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    let runner = EX.claim().unwrap();
    let flag = Cell::new(false);
    let mut wait = runner.spawner().wait_flag(|| flag.get());
    let woken = Rc::new(Cell::new(false));
    struct Flag(AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, Relaxed);
        }
    }
    let foreign = std::sync::Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(foreign.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut wait).poll(&mut cx).is_pending());
    assert!(
        foreign.0.load(Relaxed),
        "woken at once instead of registered"
    );
    woken.set(true);
    flag.set(true);
    assert!(Pin::new(&mut wait).poll(&mut cx).is_ready());
}

/// A clock whose time the test sets.
struct ManualClock {
    now: AtomicU32,
    queue: TimerQueue<4>,
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.now.load(Relaxed).into()
    }
    fn wake_at(&self, deadline: u64, waker: &Waker) {
        self.queue
            .register(deadline, waker)
            .expect("room for every sleeper");
    }
}

impl ManualClock {
    fn advance_to(&self, now: u32) {
        self.now.store(now, Relaxed);
        self.queue.expire(now.into());
    }
}

#[test]
fn deadlines_with_a_manual_clock() {
    use futures_util::future::{select, Either};
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static CLOCK: ManualClock = ManualClock {
        now: AtomicU32::new(0),
        queue: TimerQueue::new(),
    };
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let mut sleeper = runner.spawn(time::sleep_until(&CLOCK, 100)).unwrap();
    let mut timeout = runner
        .spawn(async {
            let gate = std::pin::pin!(GATE.wait());
            match select(gate, time::sleep(&CLOCK, 50)).await {
                Either::Left(_) => "gate",
                Either::Right(_) => "timed out",
            }
        })
        .unwrap();
    runner.run_until_idle();
    assert_eq!(CLOCK.queue.next_deadline(), Some(50));
    CLOCK.advance_to(49);
    assert!(!runner.run_until_idle(), "nothing due yet");
    CLOCK.advance_to(50);
    runner.run_until_idle();
    assert_eq!(timeout.try_take(), Some(Completion::Finished("timed out")));
    assert!(!sleeper.is_finished());
    CLOCK.advance_to(100);
    runner.run_until_idle();
    assert_eq!(sleeper.try_take(), Some(Completion::Finished(())));
    assert_eq!(CLOCK.queue.next_deadline(), None);
}

#[test]
// Miri gives every evaluation of std's `Arc`-waker vtable constant its own
// address, so there a std waker and its clone need not `will_wake` each
// other (this crate's wakers do: they share one vtable pointer).
#[cfg_attr(
    miri,
    ignore = "std's Arc wakers do not will_wake their clones under Miri"
)]
fn timer_queue_keeps_one_entry_per_waker_and_refuses_when_full() {
    struct Count(AtomicU32);
    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Relaxed);
        }
    }
    let counts: Vec<_> = (0..3)
        .map(|_| std::sync::Arc::new(Count(AtomicU32::new(0))))
        .collect();
    let wakers: Vec<Waker> = counts.iter().map(|c| Waker::from(c.clone())).collect();
    let queue: TimerQueue<2> = TimerQueue::new();
    assert_eq!(queue.register(30, &wakers[0]), Ok(30));
    assert_eq!(
        queue.register(10, &wakers[0]),
        Ok(10),
        "one entry, the earlier deadline"
    );
    assert_eq!(queue.register(20, &wakers[1]), Ok(10));
    assert_eq!(queue.register(5, &wakers[2]), Err(time::TimerQueueFull));
    assert_eq!(queue.expire(15), Some(20));
    assert_eq!(
        counts.iter().map(|c| c.0.load(Relaxed)).collect::<Vec<_>>(),
        [1, 0, 0]
    );
    assert_eq!(queue.expire(20), None);
    assert_eq!(counts[1].0.load(Relaxed), 1);
}

#[test]
fn deadline_with_the_std_clock() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static CLOCK: StdClock<4> = StdClock::new();
    let runner = EX.claim().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| CLOCK.run());
        let start = CLOCK.now();
        runner
            .block_on(EX.notifier(), time::sleep(&CLOCK, 2_000_000))
            .unwrap();
        assert!(CLOCK.now() - start >= 2_000_000);
        CLOCK.stop();
    });
}

#[test]
fn remote_wakes_notify_at_most_once_per_park() {
    static EX: Executor<4, 256, CountingSignal> = Executor::new(CountingSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let mut handle = runner.spawn(GATE.wait()).unwrap();
    runner.run_until_idle();
    // Owner awake: local wakes never notify.
    let skipped = EX.notifier().skipped.load(Relaxed);
    for _ in 0..100 {
        GATE.waker().wake_by_ref();
    }
    assert_eq!(EX.stats().notified, 0);
    assert_eq!(EX.notifier().skipped.load(Relaxed) - skipped, 100);
    std::thread::scope(|s| {
        s.spawn(|| {
            while GATE.polls() < 2 {
                std::thread::yield_now();
            }
            GATE.open();
        });
        runner.run_until(EX.notifier(), || handle.is_finished());
    });
    let stats = EX.stats();
    assert!(stats.notified <= stats.parks, "{stats:?}");
    assert_eq!(handle.try_take(), Some(Completion::Finished(())));
}

/// A thread signal that counts the wakes that needed no notification.
struct CountingSignal {
    signal: ThreadSignal,
    skipped: std::sync::atomic::AtomicU64,
}

impl CountingSignal {
    const fn new() -> Self {
        Self {
            signal: ThreadSignal::new(),
            skipped: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Notifier for CountingSignal {
    fn notify(&self) {
        self.signal.notify();
    }
    fn skipped(&self) {
        self.skipped.fetch_add(1, Relaxed);
    }
}

impl Parker for CountingSignal {
    fn park(&self, ready: &ReadySet) {
        self.signal.park(ready);
    }
}

#[test]
#[should_panic(expected = "re-entered")]
fn running_the_executor_from_a_task_panics() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    thread_local! {
        static RUNNER: std::cell::OnceCell<executor::Runner<256>> = const { std::cell::OnceCell::new() };
    }
    RUNNER.with(|runner| {
        let runner = runner.get_or_init(|| EX.claim().unwrap());
        runner
            .spawn(async { RUNNER.with(|r| r.get().unwrap().run_until_idle()) })
            .unwrap();
        runner.run_until_idle();
    });
}

#[test]
fn a_panicking_task_is_poisoned_and_the_others_run_on() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    let runner = EX.claim().unwrap();
    let mut bad = runner.spawn(async { panic!("boom") }).unwrap();
    let mut good = runner.spawn(async { 5 }).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run_until_idle()));
    assert!(caught.is_err());
    runner.run_until_idle();
    assert_eq!(good.try_take(), Some(Completion::Finished(5)));
    assert!(bad.is_finished());
    let taken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bad.try_take()));
    assert!(taken.is_err(), "the join handle reports the panic");
    drop(bad);
    assert_eq!(
        runner.spawner().free_slots(),
        3,
        "a poisoned slot is never reused"
    );
}

/// Panics when dropped: user code that panics outside a task's poll.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("a drop that panics");
    }
}

/// A waker from outside the executor that counts its wakes.
struct CountingWaker(AtomicU32);

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, Relaxed);
    }
}

/// A join waker whose wake panics.
struct PanickingWaker;

impl std::task::Wake for PanickingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        panic!("a waker that panics");
    }
}

fn catch<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
}

#[test]
fn a_cancelled_task_whose_drop_panics_loses_no_wake_up() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let bomb = PanicOnDrop;
    let mut doomed = runner
        .spawn(async move {
            let _bomb = bomb;
            std::future::pending::<()>().await;
        })
        .unwrap();
    let _other = runner.spawn(GATE.wait()).unwrap();
    runner.run_until_idle();
    let joiner = std::sync::Arc::new(CountingWaker(AtomicU32::new(0)));
    let join_waker = Waker::from(joiner.clone());
    let polled = Pin::new(&mut doomed).poll(&mut Context::from_waker(&join_waker));
    assert!(polled.is_pending());
    // One batch: the cancelled task (dropped at its boundary), then the other.
    assert!(doomed.cancel());
    GATE.waker().wake_by_ref();
    assert!(
        catch(|| runner.run_until_idle()).is_err(),
        "the drop's panic reaches the caller"
    );
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 2, "the rest of the batch was put back");
    assert_eq!(joiner.0.load(Relaxed), 1, "the joiner was woken");
    assert!(doomed.is_finished());
    assert!(
        catch(|| doomed.try_take()).is_err(),
        "the join handle reports the panic"
    );
}

#[test]
fn a_join_waker_that_panics_loses_no_wake_up() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static FIRST: Gate = Gate::new();
    static SECOND: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let mut first = runner.spawn(FIRST.wait()).unwrap();
    let _second = runner.spawn(SECOND.wait()).unwrap();
    runner.run_until_idle();
    let join_waker = Waker::from(std::sync::Arc::new(PanickingWaker));
    let polled = Pin::new(&mut first).poll(&mut Context::from_waker(&join_waker));
    assert!(polled.is_pending());
    // One batch: the first task finishes (its join waker panics), then the second.
    FIRST.open();
    SECOND.waker().wake_by_ref();
    assert!(
        catch(|| runner.run_until_idle()).is_err(),
        "the waker's panic reaches the caller"
    );
    runner.run_until_idle();
    assert_eq!(SECOND.polls(), 2, "the rest of the batch was put back");
    assert_eq!(
        first.try_take(),
        Some(Completion::Finished(())),
        "the output stands"
    );
}

#[test]
fn a_detached_task_whose_output_drop_panics_loses_no_wake_up() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static FIRST: Gate = Gate::new();
    static SECOND: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let detached = runner
        .spawn(async {
            FIRST.wait().await;
            PanicOnDrop
        })
        .unwrap();
    drop(detached);
    let _second = runner.spawn(SECOND.wait()).unwrap();
    runner.run_until_idle();
    // One batch: the detached task finishes (its output's drop panics), then
    // the second.
    FIRST.open();
    SECOND.waker().wake_by_ref();
    assert!(
        catch(|| runner.run_until_idle()).is_err(),
        "the drop's panic reaches the caller"
    );
    runner.run_until_idle();
    assert_eq!(SECOND.polls(), 2, "the rest of the batch was put back");
    assert_eq!(
        runner.spawner().free_slots(),
        2,
        "the slot whose drop panicked is never reused"
    );
}

#[test]
fn spawn_now_polls_at_once_and_a_finished_task_skips_the_run_loop() {
    static EX: Exec<2> = Executor::new(ThreadSignal::new());
    let runner = EX.claim().unwrap();
    let mut handle = runner.spawn_now(async { 6 * 7 }).unwrap();
    assert!(
        handle.is_finished(),
        "done in the first poll, inside spawn_now"
    );
    assert!(!runner.run_until_idle(), "it never entered the ready word");
    assert_eq!(handle.try_take(), Some(Completion::Finished(42)));
    assert_eq!(runner.spawner().free_slots(), 2);
    // The slot is reused, by both kinds of spawn, and reports correctly.
    for i in 0..4 {
        let mut now = runner.spawn_now(async move { i }).unwrap();
        let mut later = runner.spawn(async move { i + 10 }).unwrap();
        runner.run_until_idle();
        assert_eq!(now.try_take(), Some(Completion::Finished(i)));
        assert_eq!(later.try_take(), Some(Completion::Finished(i + 10)));
    }
    assert_eq!(runner.spawner().free_slots(), 2);
}

#[test]
fn spawn_now_pending_joins_the_run_loop_and_can_be_cancelled() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    static DROPS: AtomicU32 = AtomicU32::new(0);
    let runner = EX.claim().unwrap();
    let mut handle = runner.spawn_now(GATE.wait()).unwrap();
    assert_eq!(GATE.polls(), 1, "polled inside spawn_now");
    assert!(!handle.is_finished());
    assert!(!runner.run_until_idle(), "not woken: not ready");
    GATE.open();
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 2);
    assert_eq!(handle.try_take(), Some(Completion::Finished(())));

    let flag = DropFlag(&DROPS);
    let mut doomed = runner
        .spawn_now(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        })
        .unwrap();
    let token = doomed.cancel_token();
    assert!(token.is_live());
    assert!(token.cancel());
    assert_eq!(DROPS.load(Relaxed), 0, "dropped at its next boundary");
    runner.run_until_idle();
    assert_eq!(DROPS.load(Relaxed), 1);
    assert_eq!(doomed.try_take(), Some(Completion::Cancelled));
    assert_eq!(runner.spawner().free_slots(), 4);
}

#[test]
fn spawn_now_keeps_a_wake_from_the_first_poll() {
    static EX: Exec<2> = Executor::new(ThreadSignal::new());
    let runner = EX.claim().unwrap();
    let mut polls = 0;
    let mut handle = runner
        .spawn_now(std::future::poll_fn(move |cx| {
            polls += 1;
            if polls == 2 {
                return Poll::Ready(polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }))
        .unwrap();
    assert!(!handle.is_finished());
    assert!(
        runner.run_until_idle(),
        "the first poll's own wake made it ready"
    );
    assert_eq!(handle.try_take(), Some(Completion::Finished(2)));
}

#[test]
fn a_spawn_now_output_is_dropped_with_its_own_type() {
    // One slot, so both tasks use it: the first leaves its type-erased drop
    // function there; `spawn_now`'s finished task sets none, and dropping
    // its handle must drop its output, not the first task's type.
    static EX: Exec<1> = Executor::new(ThreadSignal::new());
    static DROPS: AtomicU32 = AtomicU32::new(0);
    let runner = EX.claim().unwrap();
    let mut first = runner.spawn(async { 7_u64 }).unwrap();
    runner.run_until_idle();
    assert_eq!(first.try_take(), Some(Completion::Finished(7)));
    let second = runner.spawn_now(async { DropFlag(&DROPS) }).unwrap();
    assert!(second.is_finished());
    drop(second);
    assert_eq!(DROPS.load(Relaxed), 1, "the output was dropped, once");
    assert_eq!(runner.spawner().free_slots(), 1);
}

#[test]
fn tasks_spawn_now_and_await_each_other() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let spawner = runner.spawner();
    let mut outer = runner
        .spawn(async move {
            let quick = spawner.spawn_now(async { 1 }).unwrap();
            assert!(
                quick.is_finished(),
                "polled inside the spawning task's poll"
            );
            let slow = spawner.spawn_now(GATE.wait()).unwrap();
            let Completion::Finished(one) = quick.await else {
                unreachable!()
            };
            let Completion::Finished(()) = slow.await else {
                unreachable!()
            };
            one + 1
        })
        .unwrap();
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 1);
    assert!(!outer.is_finished(), "waits for the gate");
    GATE.open();
    runner.run_until_idle();
    assert_eq!(outer.try_take(), Some(Completion::Finished(2)));
    assert_eq!(runner.spawner().free_slots(), 4);
}

#[test]
fn a_first_poll_that_panics_poisons_its_slot_and_the_executor_runs_on() {
    static EX: Exec<2> = Executor::new(ThreadSignal::new());
    let runner = EX.claim().unwrap();
    let caught = catch(|| runner.spawn_now(async { panic!("boom in the first poll") }));
    assert!(caught.is_err(), "the panic reaches the caller of spawn_now");
    assert_eq!(
        runner.spawner().free_slots(),
        1,
        "a poisoned slot is never reused"
    );
    let mut handle = runner.spawn(async { 3 }).unwrap();
    assert!(runner.run_until_idle(), "the executor runs again");
    assert_eq!(handle.try_take(), Some(Completion::Finished(3)));
}

#[test]
#[should_panic(expected = "re-entered")]
fn running_the_executor_from_a_first_poll_panics() {
    static EX: Exec<4> = Executor::new(ThreadSignal::new());
    thread_local! {
        static RUNNER: std::cell::OnceCell<executor::Runner<256>> = const { std::cell::OnceCell::new() };
    }
    RUNNER.with(|runner| {
        let runner = runner.get_or_init(|| EX.claim().unwrap());
        let _handle =
            runner.spawn_now(async { RUNNER.with(|r| r.get().unwrap().run_until_idle()) });
    });
}

// User code that reaches the owner's handles again from inside the run
// loop: a join waker or a cancelled future's drop with a handle in a
// thread-local (safe code). Found by a review that tried to break the
// executor; each test failed before its fix.

thread_local! {
    static REENTRY_SPAWNER: Cell<Option<executor::Spawner<256>>> = const { Cell::new(None) };
    static REENTRY_FIRST: Cell<Option<JoinHandle<u32>>> = const { Cell::new(None) };
    static REENTRY_SECOND: Cell<Option<JoinHandle<()>>> = const { Cell::new(None) };
    static REENTRY_GATE: Cell<Option<&'static Gate>> = const { Cell::new(None) };
}

/// A join waker that reads its task's output (which frees the slot),
/// spawns a pending task into that slot, and either drops its handle
/// (detaching it) or keeps it in `REENTRY_SECOND` and then panics.
struct ReenteringWaker {
    keep_and_panic: bool,
}

impl std::task::Wake for ReenteringWaker {
    fn wake(self: std::sync::Arc<Self>) {
        let mut first = REENTRY_FIRST
            .take()
            .expect("the handle is in the thread-local");
        assert_eq!(first.try_take(), Some(Completion::Finished(1)));
        let spawner = REENTRY_SPAWNER.get().unwrap();
        let gate = REENTRY_GATE.get().unwrap();
        let second = spawner.spawn(gate.wait()).unwrap();
        if self.keep_and_panic {
            REENTRY_SECOND.set(Some(second));
            panic!("a join waker that panics after it respawned the slot");
        }
    }
}

/// Spawns `async { 1 }` on a one-slot executor, awaits it with `waker` and
/// runs it: the completion wakes the join waker inside the run loop.
fn complete_with_join_waker(runner: &executor::Runner<256>, gate: &'static Gate, waker: Waker) {
    REENTRY_SPAWNER.set(Some(runner.spawner()));
    REENTRY_GATE.set(Some(gate));
    let mut first = runner.spawn(async { 1u32 }).unwrap();
    let polled = Pin::new(&mut first).poll(&mut Context::from_waker(&waker));
    assert!(polled.is_pending());
    REENTRY_FIRST.set(Some(first));
}

#[test]
fn a_join_waker_that_respawns_the_slot_leaves_the_new_task_its_slot() {
    static EX: Exec<1> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let waker = Waker::from(std::sync::Arc::new(ReenteringWaker {
        keep_and_panic: false,
    }));
    complete_with_join_waker(&runner, &GATE, waker);
    runner.run_until_idle();
    assert_eq!(
        runner.spawner().free_slots(),
        0,
        "the detached task the join waker spawned still holds the slot"
    );
    assert!(
        runner.spawn_now(async { [0xBBBB_u64, 3] }).is_err(),
        "no spawn may land on the live task"
    );
    GATE.open();
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 2);
    assert_eq!(runner.spawner().free_slots(), 1, "freed once it finished");
}

#[test]
fn a_join_waker_that_respawns_the_slot_and_panics_leaves_the_new_task_alone() {
    static EX: Exec<1> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    let waker = Waker::from(std::sync::Arc::new(ReenteringWaker {
        keep_and_panic: true,
    }));
    complete_with_join_waker(&runner, &GATE, waker);
    assert!(catch(|| runner.run_until_idle()).is_err());
    // The new task was spawned ready; the panic ended the run loop first.
    runner.run_until_idle();
    assert_eq!(GATE.polls(), 1, "the new task ran");
    let mut second = REENTRY_SECOND
        .take()
        .expect("the waker kept the new handle");
    assert_eq!(
        catch(|| second.try_take()).ok(),
        Some(None),
        "the new task is live, not poisoned"
    );
    GATE.open();
    runner.run_until_idle();
    assert_eq!(second.try_take(), Some(Completion::Finished(())));
    assert_eq!(runner.spawner().free_slots(), 1);
}

thread_local! {
    static OWN_HANDLE: Cell<Option<JoinHandle<()>>> = const { Cell::new(None) };
    static SEEN_FROM_DROP: Cell<Option<Option<bool>>> = const { Cell::new(None) };
}

/// Held by a task: its drop drops the task's own join handle, or reads it
/// (`try_take`, recording whether it saw a completion) and puts it back.
struct TouchesOwnHandle {
    drop_it: bool,
}

impl Drop for TouchesOwnHandle {
    fn drop(&mut self) {
        let mut handle = OWN_HANDLE
            .take()
            .expect("the handle is in the thread-local");
        if self.drop_it {
            drop(handle);
        } else {
            let seen = catch(|| handle.try_take().is_some()).ok();
            SEEN_FROM_DROP.set(Some(seen));
            OWN_HANDLE.set(Some(handle));
        }
    }
}

/// Spawns a task holding `guard` on a one-slot executor, puts its handle in
/// `OWN_HANDLE`, cancels it and runs the executor (which drops the future).
fn cancel_task_holding(
    runner: &executor::Runner<256>,
    gate: &'static Gate,
    guard: TouchesOwnHandle,
) {
    let handle = runner
        .spawn(async move {
            let _guard = guard;
            gate.wait().await;
        })
        .unwrap();
    runner.run_until_idle();
    let token = handle.cancel_token();
    OWN_HANDLE.set(Some(handle));
    assert!(token.cancel());
    assert!(catch(|| runner.run_until_idle()).is_ok());
}

#[test]
fn a_cancelled_future_that_drops_its_own_handle_frees_its_slot() {
    static EX: Exec<1> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    cancel_task_holding(&runner, &GATE, TouchesOwnHandle { drop_it: true });
    assert_eq!(runner.spawner().free_slots(), 1, "the slot is not leaked");
}

#[test]
fn a_cancelled_future_that_reads_its_own_handle_sees_it_unfinished() {
    static EX: Exec<1> = Executor::new(ThreadSignal::new());
    static GATE: Gate = Gate::new();
    let runner = EX.claim().unwrap();
    cancel_task_holding(&runner, &GATE, TouchesOwnHandle { drop_it: false });
    assert_eq!(
        SEEN_FROM_DROP.take(),
        Some(Some(false)),
        "no completion yet, and no panic"
    );
    let mut handle = OWN_HANDLE.take().unwrap();
    assert_eq!(handle.try_take(), Some(Completion::Cancelled));
    assert_eq!(runner.spawner().free_slots(), 1);
}
