//! The executor benchmark (not a test): one scenario per process, so that
//! `valgrind --tool=callgrind` counts its instructions.
//!
//! ```text
//! python3 executor/examples/bench.py        # everything, as in docs/executor.md
//! cargo run --release -p executor --example bench -- <scenario> <iterations>
//! ```
//!
//! Scenarios, each in three flavours: `loop` (a hand-written poll loop, no
//! executor: the baseline), `ours` (this crate) and `embassy`
//! (`embassy_executor::raw::Executor` whose pender only stores a flag: the
//! bare-metal shape).
//!
//! * `self`: one task wakes itself and returns `Pending`, `iterations`
//!   times: the wake→poll cycle.
//! * `wake`: `iterations` wakes of a task that is already ready (the
//!   waker's side of a remote wake; the poll is not counted).
//! * `remote`: another thread wakes a task `iterations` times while the
//!   owner runs it (time only: callgrind serialises threads).
//! * `spawn`: spawn a task that returns at once, run it, read its result
//!   (`ours`: `spawn`, `run_until_idle`, `try_take`).
//! * `spawn_now` (`ours` only): the same with `spawn_now`, which polls the
//!   task once inside the spawn, and `try_take`.
//! * `spawn_apart` (`ours` only): `spawn_now`, then the handle passes
//!   through `black_box` before `try_take`, as when a caller awaits it
//!   later: the compiler cannot merge the two.
//!
//! The process prints `ns/iter` for the loop alone; `bench.py` subtracts
//! the callgrind totals of two runs (2 M and 1 M iterations) to get
//! instructions per iteration without the setup.

use std::future::Future;
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::OnceLock;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::Instant;

use embassy_executor::raw::{Executor as EmbassyExecutor, TaskStorage};
use executor::host::ThreadSignal;
use executor::Executor;

/// Wakes itself and returns `Pending` until `left` reaches 0.
struct SelfWake {
    left: u64,
}

impl Future for SelfWake {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.left == 0 {
            DONE.store(true, Relaxed);
            return Poll::Ready(());
        }
        self.left -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Pending until `STOP`; counts its polls; publishes its waker.
struct Pending;

impl Future for Pending {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        POLLS.fetch_add(1, Relaxed);
        WAKER.get_or_init(|| cx.waker().clone());
        if STOP.load(Acquire) {
            DONE.store(true, Relaxed);
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Returns its number at once.
struct Trivial(u64);

impl Future for Trivial {
    type Output = u64;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u64> {
        Poll::Ready(self.0)
    }
}

static DONE: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
static POLLS: AtomicU64 = AtomicU64::new(0);
static WAKER: OnceLock<Waker> = OnceLock::new();

// === the hand-written loop ===

/// The baseline's "ready" flag and the waker that sets it (a store).
static FLAG: AtomicBool = AtomicBool::new(false);

fn flag_waker() -> Waker {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(
        |_| RawWaker::new(std::ptr::null(), &VTABLE),
        |_| FLAG.store(true, Release),
        |_| FLAG.store(true, Release),
        |_| {},
    );
    // SAFETY: the functions ignore the data pointer and are thread-safe.
    unsafe { Waker::new(std::ptr::null(), &VTABLE) }
}

/// The baseline: one type-erased task polled by hand whenever its flag is
/// set: a real (indirect) call to `poll` and to `wake`, as in any executor,
/// and nothing else.
fn loop_self(n: u64) {
    let waker = flag_waker();
    let mut cx = Context::from_waker(black_box(&waker));
    let mut task = pin!(SelfWake { left: n });
    let mut task: Pin<&mut dyn Future<Output = ()>> = black_box(task.as_mut());
    FLAG.store(true, Relaxed);
    loop {
        if FLAG.load(Acquire) {
            FLAG.store(false, Relaxed);
            if task.as_mut().poll(&mut cx).is_ready() {
                break;
            }
        }
    }
}

fn loop_wake(n: u64) {
    let waker = flag_waker();
    for _ in 0..n {
        black_box(&waker).wake_by_ref();
    }
}

fn loop_spawn(n: u64) {
    let waker = flag_waker();
    let mut cx = Context::from_waker(black_box(&waker));
    for i in 0..n {
        let mut task = pin!(Trivial(i));
        let task: Pin<&mut dyn Future<Output = u64>> = black_box(task.as_mut());
        if let Poll::Ready(out) = task.poll(&mut cx) {
            black_box(out);
        }
    }
}

// === this crate ===

static OURS: Executor<4, 64, ThreadSignal> = Executor::new(ThreadSignal::new());

fn ours_self(n: u64) {
    let runner = OURS.claim().unwrap();
    let handle = runner.spawn(SelfWake { left: n }).unwrap();
    runner.run_until(OURS.notifier(), || handle.is_finished());
}

fn ours_wake(n: u64) {
    let runner = OURS.claim().unwrap();
    let _handle = runner.spawn(Pending).unwrap();
    runner.run_until_idle();
    let waker = WAKER.get().unwrap();
    for _ in 0..n {
        black_box(waker).wake_by_ref();
    }
}

fn ours_remote(n: u64) {
    let runner = OURS.claim().unwrap();
    let handle = runner.spawn(Pending).unwrap();
    runner.run_until_idle();
    std::thread::scope(|s| {
        s.spawn(|| {
            let waker = WAKER.get().unwrap();
            for _ in 0..n {
                black_box(waker).wake_by_ref();
            }
            STOP.store(true, Release);
            waker.wake_by_ref();
        });
        runner.run_until(OURS.notifier(), || handle.is_finished());
    });
}

fn ours_spawn(n: u64) {
    let runner = OURS.claim().unwrap();
    for i in 0..n {
        let mut handle = runner.spawn(Trivial(black_box(i))).unwrap();
        runner.run_until_idle();
        black_box(handle.try_take());
    }
}

/// `spawn_now`: the first poll happens inside the spawn, and a task that
/// is done then never enters the run loop.
fn ours_spawn_now(n: u64) {
    let runner = OURS.claim().unwrap();
    for i in 0..n {
        let mut handle = runner.spawn_now(Trivial(black_box(i))).unwrap();
        black_box(handle.try_take());
    }
}

/// `spawn_now`, and the handle read behind an opaque barrier, as a caller
/// that awaits it later would: the compiler can no longer merge the
/// spawn's stores with the read's.
fn ours_spawn_now_apart(n: u64) {
    let runner = OURS.claim().unwrap();
    for i in 0..n {
        let mut handle = runner.spawn_now(Trivial(black_box(i))).unwrap();
        black_box(&mut handle);
        black_box(handle.try_take());
    }
}

// === embassy-executor ===

static PENDED: AtomicBool = AtomicBool::new(false);

/// embassy's pender: only a flag store, like an interrupt-pending bit.
#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    PENDED.store(true, Release);
}

fn embassy() -> &'static EmbassyExecutor {
    Box::leak(Box::new(EmbassyExecutor::new(std::ptr::null_mut())))
}

/// embassy's run loop in the bare-metal shape: poll while pended.
fn embassy_run(executor: &'static EmbassyExecutor, done: &AtomicBool) {
    while !done.load(Relaxed) {
        if PENDED.load(Acquire) {
            PENDED.store(false, Relaxed);
            // SAFETY: not re-entrant: this loop is the only caller.
            unsafe { executor.poll() };
        }
    }
}

fn embassy_self(n: u64) {
    static TASK: TaskStorage<SelfWake> = TaskStorage::new();
    let executor = embassy();
    executor
        .spawner()
        .spawn(TASK.spawn(|| SelfWake { left: n }).unwrap());
    embassy_run(executor, &DONE);
}

fn embassy_wake(n: u64) {
    static TASK: TaskStorage<Pending> = TaskStorage::new();
    let executor = embassy();
    executor.spawner().spawn(TASK.spawn(|| Pending).unwrap());
    PENDED.store(false, Relaxed);
    // SAFETY: not re-entrant.
    unsafe { executor.poll() };
    let waker = WAKER.get().unwrap();
    for _ in 0..n {
        black_box(waker).wake_by_ref();
    }
}

fn embassy_remote(n: u64) {
    static TASK: TaskStorage<Pending> = TaskStorage::new();
    let executor = embassy();
    executor.spawner().spawn(TASK.spawn(|| Pending).unwrap());
    PENDED.store(false, Relaxed);
    // SAFETY: not re-entrant.
    unsafe { executor.poll() };
    std::thread::scope(|s| {
        s.spawn(|| {
            let waker = WAKER.get().unwrap();
            for _ in 0..n {
                black_box(waker).wake_by_ref();
            }
            STOP.store(true, Release);
            waker.wake_by_ref();
        });
        embassy_run(executor, &DONE);
    });
}

fn embassy_spawn(n: u64) {
    static TASK: TaskStorage<Trivial> = TaskStorage::new();
    let executor = embassy();
    let spawner = executor.spawner();
    for i in 0..n {
        spawner.spawn(TASK.spawn(|| Trivial(black_box(i))).unwrap());
        PENDED.store(false, Relaxed);
        // SAFETY: not re-entrant.
        unsafe { executor.poll() };
    }
}

// === main ===

fn footprint() {
    use std::mem::size_of;
    let fixed = size_of::<Executor<0, 64, ZeroSized>>();
    let per_task = size_of::<Executor<8, 64, ZeroSized>>() - fixed;
    println!(
        "- per task: {} bytes of header + the slot size, rounded up to 16",
        executor::SLOT_OVERHEAD
    );
    println!("  (64-byte slots: {} bytes per task)", per_task / 8);
    println!("- per executor: {fixed} bytes + the notifier (kernel: an APIC ID; host ThreadSignal: {} bytes)", size_of::<ThreadSignal>());
    println!(
        "- Executor<16, 512, _>: {} bytes",
        size_of::<Executor<16, 512, ZeroSized>>()
    );
    println!(
        "- embassy: TaskStorage<F> = size_of::<F>() + {} bytes per task",
        size_of::<TaskStorage<SelfWake>>() - size_of::<SelfWake>()
    );
}

/// A notifier of no size, like the kernel's IPI notifier reading the target
/// APIC ID from a per-CPU table.
struct ZeroSized;

impl executor::Notifier for ZeroSized {
    fn notify(&self) {}
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 2 && args[1] == "footprint" {
        return footprint();
    }
    let (scenario, n) = match &args[..] {
        [_, scenario, n] => (scenario.as_str(), n.parse::<u64>().expect("iterations")),
        _ => {
            eprintln!("usage: bench <loop|ours|embassy>-<self|wake|remote|spawn> <iterations> | bench ours-<spawn_now|spawn_apart> <iterations> | bench footprint");
            std::process::exit(2);
        }
    };
    let run: fn(u64) = match scenario {
        "loop-self" => loop_self,
        "loop-wake" => loop_wake,
        "loop-spawn" => loop_spawn,
        "ours-self" => ours_self,
        "ours-wake" => ours_wake,
        "ours-remote" => ours_remote,
        "ours-spawn" => ours_spawn,
        "ours-spawn_now" => ours_spawn_now,
        "ours-spawn_apart" => ours_spawn_now_apart,
        "embassy-self" => embassy_self,
        "embassy-wake" => embassy_wake,
        "embassy-remote" => embassy_remote,
        "embassy-spawn" => embassy_spawn,
        _ => {
            eprintln!("unknown scenario {scenario}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    run(n);
    let elapsed = start.elapsed();
    println!(
        "{scenario}: {n} iterations, {:.2} ns/iter, {} polls",
        elapsed.as_nanos() as f64 / n as f64,
        POLLS.load(Relaxed)
    );
}
